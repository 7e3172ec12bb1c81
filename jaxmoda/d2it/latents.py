"""Stage-2 input pipeline: cached DVAE latents -> bucketed, checkpointable training batches.

Every global batch is drawn from one token bucket (config `d2it.buckets`): each record needs
h*w + 3*N_fine tokens and belongs to the smallest bucket that holds it. The bucket of global batch i and
its records are a pure function of (seed, i), so every process picks the same bucket and takes its own
rows of the same global batch: shapes agree across hosts without communication, and a run compiles
at most one step per bucket. Records are drawn uniformly (each record equally likely, batches within
one bucket); the iterator is a grain dataset iterator, so its position is saved with checkpoints.

A batch is {"z": float32 [b, 2h, 2w, C] (neighbour-copied latent, unscaled), "grain": int8 [b, h, w],
"label": int32 [b], "mask": bool [b, L]} with L the bucket length; `mask` marks the real tokens of
the packed layout (they come first), and its shape carries the static bucket length into the step.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os

import numpy as np

from jaxmoda.d2it import tokens
from jaxmoda.d2it.encode import FORMAT, read_record
from jaxmoda.d2it.grains import num_codes
from jaxmoda.data.stepwise import process_rows, step_iterator
from jaxmoda.errors import ConfigError, DataError

log = logging.getLogger(__name__)

LENGTHS_FILE = "lengths.npy"


def read_metadata(path: str) -> dict:
    meta_path = os.path.join(path, "metadata.json")
    if not os.path.isfile(meta_path):
        raise DataError(f"{path} holds no latent cache (metadata.json is missing); write one with "
                        "python -m jaxmoda.d2it.encode --workdir DVAE_DIR --out DIR")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise DataError(f"{meta_path} has format {meta.get('format')!r}, not {FORMAT!r}; re-encode the latents")
    return meta


def shard_files(path: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(path, "latents-*.array_record")))
    if not files:
        raise DataError(f"{path} has metadata.json but no latents-*.array_record shards; re-encode the latents")
    return files


def open_source(path: str):
    import grain
    return grain.sources.ArrayRecordDataSource(shard_files(path))


def required_lengths(path: str, source=None) -> np.ndarray:
    """int32 [N]: tokens each record needs; computed once (a pass over the grain maps) and cached."""
    source = source if source is not None else open_source(path)
    cached = os.path.join(path, LENGTHS_FILE)
    if os.path.isfile(cached):
        lengths = np.load(cached)
        if len(lengths) == len(source):
            return lengths
    from tqdm.auto import tqdm
    lengths = np.empty(len(source), np.int32)
    for i in tqdm(range(len(source)), desc="token lengths", unit="rec", disable=len(source) < 5000):
        lengths[i] = num_codes(read_record(source[i])["grain"].astype(np.int8))
    try:  # a cache for next time; harmless to lose (another process may write the same bytes)
        tmp = f"{cached}.{os.getpid()}.tmp.npy"
        np.save(tmp, lengths)
        os.replace(tmp, cached)
    except OSError:
        pass
    return lengths


@dataclasses.dataclass(frozen=True)
class BatchMaker:
    """step -> this process's rows of global batch `step` (see the module docstring)."""

    path: str
    members: tuple            # per bucket: int64 record ids
    lengths: np.ndarray
    bucket_sizes: tuple
    global_batch: int
    seed: int
    process_index: int
    process_count: int

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(step)])
        counts = np.array([len(m) for m in self.members], np.float64)
        b = int(rng.choice(len(self.members), p=counts / counts.sum()))
        pool = self.members[b]
        ids = rng.choice(pool, self.global_batch, replace=len(pool) < self.global_batch)
        ids = ids[process_rows(self.global_batch, self.process_index, self.process_count)]
        source = _source(self.path)
        recs = [read_record(source[int(i)]) for i in ids]
        length = self.bucket_sizes[b]
        need = self.lengths[ids]
        return {"z": np.stack([r["z"] for r in recs]).astype(np.float32),
                "grain": np.stack([r["grain"] for r in recs]).astype(np.int8),
                "label": np.array([int(r["label"]) for r in recs], np.int32),
                "mask": np.arange(length)[None, :] < need[:, None]}


_SOURCES: dict = {}


def _source(path: str):
    if path not in _SOURCES:  # one open reader per process and cache folder
        _SOURCES[path] = open_source(path)
    return _SOURCES[path]


def make_latent_iterator(path: str, *, buckets, global_batch_size: int, seed: int, process_index: int = 0,
                         process_count: int = 1, num_threads: int = 2, prefetch: int = 4):
    """Infinite, deterministic, checkpointable iterator of this process's bucketed latent batches."""
    if global_batch_size % process_count:
        raise ConfigError(f"batch_size={global_batch_size} must be a multiple of the {process_count} processes")
    meta = read_metadata(path)
    source = _source(path)
    lengths = required_lengths(path, source)
    sizes = sorted(int(x) for x in buckets)
    if not sizes:
        raise ConfigError("config.d2it.buckets is empty; list token bucket lengths such as [512, 640, 768, 896, 1024]")
    worst = int(lengths.max()) if len(lengths) else 0
    if worst > sizes[-1]:
        raise ConfigError(f"a cached latent needs {worst} tokens but the largest of config.d2it.buckets={sizes} is "
                          f"{sizes[-1]}; add a bucket >= {worst} (4*h*w = {4 * int(np.prod(meta['grain_shape']))} "
                          "always fits)")
    bucket_of = np.searchsorted(np.asarray(sizes), lengths)  # smallest bucket >= length
    members, used = [], []
    for k, size in enumerate(sizes):
        ids = np.nonzero(bucket_of == k)[0]
        if len(ids):
            members.append(ids)
            used.append(size)
    log.info("latent cache %s: %d records in buckets %s", path, len(lengths),
             {s: len(m) for s, m in zip(used, members)})
    maker = BatchMaker(path, tuple(members), lengths, tuple(used), global_batch_size, seed, process_index,
                       process_count)
    return step_iterator(maker, num_threads=num_threads, prefetch=prefetch)


def check_grain_maps(grain_np: np.ndarray, h: int, w: int, what: str) -> np.ndarray:
    """Host-side check of user grain maps: shape [h, w] or [N, h, w] and values COARSE/FINE; int8 [N, h, w]."""
    g = np.asarray(grain_np)
    if g.ndim == 2:
        g = g[None]
    if g.ndim != 3 or g.shape[1:] != (h, w):
        raise DataError(f"{what} has shape {tuple(np.asarray(grain_np).shape)}; the model needs [{h}, {w}] or "
                        f"[N, {h}, {w}] grain maps (one value per {16}-px region)")
    tokens.check_bucket(g, 4 * h * w)  # values only: every map fits 4*h*w tokens
    return g.astype(np.int8)
