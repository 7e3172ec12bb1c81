"""MoDA's multi-modal diffusion transformer with coarse-to-fine fusion (arXiv 2507.03256).

Four token streams of one window of T frames (T = 80 at 25 fps):
  motion    concat(prefix frame broadcast, noisy x_t) [T, 2*70] -> Linear, SiLU, Linear
  audio     per-frame features [T, L, C] (log-mel or HuBERT layers) flattened -> 3-layer ReLU MLP -> RMSNorm (affine)
  emotion   label in 0..E-1 (E = null) -> embedding, repeated over T
  identity  canonical keypoints x_c [63] -> Linear, SiLU, Linear, repeated over T
and a global conditioning c = time embedding + emotion embedding feeding every adaLN.

Fusion, coarse to fine (block counts in config):
  stage 1: `four_stream_depth` blocks with separate weights per stream and joint attention over the
           4T tokens; 1-D RoPE on motion and audio (frame i of both at position i), none on emotion and
           identity tokens;
  stage 2: `two_stream_depth` blocks: motion | condition = concat(audio, emotion, identity), RoPE on all
           (each condition sub-stream reuses positions 0..T-1);
  stage 3: `single_depth` Flux-style parallel single-stream blocks over the concatenated 4T tokens;
  head:    RMSNorm + adaLN(shift, scale) + Linear -> 70 on the first T (motion) tokens.
Pre-norm RMSNorm without affine, per-head qk RMSNorm, GELU-tanh MLPs, adaLN-Zero (every block is the
identity at initialisation), RoPE base 256 computed in fp32.

Null conditions for guidance are registered parameters (`null_audio` [C], broadcast over frames and
layers; `null_prefix` [70]) and therefore trained and saved in every checkpoint, unlike the official
code, where they were re-drawn at construction. `cond["audio_on"]` / `cond["prefix_on"]` (bool [B])
select them. RoPE pairs dimensions as halves (d_i, d_{i+D/2}), a fixed permutation of the interleaved
pairing; an importer of official weights permutes the q/k projections accordingly.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmoda.nn import logical
from jaxmoda.nn.attention import Attention
from jaxmoda.nn.embeddings import LabelEmbedder, TimestepEmbedder, rope_1d
from jaxmoda.nn.layers import Mlp, dense, modulate, rms_norm
from jaxmoda.nn.stack import BlockStack

ACT = ("act_batch", "act_tokens", "act_embed")
MOTION_DIM = 70
QK_NORM_EPS = 1e-5


def _rope(positions: jax.Array | None, base: float):
    if positions is None:
        return None
    return lambda x: rope_1d(x, positions, base)


def _zeros_dense(in_dim, out_dim, names, **kw):
    return dense(in_dim, out_dim, names, kernel_init=nnx.initializers.zeros_init(), **kw)


class StreamBlock(nnx.Module):
    """One stream's weights inside a multi-stream block: adaLN(6d), q/k/v + qk-norm, out-proj, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, attention: str, dtype, param_dtype,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.ada = _zeros_dense(dim, 6 * dim, ("embed", "adaln"), **kw)
        self.attn = Attention(dim, num_heads, implementation=attention, qk_norm=True, qk_norm_eps=QK_NORM_EPS, **kw)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), **kw)


class MultiStreamBlock(nnx.Module):
    """K streams with separate weights and one joint attention over all their tokens (SD3/MM-DiT)."""

    def __init__(self, num_streams: int, dim: int, num_heads: int, mlp_ratio: float = 4.0, *,
                 rope_streams: Sequence[bool], rope_base: float = 256.0, attention: str = "xla",
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.rope_streams, self.rope_base = tuple(rope_streams), rope_base
        self.streams = nnx.List([StreamBlock(dim, num_heads, mlp_ratio, attention=attention, dtype=dtype,
                                             param_dtype=param_dtype, rngs=rngs) for _ in range(num_streams)])

    def __call__(self, xs: tuple, c: jax.Array, positions: tuple) -> tuple:
        mods, qkv = [], []
        for s, x, pos, use_rope in zip(self.streams, xs, positions, self.rope_streams):
            mod = jnp.split(s.ada(jax.nn.silu(c)), 6, axis=-1)
            mods.append(mod)
            qkv.append(s.attn.project(modulate(rms_norm(x), mod[0], mod[1]), _rope(pos if use_rope else None,
                                                                                   self.rope_base)))
        q, k, v = (jnp.concatenate([p[i] for p in qkv], axis=1) for i in range(3))
        o = self.streams[0].attn.attend(q, k, v)
        out, start = [], 0
        for s, x, mod in zip(self.streams, xs, mods):
            n = x.shape[1]
            x = x + mod[2][:, None] * s.attn.out(o[:, start:start + n])
            x = x + mod[5][:, None] * s.mlp(modulate(rms_norm(x), mod[3], mod[4]))
            out.append(logical.constrain(x, ACT))
            start += n
        return tuple(out)


class SingleStreamBlock(nnx.Module):
    """Flux-style parallel block: one adaLN(3d), one Linear to q/k/v + MLP hidden, one gated residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, *, rope_base: float = 256.0,
                 attention: str = "xla", dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.hidden = int(dim * mlp_ratio)
        self.rope_base = rope_base
        self.ada = _zeros_dense(dim, 3 * dim, ("embed", "adaln"), **kw)
        self.attn = Attention(dim, num_heads, implementation=attention, qk_norm=True, qk_norm_eps=QK_NORM_EPS, **kw)
        self.mlp_in = dense(dim, self.hidden, ("embed", "mlp"), **kw)
        self.mlp_out = dense(self.hidden, dim, ("mlp", "embed"), **kw)

    def __call__(self, x: jax.Array, c: jax.Array, positions: jax.Array) -> jax.Array:
        shift, scale, gate = jnp.split(self.ada(jax.nn.silu(c)), 3, axis=-1)
        h = modulate(rms_norm(x), shift, scale)
        # The q/k/v and MLP-in matmuls share their input; the output is attn_out + mlp_out, which equals
        # one Linear over the concatenation [attention, GELU(MLP)] of the Flux formulation.
        attn = self.attn(h, None, _rope(positions, self.rope_base))
        mlp = self.mlp_out(logical.constrain(jax.nn.gelu(self.mlp_in(h), approximate=True),
                                             ("act_batch", "act_tokens", "act_mlp")))
        return logical.constrain(x + gate[:, None] * (attn + mlp), ACT)


class _Embed2(nnx.Module):
    """Linear, SiLU, Linear."""

    def __init__(self, in_dim: int, dim: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = dense(in_dim, dim, ("patch", "embed"), **kw)
        self.fc2 = dense(dim, dim, ("mlp", "embed"), **kw)

    def __call__(self, x):
        return self.fc2(jax.nn.silu(self.fc1(x)))


class AudioProjector(nnx.Module):
    """Per-frame features [B, T, L, C] -> one token per frame: 3-layer ReLU MLP then RMSNorm."""

    def __init__(self, layers: int, channels: int, dim: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = dense(layers * channels, dim, ("patch", "embed"), **kw)
        self.fc2 = dense(dim, dim, ("mlp", "embed"), **kw)
        self.fc3 = dense(dim, dim, ("mlp", "embed"), **kw)
        self.norm_scale = nnx.Param(jnp.ones((dim,), param_dtype))  # the released model's RMSNorm is affine

    def __call__(self, a_btlc: jax.Array) -> jax.Array:
        b, t = a_btlc.shape[:2]
        h = jax.nn.relu(self.fc1(a_btlc.reshape(b, t, -1)))
        y = rms_norm(self.fc3(jax.nn.relu(self.fc2(h))))
        return y * self.norm_scale[...].astype(y.dtype)


class MotionDiT(nnx.Module):
    """Predicts the velocity [B, T, 70] of a noisy motion window from time and the condition dict:
    prefix [B, 70], prefix_on bool [B], audio [B, T, L, C], audio_on bool [B], emotion int [B]
    (num_emotions = null), identity [B, 63] (canonical keypoints, un-normalised)."""

    def __init__(self, *, hidden: int, num_heads: int, audio_layers: int, audio_channels: int,
                 num_emotions: int = 8, four_stream_depth: int = 3, two_stream_depth: int = 6,
                 single_depth: int = 12, mlp_ratio: float = 4.0, rope_base: float = 256.0,
                 attention: str = "xla", remat: str = "none", dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.num_emotions, self.rope_base, self.dtype = num_emotions, rope_base, dtype
        self.motion_embed = _Embed2(2 * MOTION_DIM, hidden, **kw)
        self.audio_embed = AudioProjector(audio_layers, audio_channels, hidden, **kw)
        self.identity_embed = _Embed2(63, hidden, **kw)
        self.emotion_embed = LabelEmbedder(num_emotions, hidden, **kw)
        self.t_embed = TimestepEmbedder(hidden, **kw)
        init = nnx.initializers.normal(0.02)
        self.null_audio = nnx.Param(init(rngs.params(), (audio_channels,), param_dtype))
        self.null_prefix = nnx.Param(jnp.zeros((MOTION_DIM,), param_dtype))
        blk = dict(attention=attention, dtype=dtype, param_dtype=param_dtype)
        self.stage1 = BlockStack(lambda r: MultiStreamBlock(4, hidden, num_heads, mlp_ratio,
                                                            rope_streams=(True, True, False, False),
                                                            rope_base=rope_base, rngs=r, **blk),
                                 four_stream_depth, remat=remat, rngs=rngs) if four_stream_depth else None
        self.stage2 = BlockStack(lambda r: MultiStreamBlock(2, hidden, num_heads, mlp_ratio, rope_streams=(True, True),
                                                            rope_base=rope_base, rngs=r, **blk),
                                 two_stream_depth, remat=remat, rngs=rngs) if two_stream_depth else None
        self.stage3 = BlockStack(lambda r: SingleStreamBlock(hidden, num_heads, mlp_ratio, rope_base=rope_base,
                                                             rngs=r, **blk),
                                 single_depth, remat=remat, rngs=rngs) if single_depth else None
        self.final_ada = _zeros_dense(hidden, 2 * hidden, ("embed", "adaln"), **kw)
        self.final = dense(hidden, MOTION_DIM, ("embed", "patch"), **kw)

    @property
    def null_emotion(self) -> int:
        return self.num_emotions

    def embed(self, x_t: jax.Array, t: jax.Array, cond: dict) -> tuple[tuple, jax.Array]:
        """The four token streams [B, T, d] and the global conditioning c [B, d]."""
        b, n = x_t.shape[:2]
        prefix = jnp.where(cond["prefix_on"][:, None], cond["prefix"], self.null_prefix[...].astype(x_t.dtype))
        m = self.motion_embed(jnp.concatenate([jnp.broadcast_to(prefix[:, None], x_t.shape), x_t], -1).astype(self.dtype))
        audio = jnp.where(cond["audio_on"][:, None, None, None], cond["audio"], self.null_audio[...])
        a = self.audio_embed(audio.astype(self.dtype))
        emo = self.emotion_embed(cond["emotion"])
        e = jnp.broadcast_to(emo[:, None], (b, n, emo.shape[-1]))
        ident = self.identity_embed(cond["identity"].astype(self.dtype))
        i = jnp.broadcast_to(ident[:, None], (b, n, ident.shape[-1]))
        c = self.t_embed(t) + emo
        return tuple(logical.constrain(s, ACT) for s in (m, a, e, i)), c

    def __call__(self, x_t: jax.Array, t: jax.Array, cond: dict) -> jax.Array:
        b, n = x_t.shape[:2]
        (m, a, e, i), c = self.embed(x_t, t, cond)
        pos = jnp.broadcast_to(jnp.arange(n, dtype=jnp.float32), (b, n))
        pos3 = jnp.tile(pos, (1, 3))
        if self.stage1 is not None:
            m, a, e, i = self.stage1((m, a, e, i), c, (pos, pos, None, None))
        cnd = jnp.concatenate([a, e, i], axis=1)
        if self.stage2 is not None:
            m, cnd = self.stage2((m, cnd), c, (pos, pos3))
        x = jnp.concatenate([m, cnd], axis=1)
        if self.stage3 is not None:
            x = self.stage3(x, c, jnp.concatenate([pos, pos3], axis=1))
        shift, scale = jnp.split(self.final_ada(jax.nn.silu(c)), 2, axis=-1)
        return self.final(modulate(rms_norm(x[:, :n]), shift, scale)).astype(jnp.float32)
