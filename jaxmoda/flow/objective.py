"""The training/sampling interface shared by every flow objective, and its config."""

from typing import Any, Callable, Optional, Protocol

import jax
import ml_collections

from jaxmoda.flow._validate import check_choice
from jaxmoda.flow.ddpm import DDPM
from jaxmoda.flow.rectified import RectifiedFlow

OBJECTIVES = ("rectified_flow", "ddpm")
_DEFAULT_SAMPLER = {"rectified_flow": "euler", "ddpm": "ddim"}


class Objective(Protocol):
    """What a model trainer and a sampler need from a diffusion/flow objective.

    Models are called as apply_fn(x_t, t, cond): x_t has the data's shape
    [B, ...], t is float32 [B] in [0, 1] (data at 0, noise at 1; the model
    scales it itself), cond is any pytree passed through untouched.
    """

    def loss(
        self,
        apply_fn: Callable[[jax.Array, jax.Array, Any], jax.Array],
        x0: jax.Array,
        cond: Any,
        rng: jax.Array,
        *,
        mask: Optional[jax.Array] = None,
        noise: Optional[jax.Array] = None,
        weight: Optional[jax.Array] = None,
    ) -> tuple[jax.Array, dict]:
        """Per-example loss float32 [B] and aux metrics (scalars).

        mask: optional bool/float [B, N] over the leading token axis of x0
        [B, N, ...] (or x0-shaped); the loss averages real entries only, per
        example by its real count (zero real -> 0, never NaN). noise: optional
        override of the Gaussian noise (x0-shaped). weight: optional
        per-element loss weights broadcastable to x0.
        """

    def sample(
        self,
        apply_fn: Callable[[jax.Array, jax.Array], jax.Array],
        noise: jax.Array,
        *,
        steps: Optional[int] = None,
        sampler: Optional[str] = None,
        rng: Optional[jax.Array] = None,
        shift: Optional[float] = None,
    ) -> jax.Array:
        """From noise at t=1 to data at t=0; apply_fn(x, t) has cond closed over.

        None for steps / sampler / shift means the objective's configured default.
        """


def default_objective_config() -> ml_collections.ConfigDict:
    """Default objective config (rectified flow, SD3-style logit-normal times).

    Fields:
      name: 'rectified_flow' | 'ddpm'.
      time_sampler: 'uniform' | 'logit_normal' (rectified flow only; DDPM trains
        on uniform integer timesteps, as DiT).
      logit_mean, logit_std: logit-normal parameters (rectified flow only).
      time_shift: training time shift s, t' = s t / (1 + (s - 1) t) (RF only).
      num_train_timesteps, beta_start, beta_end: DDPM linear schedule.
      sample_steps: default number of sampling steps.
      sampler: 'auto' (euler for RF, ddim for DDPM) | 'euler' | 'heun' (RF) |
        'ddim' | 'ddpm' (DDPM).
      sample_shift: sampling-grid shift (RF only; must be 1.0 for DDPM).
      cfg_scale: classifier-free guidance scale for sampling (read by callers).
      cfg_dropout: condition drop probability in training (read by callers).
    """
    cfg = ml_collections.ConfigDict()
    cfg.name = "rectified_flow"
    cfg.time_sampler = "logit_normal"
    cfg.logit_mean = 0.0
    cfg.logit_std = 1.0
    cfg.time_shift = 1.0
    cfg.num_train_timesteps = 1000
    cfg.beta_start = 1e-4
    cfg.beta_end = 0.02
    cfg.sample_steps = 50
    cfg.sampler = "auto"
    cfg.sample_shift = 1.0
    cfg.cfg_scale = 1.5
    cfg.cfg_dropout = 0.1
    return cfg


def make_objective(cfg: ml_collections.ConfigDict) -> Objective:
    """Builds the objective named by `cfg.name` from a config like `default_objective_config()`.

    Missing fields take their defaults. Unknown names/samplers raise ValueError.
    """
    merged = default_objective_config()
    merged.update(dict(cfg))
    name = check_choice("objective name", merged.name, OBJECTIVES)
    sampler = _DEFAULT_SAMPLER[name] if merged.sampler == "auto" else merged.sampler
    if name == "rectified_flow":
        return RectifiedFlow(
            time_sampler=merged.time_sampler,
            logit_mean=float(merged.logit_mean),
            logit_std=float(merged.logit_std),
            time_shift=float(merged.time_shift),
            sample_steps=int(merged.sample_steps),
            sampler=sampler,
            sample_shift=float(merged.sample_shift),
        )
    if float(merged.sample_shift) != 1.0:
        raise ValueError(f"Objective 'ddpm' does not support sample_shift (got {merged.sample_shift}).")
    return DDPM(
        num_train_timesteps=int(merged.num_train_timesteps),
        beta_start=float(merged.beta_start),
        beta_end=float(merged.beta_end),
        sample_steps=int(merged.sample_steps),
        sampler=sampler,
    )
