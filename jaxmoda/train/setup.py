"""One place that turns a config into a mesh, a task, a sharded TrainState and its jitted step."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import optax
from jax.sharding import Mesh

from jaxmoda import parallel
from jaxmoda.config import ConfigDict
from jaxmoda.tasks import get_task
from jaxmoda.train.state import TrainState, check_ema_memory_kind, create_train_state, make_optimizer
from jaxmoda.train.step import ShardedStep, train_step_from_config


@dataclasses.dataclass
class Training:
    config: ConfigDict
    mesh: Mesh
    rules: tuple
    task: Any
    tx: optax.GradientTransformation
    schedule: Callable
    state: TrainState
    shardings: TrainState
    graphdef: Any
    step: ShardedStep

    def global_batch(self, local_batch: dict) -> dict:
        return parallel.global_batch(local_batch, self.mesh, self.rules)


def build_training(config: ConfigDict, devices: Sequence[jax.Device] | None = None, *, task=None,
                   donate: bool = True) -> Training:
    """Mesh from `config.mesh` over `devices` (default: all), task, sharded state and jitted step."""
    mesh = parallel.make_mesh(config, devices)
    rules = parallel.rules_of(config)
    task = task or get_task(config)
    tx, schedule = make_optimizer(config.optimizer)
    ema_kind = config.get("ema_memory_kind", "device")
    check_ema_memory_kind(ema_kind, mesh)
    state, shardings, graphdef = create_train_state(task.build_model, tx, mesh, rules, config.seed, ema_kind)
    step = ShardedStep(train_step_from_config(task, graphdef, tx, schedule, config), mesh, rules, shardings,
                       task.example_batch(config.batch_size), donate=donate)
    return Training(config, mesh, rules, task, tx, schedule, state, shardings, graphdef, step)
