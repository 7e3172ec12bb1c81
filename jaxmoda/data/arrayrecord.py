"""'arrayrecord': labelled PNG images in ArrayRecord shards, and the tool that writes them.

Preparing (once, from a folder of images; labels as for the 'folder' source)::

    python -m jaxmoda.data.arrayrecord --in IMAGE_DIR --out OUT_DIR [--shards N] [--size S]

Layout of OUT_DIR::

    data-00000-of-0000N.array_record  ...   shards, in file-listing order
    metadata.json                            {"format", "class_names", "num_examples", "shards",
                                              "image_size" (or null), "channels"}

Record format (one record per image; no pickle)::

    bytes 0-3   b"JXI1"                       magic / format version
    bytes 4-7   label, uint32 little-endian
    bytes 8-    the image as a PNG file (8-bit RGB, or 8-bit gray with --channels 1)

Shards are written with `group_size:1`, so every record can be read on its own
(needed for a global shuffle); PNG data is already compressed, so no extra
compression is applied.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import io
import json
import logging
import os
import struct
from typing import Sequence

import grain
import numpy as np
from PIL import Image

from jaxmoda.data.config import DataSettings
from jaxmoda.data.errors import ConfigError, DataError, MissingDataError
from jaxmoda.data.folder import list_labelled_images
from jaxmoda.data.processing import SourceParts, make_info
from jaxmoda.errors import cli_main
from jaxmoda.io.images import decode_image_bytes, load_image_file

_LOG = logging.getLogger(__name__)

MAGIC = b"JXI1"
_HEADER = struct.Struct("<4sI")
METADATA_FILE = "metadata.json"
FORMAT_NAME = "jaxmoda-png-records-v1"
SHARD_SUFFIX = ".array_record"
WRITER_OPTIONS = "group_size:1,uncompressed"


def encode_record(image: np.ndarray, label: int) -> bytes:
    """Encodes a uint8 [H, W, C] image (C in 1, 3) and its label as one record."""
    arr = np.asarray(image, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format="PNG")
    return _HEADER.pack(MAGIC, int(label)) + buf.getvalue()


def split_record(record: bytes) -> tuple[bytes, int]:
    """Returns (png_bytes, label) of a record; ValueError if it is not in this format."""
    if len(record) < _HEADER.size or record[:4] != MAGIC:
        raise DataError(
            f"record does not start with {MAGIC!r}; it was not written by python -m jaxmoda.data.arrayrecord.")
    _, label = _HEADER.unpack_from(record)
    return record[_HEADER.size:], label


def shard_name(index: int, count: int) -> str:
    return f"data-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def write_arrayrecord(
    in_dir: str,
    out_dir: str,
    *,
    shards: int = 1,
    size: int | None = None,
    channels: int = 3,
    class_from_subdirs: bool = True,
    progress: bool = True,
) -> dict:
    """Converts a folder of images into ArrayRecord shards plus metadata.json.

    Args:
        in_dir: Folder of images (searched recursively; see the 'folder' source).
        out_dir: Output folder, created if needed.
        shards: Number of shard files; images are split into contiguous runs.
        size: Centre-crop and resize to size x size; None stores images as they are.
        channels: 3 (RGB) or 1 (grayscale).
        class_from_subdirs: Label by first-level sub-folder name.
        progress: Show a tqdm progress bar.

    Returns:
        The metadata dict also written to out_dir/metadata.json.
    """
    from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=import-outside-toplevel
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel

    if shards < 1:
        raise ConfigError(f"--shards must be >= 1, got {shards}.")
    if size is not None and size < 1:
        raise ConfigError(f"--size must be a positive number of pixels, got {size}.")
    items, class_names = list_labelled_images(in_dir, class_from_subdirs)
    shards = min(shards, len(items))
    os.makedirs(out_dir, exist_ok=True)
    bounds = np.linspace(0, len(items), shards + 1).round().astype(int)
    names = [shard_name(i, shards) for i in range(shards)]
    written, skipped = 0, 0
    bar = tqdm(total=len(items), desc=f"writing {out_dir}", unit="img", disable=not progress)
    for shard, name in enumerate(names):
        writer = ArrayRecordWriter(os.path.join(out_dir, name), WRITER_OPTIONS)
        try:
            for path, label in items[bounds[shard]:bounds[shard + 1]]:
                image = load_image_file(path, size, channels)
                if image is None:
                    skipped += 1
                else:
                    writer.write(encode_record(image, label))
                    written += 1
                bar.update(1)
        finally:
            writer.close()
    bar.close()
    if skipped:
        _LOG.warning("Skipped %d unreadable image(s) of %d under %s.", skipped, len(items), in_dir)
    metadata = {
        "format": FORMAT_NAME,
        "class_names": class_names,
        "num_examples": written,
        "shards": names,
        "image_size": size,
        "channels": channels,
    }
    with open(os.path.join(out_dir, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)
    return metadata


def find_shards(path: str) -> list[str]:
    """Resolves data.path (one shard, a folder of shards, or a glob) to sorted shard files."""
    if not path:
        raise MissingDataError("data.path is empty; set it to an ArrayRecord file, folder or glob.")
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*" + SHARD_SUFFIX)))
    elif os.path.isfile(path):
        files = [path]
    else:
        files = sorted(f for f in glob.glob(path) if os.path.isfile(f))
    if not files:
        raise MissingDataError(
            f"no ArrayRecord files at {path!r}; write them with python -m jaxmoda.data.arrayrecord --in DIR --out DIR.")
    return files


def read_metadata(shard_files: Sequence[str]) -> dict:
    """Reads metadata.json from the folder of the first shard."""
    meta_path = os.path.join(os.path.dirname(os.path.abspath(shard_files[0])), METADATA_FILE)
    if not os.path.isfile(meta_path):
        raise MissingDataError(
            f"{meta_path} is missing; ArrayRecord shards must be written by python -m jaxmoda.data.arrayrecord.")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT_NAME:
        raise DataError(f"{meta_path} has format {meta.get('format')!r}, expected {FORMAT_NAME!r}; rewrite the shards.")
    return meta


@dataclasses.dataclass(frozen=True)
class RecordDecoder:
    """decode(record_bytes, rng): PNG record -> (uint8 image, label); None when unreadable."""

    image_size: int
    channels: int

    def __call__(self, record: bytes, rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
        del rng  # Deterministic; augmentation happens in the shared decoder.
        png, label = split_record(record)
        image = decode_image_bytes(png, self.image_size, self.channels, name=f"record with label {label}")
        return None if image is None else (image, label)


def build(settings: DataSettings) -> SourceParts:
    """Builds the 'arrayrecord' source from data.path."""
    files = find_shards(settings.path)
    meta = read_metadata(files)
    source = grain.sources.ArrayRecordDataSource(files)
    if len(files) == len(meta["shards"]) and len(source) != meta["num_examples"]:
        raise DataError(
            f"shards at {settings.path!r} hold {len(source)} records but metadata says {meta['num_examples']}; "
            "rewrite them with python -m jaxmoda.data.arrayrecord.")
    info = make_info(
        class_names=meta["class_names"],
        image_size=settings.image_size,
        channels=settings.channels,
        num_examples=len(source),
    )
    return SourceParts(grain.MapDataset.source(source), RecordDecoder(settings.image_size, settings.channels), info)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; user errors propagate as JaxmodaError (one line via cli_main)."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxmoda.data.arrayrecord",
        description="Write a folder of images as ArrayRecord shards of labelled PNG records.")
    parser.add_argument("--in", dest="in_dir", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--out", dest="out_dir", required=True, help="output folder for shards + metadata.json")
    parser.add_argument("--shards", type=int, default=1, help="number of shard files (default 1)")
    parser.add_argument("--size", type=int, default=None, help="centre-crop and resize to SIZE x SIZE")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3, help="3 = RGB (default), 1 = grayscale")
    parser.add_argument("--no-class-subdirs", action="store_true",
                        help="label every image 0 instead of by first-level sub-folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    meta = write_arrayrecord(
        args.in_dir, args.out_dir, shards=args.shards, size=args.size, channels=args.channels,
        class_from_subdirs=not args.no_class_subdirs)
    print(f"wrote {meta['num_examples']} images, {len(meta['class_names'])} classes, "
          f"{len(meta['shards'])} shard(s) to {args.out_dir}")
    return 0


if __name__ == "__main__":
    cli_main(main)
