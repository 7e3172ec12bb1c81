"""Logical axis names for activations, resolved against a mesh set by the caller.

Models call `constrain(x, ("act_batch", "act_tokens", "act_embed"))` and never see a mesh. The
training code enters `axis_rules(mesh, rules)` around tracing; outside it `constrain` is the identity,
so the same model runs unsharded in a notebook.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

LogicalAxes = Sequence[str | None]

_CONTEXT = threading.local()


@contextlib.contextmanager
def axis_rules(mesh: Mesh, rules: Sequence[tuple[str, object]]) -> Iterator[None]:
    """Makes `constrain` resolve logical names with `rules` on `mesh` inside the block."""
    previous = getattr(_CONTEXT, "value", None)
    _CONTEXT.value = (mesh, tuple(rules))
    try:
        yield
    finally:
        _CONTEXT.value = previous


def current_rules() -> tuple[Mesh, tuple] | None:
    return getattr(_CONTEXT, "value", None)


# Logical dimensions a displaced mesh axis must not move to (scanned layer stacks are sliced per step).
UNMOVABLE = frozenset({"layers"})


def logical_to_spec(names: LogicalAxes, rules: Sequence[tuple[str, object]], mesh: Mesh,
                    shape: Sequence[int] | None = None, *, move_dropped: bool = False) -> PartitionSpec:
    """Maps logical axis names to a PartitionSpec.

    Each logical name takes the mesh axes its rule lists, skipping axes already used by an earlier
    dimension. When `shape` is given, mesh axes that do not divide the dimension are dropped from it
    (it stays replicated over them), so one rule table works for every model size and mesh; with
    `move_dropped` (parameters) such an axis goes instead to the largest other unsharded dimension it
    divides.
    """
    table = {}
    for name, axes in rules:
        table.setdefault(name, axes)
    used: set[str] = set()
    dropped: list[str] = []
    spec = []
    for i, name in enumerate(names):
        if name is None:
            spec.append(None)
            continue
        axes = table.get(name)
        if axes is None:
            spec.append(None)
            continue
        axes = (axes,) if isinstance(axes, str) else tuple(axes)
        chosen = []
        size = 1
        for axis in axes:
            if axis in used or axis not in mesh.shape:
                continue
            n = mesh.shape[axis]
            if n == 1:
                continue  # a size-1 axis shards nothing; leaving it out keeps the dimension free
            if shape is not None and shape[i] % (size * n):
                dropped.append(axis)
                continue
            chosen.append(axis)
            size *= n
        used.update(chosen)
        spec.append(None if not chosen else chosen[0] if len(chosen) == 1 else tuple(chosen))
    # A mesh axis its own dimension could not take moves to the largest other free dimension it divides
    # (never a stacked-layers one), so e.g. width 1152 on a 256-way fsdp mesh still shards the matrix.
    for axis in dropped:
        if axis in used or shape is None or not move_dropped:
            continue
        n = mesh.shape[axis]
        free = [j for j, name in enumerate(names) if spec[j] is None and name not in UNMOVABLE and shape[j] % n == 0]
        if free:
            j = max(free, key=lambda k: shape[k])
            spec[j] = axis
            used.add(axis)
    return PartitionSpec(*spec)


def constrain(x: jax.Array, names: LogicalAxes) -> jax.Array:
    """`with_sharding_constraint` by logical names; the identity when no rules are active."""
    ctx = current_rules()
    if ctx is None:
        return x
    mesh, rules = ctx
    spec = logical_to_spec(names, rules, mesh, x.shape)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
