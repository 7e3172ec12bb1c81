"""Reading image files into uint8 arrays and writing sample grids.

Every image that enters jaxmoda goes through `to_uint8_pil` so that all data
sources agree on one set of conversions:

* 16-bit images are reduced to 8 bits by dividing by 257 (65535 -> 255).
* Transparent images (RGBA, LA, palette with transparency) are composited on a
  white background, not alpha-dropped, so that transparent regions do not
  turn into whatever colour happened to be stored under them (often black).
* Grayscale becomes RGB by repeating the channel; RGB becomes grayscale with
  PIL's ITU-R 601-2 luma transform when one channel is asked for.
* Cropping is centred on the shorter side; resizing uses PIL's bicubic filter,
  whose support widens with the downscale factor, so it is antialiased.
"""

from __future__ import annotations

import io
import logging
import math
import os
from typing import Any

import numpy as np
from PIL import Image

_LOG = logging.getLogger(__name__)

# PIL errors that mean "this file is not a usable image"; anything else is a bug.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)

_WARN_FIRST = 5


class _SkipReporter:
    """Counts unreadable images and logs without flooding the log.

    The first few files are named individually; after that only the running count
    is logged at growing intervals. The count is per process (each grain worker
    process keeps its own).
    """

    # This many failures in a row means the dataset itself is unreadable (a wrong path, a folder of
    # non-images): stop with one clear error instead of skipping forever.
    max_consecutive = 1000

    def __init__(self) -> None:
        self.count = 0
        self.consecutive = 0

    def ok(self) -> None:
        self.consecutive = 0

    def report(self, path: str, error: BaseException) -> None:
        self.count += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            from jaxmoda.errors import DataError
            self.consecutive = 0
            raise DataError(
                f"{self.max_consecutive} images in a row could not be decoded (latest {path}: "
                f"{type(error).__name__}: {error}); check that data.path points at readable images")
        n = self.count
        if n <= _WARN_FIRST:
            _LOG.warning(
                "Skipping unreadable image %s (%s: %s); %d skipped so far in this process.",
                path, type(error).__name__, error, n)
        elif n & (n - 1) == 0 or n % 1000 == 0:  # powers of two, then every 1000
            _LOG.warning("%d unreadable images skipped so far in this process (latest: %s).", n, path)


SKIPPED = _SkipReporter()


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_uint8_pil(img: Image.Image, channels: int) -> Image.Image:
    """Converts any PIL image to an 8-bit 'RGB' (channels=3) or 'L' (channels=1) image.

    Args:
        img: A PIL image of any mode.
        channels: 3 for RGB, 1 for grayscale.

    Returns:
        A PIL image in mode 'RGB' or 'L'.
    """
    _check_channels(channels)
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            # Float images carry no standard range; treat them as [0, 1] if they fit, else 8-bit.
            scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
            arr8 = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        else:
            arr8 = np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr8, mode="L")
    elif mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif mode == "1":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        img = _composite_on_white(img)
    target = "RGB" if channels == 3 else "L"
    if img.mode != target:
        img = img.convert(target)
    return img


def array_to_pil(array: np.ndarray) -> Image.Image:
    """Wraps an image array ([H, W], [H, W, 1|3|4]; bool, uint8, uint16 or float in [0, 1]) as PIL."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"expected an image array [H, W] or [H, W, 1|3|4], got shape {arr.shape}.")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def center_crop_resize(img: Image.Image, image_size: int | None) -> Image.Image:
    """Crops the centred square of the shorter side and resizes it to image_size.

    Args:
        img: A PIL image.
        image_size: Output side in pixels; None keeps the image unchanged.

    Returns:
        The square, resized image (or `img` itself when image_size is None).
    """
    if image_size is None:
        return img
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    if (w, h) == (image_size, image_size):
        return img
    box = (left, top, left + side, top + side)
    return img.resize((image_size, image_size), Image.Resampling.BICUBIC, box=box)


def pil_to_array(img: Image.Image) -> np.ndarray:
    """Returns an 'RGB' or 'L' PIL image as a uint8 [H, W, C] array."""
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def load_image_file(path: str | os.PathLike, image_size: int | None, channels: int = 3) -> np.ndarray | None:
    """Reads an image file as a uint8 [S, S, C] array, or None if it cannot be decoded.

    Unreadable files (corrupt, truncated, not an image) are reported through the
    module's skip counter (a warning naming the first few, then a running count)
    rather than raised, so one bad file cannot stop a long run.

    Args:
        path: Image file (any format PIL reads: PNG, JPEG, BMP, WebP, ...).
        image_size: Centre-crop to a square and resize to this side; None keeps
            the original size and aspect ratio.
        channels: 3 for RGB, 1 for grayscale.

    Returns:
        uint8 array [image_size, image_size, channels] (or [H, W, channels] when
        image_size is None), or None for an unreadable file.
    """
    _check_channels(channels)
    try:
        with Image.open(path) as img:
            img.load()  # Decode now so truncation errors surface here, not later.
            out = pil_to_array(center_crop_resize(to_uint8_pil(img, channels), image_size))
        SKIPPED.ok()
        return out
    except _DECODE_ERRORS as e:
        SKIPPED.report(os.fspath(path), e)
        return None


def decode_image_bytes(data: bytes, image_size: int | None, channels: int, name: str) -> np.ndarray | None:
    """Like `load_image_file` but for encoded bytes; `name` identifies them in warnings."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            out = pil_to_array(center_crop_resize(to_uint8_pil(img, channels), image_size))
        SKIPPED.ok()
        return out
    except _DECODE_ERRORS as e:
        SKIPPED.report(name, e)
        return None


def to_uint8_images(images: Any) -> np.ndarray:
    """Maps float images in [-1, 1] to uint8 [0, 255] (values outside are clipped)."""
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def save_image_grid(
    images: Any,
    path: str | os.PathLike,
    nrow: int | None = None,
    *,
    border: int = 2,
    border_value: int = 255,
) -> tuple[int, int]:
    """Writes images in [-1, 1] as one PNG grid with a border around every tile.

    Args:
        images: Array-like [N, H, W, C] with C in {1, 3}, values in [-1, 1]
            (a jax.Array is fine; it is copied to host).
        path: Output file; parent folders are created.
        nrow: Images per row; default ceil(sqrt(N)).
        border: Border width in pixels, between tiles and around the edge.
        border_value: Border gray level in [0, 255] (default white).

    Returns:
        The (width, height) of the written PNG.
    """
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(
            f"save_image_grid needs images [N, H, W, C] with N >= 1 and C in (1, 3), got shape {x.shape}.")
    n, h, w, c = x.shape
    ncol = int(nrow) if nrow else int(math.ceil(math.sqrt(n)))
    if ncol < 1:
        raise ValueError(f"nrow must be a positive number of images per row, got {nrow!r}.")
    ncol = min(ncol, n)
    nrows = int(math.ceil(n / ncol))
    grid = np.full((nrows * (h + border) + border, ncol * (w + border) + border, c), border_value, np.uint8)
    tiles = to_uint8_images(x)
    for i in range(n):
        r, q = divmod(i, ncol)
        y0, x0 = border + r * (h + border), border + q * (w + border)
        grid[y0:y0 + h, x0:x0 + w] = tiles[i]
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path, format="PNG")
    return grid.shape[1], grid.shape[0]


def region_overlay(images: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Images [N,H,W,3] in [-1,1] with the regions marked in `regions` [N,h,w] (nonzero, e.g. the fine
    regions of a grain map) tinted and the region grid drawn; same range."""
    images = np.asarray(images, np.float32)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    h, w = images.shape[1:3]
    gh, gw = np.asarray(regions).shape[1:]
    sy, sx = h // gh, w // gw
    marked = np.repeat(np.repeat(np.asarray(regions).astype(bool), sy, axis=1), sx, axis=2)[..., None]
    tint = np.array([1.0, 0.45, -0.6], np.float32)
    out = np.where(marked, 0.55 * images + 0.45 * tint, images)
    out[:, ::sy, :, :] = -1.0
    out[:, :, ::sx, :] = -1.0
    return out


def save_samples(outputs: Any, path: str | os.PathLike, nrow: int | None = None) -> list[str]:
    """Writes a task's samples: an image array as one PNG grid at `path`; a dict {"images": ..., key: ...}
    as the grid plus, per integer region map [N, h, w] under `key`, `<stem>_<key>.png` (the map over the
    images) and `<stem>_<key>.npy` (the maps themselves). Returns the files written."""
    if not isinstance(outputs, dict):
        save_image_grid(outputs, path, nrow)
        return [os.fspath(path)]
    images = np.asarray(outputs["images"])
    save_image_grid(images, path, nrow)
    written = [os.fspath(path)]
    stem = os.path.splitext(os.fspath(path))[0]
    for key, value in outputs.items():
        value = np.asarray(value)
        if key == "images" or value.ndim != 3 or not np.issubdtype(value.dtype, np.integer):
            continue
        np.save(f"{stem}_{key}.npy", value)
        save_image_grid(region_overlay(images, value), f"{stem}_{key}.png", nrow)
        written += [f"{stem}_{key}.png", f"{stem}_{key}.npy"]
    return written
