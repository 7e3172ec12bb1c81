"""python -m jaxmoda.eval.ref_stats and python -m jaxmoda.eval.fid: statistics, the comparison, and both
commands end to end on a tiny DiT run with synthetic Inception weights (8 fake devices)."""

import json

import numpy as np
import pytest

from jaxmoda.errors import CheckpointError, ConfigError
from jaxmoda.eval import fid, inception, ref_stats
from jaxmoda.train.loop import train
from tests.helpers import TINY, tiny_config
from tests.test_eval_inception import synthetic_state


def fake_features(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return {"pool": rng.normal(size=(n, 16)) + shift, "spatial": rng.normal(size=(n, 6)) + shift,
            "logits": np.zeros((n, 10))}


def test_compare_against_own_statistics_and_a_shift():
    feats = fake_features(300, 0)
    ref = fid.statistics(feats)
    same = fid.compare(feats, ref)
    assert abs(same["fid"]) < 1e-6 and abs(same["sfid"]) < 1e-6
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    assert same["inception_score"] == pytest.approx(1.0)  # uniform logits
    moved = fid.compare(fake_features(300, 1, shift=1.0), ref)
    assert moved["fid"] > 10 and moved["sfid"] > 3 and moved["precision"] < 0.9
    assert "inception_score" not in fid.compare({k: v for k, v in feats.items() if k != "logits"}, ref)


def test_samples_are_rounded_like_an_image_writer():
    from jaxmoda.io.images import to_uint8_images
    np.testing.assert_array_equal(to_uint8_images(np.array([-1.0, -0.999, 0.0, 1.0, 2.0])), [0, 0, 128, 255, 255])


def test_ref_stats_and_fid_commands_end_to_end(tmp_path):
    weights = tmp_path / "inception.npz"
    inception.save(inception.from_torch_state_dict(synthetic_state()), str(weights))
    run = tmp_path / "run"
    train(tiny_config(total_steps=2, checkpoint_every=2), str(run))
    ref = tmp_path / "ref.npz"
    assert ref_stats.main(["--config", TINY, "--out", str(ref), "--num", "12", "--batch", "8",
                           "--inception", str(weights), "--config.data.num_examples=40"]) == 0
    stats = np.load(ref)
    assert stats["mu"].shape == (2048,) and stats["sigma_s"].shape == (2023, 2023) and stats["features"].shape == (12, 2048)
    out = tmp_path / "report.json"
    assert fid.main(["--workdir", str(run), "--ref", str(ref), "--num", "12", "--batch", "8",
                     "--inception", str(weights), "--out", str(out), "--steps", "2", "--also-at", "10"]) == 0
    report = json.loads(out.read_text())
    assert report["step"] == 2 and report["num"] == 12 and report["devices"] == 8 and report["model"] == "dit"
    assert report["fid"] > 0 and np.isfinite(report["sfid"]) and 0 <= report["precision"] <= 1
    assert report["inception_score"] >= 1.0 and report["options"] == {"steps": 2}
    assert report["at_10"]["fid"] != report["fid"] and report["at_10"]["pr_points"] == 10
    with pytest.raises(CheckpointError, match="reference statistics .*missing.npz not found; write them with"):
        fid.main(["--workdir", str(run), "--ref", str(tmp_path / "missing.npz"), "--inception", str(weights)])
    with pytest.raises(CheckpointError, match="Inception weights .*nowhere.npz not found; run python -m "
                                              "jaxmoda.eval.inception --fetch"):
        fid.main(["--workdir", str(run), "--ref", str(ref), "--inception", str(tmp_path / "nowhere.npz")])
    with pytest.raises(ConfigError, match="--batch 6 must be a multiple of the 8 devices"):
        fid.main(["--workdir", str(run), "--ref", str(ref), "--inception", str(weights), "--batch", "6"])
    np.savez(tmp_path / "foreign.npz", mu=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a jaxmoda reference-statistics file"):
        fid.main(["--workdir", str(run), "--ref", str(tmp_path / "foreign.npz"), "--inception", str(weights)])
