"""python -m jaxmoda.d2it.fit_thresholds --config CONFIG --out thresholds.json [--num-images N] [--config.x=y ...]

Fits the entropy thresholds of D²iT's Dynamic Grained Coding (§3.3): the region entropies of a dataset
are summarised by their quantiles at q = 0, 0.001, ..., 1, and a region is FINE for a target fine ratio
r when its entropy exceeds the quantile at 1 - r. The fine ratio is then r on average over the fitting
data, not per image.

The file stores the entropy settings it was fitted with, and `load_thresholds` refuses settings that
differ: thresholds from one entropy function applied to another are the predecessor code's bug (its
thresholds were fitted with [0, 1] bins and applied with [-1, 1] bins).

Settings come from config.d2it.entropy when the config has it, else the defaults; --region-size and
--bins override either.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
from typing import Any

import numpy as np

from jaxmoda.d2it import grains
from jaxmoda.d2it.entropy import EntropySettings, check_image_shape
from jaxmoda.errors import ConfigError, DataError, cli_main
from jaxmoda.logs import setup_logging

FORMAT = "jaxmoda.d2it.entropy_thresholds"
VERSION = 1
LEVELS = np.linspace(0.0, 1.0, 1001)  # q = 0.000, 0.001, ..., 1.000
_REFIT = "refit with python -m jaxmoda.d2it.fit_thresholds --config CONFIG --out PATH"

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class Thresholds:
    """Fitted entropy quantiles and the settings of the entropy function they belong to.

    Attributes:
        settings: The entropy settings (equal to the file's, checked by `load_thresholds`).
        quantiles: float64 [1001], the entropy at q = i / 1000, non-decreasing.
        num_regions: Number of region entropies the quantiles were fitted on.
    """

    settings: EntropySettings
    quantiles: np.ndarray
    num_regions: int

    @classmethod
    def from_fitted(cls, fitted: dict[str, Any], settings: EntropySettings) -> "Thresholds":
        """From the dict `fit_thresholds` returns (fitted with `settings`)."""
        return cls(settings=settings, quantiles=np.asarray(fitted["quantiles"], np.float64),
                   num_regions=int(fitted["num_regions"]))

    def threshold_for(self, fine_ratio: float) -> float:
        """The entropy above which a region is FINE, so that a fraction `fine_ratio` of regions is fine.

        The quantile at 1 - r, linearly interpolated between the stored quantiles. r = 0 gives +inf
        (no region is fine) and r = 1 gives -inf (every region is), so the ends hold exactly even for
        regions outside the fitting data's range or tied at its minimum.

        Raises:
            ConfigError: If fine_ratio is not a number in [0, 1].
        """
        if isinstance(fine_ratio, bool) or not isinstance(fine_ratio, (int, float, np.floating, np.integer)) \
                or not 0.0 <= float(fine_ratio) <= 1.0:
            raise ConfigError(f"fine_ratio must be a number in [0, 1], got {fine_ratio!r}")
        r = float(fine_ratio)
        if r == 0.0:
            return math.inf
        if r == 1.0:
            return -math.inf
        return float(np.interp(1.0 - r, LEVELS, self.quantiles))

    def grain_map(self, entropy_bhw, fine_ratio: float):
        """Entropy map [B, h, w] -> grain map int8 [B, h, w], FINE where entropy > threshold_for(r).

        `fine_ratio` must be a Python number (the threshold is a constant of the traced function);
        the entropy map may be a traced jax array.
        """
        import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
        return grains.from_fine_mask(jnp.asarray(entropy_bhw) > self.threshold_for(fine_ratio))


def fit_thresholds(entropies: np.ndarray, settings: EntropySettings) -> dict[str, Any]:
    """Quantiles of all region entropies of a dataset, as the JSON-ready thresholds dict.

    Args:
        entropies: Region entropies made with `settings`, any shape (flattened).
        settings: The entropy settings that produced them.

    Returns:
        {"format", "version": 1, "entropy": settings.as_dict(), "num_regions",
         "quantiles": 1001 floats at q = 0.000, 0.001, ..., 1.000}.

    Raises:
        DataError: If there are no entropies or some are not finite.
    """
    values = np.asarray(entropies, np.float64).reshape(-1)
    if values.size == 0:
        raise DataError("no region entropies to fit thresholds on; check that the dataset has readable images")
    if not np.all(np.isfinite(values)):
        raise DataError(f"{int(np.sum(~np.isfinite(values)))} region entropies are not finite; check the images")
    return {
        "format": FORMAT,
        "version": VERSION,
        "entropy": settings.as_dict(),
        "num_regions": int(values.size),
        "quantiles": [float(v) for v in np.quantile(values, LEVELS)],
    }


def save_thresholds(path: str, thresholds: dict[str, Any]) -> None:
    """Writes the thresholds dict as JSON atomically (jaxmoda.io.atomic): the old file stays whole on failure."""
    from jaxmoda.io.atomic import write_json
    write_json(path, thresholds, indent=1, allow_nan=False, default=None)


def _settings_diff(saved: EntropySettings, wanted: EntropySettings) -> list[str]:
    diffs = []
    for field in dataclasses.fields(EntropySettings):
        a, b = getattr(saved, field.name), getattr(wanted, field.name)
        if field.name == "bins":
            # bins = 0 means region_size²; compare the bins actually used.
            if saved.num_bins != wanted.num_bins:
                diffs.append(f"bins: file {a} ({saved.num_bins} bins), settings {b} ({wanted.num_bins} bins)")
        elif a != b:
            diffs.append(f"{field.name}: file {a}, settings {b}")
    return diffs


def load_thresholds(path: str, settings: EntropySettings) -> Thresholds:
    """Reads a thresholds file and checks that it was fitted with `settings`.

    Raises:
        ConfigError: If the file is missing, not JSON, not a thresholds file, or fitted with different
            entropy settings (naming each differing field with both values).
    """
    if not os.path.isfile(path):
        raise ConfigError(f"thresholds file {path!r} does not exist; {_REFIT}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        reason = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
        raise ConfigError(f"thresholds file {path!r} is not valid JSON ({reason}); {_REFIT}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ConfigError(f"{path!r} is not a version-{VERSION} entropy thresholds file; {_REFIT}")
    quantiles = data.get("quantiles")
    try:
        quantiles = np.asarray(quantiles, np.float64)
        num_regions = int(data["num_regions"])
        saved = EntropySettings.from_config(data["entropy"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"thresholds file {path!r} is damaged ({str(e).splitlines()[0]}); {_REFIT}") from None
    if quantiles.shape != LEVELS.shape or not np.all(np.isfinite(quantiles)) or np.any(np.diff(quantiles) < 0):
        raise ConfigError(f"thresholds file {path!r} has no valid 1001 non-decreasing quantiles; {_REFIT}")
    diffs = _settings_diff(saved, settings)
    if diffs:
        raise ConfigError(
            f"thresholds file {path!r} was fitted with other entropy settings ({'; '.join(diffs)}); "
            "refit it with these settings or set config.d2it.entropy to the file's")
    return Thresholds(settings=settings, quantiles=quantiles, num_regions=num_regions)


def _settings(config, region_size: int | None, bins: int | None) -> EntropySettings:
    if "d2it" in config and "entropy" in config.d2it:
        settings = EntropySettings.from_config(config.d2it.entropy)
    else:
        log.info("config has no d2it.entropy group; using the default entropy settings")
        settings = EntropySettings()
    overrides = {k: v for k, v in (("region_size", region_size), ("bins", bins)) if v is not None}
    return dataclasses.replace(settings, **overrides) if overrides else settings


def fit_dataset(data_cfg, settings: EntropySettings, *, num_images: int = 0, batch_size: int = 32, seed: int = 0,
                progress: bool = True) -> tuple[dict[str, Any], int]:
    """Streams the first `num_images` (0: all) images of a data config through `entropy_map` and fits
    thresholds on their region entropies. Returns (the `fit_thresholds` dict, images read)."""
    # pylint: disable=import-outside-toplevel
    import functools

    import grain
    import jax
    from tqdm import tqdm

    from jaxmoda.d2it.entropy import entropy_map
    from jaxmoda.data import build_source
    from jaxmoda.data.config import resolve

    data_settings = resolve(data_cfg)
    check_image_shape((1, data_settings.image_size, data_settings.image_size, data_settings.channels), settings)
    dataset, _ = build_source(data_cfg, seed=seed)
    wanted = min(num_images or len(dataset), len(dataset))
    read_options = grain.ReadOptions(num_threads=data_settings.num_threads,
                                     prefetch_buffer_size=data_settings.prefetch_buffer_size)
    fn = jax.jit(functools.partial(entropy_map, settings=settings))

    results, batch = [], []

    def flush():
        # A short last batch is zero-padded so the function compiles once; the padding is dropped.
        n = len(batch)
        images = np.stack(batch + [np.zeros_like(batch[0])] * (batch_size - n))
        results.append(fn(images)[:n])
        batch.clear()

    read = 0
    # to_iter_dataset skips None elements (files that failed to decode) and reads with threads.
    with tqdm(total=wanted, unit="img", desc="entropy", mininterval=1.0, disable=not progress) as bar:
        for example in dataset[:wanted].to_iter_dataset(read_options):
            batch.append(np.asarray(example["image"], np.float32))
            read += 1
            if len(batch) == batch_size:
                flush()
            bar.update(1)
        if batch:
            flush()
    if read < wanted:
        log.warning("%d of %d images could not be read and were skipped", wanted - read, wanted)
    if not results:
        raise DataError(f"no readable images in data source {data_settings.source!r}; check config.data")
    entropies = np.concatenate([np.asarray(r, np.float32).reshape(-1) for r in jax.device_get(results)])
    return fit_thresholds(entropies, settings), read


def main(argv: list[str]) -> int:
    from jaxmoda.config import load_config, split_overrides  # pylint: disable=import-outside-toplevel

    overrides, rest = split_overrides(argv)
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.d2it.fit_thresholds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="config file (path.py[:arg])")
    parser.add_argument("--out", required=True, help="thresholds JSON to write")
    parser.add_argument("--num-images", type=int, default=0, help="images to use (default 0: the whole dataset)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per entropy call")
    parser.add_argument("--region-size", type=int, default=None, help="override d2it.entropy.region_size")
    parser.add_argument("--bins", type=int, default=None, help="override d2it.entropy.bins (0: region_size²)")
    args = parser.parse_args(rest)
    setup_logging()
    if args.num_images < 0:
        raise ConfigError(f"--num-images must be >= 0 (0: the whole dataset), got {args.num_images}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    config = load_config(args.config, overrides)
    settings = _settings(config, args.region_size, args.bins)

    fitted, num_images = fit_dataset(config.data, settings, num_images=args.num_images,
                                     batch_size=args.batch_size, seed=config.seed)
    save_thresholds(args.out, fitted)
    table = Thresholds.from_fitted(fitted, settings)
    ratios = ", ".join(f"r={r}: {table.threshold_for(r):.4f}" for r in (0.25, 0.5, 0.75))
    print(f"fitted entropy thresholds on {num_images} images ({fitted['num_regions']} regions of "
          f"{settings.region_size}x{settings.region_size}, {settings.num_bins} bins): {ratios}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
