"""python -m jaxmoda.data.videos --in VIDEO_DIR --out RECORDS_DIR --motion-extractor RENDERER_RUN
                                [--emotions labels.csv --fps 25 --size 256 --clip-seconds 10 --stats-only]

A folder of talking-head videos (HDTF, CelebV-HQ, MEAD or your own; .mp4 .mov .mkv .avi .webm .m4v,
searched recursively) -> sharded training records in SynthTalk's clip format, so MoDA's generator
trains on them with `--config.data_dir=RECORDS_DIR` (configs/moda/records_b.py):

1. decode (PyAV), resample to `--fps` by presentation time (variable frame rates too: output frame i
   shows the source frame on screen at t0 + i/fps), turn phone videos upright by their display matrix;
2. find the face on every `--detect-every`-th frame (OpenCV's Haar cascade from the opencv-python-headless
   wheel), interpolate the boxes between, smooth them over `--smooth` frames, crop `--size` x `--size`
   (jaxmoda.data.face_track);
3. run the renderer's motion extractor (a trained renderer run, `--motion-extractor`) batched on the
   devices: 70-d motion per frame, canonical keypoints averaged over the clip as the identity, so
   generated and rendered motion share one space;
4. audio: the first audio stream at 16 kHz mono, aligned to the frames: frame i <-> samples
   [640 i, 640 (i + 1)) counted from the first video frame's time. Records keep the samples; the
   training loader computes the configured front end's features (log-mel, or HuBERT) and caches them;
5. cut clips of `--clip-seconds` (a shorter tail is kept when it holds one 80-frame window, else
   dropped), split train/eval by video (`--eval-fraction`, a hash of the file name), write one part
   per video: clips-*.arrayrecord (motion, audio, identity, emotion) + frames-*.arrayrecord (JPEG crops);
6. metadata.json (listing every finished part) and motion_stats.json (per-dimension mean / std of
   the train clips' motion, the tiny-std guard applied).

Work is split by file over processes (video k goes to process k mod N). A video whose part is finished
is skipped on rerun; a bad video (unreadable, empty, no face, shorter than one window) is logged, counted
with its reason and skipped. `--stats-only` rewrites the statistics and metadata of finished parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import logging
import os
import time

import numpy as np

from jaxmoda.data.face_track import crops_of, track_faces  # noqa: F401  (part of this module's API)
from jaxmoda.errors import ConfigError, DataError, cli_main
from jaxmoda.logs import setup_logging

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
WINDOW = 80                 # MoDA's window: a clip must hold one
SAMPLE_RATE = 16000
PARTS = "parts"


@dataclasses.dataclass
class Options:
    fps: float = 25.0
    size: int = 256
    clip_seconds: float = 10.0
    eval_fraction: float = 0.1
    smooth: int = 9
    min_face_fraction: float = 0.5
    detect: bool = True
    detect_every: int = 5       # the face detector runs on every k-th output frame; boxes between are interpolated
    batch: int = 32
    crop_scale: float = 2.0     # crop side / face-box width (jaxmoda.moda.render.face.CROP_SCALE)
    crop_shift: float = -0.12   # crop centre offset in face-box heights (face.CENTER_SHIFT)


def list_videos(root: str) -> list[str]:
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, f), root) for f in files if f.lower().endswith(VIDEO_EXTS)]
    return sorted(found)


def part_name(rel: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in os.path.splitext(rel)[0])[-60:]
    return f"{stem}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"


def split_of(rel: str, eval_fraction: float) -> str:
    u = int(hashlib.sha1(("split:" + rel).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "eval" if u < eval_fraction else "train"


def read_emotions(path: str) -> dict[str, int]:
    """labels.csv rows `video_path,emotion` (path relative to --in, or its file name; emotion a name of
    jaxmoda.data.synthtalk.EMOTIONS or its index) -> {key: index}. Unlisted videos are neutral."""
    from jaxmoda.data.synthtalk import EMOTIONS
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = [p.strip() for p in line.strip().split(",")]
            if not line.strip() or line.startswith("#") or (n == 1 and parts[-1].lower() == "emotion"):
                continue
            if len(parts) != 2:
                raise ConfigError(f"{path}:{n}: expected 'video,emotion', got {line.strip()!r}")
            name, emo = parts
            if emo.lower() in EMOTIONS:
                out[name] = EMOTIONS.index(emo.lower())
            elif emo.isdigit() and int(emo) < len(EMOTIONS):
                out[name] = int(emo)
            else:
                raise ConfigError(f"{path}:{n}: unknown emotion {emo!r}; use one of {', '.join(EMOTIONS)}")
    return out


class MotionExtractor:
    """A renderer's motion extractor, jitted over this host's devices: crops -> (x_c, motion)."""

    def __init__(self, graphdef, params, size: int, batch: int):
        import jax
        from flax import nnx
        self.size, self.params = int(size), params
        self.devices = jax.device_count()
        self.batch = max(self.devices, batch - batch % self.devices)
        self.fn = jax.jit(lambda p, x: nnx.merge(graphdef, p).extract(x))

    @classmethod
    def from_run(cls, workdir: str, batch: int) -> MotionExtractor:
        from jaxmoda.train.sampling import load_for_sampling
        task, graphdef, params, _, _ = load_for_sampling(workdir)
        if task.config.model.name != "renderer":
            raise ConfigError(f"--motion-extractor {workdir} trained {task.config.model.name!r}; pass a renderer run")
        return cls(graphdef, params, task.config.model.image_size, batch)

    @classmethod
    def from_module(cls, model, size: int, batch: int = 32) -> MotionExtractor:
        from flax import nnx
        graphdef, params = nnx.split(model, nnx.Param)
        return cls(graphdef, params, size, batch)

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from jaxmoda.io.images import array_to_pil
        kps, motions = [], []
        for s in range(0, len(crops), self.batch):
            part = crops[s:s + self.batch]
            if part.shape[1] != self.size:
                part = np.stack([np.asarray(array_to_pil(c).resize((self.size, self.size))) for c in part])
            n = len(part)
            x = np.concatenate([part, np.repeat(part[-1:], -n % self.devices, 0)]).astype(np.float32) / 127.5 - 1
            kp, motion = self.fn(self.params, x)
            kps.append(np.asarray(kp)[:n])
            motions.append(np.asarray(motion)[:n])
        return np.concatenate(kps), np.concatenate(motions)


def _jpeg_pack(frames: np.ndarray) -> bytes:
    from PIL import Image
    blobs = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=92)
        blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
    out = io.BytesIO()
    np.savez(out, jpeg=np.concatenate(blobs), offsets=np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64))
    return out.getvalue()


def read_frames(record: bytes) -> np.ndarray:
    """uint8 [T, S, S, 3] of one frames-*.arrayrecord record."""
    from PIL import Image
    with np.load(io.BytesIO(record), allow_pickle=False) as z:
        jpeg, off = z["jpeg"], z["offsets"]
    return np.stack([np.asarray(Image.open(io.BytesIO(jpeg[a:b].tobytes())).convert("RGB"))
                     for a, b in zip(off[:-1], off[1:])])


def aligned_audio(wave: np.ndarray, audio_start: float, video_start: float, num_frames: int, fps: float) -> np.ndarray:
    """Samples [640 i, 640 (i + 1)) for frame i, counted from the first video frame (zero-padded)."""
    per = int(round(SAMPLE_RATE / fps))
    s0 = int(round((video_start - audio_start) * SAMPLE_RATE))
    out = np.zeros(per * num_frames, np.float32)
    lo, hi = max(s0, 0), min(s0 + len(out), len(wave))
    if hi > lo:
        out[lo - s0:hi - s0] = wave[lo:hi]
    return out


def clip_label(rel: str, start: int, stop: int) -> str:
    """A clip record's `text`: the video and its frame range, read back by `clip_start`."""
    return f"{rel} frames {start}-{stop}"


def clip_start(label: str) -> int:
    """The first video frame of a clip record, from its `text` (`clip_label`)."""
    return int(label.rsplit(" frames ", 1)[1].split("-")[0])


def clip_bounds(num_frames: int, clip_frames: int) -> list[tuple[int, int]]:
    bounds = [(a, min(a + clip_frames, num_frames)) for a in range(0, num_frames, clip_frames)]
    return [(a, b) for a, b in bounds if b - a >= WINDOW]


def process_video(path: str, rel: str, part_dir: str, extractor, opts: Options, emotion: int, timings: dict) -> dict:
    """Writes one video's part (clips + frames shards, then done.json); returns its summary."""
    from array_record.python.array_record_module import ArrayRecordWriter

    from jaxmoda.data import synthtalk
    from jaxmoda.io.atomic import write_json
    from jaxmoda.io.video import frame_times, read_audio, resample_indices
    t = time.perf_counter()
    times, end = frame_times(path)
    idx = resample_indices(times, end, opts.fps)
    if len(idx) < WINDOW:
        raise DataError(f"shorter than one {WINDOW}-frame window ({len(idx)} frames at {opts.fps:g} fps)")
    audio = read_audio(path, SAMPLE_RATE)
    if audio is None:
        raise DataError("no audio stream")
    wave = aligned_audio(audio[0], audio[1], times[0], len(idx), opts.fps)
    boxes, _ = track_faces(path, idx, opts) if opts.detect else (None, None)
    timings["decode_detect"] += time.perf_counter() - t
    t = time.perf_counter()
    crops = crops_of(path, idx, boxes, opts)
    timings["crop"] += time.perf_counter() - t
    t = time.perf_counter()
    x_c, motion = extractor(crops)
    timings["extract"] += time.perf_counter() - t
    t = time.perf_counter()
    split = split_of(rel, opts.eval_fraction)
    per = int(round(SAMPLE_RATE / opts.fps))
    os.makedirs(part_dir, exist_ok=True)
    clips_path, frames_path = os.path.join(part_dir, "clips.arrayrecord"), os.path.join(part_dir, "frames.arrayrecord")
    clips_w = ArrayRecordWriter(clips_path + ".tmp", synthtalk.WRITER_OPTIONS)
    frames_w = ArrayRecordWriter(frames_path + ".tmp", synthtalk.WRITER_OPTIONS)
    bounds = clip_bounds(len(idx), int(round(opts.clip_seconds * opts.fps)))
    empty_f, empty_i = np.zeros(0, np.float32), np.zeros(0, np.int32)
    for a, b in bounds:
        clips_w.write(synthtalk.encode_clip({
            "audio": wave[per * a:per * b], "motion": motion[a:b], "emotion": emotion, "emotion_intensity": 1.0,
            "identity": x_c[a:b].mean(0), "identity_id": -1, "voice": rel, "sentence_ids": empty_i,
            "text": clip_label(rel, a, b), "split": split, "held_out_voice": False, "held_out_sentence": False,
            "rate_wpm": 0, "pitch": 0, "seed": 0, "phone_start": empty_f, "phone_end": empty_f, "phone_id": empty_i,
            "phone_stress": np.zeros(0, np.int8), "blink_times": empty_f, "sample_rate": SAMPLE_RATE,
            "fps": int(round(opts.fps))}))
        frames_w.write(_jpeg_pack(crops[a:b]))
    clips_w.close()
    frames_w.close()
    os.replace(clips_path + ".tmp", clips_path)
    os.replace(frames_path + ".tmp", frames_path)
    used = np.concatenate([motion[a:b] for a, b in bounds]).astype(np.float64)
    summary = {"video": rel, "split": split, "emotion": emotion, "clips": len(bounds), "frames": int(len(used)),
               "seconds": len(idx) / opts.fps, "sum": used.sum(0).tolist(), "sum_sq": (used ** 2).sum(0).tolist()}
    write_json(os.path.join(part_dir, "done.json"), summary)  # last: marks the part finished
    timings["write"] += time.perf_counter() - t
    return summary


def finalize(out: str, opts: Options) -> dict:
    """metadata.json and motion_stats.json over every finished part."""
    from jaxmoda.data import synthtalk
    from jaxmoda.io.atomic import write_json
    from jaxmoda.moda.motion import MotionStats
    root = os.path.join(out, PARTS)
    parts = sorted(p for p in os.listdir(root) if os.path.isfile(os.path.join(root, p, "done.json"))) \
        if os.path.isdir(root) else []
    done = [json.load(open(os.path.join(root, p, "done.json"))) for p in parts]
    if not done:
        raise DataError(f"{out} has no finished videos; nothing to describe")
    counts = {s: sum(d["clips"] for d in done if d["split"] == s) for s in ("train", "eval")}
    stats_split = "train" if any(d["split"] == "train" for d in done) else "eval"
    sel = [d for d in done if d["split"] == stats_split]
    n = max(sum(d["frames"] for d in sel), 1)
    mean = np.sum([d["sum"] for d in sel], 0) / n
    std = np.sqrt(np.maximum(np.sum([d["sum_sq"] for d in sel], 0) / n - mean ** 2, 0.0))
    std = np.where(std < 1e-4, 1.0, std)  # the tiny-std guard (constant dimensions)
    stats = MotionStats(mean=mean.astype(np.float32), std=std.astype(np.float32))
    stats.save(os.path.join(out, synthtalk.STATS_FILE))
    meta = {"format": synthtalk.FORMAT, "source": "videos", "counts": counts,
            "shards": [{"file": os.path.join(PARTS, p, "clips.arrayrecord"), "clips": d["clips"],
                        "frames_file": os.path.join(PARTS, p, "frames.arrayrecord"), "video": d["video"]}
                       for p, d in zip(parts, done)],
            "videos": len(done), "hours": sum(d["seconds"] for d in done) / 3600.0, "fps": opts.fps,
            "sample_rate": SAMPLE_RATE, "samples_per_frame": int(round(SAMPLE_RATE / opts.fps)), "size": opts.size,
            "emotions": list(synthtalk.EMOTIONS),
            "motion_stats": {"split": stats_split, "file": synthtalk.STATS_FILE,
                             "mean": stats.mean.tolist(), "std": stats.std.tolist()}}
    write_json(os.path.join(out, synthtalk.METADATA_FILE), meta)
    return meta


def run(in_dir: str, out: str, motion_extractor: str | MotionExtractor, opts: Options, emotions: dict[str, int],
        process_index: int = 0, process_count: int = 1, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    from jaxmoda.io.atomic import write_json
    if not os.path.isdir(in_dir):
        raise DataError(f"--in {in_dir} is not a folder of videos")
    videos = list_videos(in_dir)
    if not videos:
        raise DataError(f"no videos ({', '.join(VIDEO_EXTS)}) under {in_dir}")
    mine = videos[process_index::process_count]
    timings = {"decode_detect": 0.0, "crop": 0.0, "extract": 0.0, "write": 0.0}
    report = {"videos": len(mine), "new": 0, "already_done": 0, "skipped": {}, "clips": 0, "hours": 0.0}
    extractor = None
    start = time.perf_counter()
    for rel in tqdm(mine, desc="videos", unit="video", disable=not progress):
        part_dir = os.path.join(out, PARTS, part_name(rel))
        if os.path.isfile(os.path.join(part_dir, "done.json")):
            report["already_done"] += 1
            continue
        skipped = os.path.join(part_dir, "skipped.json")
        if os.path.isfile(skipped):
            reason = json.load(open(skipped))["reason"]
        else:
            if extractor is None:
                extractor = motion_extractor if isinstance(motion_extractor, MotionExtractor) else \
                    MotionExtractor.from_run(motion_extractor, opts.batch)
            emotion = emotions.get(rel, emotions.get(os.path.basename(rel), emotions.get("*", 5)))
            try:
                summary = process_video(os.path.join(in_dir, rel), rel, part_dir, extractor, opts, emotion, timings)
                report["new"] += 1
                report["clips"] += summary["clips"]
                report["hours"] += summary["seconds"] / 3600.0
                continue
            except DataError as e:
                reason = str(e).replace(os.path.join(in_dir, rel) + ": ", "")
                write_json(skipped, {"video": rel, "reason": reason})
            log.warning("skipped %s: %s", rel, reason)
        kind = reason.split(" (")[0][:80]
        report["skipped"].setdefault(kind, []).append(rel)
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.data.videos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in", dest="in_dir", required=True, help="folder of talking-head videos")
    parser.add_argument("--out", required=True, help="records folder (resumable)")
    parser.add_argument("--motion-extractor", default=None, help="a trained renderer run (python -m jaxmoda.train "
                        "--config configs/moda/renderer_*.py)")
    parser.add_argument("--emotions", default=None, help="CSV of video,emotion (default: neutral)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--size", type=int, default=256, help="face crop side in pixels")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--eval-fraction", type=float, default=0.1)
    parser.add_argument("--no-detect", action="store_true", help="videos already framed on the face: centre crop")
    parser.add_argument("--crop-scale", type=float, default=2.0, help="crop side / face-box width: frame faces as "
                        "the motion extractor was trained (a SynthFaces-trained renderer: 1.23 with --crop-shift 0)")
    parser.add_argument("--crop-shift", type=float, default=-0.12, help="crop centre offset in face-box heights")
    parser.add_argument("--detect-every", type=int, default=5,
                        help="run the face detector on every k-th output frame and interpolate between (1 = every frame)")
    parser.add_argument("--batch", type=int, default=32, help="crops per motion-extractor call")
    parser.add_argument("--stats-only", action="store_true", help="rewrite statistics and metadata only")
    args = parser.parse_args(argv)
    setup_logging()
    if args.fps != 25:
        raise ConfigError("--fps must be 25: MoDA's motion and audio features run at 25 frames per second "
                          "(640 audio samples per frame at 16 kHz)")
    if args.size < 32 or not 0 <= args.eval_fraction < 1:
        raise ConfigError("--size must be at least 32 and --eval-fraction in [0, 1)")
    if args.detect_every < 1:
        raise ConfigError(f"--detect-every {args.detect_every}: the detector needs to run on every k-th frame, k >= 1")
    opts = Options(fps=args.fps, size=args.size, clip_seconds=args.clip_seconds, eval_fraction=args.eval_fraction,
                   detect=not args.no_detect, batch=args.batch, crop_scale=args.crop_scale, crop_shift=args.crop_shift,
                   detect_every=args.detect_every)
    import jax
    if not args.stats_only:
        if not args.motion_extractor:
            raise ConfigError("--motion-extractor is required: a trained renderer run whose motion extractor "
                              "defines the motion space")
        emotions = read_emotions(args.emotions) if args.emotions else {}
        report = run(args.in_dir, args.out, args.motion_extractor, opts, emotions,
                     jax.process_index(), jax.process_count())
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("jaxmoda.data.videos")
        print(json.dumps(report, indent=1))
    if jax.process_index() == 0:
        meta = finalize(args.out, opts)
        print(f"{args.out}: {meta['videos']} videos, {meta['hours']:.2f} h, clips {meta['counts']}")
    return 0


if __name__ == "__main__":
    cli_main(main)
