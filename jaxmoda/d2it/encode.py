"""python -m jaxmoda.d2it.encode --workdir DVAE_DIR --out LATENTS [--config DATA_CONFIG] [--num N]

Caches the Dynamic VAE's latents so stage 2 trains without the encoder: for every image (and its
horizontal flip, encoded separately because a conv encoder is not flip-equivariant and the grain map
flips with the image) one ArrayRecord entry with the neighbour-copied posterior-mean latent
z [H/8, W/8, n_z] (float16), the grain map [H/16, W/16] (uint8, jaxmoda.d2it.grains), the label and
the flip flag. Each process encodes every process_count-th image into its own shard
(latents-PPPPP-of-NNNNN.array_record) and its statistics (stats-PPPPP.json); process 0 merges them into
metadata.json (shapes, the latent std for a scale factor, the entropy settings and threshold, the
DVAE workdir).

Record format: an .npz archive (numpy's, loaded with allow_pickle=False) with keys z, grain, label,
flip. `read_record(bytes)` decodes one.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os

import numpy as np

from jaxmoda.errors import ConfigError, cli_main
from jaxmoda.io.atomic import write_json
from jaxmoda.logs import setup_logging

log = logging.getLogger(__name__)


def encode_record(z: np.ndarray, grain: np.ndarray, label: int, flip: bool) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, z=z.astype(np.float16), grain=grain.astype(np.uint8), label=np.int32(label), flip=np.bool_(flip))
    return buf.getvalue()


def read_record(record: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(record), allow_pickle=False) as f:
        return {k: f[k] for k in ("z", "grain", "label", "flip")}


def shard_name(index: int, count: int) -> str:
    return f"latents-{index:05d}-of-{count:05d}.array_record"


def encode_dataset(task, model_fn, data_cfg, out_dir: str, *, num: int = 0, batch_size: int = 32,
                   process_index: int = 0, process_count: int = 1, seed: int = 0) -> dict:
    """Encodes this process's slice of the dataset into one shard; returns the shard's statistics."""
    from array_record.python.array_record_module import ArrayRecordWriter
    from tqdm.auto import tqdm

    from jaxmoda.data import build_source
    ds, info = build_source(data_cfg, seed=seed)
    total = len(ds) if num <= 0 else min(num, len(ds))
    indices = list(range(process_index, total, process_count))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, shard_name(process_index, process_count))
    writer = ArrayRecordWriter(path + ".tmp", "group_size:1")
    count, s1, s2, n_el, fine = 0, 0.0, 0.0, 0, 0.0
    try:
        for start in tqdm(range(0, len(indices), batch_size), desc="encode", unit="batch",
                          disable=process_index != 0):
            items = [ds[i] for i in indices[start:start + batch_size]]
            items = [it for it in items if it is not None]
            if not items:
                continue
            images = np.stack([it["image"] for it in items])
            labels = [int(it["label"]) for it in items]
            pad = batch_size - len(items)  # one compiled shape: pad the last batch
            both = np.concatenate([images, images[:, :, ::-1]])
            both = np.concatenate([both, np.zeros((pad * 2,) + images.shape[1:], images.dtype)]) if pad else both
            z, grain = (np.asarray(a) for a in model_fn(both))
            n = len(items)
            for k, flip in ((0, False), (1, True)):
                for i in range(n):
                    j = k * n + i  # rows: images, their flips, then padding
                    writer.write(encode_record(z[j], grain[j], labels[i], flip))
                    s1 += float(z[j].astype(np.float64).sum())
                    s2 += float(np.square(z[j].astype(np.float64)).sum())
                    n_el += z[j].size
                    fine += float(grain[j].mean())
                    count += 1
    finally:
        writer.close()
    os.replace(path + ".tmp", path)
    return {"records": count, "sum": s1, "sum_sq": s2, "elements": n_el, "fine_sum": fine,
            "z_shape": list(z.shape[1:]), "grain_shape": list(grain.shape[1:]), "num_classes": info["num_classes"]}


def encode_latents(dvae_workdir: str, out: str, *, data_cfg=None, num: int = 0, batch_size: int = 32,
                   force_grain: str = "") -> dict:
    """Encodes a dataset (default: the DVAE run's own) with a trained DVAE into `out`; returns the metadata.

    force_grain: '' (the DVAE's entropy grain maps), 'fine' or 'coarse' (every region, for the
    fixed-grain DiT baselines on the same latents). Every process encodes its slice; all return the
    merged metadata.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxmoda.d2it.grains import COARSE, DTYPE, FINE
    from jaxmoda.nn.logical import axis_rules
    from jaxmoda.train.sampling import load_for_sampling

    if force_grain not in ("", "fine", "coarse"):
        raise ConfigError(f"force_grain={force_grain!r} is unknown; use '' (entropy maps), 'fine' or 'coarse'")
    task, graphdef, ema, mesh, rules = load_for_sampling(dvae_workdir)
    if task.config.model.name != "dvae":
        raise ConfigError(f"{dvae_workdir} trained a {task.config.model.name!r} model; pass a Dynamic VAE run")
    data_cfg = data_cfg if data_cfg is not None else task.config.data

    def encode(p, x):
        model = nnx.merge(graphdef, p)
        grain = task.grain_map(x)
        if force_grain:
            grain = jnp.full_like(grain, FINE if force_grain == "fine" else COARSE, dtype=DTYPE)
        z, _ = model.encode(x, grain)
        return z, grain

    fn = jax.jit(encode)
    with axis_rules(mesh, rules):
        stats = encode_dataset(task, lambda x: fn(ema, x), data_cfg, out, num=num, batch_size=batch_size,
                               process_index=jax.process_index(), process_count=jax.process_count(),
                               seed=task.config.seed)
    # Each process leaves its shard's statistics beside the shard; process 0 merges them all.
    stats_path = os.path.join(out, f"stats-{jax.process_index():05d}.json")
    write_json(stats_path, stats, indent=None)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("jaxmoda.d2it.encode:stats")
    if jax.process_index() == 0:
        shards = [json.load(open(os.path.join(out, f"stats-{p:05d}.json"))) for p in range(jax.process_count())]
        stats = dict(shards[0], **{k: sum(s[k] for s in shards) for k in ("records", "sum", "sum_sq", "elements", "fine_sum")})
        mean = stats["sum"] / max(stats["elements"], 1)
        std = float(np.sqrt(max(stats["sum_sq"] / max(stats["elements"], 1) - mean ** 2, 1e-12)))
        meta = {"format": FORMAT, "records": stats["records"], "shards": jax.process_count(),
                "z_shape": stats["z_shape"], "grain_shape": stats["grain_shape"], "latent_mean": mean,
                "latent_std": std, "scale_factor": 1.0 / std, "num_classes": stats["num_classes"],
                "fine_ratio_observed": stats["fine_sum"] / max(stats["records"], 1),
                "fine_ratio": task.config.d2it.fine_ratio, "threshold": task.threshold, "force_grain": force_grain,
                "entropy": task.settings.as_dict(), "dvae_workdir": os.path.abspath(dvae_workdir)}
        write_json(os.path.join(out, "metadata.json"), meta, indent=2)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("jaxmoda.d2it.encode:metadata")
    with open(os.path.join(out, "metadata.json")) as f:
        return json.load(f)


FORMAT = "jaxmoda.d2it.latents/1"


def main(argv: list[str]) -> int:
    from jaxmoda.config import load_config, split_overrides
    overrides, rest = split_overrides(argv)
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.d2it.encode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a trained Dynamic VAE run")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", default="", help="config whose `data` group to encode (default: the run's)")
    parser.add_argument("--num", type=int, default=0, help="encode the first N images (0 = all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--force-grain", default="", choices=["", "fine", "coarse"],
                        help="encode every region fine or coarse (the fixed-grain baselines)")
    args = parser.parse_args(rest)
    setup_logging()
    data_cfg = load_config(args.config, overrides).data if args.config else None
    meta = encode_latents(args.workdir, args.out, data_cfg=data_cfg, num=args.num, batch_size=args.batch_size,
                          force_grain=args.force_grain)
    import jax
    if jax.process_index() == 0:
        print(f"wrote {meta['records']} latents ({args.num or 'all'} images and their flips) to {args.out}; "
              f"latent std {meta['latent_std']:.4f}, fine ratio {meta['fine_ratio_observed']:.3f}")
    return 0


if __name__ == "__main__":
    cli_main(main)
