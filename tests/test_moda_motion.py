"""MoDA 70-d motion space: layout, normalisation, pose bins, rotation, keypoint transform, smoothing."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from jaxmoda.errors import ConfigError, DataError
from jaxmoda.moda import motion as m


def _random_motion(rng: np.random.Generator, *lead: int) -> np.ndarray:
    """Realistic-scale random [..., 70] motion drawn around the default stats."""
    stats = m.default_stats()
    std = np.where(stats.std == 1.0, 0.01, stats.std)
    return (stats.mean + std * rng.standard_normal((*lead, m.DIM))).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Layout.


def test_layout_constants_and_groups():
    assert m.DIM == 70 and m.NUM_KP == 21 and m.SCALE == 63
    assert (m.EXP, m.TRANS, m.POSE) == (slice(0, 63), slice(64, 67), slice(67, 70))
    assert m.exp_dim(19, 1) == 58 and m.exp_dim(0, 0) == 0 and m.exp_dim(20, 2) == 62
    lips = m.group_dims("lips")
    # the `lip_dims` list of the MoDA / Ditto code (moda.md 1.1)
    expected = [18, 19, 20, 36, 37, 38, 42, 43, 44, 51, 52, 53, 57, 58, 59, 60, 61, 62]
    assert lips.tolist() == expected
    assert m.group_dims("eyes").size == 15 and m.group_dims("brows").tolist() == [3, 4, 5, 6, 7, 8]
    assert m.group_dims("pose").tolist() == [64, 65, 67, 68, 69]
    assert m.group_dims("exp").tolist() == list(range(63))
    for name in m.GROUP_NAMES:
        dims = m.group_dims(name)
        assert np.all(np.diff(dims) > 0)
    with pytest.raises(ConfigError, match="mouth"):
        m.group_dims("mouth")
    with pytest.raises(ConfigError):
        m.exp_dim(21, 0)
    assert m.RENDER_EXP_DIMS.size == 45


def test_split_join_round_trip_numpy_and_jax():
    rng = np.random.default_rng(0)
    x = _random_motion(rng, 2, 5)
    parts = m.split(x)
    assert parts["exp"].shape == (2, 5, 21, 3) and parts["scale"].shape == (2, 5)
    assert parts["t"].shape == (2, 5, 3) and parts["pose"].shape == (2, 5, 3)
    assert parts["exp"][1, 3, 19, 1] == x[1, 3, 58]
    np.testing.assert_array_equal(parts["pose"], x[..., 67:70])
    back = m.join(parts)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, x)
    back_j = m.join(m.split(jnp.asarray(x)))
    assert isinstance(back_j, jax.Array)
    np.testing.assert_array_equal(np.asarray(back_j), x)
    with pytest.raises(DataError, match="70"):
        m.split(np.zeros((4, 69)))


# ---------------------------------------------------------------------------------------------
# Normalisation.


def test_normalize_round_trip_with_zero_std_dims():
    rng = np.random.default_rng(1)
    x = _random_motion(rng, 4, 50)
    x[..., 66] = 0.0  # tz exactly 0
    x[..., m.exp_dim(7, 2)] = 0.0125  # a constant expression z
    stats = m.MotionStats.from_data(x)
    assert stats.mean.dtype == np.float32 and stats.std.shape == (70,)
    assert stats.std[66] == 1.0 and stats.std[m.exp_dim(7, 2)] == 1.0  # the tiny-std guard
    assert 0.05 < stats.std[63] < 0.09  # a real dim keeps its std

    z = stats.normalize(x)
    assert isinstance(z, np.ndarray) and z.dtype == np.float32
    np.testing.assert_allclose(z.reshape(-1, 70).mean(0), 0.0, atol=1e-4)
    live = stats.std != 1.0
    np.testing.assert_allclose(z.reshape(-1, 70).std(0)[live], 1.0, atol=1e-3)
    np.testing.assert_allclose(stats.denormalize(z), x, rtol=1e-6, atol=1e-6)

    # No blow-up: noise on a constant dim stays noise-sized (the official std + 1e-5 would give ~1e-2).
    noisy = x.copy()
    noisy[..., 66] += 1e-7
    assert np.abs(stats.normalize(noisy)[..., 66]).max() < 1e-6

    zj = stats.normalize(jnp.asarray(x, jnp.bfloat16))
    assert isinstance(zj, jax.Array) and zj.dtype == jnp.float32
    xj = stats.denormalize(jnp.asarray(z))
    assert isinstance(xj, jax.Array) and xj.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(xj), x, rtol=1e-6, atol=1e-6)
    # works under jit too
    np.testing.assert_allclose(np.asarray(jax.jit(stats.normalize)(jnp.asarray(x))), z, rtol=1e-6, atol=1e-6)


def test_default_stats_values():
    s = m.default_stats()
    np.testing.assert_allclose(s.mean[63:70], [1.286, -0.013, 0.100, 0.0, -2.34, -0.25, -0.33], rtol=1e-6)
    np.testing.assert_allclose(s.std[63:70], [0.069, 0.066, 0.035, 1.0, 8.88, 23.86, 5.61], rtol=1e-6)
    assert np.all(s.mean[:63] == 0)
    assert np.all(s.std[0:63:3] == np.float32(0.01)) and np.all(s.std[1:63:3] == np.float32(0.01))
    assert np.all(s.std[2:63:3] == 1.0)


def test_stats_save_load_and_bad_files(tmp_path):
    rng = np.random.default_rng(2)
    stats = m.MotionStats.from_data(_random_motion(rng, 30))
    path = tmp_path / "stats.json"
    stats.save(path)
    loaded = m.MotionStats.load(path)
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.std, stats.std)
    assert json.loads(path.read_text())["format"]

    cases = {
        "missing.json": None,
        "garbage.json": "{not json",
        "untagged.json": json.dumps({"mean": [0.0] * 70, "std": [1.0] * 70}),
        "short.json": json.dumps({**json.loads(path.read_text()), "mean": [0.0] * 69}),
        "zero_std.json": json.dumps({**json.loads(path.read_text()), "std": [0.0] * 70}),
    }
    for name, text in cases.items():
        bad = tmp_path / name
        if text is not None:
            bad.write_text(text)
        with pytest.raises(DataError) as info:
            m.MotionStats.load(bad)
        msg = str(info.value)
        assert "\n" not in msg and str(bad) in msg and "from_data" in msg, msg


def test_stats_reject_bad_data():
    with pytest.raises(DataError):
        m.MotionStats.from_data(np.zeros((10, 63)))
    bad = np.zeros((10, 70))
    bad[3, 5] = np.nan
    with pytest.raises(DataError, match="NaN"):
        m.MotionStats.from_data(bad)


# ---------------------------------------------------------------------------------------------
# Pose bins and rotation.


def test_bins_to_degrees():
    ks = np.array([0, 1, 32, 33, 65])
    one_hot = np.full((ks.size, 66), -1e4, np.float32)
    one_hot[np.arange(ks.size), ks] = 0.0
    np.testing.assert_allclose(np.asarray(m.bins_to_degrees(one_hot)), 3 * ks - 97.5, atol=1e-4)
    uniform = m.bins_to_degrees(np.zeros((2, 3, 66)))
    assert uniform.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(uniform), 0.0, atol=1e-5)
    with pytest.raises(DataError):
        m.bins_to_degrees(np.zeros(65))


def test_rotation_identity_orthonormal_and_order():
    np.testing.assert_allclose(np.asarray(m.rotation_matrix(0.0, 0.0, 0.0)), np.eye(3), atol=1e-7)

    rng = np.random.default_rng(3)
    ang = rng.uniform(-90, 90, size=(4, 5, 3))
    rot = np.asarray(m.rotation_matrix(ang[..., 0], ang[..., 1], ang[..., 2]), np.float64)
    assert rot.shape == (4, 5, 3, 3)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-6)

    # yaw only: the row vector x-axis maps to (cos y, 0, -sin y)
    yaw = 30.0
    y = np.deg2rad(yaw)
    r_yaw = np.asarray(m.rotation_matrix(0.0, yaw, 0.0))
    np.testing.assert_allclose(np.array([1.0, 0.0, 0.0]) @ r_yaw, [np.cos(y), 0.0, -np.sin(y)], atol=1e-6)

    # composition order (Rz Ry Rx)^T against an independent numpy build
    p, yy, r = np.deg2rad([20.0, -35.0, 10.0])
    c, s = np.cos, np.sin
    rx = np.array([[1, 0, 0], [0, c(p), -s(p)], [0, s(p), c(p)]])
    ry = np.array([[c(yy), 0, s(yy)], [0, 1, 0], [-s(yy), 0, c(yy)]])
    rz = np.array([[c(r), -s(r), 0], [s(r), c(r), 0], [0, 0, 1]])
    got = np.asarray(m.rotation_matrix(20.0, -35.0, 10.0))
    np.testing.assert_allclose(got, (rz @ ry @ rx).T, atol=1e-6)
    assert not np.allclose(got, (rx @ ry @ rz).T, atol=1e-3)  # the order matters


# ---------------------------------------------------------------------------------------------
# Keypoint transform and absolute-mode selection.


def test_transform_keypoints_identity_and_tz():
    rng = np.random.default_rng(4)
    x_c = rng.uniform(-0.5, 0.5, size=(3, 21, 3)).astype(np.float32)
    zeros3 = np.zeros((3, 3), np.float32)
    out = m.transform_keypoints(x_c, zeros3, np.zeros_like(x_c), np.ones(3), zeros3)
    np.testing.assert_allclose(np.asarray(out), x_c, atol=1e-7)

    pose = rng.uniform(-30, 30, size=(3, 3))
    exp = 0.01 * rng.standard_normal((3, 21, 3))
    scale = rng.uniform(1.2, 1.4, size=3)
    t = rng.standard_normal((3, 3))
    base = np.asarray(m.transform_keypoints(x_c, pose, exp, scale, t))
    t_other_z = t.copy()
    t_other_z[:, 2] = 123.0
    np.testing.assert_array_equal(np.asarray(m.transform_keypoints(x_c, pose, exp, scale, t_other_z)), base)

    rot = np.asarray(m.rotation_matrix(pose[:, 0], pose[:, 1], pose[:, 2]), np.float64)
    manual = scale[:, None, None] * (x_c @ rot + exp) + np.concatenate([t[:, :2], np.zeros((3, 1))], -1)[:, None]
    np.testing.assert_allclose(base, manual, atol=1e-5)


def test_compose_absolute_selection():
    rng = np.random.default_rng(5)
    gen = _random_motion(rng, 6)
    src = _random_motion(rng)
    out = m.compose_absolute(gen, src)
    assert out.shape == (6, 70)
    from_gen = np.zeros(70, bool)
    from_gen[m.RENDER_EXP_DIMS] = True
    from_gen[[64, 65, 67, 68, 69]] = True
    np.testing.assert_array_equal(out[:, from_gen], gen[:, from_gen])
    keep_src = ~from_gen
    keep_src[66] = False
    np.testing.assert_array_equal(out[:, keep_src], np.broadcast_to(src, gen.shape)[:, keep_src])
    assert np.all(out[:, 63] == src[63])  # scale is always the source's
    assert np.all(out[:, 66] == 0.0)
    assert m.exp_dim(19, 1) in m.RENDER_EXP_DIMS and m.exp_dim(0, 0) not in m.RENDER_EXP_DIMS


# ---------------------------------------------------------------------------------------------
# Mouth openness.


def test_mouth_openness_linear_and_matches_direction():
    u = m.mouth_direction()
    assert u.shape == (70,) and u.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(u), 1.0, atol=1e-6)
    lip_y = {m.exp_dim(kp, 1) for kp in m.KP_GROUPS["lips"]}
    assert set(np.flatnonzero(u).tolist()) <= lip_y and np.any(u != 0)
    for upper, lower in m.MOUTH_OPEN_PAIRS:
        assert upper in m.KP_GROUPS["lips"] and lower in m.KP_GROUPS["lips"]
        assert u[m.exp_dim(lower, 1)] > 0 > u[m.exp_dim(upper, 1)]

    rng = np.random.default_rng(6)
    a, b = _random_motion(rng, 7), _random_motion(rng, 7)
    oa, ob = m.mouth_openness(a), m.mouth_openness(b)
    assert oa.shape == (7,)
    np.testing.assert_allclose(m.mouth_openness(2.0 * a - 3.0 * b), 2.0 * oa - 3.0 * ob, atol=1e-6)
    np.testing.assert_allclose(m.mouth_openness(a) - m.mouth_openness(b), (a - b) @ u, atol=1e-6)
    oj = m.mouth_openness(jnp.asarray(a))
    assert isinstance(oj, jax.Array)
    np.testing.assert_allclose(np.asarray(oj), oa, atol=1e-6)

    # Opening the mouth (lower lip down in +y, upper lip up) raises openness by the gap / sqrt(2P).
    opened = np.zeros(70, np.float32)
    for upper, lower in m.MOUTH_OPEN_PAIRS:
        opened[m.exp_dim(lower, 1)] += 0.02
        opened[m.exp_dim(upper, 1)] -= 0.01
    gap = 0.03
    expected = gap * len(m.MOUTH_OPEN_PAIRS) / np.sqrt(2 * len(m.MOUTH_OPEN_PAIRS))
    np.testing.assert_allclose(m.mouth_openness(opened), expected, rtol=1e-6)
    # Non-lip and non-y dims do not move it.
    other = np.zeros(70, np.float32)
    other[m.exp_dim(19, 0)] = other[m.exp_dim(19, 2)] = other[m.exp_dim(5, 1)] = other[68] = 1.0
    assert m.mouth_openness(other) == 0.0


# ---------------------------------------------------------------------------------------------
# Smoothing.


def test_smooth_pose_only_rigid_dims():
    rng = np.random.default_rng(7)
    x = _random_motion(rng, 40)
    x[:, 63:] += np.cumsum(rng.standard_normal((40, 7)), axis=0).astype(np.float32)
    out = m.smooth_pose(x, 2.0)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.array_equal(out[:, :63].view(np.uint32), x[:, :63].view(np.uint32))  # bit-exact
    assert not np.allclose(out[:, 63:], x[:, 63:], atol=1e-3)
    ref = gaussian_filter1d(x[:, 63:].astype(np.float64), 2.0, axis=0, mode="nearest")
    np.testing.assert_allclose(out[:, 63:], ref, rtol=1e-5, atol=1e-5)
    # a constant trajectory passes unchanged (nearest edges add no bias)
    const = np.tile(x[:1], (20, 1))
    np.testing.assert_allclose(m.smooth_pose(const, 3.0), const, rtol=1e-6)
    # jax input: same values, same kind
    outj = m.smooth_pose(jnp.asarray(x), 2.0)
    assert isinstance(outj, jax.Array)
    np.testing.assert_array_equal(np.asarray(outj)[:, :63], x[:, :63])
    np.testing.assert_allclose(np.asarray(outj), out, rtol=1e-5, atol=1e-5)
    # sigma 0 is the identity; negative sigma is a config error
    np.testing.assert_array_equal(m.smooth_pose(x, 0.0), x)
    with pytest.raises(ConfigError):
        m.smooth_pose(x, -1.0)
