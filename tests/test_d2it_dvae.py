"""The Dynamic VAE: shapes per grain, neighbour copying inside the model, one compile, learning."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoda.d2it.grains import COARSE, FINE
from jaxmoda.d2it.tokens import is_copy_consistent
from jaxmoda.tasks import get_task
from jaxmoda.train.setup import build_training
from jaxmoda.train.state import abstract_model, build_model
from tests.helpers import ROOT, load_test_config

SMALL = {"model.encoder.ch": "8", "model.decoder.ch": "8", "model.discriminator.ndf": "8", "batch_size": "8",
         "d2it.threshold_fit_images": "32", "num_samples": "0", "progress_bar": "false", "tensorboard": "false"}


def dvae_config(**overrides):
    return load_test_config(f"{ROOT}/configs/d2it/dvae_tiny.py", SMALL, **overrides)


def test_encoder_shapes_per_grain_and_decoder_shape():
    task = get_task(dvae_config())
    model = build_model(task.build_model)
    x = jnp.asarray(task.example_batch(2)["image"])
    moments = model.encoder(x)
    assert moments[8][0].shape == (2, 8, 8, 4) and moments[8][1].shape == (2, 8, 8, 4)
    assert moments[16][0].shape == (2, 4, 4, 4)
    grain = jnp.asarray(np.random.default_rng(0).integers(0, 2, (2, 4, 4)), jnp.int8)
    z, kl = model.encode(x, grain)
    assert z.shape == (2, 8, 8, 4) and kl.shape == (2,) and bool(jnp.all(kl >= 0))
    assert bool(jnp.all(is_copy_consistent(z, grain)))
    # Coarse blocks hold the coarse head's mean, fine blocks the fine head's.
    zc, zf = np.asarray(moments[16][0]), np.asarray(moments[8][0])
    g = np.asarray(grain)
    for b in range(2):
        for i in range(4):
            for j in range(4):
                block = np.asarray(z)[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                want = np.broadcast_to(zc[b, i, j], block.shape) if g[b, i, j] == COARSE else zf[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                np.testing.assert_array_equal(block, want)
    assert model.decode(z).shape == (2, 64, 64, 3)


def test_grain_maps_follow_entropy():
    task = get_task(dvae_config())
    flat = np.zeros((1, 64, 64, 3), np.float32)
    noisy = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    assert np.all(np.asarray(task.grain_map(jnp.asarray(flat))) == COARSE)
    assert np.all(np.asarray(task.grain_map(jnp.asarray(noisy))) == FINE)


def test_train_step_compiles_once_across_grain_maps_and_learns():
    """A fixed batch of 8 patches: after 60 steps the L1 must be under 60% of the first step's."""
    config = dvae_config(optimizer__learning_rate="2e-3", optimizer__warmup_steps="0", d2it__disc_start="100000")
    run = build_training(config)
    batch = run.global_batch(next(run.task.data_iterator(0, 1)))
    other = run.global_batch(next(run.task.data_iterator(0, 1)))
    state, l1 = run.state, []
    for i in range(60):
        state, m = run.step(state, batch if i % 10 else other)  # different images, different grain maps
        if i % 10:
            l1.append(float(m["l1"]))
    assert run.step.cache_size() == 1
    assert np.mean(l1[-5:]) < 0.6 * l1[0], (l1[0], l1[-5:])
    assert 0.0 < float(m["fine_ratio"]) < 1.0


def test_paper_scale_and_fashion_mnist_configs_have_the_right_shapes():
    """256 px: fine 32x32 and coarse 16x16 latents, 256x256x3 out (shapes only, nothing computed)."""
    for spec, size, ch in ((f"{ROOT}/configs/d2it/dvae_256.py:ffhq", 256, 3), (f"{ROOT}/configs/d2it/dvae_fmnist.py", 32, 1)):
        config = load_test_config(spec, {"d2it.fine_ratio": "1.0"})  # r=1: no thresholds to fit
        task = get_task(config)
        graphdef, params = abstract_model(task.build_model)
        x = jax.ShapeDtypeStruct((2, size, size, ch), jnp.float32)
        moments = jax.eval_shape(lambda p, x: nnx.merge(graphdef, p).encoder(x), params, x)
        assert moments[8][0].shape == (2, size // 8, size // 8, 4) and moments[16][0].shape == (2, size // 16, size // 16, 4)
        out = jax.eval_shape(lambda p, z: nnx.merge(graphdef, p).decode(z), params,
                             jax.ShapeDtypeStruct((2, size // 8, size // 8, 4), jnp.float32))
        assert out.shape == (2, size, size, ch)


def test_perceptual_and_gan_terms_train(tmp_path):
    """With LPIPS weights from a (synthetic) file and the discriminator on from step 0, a step is finite."""
    from jaxmoda.nn.perceptual import write_synthetic_lpips_npz
    path = write_synthetic_lpips_npz(str(tmp_path / "lpips.npz"), seed=0)
    config = dvae_config(d2it__lpips_weights=path, d2it__disc_start="0", batch_size="2")
    run = build_training(config, jax.devices()[:1])
    batch = run.global_batch(next(run.task.data_iterator(0, 1)))
    state, m = run.step(run.state, batch)
    state, m = run.step(state, batch)
    assert run.task.lpips is not None
    for key in ("loss", "l1", "g_loss", "d_loss", "d_weight"):
        assert np.isfinite(float(m[key])), key
    assert float(m["loss"]) > float(m["l1"])  # the perceptual and GAN terms add to the L1
