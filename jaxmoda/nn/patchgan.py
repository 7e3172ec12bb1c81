"""The pix2pix / taming-transformers N-layer PatchGAN discriminator, NHWC, as a Flax NNX module.

Layout (kernel 4x4, padding 1 on every side, as in the original):

    conv s2 (in -> ndf) + LeakyReLU(0.2)
    for n in 1..n_layers-1:  conv s2 (ndf*min(2^(n-1), 8) -> ndf*min(2^n, 8)) + norm + LeakyReLU(0.2)
    conv s1 (-> ndf*min(2^n_layers, 8)) + norm + LeakyReLU(0.2)
    conv s1 (-> 1)                                   # per-patch logits

Spatial size: each stride-2 conv maps H -> H/2 (even H), each stride-1 conv maps H -> H-1, so
H_out = H / 2^n_layers - 2 (256 -> 30 for n_layers=3; 64 -> 6; 32 -> 2; with n_layers=2: 64 -> 14, 32 -> 6).

Normalisation. The original (pix2pix `NLayerDiscriminator`, reused by taming's `VQLPIPSWithDiscriminator`
with `use_actnorm=False`, which is the D²iT / DQ-VAE setting) uses BatchNorm2d, with the convolutions in
front of a norm bias-free. BatchNorm's running statistics are mutable non-parameter state: jaxmoda models
keep all their state in `nnx.Param` and are run functionally from a pure params dict (`nnx.split` /
`nnx.merge`), so there is no place to thread batch stats through a jitted step; train-mode BatchNorm
also couples the examples of a batch (and, with a data-sharded batch, the devices). GroupNorm is the
stateless per-example replacement used here by default (`norm="group"`); `norm="none"` drops the norm
and gives those convolutions a bias instead. Results therefore differ from a BatchNorm discriminator.

Init follows pix2pix `weights_init`: conv kernels N(0, 0.02), biases 0, norm scales N(1, 0.02), norm
biases 0. Every parameter carries logical axis names (`conv_h`, `conv_w`, `conv_in`, `conv_out`), which
the default sharding rules leave replicated.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
from flax import nnx

from jaxmoda.errors import ConfigError
from jaxmoda.nn import layers

CONV_NAMES = layers.CONV_AXES
_PAD1 = ((1, 1), (1, 1))


def _normal_around_one(stddev: float):
    def init(key, shape, dtype=jnp.float32):
        return (1.0 + stddev * jax.random.normal(key, shape, jnp.float32)).astype(dtype)
    return init


def conv(in_ch: int, out_ch: int, kernel: int, stride: int, *, use_bias: bool = True, padding=_PAD1,
         init_std: float = 0.02, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.Conv:
    """The shared conv with pix2pix's padding 1 and N(0, std) init."""
    return layers.conv(in_ch, out_ch, kernel, stride=stride, padding=padding, use_bias=use_bias,
                       kernel_init=nnx.initializers.normal(init_std), dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def group_norm(channels: int, max_groups: int = 32, *, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs) -> nnx.GroupNorm:
    """The shared GroupNorm with scale init N(1, 0.02) (pix2pix's norm init)."""
    return layers.group_norm(channels, max_groups=max_groups, epsilon=1e-5, scale_init=_normal_around_one(0.02),
                             dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class PatchDiscriminator(nnx.Module):
    """N-layer PatchGAN: images [B, H, W, C] -> patch logits [B, H/2^n_layers - 2, W/2^n_layers - 2, 1].

    Args:
        in_channels: image channels C.
        ndf: width of the first convolution.
        n_layers: number of stride-2 convolutions (3 in pix2pix/taming: 70x70 receptive field).
        norm: "group" (GroupNorm, default; see the module docstring) or "none".
        num_groups: upper bound on GroupNorm groups (the gcd with each width is used).
        rngs: parameter init RNGs.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, *, norm: str = "group",
                 num_groups: int = 32, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        if norm not in ("group", "none"):
            raise ConfigError(f"PatchDiscriminator norm={norm!r} is unknown; use 'group' or 'none'")
        if n_layers < 1 or ndf < 1 or in_channels < 1:
            raise ConfigError(f"PatchDiscriminator needs n_layers, ndf, in_channels >= 1; got "
                              f"n_layers={n_layers}, ndf={ndf}, in_channels={in_channels}")
        self.n_layers, self.norm_kind = n_layers, norm
        kw = {"dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        use_bias = norm == "none"      # a bias in front of a norm is redundant (the original drops it too)
        self.conv_in = conv(in_channels, ndf, 4, 2, **kw)
        convs, norms = [], []
        prev = ndf
        for n in range(1, n_layers + 1):
            width = ndf * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            convs.append(conv(prev, width, 4, stride, use_bias=use_bias, **kw))
            if norm == "group":
                norms.append(group_norm(width, num_groups, **kw))
            prev = width
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.conv_out = conv(prev, 1, 4, 1, **kw)

    def __call__(self, x_bhwc: jax.Array) -> jax.Array:
        """Patch logits [B, H', W', 1] for images [B, H, W, C] (any range; taming feeds [-1, 1])."""
        h = jax.nn.leaky_relu(self.conv_in(x_bhwc), 0.2)
        for i, c in enumerate(self.convs):
            h = c(h)
            if self.norm_kind == "group":
                h = self.norms[i](h)
            h = jax.nn.leaky_relu(h, 0.2)
        return self.conv_out(h)


def patch_output_size(size: int, n_layers: int = 3) -> int:
    """Output side for an input side `size`: n_layers stride-2 convs, then two stride-1 4x4 convs."""
    for _ in range(n_layers):
        size = (size + 2 - 4) // 2 + 1
    return size - 2
