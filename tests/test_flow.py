"""Tests for jaxmoda.flow: exact Gaussian fields, masking, DDPM, guidance, jit and sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxmoda import flow
from jaxmoda.flow import ddpm as ddpm_lib

MU, SIGMA = 2.0, 0.5
N_SAMPLES, DIM = 20000, 2


def _bt(t, x):
    return t.reshape(t.shape + (1,) * (x.ndim - 1))


def rf_exact_velocity(x, t):
    """E[eps - x0 | x_t] for x0 ~ N(MU, SIGMA^2), eps ~ N(0, 1), x_t = (1-t) x0 + t eps."""
    t = _bt(t, x)
    m = (1.0 - t) * MU
    s2 = (1.0 - t) ** 2 * SIGMA**2 + t**2
    e_x0 = MU + (1.0 - t) * SIGMA**2 / s2 * (x - m)
    e_eps = t / s2 * (x - m)
    return e_eps - e_x0


def ddpm_exact_eps(schedule):
    """E[eps | x_k] for the same Gaussian data; the model sees t = k / T."""
    num_train = schedule.num_train_timesteps
    abar_table = jnp.asarray(schedule.alphas_cumprod, jnp.float32)

    def eps_fn(x, t):
        k = jnp.round(t * num_train).astype(jnp.int32)
        abar = _bt(abar_table[k], x)
        a, b = jnp.sqrt(abar), jnp.sqrt(1.0 - abar)
        e_x0 = MU + a * SIGMA**2 / (a**2 * SIGMA**2 + b**2) * (x - a * MU)
        return (x - a * e_x0) / b

    return eps_fn


def standard_noise(seed=0, shape=(N_SAMPLES, DIM)):
    # Exactly zero-mean, unit-std per dimension: for these linear fields the sampler is an
    # affine map, so any remaining error in mean/std is discretisation error, not Monte Carlo.
    z = jax.random.normal(jax.random.key(seed), shape)
    return (z - z.mean(0)) / z.std(0)


def moment_errors(x, mean, std):
    return float(jnp.abs(x.mean(0) - mean).max()), float(jnp.abs(x.std(0) - std).max())


# ---------------------------------------------------------------- timesteps


def test_time_samplers():
    t = flow.sample_time(jax.random.key(0), 100000, sampler="logit_normal", logit_mean=0.5, logit_std=2.0)
    assert t.dtype == jnp.float32 and t.shape == (100000,)
    assert float(t.min()) > 0.0 and float(t.max()) < 1.0
    logit = jnp.log(t) - jnp.log1p(-t)
    assert abs(float(logit.mean()) - 0.5) < 0.03 and abs(float(logit.std()) - 2.0) < 0.03
    u = flow.sample_time(jax.random.key(1), 100000, sampler="uniform")
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0 and abs(float(u.mean()) - 0.5) < 0.01
    # shift > 1 moves mass towards noise.
    us = flow.sample_time(jax.random.key(1), 100000, sampler="uniform", shift=3.0)
    assert float(us.mean()) > float(u.mean()) + 0.1
    with pytest.raises(ValueError, match="uniform"):
        flow.sample_time(jax.random.key(0), 4, sampler="beta")


@pytest.mark.parametrize("shift", [0.3, 1.0, 3.0])
def test_shift_monotone_and_fixes_endpoints(shift):
    t = jnp.linspace(0.0, 1.0, 1001)
    ts = flow.shift_time(t, shift)
    assert float(ts[0]) == 0.0 and float(ts[-1]) == 1.0
    assert bool(jnp.all(jnp.diff(ts) > 0))
    expected_mid = shift * 0.5 / (1 + (shift - 1) * 0.5)
    np.testing.assert_allclose(flow.shift_time(jnp.float32(0.5), shift), expected_mid, rtol=1e-6)


@pytest.mark.parametrize("steps,shift", [(1, 1.0), (7, 1.0), (50, 3.0), (1000, 0.5)])
def test_sampling_grid(steps, shift):
    g = flow.sampling_grid(steps, shift)
    assert g.shape == (steps + 1,) and g.dtype == jnp.float32
    assert float(g[0]) == 1.0 and float(g[-1]) == 0.0
    assert bool(jnp.all(jnp.diff(g) < 0))


# ---------------------------------------------------------------- rectified flow


def test_rf_samplers_reproduce_gaussian():
    obj = flow.RectifiedFlow()
    z = standard_noise()
    errs = {}
    for sampler, steps in [("euler", 100), ("heun", 30), ("euler", 30)]:
        x = obj.sample(rf_exact_velocity, z, steps=steps, sampler=sampler)
        errs[sampler, steps] = moment_errors(x, MU, SIGMA)
    # Euler is first order (measured std error ~7e-3 at 100 steps); Heun second order (~2e-4 at 30).
    assert max(errs["euler", 100]) < 1.5e-2
    assert max(errs["heun", 30]) < 1e-3
    assert errs["heun", 30][1] < errs["euler", 30][1] / 10
    assert errs["heun", 30][1] < errs["euler", 100][1]


def test_velocity_loss_minimum_is_conditional_variance():
    n, t_val = 400000, 0.4
    k0, k1 = jax.random.split(jax.random.key(3))
    x0 = MU + SIGMA * jax.random.normal(k0, (n, 1))
    eps = jax.random.normal(k1, (n, 1))
    t = jnp.full((n,), t_val)
    x_t = flow.interpolate(x0, eps, t)
    s2 = (1 - t_val) ** 2 * SIGMA**2 + t_val**2
    cov = t_val - (1 - t_val) * SIGMA**2
    min_loss = (1 + SIGMA**2) - cov**2 / s2
    loss = float(flow.velocity_loss(rf_exact_velocity(x_t, t), x0, eps).mean())
    # Relative Monte Carlo std of a variance estimate is sqrt(2 / n) ~ 2e-3; allow 1%.
    assert abs(loss / min_loss - 1) < 1e-2
    for delta in (0.05, -0.05):
        worse = float(flow.velocity_loss(rf_exact_velocity(x_t, t) + delta, x0, eps).mean())
        assert worse > loss
    scaled = float(flow.velocity_loss(1.1 * rf_exact_velocity(x_t, t), x0, eps).mean())
    assert scaled > loss


def test_rf_objective_loss_wiring():
    obj = flow.RectifiedFlow(time_sampler="uniform")
    x0 = jax.random.normal(jax.random.key(0), (4, 3, 2))
    noise = jax.random.normal(jax.random.key(1), (4, 3, 2))
    seen = {}

    def apply_fn(x_t, t, cond):
        seen.update(x_t=x_t, t=t, cond=cond)
        return 0.5 * x_t

    cond = {"label": jnp.arange(4)}
    loss, aux = obj.loss(apply_fn, x0, cond, jax.random.key(2), noise=noise)
    t = seen["t"]
    assert seen["cond"] is cond and t.shape == (4,) and t.dtype == jnp.float32
    np.testing.assert_allclose(seen["x_t"], (1 - t[:, None, None]) * x0 + t[:, None, None] * noise, rtol=1e-6)
    expected = jnp.mean((0.5 * seen["x_t"] - (noise - x0)) ** 2, axis=(1, 2))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(aux["t_mean"], t.mean(), rtol=1e-6)


# ---------------------------------------------------------------- masked loss


def _masked_setup():
    b, n, d = 3, 5, 4
    keys = jax.random.split(jax.random.key(7), 3)
    x0, noise, pred = (jax.random.normal(k, (b, n, d)) for k in keys)
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    return x0, noise, pred, mask


@pytest.mark.parametrize("name", ["rectified_flow", "ddpm"])
def test_masked_loss_ignores_padding(name):
    obj = flow.make_objective({"name": name})
    x0, noise, pred, mask = _masked_setup()
    pad = ~mask[:, :, None]

    def loss_fn(p, x, e):
        return obj.loss(lambda *_: p, x, None, jax.random.key(0), mask=mask, noise=e)[0]

    loss = loss_fn(pred, x0, noise)
    loss2 = loss_fn(jnp.where(pad, jnp.nan, pred), jnp.where(pad, 1e6, x0), jnp.where(pad, -3.0, noise))
    np.testing.assert_array_equal(loss, loss2)
    target = noise - x0 if name == "rectified_flow" else noise
    sq = (pred - target) ** 2
    np.testing.assert_allclose(loss[0], sq[0, :3].sum() / 12, rtol=1e-6)  # 3 real tokens x 4 dims
    np.testing.assert_allclose(loss[1], sq[1].mean(), rtol=1e-6)
    assert float(loss[2]) == 0.0
    # NaN at padded positions must not leak into gradients either.
    grad = jax.grad(lambda p: loss_fn(p, x0, noise).sum())(jnp.where(pad, jnp.nan, pred))
    assert bool(jnp.all(jnp.isfinite(grad))) and bool(jnp.all(jnp.where(pad, grad, 0.0) == 0.0))


def test_masked_mse_full_shape_mask_and_weight():
    _, target, pred, _ = _masked_setup()
    full = jnp.zeros(pred.shape, bool).at[:, :2, 1:].set(True)
    weight = jnp.array([1.0, 2.0, 0.0, 3.0])
    out = flow.masked_mse(pred, target, full, weight)
    sq = weight * (pred - target) ** 2
    np.testing.assert_allclose(out, jnp.where(full, sq, 0).sum((1, 2)) / 6, rtol=1e-6)
    np.testing.assert_allclose(flow.masked_mse(pred, target), ((pred - target) ** 2).mean((1, 2)), rtol=1e-6)
    with pytest.raises(ValueError, match="prefix"):
        flow.masked_mse(pred, target, jnp.ones((3, 4), bool))


# ---------------------------------------------------------------- DDPM


def test_ddpm_schedule_closed_form():
    s = flow.linear_schedule(1000, 1e-4, 0.02)
    betas = 1e-4 + (0.02 - 1e-4) * np.arange(1000) / 999
    np.testing.assert_allclose(s.betas, betas, rtol=1e-12)
    assert s.alphas_cumprod[0] == pytest.approx(1 - 1e-4, rel=1e-12)
    assert s.alphas_cumprod[-1] == pytest.approx(np.exp(np.sum(np.log1p(-betas))), rel=1e-10)
    assert s.alphas_cumprod[-1] == pytest.approx(4.0358e-5, rel=1e-3)  # DiT's abar_T
    ts = ddpm_lib.respaced_timesteps(1000, 250)
    assert ts[0] == 0 and ts[-1] == 999 and len(set(ts.tolist())) == 250


def test_q_sample_statistics():
    s = flow.linear_schedule()
    n, k = 200000, 500
    x0 = jnp.full((n, 1), MU)
    noise = jax.random.normal(jax.random.key(0), (n, 1))
    x_k = flow.q_sample(s, x0, noise, jnp.full((n,), k))
    abar = s.alphas_cumprod[k]
    assert abs(float(x_k.mean()) - np.sqrt(abar) * MU) < 0.01
    assert abs(float(x_k.std()) - np.sqrt(1 - abar)) < 0.01


def test_ddim_and_ancestral_reproduce_gaussian():
    obj = flow.make_objective({"name": "ddpm"})
    s = obj.schedule
    eps_fn = ddpm_exact_eps(s)
    z = standard_noise(1)
    # Starting from N(0, 1) instead of the true x_T ~ N(a mu, .) (a = sqrt(abar_T) ~ 6e-3) shifts the
    # exact ODE endpoint to mean mu - sigma a mu / s_T; compare against that, so only step error remains.
    a = np.sqrt(s.alphas_cumprod[-1])
    s_t = np.sqrt(a**2 * SIGMA**2 + 1 - a**2)
    mean, std = MU - SIGMA / s_t * a * MU, SIGMA / s_t
    e250 = moment_errors(obj.sample(eps_fn, z, steps=250), mean, std)
    e1000 = moment_errors(obj.sample(eps_fn, z, steps=1000, sampler="ddim"), mean, std)
    assert max(e250) < 1e-2  # measured std error ~6e-3
    assert e1000[1] < e250[1] / 2  # first-order convergence in the step count
    x = obj.sample(eps_fn, z, steps=250, sampler="ddpm", rng=jax.random.key(5))
    assert max(moment_errors(x, mean, std)) < 3e-2  # stochastic: Monte Carlo + step error
    with pytest.raises(ValueError, match="rng"):
        obj.sample(eps_fn, z, steps=10, sampler="ddpm")


def test_ddpm_objective_loss_wiring():
    obj = flow.DDPM()
    x0 = jax.random.normal(jax.random.key(0), (8, 3))
    noise = jax.random.normal(jax.random.key(1), (8, 3))
    seen = {}

    def apply_fn(x_t, t, cond):
        seen.update(x_t=x_t, t=t)
        return jnp.zeros_like(x_t)

    loss, _ = obj.loss(apply_fn, x0, None, jax.random.key(2), noise=noise)
    k = jnp.round(seen["t"] * 1000).astype(jnp.int32)
    np.testing.assert_allclose(k / 1000, seen["t"], atol=1e-7)  # t = integer timestep / T
    np.testing.assert_allclose(seen["x_t"], flow.q_sample(obj.schedule, x0, noise, k), rtol=1e-6)
    np.testing.assert_allclose(loss, (noise**2).mean(1), rtol=1e-6)


# ---------------------------------------------------------------- guidance


def test_combine_matches_hand_formula():
    u, c = jnp.array([1.0, 2.0]), jnp.array([3.0, -1.0])
    np.testing.assert_allclose(flow.combine([u, c], [2.5]), u + 2.5 * (c - u))
    p = [jnp.array([float(i), 10.0 * i]) for i in (1, 2, 4, 8)]
    s = [1.5, 2.0, 0.5]
    hand = p[0] + 1.5 * (p[1] - p[0]) + 2.0 * (p[2] - p[1]) + 0.5 * (p[3] - p[2])
    np.testing.assert_allclose(flow.combine(p, s), hand)
    np.testing.assert_allclose(flow.combine(p, [1.0, 1.0, 1.0]), p[3])
    with pytest.raises(ValueError):
        flow.combine(p, s[:2])


def _cond_model():
    calls = []

    def apply_fn(x, t, cond):
        calls.append(x.shape[0])
        return x * t[:, None] + cond["a"][:, None] + 2.0 * cond["b"]

    return apply_fn, calls


def test_guided_apply_fn_single_batched_call():
    apply_fn, calls = _cond_model()
    b = 3
    x = jax.random.normal(jax.random.key(0), (b, 2))
    t = jnp.array([0.1, 0.5, 0.9])
    conds = [{"a": jnp.full((b,), float(i)), "b": jnp.full((b, 2), i * 0.25)} for i in range(3)]
    scales = [2.0, 1.5]
    out = flow.guided_apply_fn(apply_fn, conds, scales)(x, t)
    assert calls == [3 * b]
    preds = [apply_fn(x, t, c) for c in conds]
    hand = preds[0] + 2.0 * (preds[1] - preds[0]) + 1.5 * (preds[2] - preds[1])
    np.testing.assert_allclose(out, hand, rtol=1e-6)


def test_guided_apply_fn_unit_scales_is_one_plain_call():
    apply_fn, calls = _cond_model()
    x, t = jnp.ones((2, 2)), jnp.array([0.3, 0.7])
    conds = [{"a": jnp.full((2,), float(i)), "b": jnp.zeros((2, 2))} for i in range(4)]
    out = flow.guided_apply_fn(apply_fn, conds, [1.0, 1.0, 1.0])(x, t)
    assert calls == [2]
    np.testing.assert_array_equal(out, apply_fn(x, t, conds[-1]))


def test_drop_condition():
    n = 20000
    labels = jnp.arange(n) % 7
    emb = jnp.ones((n, 3, 2))
    for values, null in [(labels, 1000), (emb, jnp.array([-1.0, -2.0]))]:
        key = jax.random.key(4)
        np.testing.assert_array_equal(flow.drop_condition(key, values, 0.0, null), values)
        all_null = flow.drop_condition(key, values, 1.0, null)
        null_full = jnp.broadcast_to(jnp.asarray(null, values.dtype), values.shape)
        np.testing.assert_array_equal(all_null, null_full)
        out = flow.drop_condition(key, values, 0.1, null)
        assert out.shape == values.shape and out.dtype == values.dtype
        dropped = jnp.all((out == null).reshape(n, -1), axis=1)
        kept = jnp.all((out == values).reshape(n, -1), axis=1)
        assert bool(jnp.all(dropped ^ kept))  # whole examples are replaced, never parts
        assert abs(float(dropped.mean()) - 0.1) < 0.01  # binomial std ~2e-3


# ---------------------------------------------------------------- jit, sharding, config


@pytest.mark.parametrize("name,sampler,evals", [("rectified_flow", "euler", 1), ("rectified_flow", "heun", 2),
                                                 ("ddpm", "ddim", 1)])
def test_sampler_jits_as_one_function(name, sampler, evals):
    obj = flow.make_objective({"name": name})
    traces = []
    base = rf_exact_velocity if name == "rectified_flow" else ddpm_exact_eps(obj.schedule)

    def fn(x, t):
        traces.append(1)
        return base(x, t)

    noise = jax.random.normal(jax.random.key(0), (16, 4, 3))  # any trailing shape
    eager = obj.sample(fn, noise, steps=12, sampler=sampler)
    assert len(traces) == evals  # loop body traced once, not unrolled per step
    jitted = jax.jit(lambda z: obj.sample(fn, z, steps=12, sampler=sampler))(noise)
    assert len(traces) == 2 * evals
    assert jitted.shape == noise.shape
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)


def test_sharded_sample_and_loss():
    mesh = jax.make_mesh((8,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    obj = flow.RectifiedFlow()
    noise = jax.random.normal(jax.random.key(0), (16, 5))
    x0 = jax.random.normal(jax.random.key(1), (16, 5))
    ref = obj.sample(rf_exact_velocity, noise, steps=8, sampler="heun")
    out = jax.jit(lambda z: obj.sample(rf_exact_velocity, z, steps=8, sampler="heun"))(
        jax.device_put(noise, sharding))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    loss_fn = jax.jit(lambda x: obj.loss(lambda x_t, t, c: x_t, x, None, jax.random.key(2))[0])
    np.testing.assert_allclose(loss_fn(jax.device_put(x0, sharding)), loss_fn(x0), rtol=1e-5)


def test_config_and_errors():
    cfg = flow.default_objective_config()
    assert cfg.name == "rectified_flow" and cfg.sampler == "auto" and cfg.cfg_scale == 1.5
    rf = flow.make_objective(cfg)
    assert isinstance(rf, flow.RectifiedFlow) and rf.sampler == "euler" and rf.time_sampler == "logit_normal"
    cfg.name, cfg.sample_steps = "ddpm", 25
    dd = flow.make_objective(cfg)
    assert isinstance(dd, flow.DDPM) and dd.sampler == "ddim" and dd.sample_steps == 25
    bad_configs = [
        ({"name": "edm"}, "rectified_flow"),
        ({"sampler": "ddim"}, "euler"),
        ({"name": "ddpm", "sampler": "heun"}, "ddim"),
        ({"time_sampler": "beta"}, "logit_normal"),
    ]
    for bad, match in bad_configs:
        with pytest.raises(ValueError, match=match) as info:
            flow.make_objective(bad)
        assert "\n" not in str(info.value)
    z = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="heun"):
        rf.sample(rf_exact_velocity, z, steps=2, sampler="ddim")
    with pytest.raises(ValueError, match="ddim"):
        dd.sample(rf_exact_velocity, z, steps=2, sampler="heun")
