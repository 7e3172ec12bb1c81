"""A stack of identical blocks: parameters stacked on a leading `layers` axis, run with lax.scan.

Scanning keeps compile time flat in depth, and a remat policy on the scanned body trades compute
for activation memory (config `remat`).
"""

from __future__ import annotations

from typing import Callable

import jax
from flax import nnx

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_all": jax.checkpoint_policies.checkpoint_dots,
}


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
        x, _ = jax.lax.scan(body, x, state)
        return x
