"""python -m jaxmoda.plan --config configs/d2it/imagenet256_xl.py --mesh data=1,fsdp=8,tensor=1
       [--batch-size 256] [--peak-tflops 459 --mfu 0.4] [--hbm-gib 95] [--topology v5p:2x2x2] [--json]

Ahead-of-time fit check: lowers and compiles one train step of the config for the target mesh without
running it or allocating the model, and reports per device:
  params / optimizer / EMA bytes   from the shardings the logical-axis rules give each array
  compiled memory                  XLA's memory analysis of the compiled program (arguments, outputs,
                                   temporaries; peak = arguments + outputs - aliased + temporaries)
  FLOPs per step                   XLA's count of the step lowered with the layer scans unrolled
  step time                        FLOPs / (devices x --peak-tflops x --mfu), when a peak is given

Without --topology the mesh is made of fake CPU devices (this process sets
--xla_force_host_platform_device_count before JAX starts), so a 256-device plan runs on a laptop. The
CPU compiler's memory figures are a proxy for an accelerator's: arrays and shardings are exact, fusion
and rematerialisation differ. With --topology (TPU only, needs libtpu) the compile targets that TPU slice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Any

from jaxmoda.config import MESH_AXES
from jaxmoda.errors import ConfigError, cli_main


def parse_mesh(text: str) -> dict[str, int]:
    """'data=1,fsdp=8,tensor=1' -> {'data': 1, 'fsdp': 8, 'tensor': 1} (missing axes are 1)."""
    sizes = dict.fromkeys(MESH_AXES, 1)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in MESH_AXES or not value.isdigit() or int(value) < 1:
            raise ConfigError(f"--mesh {text!r}: each part must be AXIS=SIZE with AXIS in {', '.join(MESH_AXES)} "
                              "and SIZE >= 1, e.g. data=1,fsdp=8,tensor=1")
        sizes[name] = int(value)
    return sizes


def _use_fake_cpu_devices(count: int) -> None:
    """Before JAX starts: `count` host devices. Afterwards it is too late; the caller checks the count."""
    if "jax" in sys.modules:
        return
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={count}"])
    os.environ["JAX_PLATFORMS"] = "cpu"


def _topology_devices(name: str) -> list:
    try:
        from jax.experimental import topologies
        return list(topologies.get_topology_desc(topology_name=name, platform="tpu").devices)
    except Exception as e:  # no libtpu, or an unknown name
        raise ConfigError(f"--topology {name!r} could not be described ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                          "it needs the TPU libraries (pip install 'jax[tpu]') and a name like v5p:2x2x2") from None


def shard_bytes(tree: Any) -> int:
    import jax
    import numpy as np
    return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def total_bytes(tree: Any) -> int:
    import jax
    import numpy as np
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


@dataclasses.dataclass
class AbstractStep:
    """A config's train-step inputs as shapes and shardings only: nothing allocated."""
    mesh: Any
    rules: tuple
    task: Any
    tx: Any
    schedule: Any
    abstract: Any        # TrainState of ShapeDtypeStructs with shardings
    shardings: Any
    graphdef: Any
    batch_np: dict       # the task's example batch (host arrays)
    batch: dict          # its ShapeDtypeStructs, sharded over the batch axes

    def step(self, config, donate: bool = True):
        from jaxmoda.train.step import ShardedStep, train_step_from_config
        return ShardedStep(train_step_from_config(self.task, self.graphdef, self.tx, self.schedule, config),
                           self.mesh, self.rules, self.shardings, self.batch_np, donate=donate)


def abstract_step(config, devices=None, ema_memory_kind: str = "device") -> AbstractStep:
    """Mesh, task, optimizer, abstract TrainState and abstract batch of `config` over `devices` (default all)."""
    import jax

    from jaxmoda import parallel
    from jaxmoda.tasks import get_task
    from jaxmoda.train.state import abstract_train_state, make_optimizer

    mesh, rules = parallel.make_mesh(config, devices), parallel.rules_of(config)
    task = get_task(config)
    tx, schedule = make_optimizer(config.optimizer)
    abstract, shardings, graphdef = abstract_train_state(task.build_model, tx, mesh, rules,
                                                         ema_memory_kind=ema_memory_kind)
    batch_np = task.example_batch(config.batch_size)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=parallel.batch_sharding(mesh, rules, v.ndim))
             for k, v in batch_np.items()}
    return AbstractStep(mesh, rules, task, tx, schedule, abstract, shardings, graphdef, batch_np, batch)


def plan(config, devices, *, compile_step: bool = True, count_flops: bool = True, peak_tflops: float = 0.0,
         mfu: float = 0.4, hbm_gib: float = 0.0) -> dict:
    """The fit report of `config`'s train step on a mesh over `devices` (see the module docstring)."""
    from jaxmoda.bench import compiled_flops
    from jaxmoda.nn.stack import unrolled
    from jaxmoda.train.state import param_count

    ema_kind = config.get("ema_memory_kind", "device")
    a = abstract_step(config, devices, ema_kind)
    mesh, abstract, batch = a.mesh, a.abstract, a.batch
    n = len(devices)
    state_total = total_bytes(abstract)
    report: dict[str, Any] = {
        "config": config.model.name, "params": param_count(abstract.params), "devices": n,
        "device_kind": devices[0].device_kind, "mesh": dict(mesh.shape), "batch_size": config.batch_size,
        "per_device_bytes": {"params": shard_bytes(abstract.params), "optimizer": shard_bytes(abstract.opt_state),
                             "ema": shard_bytes(abstract.ema), "state": shard_bytes(abstract)},
        "state_bytes_total": state_total, "ema_memory_kind": ema_kind,
    }
    report["state_per_device_over_even_split"] = report["per_device_bytes"]["state"] / (state_total / n)
    on_host = report["per_device_bytes"]["ema"] if ema_kind != "device" else 0
    report["per_device_bytes"]["device_state"] = report["per_device_bytes"]["state"] - on_host

    compiled = None
    if compile_step:
        compiled = a.step(config).lower(abstract, batch).compile()
        mem = compiled.memory_analysis()
        if mem is not None:
            fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
                      "generated_code_size_in_bytes")
            m = {f.replace("_size_in_bytes", "_bytes"): int(getattr(mem, f, 0) or 0) for f in fields}
            m["peak_bytes"] = m["argument_bytes"] + m["output_bytes"] - m["alias_bytes"] + m["temp_bytes"]
            report["compiled_memory_per_device"] = m
            if hbm_gib > 0:
                report["fits"] = m["peak_bytes"] <= hbm_gib * 2 ** 30
    if count_flops:
        with unrolled():
            flops = compiled_flops(a.step(config).lower(abstract, batch))
        if not flops and compiled is not None:  # backends without pre-compile cost analysis (PJRT plugins)
            flops = compiled_flops(compiled) * n  # the compiled program is one device's; scans counted once
            report["flops_source"] = "compiled per-device program x devices (layer scans counted once)"
        report["flops_per_step"] = flops
        report["flops_per_device_per_step"] = flops / n
        if peak_tflops > 0 and flops > 0:
            report["peak_tflops"], report["mfu"] = peak_tflops, mfu
            report["est_step_time_s"] = flops / (n * peak_tflops * 1e12 * mfu)
            report["est_examples_per_s"] = config.batch_size / report["est_step_time_s"]
    return report


def _gib(x: float) -> str:
    return f"{x / 2 ** 30:8.3f} GiB" if x >= 2 ** 30 else f"{x / 2 ** 20:8.2f} MiB"


def format_report(r: dict) -> str:
    b = r["per_device_bytes"]
    lines = [f"{r['config']}: {r['params']:,} parameters; {r['devices']} x {r['device_kind']}; mesh "
             + ",".join(f"{k}={v}" for k, v in r["mesh"].items()) + f"; global batch {r['batch_size']}",
             "per device:",
             f"  params     {_gib(b['params'])}",
             f"  optimizer  {_gib(b['optimizer'])}",
             f"  EMA        {_gib(b['ema'])}" + ("   (in host memory)" if r.get("ema_memory_kind") == "pinned_host" else ""),
             f"  state      {_gib(b['state'])}   ({r['state_per_device_over_even_split']:.3f} x total/{r['devices']})"]
    m = r.get("compiled_memory_per_device")
    if m:
        lines += [f"  compiled   arguments {_gib(m['argument_bytes'])}, outputs {_gib(m['output_bytes'])}, "
                  f"aliased {_gib(m['alias_bytes'])}, temporaries {_gib(m['temp_bytes'])}",
                  f"  peak       {_gib(m['peak_bytes'])}" + (f"   fits: {r['fits']}" if "fits" in r else "")]
    if "flops_per_step" in r:
        lines.append(f"FLOPs per step {r['flops_per_step']:.4g} ({r['flops_per_device_per_step']:.4g} per device)")
    if "est_step_time_s" in r:
        lines.append(f"estimated step time {r['est_step_time_s'] * 1e3:.3g} ms at {r['peak_tflops']:g} TFLOP/s x MFU "
                     f"{r['mfu']:g} ({r['est_examples_per_s']:.0f} examples/s)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from jaxmoda.config import load_config, split_overrides, validate
    overrides, rest = split_overrides(argv)
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="config file, optionally path.py:arg")
    parser.add_argument("--mesh", required=True, help="target mesh, e.g. data=1,fsdp=8,tensor=1")
    parser.add_argument("--batch-size", type=int, default=0, help="global batch (default: the config's)")
    parser.add_argument("--topology", default="", help="TPU slice to compile for, e.g. v5p:2x2x2 (needs libtpu)")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="per-device peak for the step-time estimate")
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation for the estimate")
    parser.add_argument("--hbm-gib", type=float, default=0.0, help="per-device memory to check the peak against")
    parser.add_argument("--no-compile", action="store_true", help="shardings and FLOPs only (fast)")
    parser.add_argument("--no-flops", action="store_true", help="skip the unrolled FLOP count")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")
    args = parser.parse_args(rest)
    sizes = parse_mesh(args.mesh)
    count = math.prod(sizes.values())
    if not args.topology:
        _use_fake_cpu_devices(count)
    import jax
    devices = _topology_devices(args.topology) if args.topology else jax.devices()
    if len(devices) < count:
        raise ConfigError(f"--mesh {args.mesh} needs {count} devices but only {len(devices)} are present; "
                          "run python -m jaxmoda.plan in a fresh process (it fakes the devices) or shrink the mesh")
    devices = devices[:count]
    config = load_config(args.config, overrides)
    config.mesh.update(sizes)
    if args.batch_size:
        config.batch_size = args.batch_size
    validate(config, num_devices=count)
    report = plan(config, devices, compile_step=not args.no_compile, count_flops=not args.no_flops,
                  peak_tflops=args.peak_tflops, mfu=args.mfu, hbm_gib=args.hbm_gib)
    print(json.dumps(report) if args.json else format_report(report), flush=True)
    return 0


if __name__ == "__main__":
    cli_main(main)
