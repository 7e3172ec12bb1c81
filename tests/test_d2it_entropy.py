"""D²iT information density: entropy map, grain convention, thresholds and the fitting CLI."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from jaxmoda.config import apply_override
from jaxmoda.d2it import grains
from jaxmoda.d2it.entropy import EntropySettings, default_entropy_config, entropy_map, entropy_map_numpy
from jaxmoda.d2it.fit_thresholds import fit_thresholds, load_thresholds, main, save_thresholds
from jaxmoda.errors import ConfigError, DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _textured_images(rng, n, size=64, channels=3):
    """Images in [-1, 1] whose regions range from smooth gradients to strong noise, varying per image."""
    ys, xs = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        angle, offset = rng.uniform(0, 2 * np.pi), rng.uniform(-0.4, 0.4)
        base = offset + 0.4 * (np.cos(angle) * xs + np.sin(angle) * ys)
        # Noise amplitude varies smoothly over the image and by image, so entropies are continuous
        # (no ties at the thresholds) and the number of fine regions differs between images.
        amp = 10 ** (rng.uniform(-3, -0.5) + rng.uniform(-1, 1) * xs * ys)
        noise = rng.normal(size=(size, size, channels)) * amp[..., None]
        images.append(np.clip(base[..., None] + noise, -1, 1))
    return np.asarray(images, np.float32)


def test_grain_convention():
    assert (grains.COARSE, grains.FINE) == (0, 1) and grains.DTYPE == np.int8
    g = grains.from_fine_mask(np.array([[[True, False], [False, False]], [[True, True], [True, True]]]))
    assert g.dtype == np.int8 and g[0, 0, 0] == grains.FINE and g[0, 0, 1] == grains.COARSE
    np.testing.assert_array_equal(grains.fine_count(g), [1, 4])
    np.testing.assert_allclose(grains.fine_fraction(g), [0.25, 1.0])
    np.testing.assert_array_equal(grains.to_paper_labels(g)[0], [[2, 1], [1, 1]])
    np.testing.assert_array_equal(grains.num_codes(g), [4 + 3, 4 + 12])


def test_shape_range_and_dtype():
    settings = EntropySettings(region_size=16)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 48, 3)).astype(np.float32)
    e = np.asarray(jax.jit(lambda v: entropy_map(v, settings))(x))
    assert e.shape == (2, 2, 3) and e.dtype == np.float32
    assert np.all(np.isfinite(e)) and np.all(e >= 0) and np.all(e <= np.log(256) + 1e-6)


def test_constant_region_is_minimum_and_matches_analytic_value():
    settings = EntropySettings()  # S = 16, P = 256, sigma = 0.01 over [-1, 1]
    rng = np.random.default_rng(1)
    c = 0.3
    regions = [np.full((16, 16, 3), c)]
    for amp in (0.01, 0.05, 0.2, 1.0):
        regions.append(np.clip(c + amp * rng.uniform(-1, 1, (16, 16, 3)), -1, 1))
    ramp = np.linspace(-0.2, 0.2, 16)
    regions.append(np.broadcast_to((c + ramp)[None, :, None], (16, 16, 3)))
    regions.append(np.where((np.arange(16)[:, None] + np.arange(16)) % 2, 0.5, -0.5)[..., None].repeat(3, -1))
    e = np.asarray(entropy_map(np.asarray(regions, np.float32), settings))[:, 0, 0]
    assert np.argmin(e) == 0 and np.all(e[1:] > e[0] + 1e-3), e
    # The KDE of a constant is a Gaussian sampled at the bin centres.
    centres = np.linspace(-1, 1, 256)
    p = np.exp(-(c - centres) ** 2 / (2 * 0.01**2))
    p /= p.sum()
    analytic = -np.sum(p * np.log(p + 1e-12))
    np.testing.assert_allclose(e[0], analytic, atol=1e-5)
    assert 1.6 < analytic < 1.7  # about 1.66 nats, as in the research note


def test_uniform_noise_is_close_to_log_p():
    # Bin spacing 2/255 = 0.0078 < sigma, so the KDE of 256 uniform samples is nearly flat: the
    # entropy falls short of log(256) = 5.545 only by the sampling unevenness (~0.1 nats).
    settings = EntropySettings()
    x = np.random.default_rng(2).uniform(-1, 1, (16, 16, 16, 1)).astype(np.float32)
    e = np.asarray(entropy_map(x, settings))
    log_p = np.log(256)
    assert np.all(e <= log_p + 1e-6)
    assert np.all(e > log_p - 0.25), e.min()
    assert e.mean() > log_p - 0.15, e.mean()


@pytest.mark.parametrize("region_size,bins,channels", [(8, 32, 1), (8, 0, 3), (16, 32, 3), (16, 0, 1)])
def test_matches_numpy_reference(region_size, bins, channels):
    settings = EntropySettings(region_size=region_size, bins=bins)
    rng = np.random.default_rng(region_size + bins + channels)
    x = _textured_images(rng, 2, size=32, channels=channels)
    x[0] = rng.uniform(-1, 1, x[0].shape)
    got = np.asarray(jax.jit(lambda v: entropy_map(v, settings))(x))
    want = entropy_map_numpy(x, settings)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_chunked_path_matches_single_pass():
    settings = EntropySettings(region_size=8, bins=0)
    x = _textured_images(np.random.default_rng(3), 3, size=32)
    whole = np.asarray(entropy_map(x, settings))
    # 5 regions per chunk: 48 regions run as 9 full chunks plus a remainder of 3.
    chunked = np.asarray(jax.jit(lambda v: entropy_map(v, settings, max_chunk_elements=5 * 64 * 64))(x))
    np.testing.assert_allclose(chunked, whole, atol=2e-6, rtol=0)


def test_flip_equivariance():
    settings = EntropySettings(region_size=8, bins=0)
    x = _textured_images(np.random.default_rng(4), 2, size=32)
    flipped = np.asarray(entropy_map(x[:, :, ::-1], settings))
    # Exact up to the summation order of the pixels inside a region.
    np.testing.assert_allclose(flipped, np.asarray(entropy_map(x, settings))[:, :, ::-1], atol=1e-6, rtol=0)


def test_bad_image_shapes_raise_data_error():
    with pytest.raises(DataError, match=r"image of 12x12 is smaller than one 16x16 region"):
        entropy_map(np.zeros((1, 12, 12, 3), np.float32), EntropySettings())
    with pytest.raises(DataError, match=r"40x40 is not a whole number of 16x16"):
        entropy_map(np.zeros((1, 40, 40, 3), np.float32), EntropySettings())
    with pytest.raises(DataError, match="2 channels"):
        entropy_map(np.zeros((1, 16, 16, 2), np.float32), EntropySettings())


def test_settings_config_round_trip_and_validation():
    cfg = ml_collections.ConfigDict({"d2it": {"entropy": default_entropy_config()}})
    assert EntropySettings.from_config(cfg.d2it.entropy) == EntropySettings()
    apply_override(cfg, "d2it.entropy.bins", "32")
    apply_override(cfg, "d2it.entropy.gray_weights", "(1.0, 0.0, 0.0)")
    s = EntropySettings.from_config(cfg.d2it.entropy)
    assert s.bins == 32 and s.num_bins == 32 and s.gray_weights == (1.0, 0.0, 0.0)
    assert EntropySettings.from_config(json.loads(json.dumps(s.as_dict()))) == s
    with pytest.raises(ConfigError, match="sigma"):
        EntropySettings(sigma=0.0)
    with pytest.raises(ConfigError, match="unknown d2it.entropy field"):
        EntropySettings.from_config({"bin": 32})


def test_fitted_thresholds_give_target_ratio_on_average(tmp_path):
    settings = EntropySettings()
    images = _textured_images(np.random.default_rng(5), 64)
    e = np.asarray(jax.jit(lambda v: entropy_map(v, settings))(images))  # [64, 4, 4]
    path = str(tmp_path / "t.json")
    save_thresholds(path, fit_thresholds(e, settings))
    table = load_thresholds(path, settings)
    assert table.num_regions == 64 * 16
    for r in (0.25, 0.5, 0.75):
        g = np.asarray(table.grain_map(e, r))
        assert g.dtype == np.int8 and g.shape == e.shape
        assert abs(grains.fine_fraction(g).mean() - r) <= 0.005, (r, grains.fine_fraction(g).mean())
        assert len(set(grains.fine_count(g).tolist())) > 1  # routing is per region, not a per-image quota
    assert not np.any(np.asarray(table.grain_map(e, 0.0)) == grains.FINE)
    assert np.all(np.asarray(table.grain_map(e, 1.0)) == grains.FINE)
    assert table.threshold_for(0.25) > table.threshold_for(0.5) > table.threshold_for(0.75)
    with pytest.raises(ConfigError, match="fine_ratio"):
        table.threshold_for(1.5)


def test_load_refuses_other_settings(tmp_path):
    path = str(tmp_path / "t.json")
    save_thresholds(path, fit_thresholds(np.linspace(0, 3, 100), EntropySettings(bins=32)))
    with pytest.raises(ConfigError, match=r"bins: file 32 .*settings 0 \(256 bins\)") as info:
        load_thresholds(path, EntropySettings())
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"sigma: file 0.01, settings 0.02"):
        load_thresholds(path, EntropySettings(bins=32, sigma=0.02))
    # bins=0 means region_size², so 0 and 256 at S = 16 are the same function.
    save_thresholds(path, fit_thresholds(np.linspace(0, 3, 100), EntropySettings(bins=0)))
    assert load_thresholds(path, EntropySettings(bins=256)).num_regions == 100


def test_load_rejects_missing_corrupt_and_foreign_files(tmp_path):
    settings = EntropySettings()
    for name, text, pattern in [
            ("missing.json", None, "does not exist"),
            ("corrupt.json", '{"format": "jaxmoda.d2it', "is not valid JSON"),
            ("foreign.json", '{"a": 1}', "is not a version-1 entropy thresholds file")]:
        path = str(tmp_path / name)
        if text is not None:
            with open(path, "w") as f:
                f.write(text)
        with pytest.raises(ConfigError, match=pattern) as info:
            load_thresholds(path, settings)
        assert "\n" not in str(info.value) and name in str(info.value)
    good = fit_thresholds(np.arange(10.0), settings)
    good["quantiles"] = good["quantiles"][:-1]
    save_thresholds(str(tmp_path / "short.json"), good)
    with pytest.raises(ConfigError, match="1001 non-decreasing quantiles"):
        load_thresholds(str(tmp_path / "short.json"), settings)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "t.json")
    first = fit_thresholds(np.arange(10.0), EntropySettings())
    save_thresholds(path, first)
    assert os.listdir(tmp_path) == ["t.json"]

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        save_thresholds(path, fit_thresholds(np.arange(20.0), EntropySettings()))
    assert os.listdir(tmp_path) == ["t.json"]  # no temporary left, the old file intact
    monkeypatch.undo()
    assert load_thresholds(path, EntropySettings()).num_regions == 10


def test_cli_end_to_end(tmp_path, capsys):
    out = str(tmp_path / "sub" / "thresholds.json")
    code = main(["--config", os.path.join(ROOT, "configs/dit/tiny.py"), "--out", out, "--num-images", "64",
                 "--batch-size", "24", "--region-size", "16", "--config.data.image_size=32"])
    assert code == 0
    table = load_thresholds(out, EntropySettings(region_size=16))
    assert table.num_regions == 64 * 4  # 32 px images, 2 x 2 regions each
    assert np.all(np.diff(table.quantiles) >= 0) and table.quantiles[0] > 0
    summary = capsys.readouterr().out
    assert "64 images" in summary and "256 regions" in summary and "r=0.5" in summary
    with pytest.raises(ConfigError, match="bins"):
        load_thresholds(out, EntropySettings(bins=32))
