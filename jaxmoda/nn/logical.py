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


def logical_to_spec(names: LogicalAxes, rules: Sequence[tuple[str, object]], mesh: Mesh,
                    shape: Sequence[int] | None = None) -> PartitionSpec:
    """Maps logical axis names to a PartitionSpec.

    Each logical name takes the mesh axes its rule lists, skipping axes already used by an earlier
    dimension. When `shape` is given, mesh axes that do not divide the dimension are dropped (that
    dimension stays replicated over them), so one rule table works for every model size.
    """
    table = {}
    for name, axes in rules:
        table.setdefault(name, axes)
    used: set[str] = set()
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
            if shape is not None and shape[i] % (size * n):
                continue
            chosen.append(axis)
            size *= n
        used.update(chosen)
        spec.append(None if not chosen else chosen[0] if len(chosen) == 1 else tuple(chosen))
    return PartitionSpec(*spec)


def constrain(x: jax.Array, names: LogicalAxes) -> jax.Array:
    """`with_sharding_constraint` by logical names; the identity when no rules are active."""
    ctx = current_rules()
    if ctx is None:
        return x
    mesh, rules = ctx
    spec = logical_to_spec(names, rules, mesh, x.shape)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
