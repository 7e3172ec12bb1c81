"""Batches that are a pure function of (seed, step): every process draws the same global batch and
keeps its own rows, so shapes and contents agree across hosts without communication."""

from __future__ import annotations

from typing import Callable


def process_rows(global_batch: int, process_index: int, process_count: int) -> slice:
    """This process's rows of a global batch."""
    local = global_batch // process_count
    return slice(process_index * local, (process_index + 1) * local)


def step_iterator(make_batch: Callable[[int], dict], *, num_threads: int = 2, prefetch: int = 4):
    """Infinite, checkpointable grain iterator yielding make_batch(0), make_batch(1), ..."""
    import grain
    ds = grain.MapDataset.range(0, 2 ** 62).map(make_batch)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)))
