"""The interface every task implements (see jaxmoda/tasks/__init__.py)."""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import jax
import numpy as np
from flax import nnx


class Task(Protocol):
    config: Any

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        """Constructs the model (parameters carry logical axis names)."""

    def loss(self, model: nnx.Module, batch: dict, rng: jax.Array, step: jax.Array) -> tuple[jax.Array, dict]:
        """Scalar training loss and scalar metrics for one global batch (pure, jit-able); `step` is the
        optimizer step (int32 []) for terms that are scheduled."""

    def sample(self, model: nnx.Module, rng: jax.Array, num: int, **options) -> jax.Array:
        """Generates `num` outputs (images in [-1, 1] for image tasks); pure, jit-able."""

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        """A batch of the right shapes and dtypes (for compiling, benchmarks and tests)."""

    def data_iterator(self, process_index: int, process_count: int) -> Iterator[dict[str, np.ndarray]]:
        """This process's slice of each global batch; a checkpointable grain iterator."""
