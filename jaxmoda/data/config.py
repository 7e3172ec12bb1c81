"""Data configuration: the ConfigDict default and its validated, frozen form.

Experiment configs start from `default_data_config()` and override fields. Every
default has a concrete type (no None) so that ml_collections can type-check
command-line overrides such as `--config.data.image_size=64`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from jaxmoda.data.errors import ConfigError

SOURCES = ("patches", "folder", "arrayrecord", "tfds", "idx")

# Colour photographs bundled in the scikit-image wheel (no download), plus one
# grayscale photo (camera) that becomes RGB; each is one class.
DEFAULT_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle_left",
    "camera",
)


def default_data_config() -> ml_collections.ConfigDict:
    """Returns the data ConfigDict with every field and its default.

    Fields:
        source: One of 'patches', 'folder', 'arrayrecord', 'tfds', 'idx'.
        image_size: Output side in pixels (images are square).
        channels: 3 (RGB) or 1 (grayscale).
        path: Image folder ('folder'); ArrayRecord file, folder or glob
            ('arrayrecord'); folder of IDX files ('idx'); TFDS data_dir ('tfds',
            '' for the TFDS default).
        tfds_name: TFDS dataset name, e.g. 'cifar10' ('tfds' only).
        split: 'train' or 'test' for 'idx'; any TFDS split for 'tfds'.
        num_examples: Virtual length of the 'patches' dataset (one epoch).
        photos: scikit-image photo names for 'patches'; class i = photos[i].
        patch_scale: (min, max) patch side as a fraction of the photo's shorter side.
        random_flip: Random horizontal flip (probability 0.5).
        class_from_subdirs: 'folder': label images by first-level sub-folder.
            Set False for layouts whose sub-folders are just chunks (FFHQ's
            00000/, 01000/, ...), which would otherwise become classes.
        worker_count: >0 runs decoding in that many grain worker processes.
        worker_buffer_size: Batches buffered per worker process.
        num_threads: Reader threads per process (grain ReadOptions).
        prefetch_buffer_size: Elements read ahead per process (grain ReadOptions).
    """
    return ml_collections.ConfigDict({
        "source": "patches",
        "image_size": 32,
        "channels": 3,
        "path": "",
        "tfds_name": "",
        "split": "train",
        "num_examples": 100_000,
        "photos": DEFAULT_PHOTOS,
        "patch_scale": (0.15, 0.5),
        "random_flip": True,
        "class_from_subdirs": True,
        "worker_count": 0,
        "worker_buffer_size": 1,
        "num_threads": 2,
        "prefetch_buffer_size": 32,
    })


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Validated copy of the data config; picklable, so it can go to worker processes."""

    source: str
    image_size: int
    channels: int
    path: str
    tfds_name: str
    split: str
    num_examples: int
    photos: tuple[str, ...]
    patch_scale: tuple[float, float]
    random_flip: bool
    class_from_subdirs: bool
    worker_count: int
    worker_buffer_size: int
    num_threads: int
    prefetch_buffer_size: int


def _as_dict(data_cfg: Any) -> dict[str, Any]:
    if isinstance(data_cfg, ml_collections.ConfigDict):
        return data_cfg.to_dict()
    if isinstance(data_cfg, dict):
        return dict(data_cfg)
    raise ConfigError(f"data config must be an ml_collections.ConfigDict or dict, got {type(data_cfg).__name__}.")


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"data.{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def resolve(data_cfg: Any) -> DataSettings:
    """Fills missing fields from the defaults and validates every value.

    Args:
        data_cfg: A ConfigDict (or dict) with any subset of the default fields.

    Returns:
        A frozen DataSettings.

    Raises:
        ValueError: On an unknown field or an invalid value, naming the field.
    """
    values = default_data_config().to_dict()
    given = _as_dict(data_cfg)
    unknown = sorted(set(given) - set(values))
    if unknown:
        raise ConfigError(f"unknown data config field(s) {unknown}; valid fields are {sorted(values)}.")
    values.update(given)

    if values["source"] not in SOURCES:
        raise ConfigError(f"data.source must be one of {SOURCES}, got {values['source']!r}.")
    _positive_int("image_size", values["image_size"])
    if values["channels"] not in (1, 3):
        raise ConfigError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {values['channels']!r}.")
    _positive_int("num_examples", values["num_examples"])
    _positive_int("worker_count", values["worker_count"], minimum=0)
    _positive_int("worker_buffer_size", values["worker_buffer_size"])
    _positive_int("num_threads", values["num_threads"], minimum=0)
    _positive_int("prefetch_buffer_size", values["prefetch_buffer_size"], minimum=0)

    photos = values["photos"]
    if isinstance(photos, str):
        photos = tuple(p.strip() for p in photos.split(",") if p.strip())
    values["photos"] = tuple(photos)
    if values["source"] == "patches" and not values["photos"]:
        raise ConfigError("data.photos is empty; name at least one scikit-image photo, e.g. ('astronaut',).")

    scale = tuple(float(s) for s in values["patch_scale"])
    if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ConfigError(
            f"data.patch_scale must be (min, max) with 0 < min <= max <= 1, got {values['patch_scale']!r}.")
    values["patch_scale"] = scale
    for name in ("path", "tfds_name", "split"):
        values[name] = str(values[name])
    values["random_flip"] = bool(values["random_flip"])
    values["class_from_subdirs"] = bool(values["class_from_subdirs"])
    return DataSettings(**values)
