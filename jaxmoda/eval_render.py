"""python -m jaxmoda.eval_render --workdir RUN [--pairs 256 --out report.json]
python -m jaxmoda.eval_render --flops-config configs/moda/renderer_256.py

Benchmarks a trained renderer on held-out SynthFaces identities (faces never seen in training, motion
from held-out SynthTalk clips): PSNR and SSIM of the source re-rendered with the driving frame's
keypoints against the driving frame, next to the copy-the-source baseline (the driving frame
guessed as the source itself), and rendering speed in frames per second for one portrait driven by
a batch of motions (the appearance volume computed once). --flops-config counts the XLA FLOPs of
rendering one frame for a config's size from abstract shapes (no parameters allocated).
Prints one JSON report.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from jaxmoda.errors import ConfigError, cli_main
from jaxmoda.logs import emit, setup_logging


def image_scores(pred_u8: np.ndarray, true_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image PSNR (dB) and SSIM (Gaussian window, sigma 1.5) of uint8 [N, H, W, 3] images."""
    from skimage.metrics import structural_similarity
    diff = pred_u8.astype(np.float64) - true_u8.astype(np.float64)
    mse = np.mean(diff * diff, axis=(1, 2, 3))
    psnr = 10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))
    ssim = np.array([structural_similarity(p, t, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False) for p, t in zip(pred_u8, true_u8)])
    return psnr, ssim


def _u8(x) -> np.ndarray:
    return np.round((np.asarray(x, np.float32) + 1.0) * 127.5).clip(0, 255).astype(np.uint8)


def evaluate(workdir: str, pairs: int, batch: int = 32, fps_frames: int = 64) -> dict:
    import jax
    from flax import nnx

    from jaxmoda.moda.render.model import render_frames
    from jaxmoda.nn.logical import axis_rules
    from jaxmoda.train.sampling import load_for_sampling
    task, graphdef, params, mesh, rules = load_for_sampling(workdir)
    if task.config.model.name != "renderer":
        raise ConfigError(f"{workdir} trained a {task.config.model.name!r} model; pass a renderer run")
    data = task.eval_pairs(pairs)
    reenact = jax.jit(lambda p, b: task.reenact(nnx.merge(graphdef, p), b))
    outs = []
    with axis_rules(mesh, rules):
        for s in range(0, pairs, batch):
            outs.append(_u8(reenact(params, {k: v[s:s + batch] for k, v in data.items()})))
        pred = np.concatenate(outs)
        truth, source = _u8(data["driving"]), _u8(data["source"])
        psnr, ssim = image_scores(pred, truth)
        cpsnr, cssim = image_scores(source, truth)
        render = jax.jit(lambda p, src, xc, sm, dm: render_frames(nnx.merge(graphdef, p), src, xc, sm, dm))
        args = (data["source"][:1], data["x_c"][:1], data["source_motion"][:1],
                np.resize(data["driving_motion"], (fps_frames, 70)))
        jax.block_until_ready(render(params, *args))
        t0 = time.time()
        reps = 3
        for _ in range(reps):
            jax.block_until_ready(render(params, *args))
        fps = reps * fps_frames / (time.time() - t0)
    return {
        "workdir": workdir, "pairs": pairs, "image_size": task.image_size,
        "psnr": float(psnr.mean()), "ssim": float(ssim.mean()),
        "copy_source_psnr": float(cpsnr.mean()), "copy_source_ssim": float(cssim.mean()),
        "psnr_gain_db": float(psnr.mean() - cpsnr.mean()),
        "frames_per_second": float(fps), "fps_batch": fps_frames, "devices": jax.device_count(),
    }


def flops_per_frame(config_path: str, frames: int = 16) -> dict:
    """XLA-counted FLOPs of rendering `frames` frames of one portrait, per frame (the appearance volume once)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxmoda.bench import compiled_flops
    from jaxmoda.config import load_config
    from jaxmoda.moda.render.model import render_frames
    from jaxmoda.tasks import get_task
    from jaxmoda.train.state import abstract_model
    config = load_config(config_path)
    task = get_task(config)
    graphdef, abstract = abstract_model(task.build_model)
    s = task.image_size
    shapes = (jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32), jax.ShapeDtypeStruct((1, 21, 3), jnp.float32),
              jax.ShapeDtypeStruct((1, 70), jnp.float32), jax.ShapeDtypeStruct((frames, 70), jnp.float32))
    fn = jax.jit(lambda p, *a: render_frames(nnx.merge(graphdef, p), *a))
    total = compiled_flops(fn.lower(abstract, *shapes).compile())
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract))
    appearance = jax.jit(lambda p, x: nnx.merge(graphdef, p).renderer.appearance(x))
    app = compiled_flops(appearance.lower(abstract, shapes[0]).compile())
    return {"config": config_path, "image_size": s, "parameters": params, "frames": frames,
            "gflops_per_frame": total / frames / 1e9,            # appearance volume amortised over `frames`
            "gflops_per_frame_warp_and_generate": (total - app) / frames / 1e9,
            "gflops_appearance_once": app / 1e9}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.eval_render", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="", help="a trained renderer run")
    parser.add_argument("--pairs", type=int, default=256, help="held-out (source, driving) pairs")
    parser.add_argument("--flops-config", default="", help="count FLOPs per rendered frame for this config")
    parser.add_argument("--out", default="", help="also write the JSON report here")
    args = parser.parse_args(argv)
    setup_logging()
    if not args.workdir and not args.flops_config:
        raise ConfigError("pass --workdir RUN (quality and speed) and/or --flops-config CONFIG (FLOPs per frame)")
    if args.pairs < 1:
        raise ConfigError(f"--pairs {args.pairs} must be at least 1")
    report = {}
    if args.workdir:
        report["quality"] = evaluate(args.workdir, args.pairs)
    if args.flops_config:
        report["flops"] = flops_per_frame(args.flops_config)
    emit(json.dumps(report, indent=1), args.out)
    return 0


if __name__ == "__main__":
    cli_main(main)
