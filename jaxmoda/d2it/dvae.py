"""The Dynamic VAE: a hierarchical encoder with one KL head per grain, and a position-aware decoder.

Encoder: a ResNet trunk (conv_in, levels of ResBlocks with stride-2 downsampling, attention at chosen
resolutions) whose level outputs at H/f for each grain factor f (8 = fine, 16 = coarse) feed separate
heads (mid block: Res, Attn, Res; GroupNorm, SiLU, 3x3 conv to 2 n_z channels = mean, log-variance).
Decoder: the dense neighbour-copied grid at the finest factor, plus a Fourier + learned row/column
position embedding (so copies in a coarse block read as one smooth region), a mid block, ResBlock
levels with nearest x2 upsampling back to pixels. Grain maps never enter the decoder: granularity is
implicit in the copies, as in the predecessor DQ-VAE.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmoda.nn.attention import Attention
from jaxmoda.nn.layers import conv, group_norm


class ResBlock(nnx.Module):
    """GN, SiLU, conv3 twice, with a 1x1 conv skip when the width changes."""

    def __init__(self, cin: int, cout: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.n1, self.c1 = group_norm(cin, dtype=dtype, rngs=rngs), conv(cin, cout, dtype=dtype, rngs=rngs)
        self.n2, self.c2 = group_norm(cout, dtype=dtype, rngs=rngs), conv(cout, cout, dtype=dtype, rngs=rngs)
        self.skip = conv(cin, cout, 1, dtype=dtype, rngs=rngs) if cin != cout else None

    def __call__(self, x):
        h = self.c1(jax.nn.silu(self.n1(x)))
        h = self.c2(jax.nn.silu(self.n2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


class AttnBlock(nnx.Module):
    """Single-head self-attention over all pixels (the shared attention), pre-GroupNorm, residual."""

    def __init__(self, ch: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.norm = group_norm(ch, dtype=dtype, rngs=rngs)
        self.attn = Attention(ch, 1, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        b, h, w, c = x.shape
        y = self.attn(self.norm(x).reshape(b, h * w, c))
        return x + y.reshape(b, h, w, c)


class MidBlock(nnx.Module):
    def __init__(self, ch: int, *, attention: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
        self.r1 = ResBlock(ch, ch, dtype=dtype, rngs=rngs)
        self.attn = AttnBlock(ch, dtype=dtype, rngs=rngs) if attention else None
        self.r2 = ResBlock(ch, ch, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = self.r1(x)
        if self.attn is not None:
            x = self.attn(x)
        return self.r2(x)


class Level(nnx.Module):
    """`num_blocks` ResBlocks at one resolution, each followed by attention when `attention` is set."""

    def __init__(self, cin: int, cout: int, num_blocks: int, *, attention: bool, dtype=jnp.float32, rngs: nnx.Rngs):
        self.blocks = nnx.List([ResBlock(cin if i == 0 else cout, cout, dtype=dtype, rngs=rngs) for i in range(num_blocks)])
        self.attns = nnx.List([AttnBlock(cout, dtype=dtype, rngs=rngs) if attention else None for _ in range(num_blocks)])

    def __call__(self, x):
        for block, attn in zip(self.blocks, self.attns):
            x = block(x)
            if attn is not None:
                x = attn(x)
        return x


def _log2(f: int) -> int:
    n = int(round(math.log2(f)))
    if 2 ** n != f:
        raise ValueError(f"grain factor {f} is not a power of two")
    return n


class HierarchicalEncoder(nnx.Module):
    """Image [B,H,W,3] in [-1,1] -> {factor: (mean, logvar) each [B, H/f, W/f, n_z]} for every grain factor."""

    def __init__(self, *, in_channels: int = 3, ch: int = 128, ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 2, attn_resolutions: Sequence[int] = (32, 16), resolution: int = 256,
                 factors: Sequence[int] = (8, 16), z_channels: int = 4, head_attention: bool = True,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        self.factors = tuple(sorted(factors))
        levels = len(ch_mult)
        need = max(_log2(f) for f in self.factors)
        if need >= levels:
            raise ValueError(f"grain factor {max(self.factors)} needs {need + 1} encoder levels, ch_mult has {levels}")
        self.conv_in = conv(in_channels, ch, dtype=dtype, rngs=rngs)
        self.levels, self.downs = nnx.List(), nnx.List()
        cin, res = ch, resolution
        for i in range(need + 1):
            cout = ch * ch_mult[i]
            self.levels.append(Level(cin, cout, num_res_blocks, attention=res in attn_resolutions, dtype=dtype, rngs=rngs))
            cin = cout
            self.downs.append(conv(cin, cin, 3, stride=2, dtype=dtype, rngs=rngs) if i < need else None)
            res //= 2
        self.level_channels = [ch * ch_mult[_log2(f)] for f in self.factors]
        self.heads = nnx.List()
        for c in self.level_channels:
            self.heads.append(nnx.List([MidBlock(c, attention=head_attention, dtype=dtype, rngs=rngs),
                                        group_norm(c, dtype=dtype, rngs=rngs),
                                        conv(c, 2 * z_channels, dtype=dtype, rngs=rngs)]))

    def __call__(self, x_bhwc: jax.Array) -> dict[int, tuple[jax.Array, jax.Array]]:
        taps = {_log2(f): f for f in self.factors}
        h = self.conv_in(x_bhwc)
        out = {}
        for i, level in enumerate(self.levels):
            h = level(h)
            if i in taps:
                f = taps[i]
                mid, norm, proj = self.heads[self.factors.index(f)]
                moments = proj(jax.nn.silu(norm(mid(h)))).astype(jnp.float32)
                mean, logvar = jnp.split(moments, 2, axis=-1)
                out[f] = (mean, jnp.clip(logvar, -30.0, 20.0))
            if self.downs[i] is not None:
                h = self.downs[i](h)
        return out


class PositionEmbedding(nnx.Module):
    """Fourier (sin of a linear map of (y, x) in [-1, 1]) plus learned row and column embeddings."""

    def __init__(self, grid: int, channels: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(1.0)
        self.freq = nnx.Param(init(rngs.params(), (2, channels)))
        self.phase = nnx.Param(jnp.zeros((channels,)))
        self.rows = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (grid, channels)))
        self.cols = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (grid, channels)))
        self.grid = grid

    def __call__(self, h: int, w: int) -> jax.Array:
        ys, xs = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing="ij")
        fourier = jnp.sin(jnp.stack([ys, xs], -1) @ self.freq[...] + self.phase[...])
        return fourier + self.rows[...][:h, None] + self.cols[...][None, :w]


class Decoder(nnx.Module):
    """Dense latent grid [B, H/f, W/f, n_z] (f = finest factor) -> image [B, H, W, out_channels]."""

    def __init__(self, *, out_channels: int = 3, ch: int = 128, ch_mult: Sequence[int] = (1, 1, 2, 2),
                 num_res_blocks: int = 3, attn_resolutions: Sequence[int] = (32,), resolution: int = 256,
                 z_channels: int = 4, position_embedding: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
        levels = len(ch_mult)
        grid = resolution // 2 ** (levels - 1)
        self.pos = PositionEmbedding(grid, z_channels, rngs=rngs) if position_embedding else None
        top = ch * ch_mult[-1]
        self.conv_in = conv(z_channels, top, dtype=dtype, rngs=rngs)
        self.mid = MidBlock(top, dtype=dtype, rngs=rngs)
        self.levels, self.ups = nnx.List(), nnx.List()
        cin, res = top, grid
        for i in reversed(range(levels)):
            cout = ch * ch_mult[i]
            self.levels.append(Level(cin, cout, num_res_blocks, attention=res in attn_resolutions, dtype=dtype, rngs=rngs))
            cin = cout
            self.ups.append(conv(cin, cin, dtype=dtype, rngs=rngs) if i > 0 else None)
            res *= 2 if i > 0 else 1
        self.norm_out = group_norm(cin, dtype=dtype, rngs=rngs)
        self.conv_out = conv(cin, out_channels, dtype=dtype, rngs=rngs)

    def features(self, z_bhwc: jax.Array) -> jax.Array:
        """Everything but the last conv (the adaptive GAN weight differentiates through that conv alone)."""
        b, h, w, _ = z_bhwc.shape
        if self.pos is not None:
            z_bhwc = z_bhwc + self.pos(h, w)[None].astype(z_bhwc.dtype)
        x = self.mid(self.conv_in(z_bhwc))
        for level, up in zip(self.levels, self.ups):
            x = level(x)
            if up is not None:
                b_, h_, w_, c_ = x.shape
                x = up(jax.image.resize(x, (b_, 2 * h_, 2 * w_, c_), "nearest"))
        return jax.nn.silu(self.norm_out(x))

    def __call__(self, z_bhwc: jax.Array) -> jax.Array:
        return self.conv_out(self.features(z_bhwc)).astype(jnp.float32)


def kl_divergence(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per element."""
    return 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


def sample_posterior(rng: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    return mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)


class DynamicVAE(nnx.Module):
    """Encoder + decoder (+ an optional PatchGAN discriminator trained alongside, see tasks/dvae.py)."""

    def __init__(self, *, encoder: dict, decoder: dict, discriminator: dict | None = None, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.encoder = HierarchicalEncoder(**encoder, dtype=dtype, rngs=rngs)
        self.decoder = Decoder(**decoder, dtype=dtype, rngs=rngs)
        self.factors = self.encoder.factors
        if discriminator is not None:
            from jaxmoda.nn.patchgan import PatchDiscriminator
            self.disc = PatchDiscriminator(**discriminator, rngs=rngs)
        else:
            self.disc = None

    def encode(self, x_bhwc: jax.Array, grain_bhw: jax.Array, rng: jax.Array | None = None):
        """Returns (z_dense [B, H/8, W/8, n_z], kl [B]): sampled (rng given) or posterior means (rng None).

        The KL is averaged over the codes the image really uses: fine-head codes in fine regions and
        coarse-head codes in coarse regions, each code counted once (a coarse code is not counted for
        its 4 copies). This keeps the KL weight comparable across fine ratios.
        """
        from jaxmoda.d2it.grains import FINE
        from jaxmoda.d2it.tokens import neighbour_copy
        if len(self.factors) != 2:
            raise NotImplementedError("the dense dual-grain latent is defined for two grains; "
                                      "k-grain encoders build but neighbour copying for k > 2 is not written yet")
        moments = self.encoder(x_bhwc)
        (mf, lf), (mc, lc) = moments[self.factors[0]], moments[self.factors[1]]
        if rng is None:
            zf, zc = mf, mc
        else:
            rf, rc = jax.random.split(rng)
            zf, zc = sample_posterior(rf, mf, lf), sample_posterior(rc, mc, lc)
        fine = (grain_bhw == FINE)
        kl_f = jnp.sum(kl_divergence(mf, lf), axis=-1)                       # [B, 2h, 2w]
        kl_c = jnp.sum(kl_divergence(mc, lc), axis=-1)                       # [B, h, w]
        b, h, w = grain_bhw.shape
        kl_f_region = kl_f.reshape(b, h, 2, w, 2).sum(axis=(2, 4))           # the 4 fine codes of a region
        kl_total = jnp.sum(jnp.where(fine, kl_f_region, kl_c), axis=(1, 2))
        codes = jnp.sum(jnp.where(fine, 4, 1), axis=(1, 2))
        return neighbour_copy(zf, zc, grain_bhw), kl_total / codes

    def decode(self, z_bhwc: jax.Array) -> jax.Array:
        return self.decoder(z_bhwc)
