"""python -m jaxmoda.export --workdir RUN --out EXPORT_DIR [--step N] [--platforms cpu,cuda,tpu]

Exports a trained run for serving: its EMA parameters as one flat .npz and its sampling function,
serialised with `jax.export` with a symbolic batch size, so that `jaxmoda.serve.load(EXPORT_DIR)` runs
it in any process with JAX, without the model code. Written into EXPORT_DIR:

  sample.jaxexport   the serialised StableHLO function  f(params, key, *inputs) -> outputs
  params.npz         the parameters in the function's argument order (arr_00000, arr_00001, ...)
  meta.json          kind, inputs (names, shapes with "b" for the batch, dtypes), outputs, settings

What is exported, per kind of run:
  dit      images [b, S, S, C] in [-1, 1] for class labels [b]
  d2it     images [b, H, W, 3] and grain maps [b, h, w] for labels [b]; the DVAE decoder's parameters
           are exported with the run's own (one params.npz)
  moda     one motion window [b, W, 70] (de-normalised, the 70-d layout) for a previous frame [b, 70],
           audio features [b, W, L, C], canonical keypoints [b, 63] and emotion labels [b]; long clips
           are windows chained by the caller (as jaxmoda.moda.generate does)
Sampler settings (steps, guidance scales) are those of the run's config, fixed at export time; attention
is traced with XLA's own implementation (the same parameters; no cuDNN or splash kernel in the file).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from typing import Callable

from jaxmoda.errors import CheckpointError, ConfigError, cli_main
from jaxmoda.serve import FORMAT_VERSION  # the reader's version is the one written


def _kind_function(task, graphdef) -> tuple[Callable, list[tuple[str, tuple, str]], list[str], dict, list]:
    """(f(params, extra, key, *inputs), input specs, output names, settings, extra params) for a run's task.

    Input specs are (name, shape with "b" for the batch, dtype). `extra` is a second parameter tree the
    function needs (the D²iT DVAE decoder) or an empty list.
    """
    import jax
    import numpy as np
    from flax import nnx

    config = task.config
    kind = config.model.name
    if kind == "dit":
        m = config.model

        def f(params, extra, key, labels):
            return {"images": task.sample(nnx.merge(graphdef, params), key, labels.shape[0], labels=labels)}
        return f, [("labels", ("b",), "int32")], ["images"], {"num_classes": int(m.num_classes)}, []
    if kind == "d2it":
        dvae_task, dvae_graphdef, dvae_ema = task._dvae_parts()
        task.scale_factor()

        def f(params, extra, key, labels):
            saved = task._dvae
            task._dvae = (dvae_task, dvae_graphdef, extra)  # decode with the decoder passed in, not a constant
            try:
                out = task.sample(nnx.merge(graphdef, params), key, labels.shape[0], labels=labels)
            finally:
                task._dvae = saved
            return {"images": out["images"], "grain": out["grain"]}
        return (f, [("labels", ("b",), "int32")], ["images", "grain"], {"num_classes": int(task.num_classes)},
                jax.device_get(dvae_ema))
    if kind == "moda":
        d = config.moda
        mean, std = np.asarray(d.motion_mean, np.float32), np.asarray(d.motion_std, np.float32)
        if mean.shape != (70,):
            raise CheckpointError("the run's config has no motion statistics (config.moda.motion_mean); export a run "
                                  "trained by jaxmoda.train")
        window = task.window
        batch = task.example_batch(1)
        _, _, length, channels = batch["audio"].shape

        def f(params, extra, key, prefix, audio, identity, emotion):
            model = nnx.merge(graphdef, params)
            x = task.sample_window(model, key, (prefix - mean) / std, audio, identity, emotion)
            return {"motion": x * std + mean}
        specs = [("prefix", ("b", 70), "float32"), ("audio", ("b", window, int(length), int(channels)), "float32"),
                 ("identity", ("b", 63), "float32"), ("emotion", ("b",), "int32")]
        settings = {"window": int(window), "stride": int(window - window // 5), "fps": 25,
                    "num_emotions": int(config.model.num_emotions), "audio_frontend": config.audio.frontend}
        return f, specs, ["motion"], settings, []
    raise ConfigError(f"runs of kind {kind!r} have no serving export yet; export supports dit, d2it and moda runs")


def _check_out(out: str, workdir: str) -> None:
    """The output folder is replaced: refuse anything but an empty folder or an earlier export."""
    if workdir == out or workdir.startswith(out + os.sep):
        raise ConfigError(f"--out {out} contains the run {workdir}; pass a folder outside it")
    if os.path.isdir(out) and os.listdir(out):
        meta = os.path.join(out, "meta.json")
        try:
            with open(meta) as f:
                ok = json.load(f).get("format") is not None and os.path.isfile(os.path.join(out, "sample.jaxexport"))
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"--out {out} exists and is not an earlier export; pass a new or empty folder")
    elif os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} is a file; pass a folder")


def export_run(workdir: str, out: str, *, step: int | None = None, platforms: tuple[str, ...] = ()) -> dict:
    """Writes EXPORT_DIR (see the module docstring) atomically; returns its meta."""
    import jax
    import numpy as np
    from jax import export as jax_export

    from jaxmoda.train.sampling import load_for_sampling

    out = os.path.abspath(out)
    _check_out(out, os.path.abspath(workdir))
    task, graphdef, ema, _, _ = load_for_sampling(workdir, step=step, mesh_devices=jax.devices()[:1], portable=True)
    params = jax.device_get(ema)
    f, specs, outputs, settings, extra = _kind_function(task, graphdef)
    leaves, treedef = jax.tree.flatten(params)
    extra_leaves, extra_def = jax.tree.flatten(extra)
    n = len(leaves)

    def flat_fn(flat_params, key_data, *inputs):
        key = jax.random.wrap_key_data(key_data)
        p = jax.tree.unflatten(treedef, flat_params[:n])
        e = jax.tree.unflatten(extra_def, flat_params[n:])
        return f(p, e, key, *inputs)

    all_leaves = [np.asarray(x) for x in leaves + extra_leaves]
    dtypes = [x.dtype.name for x in all_leaves]  # .npz keeps no bfloat16: stored as raw bits, viewed back
    (b,) = jax_export.symbolic_shape("b")
    arg_specs = [[jax.ShapeDtypeStruct(x.shape, x.dtype) for x in all_leaves],
                 jax.ShapeDtypeStruct((2,), np.uint32)]
    arg_specs += [jax.ShapeDtypeStruct(tuple(b if d == "b" else d for d in shape), np.dtype(dtype))
                  for _, shape, dtype in specs]
    kwargs = {"platforms": tuple(platforms)} if platforms else {}
    exported = jax_export.export(jax.jit(flat_fn), **kwargs)(*arg_specs)
    meta = {"format": FORMAT_VERSION, "kind": task.config.model.name, "workdir": os.path.abspath(workdir),
            "inputs": [{"name": name, "shape": list(shape), "dtype": dtype} for name, shape, dtype in specs],
            "outputs": outputs, "num_params": int(sum(x.size for x in leaves)), "num_arrays": len(all_leaves),
            "dtypes": dtypes,
            "platforms": list(exported.platforms), "settings": settings, "jax_version": jax.__version__}
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        with open(os.path.join(tmp, "sample.jaxexport"), "wb") as fh:
            fh.write(exported.serialize())
        np.savez(os.path.join(tmp, "params.npz"),
                 *[x.view(f"uint{8 * x.dtype.itemsize}") if x.dtype.kind == "V" or x.dtype.name == "bfloat16" else x
                   for x in all_leaves])
        with open(os.path.join(tmp, "meta.json"), "w") as fh:
            json.dump(meta, fh, indent=2)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a training run (config.json + checkpoints or export/)")
    parser.add_argument("--out", required=True, help="folder to write (replaced when it exists)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--platforms", default="", help="comma-separated, e.g. cpu,cuda,tpu (default: this backend)")
    args = parser.parse_args(argv)
    from jaxmoda.logs import setup_logging
    setup_logging()
    platforms = tuple(p for p in args.platforms.split(",") if p)
    meta = export_run(args.workdir, args.out, step=args.step, platforms=platforms)
    print(json.dumps({k: meta[k] for k in ("kind", "inputs", "outputs", "num_params", "platforms")}), flush=True)
    return 0


if __name__ == "__main__":
    cli_main(main)
