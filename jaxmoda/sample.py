"""python -m jaxmoda.sample --workdir DIR --num 16 --out grid.png [--cfg 1.5 --steps 50 --seed 0 --sampler euler|heun]

Samples a trained run from the EMA params of its latest checkpoint and writes a PNG grid. For a D²iT
run (label -> DGT grain map -> DCT content -> DVAE decode) it also writes the grain maps beside the
grid (grid_grain.png over the samples, grid_grain.npy as int8 [N, h, w]); --grain MAP.npy or
--grain photo.png (its entropy map under the DVAE's thresholds) replaces the DGT's maps.
"""

from __future__ import annotations

import argparse

from jaxmoda.errors import ConfigError, cli_main
from jaxmoda.logs import setup_logging


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--out", default="samples.png")
    parser.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the run's config)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's config)")
    parser.add_argument("--sampler", default=None, help="euler | heun (flow), ddim | ddpm (DDPM)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", default="", help="comma-separated class ids (default: cycle through classes)")
    parser.add_argument("--class", dest="class_id", type=int, default=None, help="one class id for every sample")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--grain", default="", help="D²iT: grain maps (.npy [h,w] or [N,h,w]) or an image to take them from")
    parser.add_argument("--dgt-cfg", type=float, default=None, help="D²iT: grain transformer guidance scale")
    parser.add_argument("--dgt-steps", type=int, default=None, help="D²iT: grain transformer sampler steps")
    parser.add_argument("--nrow", type=int, default=None, help="images per row of the grid")
    args = parser.parse_args(argv)
    setup_logging()
    if args.num <= 0:
        raise ConfigError("--num must be a positive number of samples")

    import jax
    import jax.numpy as jnp

    from jaxmoda.io.images import save_samples
    from jaxmoda.train.sampling import sample_run

    options = {"cfg_scale": args.cfg, "steps": args.steps, "sampler": args.sampler}
    extras = {"grain": args.grain or None, "dgt_cfg_scale": args.dgt_cfg, "dgt_steps": args.dgt_steps}
    options.update({k: v for k, v in extras.items() if v is not None})
    if args.class_id is not None:
        options["labels"] = jnp.full((args.num,), args.class_id, jnp.int32)
    elif args.labels:
        ids = [int(s) for s in args.labels.split(",")]
        options["labels"] = jnp.asarray([ids[i % len(ids)] for i in range(args.num)], jnp.int32)
    try:
        images = sample_run(args.workdir, args.num, seed=args.seed, step=args.step, **options)
    except ValueError as e:  # e.g. a sampler name the objective does not know
        raise ConfigError(str(e).splitlines()[0]) from None
    written = save_samples(jax.device_get(images), args.out, args.nrow)
    print(f"wrote {args.num} samples to {', '.join(written)}")
    return 0


if __name__ == "__main__":
    cli_main(main)
