"""python -m jaxmoda.motion --workdir DIR --audio speech.wav --out motion.npy [--emotion happy
    --cfg-audio 1.2 --cfg-emotion 1.0 --steps 10 --seed 0 --identity kp.npy --prefix frame.npy --plot motion.png]

Generates talking-head motion for a speech file with a trained MoDA motion generator: 25 fps, one
70-d frame ([63 expression | scale | tx ty tz | pitch yaw roll]) per 640 samples of 16-kHz audio, in
80-frame windows with a one-frame prefix and 16-frame cross-fades; the output has exactly as many
frames as the audio (any sample rate is resampled, stereo mixed down). Guidance is nested with one
scale for audio and one for emotion. --plot draws the waveform over the generated mouth openness.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from jaxmoda.errors import ConfigError, DataError, cli_main
from jaxmoda.logs import setup_logging


def emotion_id(name: str, emotions, null: int) -> int:
    """Label of an emotion name (case-insensitive); 'none' or '' is the null label."""
    key = (name or "none").strip().lower()
    if key in ("none", "null"):
        return null
    names = [e.lower() for e in emotions]
    if key not in names:
        raise ConfigError(f"emotion {name!r} is unknown; choose one of {', '.join(emotions)} or none")
    return names.index(key)


def load_vector(path: str, size: int, what: str) -> np.ndarray:
    try:
        v = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{what} file {path} is not a readable .npy array ({e}); save one with numpy.save") from None
    v = np.asarray(v, np.float32).reshape(-1)
    if v.size != size:
        raise DataError(f"{what} file {path} has {v.size} values; it needs {size}")
    return v


def plot_motion(path: str, wave: np.ndarray, motion: np.ndarray, reference: np.ndarray | None = None) -> None:
    """Waveform above mouth openness over time (and a reference openness when given)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxmoda.moda.motion import mouth_openness
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(8, 3.6), dpi=120, sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    ax0.plot(np.arange(len(wave)) / 16000.0, wave, lw=0.4, color="0.35")
    ax0.set_ylabel("audio")
    t = np.arange(len(motion)) / 25.0
    if reference is not None:
        ax1.plot(t, mouth_openness(reference), lw=1.2, color="tab:gray", label="ground truth")
    ax1.plot(t, mouth_openness(motion), lw=1.2, color="tab:red", label="generated")
    ax1.set_xlabel("seconds")
    ax1.set_ylabel("mouth openness")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.motion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a trained MoDA motion-generator run")
    parser.add_argument("--audio", required=True, help="speech file (wav, flac, ...)")
    parser.add_argument("--out", default="motion.npy")
    parser.add_argument("--emotion", default="none", help="emotion name, or none (the default, no emotion)")
    parser.add_argument("--cfg-audio", type=float, default=None)
    parser.add_argument("--cfg-emotion", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--identity", default="", help=".npy canonical keypoints [21, 3] (default: the data's mean)")
    parser.add_argument("--prefix", default="", help=".npy 70-d motion of the first frame (default: a neutral frame)")
    parser.add_argument("--plot", default="", help="also write a PNG of the waveform and the mouth openness")
    args = parser.parse_args(argv)
    setup_logging()
    from jaxmoda.moda import audio as audio_lib
    from jaxmoda.moda.generate import generate_motion
    from jaxmoda.nn.logical import axis_rules
    from jaxmoda.train.sampling import load_for_sampling

    task, graphdef, ema, mesh, rules = load_for_sampling(args.workdir)
    if task.config.model.name != "moda":
        raise ConfigError(f"{args.workdir} trained a {task.config.model.name!r} model; pass a MoDA motion run")
    d = task.config.moda
    emo = emotion_id(args.emotion, d.emotions, int(task.config.model.num_emotions))
    identity = load_vector(args.identity, 63, "identity") if args.identity else np.asarray(d.default_identity, np.float32)
    prefix = load_vector(args.prefix, 70, "prefix") if args.prefix else None
    wave = audio_lib.load_audio(args.audio)
    feats = task.audio_features(wave)
    t0 = time.time()
    with axis_rules(mesh, rules):
        motion = generate_motion(task, graphdef, ema, feats[None], identity=identity, emotion=np.int32(emo),
                                 prefix=prefix, cfg_audio=args.cfg_audio, cfg_emotion=args.cfg_emotion,
                                 steps=args.steps, seed=args.seed, progress=True)[0]
    seconds = time.time() - t0
    if not np.all(np.isfinite(motion)):
        raise DataError("generated motion is not finite; the run's checkpoint may be corrupt (retrain or pick --step)")
    np.save(args.out, motion.astype(np.float32))
    if args.plot:
        plot_motion(args.plot, wave, motion)
    print(f"wrote {len(motion)} frames ({len(motion) / 25.0:.2f} s at 25 fps) to {args.out} in {seconds:.1f} s"
          + (f"; plot {args.plot}" if args.plot else ""))
    return 0


if __name__ == "__main__":
    cli_main(main)
