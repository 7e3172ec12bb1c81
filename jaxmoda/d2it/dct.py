"""The Dynamic Content Transformer (DCT): D²iT's denoiser of multi-grained latents.

It reads a packed dual-grain token set (`jaxmoda.d2it.tokens.Packed`: one token per coarse region,
four per fine region, padded to a fixed bucket length) and predicts, per token, the objective's
target (velocity for flow matching, noise for DDPM). A coarse token predicts one n_z code that stands
for its whole 2x2 block, so coarse blocks stay copy-consistent through every sampler step by
construction; a fine token predicts its own code.

Pieces named by the paper (arXiv 2504.09454, Sec. 3.2 and Table 3) and where they live here:
  * routing module: grain-specific input embedders and output heads (`embed_coarse` / `embed_fine`,
    `head_coarse` / `head_fine`), selected per token with `where` (no gathers, static shapes);
  * learnable position embeddings (the ablation's preferred choice; `pos_embed='sincos'` gives the
    fixed alternative), initialised from 2-D sin-cos at each token's grid position;
  * RefineNet: the last `refine_depth` of `depth` transformer blocks, run on fine tokens only (their
    attention sees fine tokens; coarse tokens pass through unchanged).

Two readings of the architecture (the paper's figure admits both), one switch `layout`:
  * 'mixed' (H2, default): every block runs on the mixed token set of h*w + 3*N_fine real tokens;
    coarse tokens sit at their block centre (2i+.5, 2j+.5) in fine-grid units.
  * 'region' (H1): the backbone runs on h*w region tokens (a coarse region embeds its code, a fine
    region its 2x2xn_z patch), then the RefineNet runs on the 4*h*w fine-grid slots, each starting
    from its region's token, with fine regions as keys. Backbone compute equals a DiT/2's.
Both take and return the packed layout, so the objective, loss and sampler do not depend on it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoda.d2it import tokens as tok
from jaxmoda.d2it.grains import FINE
from jaxmoda.nn import logical
from jaxmoda.nn.dit import ACT, DiTBlock, FinalLayer
from jaxmoda.nn.embeddings import LabelEmbedder, TimestepEmbedder, sincos_2d_at
from jaxmoda.nn.layers import dense
from jaxmoda.nn.stack import BlockStack

LAYOUTS = ("mixed", "region")
POS_EMBEDS = ("learned", "sincos")


def _const_init(table: np.ndarray):
    def init(key, shape, dtype=jnp.float32):
        del key
        assert tuple(shape) == table.shape, (shape, table.shape)
        return jnp.asarray(table, dtype)
    return init


def position_table(kind: str, dim: int, h: int, w: int) -> np.ndarray:
    """sin-cos tables: 'fine' = the 4*h*w fine-grid slots in region-major order (slot = region*4 + sub);
    'centre' = the h*w regions at their block centres in fine-grid units; 'grid' = the h x w grid."""
    if kind == "fine":
        s = np.arange(4 * h * w)
        region, sub = s // 4, s % 4
        return sincos_2d_at(dim, 2 * (region // w) + sub // 2, 2 * (region % w) + sub % 2)
    r = np.arange(h * w)
    if kind == "centre":
        return sincos_2d_at(dim, 2 * (r // w) + 0.5, 2 * (r % w) + 0.5)
    return sincos_2d_at(dim, r // w, r % w)


class PositionTable(nnx.Module):
    """A position table indexed by slot id: learned (initialised from the sin-cos table) or fixed."""

    def __init__(self, kind: str, dim: int, h: int, w: int, *, learned: bool, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.spec, self.learned = (kind, dim, h, w), learned
        if learned:
            init = position_table(*self.spec)
            self.table = nnx.Embed(init.shape[0], dim, param_dtype=param_dtype,
                                   embedding_init=nnx.with_partitioning(_const_init(init), ("positions", "embed")),
                                   rngs=rngs)

    def __call__(self, ids: jax.Array) -> jax.Array:
        if self.learned:
            return self.table(ids)
        return jnp.take(jnp.asarray(position_table(*self.spec)), ids, axis=0)


class DynamicContentTransformer(nnx.Module):
    """DCT over packed tokens. Call as dct(x_tokens [B,L,C], t [B], labels [B], layout: Packed)."""

    def __init__(self, *, grid: int, latent_channels: int, hidden: int, depth: int, refine_depth: int,
                 num_heads: int, num_classes: int, mlp_ratio: float = 4.0, layout: str = "mixed",
                 pos_embed: str = "learned", attention: str = "xla", qk_norm: bool = False, remat: str = "none",
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        if layout not in LAYOUTS:
            raise ValueError(f"layout {layout!r} is unknown; choose one of {', '.join(LAYOUTS)}")
        if pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed {pos_embed!r} is unknown; choose one of {', '.join(POS_EMBEDS)}")
        if not 0 <= refine_depth < depth:
            raise ValueError(f"refine_depth {refine_depth} must be in [0, depth={depth})")
        self.h = self.w = grid
        self.c, self.hidden, self.layout, self.dtype = latent_channels, hidden, layout, dtype
        self.num_classes = num_classes
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        c, d, h, w = latent_channels, hidden, grid, grid
        fine_in = c if layout == "mixed" else 4 * c
        self.embed_coarse = dense(c, d, ("patch", "embed"), **kw)
        self.embed_fine = dense(fine_in, d, ("patch", "embed"), **kw)
        learned = pos_embed == "learned"
        self.pos_fine = PositionTable("fine", d, h, w, learned=learned, param_dtype=param_dtype, rngs=rngs)
        self.pos_region = PositionTable("centre" if layout == "mixed" else "grid", d, h, w, learned=learned,
                                        param_dtype=param_dtype, rngs=rngs)
        self.t_embed = TimestepEmbedder(d, **kw)
        self.y_embed = LabelEmbedder(num_classes, d, **kw)

        def block(attn):
            return lambda r: DiTBlock(d, num_heads, mlp_ratio, attention=attn, qk_norm=qk_norm, dtype=dtype,
                                      param_dtype=param_dtype, rngs=r)

        self.backbone = BlockStack(block(attention), depth - refine_depth, remat=remat, rngs=rngs)
        # The RefineNet's key set (fine tokens) is not a right-padded prefix, which cuDNN's
        # sequence-length masking assumes; its few blocks use XLA attention there.
        refine_attn = "xla" if attention in ("cudnn", "auto") else attention
        self.refine = (BlockStack(block(refine_attn), refine_depth, remat=remat, rngs=rngs)
                       if refine_depth else None)
        self.head_coarse = FinalLayer(d, c, **kw)
        fine_out = c if (layout == "mixed" or refine_depth) else 4 * c
        self.head_fine = FinalLayer(d, fine_out, **kw)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def __call__(self, x_blc: jax.Array, t_b: jax.Array, y_b: jax.Array, layout: tok.Packed) -> jax.Array:
        cond = self.t_embed(t_b) + self.y_embed(y_b)
        x = x_blc.astype(self.dtype)
        out = self._mixed(x, cond, layout) if self.layout == "mixed" else self._region(x, cond, layout)
        return jnp.where(layout.mask[..., None], out.astype(jnp.float32), 0.0)

    def _mixed(self, x, cond, layout):
        fine = (layout.grain == FINE)[..., None]
        mask = layout.mask
        h = jnp.where(fine, self.embed_fine(x), self.embed_coarse(x))
        pos = jnp.where(fine, self.pos_fine(layout.region * 4 + layout.sub), self.pos_region(layout.region))
        h = jnp.where(mask[..., None], h + pos.astype(h.dtype), 0)
        h = logical.constrain(h, ACT)
        h = self.backbone(h, cond, mask)
        if self.refine is not None:
            h = jnp.where(fine, self.refine(h, cond, mask & fine[..., 0]), h)
        return jnp.where(fine, self.head_fine(h, cond), self.head_coarse(h, cond))

    def _region(self, x, cond, layout):
        b = x.shape[0]
        hw, c = self.h * self.w, self.c
        x_reg = tok.to_regions(tok.scatter_to_dense(x, layout, self.h, self.w))          # [B, hw, 4, C]
        is_fine_tok = (layout.grain == FINE).astype(jnp.int32)[..., None]
        fine_r = tok.to_regions(tok.scatter_to_dense(is_fine_tok, layout, self.h, self.w))[:, :, 0, 0] > 0
        h = jnp.where(fine_r[..., None], self.embed_fine(x_reg.reshape(b, hw, 4 * c)), self.embed_coarse(x_reg[:, :, 0]))
        h = h + self.pos_region(jnp.arange(hw))[None].astype(h.dtype)
        h = logical.constrain(h, ACT)
        h = self.backbone(h, cond)                                                       # [B, hw, d]
        coarse_out = self.head_coarse(h, cond)                                           # [B, hw, C]
        if self.refine is not None:
            s = jnp.repeat(h, 4, axis=1) + self.pos_fine(jnp.arange(4 * hw))[None].astype(h.dtype)
            s = self.refine(logical.constrain(s, ACT), cond, jnp.repeat(fine_r, 4, axis=1))
            fine_out = self.head_fine(s, cond)                                           # [B, 4hw, C]
        else:
            fine_out = self.head_fine(h, cond).reshape(b, 4 * hw, c)
        slot = layout.region * 4 + layout.sub
        take = jax.vmap(lambda v, i: jnp.take(v, i, axis=0))
        return jnp.where((layout.grain == FINE)[..., None], take(fine_out, slot), take(coarse_out, layout.region))


def layout_only(packed: tok.Packed) -> tok.Packed:
    """The packed layout without its token values (a zero-width tokens array), to pass as a condition."""
    return packed.replace(tokens=jnp.zeros(packed.tokens.shape[:2] + (0,), packed.tokens.dtype))
