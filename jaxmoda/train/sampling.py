"""Loading a trained run for sampling: its config, its model, and the EMA params of its latest checkpoint."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jaxmoda import parallel
from jaxmoda.config import from_json
from jaxmoda.errors import CheckpointError
from jaxmoda.tasks import get_task
from jaxmoda.train.checkpoint import Checkpointer, load_exported_params, param_signature
from jaxmoda.train.state import abstract_train_state, make_optimizer


def read_run_config(workdir: str):
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"{workdir} has no config.json; pass the --workdir of a jaxmoda training run")
    with open(path) as f:
        return from_json(f.read())


def portable_attention(node) -> None:
    """Sets every `attention` field of a model config to 'xla' (in place): the same parameters, no
    backend-specific kernels (cuDNN, splash), as a serialised export for several platforms needs."""
    for key in list(node.keys()):
        if key == "attention":
            node[key] = "xla"
        elif hasattr(node[key], "keys"):
            portable_attention(node[key])


def load_for_sampling(workdir: str, *, step: int | None = None, mesh_devices=None,
                      portable: bool = False) -> tuple[Any, Any, Any, Any, Any]:
    """Returns (task, graphdef, ema_params, mesh, rules) of a run, on a data-parallel mesh of this host's devices.

    `portable` builds the model with XLA attention everywhere (see `portable_attention`)."""
    workdir = os.path.abspath(workdir)
    config = read_run_config(workdir)
    if portable:
        portable_attention(config.model)
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1   # sample on whatever is here
    mesh = parallel.make_mesh(config, mesh_devices)
    rules = parallel.rules_of(config)
    task = get_task(config)
    tx, _ = make_optimizer(config.optimizer)
    abstract, _, graphdef = abstract_train_state(task.build_model, tx, mesh, rules)
    meta = {"model_name": config.model.name, "params": param_signature(abstract.params)}
    ckpt_dir = os.path.join(workdir, "checkpoints")
    steps = Checkpointer(ckpt_dir, async_save=False).all_steps() if os.path.isdir(ckpt_dir) else []
    if steps:
        chosen = step if step is not None else max(steps)
        if chosen not in steps:
            raise CheckpointError(f"{workdir} has no checkpoint at step {chosen}; it has {steps}")
        ckpt = Checkpointer(ckpt_dir, async_save=False)
        state = ckpt.restore(chosen, abstract, None, meta)
        ckpt.close()
        return task, graphdef, state.ema, mesh, rules
    export = os.path.join(workdir, "export")
    if os.path.isdir(export):
        return task, graphdef, load_exported_params(export, abstract.params, meta), mesh, rules
    raise CheckpointError(f"{workdir} has no checkpoints or export yet; train it first (python -m jaxmoda.train)")


def sample_run(workdir: str, num: int, *, seed: int = 0, step: int | None = None, **options):
    """`num` outputs of a run's task from the EMA params of its latest (or `step`) checkpoint.

    `options` go to the task's `sample` (e.g. labels, cfg_scale, steps, sampler; for D²iT also grain, a
    .npy/image path or an int array of grain maps). Labels and grain maps are checked here, on the host.
    """
    from flax import nnx

    from jaxmoda.errors import ConfigError
    from jaxmoda.nn.logical import axis_rules
    task, graphdef, ema, mesh, rules = load_for_sampling(workdir, step=step)
    if options.get("labels") is not None:
        n = int(task.config.model.num_classes)
        ids = np.asarray(options["labels"])
        bad = ids[(ids < 0) | (ids >= n)]
        if bad.size:
            raise ConfigError(f"class id {int(bad[0])} is out of range; this model has classes 0..{n - 1}")
    if options.get("grain") is not None:
        if not hasattr(task, "prepare_grain"):
            raise ConfigError(f"a grain map applies to D²iT runs; {workdir} trained {task.config.model.name!r}")
        options["grain"] = task.prepare_grain(options["grain"], num)
    if hasattr(task, "prepare_sampling"):  # host-side loading (e.g. D²iT's DVAE decoder), before any trace
        task.prepare_sampling()
    with axis_rules(mesh, rules):
        fn = jax.jit(lambda p, r: task.sample(nnx.merge(graphdef, p), r, num, **options))
        return fn(ema, jax.random.key(seed))
