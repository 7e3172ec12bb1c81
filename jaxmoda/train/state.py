"""TrainState: params, optimizer state, EMA params, step and RNG, as one pytree born sharded.

Params are pure dicts (`nnx.to_pure_dict`), so checkpoints, exports and EMA never depend on NNX
internals; the model is rebuilt inside jitted functions with `nnx.merge(graphdef, params)`.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxmoda import parallel
from jaxmoda.config import ConfigDict
from jaxmoda.errors import ConfigError


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 []
    params: Any              # pure dict of the model's nnx.Param values
    opt_state: Any           # optax state
    ema: Any                 # pure dict, same structure as params
    rng: jax.Array           # uint32 [2], the run's base key; steps fold in the step number


def make_optimizer(cfg: ConfigDict) -> tuple[optax.GradientTransformation, Callable]:
    """AdamW (or Adam/SGD) with warmup + constant/cosine schedule and global-norm clipping."""
    lr, total = cfg.learning_rate, max(int(cfg.get("decay_steps", 0)) or 0, 0)
    if cfg.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif cfg.schedule == "cosine":
        if total <= 0:
            raise ConfigError("config.optimizer.schedule='cosine' needs config.optimizer.decay_steps > 0")
        main = optax.cosine_decay_schedule(lr, total)
    else:
        raise ConfigError(f"config.optimizer.schedule={cfg.schedule!r} is unknown; use constant or cosine")
    schedule = main
    if cfg.warmup_steps > 0:
        schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, cfg.warmup_steps), main], [cfg.warmup_steps])
    if cfg.name == "adamw":
        opt = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    elif cfg.name == "adam":
        opt = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif cfg.name == "sgd":
        opt = optax.sgd(schedule, momentum=cfg.b1)
    else:
        raise ConfigError(f"config.optimizer.name={cfg.name!r} is unknown; use adamw, adam or sgd")
    if cfg.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt, schedule


def build_model(build: Callable[[nnx.Rngs], nnx.Module], seed: int = 0) -> nnx.Module:
    """Constructs a model with logical sharding metadata (no eager sharding: shardings come later)."""
    with nnx.use_eager_sharding(False):
        return build(nnx.Rngs(seed))


def abstract_model(build: Callable[[nnx.Rngs], nnx.Module]) -> tuple[Any, Any]:
    """(graphdef, abstract param State) without allocating parameters."""
    with nnx.use_eager_sharding(False):
        model = nnx.eval_shape(lambda: build(nnx.Rngs(0)))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise ValueError("jaxmoda models keep all their state in nnx.Param; found other variables: "
                         f"{list(nnx.to_flat_state(rest).keys())[:5]}")
    return graphdef, params


def _suffix_shardings(tree: Any, param_shardings: Any, param_shapes: Any, default: NamedSharding) -> Any:
    """Gives each leaf of `tree` the sharding of the param whose key path is its longest suffix."""
    by_path = {}
    for (path, sh), shp in zip(jax.tree_util.tree_flatten_with_path(param_shardings)[0], jax.tree.leaves(param_shapes)):
        by_path[tuple(str(k) for k in path)] = (sh, tuple(shp.shape))

    def pick(path, leaf):
        keys = tuple(str(k) for k in path)
        for start in range(len(keys)):
            hit = by_path.get(keys[start:])
            if hit is not None and hit[1] == tuple(leaf.shape):
                return hit[0]
        return default

    return jax.tree_util.tree_map_with_path(pick, tree)


def create_train_state(build: Callable[[nnx.Rngs], nnx.Module], tx: optax.GradientTransformation,
                       mesh: Mesh, rules, seed: int, ema_memory_kind: str = "device") -> tuple[TrainState, TrainState, Any]:
    """Initialises the TrainState directly sharded on `mesh` (one jitted init, no host copy).

    Returns (state, state_shardings, graphdef).
    """
    graphdef, abstract_params = abstract_model(build)
    param_sh = parallel.state_shardings(abstract_params, mesh, rules)
    param_shapes = nnx.to_pure_dict(abstract_params)

    def init() -> TrainState:
        model = build(nnx.Rngs(seed))
        params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          ema=jax.tree.map(jnp.copy, params), rng=jax.random.key_data(jax.random.key(seed)))

    with nnx.use_eager_sharding(False):
        abstract = jax.eval_shape(init)
    shardings = state_shardings_for(abstract, param_sh, param_shapes, mesh, ema_memory_kind)
    with nnx.use_eager_sharding(False):
        state = jax.jit(init, out_shardings=shardings).lower().compile(compiler_options=_init_compiler_options())()
    return state, shardings, graphdef


def _init_compiler_options() -> dict:
    """The initialiser runs once: on CPU, compile it without LLVM's expensive optimisations (4-5x faster to
    compile for conv-heavy models, whose per-parameter RNG code dominates; the bits drawn are the same)."""
    if jax.default_backend() == "cpu":
        return {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    return {}


EMA_MEMORY_KINDS = ("device", "pinned_host")


def check_ema_memory_kind(kind: str, mesh: Mesh) -> None:
    if kind not in EMA_MEMORY_KINDS:
        raise ConfigError(f"config.ema_memory_kind={kind!r} is unknown; use {' or '.join(EMA_MEMORY_KINDS)}")
    device = mesh.devices.flat[0]
    kinds = {m.kind for m in device.addressable_memories()}
    if kind not in kinds:
        raise ConfigError(f"config.ema_memory_kind={kind!r}: {device.platform} devices offer {sorted(kinds)}; "
                          "use 'device'")


def to_device_memory(tree: Any) -> Any:
    """Arrays (or shardings) in another memory space (the host-offloaded EMA) brought to device memory."""
    def one(x):
        if isinstance(x, NamedSharding):
            return x.with_memory_kind("device") if x.memory_kind not in (None, "device") else x
        kind = getattr(getattr(x, "sharding", None), "memory_kind", None)
        return jax.device_put(x, x.sharding.with_memory_kind("device")) if kind not in (None, "device") else x
    return jax.tree.map(one, tree)


def state_shardings_for(abstract: TrainState, param_sh: Any, param_shapes: Any, mesh: Mesh,
                        ema_memory_kind: str = "device") -> TrainState:
    """Shardings of the TrainState: optimizer moments follow their params; `ema_memory_kind='pinned_host'`
    keeps the EMA copy in host memory (read and written once per step; frees its device memory)."""
    rep = NamedSharding(mesh, PartitionSpec())
    ema = param_sh if ema_memory_kind == "device" else jax.tree.map(lambda s: s.with_memory_kind(ema_memory_kind), param_sh)
    return TrainState(
        step=rep, params=param_sh,
        opt_state=_suffix_shardings(abstract.opt_state, param_sh, param_shapes, rep),
        ema=ema, rng=rep)


def abstract_train_state(build, tx, mesh: Mesh, rules, seed: int = 0,
                         ema_memory_kind: str = "device") -> tuple[TrainState, TrainState, Any]:
    """Shape/dtype/sharding tree of the TrainState (for restoring onto a mesh and for AOT compiles)."""
    graphdef, abstract_params = abstract_model(build)
    param_sh = parallel.state_shardings(abstract_params, mesh, rules)
    param_shapes = nnx.to_pure_dict(abstract_params)

    def init():
        params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), param_shapes)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          ema=params, rng=jax.random.key_data(jax.random.key(seed)))

    abstract = jax.eval_shape(init)
    shardings = state_shardings_for(abstract, param_sh, param_shapes, mesh, ema_memory_kind)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    return abstract, shardings, graphdef


def param_count(params: Any) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
