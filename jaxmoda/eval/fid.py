"""python -m jaxmoda.eval.fid --workdir RUN --ref REF_STATS.npz [--num 10000 --batch 200 --out report.json]

Samples `--num` images from a DiT or D²iT run (EMA weights; classes cycled evenly) in batches split
over this host's devices, runs them through the FID Inception (`jaxmoda.eval.inception`) on the same
devices, and compares them with reference statistics written by `python -m jaxmoda.eval.ref_stats`:
FID (pool features), sFID (spatial features), improved precision/recall (k = 3, against the
reference's stored features) and the Inception Score when the weights have the classifier. Samples
are rounded to 8-bit pixels first, as when they are saved as PNGs. The report is a JSON file (also
printed) with the run's step, sampler settings, the Inception weights' file and the wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator

import numpy as np

from jaxmoda.errors import CheckpointError, ConfigError, cli_main
from jaxmoda.io.images import to_uint8_images
from jaxmoda.logs import setup_logging

PR_FEATURES = 10_000   # reference features kept for precision/recall (as the ADM reference batches)
STATS_VERSION = 1


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class FeatureExtractor:
    """The FID Inception over a data-parallel mesh: batches in, host NumPy features out."""

    def __init__(self, weights: str, mesh=None):
        import jax
        from jax.sharding import NamedSharding, PartitionSpec as P

        from jaxmoda.eval import inception
        if not os.path.isfile(weights):
            raise CheckpointError(f"Inception weights {weights} not found; run python -m jaxmoda.eval.inception "
                                  "--fetch (or --from FILE), or pass --inception PATH")
        self.weights = weights
        self.mesh = mesh or jax.make_mesh((jax.device_count(),), ("data",),
                                          axis_types=(jax.sharding.AxisType.Auto,))
        self.data_sharding = NamedSharding(self.mesh, P("data"))
        self.params = jax.device_put(inception.load(weights), NamedSharding(self.mesh, P()))
        self.has_logits = "fc" in self.params
        self._fn = jax.jit(inception.features, out_shardings=self.data_sharding)

    @property
    def devices(self) -> int:
        return self.mesh.shape["data"]

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Features of uint8 or [-1, 1] float images [N, H, W, C] (C = 1 is repeated to RGB)."""
        import jax
        x = np.asarray(images)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 127.5 - 1.0
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"images must be [N, H, W, 1 or 3], got shape {x.shape}")
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        n = x.shape[0]
        pad = -n % self.devices
        if pad:
            x = np.concatenate([x, np.repeat(x[-1:], pad, 0)])
        out = self._fn(self.params, jax.device_put(x.astype(np.float32), self.data_sharding))
        return {k: np.asarray(v)[:n] for k, v in out.items()}


def extract(batches: Iterator[np.ndarray], extractor: FeatureExtractor, total: int, desc: str) -> dict[str, np.ndarray]:
    """Concatenated features of an iterator of image batches, with a progress bar over images."""
    from tqdm import tqdm
    parts: dict[str, list[np.ndarray]] = {}
    with tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True) as bar:
        for images in batches:
            for k, v in extractor(images).items():
                parts.setdefault(k, []).append(v)
            bar.update(len(images))
    return {k: np.concatenate(v)[:total] for k, v in parts.items()}


def statistics(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a reference file stores: pool and spatial Gaussians, and up to PR_FEATURES pool features."""
    from jaxmoda.eval.metrics import feature_stats
    mu, sigma = feature_stats(features["pool"])
    mu_s, sigma_s = feature_stats(features["spatial"])
    return {"mu": mu, "sigma": sigma, "mu_s": mu_s, "sigma_s": sigma_s,
            "features": features["pool"][:PR_FEATURES].astype(np.float32),
            "num": np.asarray(len(features["pool"])), "version": np.asarray(STATS_VERSION)}


def read_reference(path: str) -> dict[str, np.ndarray]:
    need = ("mu", "sigma", "mu_s", "sigma_s", "features")
    try:
        with np.load(path, allow_pickle=False) as z:
            ref = {k: np.asarray(z[k]) for k in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"reference statistics {path} not found; write them with python -m "
                              "jaxmoda.eval.ref_stats --config DATA_CONFIG --out REF.npz") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"reference statistics {path} could not be read ({e}); write them again with "
                              "python -m jaxmoda.eval.ref_stats") from None
    missing = [k for k in need if k not in ref]
    if missing:
        raise CheckpointError(f"{path} is not a jaxmoda reference-statistics file (no {', '.join(missing)}); "
                              "write one with python -m jaxmoda.eval.ref_stats")
    return ref


def compare(features: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict:
    """FID, sFID, precision/recall and (with logits) IS of generated features against a reference."""
    from jaxmoda.eval import metrics
    mu, sigma = metrics.feature_stats(features["pool"])
    mu_s, sigma_s = metrics.feature_stats(features["spatial"])
    if mu.shape != ref["mu"].shape or mu_s.shape != ref["mu_s"].shape:
        raise CheckpointError(f"reference statistics have {ref['mu'].shape[0]}/{ref['mu_s'].shape[0]}-d features, "
                              f"these samples {mu.shape[0]}/{mu_s.shape[0]}; write the reference again")
    n_pr = min(len(features["pool"]), len(ref["features"]))
    precision, recall = metrics.precision_recall(ref["features"][:n_pr], features["pool"][:n_pr])
    report = {"fid": metrics.frechet_distance(mu, sigma, ref["mu"], ref["sigma"]),
              "sfid": metrics.frechet_distance(mu_s, sigma_s, ref["mu_s"], ref["sigma_s"]),
              "precision": precision, "recall": recall, "pr_points": n_pr}
    if "logits" in features:
        report["inception_score"], report["inception_score_std"] = metrics.inception_score(features["logits"])
    return report


def run_sampler(workdir: str, batch: int, *, seed: int, step: int | None, options: dict) -> tuple[Callable, dict]:
    """(draw(i) -> uint8 images [batch, H, W, C] for batch index i, run info) of a DiT/D²iT run."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P

    from jaxmoda.nn.logical import axis_rules
    from jaxmoda.train.sampling import load_for_sampling
    task, graphdef, ema, mesh, rules = load_for_sampling(workdir, step=step)
    kind = task.config.model.name
    if kind not in ("dit", "d2it"):
        raise ConfigError(f"{workdir} trained {kind!r}; FID applies to image models (dit, d2it)")
    if batch % mesh.shape["data"]:
        raise ConfigError(f"--batch {batch} must be a multiple of the {mesh.shape['data']} devices")
    if hasattr(task, "prepare_sampling"):
        task.prepare_sampling()
    n_classes = int(task.config.model.num_classes)
    labels_sharding = NamedSharding(mesh, P("data"))

    def sample(p, key, labels):
        out = task.sample(nnx.merge(graphdef, p), key, batch, labels=labels, **options)
        return out["images"] if isinstance(out, dict) else out

    with axis_rules(mesh, rules):
        fn = jax.jit(sample)
    base = jax.random.key(seed)

    def draw(i: int) -> np.ndarray:
        labels = (np.arange(i * batch, (i + 1) * batch) % max(n_classes, 1)).astype(np.int32)
        with axis_rules(mesh, rules):
            images = fn(ema, jax.random.fold_in(base, i), jax.device_put(jnp.asarray(labels), labels_sharding))
        return to_uint8_images(jax.device_get(images))

    from jaxmoda.train.loop import saved_steps
    steps = saved_steps(workdir)
    info = {"workdir": os.path.abspath(workdir), "model": kind, "step": step if step is not None else
            (max(steps) if steps else None), "classes": n_classes, "devices": mesh.shape["data"]}
    return draw, info


def main(argv: list[str]) -> int:
    from jaxmoda.eval.inception import default_weights_path
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.eval.fid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--ref", required=True, help="reference statistics (python -m jaxmoda.eval.ref_stats)")
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200, help="images per sampler call (all devices together)")
    parser.add_argument("--inception", default=None, help=f"FID Inception weights (default {default_weights_path()})")
    parser.add_argument("--out", default=None, help="JSON report (default <workdir>/eval/fid<num>.json)")
    parser.add_argument("--also-at", type=int, nargs="*", default=[],
                        help="also report the metrics of the first N samples (e.g. --num 10000 --also-at 5000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the run's config)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's config)")
    parser.add_argument("--sampler", default=None, help="euler | heun (flow), ddim | ddpm (DDPM)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.num < 2 or args.batch < 1:
        raise ConfigError("--num must be at least 2 and --batch positive")
    ref = read_reference(args.ref)
    extractor = FeatureExtractor(args.inception or default_weights_path())
    options = {k: v for k, v in {"cfg_scale": args.cfg, "steps": args.steps, "sampler": args.sampler}.items()
               if v is not None}
    start = time.perf_counter()
    draw, info = run_sampler(args.workdir, args.batch, seed=args.seed, step=args.step, options=options)
    n_batches = -(-args.num // args.batch)
    features = extract((draw(i) for i in range(n_batches)), extractor, args.num, "sample + Inception")
    report = {**compare(features, ref), "num": args.num, **info, "seed": args.seed, "options": options,
              "reference": os.path.abspath(args.ref), "reference_num": int(ref.get("num", -1)),
              "inception": os.path.abspath(extractor.weights), "inception_sha256_16": file_digest(extractor.weights),
              "wall_s": round(time.perf_counter() - start, 1)}
    for n in sorted(set(args.also_at)):
        if 2 <= n < args.num:
            report[f"at_{n}"] = compare({k: v[:n] for k, v in features.items()}, ref)
    out = args.out or os.path.join(args.workdir, "eval", f"fid{args.num}.json")
    from jaxmoda.io.atomic import write_json
    write_json(out, report)
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
