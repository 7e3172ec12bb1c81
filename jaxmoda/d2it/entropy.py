"""Information density of image regions: the entropy of a Gaussian kernel density (D²iT §3.2).

For each S x S region k of the grayscale image, with pixel values x_i (i = 1..S²) and P bin centres
b_j spaced uniformly over [value_min, value_max]:

    density_k(b_j) = (1/S²) Σ_i exp(-(x_i - b_j)² / (2σ²))
    p_k(b_j)       = density_k(b_j) / Σ_j' density_k(b_j')
    E_k            = -Σ_j p_k(b_j) log(p_k(b_j) + eps)          natural log, eps = 1e-12

The paper uses P = S² bins (`bins = 0` here) and σ = 0.01. The predecessor code used 32 bins; with
σ = 0.01 their spacing (0.065 = 6.5σ) turns the "density" into a sparse histogram, which is why
`bins` is a setting and why thresholds carry the settings they were fitted with (see
`jaxmoda.d2it.fit_thresholds`): a threshold is only meaningful for the exact function that made it.

eps keeps log finite for bins that no pixel reaches (their p is exactly 0, so they add 0); for a bin
with p > 0 it shifts the term by at most eps, far below float32 resolution. A region whose density
underflows to 0 at every bin (pixels far outside [value_min, value_max], or bins so sparse that no
pixel is within ~13σ of one) gets entropy 0 instead of NaN.

Range: 0 <= E_k <= log(P). A constant region is not 0 when the bin spacing is below σ: its density
is a sampled Gaussian (about 1.66 nats for S = 16, P = 256, σ = 0.01 over [-1, 1]).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxmoda.errors import ConfigError, DataError

EPS = 1e-12
# Elements of the [regions, S², P] kernel tensor processed at once (64 MiB in float32); bigger
# inputs are mapped over region chunks so a batch of 64 images at 256 px does not need 4 GiB.
# Measured on one H200 (256 px, P = 256): 2**24 ran about 66k images/s at batch 64 and 256, while
# 2**26 ran 16x slower through lax.map, so raise it only after timing.
DEFAULT_CHUNK_ELEMENTS = 2**24


@dataclasses.dataclass(frozen=True)
class EntropySettings:
    """Everything that defines the entropy function; thresholds are valid only for equal settings.

    Attributes:
        region_size: S, the side of a square region in pixels (16 for D²iT: the coarse grain).
        bins: P, the number of bin centres; 0 means the paper's P = S².
        sigma: Gaussian kernel width, in the units of the image values.
        value_min: Lowest bin centre (images are in [-1, 1]).
        value_max: Highest bin centre.
        gray_weights: (R, G, B) weights of the grayscale conversion; unused for 1-channel images.
    """

    region_size: int = 16
    bins: int = 0
    sigma: float = 0.01
    value_min: float = -1.0
    value_max: float = 1.0
    gray_weights: tuple[float, float, float] = (0.2989, 0.5870, 0.1140)

    def __post_init__(self):
        for name in ("region_size", "bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"d2it.entropy.{name} must be an int, got {value!r}")
        if self.region_size < 1:
            raise ConfigError(f"d2it.entropy.region_size must be >= 1, got {self.region_size}")
        if self.bins < 0 or self.bins == 1:
            raise ConfigError(f"d2it.entropy.bins must be 0 (region_size²) or >= 2, got {self.bins}")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ConfigError(f"d2it.entropy.sigma must be a positive number, got {self.sigma!r}")
        if not (math.isfinite(self.value_min) and math.isfinite(self.value_max) and self.value_min < self.value_max):
            raise ConfigError(
                f"d2it.entropy.value_min < value_max is required, got {self.value_min!r} and {self.value_max!r}")
        weights = tuple(float(v) for v in self.gray_weights)
        if len(weights) != 3 or not all(math.isfinite(v) for v in weights):
            raise ConfigError(f"d2it.entropy.gray_weights must be 3 finite numbers (R, G, B), got {self.gray_weights!r}")
        # Normalise types so that equal settings compare (and hash) equal however they were given.
        object.__setattr__(self, "region_size", int(self.region_size))
        object.__setattr__(self, "bins", int(self.bins))
        object.__setattr__(self, "sigma", float(self.sigma))
        object.__setattr__(self, "value_min", float(self.value_min))
        object.__setattr__(self, "value_max", float(self.value_max))
        object.__setattr__(self, "gray_weights", weights)

    @property
    def num_bins(self) -> int:
        """P, with bins = 0 resolved to region_size²."""
        return self.bins or self.region_size**2

    def bin_centres(self) -> np.ndarray:
        """float64 [P]: the bin centres, uniformly spaced over [value_min, value_max]."""
        return np.linspace(self.value_min, self.value_max, self.num_bins)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (gray_weights as a list)."""
        d = dataclasses.asdict(self)
        d["gray_weights"] = list(self.gray_weights)
        return d

    @classmethod
    def from_config(cls, cfg: Any = None) -> EntropySettings:
        """Settings from a `default_entropy_config()`-shaped ConfigDict or dict; missing fields take defaults.

        Raises:
            ConfigError: On an unknown field or an invalid value, naming the field.
        """
        if cfg is None:
            return cls()
        given = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ConfigError(f"unknown d2it.entropy field(s) {unknown}; valid fields are {names}")
        return cls(**given)


def default_entropy_config() -> ml_collections.ConfigDict:
    """The `config.d2it.entropy` group with typed defaults (see `EntropySettings` for the fields)."""
    fields = EntropySettings().as_dict()
    fields["gray_weights"] = tuple(fields["gray_weights"])  # a tuple, so --config overrides parse as one
    return ml_collections.ConfigDict(fields)


def check_image_shape(shape: tuple[int, ...], settings: EntropySettings) -> None:
    """Raises DataError (one line) unless `shape` is [B, H, W, 1 or 3] with H, W multiples of region_size."""
    if len(shape) != 4:
        raise DataError(f"images must be [B, H, W, C], got shape {tuple(shape)}; add a batch axis")
    _, h, w, c = shape
    s = settings.region_size
    if c not in (1, 3):
        raise DataError(f"images have {c} channels; the entropy map takes 1 (gray) or 3 (RGB)")
    if h < s or w < s:
        raise DataError(
            f"image of {h}x{w} is smaller than one {s}x{s} region; use larger images or a smaller "
            "d2it.entropy.region_size")
    if h % s or w % s:
        raise DataError(
            f"image of {h}x{w} is not a whole number of {s}x{s} regions; resize to a multiple of {s} "
            "or change d2it.entropy.region_size")


def _to_gray(images: jax.Array, weights: tuple[float, float, float]) -> jax.Array:
    """[B, H, W, C] -> [B, H, W]. Elementwise on purpose: an f32 matmul runs at reduced precision on TPU."""
    if images.shape[-1] == 1:
        return images[..., 0]
    r, g, b = weights
    return images[..., 0] * r + images[..., 1] * g + images[..., 2] * b


def entropy_map(
    images_bhwc: jax.Array,
    settings: EntropySettings = EntropySettings(),
    *,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> jax.Array:
    """Per-region KDE entropy of a batch of images; jit-able with `settings` closed over (it is static).

    Cost: B · (H/S)(W/S) · S² · P kernel evaluations (64 Mi for one 256 px image at S = 16, P = 256).
    Up to `max_chunk_elements` of them are evaluated at once; beyond that the regions are processed
    in sequential chunks (`lax.map`), which bounds memory whatever the batch size.

    Args:
        images_bhwc: float [B, H, W, C], C = 1 (used as is) or 3 (converted with gray_weights), values
            nominally in [value_min, value_max]. H and W must be multiples of region_size.
        settings: The entropy function's settings.
        max_chunk_elements: Kernel evaluations per chunk (memory bound, in float32 elements).

    Returns:
        float32 [B, H/S, W/S], each in [0, log(P)].

    Raises:
        DataError: If the shape is not [B, H, W, 1|3] with H, W whole multiples of region_size.
    """
    images = jnp.asarray(images_bhwc)
    check_image_shape(images.shape, settings)
    s, num_bins = settings.region_size, settings.num_bins
    b, h, w, _ = images.shape
    gray = _to_gray(images.astype(jnp.float32), settings.gray_weights)
    regions = gray.reshape(b, h // s, s, w // s, s).transpose(0, 1, 3, 2, 4).reshape(-1, s * s)

    # Centres are made in float64 and rounded once, so they do not depend on jnp.linspace's rounding.
    centres = jnp.asarray(settings.bin_centres().astype(np.float32))
    inv_two_var = np.float32(1.0 / (2.0 * settings.sigma**2))
    tiny = np.float32(np.finfo(np.float32).tiny)

    def region_entropy(pixels):  # [S²] -> []
        d = pixels[:, None] - centres[None, :]                    # [S², P]
        density = jnp.mean(jnp.exp(-(d * d) * inv_two_var), axis=0)  # [P]
        p = density / jnp.maximum(jnp.sum(density), tiny)           # all-zero density -> p = 0 -> E = 0
        return -jnp.sum(p * jnp.log(p + EPS))

    chunk = max(1, max_chunk_elements // (s * s * num_bins))
    if regions.shape[0] <= chunk:
        out = jax.vmap(region_entropy)(regions)
    else:
        out = jax.lax.map(region_entropy, regions, batch_size=chunk)
    return out.reshape(b, h // s, w // s)


def entropy_map_numpy(images_bhwc: np.ndarray, settings: EntropySettings = EntropySettings()) -> np.ndarray:
    """Reference for tests: the same quantity with plain float64 NumPy loops; shares no code with `entropy_map`.

    Args:
        images_bhwc: [B, H, W, C], C in {1, 3}, H and W multiples of region_size.
        settings: The entropy function's settings.

    Returns:
        float32 [B, H/S, W/S].
    """
    x = np.asarray(images_bhwc, dtype=np.float64)
    nb, h, w, c = x.shape
    s = settings.region_size
    assert c in (1, 3) and h % s == 0 and w % s == 0, x.shape
    if c == 3:
        wr, wg, wb = settings.gray_weights
        gray = wr * x[..., 0] + wg * x[..., 1] + wb * x[..., 2]
    else:
        gray = x[..., 0]
    num_bins = settings.bins if settings.bins > 0 else s * s
    step = (settings.value_max - settings.value_min) / (num_bins - 1)
    centres = settings.value_min + step * np.arange(num_bins)
    out = np.zeros((nb, h // s, w // s), np.float32)
    for n in range(nb):
        for i in range(h // s):
            for j in range(w // s):
                pixels = gray[n, i * s:(i + 1) * s, j * s:(j + 1) * s].reshape(-1)
                kernel = np.exp(-((pixels[:, None] - centres[None, :]) ** 2) / (2.0 * settings.sigma**2))
                density = kernel.mean(axis=0)
                total = density.sum()
                p = density / total if total > 0 else np.zeros_like(density)
                out[n, i, j] = -np.sum(p * np.log(p + EPS))
    return out
