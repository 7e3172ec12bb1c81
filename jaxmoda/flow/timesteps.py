"""Training-time samplers and sampling-time grids for continuous flow time.

Convention throughout `jaxmoda.flow`: data at t=0, noise at t=1. Times handed to
models are float32 [B] in [0, 1].
"""

import numbers
from typing import Union

import jax
import jax.numpy as jnp

from jaxmoda.flow._validate import check_choice

TIME_SAMPLERS = ("uniform", "logit_normal")

Scalar = Union[float, jax.Array]


def _is_exactly_one(value) -> bool:
    # Only concrete Python numbers can be tested; traced shifts always take the general path.
    return isinstance(value, numbers.Number) and float(value) == 1.0


def shift_time(t: jax.Array, shift: Scalar) -> jax.Array:
    """Applies the resolution shift t' = s t / (1 + (s - 1) t) (SD3).

    s > 1 moves mass towards t=1 (more noise). The map is monotone increasing on
    [0, 1] and fixes 0 and 1.

    Args:
      t: times in [0, 1], any shape.
      shift: s > 0. A Python 1.0 returns `t` unchanged (bit-exact).

    Returns:
      Shifted times, same shape as `t`.
    """
    if _is_exactly_one(shift):
        return t
    return shift * t / (1.0 + (shift - 1.0) * t)


def sample_time(
    rng: jax.Array,
    batch_size: int,
    *,
    sampler: str = "logit_normal",
    logit_mean: Scalar = 0.0,
    logit_std: Scalar = 1.0,
    shift: Scalar = 1.0,
) -> jax.Array:
    """Draws training times.

    Args:
      rng: PRNG key.
      batch_size: B (static).
      sampler: 'uniform' (U[0, 1)) or 'logit_normal' (sigmoid of N(logit_mean,
        logit_std^2), SD3).
      logit_mean: mean of the logit for 'logit_normal'.
      logit_std: std of the logit for 'logit_normal'.
      shift: optional time shift applied after sampling; see `shift_time`.

    Returns:
      t: float32 [B] in [0, 1].
    """
    check_choice("time sampler", sampler, TIME_SAMPLERS)
    if sampler == "uniform":
        t = jax.random.uniform(rng, (batch_size,), jnp.float32)
    else:
        z = jax.random.normal(rng, (batch_size,), jnp.float32)
        t = jax.nn.sigmoid(logit_mean + logit_std * z)
    return shift_time(t, shift).astype(jnp.float32)


def sampling_grid(steps: int, shift: Scalar = 1.0) -> jax.Array:
    """Time grid for integrating from noise to data.

    Args:
      steps: number of integration steps (static int >= 1).
      shift: time shift applied to a uniform grid; see `shift_time`.

    Returns:
      float32 [steps + 1], strictly decreasing, grid[0] == 1 and grid[-1] == 0.
    """
    if not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a static int >= 1, got {steps!r}.")
    grid = jnp.linspace(1.0, 0.0, steps + 1, dtype=jnp.float32)
    return shift_time(grid, shift).astype(jnp.float32)


def broadcast_time(t: jax.Array, ndim: int) -> jax.Array:
    """Reshapes per-example times [B] to [B, 1, ..., 1] with `ndim` axes in total."""
    return jnp.reshape(t, t.shape + (1,) * (ndim - t.ndim))
