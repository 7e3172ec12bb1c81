"""python -m jaxmoda.demo --out demo_out

Trains the tiny models on bundled data (nothing is downloaded) and writes pictures under --out:
  dit_samples.png   class-conditional samples of the tiny DiT, one row per source photograph
  dit_loss.png      its training loss
  dvae_recon.png    the tiny Dynamic VAE (D²iT stage 1): held-out patch | reconstruction | grain map
  dvae_loss.png     its reconstruction L1
  d2it_samples.png  tiny D²iT (grain transformer + content transformer on that DVAE's latents), one
                    column per class; d2it_samples_grain.png shows the generated grain maps over them
  d2it_loss.png     its content and grain transformer losses
  moda_mouth.png    the tiny MoDA motion generator (configs/moda/tiny.py:fast) on SynthTalk speech: a
                    held-out utterance's waveform over the generated and the true mouth openness
  renderer_samples.png  the tiny renderer on held-out SynthFaces: source | driving frame | re-rendered
  talk.mp4          the whole pipeline: a held-out face and a held-out utterance -> 25-fps H.264 with
                    the speech; talk_strip.png shows every 5th frame
The run folders (checkpoints, metrics, TensorBoard events) stay under --out/runs/ for inspection.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from jaxmoda.errors import cli_main
from jaxmoda.logs import setup_logging


def timed_train(config, workdir: str) -> float:
    """Trains (or resumes) a run; returns the seconds it took."""
    from jaxmoda.train.loop import train
    t0 = time.time()
    train(config, workdir)
    return time.time() - t0


def plot_loss(metrics: list[dict], path: str, title: str) -> None:
    plot_curves(metrics, ("loss",), path, title)


def run_dit(out: str, steps: int) -> dict:
    import jax

    from jaxmoda.config import load_config
    from jaxmoda.io.images import save_image_grid
    from jaxmoda.train.metrics import read_metrics
    from jaxmoda.train.sampling import sample_run

    workdir = os.path.join(out, "runs", "dit_tiny")
    config = load_config("configs/dit/tiny.py", [("total_steps", str(steps)), ("checkpoint_every", str(steps)),
                                                 ("sample_every", str(steps))])
    train_s = timed_train(config, workdir)
    labels = jax.numpy.repeat(jax.numpy.arange(config.model.num_classes), 8)
    images = sample_run(workdir, len(labels), labels=labels)
    save_image_grid(images, os.path.join(out, "dit_samples.png"), nrow=8)
    plot_loss(read_metrics(workdir), os.path.join(out, "dit_loss.png"), "tiny DiT, rectified flow")
    return {"train_seconds": train_s}


def run_dvae(out: str, steps: int) -> dict:
    from jaxmoda.config import load_config
    from jaxmoda.d2it.reconstruct import reconstruct_run
    from jaxmoda.io.images import save_image_grid
    from jaxmoda.train.metrics import read_metrics

    workdir = os.path.join(out, "runs", "dvae_tiny")
    # The demo trains without the discriminator (it starts late in the full tiny config anyway).
    config = load_config("configs/d2it/dvae_tiny.py", [("total_steps", str(steps)), ("checkpoint_every", str(steps)),
                                                       ("sample_every", str(steps)), ("d2it.disc_weight", "0.0")])
    train_s = timed_train(config, workdir)
    rows, psnr, codes = reconstruct_run(workdir, 8)
    save_image_grid(rows, os.path.join(out, "dvae_recon.png"), nrow=6)
    metrics = [dict(m, loss=m["l1"]) for m in read_metrics(workdir)]
    plot_loss(metrics, os.path.join(out, "dvae_loss.png"), "tiny Dynamic VAE, L1")
    return {"train_seconds": train_s, "psnr": float(psnr.mean()), "codes": float(codes.mean())}


def run_d2it(out: str, steps: int) -> dict:
    import jax.numpy as jnp

    from jaxmoda.config import load_config
    from jaxmoda.io.images import save_samples
    from jaxmoda.train.metrics import read_metrics
    from jaxmoda.train.sampling import sample_run

    workdir = os.path.join(out, "runs", "d2it_tiny")
    config = load_config("configs/d2it/tiny.py", [
        ("total_steps", str(steps)), ("checkpoint_every", str(steps)), ("sample_every", str(steps)),
        ("dvae_workdir", os.path.join(out, "runs", "dvae_tiny")), ("d2it.encode_images", "1024")])
    train_s = timed_train(config, workdir)
    num_classes, per_class = config.model.num_classes, 4
    labels = jnp.tile(jnp.arange(num_classes, dtype=jnp.int32), per_class)  # one column per class
    outputs = sample_run(workdir, len(labels), labels=labels)
    save_samples(outputs, os.path.join(out, "d2it_samples.png"), nrow=num_classes)
    metrics = read_metrics(workdir)
    plot_curves(metrics, ("dct_loss", "dgt_loss"), os.path.join(out, "d2it_loss.png"), "tiny D²iT")
    fine = float(jnp.mean(outputs["grain"].astype(jnp.float32)))
    return {"train_seconds": train_s, "fine_ratio": fine}


def run_moda(out: str, steps: int) -> dict:
    from jaxmoda.config import load_config

    workdir = os.path.join(out, "runs", "moda_tiny")
    config = load_config("configs/moda/tiny.py:fast", [("total_steps", str(steps)), ("checkpoint_every", str(steps)),
                                                       ("sample_every", str(steps))])
    train_s = timed_train(config, workdir)
    return dict(plot_heldout_mouth(workdir, os.path.join(out, "moda_mouth.png")), train_seconds=train_s)


def run_renderer(out: str, steps: int) -> dict:
    from jaxmoda.config import load_config
    from jaxmoda.io.images import save_image_grid
    from jaxmoda.train.metrics import read_metrics
    from jaxmoda.train.sampling import sample_run

    workdir = os.path.join(out, "runs", "renderer_tiny")
    config = load_config("configs/moda/renderer_tiny.py", [
        ("total_steps", str(steps)), ("checkpoint_every", str(steps)), ("sample_every", str(steps)),
        ("batch_size", "8"), ("render.train_identities", "150"), ("render.frames_per_identity", "12"),
        ("render.eval_identities", "16")])
    train_s = timed_train(config, workdir)
    save_image_grid(sample_run(workdir, 6), os.path.join(out, "renderer_samples.png"), nrow=2)
    last = read_metrics(workdir)[-1]
    return {"train_seconds": train_s, "psnr": last["psnr"], "copy_psnr": last["copy_psnr"]}


def run_talk(out: str) -> dict:
    """A held-out SynthFaces identity speaks a held-out SynthTalk utterance: talk.mp4 and talk_strip.png."""
    import numpy as np

    from jaxmoda.data import synthfaces
    from jaxmoda.io.video import write_mp4
    from jaxmoda.talk import frames_of, load_run, talk

    motion_run = load_run(os.path.join(out, "runs", "moda_tiny"), "moda")
    renderer = load_run(os.path.join(out, "runs", "renderer_tiny"), "renderer")
    clip = heldout_clip(motion_run.task.config)
    portrait = synthfaces.render_face(synthfaces.neutral_motion(), 7, 256)   # face 7 is held out of renderer training
    result = talk(motion_run, renderer, portrait, np.asarray(clip["audio"], np.float32),
                  emotion=int(clip["emotion"]), seed=0)
    path = write_mp4(os.path.join(out, "talk.mp4"), frames_of(result, portrait), fps=25, audio=clip["audio"])
    every5 = dict(result, crops=result["crops"][::5][:20])
    strip = np.stack(list(frames_of(every5, portrait)))[:, ::2, ::2]
    synthfaces.save_strip(strip, os.path.join(out, "talk_strip.png"), columns=10)
    return {"path": path, "frames": len(result["crops"]), "text": str(clip["text"]), **result["timings"]}


def heldout_clip(config) -> dict:
    """The first held-out SynthTalk clip of a MoDA run's data."""
    from array_record.python.array_record_module import ArrayRecordReader

    from jaxmoda.data import synthtalk
    from jaxmoda.moda.data import data_dir
    for shard in synthtalk.list_shards(data_dir(config)):
        reader = ArrayRecordReader(shard)
        try:
            for record in reader.read_all():
                c = synthtalk.read_clip(record)
                if c["split"] == "eval":
                    return c
        finally:
            reader.close()
    raise RuntimeError("the SynthTalk set has no held-out clip")


def plot_heldout_mouth(workdir: str, path: str) -> dict:
    """Generates motion for the first held-out SynthTalk utterance of a MoDA run's data and plots its
    waveform over the generated and the ground-truth mouth openness."""
    import numpy as np

    from jaxmoda.moda.generate import generate_motion
    from jaxmoda.moda.metrics import pearson
    from jaxmoda.moda.motion import mouth_openness
    from jaxmoda.motion import plot_motion
    from jaxmoda.nn.logical import axis_rules
    from jaxmoda.train.sampling import load_for_sampling

    task, graphdef, ema, mesh, rules = load_for_sampling(workdir)
    clip = heldout_clip(task.config)
    feats = task.audio_features(clip["audio"])
    gt = np.asarray(clip["motion"], np.float32)[:len(feats)]
    with axis_rules(mesh, rules):
        motion = generate_motion(task, graphdef, ema, feats[None], identity=np.asarray(clip["identity"]).reshape(63),
                                 emotion=np.int32(clip["emotion"]), prefix=gt[0])[0]
    plot_motion(path, clip["audio"], motion, reference=gt)
    return {"r": pearson(mouth_openness(motion), mouth_openness(gt)), "text": str(clip["text"])}


def plot_curves(metrics: list[dict], keys, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3), dpi=120)
    for key in keys:
        rows = [m for m in metrics if key in m]
        ax.plot([m["step"] for m in rows], [m[key] for m in rows], lw=1, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--dit-steps", type=int, default=300)
    parser.add_argument("--dvae-steps", type=int, default=200)
    parser.add_argument("--d2it-steps", type=int, default=300)
    parser.add_argument("--moda-steps", type=int, default=600)
    parser.add_argument("--renderer-steps", type=int, default=150)
    parser.add_argument("--fresh", action="store_true", help="delete --out/runs first (otherwise runs resume)")
    args = parser.parse_args(argv)
    setup_logging()
    os.makedirs(args.out, exist_ok=True)
    if args.fresh:
        shutil.rmtree(os.path.join(args.out, "runs"), ignore_errors=True)
    info = run_dit(args.out, args.dit_steps)
    print(f"tiny DiT: {args.dit_steps} steps in {info['train_seconds']:.0f} s -> {args.out}/dit_samples.png, {args.out}/dit_loss.png")
    info = run_dvae(args.out, args.dvae_steps)
    print(f"tiny Dynamic VAE: {args.dvae_steps} steps in {info['train_seconds']:.0f} s, held-out PSNR {info['psnr']:.2f} dB "
          f"with {info['codes']:.2f} of the all-fine codes -> {args.out}/dvae_recon.png, {args.out}/dvae_loss.png")
    info = run_d2it(args.out, args.d2it_steps)
    print(f"tiny D²iT: {args.d2it_steps} steps in {info['train_seconds']:.0f} s, generated fine ratio "
          f"{info['fine_ratio']:.2f} -> {args.out}/d2it_samples.png, {args.out}/d2it_samples_grain.png, "
          f"{args.out}/d2it_loss.png")
    info = run_moda(args.out, args.moda_steps)
    print(f"tiny MoDA: {args.moda_steps} steps in {info['train_seconds']:.0f} s; held-out utterance \"{info['text']}\": "
          f"generated vs true mouth openness r = {info['r']:.2f} -> {args.out}/moda_mouth.png")
    info = run_renderer(args.out, args.renderer_steps)
    print(f"tiny renderer: {args.renderer_steps} steps in {info['train_seconds']:.0f} s, training PSNR {info['psnr']:.1f} dB "
          f"(copy-the-source {info['copy_psnr']:.1f} dB) -> {args.out}/renderer_samples.png")
    info = run_talk(args.out)
    print(f"talking head: {info['frames']} frames of \"{info['text']}\" -> {info['path']}, {args.out}/talk_strip.png")
    return 0


if __name__ == "__main__":
    cli_main(main)
