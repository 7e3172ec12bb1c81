"""What every data source shares: its parts, per-element randomness, final example form.

A source is split into cheap *records* (an index, a file path, encoded bytes)
and a *decode* function that turns one record into pixels. Keeping them apart
lets the training pipeline shuffle, repeat and shard the cheap records first
and only decode what this process will actually use.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import grain
import numpy as np

# decode(record, rng) -> (uint8 image [S, S, C], int label), or None to skip the record.
DecodeFn = Callable[[Any, np.random.Generator], Optional[tuple[np.ndarray, int]]]


@dataclasses.dataclass(frozen=True)
class SourceParts:
    """One data source, before shuffling and decoding.

    Attributes:
        records: Finite MapDataset of cheap records.
        decode: Picklable callable decode(record, rng) -> (uint8 image, label) or None.
        info: {"num_classes", "image_size", "channels", "num_examples", "class_names"}.
    """

    records: grain.MapDataset
    decode: DecodeFn
    info: dict


def make_info(*, class_names: list[str], image_size: int, channels: int, num_examples: int) -> dict:
    """Builds the info dict every source returns."""
    return {
        "num_classes": len(class_names),
        "image_size": int(image_size),
        "channels": int(channels),
        "num_examples": int(num_examples),
        "class_names": [str(c) for c in class_names],
    }


def element_rng(seed: int, index: int) -> np.random.Generator:
    """Generator for one element, a pure function of (seed, index).

    Keying on the element's global position (not on a thread, worker or process)
    keeps results identical whatever the number of threads, workers or processes.
    """
    return np.random.default_rng((int(seed), int(index)))


def tag_with_index(index: int, record: Any) -> tuple[int, Any]:
    """map_with_index function that remembers a record's global stream position."""
    return index, record


@dataclasses.dataclass(frozen=True)
class ExampleDecoder:
    """Turns (index, record) into {"image": float32 [S,S,C] in [-1,1], "label": int32}.

    Attributes:
        decode: The source's decode function.
        seed: Seed for per-element randomness (crop position, flip).
        random_flip: Flip horizontally with probability 0.5.
        image_size: Expected output side, checked so a source bug fails loudly.
        channels: Expected channel count, checked likewise.
    """

    decode: DecodeFn
    seed: int
    random_flip: bool
    image_size: int
    channels: int

    def __call__(self, tagged: tuple[int, Any]) -> dict | None:
        index, record = tagged
        rng = element_rng(self.seed, index)
        out = self.decode(record, rng)
        if out is None:
            return None  # grain treats None as filtered; to_iter_dataset drops it.
        image, label = out
        expected = (self.image_size, self.image_size, self.channels)
        if image.shape != expected or image.dtype != np.uint8:
            raise AssertionError(f"decoder returned {image.dtype}{image.shape}, expected uint8{expected}.")
        if self.random_flip and rng.random() < 0.5:
            image = image[:, ::-1]
        return {
            "image": image.astype(np.float32) / np.float32(127.5) - np.float32(1.0),
            "label": np.int32(label),
        }
