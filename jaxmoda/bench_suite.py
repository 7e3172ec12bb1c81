"""`python -m jaxmoda.bench --all`: every speed figure of the project in one JSON file.

For each config of the suite (the tiny ones on CPU; the papers' sizes on an accelerator, or with
`--suite paper`): the train step (median time, XLA's FLOP count, achieved FLOP/s, its ratio to this
machine's matmul rate, MFU against `--peak-tflops`), the training state's bytes per device, and the
sampler's throughput (DiT images/s, D²iT latents/s through the grain and content transformers, MoDA
motion frames/s, renderer frames/s). Sampler figures use freshly initialised parameters: speed does
not depend on the weights. Progress goes to stderr; the file is written atomically at the end.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
from typing import Any

log = logging.getLogger(__name__)

SUITES = {
    "tiny": ["configs/dit/tiny.py", "configs/d2it/tiny.py", "configs/moda/tiny.py", "configs/moda/renderer_tiny.py"],
    "paper": ["configs/dit/xl2.py", "configs/d2it/imagenet256_xl.py", "configs/moda/hdtf_b.py",
              "configs/moda/renderer_256.py"],
}


def sampler_throughput(config, batch: int, repeats: int = 3) -> dict:
    """Outputs per second of the task's sampler on one device, parameters freshly initialised."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jaxmoda.train.setup import build_training
    if config.model.name == "d2it" and not config.d2it.scale_factor:
        config = config.copy_and_resolve_references()
        config.d2it.scale_factor = 1.0  # a latent scale, normally read from the latent cache: speed is the same
    run = build_training(config, jax.devices()[:1])
    task, graphdef, params = run.task, run.graphdef, run.state.ema
    kind = config.model.name
    key = jax.random.key(0)
    if kind == "dit":
        fn = jax.jit(lambda p, k: task.sample(nnx.merge(graphdef, p), k, batch))
        unit, per_call = "images_per_s", batch
        call = lambda i: fn(params, key)
    elif kind == "d2it":
        labels = jnp.arange(batch, dtype=jnp.int32) % task.num_classes

        def latents(p, k):
            model = nnx.merge(graphdef, p)
            grain = task.sample_grain(model, k, labels)
            return task.sample_latents(model, k, labels, grain)
        fn = jax.jit(latents)
        unit, per_call = "latents_per_s", batch
        call = lambda i: fn(params, key)
    elif kind == "moda":
        b = task.example_batch(batch)
        fn = jax.jit(lambda p, k, x: task.sample_window(nnx.merge(graphdef, p), k, x["motion"][:, 0], x["audio"],
                                                        x["identity"], x["emotion"]))
        unit, per_call = "motion_frames_per_s", batch * task.window
        call = lambda i: fn(params, key, b)
    elif kind == "renderer":
        from jaxmoda.moda.render.model import render_frames
        b = task.example_batch(1)
        driving = np.resize(np.asarray(b["driving_motion"]), (batch, 70))
        fn = jax.jit(lambda p, src, xc, sm, dm: render_frames(nnx.merge(graphdef, p), src, xc, sm, dm))
        unit, per_call = "frames_per_s", batch
        call = lambda i: fn(params, b["source"], b["x_c"], b["source_motion"], driving)
    else:
        return {}
    from jaxmoda.bench import time_calls
    first, seconds = time_calls(call, repeats)
    return {"sampler": unit, unit: per_call / seconds, "batch": batch, "call_s": seconds, "first_call_s": first}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run_suite(suite: str, *, steps: int, warmup: int, matmul_n: int, peak_tflops: float, sample_batch: int,
              overrides: list[tuple[str, str]]) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxmoda.bench import matmul_rate, run
    from jaxmoda.config import load_config
    from jaxmoda.plan import plan

    report: dict[str, Any] = {
        "suite": suite, "commit": _git_commit(), "date": time.strftime("%Y-%m-%d"), "jax": jax.__version__,
        "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind, "devices": jax.device_count(),
        "host": platform.node(), "cpu_count": os.cpu_count(), "peak_tflops": peak_tflops or None,
        "matmul_flops_per_s": {"float32": matmul_rate(matmul_n, jnp.float32)}, "configs": []}
    if jax.default_backend() != "cpu":
        report["matmul_flops_per_s"]["bfloat16"] = matmul_rate(matmul_n, jnp.bfloat16)
    for path in SUITES[suite]:
        log.warning("bench --all: %s", path)
        entry: dict[str, Any] = {"config_file": path}
        try:
            config = load_config(path, overrides)
            config.mesh.update({"data": -1, "fsdp": 1, "tensor": 1})
            entry["train"] = run(config, steps, warmup, matmul_n, peak_tflops)
            state = plan(config, jax.devices(), compile_step=False, count_flops=False)
            entry["state_bytes_per_device"] = state["per_device_bytes"]
            entry["sampling"] = sampler_throughput(config, sample_batch)
        except Exception as e:  # one failing config is reported, the rest still run
            entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            log.warning("bench --all: %s failed: %s", path, entry["error"])
        report["configs"].append(entry)
    return report


def write_report(report: dict, out: str) -> None:
    from jaxmoda.io.atomic import write_json
    write_json(out, report, indent=1)
