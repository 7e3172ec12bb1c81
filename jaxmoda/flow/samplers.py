"""ODE integrators for a velocity field, from noise (t=1) to data (t=0).

Each integrator is a single `jax.lax.fori_loop` over the time grid, so the
velocity function is traced once (twice for Heun) whatever the step count and a
whole sampler jits as one function. The number of steps comes from the grid's
static length.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from jaxmoda.flow._validate import check_choice
from jaxmoda.flow.timesteps import Scalar, sampling_grid

ODE_METHODS = ("euler", "heun")

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]


def _batch_time(t: jax.Array, batch: int) -> jax.Array:
    return jnp.full((batch,), t, jnp.float32)


def euler_sample(velocity_fn: VelocityFn, noise: jax.Array, grid: jax.Array) -> jax.Array:
    """Explicit Euler integration of dx/dt = v(x, t) along `grid`.

    Args:
      velocity_fn: (x [B, ...] float32, t float32 [B]) -> velocity, same shape as x.
      noise: [B, ...] starting point at grid[0] (normally t=1).
      grid: float32 [steps + 1] times, normally from `sampling_grid`.

    Returns:
      [B, ...] state at grid[-1], in `noise.dtype`. Uses `steps` evaluations.
    """
    batch = noise.shape[0]

    def body(i, x):
        t, t_next = grid[i], grid[i + 1]
        v = velocity_fn(x, _batch_time(t, batch)).astype(jnp.float32)
        return x + (t_next - t) * v

    # The state is carried in float32 so that low-precision noise does not accumulate rounding.
    x = jax.lax.fori_loop(0, grid.shape[0] - 1, body, noise.astype(jnp.float32))
    return x.astype(noise.dtype)


def heun_sample(velocity_fn: VelocityFn, noise: jax.Array, grid: jax.Array) -> jax.Array:
    """Heun's second-order method (explicit trapezoid) along `grid`.

    Every step, the last one included, is corrected: in rectified flow the
    velocity at t=0 is finite, unlike the sigma=0 endpoint of EDM.

    Args:
      velocity_fn: (x [B, ...] float32, t float32 [B]) -> velocity, same shape as x.
      noise: [B, ...] starting point at grid[0] (normally t=1).
      grid: float32 [steps + 1] times, normally from `sampling_grid`.

    Returns:
      [B, ...] state at grid[-1], in `noise.dtype`. Uses 2 * steps evaluations.
    """
    batch = noise.shape[0]

    def body(i, x):
        t, t_next = grid[i], grid[i + 1]
        dt = t_next - t
        v = velocity_fn(x, _batch_time(t, batch)).astype(jnp.float32)
        x_euler = x + dt * v
        v_next = velocity_fn(x_euler, _batch_time(t_next, batch)).astype(jnp.float32)
        return x + dt * 0.5 * (v + v_next)

    x = jax.lax.fori_loop(0, grid.shape[0] - 1, body, noise.astype(jnp.float32))
    return x.astype(noise.dtype)


def integrate(
    velocity_fn: VelocityFn,
    noise: jax.Array,
    *,
    steps: int,
    method: str = "euler",
    shift: Scalar = 1.0,
) -> jax.Array:
    """Integrates a velocity field from t=1 to t=0 on `sampling_grid(steps, shift)`.

    Args:
      velocity_fn: (x [B, ...], t float32 [B]) -> velocity [B, ...].
      noise: [B, ...] Gaussian noise (any trailing shape).
      steps: static number of integration steps.
      method: 'euler' or 'heun'.
      shift: time shift of the grid; see `timesteps.shift_time`.

    Returns:
      [B, ...] sample at t=0, in `noise.dtype`.
    """
    check_choice("ODE method", method, ODE_METHODS)
    grid = sampling_grid(steps, shift)
    if method == "euler":
        return euler_sample(velocity_fn, noise, grid)
    return heun_sample(velocity_fn, noise, grid)
