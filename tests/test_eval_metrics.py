"""FID / IS / precision-recall on features with known answers."""

import numpy as np
import pytest

from jaxmoda.eval import metrics


def test_fid_is_zero_for_a_set_against_itself_and_grows_with_a_shift():
    x = np.random.default_rng(0).normal(size=(500, 32))
    assert abs(metrics.fid_from_features(x, x)) < 1e-3
    shifts = [metrics.fid_from_features(x, x + d) for d in (0.1, 0.5, 1.0)]
    assert shifts == sorted(shifts) and shifts[0] > 0
    np.testing.assert_allclose(shifts, [32 * d * d for d in (0.1, 0.5, 1.0)], rtol=1e-6)  # a shift moves the mean only


def test_frechet_distance_of_gaussians_matches_the_closed_form_and_scipy():
    rng = np.random.default_rng(1)
    # Diagonal covariances: sum((mu1-mu2)^2) + sum((sqrt(a) - sqrt(b))^2).
    a, b = rng.uniform(0.5, 2.0, 8), rng.uniform(0.5, 2.0, 8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-9)
    # Full covariances against scipy's general square root.
    linalg = pytest.importorskip("scipy.linalg")
    m1, m2 = rng.normal(size=(16, 16)), rng.normal(size=(16, 16))
    s1, s2 = m1 @ m1.T, m2 @ m2.T
    ref = np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert metrics.frechet_distance(np.zeros(16), s1, np.zeros(16), s2) == pytest.approx(ref, rel=1e-6)


def test_inception_score_bounds():
    assert metrics.inception_score(np.zeros((100, 10)), splits=5)[0] == pytest.approx(1.0, abs=1e-6)
    confident = np.full((100, 10), -30.0)
    confident[np.arange(100), np.arange(100) % 10] = 30.0  # sure of each class, all classes equally often
    assert metrics.inception_score(confident, splits=5)[0] == pytest.approx(10.0, rel=1e-4)


def test_precision_recall_of_identical_and_disjoint_sets():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 16))
    assert metrics.precision_recall(x, x, batch=128) == (1.0, 1.0)
    far = x + 100.0
    assert metrics.precision_recall(x, far) == (0.0, 0.0)
    # Generated points covering one side of the real set only: precise, but recall drops.
    plane = rng.normal(size=(400, 2))
    side = plane[plane[:, 0] > 0.8]
    p, r = metrics.precision_recall(plane, side)
    assert p == 1.0 and r < 0.5, (p, r)


def test_bad_feature_shapes_are_clear():
    with pytest.raises(ValueError, match="statistics do not match"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"features must be \[N >= 2, D\]"):
        metrics.feature_stats(np.zeros(5))
