"""The public entry points: one finite dataset of examples, and the training iterator.

Training pipeline (grain Dataset API), per process::

    records (cheap: indices / paths / encoded bytes)
      -> shuffle(seed) -> repeat(None)            global, identical on every process
      -> map_with_index(tag)                      remember the global stream position k
      -> BlockShard(b, process_index, process_count)  this process's rows of each global batch
      -> map(decode + augment, rng = f(seed, k))  the heavy work, only on our share
      -> to_iter_dataset(ReadOptions) -> batch(per_process, drop_remainder=True)
      -> mp_prefetch (when worker_count > 0)

Why shuffle before repeat: grain's ShuffleMapDataset sees the un-wrapped index of
the repeated dataset and seeds each epoch's permutation with seed + epoch, so
every epoch is a different permutation. (repeat -> shuffle would shuffle one
sys.maxsize-long stream, with no epoch boundaries.)

Why rng = f(seed, k): keying augmentation on the global stream position keeps
every element identical however many processes, threads or workers share the
work, and different in each epoch (k grows across epochs).

Why blocks of b = global_batch // process_count: global batch s is stream
positions [s*B, (s+1)*B) and process p reads rows [s*B + p*b, s*B + (p+1)*b), so
the batch that `jax.make_array_from_process_local_data` assembles is the one a
single process would read, row for row, for any process count.

Elements that fail to decode (unreadable files) become None, which grain treats
as filtered out; batches are formed from the remaining elements.
"""

from __future__ import annotations

from typing import Any

import grain

from jaxmoda.data import config as config_lib
from jaxmoda.data.errors import ConfigError, DataError
from jaxmoda.data.processing import ExampleDecoder, SourceParts, tag_with_index


class BlockShard(grain.MapDataset):
    """Process `index` of `count` takes every `count`-th block of `block` consecutive elements."""

    def __init__(self, parent: grain.MapDataset, block: int, index: int, count: int):
        super().__init__(parent)
        self._block, self._index, self._count = block, index, count
        self._length = (len(parent) // (block * count)) * block  # whole global batches only

    def __len__(self) -> int:
        return self._length

    def _parent_index(self, j: int) -> int:
        blocks, row = divmod(j, self._block)
        return (blocks * self._count + self._index) * self._block + row

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self._parent_index(index)]

    def __str__(self) -> str:
        return f"BlockShard(block={self._block}, index={self._index}, count={self._count})"


def build_parts(settings: config_lib.DataSettings) -> SourceParts:
    """Dispatches to the source named by settings.source (imports only that one)."""
    # pylint: disable=import-outside-toplevel
    if settings.source == "patches":
        from jaxmoda.data import patches as module
    elif settings.source == "folder":
        from jaxmoda.data import folder as module
    elif settings.source == "arrayrecord":
        from jaxmoda.data import arrayrecord as module
    elif settings.source == "tfds":
        from jaxmoda.data import tfds_source as module
    else:
        from jaxmoda.data import idx as module
    return module.build(settings)


def _decoder(settings: config_lib.DataSettings, parts: SourceParts, seed: int) -> ExampleDecoder:
    return ExampleDecoder(
        decode=parts.decode,
        seed=int(seed),
        random_flip=settings.random_flip,
        image_size=settings.image_size,
        channels=settings.channels,
    )


def build_source(data_cfg: Any, *, seed: int = 0) -> tuple[grain.MapDataset, dict]:
    """Returns the finite dataset of examples and its info.

    Element i is {"image": float32 [S, S, C] in [-1, 1], "label": int32 scalar},
    a pure function of (seed, i): for 'patches' the cut, and for every source the
    optional flip, come from a generator seeded with (seed, i). Elements whose
    file cannot be decoded are None (`to_iter_dataset()` skips them).

    Args:
        data_cfg: Data ConfigDict (see `default_data_config`); missing fields
            take their defaults.
        seed: Seed for per-element randomness.

    Returns:
        (dataset, info) with info = {"num_classes", "image_size", "channels",
        "num_examples", "class_names"}.
    """
    settings = config_lib.resolve(data_cfg)
    parts = build_parts(settings)
    dataset = parts.records.map_with_index(tag_with_index).map(_decoder(settings, parts, seed))
    return dataset, parts.info


def make_train_iterator(
    data_cfg: Any,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.DatasetIterator:
    """Returns the infinite, deterministic, checkpointable iterator of this process's batches.

    Each batch is {"image": float32 [b, S, S, C] in [-1, 1], "label": int32 [b]}
    with b = global_batch_size // process_count. The iterator supports
    get_state()/set_state() (or grain.checkpoint with Orbax); resuming needs the
    same config, seed and process layout.

    Args:
        data_cfg: Data ConfigDict (see `default_data_config`).
        global_batch_size: Examples per step over all processes.
        seed: Shuffle and augmentation seed, in [0, 2**32).
        process_index: This process, usually jax.process_index().
        process_count: Number of processes, usually jax.process_count().

    Raises:
        ValueError: On an invalid config or a batch size that does not divide.
    """
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ConfigError(
            f"process_index must be in [0, process_count), got process_index={process_index}, "
            f"process_count={process_count}.")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ConfigError(
            f"global_batch_size={global_batch_size} must be a positive multiple of process_count={process_count}; "
            "change the batch size or the number of processes.")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be in [0, 2**32), got {seed}.")
    settings = config_lib.resolve(data_cfg)
    parts = build_parts(settings)
    if len(parts.records) == 0:
        raise DataError(f"data source {settings.source!r} has no examples; check data.path.")

    dataset = (
        parts.records
        .shuffle(seed=seed)
        .repeat(None)
        .map_with_index(tag_with_index)
    )
    dataset = (
        BlockShard(dataset, global_batch_size // process_count, process_index, process_count)
        .map(_decoder(settings, parts, seed))
    )
    read_options = grain.ReadOptions(
        num_threads=settings.num_threads, prefetch_buffer_size=settings.prefetch_buffer_size)
    batched = dataset.to_iter_dataset(read_options).batch(
        global_batch_size // process_count, drop_remainder=True)
    if settings.worker_count > 0:
        batched = batched.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=settings.worker_count, per_worker_buffer_size=settings.worker_buffer_size))
    return iter(batched)
