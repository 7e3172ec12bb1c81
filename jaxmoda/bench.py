"""python -m jaxmoda.bench --config configs/dit/s2.py [--steps 10] [--flops-only] [--config.key=value ...]
python -m jaxmoda.bench --sample-workdir RUN [--num 64]     (images/s of a trained run's sampler)
python -m jaxmoda.bench --all [--suite tiny|paper] [--out FILE.json] [--peak-tflops P]
                                                          (every figure, one JSON file: jaxmoda.bench_suite)

Times the jitted train step of a config on synthetic batches and prints one JSON line:
  step_time_s         median wall time of one step (after compilation and warm-up)
  flops_per_step      XLA's own count (`cost_analysis`) of the step lowered with the layer scan unrolled
                      (XLA counts a scanned body once, not once per layer)
  analytic_flops_per_step  3 x forward matmul+attention FLOPs x batch, from the architecture
  flops_per_s         flops_per_step / step_time_s (analytic on GPU, where cuBLAS/cuDNN custom calls
                      are invisible to XLA's count)
  matmul_flops_per_s  this machine's dense matmul rate, measured in the same run
  matmul_ratio        flops_per_s / matmul_flops_per_s (a CPU-fair utilisation figure; XLA's count
                      includes remat recomputation)
  model_matmul_ratio  the same with the analytic model FLOPs (no recomputation)
  mfu                 flops_per_s / (--peak-tflops), when a peak is given
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

from jaxmoda.errors import cli_main


def matmul_rate(n: int, dtype, repeats: int = 5) -> float:
    """FLOP/s of an n x n x n matmul in `dtype` (median of `repeats` after 2 warm-ups)."""
    import jax
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    for _ in range(2):
        f(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times)


def time_calls(fn, repeats: int) -> tuple[float, float]:
    """(seconds of fn(0), compile included; median seconds of fn(1) ... fn(repeats)), each blocked until ready."""
    import jax
    t = time.perf_counter()
    jax.block_until_ready(fn(0))
    first = time.perf_counter() - t
    times = []
    for i in range(1, repeats + 1):
        t = time.perf_counter()
        jax.block_until_ready(fn(i))
        times.append(time.perf_counter() - t)
    return first, statistics.median(times)


def compiled_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float(cost.get("flops", 0.0)) if cost else 0.0


def run(config, steps: int, warmup: int, matmul_n: int, peak_tflops: float) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxmoda.config import validate
    from jaxmoda.train.setup import build_training
    from jaxmoda.train.state import param_count
    from jaxmoda.train.step import ShardedStep, train_step_from_config

    validate(config, num_devices=jax.device_count())
    run_ = build_training(config)
    task, state, step = run_.task, run_.state, run_.step
    batch_np = task.example_batch(config.batch_size)
    batch = run_.global_batch(batch_np)
    t = time.perf_counter()
    step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t
    from jaxmoda.nn.stack import unrolled
    flops = 0.0
    if jax.default_backend() != "gpu":  # on GPU the matmuls are library calls XLA does not count
        with unrolled():  # a separate jit: the traced scan is cached per function
            counter = ShardedStep(train_step_from_config(task, run_.graphdef, run_.tx, run_.schedule, config),
                                  run_.mesh, run_.rules, run_.shardings, batch_np, donate=False)
            flops = compiled_flops(counter.lower(state, batch).compile())
    analytic = 3.0 * task.forward_flops_per_example() * config.batch_size if hasattr(task, "forward_flops_per_example") else 0.0
    for _ in range(warmup):
        state, m = step(state, batch)
        jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, m = step(state, batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
    step_time = statistics.median(times)
    arch = config.model.dct if "dct" in config.model else config.model  # D²iT: the content transformer's
    dtype = jnp.bfloat16 if arch.get("dtype", "float32") == "bfloat16" else jnp.float32
    rate = matmul_rate(matmul_n, dtype)
    ndev = jax.device_count()
    xla_total = flops * ndev  # XLA counts the per-device program
    counted = analytic if jax.default_backend() == "gpu" and analytic else xla_total
    per_device = counted / step_time / ndev
    result = {
        "config": config.model.name,
        "params": param_count(state.params),
        "batch_size": config.batch_size,
        "microbatches": config.get("microbatches", 1),
        "remat": arch.get("remat", "none"),
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "dtype": jnp.dtype(dtype).name,
        "compile_s": round(compile_s, 3),
        "step_time_s": step_time,
        "step_time_min_s": min(times),
        "flops_per_step": xla_total,
        "analytic_flops_per_step": analytic,
        "flops_per_s": per_device,
        "matmul_flops_per_s": rate,
        "matmul_ratio": per_device / rate,
        # Model FLOPs only (no remat recompute, no elementwise work): the conservative utilisation.
        "model_matmul_ratio": analytic / step_time / ndev / rate if analytic else None,
        "loss": float(m["loss"]),
    }
    if peak_tflops > 0:
        result["mfu"] = per_device / (peak_tflops * 1e12)
    return result


def attention_check(batch: int = 16, tokens: int = 1024, heads: int = 16, head_dim: int = 72) -> dict:
    """cuDNN fused attention vs XLA on padded bf16 inputs: error at real tokens and fwd+bwd time."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxmoda.nn.attention import dot_product_attention
    keys = jax.random.split(jax.random.key(0), 4)
    q, k, v = (jax.random.normal(kk, (batch, tokens, heads, head_dim), jnp.bfloat16) for kk in keys[:3])
    lengths = jax.random.randint(keys[3], (batch,), tokens // 2, tokens + 1)
    mask = jnp.arange(tokens)[None] < lengths[:, None]
    ref = dot_product_attention(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), mask)
    real = np.asarray(mask)
    result = {"check": "attention", "shape": [batch, tokens, heads, head_dim], "backend": jax.default_backend()}
    for impl in ("xla", "cudnn"):
        try:
            fwd = jax.jit(lambda a, b, c, m, impl=impl: dot_product_attention(a, b, c, m, implementation=impl))
            out = np.asarray(fwd(q, k, v, mask).astype(jnp.float32))
            err = np.abs(out - np.asarray(ref))[real]
            rel = float(np.linalg.norm(err) / np.linalg.norm(np.asarray(ref)[real]))
            grad = jax.jit(jax.grad(lambda a, b, c, m, impl=impl: jnp.sum(
                dot_product_attention(a, b, c, m, implementation=impl).astype(jnp.float32) ** 2), argnums=(0, 1, 2)))
            jax.block_until_ready(grad(q, k, v, mask))
            times = []
            for _ in range(10):
                t = time.perf_counter()
                jax.block_until_ready(grad(q, k, v, mask))
                times.append(time.perf_counter() - t)
            result[impl] = {"rel_err_vs_fp32": rel, "max_abs_err": float(err.max()),
                            "fwd_bwd_ms": 1e3 * statistics.median(times)}
        except Exception as e:  # report, do not hide: the figure table says which path failed
            result[impl] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    return result


def count_flops(config) -> dict:
    """XLA-counted FLOPs of one train step and one guided sampler step, without allocating anything.

    Both are lowered with the layer scans unrolled on abstract (shape-only) state, so any size counts on
    a CPU. Also the training state's bytes in total and on one device of the config's mesh.
    """
    import jax
    from flax import nnx

    from jaxmoda.nn.logical import axis_rules
    from jaxmoda.nn.stack import unrolled
    from jaxmoda.plan import abstract_step, shard_bytes, total_bytes
    from jaxmoda.train.state import param_count

    a = abstract_step(config)
    task, graphdef, abstract, batch = a.task, a.graphdef, a.abstract, a.batch
    with unrolled():
        train = compiled_flops(a.step(config, donate=False).lower(abstract, batch))
        with axis_rules(a.mesh, a.rules):
            den = jax.jit(lambda p, b: task.denoise_step(nnx.merge(graphdef, p), b))
            sample = compiled_flops(den.lower(abstract.ema, batch))
    total, per_device = total_bytes(abstract), shard_bytes(abstract)
    result = {"config": config.model.name, "params": param_count(abstract.params), "batch_size": config.batch_size,
              "devices": jax.device_count(), "mesh": dict(a.mesh.shape),
              "train_flops_per_step": train, "train_flops_per_example": train / config.batch_size,
              "sample_flops_per_image_step": sample / config.batch_size,
              "state_bytes_total": total, "state_bytes_per_device": per_device}
    if config.model.name == "d2it":
        result["tokens_per_example"] = float(a.batch_np["mask"].sum(1).mean())
        result["bucket_length"] = int(a.batch_np["mask"].shape[1])
    return result


def sample_throughput(workdir: str, num: int, repeats: int = 3) -> dict:
    """Images per second of a trained run's full sampler (`jaxmoda.sample`'s path), compile excluded."""
    import jax
    from flax import nnx

    from jaxmoda.nn.logical import axis_rules
    from jaxmoda.train.sampling import load_for_sampling
    task, graphdef, ema, mesh, rules = load_for_sampling(workdir)
    if hasattr(task, "prepare_sampling"):
        task.prepare_sampling()
    with axis_rules(mesh, rules):
        fn = jax.jit(lambda p, r: task.sample(nnx.merge(graphdef, p), r, num))
        compile_s, seconds = time_calls(lambda i: fn(ema, jax.random.key(i)), repeats)
    obj = task.config.objective
    return {"workdir": workdir, "model": task.config.model.name, "num": num, "steps": obj.sample_steps,
            "sampler": obj.sampler, "cfg_scale": obj.cfg_scale, "first_call_s": round(compile_s, 3),
            "seconds": seconds, "images_per_s": num / seconds,
            "device_kind": jax.devices()[0].device_kind, "devices": jax.device_count()}


def main(argv: list[str]) -> int:
    from jaxmoda.config import load_config, split_overrides
    overrides, rest = split_overrides(argv)
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="")
    parser.add_argument("--attention-check", action="store_true", help="compare cuDNN and XLA attention and exit")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--matmul-n", type=int, default=4096, help="side of the reference matmul")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="hardware peak for an MFU figure")
    parser.add_argument("--sample-workdir", default="", help="time the full sampler of a trained run instead")
    parser.add_argument("--num", type=int, default=64, help="images per sampler call (--sample-workdir)")
    parser.add_argument("--all", action="store_true", help="run the benchmark suite and write one JSON file")
    parser.add_argument("--suite", default="", choices=["", "tiny", "paper"],
                        help="--all: tiny configs (default on CPU) or the papers' sizes (default on accelerators)")
    parser.add_argument("--out", default="", help="--all: output file (default bench_<backend>_<date>.json)")
    parser.add_argument("--sample-batch", type=int, default=16, help="--all: sampler batch")
    parser.add_argument("--flops-only", action="store_true",
                        help="count train/sampler-step FLOPs and state bytes on abstract shapes (any size, no run)")
    args = parser.parse_args(rest)
    logging.basicConfig(level=logging.WARNING)
    if args.attention_check:
        print(json.dumps(attention_check()), flush=True)
        return 0
    if args.all:
        import jax

        from jaxmoda.bench_suite import run_suite, write_report
        suite = args.suite or ("tiny" if jax.default_backend() == "cpu" else "paper")
        report = run_suite(suite, steps=args.steps, warmup=args.warmup, matmul_n=args.matmul_n,
                           peak_tflops=args.peak_tflops, sample_batch=args.sample_batch, overrides=overrides)
        out = args.out or f"bench_{report['backend']}_{report['date']}.json"
        write_report(report, out)
        print(json.dumps({"out": out, "configs": [c["config_file"] for c in report["configs"]],
                          "errors": [c["config_file"] for c in report["configs"] if "error" in c]}), flush=True)
        return 0
    if args.sample_workdir:
        print(json.dumps(sample_throughput(args.sample_workdir, args.num)), flush=True)
        return 0
    if not args.config:
        parser.error("--config is required (or --attention-check)")
    config = load_config(args.config, overrides)
    if args.flops_only:
        print(json.dumps(count_flops(config)), flush=True)
        return 0
    print(json.dumps(run(config, args.steps, args.warmup, args.matmul_n, args.peak_tflops)), flush=True)
    return 0


if __name__ == "__main__":
    cli_main(main)
