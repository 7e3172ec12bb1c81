"""Embeddings: timesteps, class labels, image patches, 2-D sin-cos and 1-D rotary positions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoda.nn.layers import dense


def timestep_features(t_b: jax.Array, dim: int, max_period: float = 10000.0, scale: float = 1000.0) -> jax.Array:
    """Sinusoidal features [B, dim] of times t in [0, 1] (scaled by `scale`, so DiT's frequencies apply)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = (t_b.astype(jnp.float32) * scale)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class TimestepEmbedder(nnx.Module):
    """t in [0, 1] -> [B, dim]: sinusoidal features (fp32) then a 2-layer SiLU MLP."""

    def __init__(self, dim: int, freq_dim: int = 256, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.freq_dim = freq_dim
        init = nnx.initializers.normal(0.02)
        self.fc1 = dense(freq_dim, dim, ("freq", "embed"), kernel_init=init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc2 = dense(dim, dim, ("mlp", "embed"), kernel_init=init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, t_b: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.silu(self.fc1(timestep_features(t_b, self.freq_dim))))


class LabelEmbedder(nnx.Module):
    """Class labels -> [B, dim]; row `num_classes` is the learned null label used by guidance."""

    def __init__(self, num_classes: int, dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.num_classes = num_classes
        self.table = nnx.Embed(
            num_classes + 1, dim, dtype=dtype, param_dtype=param_dtype,
            embedding_init=nnx.with_partitioning(nnx.initializers.normal(0.02), ("classes", "embed")), rngs=rngs)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def __call__(self, labels_b: jax.Array) -> jax.Array:
        return self.table(labels_b)


def patchify(x_bhwc: jax.Array, p: int) -> jax.Array:
    """[B, H, W, C] -> [B, (H/p)(W/p), p*p*C], row-major over patches."""
    b, h, w, c = x_bhwc.shape
    x = x_bhwc.reshape(b, h // p, p, w // p, p, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(x_btd: jax.Array, p: int, h: int, w: int, c: int) -> jax.Array:
    """Inverse of `patchify`: [B, (H/p)(W/p), p*p*C] -> [B, H, W, C]."""
    b = x_btd.shape[0]
    x = x_btd.reshape(b, h // p, w // p, p, p, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class PatchEmbed(nnx.Module):
    """Non-overlapping p x p patches -> tokens (a strided conv written as a matmul on patches)."""

    def __init__(self, patch: int, channels: int, dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.patch = patch
        self.proj = dense(patch * patch * channels, dim, ("patch", "embed"),
                          kernel_init=nnx.initializers.xavier_uniform(), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x_bhwc: jax.Array) -> jax.Array:
        return self.proj(patchify(x_bhwc, self.patch))


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2-D sin-cos position embedding [grid_h * grid_w, dim] (half the channels per axis)."""
    ys, xs = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64), indexing="ij")
    return sincos_2d_at(dim, ys.reshape(-1), xs.reshape(-1))


def sincos_2d_at(dim: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """2-D sin-cos embedding [N, dim] at any (possibly fractional) positions (row, col).

    The first half of the channels encodes the column, the second the row: the layout of the released
    DiT / MAE `pos_embed` buffers, so imported DiT weights see the positions they were trained with."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embedding needs a width divisible by 4, got {dim}")
    return np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1).astype(np.float32)


def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """[N] positions -> [N, dim] (sin half, cos half), the DiT/MAE convention."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.asarray(pos, np.float64)[:, None] * omega[None]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def rope_1d(x_bthd: jax.Array, positions_bt: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding over the last axis (pairs split as halves), computed in fp32."""
    d = x_bthd.shape[-1]
    if d % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {d}")
    inv = 1.0 / base ** (jnp.arange(0, d // 2, dtype=jnp.float32) / (d // 2))
    ang = positions_bt.astype(jnp.float32)[..., None] * inv  # [B, T, D/2]
    cos, sin = jnp.cos(ang)[:, :, None, :], jnp.sin(ang)[:, :, None, :]
    x = x_bthd.astype(jnp.float32)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return out.astype(x_bthd.dtype)
