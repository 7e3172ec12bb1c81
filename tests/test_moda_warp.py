"""LivePortrait-style warping: 3-D/2-D grid sampling, identity grids, sparse keypoint flows, heatmaps."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmoda.moda.render import warp


def _points(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """[n, len(shape)] (x, y, ...) grid points: random inside and around the volume, plus edge cases.

    Edge cases per axis: exactly -1 / +1 (outer voxel edges), the first and last voxel centres,
    cell boundaries (voxel centres in the interior), half a voxel beyond the edge (where the
    corner falls out), and far outside.
    """
    dims = len(shape)
    sizes = shape[::-1]  # (x, y, ...) address (W, H, ...)
    inside_and_around = rng.uniform(-1.4, 1.4, size=(n, dims))
    special = []
    for k, size in enumerate(sizes):
        centres = (2 * np.arange(size) + 1) / size - 1
        values = [-1.0, 1.0, centres[0], centres[-1], centres[size // 2],
                  -1 - 1 / size, 1 + 1 / size, -1 - 0.5 / size, 1 + 0.5 / size, -5.0, 7.0]
        for v in values:
            p = rng.uniform(-0.9, 0.9, size=dims)
            p[k] = v
            special.append(p)
    # All coordinates on borders / centres at once.
    special.append(np.full(dims, -1.0))
    special.append(np.full(dims, 1.0))
    special.append(np.array([(1 - 1 / s) for s in sizes]))
    return np.concatenate([inside_and_around, np.array(special)]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Agreement with the loop reference.


@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_3d_matches_reference(align_corners):
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((2, 3, 4, 5, 2)).astype(np.float32)
    grid = np.stack([_points(rng, 60, (3, 4, 5)) for _ in range(2)])  # [2, M, 3]
    grid = grid.reshape(2, -1, 1, 1, 3)  # any output layout [B, ..., 3] is allowed
    got = np.asarray(warp.grid_sample_3d(vol, grid, align_corners=align_corners))
    ref = warp.grid_sample_3d_reference(vol, grid, align_corners=align_corners)
    assert got.shape == ref.shape == (2, grid.shape[1], 1, 1, 2)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    # Far outside is exactly zero.
    far = np.asarray(warp.grid_sample_3d(vol, np.full((2, 1, 1, 1, 3), 3.0, np.float32)))
    assert np.all(far == 0)


@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_2d_matches_reference(align_corners):
    rng = np.random.default_rng(1)
    img = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    grid = np.stack([_points(rng, 80, (5, 7)) for _ in range(2)]).reshape(2, -1, 1, 2)
    got = np.asarray(warp.grid_sample_2d(img, grid, align_corners=align_corners))
    ref = warp.grid_sample_2d_reference(img, grid, align_corners=align_corners)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_known_values_align_corners_false():
    """Hand-checked 1-voxel-thick cases: edges blend with the zero padding, centres are exact."""
    img = np.array([[[[1.0], [3.0]]]], np.float32)  # [1, H=1, W=2, 1]
    xs = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], np.float32)
    grid = np.stack([xs, np.zeros_like(xs)], axis=-1)[None, None]  # [1, 1, 5, 2]
    got = np.asarray(warp.grid_sample_2d(img, grid))[0, 0, :, 0]
    # x=-1 is the left edge of pixel 0: half pixel 0, half padding. x=0 is midway between centres.
    np.testing.assert_allclose(got, [0.5, 1.0, 2.0, 3.0, 1.5], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Identity grids.


@pytest.mark.parametrize(("shape", "align_corners", "atol"), [
    ((16, 64, 64), False, 1e-6),  # LivePortrait's feature volume: centres are exact dyadic floats
    ((16, 64, 64), True, 1e-4),   # linspace(-1, 1, 64) is not exact in float32
    ((5, 12, 20), False, 1e-4),   # nor are (2i + 1) / n - 1 for n not a power of two
])
def test_identity_grid_returns_volume(shape, align_corners, atol):
    rng = np.random.default_rng(2)
    d, h, w = shape
    vol = rng.standard_normal((1, d, h, w, 4)).astype(np.float32)
    ident = warp.identity_grid(d, h, w, align_corners=align_corners)
    assert ident.shape == (d, h, w, 3)
    # (x, y, z) order: x varies along W, y along H, z along D.
    assert float(ident[0, 0, 1, 0] - ident[0, 0, 0, 0]) > 0 and float(ident[0, 1, 0, 0] - ident[0, 0, 0, 0]) == 0
    assert float(ident[1, 0, 0, 2] - ident[0, 0, 0, 2]) > 0
    first = [-1.0] * 3 if align_corners else [-1 + 1 / w, -1 + 1 / h, -1 + 1 / d]
    np.testing.assert_allclose(ident[0, 0, 0], first, atol=1e-7)
    out = warp.grid_sample_3d(vol, ident[None], align_corners=align_corners)
    np.testing.assert_allclose(np.asarray(out), vol, atol=atol, rtol=0)

    img = vol[:, 0]
    ident2 = warp.identity_grid_2d(h, w, align_corners=align_corners)
    assert ident2.shape == (h, w, 2)
    np.testing.assert_allclose(np.asarray(ident2), np.asarray(ident[0, ..., :2]), atol=0)
    out2 = warp.grid_sample_2d(img, ident2[None], align_corners=align_corners)
    np.testing.assert_allclose(np.asarray(out2), img, atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------
# Sparse motion and heatmaps.


def test_keypoint_flows_identity_when_source_equals_driving():
    rng = np.random.default_rng(3)
    b, k, d, h, w, c = 2, 5, 4, 8, 8, 3
    kp = rng.uniform(-0.8, 0.8, size=(b, k, 3)).astype(np.float32)
    flows = warp.keypoint_flows(kp, kp, d, h, w)
    assert flows.shape == (b, k + 1, d, h, w, 3)
    ident = np.asarray(warp.identity_grid(d, h, w))
    np.testing.assert_allclose(np.asarray(flows), np.broadcast_to(ident, flows.shape), atol=1e-7)

    vol = rng.standard_normal((b, d, h, w, c)).astype(np.float32)
    rep = jnp.repeat(vol[:, None], k + 1, axis=1).reshape(b * (k + 1), d, h, w, c)
    out = warp.grid_sample_3d(rep, flows.reshape(b * (k + 1), d, h, w, 3))
    np.testing.assert_allclose(np.asarray(out).reshape(b, k + 1, d, h, w, c),
                               np.broadcast_to(vol[:, None], (b, k + 1, d, h, w, c)), atol=1e-6)


def test_keypoint_flow_fetches_source_neighbourhood():
    """Flow k at the driving keypoint samples the source at the source keypoint (sign convention)."""
    rng = np.random.default_rng(4)
    d, h, w = 4, 6, 8
    vol = rng.standard_normal((1, d, h, w, 2)).astype(np.float32)

    def centre(i, n):
        return (2 * i + 1) / n - 1

    src_idx, drv_idx = (1, 2, 5), (2, 4, 3)  # (z, y, x) voxels
    kp_s = np.array([[[centre(src_idx[2], w), centre(src_idx[1], h), centre(src_idx[0], d)]]], np.float32)
    kp_d = np.array([[[centre(drv_idx[2], w), centre(drv_idx[1], h), centre(drv_idx[0], d)]]], np.float32)
    flows = warp.keypoint_flows(kp_s, kp_d, d, h, w)
    out = np.asarray(warp.grid_sample_3d(vol, flows[:, 1]))
    np.testing.assert_allclose(out[(0, *drv_idx)], vol[(0, *src_idx)], atol=1e-6)
    # The whole output is the source shifted by the integer voxel offset, zero where it left the volume.
    shift = np.subtract(src_idx, drv_idx)
    expect = np.zeros_like(vol)
    for z in range(d):
        for y in range(h):
            for x in range(w):
                zs, ys, xs = z + shift[0], y + shift[1], x + shift[2]
                if 0 <= zs < d and 0 <= ys < h and 0 <= xs < w:
                    expect[0, z, y, x] = vol[0, zs, ys, xs]
    np.testing.assert_allclose(out, expect, atol=1e-5)


def test_gaussian_heatmaps():
    d, h, w = 4, 8, 8
    ident = np.asarray(warp.identity_grid(d, h, w))
    kp = np.stack([ident[1, 2, 3], ident[3, 7, 0]])[None].astype(np.float32)  # on voxel centres
    hm = np.asarray(warp.gaussian_heatmaps(kp, d, h, w))
    assert hm.shape == (1, 2, d, h, w)
    assert hm[0, 0, 1, 2, 3] == pytest.approx(1.0) and hm[0, 1, 3, 7, 0] == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(hm[0, 0]), (d, h, w)) == (1, 2, 3)
    r2 = np.sum((ident[1, 2, 4] - kp[0, 0]) ** 2)  # one voxel along x: (2/w)^2
    assert hm[0, 0, 1, 2, 4] == pytest.approx(np.exp(-r2 / (2 * 0.01)), rel=1e-5)
    wide = np.asarray(warp.gaussian_heatmaps(kp, d, h, w, variance=0.1))
    assert wide[0, 0, 1, 2, 4] > hm[0, 0, 1, 2, 4]


# ---------------------------------------------------------------------------------------------
# Gradients and jit.


def _interior_points(rng: np.random.Generator, n: int, shape: tuple[int, ...], margin: float = 0.2) -> np.ndarray:
    """Points inside the volume whose voxel-index fractions stay `margin` away from cell edges."""
    sizes = np.array(shape[::-1])
    idx = rng.integers(0, sizes - 1, size=(n, len(shape))) + rng.uniform(margin, 1 - margin, size=(n, len(shape)))
    return (((2 * idx + 1) / sizes) - 1).astype(np.float32)


@pytest.mark.parametrize("ndim", [2, 3])
def test_gradients_match_finite_differences(ndim):
    rng = np.random.default_rng(5 + ndim)
    shape = (3, 4, 5)[-ndim:]
    sample = warp.grid_sample_3d if ndim == 3 else warp.grid_sample_2d
    reference = warp.grid_sample_3d_reference if ndim == 3 else warp.grid_sample_2d_reference
    vol = rng.standard_normal((1, *shape, 2)).astype(np.float32)
    grid = _interior_points(rng, 6, shape).reshape(1, 6, *([1] * (ndim - 1)), ndim)
    cot = rng.standard_normal((1, 6, *([1] * (ndim - 1)), 2)).astype(np.float32)

    def loss(v, g):
        return jnp.sum(sample(v, g) * cot)

    gv, gg = jax.grad(loss, argnums=(0, 1))(vol, grid)
    assert np.all(np.isfinite(gv)) and np.all(np.isfinite(gg))

    def ref_loss(v, g):
        return float(np.sum(reference(v, g) * cot))

    eps = 1e-4  # float64 central differences on the loop reference
    flat_g = grid.reshape(-1)
    for j in rng.choice(flat_g.size, size=5, replace=False):
        up, dn = flat_g.astype(np.float64).copy(), flat_g.astype(np.float64).copy()
        up[j] += eps
        dn[j] -= eps
        fd = (ref_loss(vol, up.reshape(grid.shape)) - ref_loss(vol, dn.reshape(grid.shape))) / (2 * eps)
        assert float(gg.reshape(-1)[j]) == pytest.approx(fd, rel=1e-3, abs=1e-4)
    flat_v = vol.reshape(-1)
    for j in rng.choice(flat_v.size, size=5, replace=False):
        up, dn = flat_v.astype(np.float64).copy(), flat_v.astype(np.float64).copy()
        up[j] += eps
        dn[j] -= eps
        fd = (ref_loss(up.reshape(vol.shape), grid) - ref_loss(dn.reshape(vol.shape), grid)) / (2 * eps)
        assert float(gv.reshape(-1)[j]) == pytest.approx(fd, rel=1e-3, abs=1e-4)


def test_gradients_finite_on_borders_and_outside():
    rng = np.random.default_rng(8)
    vol = rng.standard_normal((1, 3, 4, 5, 2)).astype(np.float32)
    grid = _points(rng, 10, (3, 4, 5)).reshape(1, -1, 1, 1, 3)
    gv, gg = jax.grad(lambda v, g: jnp.sum(warp.grid_sample_3d(v, g) ** 2), argnums=(0, 1))(vol, grid)
    assert np.all(np.isfinite(gv)) and np.all(np.isfinite(gg))
    far = jax.grad(lambda g: jnp.sum(warp.grid_sample_3d(vol, g)))(np.full((1, 1, 1, 1, 3), 4.0, np.float32))
    assert np.all(np.asarray(far) == 0)


def test_jit_matches_eager():
    rng = np.random.default_rng(9)
    vol = rng.standard_normal((2, 3, 4, 5, 2)).astype(np.float32)
    grid = rng.uniform(-1.2, 1.2, size=(2, 2, 3, 4, 3)).astype(np.float32)
    eager = warp.grid_sample_3d(vol, grid)
    np.testing.assert_allclose(np.asarray(jax.jit(warp.grid_sample_3d)(vol, grid)), np.asarray(eager), atol=1e-6)
    ac = jax.jit(functools.partial(warp.grid_sample_3d, align_corners=True))(vol, grid)
    np.testing.assert_allclose(np.asarray(ac), warp.grid_sample_3d_reference(vol, grid, align_corners=True), atol=1e-5)
    img, g2 = vol[:, 0], grid[:, 0, ..., :2]
    np.testing.assert_allclose(np.asarray(jax.jit(warp.grid_sample_2d)(img, g2)),
                               np.asarray(warp.grid_sample_2d(img, g2)), atol=1e-6)
    flows = jax.jit(warp.keypoint_flows, static_argnums=(2, 3, 4))(grid[:, 0, 0], grid[:, 0, 1], 3, 4, 5)
    assert flows.shape == (2, 5, 3, 4, 5, 3)


def test_shape_errors():
    vol = np.zeros((1, 2, 3, 4, 2), np.float32)
    with pytest.raises(ValueError, match="grid must be"):
        warp.grid_sample_3d(vol, np.zeros((1, 2, 3, 4, 2), np.float32))
    with pytest.raises(ValueError, match="batch"):
        warp.grid_sample_3d(vol, np.zeros((2, 2, 3, 4, 3), np.float32))
    with pytest.raises(ValueError, match="volume must be"):
        warp.grid_sample_3d(vol[0], np.zeros((1, 2, 3, 4, 3), np.float32))
    with pytest.raises(ValueError, match="image must be"):
        warp.grid_sample_2d(vol, np.zeros((1, 2, 3, 2), np.float32))
    with pytest.raises(ValueError, match="kp_source"):
        warp.keypoint_flows(np.zeros((1, 3)), np.zeros((1, 3)), 2, 2, 2)
