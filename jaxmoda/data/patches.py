"""'patches': random crops of photographs bundled with scikit-image (nothing downloaded).

Element i is a square cut from photo `photos[i % len(photos)]` (its class, so
classes are balanced), at a random position and a random side in
`patch_scale` x the photo's shorter side, resized to `image_size` with PIL's
antialiased bicubic filter. The randomness comes from the per-element
generator, so a cut is a pure function of (seed, element position).
"""

from __future__ import annotations

import dataclasses
import functools

import grain
import numpy as np
from PIL import Image

from jaxmoda.data.config import DataSettings
from jaxmoda.data.errors import ConfigError
from jaxmoda.data.processing import SourceParts, make_info
from jaxmoda.io.images import array_to_pil, to_uint8_pil

# Photos shipped inside the scikit-image wheel. Other skimage.data names fetch
# files from the internet, which would hang or fail on an offline machine.
_BUNDLED = (
    "astronaut", "brick", "camera", "cat", "cell", "chelsea", "clock", "coffee", "coins",
    "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry",
    "logo", "microaneurysms", "moon", "motorcycle_left", "motorcycle_right", "page",
    "retina", "rocket", "text",
)


def _load_array(name: str) -> np.ndarray:
    import skimage.data  # pylint: disable=import-outside-toplevel  # ~0.3 s, only for this source

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(skimage.data, name)()


@functools.lru_cache(maxsize=None)
def load_photo(name: str, channels: int) -> Image.Image:
    """Loads one bundled photo as an 8-bit PIL image (cached per process).

    Args:
        name: A scikit-image photo name from the bundled set.
        channels: 3 for RGB (grayscale photos are repeated), 1 for grayscale.

    Returns:
        A decoded PIL image in mode 'RGB' or 'L'.
    """
    if name not in _BUNDLED:
        raise ConfigError(
            f"data.photos: {name!r} is not a scikit-image photo bundled offline; choose from {list(_BUNDLED)}.")
    img = to_uint8_pil(array_to_pil(_load_array(name)), channels)
    img.load()
    return img


@dataclasses.dataclass(frozen=True)
class PatchDecoder:
    """decode(index, rng): cuts one patch. Holds only names, so it pickles cheaply."""

    photos: tuple[str, ...]
    image_size: int
    channels: int
    patch_scale: tuple[float, float]

    def __call__(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        label = int(index) % len(self.photos)
        photo = load_photo(self.photos[label], self.channels)
        w, h = photo.size
        lo, hi = self.patch_scale
        side = max(1, int(round(rng.uniform(lo, hi) * min(w, h))))
        x0 = int(rng.integers(0, w - side + 1))
        y0 = int(rng.integers(0, h - side + 1))
        patch = photo.resize(
            (self.image_size, self.image_size), Image.Resampling.BICUBIC, box=(x0, y0, x0 + side, y0 + side))
        arr = np.asarray(patch, dtype=np.uint8)
        return (arr[..., None] if arr.ndim == 2 else arr), label


def build(settings: DataSettings) -> SourceParts:
    """Builds the 'patches' source; loads the photos now so a bad name fails early."""
    for name in settings.photos:
        load_photo(name, settings.channels)
    decoder = PatchDecoder(settings.photos, settings.image_size, settings.channels, settings.patch_scale)
    info = make_info(
        class_names=list(settings.photos),
        image_size=settings.image_size,
        channels=settings.channels,
        num_examples=settings.num_examples,
    )
    return SourceParts(grain.MapDataset.range(settings.num_examples), decoder, info)
