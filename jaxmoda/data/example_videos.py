"""python -m jaxmoda.data.example_videos --out DIR [--num 8 --size 256 --seed 0]
python -m jaxmoda.data.example_videos --out DIR --check RECORDS   # extracted motion against the truth

Talking-head example videos made without any footage, for trying and timing python -m jaxmoda.data.videos:
SynthTalk utterances (eSpeak NG speech with its ground-truth 70-d motion) drawn by SynthFaces at `--size`
pixels inside a wider frame, drifting slowly, written as H.264 + AAC at 25 fps. DIR/truth.npz holds each
video's motion (`<name>/motion`), so extracted motion can be compared with the truth.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from jaxmoda.errors import cli_main
from jaxmoda.logs import setup_logging


def _detectable_identity(start: int, size: int) -> int:
    """The first SynthFaces identity from `start` whose neutral face OpenCV's cascade finds in a frame."""
    from jaxmoda.data import synthfaces
    from jaxmoda.moda.render.face import detect_face
    for ident in range(start, start + 50):
        face = np.asarray(synthfaces.render_face(synthfaces.neutral_motion(), ident, size))
        canvas = np.full((size * 3 // 2, size * 2, 3), 96, np.uint8)
        canvas[size // 4:size // 4 + size, size // 2:size // 2 + size] = face
        if detect_face(canvas)[0] is not None:
            return ident
    return start


def make_video(path: str, clip: dict, identity: int, size: int, seed: int) -> np.ndarray:
    from jaxmoda.data import synthfaces
    from jaxmoda.io.video import write_mp4
    motion = np.asarray(clip["motion"], np.float32)
    faces = synthfaces.render_clip(motion, identity, size)
    rng = np.random.default_rng(seed)
    h, w = size * 3 // 2, size * 2
    yy, xx = np.mgrid[0:h, 0:w]
    tint = rng.uniform(60, 160, 3)
    background = np.clip(tint + 30 * np.sin(xx[..., None] / w * 3 + yy[..., None] / h * np.array([1, 2, 3])), 0, 255)
    t = np.arange(len(motion))
    dx = (size // 4 * np.sin(2 * np.pi * t / 200 + rng.uniform(0, 6))).astype(int)
    dy = (size // 8 * np.sin(2 * np.pi * t / 170 + rng.uniform(0, 6))).astype(int)

    def frames():
        for i, face in enumerate(faces):
            canvas = background.astype(np.uint8).copy()
            y0, x0 = size // 4 + dy[i], size // 2 + dx[i]
            canvas[y0:y0 + size, x0:x0 + size] = face
            yield canvas
    write_mp4(path, frames(), fps=25, audio=np.asarray(clip["audio"], np.float32), sample_rate=16000)
    return motion


def compare_with_truth(records: str, truth_path: str) -> dict:
    """How well the motion in `records` (python -m jaxmoda.data.videos over the example videos) follows
    the truth: per video, Pearson r and amplitude ratio (std extracted / std true) of pitch, yaw and roll
    and of the mouth opening; medians over the videos."""
    from array_record.python.array_record_module import ArrayRecordReader

    from jaxmoda.data import synthtalk
    from jaxmoda.data.videos import clip_start
    from jaxmoda.errors import DataError
    from jaxmoda.moda import motion as mo
    with np.load(truth_path) as f:
        truth = dict(f)
    got: dict[str, dict[int, np.ndarray]] = {}
    for shard in synthtalk.list_shards(records):
        reader = ArrayRecordReader(shard)
        for rec in reader.read_all():
            clip = synthtalk.read_clip(rec)
            start = clip_start(str(clip["text"]))
            got.setdefault(str(clip["voice"]), {})[start] = np.asarray(clip["motion"])
        reader.close()
    if not got:
        raise DataError(f"{records} holds no clips; write them with python -m jaxmoda.data.videos")

    def r_amp(a, b):   # NaN where either side is constant
        if a.std() < 1e-12 or b.std() < 1e-12:
            return float("nan"), (float("nan") if b.std() < 1e-12 else 0.0)
        return float(np.corrcoef(a, b)[0, 1]), float(a.std() / b.std())
    per_video = {}
    for name, parts in sorted(got.items()):
        if f"{name}/motion" not in truth:
            continue
        true = truth[f"{name}/motion"]
        idx = np.concatenate([np.arange(a, a + len(m)) for a, m in sorted(parts.items())])
        ext = np.concatenate([m for _, m in sorted(parts.items())])
        if idx.max() >= len(true):
            raise DataError(f"{records}: clips of {name} reach frame {idx.max()}, its truth has {len(true)} frames; "
                            "were the records made from these example videos?")
        true = true[idx]
        stats = {axis: r_amp(ext[:, mo.POSE.start + i], true[:, mo.POSE.start + i])
                 for i, axis in enumerate(("pitch", "yaw", "roll"))}
        stats["mouth"] = r_amp(np.asarray(mo.mouth_openness(ext)), np.asarray(mo.mouth_openness(true)))
        per_video[name] = {k: {"r": v[0], "amplitude": v[1]} for k, v in stats.items()}
    if not per_video:
        raise DataError(f"no video of {records} has a truth entry in {truth_path} (records name {sorted(got)[:3]}, "
                        f"truth names {sorted(k.rsplit('/', 1)[0] for k in truth)[:3]}); pass --in the example folder itself")
    keys = ("pitch", "yaw", "roll", "mouth")
    def median_of(values):
        values = [x for x in values if np.isfinite(x)]
        return float(np.median(values)) if values else float("nan")
    median = {k: {m: median_of([v[k][m] for v in per_video.values()]) for m in ("r", "amplitude")} for k in keys}
    return {"videos": len(per_video), "median": median, "per_video": per_video}


def main(argv: list[str]) -> int:
    from tqdm.auto import tqdm

    from jaxmoda.data import synthtalk
    from jaxmoda.io.atomic import write_npz
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.data.example_videos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="face size in pixels (the frame is 2x wide)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sentences", type=int, default=3, help="sentences per video (about 4 s each)")
    parser.add_argument("--check", default="", metavar="RECORDS",
                        help="compare the motion of records made from DIR's videos with DIR/truth.npz (JSON on stdout)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.check:
        import json
        truth = os.path.join(args.out, "truth.npz")
        if not os.path.isfile(truth):
            from jaxmoda.errors import ConfigError
            raise ConfigError(f"{truth} does not exist; --out must be the folder the example videos were written to")
        report = compare_with_truth(args.check, truth)
        print(json.dumps({k: v for k, v in report.items() if k != "per_video"}, indent=1))
        return 0
    os.makedirs(args.out, exist_ok=True)
    truth = {}
    for i in tqdm(range(args.num), desc="example videos", unit="video"):
        clip = synthtalk.generate_clip(synthtalk.clip_seed(args.seed, i), num_sentences=args.sentences)
        ident = _detectable_identity(int(clip["identity_id"]) + 7 * i, args.size)
        name = f"speaker{i:02d}.mp4"
        truth[f"{name}/motion"] = make_video(os.path.join(args.out, name), clip, ident, args.size, args.seed + i)
    write_npz(os.path.join(args.out, "truth.npz"), truth)
    print(f"wrote {args.num} videos to {args.out} "
          f"({sum(len(v) for v in truth.values()) / 25 / 60:.1f} min of video) and truth.npz")
    return 0


if __name__ == "__main__":
    cli_main(main)
