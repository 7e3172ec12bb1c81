"""python -m jaxmoda.d2it.reconstruct --workdir DVAE_DIR --num 16 --out recon.png

Reconstructs held-out images with a trained Dynamic VAE (EMA params of its latest checkpoint) and saves
one row per image: original | reconstruction | grain map over the original (fine regions tinted
orange, coarse ones left clear). Prints the mean PSNR and the fraction of latent codes used.
"""

from __future__ import annotations

import argparse

import numpy as np

from jaxmoda.errors import ConfigError, cli_main
from jaxmoda.io.images import region_overlay
from jaxmoda.logs import setup_logging


def reconstruct_run(workdir: str, num: int):
    """Reconstructs `num` held-out images with a trained DVAE run (EMA params of its latest checkpoint).

    Returns (rows [3*num, H, W, C] in [-1, 1]: original, reconstruction, grain overlay per image;
    psnr [num]; fraction of the all-fine latent codes used [num]).
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxmoda.d2it.grains import num_codes
    from jaxmoda.nn.logical import axis_rules
    from jaxmoda.tasks.dvae import psnr
    from jaxmoda.train.sampling import load_for_sampling
    task, graphdef, ema, mesh, rules = load_for_sampling(workdir)
    if task.config.model.name != "dvae":
        raise ConfigError(f"{workdir} trained a {task.config.model.name!r} model; pass a Dynamic VAE run")
    images = task.holdout(num)
    with axis_rules(mesh, rules):
        recon, grain = jax.jit(lambda p, x: task.reconstruct(nnx.merge(graphdef, p), x))(ema, jnp.asarray(images))
    recon, grain = np.asarray(recon), np.asarray(grain)
    rows = np.stack([images, recon, region_overlay(images, grain)], axis=1).reshape((-1,) + images.shape[1:])
    h, w = grain.shape[1:]
    return rows, np.asarray(psnr(jnp.asarray(images), jnp.asarray(recon))), num_codes(grain) / (4.0 * h * w)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.d2it.reconstruct", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--out", default="recon.png")
    args = parser.parse_args(argv)
    setup_logging()
    if args.num <= 0:
        raise ConfigError("--num must be a positive number of images")
    from jaxmoda.io.images import save_image_grid

    rows, psnr, codes = reconstruct_run(args.workdir, args.num)
    save_image_grid(rows, args.out, nrow=3)
    print(f"wrote {args.out}: PSNR {psnr.mean():.2f} dB over {args.num} held-out images, "
          f"{codes.mean():.3f} of the all-fine latent codes")
    return 0


if __name__ == "__main__":
    cli_main(main)
