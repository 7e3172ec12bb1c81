"""Pure train and eval steps over a TrainState, jitted once with explicit shardings.

A task supplies `loss(model, batch, rng) -> (scalar, metrics)`; everything else (gradients, optimizer,
EMA, RNG folding, metrics) is here, shared by every model family.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxmoda import parallel
from jaxmoda.nn.logical import axis_rules
from jaxmoda.train.state import TrainState

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]


def ema_decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """EMA decay; with warmup it is min(decay, (1 + step) / (10 + step)) so short runs average sensibly."""
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    s = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + s) / (10.0 + s))


def make_train_step(loss_fn: LossFn, graphdef: Any, tx: optax.GradientTransformation, schedule: Callable,
                    *, ema_decay: float, ema_warmup: bool) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Returns the pure `train_step(state, batch) -> (state, metrics)`."""

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

        def objective(params):
            model = nnx.merge(graphdef, params)
            return loss_fn(model, batch, rng)

        (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        d = ema_decay_at(state.step, ema_decay, ema_warmup)
        ema = jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), state.ema, params)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads),
                       learning_rate=jnp.asarray(schedule(state.step), jnp.float32))
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema=ema), metrics

    return train_step


def make_eval_step(loss_fn: LossFn, graphdef: Any, use_ema: bool = True) -> Callable[[TrainState, dict, jax.Array], dict]:
    """Returns `eval_step(state, batch, rng) -> metrics` on the EMA (or raw) params."""

    def eval_step(state: TrainState, batch: dict, rng: jax.Array) -> dict:
        model = nnx.merge(graphdef, state.ema if use_ema else state.params)
        loss, metrics = loss_fn(model, batch, rng)
        return dict(metrics, loss=loss)

    return eval_step


class ShardedStep:
    """A step jitted with explicit in/out shardings, donated state, traced under the axis rules."""

    def __init__(self, fn: Callable, mesh: Mesh, rules, state_shardings: TrainState, batch_example: dict,
                 donate: bool = True):
        self.mesh, self.rules = mesh, rules
        batch_sh = {k: parallel.batch_sharding(mesh, rules, len(v.shape)) for k, v in batch_example.items()}
        rep = NamedSharding(mesh, PartitionSpec())
        self.jitted = jax.jit(fn, in_shardings=(state_shardings, batch_sh), out_shardings=(state_shardings, rep),
                              donate_argnums=(0,) if donate else ())

    def __call__(self, state, batch):
        with axis_rules(self.mesh, self.rules):
            return self.jitted(state, batch)

    def lower(self, state, batch):
        with axis_rules(self.mesh, self.rules):
            return self.jitted.lower(state, batch)

    def cache_size(self) -> int:
        return self.jitted._cache_size()
