"""'idx': MNIST / Fashion-MNIST IDX files (plain or .gz) from a folder.

Debian's `dataset-fashion-mnist` package installs them under
/usr/share/datasets/fashion-mnist. Files looked up for split 'train'
(split 'test' uses the `t10k` prefix)::

    train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]

(the `train-images.idx3-ubyte` spelling is accepted too). The whole split is
parsed into memory once (47 MB for 60k 28x28 images).

IDX layout: two zero bytes, a type byte (0x08 = uint8, ...), a byte with the
number of dimensions, then one big-endian uint32 per dimension, then the data.
"""

from __future__ import annotations

import dataclasses
import gzip
import os

import grain
import numpy as np

from jaxmoda.data.config import DataSettings
from jaxmoda.data.errors import DataError, MissingDataError
from jaxmoda.data.processing import SourceParts, make_info
from jaxmoda.io.images import array_to_pil, center_crop_resize, pil_to_array, to_uint8_pil

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str) -> np.ndarray:
    """Parses one IDX file (gzipped if the name ends in .gz) into a numpy array.

    Args:
        path: The IDX file.

    Returns:
        An array with the file's dimensions and element type.

    Raises:
        ValueError: The header or size is not that of an IDX file.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip raises these for a damaged archive
        raise DataError(f"cannot read IDX file {path}: {e}; re-download or re-extract it.") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DataError(
            f"{path} is not an IDX file (bad magic number {'0x' + data[:4].hex() if data else 'none: empty file'}); "
            "point data.path at MNIST-format *-idx*-ubyte[.gz] files.")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"IDX file {path} is truncated inside its header; re-download it.")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[data[2]])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(
            f"IDX file {path} holds {len(data)} bytes but its header {dims} implies {expected}; re-download it.")
    return np.frombuffer(data, dtype, offset=header).reshape(dims)


def _find(root: str, prefix: str, kind: str, rank: int) -> str:
    candidates = [f"{prefix}-{kind}-idx{rank}-ubyte", f"{prefix}-{kind}.idx{rank}-ubyte"]
    for name in candidates:
        for suffix in ("", ".gz"):
            path = os.path.join(root, name + suffix)
            if os.path.isfile(path):
                return path
    raise MissingDataError(
        f"no {candidates[0]}[.gz] in {root!r}; set data.path to a folder of IDX files (e.g. {DEFAULT_DIR}).")


def load_split(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Loads (images uint8 [N, H, W], labels int64 [N]) of one split."""
    if split not in _SPLIT_PREFIX:
        raise DataError(f"data.split must be 'train' or 'test' for IDX files, got {split!r}.")
    if not os.path.isdir(root):
        raise MissingDataError(f"IDX folder {root!r} does not exist; set data.path (e.g. {DEFAULT_DIR}).")
    prefix = _SPLIT_PREFIX[split]
    images_path = _find(root, prefix, "images", 3)
    labels_path = _find(root, prefix, "labels", 1)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim not in (3, 4) or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{images_path} {images.shape} and {labels_path} {labels.shape} do not pair up as images [N,H,W] "
            "and labels [N].")
    if len(labels) == 0 or labels.min() < 0:
        raise DataError(f"{labels_path} has no labels or negative labels; it is not a label file.")
    return images, labels.astype(np.int64)


class IdxArrays:
    """Random-access (image, label) pairs over in-memory arrays (a grain data source)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])


@dataclasses.dataclass(frozen=True)
class ArrayDecoder:
    """decode((image, label), rng): a stored image array -> (uint8 [S,S,C], label)."""

    image_size: int
    channels: int

    def __call__(self, record: tuple[np.ndarray, int], rng: np.random.Generator) -> tuple[np.ndarray, int]:
        del rng  # Deterministic; augmentation happens in the shared decoder.
        image, label = record
        img = to_uint8_pil(array_to_pil(image), self.channels)
        if img.width <= self.image_size and img.height <= self.image_size:
            # Smaller images (28x28 MNIST at image_size 32) are padded with the black background,
            # not stretched: strokes keep their width and the digit its proportions.
            out = np.zeros((self.image_size, self.image_size, self.channels), np.uint8)
            arr = pil_to_array(img)
            top, left = (self.image_size - img.height) // 2, (self.image_size - img.width) // 2
            out[top:top + img.height, left:left + img.width] = arr
            return out, int(label)
        return pil_to_array(center_crop_resize(img, self.image_size)), int(label)


def _class_names(root: str, num_classes: int) -> list[str]:
    name = os.path.basename(os.path.normpath(root)).lower()
    plain_mnist = "mnist" in name and "fashion" not in name
    if num_classes == len(FASHION_MNIST_CLASSES) and not plain_mnist:
        return list(FASHION_MNIST_CLASSES)
    return [str(i) for i in range(num_classes)]


def build(settings: DataSettings) -> SourceParts:
    """Builds the 'idx' source; data.path defaults to the Debian Fashion-MNIST folder."""
    root = settings.path or DEFAULT_DIR
    images, labels = load_split(root, settings.split)
    info = make_info(
        class_names=_class_names(root, int(labels.max()) + 1),
        image_size=settings.image_size,
        channels=settings.channels,
        num_examples=len(labels),
    )
    records = grain.MapDataset.source(IdxArrays(images, labels))
    return SourceParts(records, ArrayDecoder(settings.image_size, settings.channels), info)
