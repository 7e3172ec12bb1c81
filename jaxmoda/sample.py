"""python -m jaxmoda.sample --workdir DIR --num 16 --out grid.png [--cfg 1.5 --steps 50 --seed 0 --sampler euler|heun]

Samples a trained run from the EMA params of its latest checkpoint and writes a PNG grid.
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
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.num <= 0:
        raise ConfigError("--num must be a positive number of samples")

    import jax
    import jax.numpy as jnp

    from jaxmoda.io.images import save_image_grid
    from jaxmoda.train.sampling import sample_run

    options = {"cfg_scale": args.cfg, "steps": args.steps, "sampler": args.sampler}
    if args.labels:
        ids = [int(s) for s in args.labels.split(",")]
        options["labels"] = jnp.asarray([ids[i % len(ids)] for i in range(args.num)], jnp.int32)
    try:
        images = sample_run(args.workdir, args.num, seed=args.seed, step=args.step, **options)
    except ValueError as e:  # e.g. a sampler name the objective does not know
        raise ConfigError(str(e).splitlines()[0]) from None
    save_image_grid(jax.device_get(images), args.out)
    print(f"wrote {args.num} samples to {args.out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
