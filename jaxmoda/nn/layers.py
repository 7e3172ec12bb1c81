"""Small building blocks with logical axis names on every parameter."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmoda.nn import logical


def dense(in_dim: int, out_dim: int, names: Sequence[str | None], *, kernel_init=None, bias_init=None,
          use_bias: bool = True, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.Linear:
    """`nnx.Linear` whose kernel [in, out] carries the logical names `names` (bias takes `names[1]`)."""
    kernel_init = kernel_init or nnx.initializers.xavier_uniform()
    bias_init = bias_init or nnx.initializers.zeros_init()
    return nnx.Linear(
        in_dim, out_dim, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
        kernel_init=nnx.with_partitioning(kernel_init, tuple(names)),
        bias_init=nnx.with_partitioning(bias_init, (names[1],)), rngs=rngs)


class Mlp(nnx.Module):
    """width -> hidden -> width with tanh-GELU (DiT's choice)."""

    def __init__(self, dim: int, hidden: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.fc1 = dense(dim, hidden, ("embed", "mlp"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc2 = dense(hidden, dim, ("mlp", "embed"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        h = jax.nn.gelu(self.fc1(x_btd), approximate=True)
        h = logical.constrain(h, ("act_batch", "act_tokens", "act_mlp"))
        return self.fc2(h)


def layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """LayerNorm without affine parameters; statistics in fp32, result in the input dtype."""
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
    return ((xf - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def rms_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """RMSNorm without affine parameters; statistics in fp32, result in the input dtype."""
    xf = x.astype(jnp.float32)
    return (xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + eps)).astype(x.dtype)


def modulate(x_btd: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    """adaLN modulation; shift/scale are per example [B, D] or per token [B, T, D]."""
    if shift.ndim == 2:
        shift, scale = shift[:, None], scale[:, None]
    return x_btd * (1 + scale) + shift


CONV_AXES = ("conv_h", "conv_w", "conv_in", "conv_out")


def conv(in_ch: int, out_ch: int, kernel: int = 3, *, stride: int = 1, padding="SAME", kernel_init=None,
         use_bias: bool = True, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.Conv:
    """NHWC `nnx.Conv` whose kernel [k, k, in, out] carries logical names (replicated by the default rules)."""
    kernel_init = kernel_init or nnx.initializers.lecun_normal()
    return nnx.Conv(in_ch, out_ch, (kernel, kernel), strides=(stride, stride), padding=padding, use_bias=use_bias,
                    dtype=dtype, param_dtype=param_dtype,
                    kernel_init=nnx.with_partitioning(kernel_init, CONV_AXES),
                    bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("conv_out",)), rngs=rngs)


def group_norm(channels: int, *, max_groups: int = 32, epsilon: float = 1e-6, scale_init=None, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.GroupNorm:
    """GroupNorm with the largest group count <= max_groups that divides `channels`."""
    groups = max(g for g in range(1, max_groups + 1) if channels % g == 0)
    scale_init = scale_init or nnx.initializers.ones_init()
    return nnx.GroupNorm(channels, num_groups=groups, epsilon=epsilon, dtype=dtype, param_dtype=param_dtype,
                         scale_init=nnx.with_partitioning(scale_init, ("conv_out",)),
                         bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("conv_out",)), rngs=rngs)
