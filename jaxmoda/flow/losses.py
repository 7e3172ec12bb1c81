"""Per-example mean squared error with padding masks and element weights."""

from typing import Optional

import jax
import jax.numpy as jnp


def expand_mask(mask: jax.Array, shape: tuple) -> jax.Array:
    """Broadcasts a leading-axes mask to a full element mask.

    Args:
      mask: bool or float, shape a prefix of `shape`: [B], [B, N] over the token
        axis of a [B, N, ...] array, or `shape` itself. Nonzero means real.
      shape: the full element shape, e.g. x0.shape.

    Returns:
      bool array of `shape`.
    """
    mask = jnp.asarray(mask)
    if tuple(mask.shape) != tuple(shape[: mask.ndim]):
        raise ValueError(
            f"mask shape {tuple(mask.shape)} must be a leading prefix of the data shape {tuple(shape)}."
        )
    real = mask.astype(bool).reshape(mask.shape + (1,) * (len(shape) - mask.ndim))
    return jnp.broadcast_to(real, shape)


def masked_mse(
    pred: jax.Array,
    target: jax.Array,
    mask: Optional[jax.Array] = None,
    weight: Optional[jax.Array] = None,
) -> jax.Array:
    """Per-example mean squared error over real entries.

    Masked-out entries are removed with `where` before any arithmetic, so any
    values there (even inf/NaN) change neither the loss nor its gradients.

    Args:
      pred: [B, ...] model prediction.
      target: [B, ...] regression target, same shape as `pred`.
      mask: optional bool/float, [B, N] (leading token axis) or `pred.shape`;
        nonzero means real.
      weight: optional per-element loss weights broadcastable (numpy rules,
        trailing-aligned) to `pred.shape`. They scale the squared error; the
        normaliser stays the real-entry count, so weights act as loss scales.

    Returns:
      float32 [B]: sum of (weighted) squared errors over real entries divided by
      the number of real entries; 0 for an example with no real entries.
    """
    shape = pred.shape
    batch = shape[0]
    diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
    w = None if weight is None else jnp.broadcast_to(jnp.asarray(weight, jnp.float32), shape)
    if mask is None:
        err = jnp.square(diff) if w is None else w * jnp.square(diff)
        return jnp.mean(err.reshape(batch, -1), axis=1)
    real = expand_mask(mask, shape)
    diff = jnp.where(real, diff, 0.0)
    err = jnp.square(diff) if w is None else jnp.where(real, w, 0.0) * jnp.square(diff)
    total = jnp.sum(err.reshape(batch, -1), axis=1)
    count = jnp.sum(real.reshape(batch, -1), axis=1, dtype=jnp.float32)
    # max(count, 1) turns an all-padding example into 0/1 = 0 rather than 0/0.
    return total / jnp.maximum(count, 1.0)
