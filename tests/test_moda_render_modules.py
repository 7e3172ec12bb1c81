"""Shape / identity / jit tests for the LivePortrait-style renderer modules (tiny config, CPU)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmoda.moda.render import warp
from jaxmoda.moda.render.modules import (
    DenseMotion,
    MotionExtractor,
    Renderer,
    RendererConfig,
    StitchingMLP,
    collapse_depth,
    count_params,
)
from tests.helpers import fast_module


@pytest.fixture(scope="module")
def cfg():
    return RendererConfig.tiny()


@pytest.fixture(scope="module")
def renderer(cfg):
    return fast_module(lambda rngs: Renderer(cfg, rngs=rngs))


def _kp(seed, b=1, k=21, lim=0.8):
    return jax.random.uniform(jax.random.key(seed), (b, k, 3), minval=-lim, maxval=lim)


@nnx.jit
def _parts(r, img, kp_s, kp_d):
    vol = r.appearance(img)
    deformation, occlusion = r.dense_motion(vol, kp_s, kp_d)
    gen_in = r.fuse(collapse_depth(vol))
    return vol, deformation, occlusion, r.generator(gen_in), r(img, kp_s, kp_d)


@pytest.mark.parametrize("size", [64, 96])
def test_shapes(cfg, renderer, size):
    img = jax.random.uniform(jax.random.key(size), (1, size, size, 3), minval=-1, maxval=1)
    vol, deformation, occlusion, gen, out = _parts(renderer, img, _kp(1), _kp(2))
    h = size // 2 ** cfg.down
    assert vol.shape == (1, cfg.depth, h, h, cfg.feat_ch)
    assert deformation.shape == (1, cfg.depth, h, h, 3)
    assert occlusion.shape == (1, h, h, 1)
    assert float(occlusion.min()) >= 0 and float(occlusion.max()) <= 1
    assert gen.shape == out.shape == (1, size, size, 3)
    assert float(jnp.abs(out).max()) <= 1.0
    assert bool(jnp.all(jnp.isfinite(out)))

    with nnx.use_eager_sharding(False):
        motion = MotionExtractor(cfg, rngs=nnx.Rngs(1))
    m = nnx.jit(lambda mod, x: mod(x))(motion, img)
    assert m["kp"].shape == m["exp"].shape == (1, 21, 3)
    assert m["pose_bins"].shape == (1, 3, 66)
    assert m["scale"].shape == (1,) and m["t"].shape == (1, 3)
    assert float(jnp.abs(m["kp"]).max()) < 1.0


def test_stitching_identity_at_init(cfg):
    with nnx.use_eager_sharding(False):
        st = StitchingMLP(cfg, rngs=nnx.Rngs(3))
    kp_s, kp_d = _kp(4, b=2), _kp(5, b=2)
    dkp, dt = st(kp_s, kp_d)
    assert dkp.shape == (2, 21, 3) and dt.shape == (2, 2)
    np.testing.assert_array_equal(np.asarray(dkp), 0.0)
    np.testing.assert_array_equal(np.asarray(dt), 0.0)
    np.testing.assert_array_equal(np.asarray(nnx.jit(lambda m, a, b: m.stitch(a, b))(st, kp_s, kp_d)),
                                  np.asarray(kp_d))


@nnx.jit
def _identity_paths(r, img, kp):
    vol = r.appearance(img)
    warped, occlusion, deformation = r.warp_volume(vol, kp, kp)
    unwarped = r.decode(vol, occlusion)
    return vol, warped, deformation, unwarped, r(img, kp, kp)


def test_identical_keypoints_reproduce_unwarped_path(cfg, renderer):
    img = jax.random.uniform(jax.random.key(7), (1, 64, 64, 3), minval=-1, maxval=1)
    vol, warped, deformation, unwarped, out = _identity_paths(renderer, img, _kp(8))
    d, h, w = vol.shape[1:4]
    ident = np.broadcast_to(np.asarray(warp.identity_grid(d, h, w)), deformation.shape)
    # Every sparse flow is the identity, so any softmax blend of them is (up to the softmax sum's rounding).
    np.testing.assert_allclose(np.asarray(deformation), ident, atol=1e-6)
    np.testing.assert_allclose(np.asarray(warped), np.asarray(vol), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), np.asarray(unwarped), atol=1e-5)


def test_zero_init_mask_averages_flows(cfg):
    with nnx.use_eager_sharding(False):
        dm = DenseMotion(cfg, zero_init_mask=True, rngs=nnx.Rngs(9))
    vol = jax.random.normal(jax.random.key(10), (1, cfg.depth, 16, 16, cfg.feat_ch))
    kp_s, kp_d = _kp(11), _kp(12)
    deformation, _ = nnx.jit(lambda m, v, a, b: m(v, a, b))(dm, vol, kp_s, kp_d)
    expected = jnp.mean(warp.keypoint_flows(kp_s, kp_d, cfg.depth, 16, 16), axis=1)
    np.testing.assert_allclose(np.asarray(deformation), np.asarray(expected), atol=1e-5)
    deformation, _ = nnx.jit(lambda m, v, a, b: m(v, a, b))(dm, vol, kp_s, kp_s)
    np.testing.assert_allclose(np.asarray(deformation),
                               np.broadcast_to(np.asarray(warp.identity_grid(cfg.depth, 16, 16)), deformation.shape),
                               atol=1e-6)


def test_full_param_count_reported():
    full = nnx.eval_shape(lambda: _build_full())
    counts = {name: count_params(getattr(full, name)) for name in ("appearance", "dense_motion", "fuse", "generator")}
    counts["total"] = count_params(full)
    print("RendererConfig.full() parameter counts:", counts)
    # LivePortrait's appearance extractor has 0.84 M parameters (moda.md 1.1); this one is built to match roughly.
    assert 0.5e6 < counts["appearance"] < 1.5e6
    assert counts["total"] > 1e7


def _build_full():
    with nnx.use_eager_sharding(False):
        return Renderer(RendererConfig.full(), rngs=nnx.Rngs(0))
