"""DiT: the class-conditional diffusion transformer with adaLN-Zero blocks (Peebles & Xie).

The blocks are shared by the baseline DiT, the D²iT transformers and the MoDA motion DiT; they take
an optional padding mask, and conditioning either per example [B, D] or per token [B, T, D].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmoda.nn import logical
from jaxmoda.nn.attention import Attention
from jaxmoda.nn.embeddings import LabelEmbedder, PatchEmbed, TimestepEmbedder, sincos_2d, unpatchify
from jaxmoda.nn.layers import Mlp, dense, layer_norm, modulate
from jaxmoda.nn.stack import BlockStack

ACT = ("act_batch", "act_tokens", "act_embed")


class DiTBlock(nnx.Module):
    """Pre-norm attention + MLP, each modulated (shift, scale) and gated by the conditioning (adaLN-Zero)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, attention: str = "xla",
                 qk_norm: bool = False, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.attn = Attention(dim, num_heads, implementation=attention, qk_norm=qk_norm, **kw)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), **kw)
        zeros = nnx.initializers.zeros_init()
        self.ada = dense(dim, 6 * dim, ("embed", "adaln"), kernel_init=zeros, **kw)

    def __call__(self, x_btd: jax.Array, c: jax.Array, mask_bt: jax.Array | None = None, rope=None) -> jax.Array:
        mod = self.ada(jax.nn.silu(c))
        sa, ca, ga, sm, cm, gm = jnp.split(mod, 6, axis=-1)
        if ga.ndim == 2:
            ga, gm = ga[:, None], gm[:, None]
        x = x_btd + ga * self.attn(modulate(layer_norm(x_btd), sa, ca), mask_bt, rope)
        x = x + gm * self.mlp(modulate(layer_norm(x), sm, cm))
        return logical.constrain(x, ACT)


class FinalLayer(nnx.Module):
    """adaLN (shift, scale) then a zero-initialised projection to the output features."""

    def __init__(self, dim: int, out_dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        zeros = nnx.initializers.zeros_init()
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.ada = dense(dim, 2 * dim, ("embed", "adaln"), kernel_init=zeros, **kw)
        self.proj = dense(dim, out_dim, ("embed", "patch"), kernel_init=zeros, **kw)

    def __call__(self, x_btd: jax.Array, c: jax.Array) -> jax.Array:
        shift, scale = jnp.split(self.ada(jax.nn.silu(c)), 2, axis=-1)
        return self.proj(modulate(layer_norm(x_btd), shift, scale))


class DiT(nnx.Module):
    """Class-conditional DiT on images or latents [B, H, W, C]; predicts a tensor of the same shape.

    Time t is in [0, 1] (the timestep embedder scales it by 1000, DiT's range). Label `num_classes` is
    the null label for classifier-free guidance.
    """

    def __init__(self, *, input_size: int, in_channels: int, patch_size: int, hidden: int, depth: int,
                 num_heads: int, num_classes: int, mlp_ratio: float = 4.0, attention: str = "xla",
                 qk_norm: bool = False, remat: str = "none", dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        self.input_size, self.in_channels, self.patch_size = input_size, in_channels, patch_size
        self.hidden, self.num_classes, self.dtype = hidden, num_classes, dtype
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.patch_embed = PatchEmbed(patch_size, in_channels, hidden, **kw)
        self.t_embed = TimestepEmbedder(hidden, **kw)
        self.y_embed = LabelEmbedder(num_classes, hidden, **kw)
        self.blocks = BlockStack(
            lambda r: DiTBlock(hidden, num_heads, mlp_ratio, attention=attention, qk_norm=qk_norm,
                               dtype=dtype, param_dtype=param_dtype, rngs=r),
            depth, remat=remat, rngs=rngs)
        self.final = FinalLayer(hidden, patch_size * patch_size * in_channels, **kw)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def __call__(self, x_bhwc: jax.Array, t_b: jax.Array, y_b: jax.Array) -> jax.Array:
        b, h, w, c = x_bhwc.shape
        g = self.input_size // self.patch_size
        x = self.patch_embed(x_bhwc.astype(self.dtype))
        x = x + jnp.asarray(sincos_2d(self.hidden, g, g), self.dtype)[None]
        x = logical.constrain(x, ACT)
        cond = self.t_embed(t_b) + self.y_embed(y_b)
        x = self.blocks(x, cond)
        x = self.final(x, cond)
        return unpatchify(x.astype(jnp.float32), self.patch_size, h, w, c)
