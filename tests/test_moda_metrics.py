"""Renderer-free motion metrics (jaxmoda.moda.metrics) and the eval_motion report, on synthetic signals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jaxmoda import eval_motion as ev
from jaxmoda.data.synthtalk import PHONEME_VOCAB
from jaxmoda.errors import ConfigError
from jaxmoda.moda import metrics as mt
from jaxmoda.moda import motion as mo


def _smooth_noise(rng: np.random.Generator, n: int, width: int = 4) -> np.ndarray:
    """Band-limited random signal [n] (moving average of white noise), like a mouth-openness track."""
    x = rng.standard_normal(n + 4 * width)
    k = np.ones(width) / width
    return np.convolve(np.convolve(x, k, "same"), k, "same")[2 * width: 2 * width + n]


# ----------------------------------------------------------------------------------------------
# Basic helpers.


def test_pearson_known_values_and_degenerate_cases():
    x = np.arange(10.0) ** 1.5
    assert mt.pearson(x, 2 * x + 3) == pytest.approx(1.0)
    assert mt.pearson(x, -x) == pytest.approx(-1.0)
    assert mt.pearson(x, np.ones(10)) == 0.0            # constant -> no relation
    assert math.isnan(mt.pearson([1.0], [2.0]))          # too short
    a, b = np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])
    assert mt.pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    with pytest.raises(ValueError):
        mt.pearson(np.ones(3), np.ones(4))
    z = mt.zscore(x)
    assert z.mean() == pytest.approx(0.0, abs=1e-12) and z.std() == pytest.approx(1.0)
    np.testing.assert_array_equal(mt.zscore(np.full(5, 3.0)), np.zeros(5))


def test_speech_frames_trims_leading_and_trailing_pauses():
    # pause 0-0.5 s, speech 0.5-1.0 s, pause 1.0-1.6 s; 40 frames. Centres (i + 0.5) / 25 in [0.5, 1.0]: i = 12..24.
    start, end, ids = [0.0, 0.5, 0.7, 1.0], [0.5, 0.7, 1.0, 1.6], [0, 34, 66, 0]
    assert mt.speech_frames(start, end, ids, 40) == (12, 25)
    assert mt.speech_frames(start, end, ids, 20) == (12, 20)          # clipped to the clip
    assert mt.speech_frames([0.0], [1.0], [0], 25) == (0, 25)         # all pause -> whole clip
    np.testing.assert_array_equal(mt.centre_frames([0.0, 0.5], [0.5, 0.7]), [6, 15])


# ----------------------------------------------------------------------------------------------
# M1.


def test_audio_mouth_correlation_matched_vs_mismatched_vs_null():
    rng = np.random.default_rng(0)
    gt = [_smooth_noise(rng, int(n)) for n in rng.integers(90, 140, size=8)]
    gen = [g + 0.2 * g.std() * rng.standard_normal(g.size) for g in gt]
    m1 = mt.audio_mouth_correlation(gen, gt)
    assert m1["matched_r"] > 0.95 and len(m1["matched_r_per_clip"]) == 8
    assert abs(m1["mismatched_r"]) < 0.15
    assert m1["diff"] == pytest.approx(m1["matched_r"] - m1["mismatched_r"])
    assert m1["diff"] >= mt.M1_MIN_DIFF and m1["matched_r"] > m1["circular_p95"]
    assert 0.0 < m1["circular_p95"] < 0.5
    assert m1["null_count"] == sum(len(g) - 2 * mt.NULL_MIN_SHIFT + 1 for g in gt)
    # Generated = GT of another clip: matched collapses to the null.
    gt = [g[:90] for g in gt]
    m1_bad = mt.audio_mouth_correlation(gt[1:] + gt[:1], gt)
    assert m1_bad["diff"] < 0.3


def test_circular_shift_null_uses_only_shifts_of_at_least_min_shift():
    x = np.sin(2 * np.pi * np.arange(100) / 25.0)         # period 25: a shift by 25 or 50 is a perfect match
    null = mt.circular_shift_null(x, x, min_shift=25)
    assert null.shape == (51,)                           # s = 25 .. 75
    assert null[0] == pytest.approx(1.0) and null[25] == pytest.approx(1.0)
    assert mt.circular_shift_null(x[:40], x[:40], min_shift=25).size == 0
    r = mt.mismatched_correlations([x, -x], [x, x])
    np.testing.assert_allclose(sorted(r), [-1.0, 1.0])


# ----------------------------------------------------------------------------------------------
# M2.


@pytest.mark.parametrize("lag", [0, 2, -3, 5, 8, -8])
def test_lipsync_offset_recovers_injected_lag(lag):
    rng = np.random.default_rng(1)
    base = _smooth_noise(rng, 220)
    gt = base[10:210]
    gen = base[10 - lag:210 - lag]                       # gen[t] = gt[t - lag]: generated lags GT by `lag`
    assert mt.lipsync_offset(gen, gt) == lag


def test_lipsync_offset_degenerate_and_fraction():
    x = _smooth_noise(np.random.default_rng(2), 100)
    assert mt.lipsync_offset(np.zeros(100), x) is None   # a still mouth cannot be in sync
    lags, vals = mt.cross_correlation(x, x, max_lag=3)
    np.testing.assert_array_equal(lags, np.arange(-3, 4))
    assert np.argmax(vals) == 3 and vals[3] == pytest.approx(1.0)
    assert mt.sync_fraction([0, 1, -1, 2, None]) == pytest.approx(0.6)
    assert math.isnan(mt.sync_fraction([]))


# ----------------------------------------------------------------------------------------------
# M3.


def test_closure_threshold_definition():
    assert mt.closure_threshold(np.linspace(0.0, 1.0, 101)) == pytest.approx(0.3 * 0.95)
    assert mt.closure_threshold(np.linspace(-1.0, 1.0, 201)) == pytest.approx(-1.0 + 0.3 * 1.9)


def _closure_track() -> tuple[np.ndarray, list[int], list[int]]:
    """Openness 0.8 with 3-frame closures (0.0) at frames 10, 30, 50; vowel centres at 20, 40."""
    gt = np.full(60, 0.8)
    for c in (10, 30, 50):
        gt[c - 1:c + 2] = 0.0
    return gt, [10, 30, 50], [20, 40]


def test_closure_counts_hits_misses_and_leaks():
    gt, bil, vow = _closure_track()
    c = mt.closure_counts(gt, gt, bil, vow)
    assert (c["hits"], c["events"], c["leaks"], c["vowels"]) == (3, 3, 0, 2)
    assert c["threshold"] == pytest.approx(0.24)
    # Closures 3 frames late: outside +-1 frame of every centre.
    late = np.roll(gt, 3)
    assert mt.closure_counts(late, gt, bil, vow)["hits"] == 0
    # 2 frames late: the closure still overlaps the +-1 window.
    assert mt.closure_counts(np.roll(gt, 2), gt, bil, vow)["hits"] == 3
    # A closure at a vowel centre is a leak; events outside the clip are ignored.
    leaky = gt.copy()
    leaky[40] = 0.1
    c = mt.closure_counts(leaky, gt, bil + [-1, 60], vow + [70])
    assert (c["hits"], c["events"], c["leaks"], c["vowels"]) == (3, 3, 1, 2)
    rates = mt.closure_rates([c, mt.closure_counts(late, gt, bil, vow)])
    assert rates["hit_rate"] == pytest.approx(0.5) and rates["leak_rate"] == pytest.approx(0.25)
    assert rates["events"] == 6 and rates["vowel_frames"] == 4


# ----------------------------------------------------------------------------------------------
# M4, M5, M6.


def test_audio_gain_is_the_mse_ratio():
    rng = np.random.default_rng(3)
    gt = [rng.standard_normal(400) for _ in range(3)]
    true = [g + 0.1 * rng.standard_normal(g.size) for g in gt]
    shuf = [g + 0.2 * rng.standard_normal(g.size) for g in gt]
    m4 = mt.audio_gain(true, shuf, gt)
    assert m4["gain"] == pytest.approx(4.0, rel=0.15)
    assert m4["gain"] == pytest.approx(m4["mse_shuffled"] / m4["mse_true"])
    assert mt.audio_gain(gt, shuf, gt)["gain"] == math.inf
    assert math.isnan(mt.audio_gain(gt, gt, gt)["gain"])


def test_std_ratios_scaled_motion_and_constant_dims():
    rng = np.random.default_rng(4)
    gt = [np.cumsum(rng.standard_normal((n, 3)), axis=0) for n in (50, 70)]
    for g in gt:
        g[:, 2] = 0.5                                      # a constant GT dim
    gen = [2.0 * g for g in gt]
    for g in gen:
        g[:, 2] = 0.5 + 0.01 * rng.standard_normal(len(g))
    r = mt.std_ratios(gen, gt)
    assert r["std_ratio"] == pytest.approx(2.0) and r["velocity_std_ratio"] == pytest.approx(2.0)
    assert r["dims"] == 3 and r["constant_dims"] == 1 and r["constant_dims_gen_std"] == pytest.approx(0.01, rel=0.3)


def test_seed_diversity_distances_and_correlation():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((40, 2))
    trajs = np.stack([base, base + 1.0, base + 3.0])      # pairwise RMS distances 1, 3, 2
    assert mt.pairwise_rms_distance(trajs) == pytest.approx(2.0)
    assert mt.pairwise_rms_distance(trajs, scale=[2.0, 2.0]) == pytest.approx(1.0)
    assert mt.pairwise_rms_distance(np.stack([base, base])) == 0.0
    assert math.isnan(mt.pairwise_rms_distance(base[None]))
    sig = rng.standard_normal(50)
    assert mt.pairwise_correlation(np.stack([sig, 2 * sig + 1, sig])) == pytest.approx(1.0)


def test_gate():
    assert mt.gate(1.3, 1.3)["pass"] and not mt.gate(1.3, 1.3, ">")["pass"]
    assert mt.gate(math.inf, 1.3)["pass"]
    assert not mt.gate(math.nan, 1.3)["pass"] and not mt.gate(0.9, math.nan, ">")["pass"]
    assert not mt.gate(None, 1.0)["pass"]


# ----------------------------------------------------------------------------------------------
# The eval_motion report with stand-in generators (no model).

_VOWELS = [PHONEME_VOCAB.index(p) for p in ("a", "i:", "E", "oU")]
_CONS = [PHONEME_VOCAB.index(p) for p in ("t", "s", "k", "l")]
_BILABIALS = [PHONEME_VOCAB.index(p) for p in ("p", "b", "m")]
_OPEN = {**{i: 0.9 for i in _VOWELS[:1]}, **{i: 0.5 for i in _VOWELS[1:]}, **{i: 0.2 for i in _CONS},
         **{i: -0.05 for i in _BILABIALS}, 0: 0.0}


def _synthetic_clip(rng: np.random.Generator, index: int) -> ev.EvalClip:
    """A clip whose 'audio' feature 0 is its mouth openness, with a random phoneme track."""
    t, ids, starts = 0.3 + 0.2 * rng.random(), [0], [0.0]
    for _ in range(int(rng.integers(8, 14))):
        for pool, dur in ((_BILABIALS if rng.random() < 0.4 else _CONS, (0.12, 0.16)), (_VOWELS, (0.1, 0.3))):
            starts.append(t)
            ids.append(int(rng.choice(pool)))
            t += rng.uniform(*dur)
    starts.append(t)
    ids.append(0)
    end = t + 0.3 + 0.3 * rng.random()
    ends = starts[1:] + [end]
    num_frames = int(end * 25)
    centres = (np.arange(num_frames) + 0.5) / 25
    which = np.searchsorted(np.asarray(starts), centres, side="right") - 1
    openness = np.asarray([_OPEN[ids[k]] for k in which]) * 0.02
    motion = np.zeros((num_frames, 70), np.float32)
    motion += openness[:, None] * mo.mouth_direction()
    motion[:, mo.group_dims("pose")] = np.cumsum(rng.standard_normal((num_frames, 5)), axis=0)
    motion[:, mo.exp_dim(11, 1)] = 0.01 * rng.random(num_frames)   # an eyelid
    features = np.zeros((num_frames, 2, 3), np.float32)
    features[:, 0, 0] = openness
    return ev.EvalClip(index=index, features=features, motion=motion, identity=np.zeros(63, np.float32),
                       emotion=index % 8, phone_start=np.asarray(starts), phone_end=np.asarray(ends),
                       phone_id=np.asarray(ids))


def _generator(use_audio: bool, calls: list):
    def generate(audio, identity, emotion, prefix, seed):
        calls.append((audio.shape, seed))
        assert identity.shape == (audio.shape[0], 63) and emotion.shape == (audio.shape[0],)
        assert prefix.shape == (audio.shape[0], 70)
        rng = np.random.default_rng(seed)
        b, t = audio.shape[:2]
        if use_audio:
            openness = audio[:, :, 0, 0] + 0.001 * rng.standard_normal((b, t))
        else:
            openness = 0.008 + 0.004 * _smooth_noise(rng, b * t).reshape(b, t)
        out = openness[..., None] * mo.mouth_direction()
        out[..., mo.group_dims("pose")] = np.cumsum(rng.standard_normal((b, t, 5)), axis=1)
        out[..., mo.exp_dim(11, 1)] = 0.01 * rng.random((b, t))
        return out.astype(np.float32)
    return generate


def test_evaluate_with_an_oracle_generator_passes_every_gate():
    rng = np.random.default_rng(6)
    clips = [_synthetic_clip(rng, i) for i in range(7)]
    calls: list = []
    report = ev.evaluate(clips, _generator(True, calls), seeds=3, diversity_clips=2, batch_size=3, progress=False)
    assert report["num_clips"] == 7 and report["passed"], report["gates"]
    assert len(calls) == 2 * 3 + 3 * 1                     # 7 clips in batches of 3, twice; 3 seeds x 1 batch
    assert len({s for _, s in calls}) == len(calls)         # every batch has its own noise seed
    assert report["m1_audio_mouth_correlation"]["matched_r"] > 0.95
    assert report["m2_lipsync_offset"]["offsets"] == [0] * 7
    m3 = report["m3_bilabial_closure"]
    assert m3["hit_rate"] == 1.0 and m3["gt_hit_rate"] == 1.0 and m3["leak_rate"] == 0.0 and m3["events"] > 0
    assert report["m4_audio_gain"]["gain"] > 5.0
    assert 0.5 < report["m5_distribution"]["pose"]["std_ratio"] < 2.0
    assert report["m5_distribution"]["eyes"]["constant_dims"] == 14
    m6 = report["m6_seed_diversity"]
    assert m6["pose_distance"] > 0 and m6["eye_distance"] > 0 and m6["mouth_r"] > 0.9
    g = report["generation"]
    shuffled = sum(min(c.length, clips[(i + 1) % 7].length) for i, c in enumerate(clips))
    assert g["frames"] == report["frames"] + shuffled + 3 * sum(c.length for c in clips[:2])
    assert g["calls"] == len(calls) and g["frames_per_second"] > 0
    text = json.dumps(ev.json_safe(report), allow_nan=False)
    assert json.loads(text)["gates"]["m4_gain"]["pass"] is True


def test_evaluate_with_a_deaf_generator_fails_the_audio_gates():
    rng = np.random.default_rng(7)
    clips = [_synthetic_clip(rng, i) for i in range(6)]
    report = ev.evaluate(clips, _generator(False, []), seeds=1, batch_size=4, progress=False)
    gates = report["gates"]
    assert not report["passed"]
    assert not gates["m1_diff"]["pass"] and not gates["m4_gain"]["pass"] and not gates["m3_hit_rate"]["pass"]
    assert report["m4_audio_gain"]["gain"] == pytest.approx(1.0, abs=0.3)
    assert report["m6_seed_diversity"]["pose_distance"] is None   # one seed: M6 skipped


def test_cli_rejects_bad_arguments_before_loading_anything(tmp_path):
    with pytest.raises(ConfigError):
        ev.main(["--workdir", str(tmp_path), "--num-clips", "1"])
    with pytest.raises(ConfigError):
        ev.main(["--workdir", str(tmp_path), "--seeds", "0"])
    assert ev.json_safe({"a": np.float32(math.nan), "b": [np.int64(2), math.inf]}) == {"a": None, "b": [2, "inf"]}
