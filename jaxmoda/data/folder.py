"""'folder': a directory tree of image files (FFHQ-style), searched recursively.

Labels: when images sit in first-level sub-folders (and `class_from_subdirs`
is on), the sorted sub-folder names are the classes; otherwise every image
has label 0. Each image is centre-cropped to a square and resized (see
jaxmoda.io.images for the colour conversions). Files that cannot be decoded
are skipped with a warning and a running count, not raised mid-run.
"""

from __future__ import annotations

import dataclasses
import os

import grain
import numpy as np

from jaxmoda.data.config import DataSettings
from jaxmoda.data.errors import DataError, MissingDataError
from jaxmoda.data.processing import SourceParts, make_info
from jaxmoda.io.images import load_image_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _images_under(root: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
    return found


def list_labelled_images(root: str, class_from_subdirs: bool = True) -> tuple[list[tuple[str, int]], list[str]]:
    """Lists image files under root with their labels, in a fixed (sorted) order.

    Args:
        root: Folder to search recursively.
        class_from_subdirs: Label by first-level sub-folder name.

    Returns:
        ([(path, label), ...], class_names).

    Raises:
        FileNotFoundError: root is missing or holds no image file.
        ValueError: class_from_subdirs is on and images sit both at the top level
            and in sub-folders (their label would be ambiguous).
    """
    if not root:
        raise MissingDataError("data.path is empty; set it to a folder of images for data.source='folder'.")
    if not os.path.isdir(root):
        raise MissingDataError(
            f"image folder {root!r} does not exist; point data.path (or --in) at a folder of images.")
    entries = sorted(os.listdir(root))
    top = [os.path.join(root, e) for e in entries if _is_image(e) and os.path.isfile(os.path.join(root, e))]
    subdirs = [e for e in entries if not e.startswith(".") and os.path.isdir(os.path.join(root, e))]
    per_dir = [(d, _images_under(os.path.join(root, d))) for d in subdirs]
    per_dir = [(d, files) for d, files in per_dir if files]
    if not top and not per_dir:
        raise MissingDataError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found under {root!r}; check data.path (or --in).")
    if not class_from_subdirs or not per_dir:
        files = top + [f for _, files in per_dir for f in files]
        return [(f, 0) for f in files], [os.path.basename(os.path.normpath(root)) or "all"]
    if top:
        raise DataError(
            f"{root!r} has images both at its top level ({len(top)}) and in sub-folders; move them into "
            "sub-folders, or set data.class_from_subdirs=False to give every image label 0.")
    items = [(f, label) for label, (_, files) in enumerate(per_dir) for f in files]
    return items, [d for d, _ in per_dir]


@dataclasses.dataclass(frozen=True)
class FileDecoder:
    """decode((path, label), rng): reads one file; None when it is unreadable."""

    image_size: int
    channels: int

    def __call__(self, record: tuple[str, int], rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
        del rng  # Deterministic; augmentation happens in the shared decoder.
        path, label = record
        image = load_image_file(path, self.image_size, self.channels)
        return None if image is None else (image, int(label))


def build(settings: DataSettings) -> SourceParts:
    """Builds the 'folder' source. num_examples counts files found, before unreadable ones are skipped."""
    items, class_names = list_labelled_images(settings.path, settings.class_from_subdirs)
    info = make_info(
        class_names=class_names,
        image_size=settings.image_size,
        channels=settings.channels,
        num_examples=len(items),
    )
    return SourceParts(grain.MapDataset.source(items), FileDecoder(settings.image_size, settings.channels), info)
