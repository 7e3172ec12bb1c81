"""Renderer-free motion metrics M1-M6 (moda.md 6.3): pure numpy functions on mouth openness and motion.

All signals are per-frame at 25 fps (frame i covers [i / 25, (i + 1) / 25) s, motion sampled at its
centre). The functions take already-extracted signals (e.g. `jaxmoda.moda.motion.mouth_openness` of
[T, 70] motion) and return plain floats / ints / dicts so that `jaxmoda.eval_motion` can put them in a
JSON report. Degenerate inputs (too short, constant) give NaN or None instead of raising.

Definitions (each fixed here, once):

- Speech range (M1-M4 "trimming"): the frames whose centre lies in [start of the first non-pause
  phoneme, end of the last non-pause phoneme] (`speech_frames`).
- Phoneme centre frame: the frame containing the phoneme's mid time, floor(25 (start + end) / 2).
- Closure threshold (M3), per clip on the trimmed GT openness:
  `thr = min(gt) + CLOSURE_REL * (p95(gt) - min(gt))` with CLOSURE_REL = 0.3, i.e. 30 % of the way from
  the clip's fully closed lips to its typical open mouth; "closed" means openness < thr.
- Lip-sync offset (M2): offset k means the generated mouth lags the GT by k frames (gen[t] ~ gt[t - k]).
- Circular-shift null (M1): Pearson r of gen vs GT rolled by s for every s with s >= 25 and
  T - s >= 25 (a circular distance of at least 1 s), pooled over shifts and clips; its 95th percentile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FPS = 25

# M1.
NULL_MIN_SHIFT = 25          # frames (1 s) a circular shift must move the GT by
NULL_QUANTILE = 95.0
M1_MIN_DIFF = 0.5            # gate: mean matched r - mean mismatched r
# M2.
MAX_LAG = 8                  # +-8 frames (+-320 ms)
M2_MAX_ABS_OFFSET = 1
M2_MIN_FRACTION = 0.9        # gate: fraction of clips with |offset| <= 1
# M3.
CLOSURE_REL = 0.3            # threshold = GT min + 0.3 (GT p95 - GT min)
CLOSURE_QUANTILE = 95.0
CLOSURE_TOL_FRAMES = 1       # +-1 frame (+-40 ms) around the bilabial's centre frame
M3_MIN_HIT_RATE = 0.8
# M4.
M4_MIN_GAIN = 1.3
# M5.
MIN_GT_STD = 1e-6            # dims whose GT std is below this are excluded from the std ratios


# ----------------------------------------------------------------------------------------------
# Basic signal helpers.


def _f64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def pearson(a: Any, b: Any) -> float:
    """Pearson correlation of two equal-length 1-d signals.

    Args:
      a, b: [T] signals, T >= 2.

    Returns:
      r in [-1, 1]; 0.0 when either signal is constant (no linear relation can be shown), NaN when
      there are fewer than 2 frames.
    """
    a, b = _f64(a).reshape(-1), _f64(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"pearson needs signals of equal length, got {a.shape[0]} and {b.shape[0]}")
    if a.size < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt(np.sum(a * a) * np.sum(b * b))
    if den <= 0.0 or not np.isfinite(den):
        return 0.0
    return float(np.clip(np.sum(a * b) / den, -1.0, 1.0))


def zscore(x: Any) -> np.ndarray:
    """(x - mean) / std (population std) of a 1-d signal; all zeros for a constant signal."""
    x = _f64(x).reshape(-1)
    if x.size == 0:
        return x
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def speech_frames(phone_start: Any, phone_end: Any, phone_id: Any, num_frames: int, *, fps: int = FPS,
                  pause_id: int = 0) -> tuple[int, int]:
    """The frame range [a, b) of the speech: leading and trailing silence trimmed.

    A frame is kept if its centre time (i + 0.5) / fps lies within [start of the first non-pause
    phoneme, end of the last non-pause phoneme].

    Args:
      phone_start, phone_end: [P] phoneme start / end times in seconds.
      phone_id: [P] phoneme ids; `pause_id` marks pauses.
      num_frames: T, the clip's frame count.
      fps: frames per second.
      pause_id: id of the pause phoneme.

    Returns:
      (a, b) with 0 <= a <= b <= T; (0, T) if the clip has no non-pause phoneme.
    """
    start, end, ids = _f64(phone_start).reshape(-1), _f64(phone_end).reshape(-1), np.asarray(phone_id).reshape(-1)
    speech = np.nonzero(ids != pause_id)[0]
    if speech.size == 0:
        return 0, int(num_frames)
    t0, t1 = start[speech[0]], end[speech[-1]]
    a = int(np.ceil(t0 * fps - 0.5))
    b = int(np.floor(t1 * fps - 0.5)) + 1
    a = min(max(a, 0), num_frames)
    b = min(max(b, a), num_frames)
    return a, b


def centre_frames(phone_start: Any, phone_end: Any, *, fps: int = FPS) -> np.ndarray:
    """Frame index containing each phoneme's mid time: floor(fps (start + end) / 2), int64 [P]."""
    mid = 0.5 * (_f64(phone_start).reshape(-1) + _f64(phone_end).reshape(-1))
    return np.floor(mid * fps).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# M1: audio-mouth correlation.


def circular_shift_null(gen: Any, gt: Any, *, min_shift: int = NULL_MIN_SHIFT) -> np.ndarray:
    """Pearson r of `gen` against `gt` circularly shifted by every s in [min_shift, T - min_shift].

    Args:
      gen, gt: [T] signals (already trimmed).
      min_shift: the smallest circular distance (both ways) of a shift, in frames.

    Returns:
      float64 [max(T - 2 min_shift + 1, 0)] correlations (empty for clips shorter than 2 min_shift).
    """
    g, t = _f64(gen).reshape(-1), _f64(gt).reshape(-1)
    if g.shape != t.shape:
        raise ValueError(f"circular_shift_null needs equal lengths, got {g.shape[0]} and {t.shape[0]}")
    n = g.size
    return np.asarray([pearson(g, np.roll(t, s)) for s in range(min_shift, n - min_shift + 1)], np.float64)


def mismatched_correlations(gen: Sequence[Any], gt: Sequence[Any]) -> np.ndarray:
    """Pearson r of generated clip i against GT clip j != i, both cut to their common length.

    Args:
      gen, gt: per-clip [T_i] signals (already trimmed), the same number of clips.

    Returns:
      float64 [n (n - 1)] correlations over all ordered pairs (NaN pairs dropped).
    """
    if len(gen) != len(gt):
        raise ValueError(f"need as many generated as GT clips, got {len(gen)} and {len(gt)}")
    out = []
    for i, g in enumerate(gen):
        for j, t in enumerate(gt):
            if i != j:
                m = min(len(g), len(t))
                out.append(pearson(np.asarray(g)[:m], np.asarray(t)[:m]))
    r = np.asarray(out, np.float64)
    return r[np.isfinite(r)]


def _nanmean(x: Sequence[float]) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def audio_mouth_correlation(gen: Sequence[Any], gt: Sequence[Any], *, min_shift: int = NULL_MIN_SHIFT,
                            quantile: float = NULL_QUANTILE) -> dict[str, Any]:
    """M1: matched vs mismatched vs circular-shift-null correlation of mouth openness.

    Args:
      gen, gt: per-clip generated / GT openness [T_i], already trimmed to the speech range, the same
        lengths clip by clip.
      min_shift: minimum circular shift of the null, in frames.
      quantile: percentile of the pooled null reported as its threshold.

    Returns:
      dict: matched_r (mean over clips), matched_r_per_clip, mismatched_r (mean over ordered pairs
      i != j), mismatched_r_std, diff (matched - mismatched), circular_p95 (the `quantile` percentile
      of the null pooled over shifts and clips; NaN if no clip is long enough) and null_count.
    """
    if len(gen) != len(gt):
        raise ValueError(f"need as many generated as GT clips, got {len(gen)} and {len(gt)}")
    matched = [pearson(g, t) for g, t in zip(gen, gt)]
    mism = mismatched_correlations(gen, gt)
    nulls = [circular_shift_null(g, t, min_shift=min_shift) for g, t in zip(gen, gt)]
    pooled = np.concatenate(nulls) if nulls else np.zeros(0)
    pooled = pooled[np.isfinite(pooled)]
    matched_mean = _nanmean(matched)
    mism_mean = float(mism.mean()) if mism.size else float("nan")
    return {
        "matched_r": matched_mean,
        "matched_r_per_clip": [float(r) for r in matched],
        "mismatched_r": mism_mean,
        "mismatched_r_std": float(mism.std()) if mism.size else float("nan"),
        "diff": matched_mean - mism_mean,
        "circular_p95": float(np.percentile(pooled, quantile)) if pooled.size else float("nan"),
        "null_count": int(pooled.size),
    }


# ----------------------------------------------------------------------------------------------
# M2: lip-sync offset.


def cross_correlation(gen: Any, gt: Any, *, max_lag: int = MAX_LAG) -> tuple[np.ndarray, np.ndarray]:
    """Normalised cross-correlation c(k) = mean_t z(gen)[t] z(gt)[t - k] over the overlap, |k| <= max_lag.

    Both signals are z-scored over their full (trimmed) length first; the mean over the overlap
    (not the sum) keeps larger lags from being penalised for their shorter overlap. Lags whose
    overlap is shorter than 2 frames are left out.

    Args:
      gen, gt: [T] signals of equal length.
      max_lag: largest lag in frames.

    Returns:
      (lags int64 [K], values float64 [K]).
    """
    g, t = zscore(gen), zscore(gt)
    if g.shape != t.shape:
        raise ValueError(f"cross_correlation needs equal lengths, got {g.shape[0]} and {t.shape[0]}")
    n = g.size
    lags, vals = [], []
    for k in range(-max_lag, max_lag + 1):
        if n - abs(k) < 2:
            continue
        a, b = (g[k:], t[:n - k]) if k >= 0 else (g[:n + k], t[-k:])
        lags.append(k)
        vals.append(float(np.mean(a * b)))
    return np.asarray(lags, np.int64), np.asarray(vals, np.float64)


def lipsync_offset(gen: Any, gt: Any, *, max_lag: int = MAX_LAG) -> int | None:
    """M2: the lag in [-max_lag, max_lag] maximising `cross_correlation`.

    A positive offset k means the generated mouth lags the GT by k frames (gen[t] ~ gt[t - k]): a GT
    signal delayed by 2 frames gives 2. Ties go to the smallest |k|.

    Returns:
      The offset in frames, or None if either signal is constant or shorter than 2 frames (no
      alignment can be measured; such a clip counts as out of sync).
    """
    g, t = _f64(gen).reshape(-1), _f64(gt).reshape(-1)
    if g.size < 2 or g.std() == 0 or t.std() == 0:
        return None
    lags, vals = cross_correlation(g, t, max_lag=max_lag)
    if lags.size == 0:
        return None
    order = np.argsort(np.abs(lags) * 2 + (lags > 0), kind="stable")  # 0, -1, 1, -2, 2, ...
    best = order[np.argmax(vals[order])]
    return int(lags[best])


def sync_fraction(offsets: Sequence[int | None], *, max_abs: int = M2_MAX_ABS_OFFSET) -> float:
    """Fraction of clips whose offset is known and |offset| <= max_abs (NaN for no clips)."""
    if not len(offsets):
        return float("nan")
    return float(np.mean([o is not None and abs(o) <= max_abs for o in offsets]))


# ----------------------------------------------------------------------------------------------
# M3: bilabial closures.


def closure_threshold(gt: Any, *, rel: float = CLOSURE_REL, quantile: float = CLOSURE_QUANTILE) -> float:
    """Per-clip "lips closed" threshold: min(gt) + rel (p_quantile(gt) - min(gt)).

    Args:
      gt: [T] GT openness of the clip (trimmed to the speech range).
      rel: fraction of the way from the closed to the typical open mouth (0.3).
      quantile: percentile taken as the typical open mouth (95).

    Returns:
      The threshold; openness strictly below it counts as closed.
    """
    x = _f64(gt).reshape(-1)
    if x.size == 0:
        return float("nan")
    lo = float(x.min())
    return lo + rel * (float(np.percentile(x, quantile)) - lo)


def closure_counts(gen: Any, gt: Any, bilabial_frames: Any, vowel_frames: Any, *, tol: int = CLOSURE_TOL_FRAMES,
                   threshold: float | None = None) -> dict[str, Any]:
    """M3 counts for one clip.

    A bilabial event at centre frame c is a hit if gen[f] < threshold for some f in [c - tol, c + tol]
    (clipped to the clip). A leak is a vowel-centre frame v where gen[v] < threshold while gt[v] >= threshold.
    Frames outside [0, T) are ignored.

    Args:
      gen, gt: [T] generated and GT openness (trimmed; frame indices below are relative to it).
      bilabial_frames: centre frames of the /p b m/ phonemes.
      vowel_frames: centre frames of the vowels.
      tol: half-width of the hit window in frames.
      threshold: the closure threshold; None = `closure_threshold(gt)`.

    Returns:
      dict with hits, events, leaks, vowels (counts) and threshold.
    """
    g, t = _f64(gen).reshape(-1), _f64(gt).reshape(-1)
    if g.shape != t.shape:
        raise ValueError(f"closure_counts needs equal lengths, got {g.shape[0]} and {t.shape[0]}")
    n = g.size
    thr = closure_threshold(t) if threshold is None else float(threshold)
    hits = events = 0
    for c in np.asarray(bilabial_frames, np.int64).reshape(-1):
        if 0 <= c < n:
            events += 1
            hits += bool(np.any(g[max(c - tol, 0):min(c + tol + 1, n)] < thr))
    vowels = np.asarray(vowel_frames, np.int64).reshape(-1)
    vowels = vowels[(vowels >= 0) & (vowels < n)]
    leaks = int(np.sum((g[vowels] < thr) & (t[vowels] >= thr)))
    return {"hits": int(hits), "events": int(events), "leaks": leaks, "vowels": int(vowels.size), "threshold": thr}


def closure_rates(counts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pools per-clip `closure_counts` over clips: hit_rate = sum hits / sum events, leak_rate likewise."""
    hits = sum(c["hits"] for c in counts)
    events = sum(c["events"] for c in counts)
    leaks = sum(c["leaks"] for c in counts)
    vowels = sum(c["vowels"] for c in counts)
    return {
        "hit_rate": hits / events if events else float("nan"),
        "events": int(events),
        "leak_rate": leaks / vowels if vowels else float("nan"),
        "vowel_frames": int(vowels),
    }


# ----------------------------------------------------------------------------------------------
# M4: audio gain.


def audio_gain(gen_true: Sequence[Any], gen_shuffled: Sequence[Any], gt: Sequence[Any]) -> dict[str, Any]:
    """M4: MSE(gen with shuffled audio, GT) / MSE(gen with true audio, GT), pooled over all frames.

    Args:
      gen_true, gen_shuffled, gt: per-clip [T_i] signals over the same frames clip by clip.

    Returns:
      dict: mse_true, mse_shuffled (means over all frames of all clips), gain (their ratio; inf if
      only the true-audio error is 0, NaN if both are), gain_median_per_clip.
    """
    if not len(gen_true) == len(gen_shuffled) == len(gt):
        raise ValueError("audio_gain needs the same number of clips in all three lists")
    se_t = se_s = 0.0
    frames = 0
    per_clip = []
    for a, s, t in zip(gen_true, gen_shuffled, gt):
        a, s, t = _f64(a).reshape(-1), _f64(s).reshape(-1), _f64(t).reshape(-1)
        if not a.shape == s.shape == t.shape:
            raise ValueError(f"audio_gain clip lengths differ: {a.size}, {s.size}, {t.size}")
        if a.size == 0:
            continue
        et, es = float(np.sum((a - t) ** 2)), float(np.sum((s - t) ** 2))
        se_t, se_s, frames = se_t + et, se_s + es, frames + a.size
        if et > 0:
            per_clip.append(es / et)
    if frames == 0:
        nan = float("nan")
        return {"mse_true": nan, "mse_shuffled": nan, "gain": nan, "gain_median_per_clip": nan}
    mse_t, mse_s = se_t / frames, se_s / frames
    gain = mse_s / mse_t if mse_t > 0 else (float("inf") if mse_s > 0 else float("nan"))
    return {"mse_true": mse_t, "mse_shuffled": mse_s, "gain": gain,
            "gain_median_per_clip": float(np.median(per_clip)) if per_clip else float("nan")}


# ----------------------------------------------------------------------------------------------
# M5: distribution match.


def std_ratios(gen: Sequence[Any], gt: Sequence[Any], *, min_std: float = MIN_GT_STD) -> dict[str, Any]:
    """M5: generated / GT per-dimension std and first-difference std, averaged over dimensions.

    Frames are pooled over clips (so between-clip variation counts); first differences are taken within
    each clip. Dims whose GT std (resp. GT difference std) is <= min_std are left out of the ratio and
    reported as constant.

    Args:
      gen, gt: per-clip [T_i, D] motion of one group of dims, the same lengths clip by clip.
      min_std: GT std floor.

    Returns:
      dict: std_ratio, velocity_std_ratio (means over the kept dims), dims (D), constant_dims, and
      constant_dims_gen_std (mean generated std on the GT-constant dims; NaN if there are none).
    """
    if len(gen) != len(gt) or not len(gen):
        raise ValueError("std_ratios needs the same, non-zero number of generated and GT clips")
    g = np.concatenate([_f64(x) for x in gen])
    t = np.concatenate([_f64(x) for x in gt])
    if g.shape != t.shape or g.ndim != 2:
        raise ValueError(f"std_ratios needs matching [T, D] clips, got {g.shape} and {t.shape}")
    vg = np.concatenate([np.diff(_f64(x), axis=0) for x in gen])
    vt = np.concatenate([np.diff(_f64(x), axis=0) for x in gt])
    sd_g, sd_t = g.std(0), t.std(0)
    vsd_g, vsd_t = (vg.std(0), vt.std(0)) if vg.shape[0] else (np.zeros(g.shape[1]), np.zeros(g.shape[1]))
    keep, vkeep = sd_t > min_std, vsd_t > min_std
    return {
        "std_ratio": float(np.mean(sd_g[keep] / sd_t[keep])) if keep.any() else float("nan"),
        "velocity_std_ratio": float(np.mean(vsd_g[vkeep] / vsd_t[vkeep])) if vkeep.any() else float("nan"),
        "dims": int(g.shape[1]),
        "constant_dims": int((~keep).sum()),
        "constant_dims_gen_std": float(np.mean(sd_g[~keep])) if (~keep).any() else float("nan"),
    }


# ----------------------------------------------------------------------------------------------
# M6: seed diversity.


def pairwise_rms_distance(trajs: Any, scale: Any = None) -> float:
    """Mean over seed pairs of the RMS (over frames and dims) difference of two trajectories.

    Args:
      trajs: [S, T, D] trajectories of one clip under S seeds.
      scale: [D] per-dimension divisor (e.g. the data std, so the distance is in std units); None = 1.

    Returns:
      The mean pairwise distance (NaN for S < 2).
    """
    x = _f64(trajs)
    if x.ndim != 3:
        raise ValueError(f"pairwise_rms_distance needs [S, T, D] trajectories, got shape {x.shape}")
    if scale is not None:
        x = x / _f64(scale).reshape(1, 1, -1)
    s = x.shape[0]
    d = [float(np.sqrt(np.mean((x[i] - x[j]) ** 2))) for i in range(s) for j in range(i + 1, s)]
    return float(np.mean(d)) if d else float("nan")


def pairwise_correlation(signals: Any) -> float:
    """Mean over pairs of the Pearson r between S signals [S, T] (NaN for S < 2)."""
    x = _f64(signals)
    if x.ndim != 2:
        raise ValueError(f"pairwise_correlation needs [S, T] signals, got shape {x.shape}")
    s = x.shape[0]
    r = [pearson(x[i], x[j]) for i in range(s) for j in range(i + 1, s)]
    return _nanmean(r) if r else float("nan")


# ----------------------------------------------------------------------------------------------
# Gates.


def gate(value: float, threshold: float, op: str = ">=") -> dict[str, Any]:
    """One pass/fail check: {"value", "threshold", "op", "pass"}; NaN or None values fail.

    Args:
      value: the measured number.
      threshold: the bound.
      op: ">=" or ">".
    """
    if op not in (">=", ">"):
        raise ValueError(f"gate op {op!r} is unknown; use '>=' or '>'")
    ok = value is not None and threshold is not None and not np.isnan(value) and not np.isnan(threshold)
    if ok:
        ok = bool(value >= threshold) if op == ">=" else bool(value > threshold)
    return {"value": value, "threshold": threshold, "op": op, "pass": bool(ok)}
