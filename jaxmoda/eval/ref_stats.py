"""python -m jaxmoda.eval.ref_stats --config DATA_OR_TRAIN_CONFIG --out REF_STATS.npz [--num 10000 --split test]

Reference statistics for `python -m jaxmoda.eval.fid`: the FID Inception's pool and spatial Gaussians
(mean, covariance) of `--num` real images, and up to 10,000 pool features for precision/recall. The
images come from the config's `data` group (any training config with images: a DVAE or DiT config;
`--config.data.*=` overrides apply), without random flips, rounded to 8-bit pixels as samples are.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from jaxmoda.errors import ConfigError, cli_main
from jaxmoda.logs import setup_logging


def real_batches(data_cfg, num: int, batch: int, seed: int):
    """uint8 image batches of the first `num` examples of the data source, shuffled with `seed`."""
    from jaxmoda.data.pipeline import build_source
    from jaxmoda.io.images import to_uint8_images
    data_cfg = data_cfg.copy_and_resolve_references()
    data_cfg.random_flip = False
    dataset, info = build_source(data_cfg, seed=seed)
    if info["num_examples"] < num:
        raise ConfigError(f"the data source has {info['num_examples']} examples; --num {num} asks for more")
    order = np.random.default_rng(seed).permutation(info["num_examples"])[:num]
    for s in range(0, num, batch):
        examples = [dataset[int(i)] for i in order[s:s + batch]]
        yield to_uint8_images(np.stack([e["image"] for e in examples if e is not None]))


def main(argv: list[str]) -> int:
    from jaxmoda.config import load_config, split_overrides
    from jaxmoda.eval.fid import FeatureExtractor, extract, file_digest, statistics
    from jaxmoda.eval.inception import default_weights_path
    from jaxmoda.io.atomic import write_npz
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.eval.ref_stats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--data", dest="config", required=True,
                        help="a config file with a data group (a DVAE or DiT config)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--split", default=None, help="data split (e.g. test), else the config's")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inception", default=None, help=f"FID Inception weights (default {default_weights_path()})")
    overrides, rest = split_overrides(argv)
    args = parser.parse_args(rest)
    setup_logging()
    if args.num < 2:
        raise ConfigError("--num must be at least 2")
    config = load_config(args.config, overrides)
    if "data" not in config:
        raise ConfigError(f"{args.config} has no data group; pass a DVAE or DiT config whose data are images")
    if args.split:
        config.data.split = args.split
    extractor = FeatureExtractor(args.inception or default_weights_path())
    feats = extract(real_batches(config.data, args.num, args.batch, args.seed), extractor, args.num, "reference")
    stats = statistics(feats)
    stats["inception_sha256_16"] = np.asarray(file_digest(extractor.weights))
    write_npz(args.out, stats)
    print(f"wrote {os.path.abspath(args.out)}: {args.num} images of {args.config} "
          f"(split {config.data.get('split', '')}), pool {stats['mu'].shape[0]}-d, spatial {stats['mu_s'].shape[0]}-d")
    return 0


if __name__ == "__main__":
    cli_main(main)
