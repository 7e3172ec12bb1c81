"""Runs a `python -m jaxmoda.export` folder with JAX alone: no model code is imported.

    from jaxmoda import serve
    sampler = serve.load("exports/d2it")
    out = sampler(seed=0, labels=np.arange(8) % sampler.meta["settings"]["num_classes"])
    out["images"]        # [8, 256, 256, 3] in [-1, 1]

Any batch size works (the export's batch dimension is symbolic). This module imports only json, os,
numpy and jax, so a serving process can copy it alone.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

FORMAT_VERSION = 1


class ExportError(ValueError):
    """An export folder that cannot be served."""


class Served:
    """A loaded export: call it with `seed=` (or `key=`) and the named inputs of `meta["inputs"]`."""

    def __init__(self, exported: Any, params: list[np.ndarray], meta: dict):
        self.exported, self.meta = exported, meta
        self.params = [jnp.asarray(p) for p in params]
        self.input_names = [i["name"] for i in meta["inputs"]]

    def __call__(self, seed: int = 0, *, key: jax.Array | None = None, **inputs) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        unknown = sorted(set(inputs) - set(self.input_names))
        if missing or unknown:
            raise ExportError(f"this {self.meta['kind']} export takes inputs {self.input_names}; "
                              f"missing {missing}, unknown {unknown}")
        if key is None:
            key = jax.random.key(seed)
        key_data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        args = []
        batch = None
        for spec in self.meta["inputs"]:
            x = np.asarray(inputs[spec["name"]], dtype=spec["dtype"])
            want = spec["shape"]
            if x.ndim != len(want) or any(w != "b" and w != s for w, s in zip(want, x.shape)):
                raise ExportError(f"input {spec['name']} has shape {list(x.shape)}; the export expects {want} "
                                  "('b' = any batch size, the same for every input)")
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                raise ExportError(f"input {spec['name']} has batch {x.shape[0]}, another input has {batch}")
            args.append(x)
        out = self.exported.call(self.params, jnp.asarray(key_data, jnp.uint32), *args)
        return jax.tree.map(np.asarray, out)


def load(directory: str) -> Served:
    """Loads `python -m jaxmoda.export` output (sample.jaxexport, params.npz, meta.json)."""
    paths = {name: os.path.join(directory, name) for name in ("sample.jaxexport", "params.npz", "meta.json")}
    missing = [n for n, p in paths.items() if not os.path.isfile(p)]
    if missing:
        raise ExportError(f"{directory} lacks {', '.join(missing)}; pass a folder written by python -m jaxmoda.export")
    with open(paths["meta.json"]) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT_VERSION:
        raise ExportError(f"{directory} has export format {meta.get('format')}; this jaxmoda reads format {FORMAT_VERSION}")
    with open(paths["sample.jaxexport"], "rb") as f:
        exported = jax_export.deserialize(bytearray(f.read()))
    platform = jax.default_backend()
    if platform == "gpu":
        platform = next((p for p in ("cuda", "rocm") if p in exported.platforms), "cuda")
    if platform not in exported.platforms:
        raise ExportError(f"{directory} was exported for {list(exported.platforms)}, not {platform}; "
                          "re-export with --platforms including it")
    with np.load(paths["params.npz"]) as z:
        params = [z[f"arr_{i}"] for i in range(meta["num_arrays"])]
    params = [p.view(jnp.dtype(d)) if p.dtype != jnp.dtype(d) else p for p, d in zip(params, meta["dtypes"])]
    return Served(exported, params, meta)
