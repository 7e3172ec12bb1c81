"""Classifier-free guidance: condition dropout for training, nested guidance for sampling.

Nested multi-condition guidance (one scale per condition, conditions enabled
cumulatively, as used for audio / emotion / identity in MoDA):
  preds[0]: every condition dropped;  preds[k]: conditions 1..k enabled.
  out = preds[0] + sum_k scales[k-1] (preds[k] - preds[k-1]).
With one condition this is u + s (c - u). With every scale equal to 1 the sum
telescopes to preds[K], the fully conditioned prediction.
"""

import numbers
from typing import Any, Callable, Sequence, Union

import jax
import jax.numpy as jnp

Scale = Union[float, jax.Array]


def drop_condition(rng: jax.Array, values: jax.Array, p: Scale, null_value: Any) -> jax.Array:
    """Replaces each example's condition by `null_value` with probability p.

    One Bernoulli draw per example, shared by all trailing axes. Use a separate
    call (own rng and p) per condition.

    Args:
      rng: PRNG key.
      values: [B] integer labels or [B, ...] float embeddings.
      p: drop probability in [0, 1]; p=0 never drops, p=1 always drops.
      null_value: replacement, a scalar (e.g. the null class index) or an array
        broadcastable to `values` (e.g. a null embedding [D]).

    Returns:
      Array with the shape and dtype of `values`.
    """
    batch = values.shape[0]
    drop = jax.random.bernoulli(rng, p, (batch,))
    drop = drop.reshape((batch,) + (1,) * (values.ndim - 1))
    null = jnp.asarray(null_value, values.dtype)
    return jnp.where(drop, null, values)


def combine(preds: Sequence[jax.Array], scales: Sequence[Scale]) -> jax.Array:
    """Nested guidance: preds[0] + sum_k scales[k-1] (preds[k] - preds[k-1]).

    Args:
      preds: K+1 predictions of equal shape [B, ...]; preds[0] has every
        condition dropped, preds[k] has conditions 1..k enabled.
      scales: K guidance scales (Python floats or scalar arrays).

    Returns:
      [B, ...] guided prediction.
    """
    if len(preds) != len(scales) + 1:
        raise ValueError(f"Need len(preds) == len(scales) + 1, got {len(preds)} and {len(scales)}.")
    out = preds[0]
    for k, scale in enumerate(scales, start=1):
        out = out + scale * (preds[k] - preds[k - 1])
    return out


def _all_ones(scales: Sequence[Scale]) -> bool:
    # Only concrete Python numbers can be checked at trace time; arrays take the general path.
    return all(isinstance(s, numbers.Number) and float(s) == 1.0 for s in scales)


def guided_apply_fn(
    apply_fn: Callable[[jax.Array, jax.Array, Any], jax.Array],
    conds: Sequence[Any],
    scales: Sequence[Scale],
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Wraps a conditional model into a guided (x, t) -> prediction function.

    All K+1 condition variants are evaluated in one call with the batch
    concatenated K+1 times (variant-major), then split and combined. When every
    scale is a Python 1.0 the result is exactly preds[K], so only the fully
    conditioned variant is evaluated (one call at batch B).

    Args:
      apply_fn: (x [B', ...], t float32 [B'], cond) -> prediction [B', ...].
      conds: K+1 condition pytrees of identical structure whose leaves have a
        leading batch axis B; conds[0] fully null, conds[k] with conditions
        1..k enabled.
      scales: K guidance scales.

    Returns:
      guided(x [B, ...], t float32 [B]) -> [B, ...].
    """
    conds = list(conds)
    if len(conds) != len(scales) + 1:
        raise ValueError(f"Need len(conds) == len(scales) + 1, got {len(conds)} and {len(scales)}.")
    if _all_ones(scales):
        full = conds[-1]
        return lambda x, t: apply_fn(x, t, full)

    n = len(conds)
    stacked = jax.tree.map(lambda *leaves: jnp.concatenate(leaves, axis=0), *conds)

    def guided(x: jax.Array, t: jax.Array) -> jax.Array:
        x_all = jnp.concatenate([x] * n, axis=0)
        t_all = jnp.concatenate([t] * n, axis=0)
        preds = jnp.split(apply_fn(x_all, t_all, stacked), n, axis=0)
        return combine(preds, scales)

    return guided
