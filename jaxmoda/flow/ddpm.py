"""DDPM with epsilon prediction and the DiT noise schedule.

Discrete process with T train steps (DiT: T=1000, linear betas 1e-4 -> 0.02):
  x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps,   k in {0, ..., T-1}.
The model predicts eps and is called with float32 t = k / T (so t lies in
[0, 1) and data sits near t=0, matching the flow convention).

Variance is fixed: DiT's learned sigma (the extra output channels trained with
the VLB term) is NOT implemented; the model predicts epsilon only.

Sampling runs over `steps` timesteps respaced evenly from {0, ..., T-1} (as
DiT's `space_timesteps`), with the generalised DDIM update: eta=0 is
deterministic DDIM; eta=1 is ancestral DDPM with the posterior variance
beta_tilde of the respaced process.
"""

import dataclasses
import numbers
from typing import Callable, ClassVar, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxmoda.flow._validate import check_choice
from jaxmoda.flow.losses import masked_mse
from jaxmoda.flow.timesteps import broadcast_time

DDPM_SAMPLERS = ("ddim", "ddpm")


class DDPMSchedule(NamedTuple):
    """Host-side (numpy float64) schedule constants; baked into traces as constants.

    Attributes:
      betas: [T] per-step noise variances.
      alphas_cumprod: [T] abar_k = prod_{j <= k} (1 - beta_j).
    """

    betas: np.ndarray
    alphas_cumprod: np.ndarray

    @property
    def num_train_timesteps(self) -> int:
        return int(self.betas.shape[0])


def linear_schedule(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> DDPMSchedule:
    """Linear beta schedule (DDPM / DiT), computed in float64 on the host.

    Args:
      num_train_timesteps: T.
      beta_start: beta_0.
      beta_end: beta_{T-1}.

    Returns:
      DDPMSchedule with betas [T] and alphas_cumprod [T].
    """
    if not 0.0 < beta_start < beta_end < 1.0:
        raise ValueError(f"Need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}.")
    betas = np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
    return DDPMSchedule(betas=betas, alphas_cumprod=np.cumprod(1.0 - betas))


def respaced_timesteps(num_train_timesteps: int, steps: int) -> np.ndarray:
    """Evenly spaced train timesteps for sampling, always including 0 and T-1.

    Args:
      num_train_timesteps: T.
      steps: number of sampling steps, 1 <= steps <= T (static).

    Returns:
      int64 [steps], strictly increasing.
    """
    if not isinstance(steps, numbers.Integral) or not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be a static int in [1, {num_train_timesteps}], got {steps!r}.")
    if steps == 1:
        return np.array([num_train_timesteps - 1], np.int64)
    stride = (num_train_timesteps - 1) / (steps - 1)
    return np.array([round(i * stride) for i in range(steps)], np.int64)


def q_sample(
    schedule: DDPMSchedule, x0: jax.Array, noise: jax.Array, timesteps: jax.Array
) -> jax.Array:
    """Forward process x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) noise.

    Args:
      schedule: the noise schedule.
      x0: [B, ...] data.
      noise: [B, ...] Gaussian noise.
      timesteps: int [B] train timesteps k in [0, T).

    Returns:
      [B, ...] noised data in the result dtype of (x0, noise).
    """
    abar = jnp.asarray(schedule.alphas_cumprod, jnp.float32)[timesteps]
    abar = broadcast_time(abar, x0.ndim)
    x_k = jnp.sqrt(abar) * x0.astype(jnp.float32) + jnp.sqrt(1.0 - abar) * noise.astype(jnp.float32)
    return x_k.astype(jnp.result_type(x0.dtype, noise.dtype))


def epsilon_loss(pred, noise, *, mask=None, weight=None) -> jax.Array:
    """Per-example MSE between predicted and true noise, float32 [B]; see `losses.masked_mse`."""
    return masked_mse(pred, noise, mask, weight)


def ddim_sample(
    eps_fn: Callable[[jax.Array, jax.Array], jax.Array],
    noise: jax.Array,
    schedule: DDPMSchedule,
    *,
    steps: int,
    eta: float = 0.0,
    rng: Optional[jax.Array] = None,
) -> jax.Array:
    """Generalised DDIM sampler over respaced timesteps, one `fori_loop`.

    Per step k -> k_prev (abar_prev = 1 after the last step):
      x0_hat = (x - sqrt(1 - abar) eps) / sqrt(abar)
      sigma  = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev)
      x      = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z
    No clipping of x0_hat (latent-space models, as DiT).

    Args:
      eps_fn: (x [B, ...] float32, t float32 [B] = k / T) -> predicted eps.
      noise: [B, ...] standard Gaussian noise, any trailing shape.
      schedule: the training schedule.
      steps: static number of sampling steps.
      eta: static; 0.0 deterministic DDIM, 1.0 ancestral DDPM.
      rng: PRNG key, required when eta > 0.

    Returns:
      [B, ...] samples in `noise.dtype`.
    """
    if eta > 0.0 and rng is None:
        raise ValueError("Stochastic sampling (eta > 0, sampler 'ddpm') needs an rng key.")
    num_train = schedule.num_train_timesteps
    ks = respaced_timesteps(num_train, steps)[::-1]
    abar = schedule.alphas_cumprod[ks]
    abar_prev = np.concatenate([abar[1:], [1.0]])
    sigma = eta * np.sqrt((1.0 - abar_prev) / (1.0 - abar)) * np.sqrt(1.0 - abar / abar_prev)
    # Host float64 coefficients, cast once; the loop only indexes them.
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    t_model = f32(ks / num_train)
    sqrt_abar, sqrt_1m_abar = f32(np.sqrt(abar)), f32(np.sqrt(1.0 - abar))
    c_x0 = f32(np.sqrt(abar_prev))
    c_eps = f32(np.sqrt(np.clip(1.0 - abar_prev - sigma**2, 0.0, None)))
    c_z = f32(sigma)
    batch = noise.shape[0]

    def body(i, x):
        eps = eps_fn(x, jnp.full((batch,), t_model[i], jnp.float32)).astype(jnp.float32)
        x0_hat = (x - sqrt_1m_abar[i] * eps) / sqrt_abar[i]
        x_prev = c_x0[i] * x0_hat + c_eps[i] * eps
        if eta > 0.0:
            z = jax.random.normal(jax.random.fold_in(rng, i), x.shape, jnp.float32)
            x_prev = x_prev + c_z[i] * z
        return x_prev

    x = jax.lax.fori_loop(0, steps, body, noise.astype(jnp.float32))
    return x.astype(noise.dtype)


@dataclasses.dataclass(frozen=True)
class DDPM:
    """DDPM epsilon-prediction objective (DiT schedule, fixed variance). Implements `Objective`.

    Training timesteps are uniform integers in [0, T), as in DiT; the continuous
    time-sampler settings of rectified flow do not apply.

    Attributes:
      num_train_timesteps: T.
      beta_start: first beta.
      beta_end: last beta.
      sample_steps: default number of respaced sampling steps.
      sampler: default sampler, 'ddim' (eta=0) or 'ddpm' (ancestral, eta=1).
    """

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sample_steps: int = 50
    sampler: str = "ddim"

    SAMPLERS: ClassVar[tuple] = DDPM_SAMPLERS

    def __post_init__(self):
        self._check_sampler(self.sampler)
        _ = self.schedule  # Validates the beta range at construction.

    def _check_sampler(self, sampler: str) -> str:
        return check_choice(
            "ddpm sampler", sampler, self.SAMPLERS,
            hint="('euler'/'heun' belong to objective 'rectified_flow'.)",
        )

    @property
    def schedule(self) -> DDPMSchedule:
        return linear_schedule(self.num_train_timesteps, self.beta_start, self.beta_end)

    def loss(self, apply_fn, x0, cond, rng, *, mask=None, noise=None, weight=None):
        """Epsilon-matching loss.

        Args:
          apply_fn: (x_k [B, ...], t float32 [B] = k / T, cond) -> eps [B, ...].
          x0: [B, ...] data.
          cond: any pytree, passed to `apply_fn` untouched.
          rng: PRNG key for timesteps (and noise when `noise` is None).
          mask: optional bool/float [B, N] or x0-shaped real-entry mask.
          noise: optional [B, ...] noise replacing the internal Gaussian draw.
          weight: optional per-element weights broadcastable to x0.

        Returns:
          (loss float32 [B], aux) with aux = {'t_mean': scalar}.
        """
        k_rng, n_rng = jax.random.split(rng)
        if noise is None:
            noise = jax.random.normal(n_rng, x0.shape, jnp.float32).astype(x0.dtype)
        k = jax.random.randint(k_rng, (x0.shape[0],), 0, self.num_train_timesteps)
        t = k.astype(jnp.float32) / self.num_train_timesteps
        pred = apply_fn(q_sample(self.schedule, x0, noise, k), t, cond)
        per_example = epsilon_loss(pred, noise, mask=mask, weight=weight)
        return per_example, {"t_mean": jnp.mean(t)}

    def sample(self, apply_fn, noise, *, steps=None, sampler=None, rng=None, shift=None):
        """Samples from `noise` (t=1 end) to data with DDIM or ancestral DDPM.

        Args:
          apply_fn: (x [B, ...] float32, t float32 [B] = k / T) -> eps, with the
            condition already closed over (and guided if wanted).
          noise: [B, ...] standard Gaussian noise, any trailing shape.
          steps: static respaced step count; None uses `sample_steps`.
          sampler: 'ddim' or 'ddpm'; None uses `sampler`.
          rng: PRNG key, required for 'ddpm'.
          shift: must be None or 1.0 (time shift is a flow-grid concept).

        Returns:
          [B, ...] samples in `noise.dtype`.
        """
        method = self._check_sampler(self.sampler if sampler is None else sampler)
        if shift is not None and not (isinstance(shift, numbers.Number) and shift == 1.0):
            raise ValueError(f"Objective 'ddpm' does not support a sampling shift (got {shift!r}).")
        return ddim_sample(
            apply_fn, noise, self.schedule,
            steps=self.sample_steps if steps is None else steps,
            eta=1.0 if method == "ddpm" else 0.0,
            rng=rng,
        )
