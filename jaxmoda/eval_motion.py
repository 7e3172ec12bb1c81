"""python -m jaxmoda.eval_motion --workdir DIR [--num-clips 32 --seeds 4 --cfg-audio S --cfg-emotion S --steps N --out report.json]

Judges a trained MoDA motion generator on held-out SynthTalk clips without a renderer (moda.md 6.3,
metrics in jaxmoda.moda.metrics). The first --num-clips 'eval' clips of the run's data folder are
generated from their own audio, identity and emotion, with the clip's first GT frame as the prefix:

  M1 audio-mouth correlation  Pearson r of generated vs GT mouth openness over the speech range
                              (leading/trailing silence trimmed by the phoneme track); mismatched
                              pairs (gen i vs GT j != i) and a circular-shift null (shifts >= 1 s).
                              Gates: matched - mismatched >= 0.5 and matched > null p95.
  M2 lip-sync offset          argmax over +-8 frames of the cross-correlation; gate: |offset| <= 1
                              on >= 90 % of clips.
  M3 bilabial closure         /p b m/ centre frames with generated openness below the clip's closure
                              threshold (GT min + 0.3 (GT p95 - GT min)) within +-1 frame; gate: hit
                              rate >= 0.8. Also the leak rate at vowel centres.
  M4 audio gain               a second generation with the audio of the next eval clip (same identity,
                              emotion, prefix; cut to the shorter clip): MSE ratio shuffled / true
                              openness vs GT; gate >= 1.3.
  M5 distribution match       generated / GT per-dim std and first-difference std for lips, eyes, pose.
  M6 seed diversity           --seeds generations of --diversity-clips clips: pairwise pose and eye
                              distances (in data-std units) and the mean pairwise mouth-openness r.

Prints one JSON object (and writes it to --out): the numbers, every gate with its pass/fail, the clip
count, and the generation wall time and frames per second (compilation included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxmoda.errors import ConfigError, DataError, cli_main
from jaxmoda.moda import metrics as mt

# (audio [B, T, L, C], identity [B, 63], emotion [B], prefix [B, 70] raw, seed) -> raw motion [B, T, 70].
GenerateFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]

_MATCHED, _SHUFFLED, _DIVERSITY = 0, 1, 2  # seed streams of the generation passes


@dataclasses.dataclass(frozen=True)
class EvalClip:
    """One held-out clip with what the metrics need.

    Attributes:
      index: the clip's index in its ClipSet.
      features: float32 [T, L, C] audio features.
      motion: float32 [T, 70] raw GT motion.
      identity: float32 [63] canonical keypoints.
      emotion: emotion label.
      phone_start, phone_end: float [P] phoneme times in seconds.
      phone_id: int [P] ids into `jaxmoda.data.synthtalk.PHONEME_VOCAB` (0 = pause).
    """

    index: int
    features: np.ndarray
    motion: np.ndarray
    identity: np.ndarray
    emotion: int
    phone_start: np.ndarray
    phone_end: np.ndarray
    phone_id: np.ndarray

    @property
    def length(self) -> int:
        return int(self.motion.shape[0])

    def speech_range(self) -> tuple[int, int]:
        """[a, b) frames from the first to the last non-pause phoneme (`metrics.speech_frames`)."""
        return mt.speech_frames(self.phone_start, self.phone_end, self.phone_id, self.length,
                                pause_id=_phone_ids()["pause"])

    def centre_frames(self, kind: str) -> np.ndarray:
        """Centre frames (absolute) of the phonemes of `kind`: "bilabial" (p, b, m) or "vowel"."""
        ids = _phone_ids()[kind]
        sel = np.isin(np.asarray(self.phone_id), ids)
        return mt.centre_frames(np.asarray(self.phone_start)[sel], np.asarray(self.phone_end)[sel])


_PHONE_IDS: dict[str, Any] = {}


def _phone_ids() -> dict[str, Any]:
    """Vocabulary ids of the pause, the bilabials and the vowels (SynthTalk's viseme classes)."""
    if not _PHONE_IDS:
        from jaxmoda.data import synthtalk as st
        _PHONE_IDS["pause"] = st.PHONEME_VOCAB.index("_")
        _PHONE_IDS["bilabial"] = np.asarray([i for i, p in enumerate(st.PHONEME_VOCAB) if p in st.BILABIALS])
        _PHONE_IDS["vowel"] = np.asarray([i for i, p in enumerate(st.PHONEME_VOCAB)
                                          if p not in ("_", "<unk>") and st.viseme(p)[0] == "vowel"])
    return _PHONE_IDS


def eval_clips(clips, num_clips: int) -> list[EvalClip]:
    """The first `num_clips` 'eval'-split clips of a `jaxmoda.moda.data.ClipSet`."""
    ids = clips.indices("eval")[:num_clips]
    if len(ids) < 2:
        raise DataError(f"the clips folder has {len(clips.indices('eval'))} eval clips; the metrics need at least 2 "
                        "(generate more clips with python -m jaxmoda.data.synthtalk)")
    out = []
    for i in ids:
        i = int(i)
        features, motion = clips.clip(i)
        ex = clips.extras[i]
        out.append(EvalClip(index=i, features=np.asarray(features, np.float32), motion=np.asarray(motion, np.float32),
                            identity=np.asarray(clips.identity[i], np.float32), emotion=int(clips.emotion[i]),
                            phone_start=np.asarray(ex["phone_start"], np.float64),
                            phone_end=np.asarray(ex["phone_end"], np.float64),
                            phone_id=np.asarray(ex["phone_id"], np.int64)))
    return out


@dataclasses.dataclass
class _Request:
    audio: np.ndarray      # [T, L, C]
    identity: np.ndarray   # [63]
    emotion: int
    prefix: np.ndarray     # [70] raw


def _derived_seed(seed: int, stream: int, batch: int) -> int:
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, stream, batch]).generate_state(1, np.uint32)
    return int(state[0]) & 0x7FFFFFFF


class _Batcher:
    """Runs requests through a `GenerateFn` in length-sorted batches (zero-padded audio, outputs cut back)."""

    def __init__(self, generate_fn: GenerateFn, batch_size: int, bar: Any = None):
        self.generate_fn = generate_fn
        self.batch_size = batch_size
        self.bar = bar
        self.seconds = 0.0
        self.frames = 0
        self.padded_frames = 0
        self.calls = 0

    def num_batches(self, n: int) -> int:
        return math.ceil(n / self.batch_size)

    def run(self, requests: Sequence[_Request], seed: int, stream: int) -> list[np.ndarray]:
        order = sorted(range(len(requests)), key=lambda k: requests[k].audio.shape[0])
        out: list[np.ndarray | None] = [None] * len(requests)
        for nb, start in enumerate(range(0, len(order), self.batch_size)):
            rows = order[start:start + self.batch_size]
            lengths = [requests[k].audio.shape[0] for k in rows]
            t_max = max(lengths)
            feat_shape = requests[rows[0]].audio.shape[1:]
            audio = np.zeros((len(rows), t_max) + feat_shape, np.float32)
            for r, k in enumerate(rows):
                audio[r, :lengths[r]] = requests[k].audio
            identity = np.stack([requests[k].identity for k in rows]).astype(np.float32)
            emotion = np.asarray([requests[k].emotion for k in rows], np.int32)
            prefix = np.stack([requests[k].prefix for k in rows]).astype(np.float32)
            t0 = time.perf_counter()
            motion = np.asarray(self.generate_fn(audio, identity, emotion, prefix, _derived_seed(seed, stream, nb)))
            self.seconds += time.perf_counter() - t0
            if motion.shape != (len(rows), t_max, 70):
                raise ValueError(f"the generator returned motion of shape {motion.shape}; expected "
                                 f"{(len(rows), t_max, 70)}")
            for r, k in enumerate(rows):
                out[k] = np.asarray(motion[r, :lengths[r]], np.float32)
            self.frames += sum(lengths)
            self.padded_frames += len(rows) * t_max
            self.calls += 1
            if self.bar is not None:
                self.bar.update(1)
        return out  # type: ignore[return-value]


def _openness(x: np.ndarray) -> np.ndarray:
    from jaxmoda.moda.motion import mouth_openness
    return np.asarray(mouth_openness(np.asarray(x, np.float32)), np.float64)


def evaluate(clips: Sequence[EvalClip], generate_fn: GenerateFn, *, seeds: int = 4, diversity_clips: int = 4,
             batch_size: int = 16, seed: int = 0, motion_scale: np.ndarray | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Generates the clips and computes M1-M6 with their gates.

    Args:
      clips: held-out clips (at least 2).
      generate_fn: the generator (see `GenerateFn`); clips of one call share T (audio zero-padded
        past each clip's end, outputs cut back).
      seeds: generations per clip for M6 (M6 is skipped for fewer than 2).
      diversity_clips: how many of the clips (the first ones) M6 uses.
      batch_size: clips per generator call.
      seed: base seed; each pass and batch gets its own seed derived from it.
      motion_scale: [70] per-dim divisor of the M6 distances (the run's motion std); None = 1.
      progress: show a tqdm bar over batches.

    Returns:
      The report dict (see the module docstring); floats may be NaN / inf (`json_safe` turns them
      into null / strings).
    """
    from tqdm.auto import tqdm

    from jaxmoda.moda.motion import group_dims
    n = len(clips)
    if n < 2:
        raise ConfigError(f"the metrics need at least 2 clips, got {n}")
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size} must be at least 1")
    k_div = min(max(diversity_clips, 0), n) if seeds >= 2 else 0
    batcher = _Batcher(generate_fn, batch_size)
    total = 2 * batcher.num_batches(n) + (seeds * batcher.num_batches(k_div) if k_div else 0)
    bar = batcher.bar = tqdm(total=total, desc="generate", unit="batch", disable=not progress)

    # Pass 1: each clip from its own audio. Pass 2: the audio of the next clip (cyclic), cut to the shorter.
    matched = batcher.run([_Request(c.features, c.identity, c.emotion, c.motion[0]) for c in clips], seed, _MATCHED)
    partner = [(k + 1) % n for k in range(n)]
    cut = [min(clips[k].length, clips[partner[k]].length) for k in range(n)]
    shuffled = batcher.run([_Request(clips[partner[k]].features[:cut[k]], clips[k].identity, clips[k].emotion,
                                     clips[k].motion[0]) for k in range(n)], seed, _SHUFFLED)
    # Pass 3: the first k_div clips under `seeds` seeds.
    diverse: list[list[np.ndarray]] = []
    for s in range(seeds if k_div else 0):
        reqs = [_Request(c.features, c.identity, c.emotion, c.motion[0]) for c in clips[:k_div]]
        diverse.append(batcher.run(reqs, seed, _DIVERSITY + s))
    bar.close()

    ranges = [c.speech_range() for c in clips]
    gt_open = [_openness(c.motion) for c in clips]
    gen_open = [_openness(m) for m in matched]
    gt_trim = [o[a:b] for o, (a, b) in zip(gt_open, ranges)]
    gen_trim = [o[a:b] for o, (a, b) in zip(gen_open, ranges)]

    # M1.
    m1 = mt.audio_mouth_correlation(gen_trim, gt_trim)
    # M2.
    offsets = [mt.lipsync_offset(g, t) for g, t in zip(gen_trim, gt_trim)]
    known = [abs(o) for o in offsets if o is not None]
    m2 = {"offsets": offsets, "frac_within_1": mt.sync_fraction(offsets),
          "mean_abs_offset": float(np.mean(known)) if known else float("nan")}
    # M3: frames relative to the trimmed range; GT against itself as a sanity reference.
    counts, gt_counts = [], []
    for c, g, t, (a, _) in zip(clips, gen_trim, gt_trim, ranges):
        bil, vow = c.centre_frames("bilabial") - a, c.centre_frames("vowel") - a
        counts.append(mt.closure_counts(g, t, bil, vow))
        gt_counts.append(mt.closure_counts(t, t, bil, vow))
    m3 = mt.closure_rates(counts)
    m3["gt_hit_rate"] = mt.closure_rates(gt_counts)["hit_rate"]
    m3["threshold_rule"] = (f"per clip: GT min + {mt.CLOSURE_REL} (GT p{mt.CLOSURE_QUANTILE:g} - GT min) over the "
                            f"speech range; hit if generated openness < threshold within +-{mt.CLOSURE_TOL_FRAMES} "
                            "frame of the phoneme's centre frame")
    # M4: the speech range of the clip, cut to the shuffled generation's length.
    g_true, g_shuf, g_gt = [], [], []
    for k, ((a, b), m) in enumerate(zip(ranges, cut)):
        e = min(b, m)
        g_true.append(gen_open[k][a:e])
        g_shuf.append(_openness(shuffled[k])[a:e])
        g_gt.append(gt_open[k][a:e])
    m4 = mt.audio_gain(g_true, g_shuf, g_gt)
    m4["audio_from"] = "the next eval clip (cyclic)"
    # M5 on whole clips.
    m5 = {}
    for group in ("lips", "eyes", "pose"):
        dims = group_dims(group)
        m5[group] = mt.std_ratios([m[:, dims] for m in matched], [c.motion[:, dims] for c in clips])
    # M6.
    if k_div:
        pose_d, eye_d, mouth_r = [], [], []
        scale = None if motion_scale is None else np.asarray(motion_scale, np.float64).reshape(70)
        for j in range(k_div):
            trajs = np.stack([diverse[s][j] for s in range(seeds)])  # [S, T, 70]
            for dims, acc in ((group_dims("pose"), pose_d), (group_dims("eyes"), eye_d)):
                acc.append(mt.pairwise_rms_distance(trajs[:, :, dims], None if scale is None else scale[dims]))
            a, b = ranges[j]
            mouth_r.append(mt.pairwise_correlation(_openness(trajs)[:, a:b]))
        m6 = {"clips": k_div, "seeds": seeds, "pose_distance": float(np.mean(pose_d)),
              "eye_distance": float(np.mean(eye_d)), "mouth_r": float(np.nanmean(mouth_r)),
              "distance_units": "data std" if scale is not None else "raw"}
    else:
        m6 = {"clips": 0, "seeds": seeds, "pose_distance": None, "eye_distance": None, "mouth_r": None,
              "skipped": "needs --seeds >= 2 and --diversity-clips >= 1"}

    gates = {
        "m1_diff": mt.gate(m1["diff"], mt.M1_MIN_DIFF, ">="),
        "m1_above_null": mt.gate(m1["matched_r"], m1["circular_p95"], ">"),
        "m2_sync": mt.gate(m2["frac_within_1"], mt.M2_MIN_FRACTION, ">="),
        "m3_hit_rate": mt.gate(m3["hit_rate"], mt.M3_MIN_HIT_RATE, ">="),
        "m4_gain": mt.gate(m4["gain"], mt.M4_MIN_GAIN, ">="),
    }
    seconds = batcher.seconds
    return {
        "num_clips": n,
        "clip_indices": [c.index for c in clips],
        "frames": int(sum(c.length for c in clips)),
        "speech_frames": int(sum(b - a for a, b in ranges)),
        "m1_audio_mouth_correlation": m1,
        "m2_lipsync_offset": m2,
        "m3_bilabial_closure": m3,
        "m4_audio_gain": m4,
        "m5_distribution": m5,
        "m6_seed_diversity": m6,
        "gates": gates,
        "passed": all(g["pass"] for g in gates.values()),
        "generation": {"seconds": seconds, "frames": batcher.frames, "padded_frames": batcher.padded_frames,
                       "calls": batcher.calls, "batch_size": batch_size,
                       "frames_per_second": batcher.frames / seconds if seconds > 0 else float("nan")},
    }


def json_safe(x: Any) -> Any:
    """`x` with numpy scalars as Python numbers, NaN as null and +-inf as "inf" / "-inf" (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return float(f"{v:.6g}")
    return x


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.eval_motion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num-clips", type=int, default=32, help="held-out clips to evaluate (at least 2)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per clip for M6 (diversity)")
    parser.add_argument("--diversity-clips", type=int, default=4, help="clips used by M6")
    parser.add_argument("--cfg-audio", type=float, default=None, help="audio guidance scale (default: the run's)")
    parser.add_argument("--cfg-emotion", type=float, default=None, help="emotion guidance scale (default: the run's)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's config)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16, help="clips per generation call")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--out", default="", help="also write the JSON report here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.num_clips < 2:
        raise ConfigError("--num-clips must be at least 2 (M1 and M4 pair different clips)")
    if args.seeds < 1 or args.diversity_clips < 0 or args.batch_size < 1:
        raise ConfigError("--seeds and --batch-size must be at least 1 and --diversity-clips at least 0")
    if args.steps is not None and args.steps < 1:
        raise ConfigError("--steps must be at least 1")

    from jaxmoda.logs import emit, setup_logging
    setup_logging()
    from jaxmoda.moda.data import data_dir, load_clips
    from jaxmoda.moda.generate import generate_motion
    from jaxmoda.nn.logical import axis_rules
    from jaxmoda.train.sampling import load_for_sampling

    task, graphdef, params, mesh, rules = load_for_sampling(args.workdir, step=args.step)
    config = task.config
    if config.model.name != "moda":
        raise ConfigError(f"{args.workdir} trained {config.model.name!r}; eval_motion judges MoDA motion runs")
    clip_set = load_clips(data_dir(config), config.audio, progress=not args.no_progress)
    clips = eval_clips(clip_set, args.num_clips)
    std = np.asarray(config.moda.motion_std, np.float64)

    def generate_fn(audio, identity, emotion, prefix, seed):
        try:
            with axis_rules(mesh, rules):
                return generate_motion(task, graphdef, params, audio, identity=identity, emotion=emotion,
                                       prefix=prefix, cfg_audio=args.cfg_audio, cfg_emotion=args.cfg_emotion,
                                       steps=args.steps, seed=seed)
        except ValueError as e:  # e.g. a run whose config lacks the motion statistics
            raise ConfigError(str(e).splitlines()[0]) from None

    report = evaluate(clips, generate_fn, seeds=args.seeds, diversity_clips=args.diversity_clips,
                      batch_size=args.batch_size, seed=args.seed, motion_scale=std if std.shape == (70,) else None,
                      progress=not args.no_progress)
    d = config.moda
    report = {"workdir": args.workdir, "step": args.step,
              "settings": {"cfg_audio": d.cfg_audio if args.cfg_audio is None else args.cfg_audio,
                           "cfg_emotion": d.cfg_emotion if args.cfg_emotion is None else args.cfg_emotion,
                           "steps": config.objective.sample_steps if args.steps is None else args.steps,
                           "seed": args.seed, "seeds": args.seeds},
              **report}
    emit(json.dumps(json_safe(report), indent=1, allow_nan=False), args.out)
    return 0


if __name__ == "__main__":
    cli_main(main)
