"""MoDA's multi-modal DiT and windowed generation: the invariants of moda.md 6.1 (items 9-18)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmoda.flow import guidance
from jaxmoda.moda import generate as gen
from jaxmoda.moda.dit import MotionDiT
from jaxmoda.nn.embeddings import rope_1d
from jaxmoda.train.state import abstract_model, build_model

T = 16


def tiny(**kw):
    args = dict(hidden=32, num_heads=2, audio_layers=2, audio_channels=5, four_stream_depth=1, two_stream_depth=1,
                single_depth=2)
    args.update(kw)
    return build_model(lambda r: MotionDiT(rngs=r, **args))


def randomized(model, seed=1, scale=0.1):
    graphdef, params = nnx.split(model)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return nnx.merge(graphdef, jax.tree.unflatten(tree, [scale * jax.random.normal(k, x.shape, x.dtype)
                                                         for k, x in zip(keys, leaves)]))


def conds(b=2, t=T, seed=0):
    rng = np.random.default_rng(seed)
    return {"prefix": jnp.asarray(rng.normal(size=(b, 70)), jnp.float32), "prefix_on": jnp.ones((b,), bool),
            "audio": jnp.asarray(rng.normal(size=(b, t, 2, 5)), jnp.float32), "audio_on": jnp.ones((b,), bool),
            "emotion": jnp.arange(b, dtype=jnp.int32) % 8,
            "identity": jnp.asarray(rng.normal(size=(b, 63)), jnp.float32)}


def test_paper_size_is_373m_and_null_embeddings_are_parameters():
    _, params = abstract_model(lambda r: MotionDiT(hidden=768, num_heads=12, audio_layers=12, audio_channels=768, rngs=r))
    flat = dict(nnx.to_flat_state(params))
    n = sum(int(np.prod(v.shape)) for v in flat.values())
    assert abs(n - 373e6) / 373e6 < 0.01, n
    assert ("null_audio",) in flat and ("null_prefix",) in flat  # saved with every checkpoint


def test_stage_sequence_lengths_and_output_shape():
    model = randomized(tiny())
    x = jnp.zeros((2, T, 70))
    (m, a, e, i), c = model.embed(x, jnp.full((2,), 0.5), conds())
    assert [s.shape for s in (m, a, e, i)] == [(2, T, 32)] * 4 and c.shape == (2, 32)
    pos = jnp.broadcast_to(jnp.arange(T, dtype=jnp.float32), (2, T))
    s1 = model.stage1((m, a, e, i), c, (pos, pos, None, None))
    assert sum(s.shape[1] for s in s1) == 4 * T  # joint attention over 320 tokens at T = 80
    s2 = model.stage2((s1[0], jnp.concatenate(s1[1:], 1)), c, (pos, jnp.tile(pos, (1, 3))))
    assert (s2[0].shape[1], s2[1].shape[1]) == (T, 3 * T)
    assert model(x, jnp.full((2,), 0.5), conds()).shape == (2, T, 70)


def test_every_block_is_the_identity_at_initialisation():
    model = tiny()
    (m, a, e, i), c = model.embed(jnp.ones((2, T, 70)), jnp.full((2,), 0.3), conds())
    pos = jnp.broadcast_to(jnp.arange(T, dtype=jnp.float32), (2, T))
    out = model.stage1((m, a, e, i), c, (pos, pos, None, None))
    for before, after in zip((m, a, e, i), out):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    x = jnp.concatenate([m, a, e, i], axis=1)
    np.testing.assert_array_equal(np.asarray(model.stage3(x, c, jnp.tile(pos, (1, 4)))), np.asarray(x))


def test_rope_is_relative():
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(1, 8, 2, 16)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 8, 2, 16)), jnp.float32)
    pos = jnp.arange(8, dtype=jnp.float32)[None]
    logits = lambda p: jnp.einsum("bqhd,bkhd->bhqk", rope_1d(q, p, 256.0), rope_1d(k, p, 256.0))
    np.testing.assert_allclose(np.asarray(logits(pos)), np.asarray(logits(pos + 37.0)), atol=1e-4)


def test_model_is_bidirectional_in_audio():
    model = randomized(tiny())
    c = conds(b=1)

    def out0(audio):
        return model(jnp.zeros((1, T, 70)), jnp.full((1,), 0.5), dict(c, audio=audio))[0, 0].sum()

    g = jax.grad(out0)(c["audio"])
    assert float(jnp.abs(g[0, T - 1]).sum()) > 0  # frame 0 sees the last frame's audio


def test_null_embeddings_replace_dropped_conditions():
    model = randomized(tiny())
    x, t = jnp.zeros((2, T, 70)), jnp.full((2,), 0.5)
    c = conds()
    off = dict(c, audio_on=jnp.zeros((2,), bool))
    a = model(x, t, off)
    b = model(x, t, dict(off, audio=c["audio"] * 5))  # dropped audio: its values do not matter
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    graphdef, state = nnx.split(model)
    state["null_audio"][...] += 1.0
    assert float(jnp.abs(nnx.merge(graphdef, state)(x, t, off) - a).max()) > 0  # the learned null is used
    np.testing.assert_array_equal(np.asarray(nnx.merge(graphdef, state)(x, t, c)), np.asarray(model(x, t, c)))


def test_nested_guidance_at_scale_one_is_the_conditional_output():
    model = randomized(tiny())
    c = conds()
    null = dict(c, audio_on=jnp.zeros((2,), bool), emotion=jnp.full((2,), 8, jnp.int32))
    mid = dict(c, emotion=jnp.full((2,), 8, jnp.int32))
    x, t = jnp.asarray(np.random.default_rng(1).normal(size=(2, T, 70)), jnp.float32), jnp.full((2,), 0.4)
    full = model(x, t, c)
    np.testing.assert_array_equal(np.asarray(guidance.guided_apply_fn(model, [null, mid, c], [1.0, 1.0])(x, t)),
                                  np.asarray(full))
    traced = guidance.guided_apply_fn(model, [null, mid, c], [jnp.float32(1.0), jnp.float32(1.0)])(x, t)
    np.testing.assert_allclose(np.asarray(traced), np.asarray(full), atol=1e-5)


@pytest.mark.parametrize("length", [1, 79, 80, 81, 144, 145, 1000])
def test_windowed_generation_keeps_the_length_and_the_prefix_chain(length):
    prefixes, starts = [], []

    def sample_window(prefix, audio_w, k):
        prefixes.append(np.array(prefix))
        starts.append(int(audio_w[0, 0, 0, 0]))  # the audio carries its frame index
        return np.broadcast_to(np.arange(80, dtype=np.float32)[None, :, None] + 1000 * k, (1, 80, 70)).copy()

    audio = np.arange(length, dtype=np.float32)[None, :, None, None] * np.ones((1, 1, 1, 1), np.float32)
    out = gen.generate_windows(sample_window, audio, np.zeros((1, 70), np.float32), smooth_width=1)
    assert out.shape == (1, length, 70)
    n = gen.num_windows(length)
    assert starts == [64 * k for k in range(n)]
    for k in range(1, n):  # the prefix of window k is frame 63 of window k - 1
        assert prefixes[k][0, 0] == 63 + 1000 * (k - 1)
    if length >= 80 + 16:
        w = gen.crossfade_weights(16)
        np.testing.assert_allclose(out[0, 64:80, 0], (1 - w) * np.arange(64, 80) + w * (np.arange(16) + 1000))


def test_constant_motion_passes_through_and_smoothing_touches_pose_only():
    const = np.random.default_rng(0).normal(size=(1, 1, 70)).astype(np.float32)
    out = gen.generate_windows(lambda p, a, k: np.broadcast_to(const, (1, 80, 70)).copy(),
                               np.zeros((1, 200, 1, 1), np.float32), np.zeros((1, 70), np.float32))
    np.testing.assert_allclose(out, np.broadcast_to(const, out.shape), rtol=1e-6)
    x = np.random.default_rng(1).normal(size=(2, 50, 70)).astype(np.float32)
    y = gen.smooth_pose_ma(x, 3)
    np.testing.assert_array_equal(y[..., :63], x[..., :63])
    assert not np.allclose(y[..., 63:], x[..., 63:])
    np.testing.assert_allclose(y[:, 10, 63:], x[:, 9:12, 63:].mean(axis=1), rtol=1e-5)


def test_flow_conventions_and_oracle_sampler():
    from jaxmoda.flow import make_objective
    from jaxmoda.flow.rectified import interpolate, velocity_target
    from jaxmoda.flow.timesteps import sampling_grid
    from jaxmoda.nn.embeddings import timestep_features
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.normal(size=(3, 80, 70)), jnp.float32)
    eps = jnp.asarray(rng.normal(size=(3, 80, 70)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(interpolate(x0, eps, jnp.ones(3))), np.asarray(eps))  # noise at t = 1
    np.testing.assert_array_equal(np.asarray(interpolate(x0, eps, jnp.zeros(3))), np.asarray(x0))  # data at t = 0
    np.testing.assert_array_equal(np.asarray(velocity_target(x0, eps)), np.asarray(eps - x0))
    # The network sees 1000 t (DiT's / MoDA's timestep scale).
    np.testing.assert_allclose(np.asarray(timestep_features(jnp.asarray([0.25]), 8)),
                               np.asarray(timestep_features(jnp.asarray([250.0]), 8, scale=1.0)), rtol=1e-6)
    grid = np.asarray(sampling_grid(10))
    assert grid[0] == 1.0 and grid[-1] == 0.0 and abs(np.diff(grid).sum() + 1.0) < 1e-7
    # With the oracle velocity of one data point, (x - x0) / t, the 10-step Euler sampler lands on x0.
    obj = make_objective({"name": "rectified_flow", "time_sampler": "uniform", "sample_steps": 10, "sampler": "euler"})
    oracle = lambda x, t: (x - x0) / jnp.maximum(t, 1e-6)[:, None, None]
    np.testing.assert_allclose(np.asarray(obj.sample(oracle, eps)), np.asarray(x0), atol=1e-5)
