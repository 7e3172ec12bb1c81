"""The renderer's training pieces: keypoint units, equivariance warp, prior, frame sets, and a short training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmoda.data import synthfaces
from jaxmoda.data.synthtalk import make_identity
from jaxmoda.moda import motion as mo
from jaxmoda.moda.render import data as rdata
from jaxmoda.moda.render.model import grid_keypoints
from jaxmoda.tasks.renderer import motion_group_errors, prior_loss, similarity_warp
from tests.helpers import fast_module, load_test_config


def random_motions(n: int, seed: int, max_deg: float = 12.0) -> np.ndarray:
    """Plausible frames: neutral plus pose within +-max_deg degrees, expression within a few stds."""
    rng = np.random.default_rng(seed)
    m = np.tile(synthfaces.neutral_motion()[None], (n, 1))
    m[:, mo.POSE] = rng.uniform(-max_deg, max_deg, (n, 3))
    m[:, mo.EXP] = rng.normal(0, 0.01, (n, 63))
    m[:, mo.TRANS.start:mo.TRANS.start + 2] += rng.uniform(-0.04, 0.04, (n, 2))
    return m.astype(np.float32)


def test_grid_keypoints_land_on_the_synthfaces_pixels():
    m = random_motions(4, 0)
    x_c = np.asarray(make_identity(3).x_c, np.float32)
    size = 64
    g = np.asarray(grid_keypoints(jnp.broadcast_to(x_c, (4, 21, 3)), m))
    for i in range(4):
        px = synthfaces.keypoints_px(m[i], 3, size)
        np.testing.assert_allclose((g[i, :, :2] + 1.0) * size / 2.0, px, atol=1e-3)


def test_similarity_warp_maps_keypoints_back_through_its_transform():
    s = 64
    point = np.array([0.3, -0.2])
    grid = (np.arange(s) + 0.5) / s * 2 - 1
    xx, yy = np.meshgrid(grid, grid)
    blob = np.exp(-((xx - point[0]) ** 2 + (yy - point[1]) ** 2) / (2 * 0.05 ** 2))[None, :, :, None]
    warped, a, b = similarity_warp(jnp.asarray(np.repeat(blob, 3, 0), jnp.float32), jax.random.key(1),
                                   max_angle=20.0, max_scale=0.1, max_shift=0.1)
    for i in range(3):
        w = np.asarray(warped[i, :, :, 0])
        found = np.array([np.sum(w * xx), np.sum(w * yy)]) / np.sum(w)  # blob centre on the warped image
        mapped = np.asarray(a[i]) @ found + np.asarray(b[i])
        np.testing.assert_allclose(mapped, point, atol=0.01)
        assert np.linalg.norm(found - point) > 0.01  # the transform did move it


def test_prior_is_zero_for_spread_keypoints_at_the_target_depth_and_positive_when_collapsed():
    rng = np.random.default_rng(0)
    spread = np.stack(np.meshgrid(np.linspace(-0.8, 0.8, 7), np.linspace(-0.8, 0.8, 3)), -1).reshape(21, 2)
    kp = np.concatenate([spread, np.full((21, 1), 0.2)], -1)[None].astype(np.float32)
    assert float(prior_loss(jnp.asarray(kp), 0.01, 0.2)) == pytest.approx(0.0, abs=1e-7)
    collapsed = (0.01 * rng.normal(size=(1, 21, 3))).astype(np.float32)
    assert float(prior_loss(jnp.asarray(collapsed), 0.01, 0.2)) > 0.2


def test_motion_loss_weighs_each_group_the_same_whatever_its_size():
    std = jnp.asarray(mo.default_stats().std)
    true = jnp.zeros((2, 70))
    pose_off = true.at[:, mo.POSE].set(std[mo.POSE])          # every pose angle one std off
    exp_off = true.at[:, mo.EXP].set(std[mo.EXP])             # every expression offset one std off
    g_pose, g_exp = motion_group_errors(pose_off, true, std), motion_group_errors(exp_off, true, std)
    assert set(g_pose) == {"exp", "scale", "trans", "pose"}
    np.testing.assert_allclose([float(g_pose[k]) for k in ("exp", "scale", "trans", "pose")], [0, 0, 0, 1], atol=1e-6)
    # 3 wrong pose dims cost as much as 63 wrong expression dims (a plain 70-d mean: 3/70 against 63/70).
    assert sum(g_pose.values()) == pytest.approx(float(sum(g_exp.values())), abs=1e-6)


def test_face_sets_are_deterministic_and_pairs_share_an_identity():
    motions = [random_motions(30, 1), random_motions(20, 2)]
    a = rdata.build_face_set(motions, [1000, 1001, 1002], 3, 32, seed=5, progress=False)
    b = rdata.build_face_set(motions, [1000, 1001, 1002], 3, 32, seed=5, progress=False)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.frames.shape == (3, 3, 32, 32, 3) and a.frames.dtype == np.uint8
    np.testing.assert_array_equal(a.frames[1, 0], synthfaces.render_face(a.motion[1, 0], 1001, 32))
    batch = rdata.pair_batch(a, np.random.default_rng(0), 12)
    assert batch["source"].shape == (12, 32, 32, 3) and batch["x_c"].shape == (12, 21, 3)
    assert not np.any(np.all(batch["source_motion"] == batch["driving_motion"], axis=-1))  # distinct frames
    for i in range(12):
        ident = int(np.flatnonzero(np.all(a.x_c == batch["x_c"][i], axis=(1, 2)))[0])
        assert np.any(np.all(a.motion[ident] == batch["driving_motion"][i], axis=-1))


@pytest.fixture(scope="module")
def trained_renderer():
    """The tiny renderer at 32 px trained 100 steps on two faces through RendererTask.loss."""
    from jaxmoda.tasks.renderer import RendererTask
    config = load_test_config("configs/moda/renderer_tiny.py", {}, model__image_size=32, batch_size=8)
    task = RendererTask(config)
    fs = rdata.build_face_set([random_motions(64, s, max_deg=20.0) for s in range(2)], [1000, 1001], 8, 32, seed=0,
                              progress=False)
    graphdef, params = nnx.split(fast_module(task.build_model), nnx.Param)
    tx = optax.adam(3e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, batch, rng):
        def f(p):
            return task.loss(nnx.merge(graphdef, p), batch, rng, jnp.int32(0))
        (_, metrics), grads = jax.value_and_grad(f, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, metrics

    first = None
    for i in range(120):
        batch = {k: jnp.asarray(v) for k, v in rdata.pair_batch(fs, np.random.default_rng(i), 8).items()}
        params, opt, metrics = step(params, opt, batch, jax.random.key(i))
        first = first or {k: float(v) for k, v in metrics.items()}
    return task, nnx.merge(graphdef, params), fs, first, {k: float(v) for k, v in metrics.items()}


def test_training_lowers_the_losses_and_logs_every_term(trained_renderer):
    _, _, _, first, last = trained_renderer
    assert {"l1", "motion", "motion_pose", "motion_exp", "equivariance", "prior", "psnr", "copy_psnr"} <= set(last)
    assert all(np.isfinite(v) for v in last.values())
    assert last["l1"] < 0.7 * first["l1"] and last["motion"] < 0.7 * first["motion"]


def test_own_motion_reproduces_the_source_better_than_a_random_motion(trained_renderer):
    _, model, fs, _, _ = trained_renderer
    src = jnp.asarray(rdata.to_float(fs.frames[:, 0]))
    x_c, own = jnp.asarray(fs.x_c), jnp.asarray(fs.motion[:, 0])
    far = [int(np.argmax(np.abs(fs.motion[i, :, mo.POSE] - fs.motion[i, 0, mo.POSE]).sum(-1))) for i in range(2)]
    other = jnp.asarray(fs.motion[[0, 1], far])  # each face's frame with the most different pose
    err_own = float(jnp.mean(jnp.square(model.reenact(src, x_c, own, own) - src)))
    err_random = float(jnp.mean(jnp.square(model.reenact(src, x_c, own, other) - src)))
    assert err_own < 0.85 * err_random
