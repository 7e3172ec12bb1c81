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
from jaxmoda.nn import logical
from jaxmoda.nn.logical import axis_rules
from jaxmoda.nn.stack import is_unrolled, layer_loop
from jaxmoda.train.state import TrainState, to_device_memory

# loss(model, batch, rng, step) -> (scalar loss, scalar metrics); `step` (int32 []) lets a task
# schedule terms (e.g. a discriminator that starts at some step) inside the one jitted step.
LossFn = Callable[[nnx.Module, dict, jax.Array, jax.Array], tuple[jax.Array, dict]]


def ema_decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """EMA decay; with warmup it is min(decay, (1 + step) / (10 + step)) so short runs average sensibly."""
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    s = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + s) / (10.0 + s))


def _split_microbatches(batch: dict, k: int) -> dict:
    """[B, ...] -> [k, B/k, ...] with microbatch i = rows i, i+k, i+2k, ...

    Taking strided rows keeps every microbatch's rows on the devices that already hold them (the
    batch axis is sharded in contiguous blocks), so the split moves no data.
    """
    def one(x):
        b = x.shape[0]
        if b % k:
            raise ValueError(f"batch of {b} does not split into {k} microbatches; make batch_size a multiple of microbatches")
        y = jnp.swapaxes(x.reshape((b // k, k) + x.shape[1:]), 0, 1)
        return logical.constrain(y, (None, "act_batch") + (None,) * (x.ndim - 1))
    return jax.tree.map(one, batch)


def accumulate_gradients(objective: Callable, params: Any, batch: dict, rng: jax.Array, microbatches: int):
    """value_and_grad of `objective(params, batch, rng)`, averaged over `microbatches` sequential slices.

    Gradient accumulation bounds activation memory (and, on CPUs, keeps activations in cache); the
    result is the mean over microbatches, i.e. the full-batch mean loss for equal slices.
    """
    grad_fn = jax.value_and_grad(objective, has_aux=True)
    if microbatches == 1:
        return grad_fn(params, batch, rng)
    mbs = _split_microbatches(batch, microbatches)

    def body(carry, xs):
        i, mb = xs
        (loss, metrics), grads = grad_fn(params, mb, jax.random.fold_in(rng, i))
        acc = jax.tree.map(jnp.add, carry, (loss, metrics, grads))
        return acc, None

    first = jax.tree.map(lambda x: x[0], mbs)
    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda: grad_fn(params, first, rng)))
    zeros = (zeros[0][0], zeros[0][1], zeros[1])
    (loss, metrics, grads), _ = jax.lax.scan(body, zeros, (jnp.arange(microbatches), mbs),
                                             unroll=microbatches if is_unrolled() else 1)
    scale = 1.0 / microbatches
    return (loss * scale, jax.tree.map(lambda m: m * scale, metrics)), jax.tree.map(lambda g: g * scale, grads)


def make_train_step(loss_fn: LossFn, graphdef: Any, tx: optax.GradientTransformation, schedule: Callable,
                    *, ema_decay: float, ema_warmup: bool, microbatches: int = 1
                    ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Returns the pure `train_step(state, batch) -> (state, metrics)`."""

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

        def objective(params, batch, rng):
            return loss_fn(nnx.merge(graphdef, params), batch, rng, state.step)

        (loss, metrics), grads = accumulate_gradients(objective, state.params, batch, rng, microbatches)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        d = ema_decay_at(state.step, ema_decay, ema_warmup)
        ema = jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), state.ema, params)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads),
                       learning_rate=jnp.asarray(schedule(state.step), jnp.float32))
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema=ema), metrics

    return train_step


def train_step_from_config(task, graphdef: Any, tx: optax.GradientTransformation, schedule: Callable, config):
    """`make_train_step` with the EMA, microbatch and layer-loop settings of a training config."""
    step = make_train_step(task.loss, graphdef, tx, schedule, ema_decay=config.ema_decay,
                           ema_warmup=config.ema_warmup, microbatches=config.get("microbatches", 1))
    if config.get("scan_layers", True):
        return step

    def unrolled_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        with layer_loop(scan=False):
            return step(state, batch)
    return unrolled_step


def make_eval_step(loss_fn: LossFn, graphdef: Any, use_ema: bool = True) -> Callable[[TrainState, dict, jax.Array], dict]:
    """Returns `eval_step(state, batch, rng) -> metrics` on the EMA (or raw) params."""

    def eval_step(state: TrainState, batch: dict, rng: jax.Array) -> dict:
        model = nnx.merge(graphdef, state.ema if use_ema else state.params)
        loss, metrics = loss_fn(model, batch, rng, state.step)
        return dict(metrics, loss=loss)

    return eval_step


class ShardedStep:
    """A step jitted with explicit in/out shardings, donated state, traced under the axis rules."""

    def __init__(self, fn: Callable, mesh: Mesh, rules, state_shardings: TrainState, batch_example: dict,
                 donate: bool = True):
        self.mesh, self.rules = mesh, rules
        batch_sh = {k: parallel.batch_sharding(mesh, rules, len(v.shape)) for k, v in batch_example.items()}
        rep = NamedSharding(mesh, PartitionSpec())
        ema_device = to_device_memory(state_shardings.ema)
        if ema_device != state_shardings.ema:  # host-offloaded EMA: in to device memory, out back to the host
            inner = fn

            def fn(state, batch):
                ema = jax.tree.map(jax.device_put, state.ema, ema_device)
                return inner(state.replace(ema=ema), batch)
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
