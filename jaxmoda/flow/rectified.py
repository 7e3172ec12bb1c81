"""Rectified flow: straight-line interpolant, velocity target and objective.

x_t = (1 - t) x0 + t eps,   v = d x_t / dt = eps - x0.

Data at t=0, noise at t=1; the model predicts v and is called with float32
t in [0, 1].
"""

import dataclasses
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from jaxmoda.flow._validate import check_choice
from jaxmoda.flow.losses import masked_mse
from jaxmoda.flow.samplers import ODE_METHODS, integrate
from jaxmoda.flow.timesteps import TIME_SAMPLERS, broadcast_time, sample_time


def interpolate(x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """Rectified-flow interpolant.

    Args:
      x0: [B, ...] data.
      noise: [B, ...] Gaussian noise, same shape as `x0`.
      t: float32 [B] times in [0, 1].

    Returns:
      x_t = (1 - t) x0 + t noise, [B, ...] in the result dtype of (x0, noise).
    """
    tb = broadcast_time(t.astype(jnp.float32), x0.ndim)
    x_t = (1.0 - tb) * x0.astype(jnp.float32) + tb * noise.astype(jnp.float32)
    return x_t.astype(jnp.result_type(x0.dtype, noise.dtype))


def velocity_target(x0: jax.Array, noise: jax.Array) -> jax.Array:
    """Velocity target v = noise - x0, [B, ...]."""
    return noise - x0


def velocity_loss(
    pred: jax.Array,
    x0: jax.Array,
    noise: jax.Array,
    *,
    mask: Optional[jax.Array] = None,
    weight: Optional[jax.Array] = None,
) -> jax.Array:
    """Per-example MSE between a predicted velocity and noise - x0.

    Args:
      pred: [B, ...] predicted velocity.
      x0: [B, ...] data.
      noise: [B, ...] noise used to build x_t.
      mask: optional [B, N] or [B, ...] real-entry mask; see `losses.masked_mse`.
      weight: optional per-element weights broadcastable to x0.

    Returns:
      float32 [B].
    """
    return masked_mse(pred, velocity_target(x0, noise), mask, weight)


@dataclasses.dataclass(frozen=True)
class RectifiedFlow:
    """Rectified-flow objective (velocity prediction). Implements `Objective`.

    Attributes:
      time_sampler: training time distribution, 'uniform' or 'logit_normal'.
      logit_mean: logit-normal mean.
      logit_std: logit-normal std.
      time_shift: shift applied to training times (1.0 = none).
      sample_steps: default number of sampling steps.
      sampler: default ODE integrator, 'euler' or 'heun'.
      sample_shift: default shift of the sampling grid.
    """

    time_sampler: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    time_shift: float = 1.0
    sample_steps: int = 50
    sampler: str = "euler"
    sample_shift: float = 1.0

    SAMPLERS: ClassVar[tuple] = ODE_METHODS

    def __post_init__(self):
        check_choice("time_sampler", self.time_sampler, TIME_SAMPLERS)
        self._check_sampler(self.sampler)

    def _check_sampler(self, sampler: str) -> str:
        return check_choice(
            "rectified_flow sampler", sampler, self.SAMPLERS,
            hint="('ddim'/'ddpm' belong to objective 'ddpm'.)",
        )

    def draw(self, x0: jax.Array, rng: jax.Array, noise: Optional[jax.Array] = None):
        """The training draw: (x_t, t float32 [B], noise, velocity target), for losses built outside
        `loss` (e.g. terms on the x0 estimate x_t - t * v_hat)."""
        t_rng, n_rng = jax.random.split(rng)
        if noise is None:
            noise = jax.random.normal(n_rng, x0.shape, jnp.float32).astype(x0.dtype)
        t = sample_time(
            t_rng, x0.shape[0], sampler=self.time_sampler, logit_mean=self.logit_mean,
            logit_std=self.logit_std, shift=self.time_shift,
        )
        return interpolate(x0, noise, t), t, noise, velocity_target(x0, noise)

    def loss(self, apply_fn, x0, cond, rng, *, mask=None, noise=None, weight=None):
        """Velocity-matching loss.

        Args:
          apply_fn: (x_t [B, ...], t float32 [B], cond) -> velocity [B, ...].
          x0: [B, ...] data.
          cond: any pytree, passed to `apply_fn` untouched.
          rng: PRNG key for times (and noise when `noise` is None).
          mask: optional bool/float [B, N] or x0-shaped real-entry mask.
          noise: optional [B, ...] noise replacing the internal Gaussian draw.
          weight: optional per-element weights broadcastable to x0.

        Returns:
          (loss float32 [B], aux) with aux = {'t_mean': scalar}.
        """
        x_t, t, noise, _ = self.draw(x0, rng, noise)
        pred = apply_fn(x_t, t, cond)
        per_example = velocity_loss(pred, x0, noise, mask=mask, weight=weight)
        return per_example, {"t_mean": jnp.mean(t)}

    def sample(self, apply_fn, noise, *, steps=None, sampler=None, rng=None, shift=None):
        """Integrates the predicted velocity from `noise` at t=1 to data at t=0.

        Args:
          apply_fn: (x [B, ...] float32, t float32 [B]) -> velocity, with the
            condition already closed over (and guided if wanted).
          noise: [B, ...] standard Gaussian noise, any trailing shape.
          steps: static step count; None uses `sample_steps`.
          sampler: 'euler' or 'heun'; None uses `sampler`.
          rng: unused (the ODE is deterministic); accepted for interface parity.
          shift: grid shift; None uses `sample_shift`.

        Returns:
          [B, ...] samples in `noise.dtype`.
        """
        del rng
        method = self._check_sampler(self.sampler if sampler is None else sampler)
        return integrate(
            apply_fn, noise,
            steps=self.sample_steps if steps is None else steps,
            method=method,
            shift=self.sample_shift if shift is None else shift,
        )
