"""Long motion sequences from windows: MoDA's windowing, cross-fade and pose smoothing (moda.md 2.5).

A clip of T frames is generated in n = 1 if T <= W else ceil((T - W) / S) + 1 windows of W = 80 frames
at stride S = 64 (overlap O = 16); the audio is zero-padded to W + S (n - 1) frames. Window k starts at
S k; its one-frame prefix is frame S - 1 of window k - 1 (after smoothing, before fusion); the first
window's prefix is the caller's (the source's own motion). Overlaps are cross-faded linearly, the new
window weighing j / O at overlap frame j; pose (dims 63:70) is smoothed by a width-3 moving average in
every window and again over the clip; the output has exactly T frames. Fresh noise per window.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

POSE_DIMS = slice(63, 70)


def num_windows(num_frames: int, window: int = 80, stride: int = 64) -> int:
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    return 1 if num_frames <= window else math.ceil((num_frames - window) / stride) + 1


def window_starts(num_frames: int, window: int = 80, stride: int = 64) -> list[int]:
    return [stride * k for k in range(num_windows(num_frames, window, stride))]


def smooth_pose_ma(x: np.ndarray, width: int = 3) -> np.ndarray:
    """Moving average of `width` frames (edges replicated) along axis -2, on pose dims 63:70 only."""
    if width <= 1:
        return x
    out = np.array(x, copy=True)
    pose = x[..., POSE_DIMS]
    half = width // 2
    padded = np.concatenate([np.repeat(pose[..., :1, :], half, axis=-2), pose,
                             np.repeat(pose[..., -1:, :], width - 1 - half, axis=-2)], axis=-2)
    kernel_sum = sum(padded[..., i:i + pose.shape[-2], :] for i in range(width))
    out[..., POSE_DIMS] = kernel_sum / width
    return out


def crossfade_weights(overlap: int) -> np.ndarray:
    """Weights of the new window over the overlap frames: j / overlap, j = 0 .. overlap-1."""
    return np.arange(overlap, dtype=np.float32) / overlap


def generate_windows(sample_window: Callable[[np.ndarray, np.ndarray, int], np.ndarray], audio: np.ndarray,
                     prefix: np.ndarray, *, window: int = 80, stride: int = 64, smooth_width: int = 3,
                     progress: bool = False) -> np.ndarray:
    """Runs the windowed generation of a batch of clips with a common length.

    Args:
      sample_window: (prefix [B, 70], audio window [B, W, L, C], k) -> motion window [B, W, 70]
        (normalised); `k` is the window index (use it to fold fresh noise).
      audio: [B, T, L, C] per-frame features of the clips.
      prefix: [B, 70] the first window's prefix (normalised).
      window, stride: W and S; the overlap is W - S.
      smooth_width: width of the pose moving average (1 = off).
      progress: show a progress bar over windows.

    Returns:
      [B, T, 70] normalised motion.
    """
    b, t = audio.shape[:2]
    overlap = window - stride
    if not 0 <= overlap < window:
        raise ValueError(f"stride {stride} must be in (0, window={window}]")
    n = num_windows(t, window, stride)
    total = window + stride * (n - 1)
    pad = np.zeros((b, total - t) + audio.shape[2:], audio.dtype)
    audio = np.concatenate([audio, pad], axis=1)
    out = np.zeros((b, total, prefix.shape[-1]), np.float32)
    weights = crossfade_weights(overlap)[None, :, None]
    iterator = range(n)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="windows", unit="win")
    for k in iterator:
        s = stride * k
        w = smooth_pose_ma(np.asarray(sample_window(prefix, audio[:, s:s + window], k), np.float32), smooth_width)
        prefix = w[:, stride - 1]
        if k == 0 or overlap == 0:
            out[:, s:s + window] = w
        else:
            out[:, s:s + overlap] = (1.0 - weights) * out[:, s:s + overlap] + weights * w[:, :overlap]
            out[:, s + overlap:s + window] = w[:, overlap:]
    return smooth_pose_ma(out, smooth_width)[:, :t]


def make_window_sampler(task, graphdef, params, *, identity: np.ndarray, emotion: np.ndarray,
                        cfg_audio: float | None = None, cfg_emotion: float | None = None,
                        steps: int | None = None, seed: int = 0):
    """A `sample_window(prefix, audio_window, k)` for `generate_windows` from a trained MoDA task."""
    from flax import nnx

    @jax.jit
    def one(p, prefix, audio_w, ident, emo, rng):
        model = nnx.merge(graphdef, p)
        return task.sample_window(model, rng, prefix, audio_w, ident, emo, cfg_audio=cfg_audio,
                                  cfg_emotion=cfg_emotion, steps=steps)

    base = jax.random.key(seed)
    ident, emo = jnp.asarray(identity, jnp.float32), jnp.asarray(emotion, jnp.int32)

    def sample_window(prefix, audio_w, k):
        return jax.device_get(one(params, jnp.asarray(prefix), jnp.asarray(audio_w), ident, emo,
                                  jax.random.fold_in(base, k)))

    return sample_window
