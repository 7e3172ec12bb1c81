"""A stack of identical blocks: parameters stacked on a leading `layers` axis, run with lax.scan.

Scanning keeps compile time flat in depth, and a remat policy on the scanned body trades compute
for activation memory (config `remat`).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

import jax
from flax import nnx

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_all": jax.checkpoint_policies.checkpoint_dots,
}


_UNROLL = contextvars.ContextVar("jaxmoda_unroll_stacks", default=False)


@contextlib.contextmanager
def unrolled() -> Iterator[None]:
    """Traces every scan over layers (and microbatches) fully unrolled; same math. XLA's cost analysis
    counts a loop body once rather than once per iteration, so FLOP counting lowers inside this context."""
    token = _UNROLL.set(True)
    try:
        yield
    finally:
        _UNROLL.reset(token)


def is_unrolled() -> bool:
    return _UNROLL.get()


_SCAN_LAYERS = contextvars.ContextVar("jaxmoda_scan_layers", default=True)


@contextlib.contextmanager
def layer_loop(scan: bool) -> Iterator[None]:
    """Traces block stacks as a scan (compile time flat in depth) or unrolled (`scan=False`: XLA sees
    every layer and may overlap one layer's collectives with another's compute; compiles longer).
    Parameters stay stacked either way, so checkpoints do not change. Config key `scan_layers`."""
    token = _SCAN_LAYERS.set(scan)
    try:
        yield
    finally:
        _SCAN_LAYERS.reset(token)


class BlockStack(nnx.Module):
    """`depth` copies of `make_block(rngs)` with stacked parameters; call(x, *args) scans over them."""

    def __init__(self, make_block: Callable[[nnx.Rngs], nnx.Module], depth: int, *, remat: str = "none",
                 rngs: nnx.Rngs):
        if remat not in REMAT_POLICIES:
            raise ValueError(f"remat policy {remat!r} is unknown; choose one of {', '.join(REMAT_POLICIES)}")
        self.depth, self.remat = depth, remat

        @nnx.split_rngs(splits=depth)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def create(r: nnx.Rngs):
            return make_block(r)

        self.blocks = create(rngs)

    def __call__(self, x: jax.Array, *args, **kwargs) -> jax.Array:
        graphdef, state = nnx.split(self.blocks)

        def body(h, layer_state):
            block = nnx.merge(graphdef, layer_state)
            return block(h, *args, **kwargs), None

        if self.remat != "none":
            body = jax.checkpoint(body, policy=REMAT_POLICIES[self.remat], prevent_cse=False)
        unroll = _UNROLL.get() or not _SCAN_LAYERS.get()
        x, _ = jax.lax.scan(body, x, state, unroll=self.depth if unroll else 1)
        return x
