"""'tfds': a TensorFlow Datasets dataset read through `tfds.data_source` (no TensorFlow needed).

`tfds.data_source` reads only datasets prepared in ArrayRecord format
(`tfds build --file_format=array_record`, or copied into data.path). It
returns decoded examples; the 'image' feature is used, and the 'label'
feature when present (otherwise every label is 0). tensorflow_datasets is an
optional extra, imported only when this source is used.
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from jaxmoda.data.config import DataSettings
from jaxmoda.data.errors import ConfigError, DataError, MissingExtraError
from jaxmoda.data.processing import SourceParts, make_info
from jaxmoda.io.images import array_to_pil, center_crop_resize, pil_to_array, to_uint8_pil


def import_tfds():
    """Imports tensorflow_datasets, or raises one line saying how to install it."""
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise MissingExtraError(
            "data.source='tfds' needs tensorflow-datasets; install it with: pip install jaxmoda[tfds]") from e
    return tfds


@dataclasses.dataclass(frozen=True)
class TfdsDecoder:
    """decode(example, rng): a decoded TFDS example dict -> (uint8 [S,S,C], label)."""

    image_size: int
    channels: int
    has_label: bool

    def __call__(self, example: dict, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        del rng  # Deterministic; augmentation happens in the shared decoder.
        img = center_crop_resize(to_uint8_pil(array_to_pil(example["image"]), self.channels), self.image_size)
        label = int(example["label"]) if self.has_label else 0
        return pil_to_array(img), label


def build(settings: DataSettings) -> SourceParts:
    """Builds the 'tfds' source from data.tfds_name, data.split and data.path (data_dir)."""
    if not settings.tfds_name:
        raise ConfigError("data.tfds_name is empty; set it to a TFDS dataset name such as 'cifar10'.")
    tfds = import_tfds()
    data_dir = settings.path or None
    try:
        source = tfds.data_source(settings.tfds_name, split=settings.split, data_dir=data_dir)
    except Exception as e:  # tfds raises many types (DatasetNotFoundError, NotImplementedError, ...)
        raise DataError(
            f"cannot open TFDS dataset {settings.tfds_name!r} split {settings.split!r} "
            f"(data_dir={data_dir or 'TFDS default'}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
            "prepare it in ArrayRecord format (tfds build --file_format=array_record) or fix data.path.") from e

    features = source.dataset_info.features
    keys = list(features.keys())
    if "image" not in keys:
        raise DataError(f"TFDS dataset {settings.tfds_name!r} has no 'image' feature (features: {keys}).")
    has_label = "label" in keys
    label_feature = features["label"] if has_label else None
    names = list(getattr(label_feature, "names", None) or [])
    if not names:
        num_classes = int(getattr(label_feature, "num_classes", None) or 1)
        names = [str(i) for i in range(num_classes)]
    info = make_info(
        class_names=names,
        image_size=settings.image_size,
        channels=settings.channels,
        num_examples=len(source),
    )
    decoder = TfdsDecoder(settings.image_size, settings.channels, has_label)
    return SourceParts(grain.MapDataset.source(source), decoder, info)
