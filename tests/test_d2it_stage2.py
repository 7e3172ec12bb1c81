"""D²iT stage 2: the DCT's padding invariance and grain routing, multi-grained noise and sampling,
the DGT, guidance, sizes and sharding of the paper's configs, learning on cached latents, bad input."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxmoda.d2it import tokens as tok
from jaxmoda.d2it.dct import layout_only
from jaxmoda.d2it.grains import COARSE, FINE
from jaxmoda.errors import ConfigError, DataError
from jaxmoda.flow import guidance
from jaxmoda.tasks import get_task
from jaxmoda.train.state import abstract_model, build_model
from tests.helpers import ROOT, load_test_config

SMALL = {"model.dct.hidden": "32", "model.dct.depth": "3", "model.dct.refine_depth": "1",
         "model.dct.num_heads": "2", "model.dgt.hidden": "16", "model.dgt.depth": "1", "model.dgt.num_heads": "2",
         "batch_size": "8", "num_samples": "0", "progress_bar": "false", "tensorboard": "false",
         "objective.sample_steps": "3", "dgt_objective.sample_steps": "3", "d2it.scale_factor": "1.0",
         "async_checkpointing": "false"}


def stage2_config(**overrides):
    return load_test_config(f"{ROOT}/configs/d2it/tiny.py", SMALL, **overrides)


def randomized(model, seed=1, scale=0.1):
    """The model with every parameter redrawn (the zero-initialised heads would hide routing bugs)."""
    graphdef, params = nnx.split(model)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))


def random_grain(rng, b, h=4, w=4, p=0.5):
    return jnp.asarray(rng.random((b, h, w)) < p, jnp.int8)


@pytest.fixture(params=["mixed", "region"])
def layout_task(request):
    task = get_task(stage2_config(model__dct__layout=request.param))
    return task, randomized(build_model(task.build_model))


def test_padded_tokens_change_no_real_output_and_get_no_gradient(layout_task):
    task, model = layout_task
    rng = np.random.default_rng(0)
    grain = random_grain(rng, 4)
    z = jnp.asarray(rng.normal(size=(4, 8, 8, 4)), jnp.float32)
    packed = tok.pack(z, grain, 64)
    assert bool(jnp.any(~packed.mask))
    t, y = jnp.full((4,), 0.3), jnp.arange(4, dtype=jnp.int32)
    junk = jnp.where(packed.mask[..., None], packed.tokens, 1e3 * jax.random.normal(jax.random.key(2), packed.tokens.shape))
    out_a = model.dct(packed.tokens, t, y, layout_only(packed))
    out_b = model.dct(junk, t, y, layout_only(packed))
    np.testing.assert_array_equal(np.asarray(out_a), np.asarray(out_b))  # exact
    assert float(jnp.max(jnp.abs(jnp.where(packed.mask[..., None], 0.0, out_a)))) == 0.0  # padded outputs are 0
    assert float(jnp.max(jnp.abs(out_a))) > 0
    grads = jax.grad(lambda x: jnp.sum(model.dct(x, t, y, layout_only(packed)) ** 2))(packed.tokens)
    assert float(jnp.max(jnp.abs(jnp.where(packed.mask[..., None], 0.0, grads)))) == 0.0


def test_loss_ignores_padding_at_two_bucket_lengths(layout_task):
    task, model = layout_task
    rng = np.random.default_rng(3)
    grain = random_grain(rng, 6, p=0.3)
    need = np.asarray(tok.required_length(grain))
    z = rng.normal(size=(6, 8, 8, 4)).astype(np.float32)
    losses = []
    for length in (int(need.max()), 64):
        batch = {"z": jnp.asarray(z), "grain": grain, "label": jnp.arange(6, dtype=jnp.int32),
                 "mask": jnp.asarray(np.arange(length)[None] < need[:, None])}
        losses.append(task.loss(model, batch, jax.random.key(7))[1]["dct_loss"])
    assert int(need.max()) < 64
    assert abs(float(losses[0]) - float(losses[1])) < 1e-6


def test_grain_routing_uses_the_coarse_and_fine_heads():
    task = get_task(stage2_config(model__dct__refine_depth="0"))
    model = randomized(build_model(task.build_model))
    z = jnp.asarray(np.random.default_rng(0).normal(size=(1, 8, 8, 4)), jnp.float32)
    grain = jnp.zeros((1, 4, 4), jnp.int8).at[0, 0, 0].set(FINE)
    packed = tok.pack(z, grain, 64)
    args = (packed.tokens, jnp.full((1,), 0.5), jnp.zeros((1,), jnp.int32), layout_only(packed))
    base = model.dct(*args)
    graphdef, state = nnx.split(model)
    state["dct"]["head_fine"]["proj"]["bias"][...] += 1.0
    moved = nnx.merge(graphdef, state).dct(*args) - base
    fine_tok = np.asarray(packed.grain[0] == FINE) & np.asarray(packed.mask[0])
    assert fine_tok.sum() == 4
    np.testing.assert_allclose(np.asarray(moved[0])[fine_tok], 1.0, atol=1e-5)  # fine tokens: fine head
    np.testing.assert_allclose(np.asarray(moved[0])[~fine_tok], 0.0, atol=1e-6)  # coarse + padding: untouched


def test_multigrained_noise_is_one_vector_per_coarse_region_and_iid_on_fine():
    rng = np.random.default_rng(0)
    grain = random_grain(rng, 64)
    packed = tok.pack(jnp.zeros((64, 8, 8, 4)), grain, 64)
    noise = tok.gather_tokens(jax.random.normal(jax.random.key(0), (64, 8, 8, 4)), packed)
    dense = tok.scatter_to_dense(noise, packed, 4, 4)
    assert bool(jnp.all(tok.is_copy_consistent(dense, grain)))
    real = np.asarray(noise)[np.asarray(packed.mask)]
    assert abs(real.mean()) < 0.05 and abs(real.var() - 1.0) < 0.05
    reg = np.asarray(tok.to_regions(dense))  # [B, 16, 4, C]
    fine_r = np.asarray(grain).reshape(64, 16) == FINE
    corr_f = np.corrcoef(reg[fine_r][:, 0].ravel(), reg[fine_r][:, 1].ravel())[0, 1]
    corr_c = np.corrcoef(reg[~fine_r][:, 0].ravel(), reg[~fine_r][:, 1].ravel())[0, 1]
    assert abs(corr_f) < 0.05 and corr_c == pytest.approx(1.0)


def test_sampler_keeps_coarse_regions_single_codes_and_compiles_once(layout_task):
    task, model = layout_task
    rng = np.random.default_rng(5)
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, r, g: task.sample_latents(nnx.merge(graphdef, s), r, jnp.arange(4, dtype=jnp.int32) % 8, g))
    for i in range(3):
        grain = random_grain(rng, 4, p=0.2 + 0.3 * i)
        z = fn(state, jax.random.key(i), grain)
        assert z.shape == (4, 8, 8, 4) and bool(jnp.all(jnp.isfinite(z)))
        assert bool(jnp.all(tok.is_copy_consistent(z, grain)))  # bit-identical 2x2 copies
        reg = np.asarray(tok.to_regions(z))
        fine_r = np.asarray(grain).reshape(4, 16) == FINE
        assert np.all(reg[~fine_r][:, 1:] == reg[~fine_r][:, :1])
        if fine_r.any():  # fine regions hold 4 different codes
            assert np.all(np.abs(reg[fine_r][:, 1] - reg[fine_r][:, 0]).max(axis=-1) > 0)
    assert fn._cache_size() == 1


def test_training_step_compiles_once_per_bucket_not_per_grain_map():
    task = get_task(stage2_config())
    model = build_model(task.build_model)
    graphdef, state = nnx.split(model)
    step = jax.jit(lambda s, b: task.loss(nnx.merge(graphdef, s), b, jax.random.key(0))[0])
    rng = np.random.default_rng(1)
    for p in (0.1, 0.4, 0.6):
        grain = random_grain(rng, 8, p=p)
        need = np.asarray(tok.required_length(grain))
        batch = {"z": jnp.zeros((8, 8, 8, 4)), "grain": grain, "label": jnp.zeros((8,), jnp.int32),
                 "mask": jnp.asarray(np.arange(64)[None] < need[:, None])}
        assert np.isfinite(float(step(state, batch)))
    assert step._cache_size() == 1


def test_dgt_samples_valid_binary_maps():
    task = get_task(stage2_config())
    model = randomized(build_model(task.build_model))
    grain = jax.jit(lambda r: task.sample_grain(model, r, jnp.arange(16, dtype=jnp.int32) % 8))(jax.random.key(0))
    assert grain.shape == (16, 4, 4) and grain.dtype == jnp.int8
    assert set(np.unique(np.asarray(grain)).tolist()) <= {COARSE, FINE}
    assert len({np.asarray(g).tobytes() for g in grain}) > 1  # diverse


def test_cfg_scale_one_is_the_conditional_prediction():
    task = get_task(stage2_config())
    model = randomized(build_model(task.build_model))
    rng = np.random.default_rng(2)
    grain = random_grain(rng, 4)
    packed = tok.pack(jnp.asarray(rng.normal(size=(4, 8, 8, 4)), jnp.float32), grain, 64)
    labels = jnp.arange(4, dtype=jnp.int32)
    conds = [(jnp.full_like(labels, 8), layout_only(packed)), (labels, layout_only(packed))]
    cond = task.dct_apply(model)(packed.tokens, jnp.full((4,), 0.4), conds[1])
    t = jnp.full((4,), 0.4)
    exact = guidance.guided_apply_fn(task.dct_apply(model), conds, [1.0])(packed.tokens, t)
    traced = guidance.guided_apply_fn(task.dct_apply(model), conds, [jnp.float32(1.0)])(packed.tokens, t)
    np.testing.assert_array_equal(np.asarray(exact), np.asarray(cond))
    np.testing.assert_allclose(np.asarray(traced), np.asarray(cond), atol=1e-5)
    other = guidance.guided_apply_fn(task.dct_apply(model), conds, [3.0])(packed.tokens, t)
    assert float(jnp.max(jnp.abs(other - cond))) > 1e-4


def test_dynamic_grain_loss_weights():
    # All fine with unit weights: the plain per-element MSE of the dense latent (DiT parity).
    task = get_task(stage2_config())
    rng = np.random.default_rng(4)
    pred = jnp.asarray(rng.normal(size=(2, 8, 8, 4)), jnp.float32)
    target = jnp.asarray(rng.normal(size=(2, 8, 8, 4)), jnp.float32)
    from jaxmoda.flow.losses import masked_mse
    fine = jnp.ones((2, 4, 4), jnp.int8)
    p = tok.pack(pred, fine, 64)
    got = masked_mse(p.tokens, tok.gather_tokens(target, p), p.mask, task.token_weights(p))
    np.testing.assert_allclose(np.asarray(got), np.asarray(jnp.mean((pred - target) ** 2, axis=(1, 2, 3))), rtol=1e-6)
    # Mixed map: sum of weights = w_c * N_coarse + w_f * 4 * N_fine per example.
    task = get_task(stage2_config(d2it__coarse_weight="4.0", d2it__fine_weight="1.5"))
    grain = random_grain(rng, 2)
    p = tok.pack(pred, grain, 64)
    w = jnp.where(p.mask[..., None], task.token_weights(p), 0.0)
    n_f = np.asarray(grain).reshape(2, -1).sum(1)
    np.testing.assert_allclose(np.asarray(w.sum(axis=(1, 2))), 4.0 * (16 - n_f) + 1.5 * 4 * n_f)


def test_paper_sizes_and_xl_sharding():
    from jaxmoda import parallel
    from jaxmoda.config import load_config
    from jaxmoda.train.state import abstract_train_state, make_optimizer
    targets = {"ffhq256_l": 467e6, "imagenet256_xl": 687e6}
    for name, target in targets.items():
        task = get_task(load_config(f"{ROOT}/configs/d2it/{name}.py", []))
        _, params = abstract_model(task.build_model)
        # The paper counts the content transformer (DiT-style totals); the DGT is a separate model.
        n = sum(int(np.prod(v.shape)) for k, v in nnx.to_flat_state(params) if k[0] == "dct")
        assert abs(n - target) / target < 0.03, (name, n)
    for fsdp, tensor in ((8, 1), (4, 2)):  # FSDP alone, and FSDP x tensor like the Foundation's DiT
        config = load_config(f"{ROOT}/configs/d2it/imagenet256_xl.py",
                             [("mesh.data", "1"), ("mesh.fsdp", str(fsdp)), ("mesh.tensor", str(tensor))])
        mesh = parallel.make_mesh(config)
        tx, _ = make_optimizer(config.optimizer)
        abstract, _, _ = abstract_train_state(task.build_model, tx, mesh, parallel.rules_of(config))
        total = per_device = 0
        for leaf in jax.tree.leaves(abstract):
            total += int(np.prod(leaf.shape)) * leaf.dtype.itemsize
            per_device += int(np.prod(leaf.sharding.shard_shape(leaf.shape))) * leaf.dtype.itemsize
        assert abs(per_device - total / 8) / (total / 8) < 0.05, (fsdp, tensor, per_device, total / 8)


def test_bad_inputs_fail_with_one_clear_line(tmp_path):
    task = get_task(stage2_config())
    with pytest.raises(DataError, match=r"shape \(3, 3\).*\[4, 4\]"):
        task.prepare_grain(np.zeros((3, 3), np.int8), 2)
    with pytest.raises(DataError, match="COARSE"):
        task.prepare_grain(np.full((4, 4), 2, np.int8), 2)
    np.save(tmp_path / "g.npy", np.ones((4, 4), np.int8))
    assert task.prepare_grain(str(tmp_path / "g.npy"), 3).shape == (3, 4, 4)
    with pytest.raises(ConfigError, match="dvae_workdir is empty"):
        task.check_dvae()
    with pytest.raises(ConfigError, match="refine_depth"):
        get_task(stage2_config(model__dct__refine_depth="3"))
    with pytest.raises(NotImplementedError, match="masked"):
        get_task(stage2_config(model__dgt__formulation="masked"))


def write_synthetic_cache(path, num=96, seed=0):
    """A latent cache in the encoder's format: per class a smooth pattern plus noise, fine where it varies."""
    import json
    import os

    from array_record.python.array_record_module import ArrayRecordWriter

    from jaxmoda.d2it.encode import FORMAT, encode_record, shard_name
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    writer = ArrayRecordWriter(os.path.join(path, shard_name(0, 1)), "group_size:1")
    yy, xx = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    for i in range(num):
        label = i % 4
        z = np.stack([np.sin((xx + label) / 2.0), np.cos((yy - label) / 3.0), np.full((8, 8), label / 4.0),
                      np.sin((xx + yy) / 4.0)], -1) + 0.05 * rng.normal(size=(8, 8, 4))
        grain = (rng.random((4, 4)) < 0.25 + 0.1 * label).astype(np.uint8)
        dense = np.asarray(tok.neighbour_copy(jnp.asarray(z[None]), jnp.asarray(z[None, ::2, ::2]),
                                              jnp.asarray(grain[None], jnp.int8)))[0]
        writer.write(encode_record(dense, grain, label, False))
    writer.close()
    meta = {"format": FORMAT, "records": num, "shards": 1, "z_shape": [8, 8, 4], "grain_shape": [4, 4],
            "latent_std": 1.0, "scale_factor": 1.0, "num_classes": 4}
    with open(os.path.join(path, "metadata.json"), "w") as f:
        json.dump(meta, f)


def test_tiny_dct_learns_on_cached_latents(tmp_path):
    from jaxmoda.train.loop import train
    from jaxmoda.train.metrics import read_metrics
    write_synthetic_cache(tmp_path / "latents")
    config = stage2_config(latents=str(tmp_path / "latents"), total_steps="120", log_every="10",
                           checkpoint_every="120", **{"optimizer.learning_rate": "1e-3", "model.dct.hidden": "64"})
    train(config, str(tmp_path / "run"))
    m = read_metrics(str(tmp_path / "run"))
    first, last = m[0]["dct_loss"], np.mean([r["dct_loss"] for r in m[-3:]])
    assert last < 0.5 * first, (first, last)
    assert all(0.0 < r["bucket_fill"] <= 1.0 for r in m)


def test_end_to_end_dvae_latents_d2it_and_sample_cli(tmp_path):
    import json

    from PIL import Image

    from jaxmoda.sample import main as sample_main
    from jaxmoda.train.loop import train
    from tests.test_d2it_dvae import dvae_config
    train(dvae_config(total_steps=2, checkpoint_every=2, d2it__disc_weight="0.0"), str(tmp_path / "dvae"))
    config = stage2_config(dvae_workdir=str(tmp_path / "dvae"), total_steps="2", checkpoint_every="2",
                           num_samples="4", sample_every="2",
                           **{"d2it.encode_images": "12", "d2it.scale_factor": "0.0", "d2it.buckets": "[64]"})
    summary = train(config, str(tmp_path / "d2it"))
    assert summary["step"] == 2 and summary["last_samples"].endswith("step_000002.png")
    saved = json.load(open(tmp_path / "d2it" / "config.json"))
    meta = json.load(open(tmp_path / "dvae" / "latents" / "metadata.json"))
    assert meta["records"] == 24 and saved["d2it"]["scale_factor"] == pytest.approx(meta["scale_factor"])
    out = tmp_path / "grid.png"
    assert sample_main(["--workdir", str(tmp_path / "d2it"), "--num", "4", "--out", str(out), "--class", "3"]) == 0
    grains = np.load(tmp_path / "grid_grain.npy")
    assert grains.shape == (4, 4, 4) and Image.open(out).size == (2 * 66 + 2, 2 * 66 + 2)
    assert (tmp_path / "grid_grain.png").exists()
    # A given grain map (here: the entropy map of a photograph under the DVAE's threshold) replaces the DGT's.
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(photo)
    assert sample_main(["--workdir", str(tmp_path / "d2it"), "--num", "2", "--out", str(tmp_path / "g2.png"),
                        "--grain", str(photo)]) == 0
    assert np.all(np.load(tmp_path / "g2_grain.npy") == FINE)  # uniform noise: every region detailed
    # Serving export: DGT, DCT and the DVAE decoder in one function, bit-exact with in-process sampling.
    from jaxmoda import export, serve
    from tests.test_export import in_process
    export.export_run(str(tmp_path / "d2it"), str(tmp_path / "export"))
    labels = np.array([3, 0, 1], np.int32)
    got = serve.load(str(tmp_path / "export"))(seed=2, labels=labels)
    want = in_process(tmp_path / "d2it", lambda task, model, key, y: task.sample(model, key, y.shape[0], labels=y))(2, labels)
    assert got["images"].shape == (3, 64, 64, 3) and got["grain"].shape == (3, 4, 4)
    for k in ("images", "grain"):
        np.testing.assert_array_equal(got[k], want[k])
    # Bad input: a class out of range, a DVAE with other latent channels.
    with pytest.raises(ConfigError, match="class id 9 is out of range"):
        sample_main(["--workdir", str(tmp_path / "d2it"), "--num", "2", "--out", str(out), "--class", "9"])
    bad = get_task(stage2_config(dvae_workdir=str(tmp_path / "dvae"), model__latent_channels="8"))
    with pytest.raises(ConfigError, match="4 latent channels but config.model.latent_channels=8"):
        bad.check_dvae()


def test_ddpm_objective_trains_and_samples_copy_consistent_latents():
    task = get_task(stage2_config(objective__name="ddpm", objective__sampler="auto"))
    model = randomized(build_model(task.build_model))
    rng = np.random.default_rng(6)
    grain = random_grain(rng, 4)
    need = np.asarray(tok.required_length(grain))
    batch = {"z": jnp.asarray(rng.normal(size=(4, 8, 8, 4)), jnp.float32), "grain": grain,
             "label": jnp.arange(4, dtype=jnp.int32), "mask": jnp.asarray(np.arange(64)[None] < need[:, None])}
    loss, metrics = task.loss(model, batch, jax.random.key(0))
    assert np.isfinite(float(loss)) and float(metrics["dct_loss"]) > 0
    z = task.sample_latents(model, jax.random.key(1), batch["label"], grain)
    assert bool(jnp.all(jnp.isfinite(z))) and bool(jnp.all(tok.is_copy_consistent(z, grain)))
