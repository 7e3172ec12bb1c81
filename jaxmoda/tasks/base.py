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


DTYPES = {"float32": "float32", "bfloat16": "bfloat16"}


def compute_setup(arch, objective_cfg, key: str = "model"):
    """(dtype, param_dtype, objective) of a transformer config group `arch` (fields dtype, param_dtype,
    attention), checked with one-line ConfigErrors naming `config.<key>.<field>`."""
    import jax.numpy as jnp

    from jaxmoda.errors import ConfigError
    from jaxmoda.flow import make_objective
    from jaxmoda.nn.attention import check_implementation
    out = []
    for field in ("dtype", "param_dtype"):
        name = arch[field]
        if name not in DTYPES:
            raise ConfigError(f"config.{key}.{field}={name!r} is unknown; use float32 or bfloat16")
        out.append(jnp.dtype(DTYPES[name]))
    try:
        check_implementation(arch.attention, out[0])
        objective = make_objective(objective_cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return out[0], out[1], objective
