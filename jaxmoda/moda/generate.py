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


def default_stride(window: int) -> int:
    """MoDA's stride for a window of W frames: W - W // 5 (64 for W = 80, an overlap of 16)."""
    return window - window // 5


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

    cache = task.__dict__.setdefault("_window_fns", {})  # one jitted sampler per setting, reused across calls
    key = (id(graphdef), cfg_audio, cfg_emotion, steps)
    if key not in cache:
        @jax.jit
        def one(p, prefix, audio_w, ident, emo, rng):
            model = nnx.merge(graphdef, p)
            return task.sample_window(model, rng, prefix, audio_w, ident, emo, cfg_audio=cfg_audio,
                                      cfg_emotion=cfg_emotion, steps=steps)
        cache[key] = one
    one = cache[key]

    base = jax.random.key(seed)
    ident, emo = jnp.asarray(identity, jnp.float32), jnp.asarray(emotion, jnp.int32)

    def sample_window(prefix, audio_w, k):
        return jax.device_get(one(params, jnp.asarray(prefix), jnp.asarray(audio_w), ident, emo,
                                  jax.random.fold_in(base, k)))

    return sample_window


def generate_motion(task, graphdef, params, audio: np.ndarray, *, identity: np.ndarray, emotion: np.ndarray,
                    prefix: np.ndarray | None = None, cfg_audio: float | None = None,
                    cfg_emotion: float | None = None, steps: int | None = None, seed: int = 0,
                    progress: bool = False) -> np.ndarray:
    """Motion [B, T, 70] (de-normalised, the 70-d layout) for a batch of clips of common length T.

    Args:
      task, graphdef, params: a trained MoDA run (jaxmoda.train.sampling.load_for_sampling).
      audio: [B, T, L, C] per-frame features (jaxmoda.moda.audio.audio_features).
      identity: [B, 63] or [63] canonical keypoints; emotion: [B] or scalar label (num_emotions = null).
      prefix: [B, 70] or [70] raw (de-normalised) motion of the first window's prefix frame; None = the
        dataset mean (a neutral frame).
      cfg_audio, cfg_emotion, steps: guidance scales and sampler steps (None: the run's config).
      seed: noise seed; window k uses fold_in(seed, k).
    """
    d = task.config.moda
    mean, std = np.asarray(d.motion_mean, np.float32), np.asarray(d.motion_std, np.float32)
    if mean.shape != (70,):
        raise ValueError("the run's config has no motion statistics (config.moda.motion_mean); train it with "
                         "jaxmoda.train, which stores them")
    b = audio.shape[0]
    identity = np.broadcast_to(np.asarray(identity, np.float32).reshape(-1, 63), (b, 63))
    emotion = np.broadcast_to(np.asarray(emotion, np.int32), (b,))
    prefix_n = np.zeros((b, 70), np.float32) if prefix is None else \
        (np.broadcast_to(np.asarray(prefix, np.float32), (b, 70)) - mean) / std
    sampler = make_window_sampler(task, graphdef, params, identity=identity, emotion=emotion, cfg_audio=cfg_audio,
                                  cfg_emotion=cfg_emotion, steps=steps, seed=seed)
    out = generate_windows(sampler, np.asarray(audio, np.float32), prefix_n.astype(np.float32),
                           window=task.window, stride=default_stride(task.window), progress=progress)
    return out * std + mean
