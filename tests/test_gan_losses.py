"""PatchGAN discriminator, hinge losses and adaptive weight, the one-backward GAN recipe, LPIPS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmoda.errors import CheckpointError, ConfigError
from jaxmoda.nn import gan, perceptual
from jaxmoda.nn.patchgan import PatchDiscriminator, patch_output_size
from jaxmoda.train.state import build_model

# ---------------------------------------------------------------- PatchGAN

@pytest.mark.parametrize("size,n_layers,want", [(32, 3, 2), (64, 3, 6), (32, 2, 6), (64, 2, 14), (256, 3, 30)])
def test_patch_output_size_formula(size, n_layers, want):
    assert patch_output_size(size, n_layers) == want


@pytest.mark.parametrize("size,n_layers,want", [(32, 3, 2), (64, 3, 6), (32, 2, 6), (64, 2, 14)])
def test_patch_discriminator_output_shape(size, n_layers, want):
    d = build_model(lambda r: PatchDiscriminator(3, ndf=8, n_layers=n_layers, rngs=r))
    y = nnx.jit(lambda m, x: m(x))(d, jnp.zeros((2, size, size, 3)))
    assert y.shape == (2, want, want, 1) and bool(jnp.all(jnp.isfinite(y)))


def test_patch_discriminator_layout_and_names():
    with nnx.use_eager_sharding(False):
        d = nnx.eval_shape(lambda: PatchDiscriminator(3, ndf=64, n_layers=3, rngs=nnx.Rngs(0)))
    params = nnx.state(d, nnx.Param)
    shapes = {"/".join(map(str, k)): tuple(v.shape) for k, v in nnx.to_flat_state(params)}
    assert shapes["conv_in/kernel"] == (4, 4, 3, 64) and shapes["conv_in/bias"] == (64,)
    assert [shapes[f"convs/{i}/kernel"] for i in range(3)] == [(4, 4, 64, 128), (4, 4, 128, 256), (4, 4, 256, 512)]
    assert "convs/0/bias" not in shapes                       # bias-free in front of a norm, as the original
    assert shapes["norms/2/scale"] == (512,) and shapes["conv_out/kernel"] == (4, 4, 512, 1)
    specs = nnx.to_pure_dict(nnx.get_partition_spec(params))
    assert tuple(specs["conv_in"]["kernel"]) == ("conv_h", "conv_w", "conv_in", "conv_out")
    assert tuple(specs["norms"][0]["scale"]) == ("conv_out",)
    none = build_model(lambda r: PatchDiscriminator(3, ndf=8, n_layers=2, norm="none", rngs=r))
    assert none.convs[0].bias is not None and len(none.norms) == 0
    std = float(np.std(np.asarray(none.convs[1].kernel[...])))  # 4*4*16*32 draws
    assert 0.018 < std < 0.022                                 # pix2pix init N(0, 0.02)
    with pytest.raises(ConfigError, match="norm='batch'"):
        PatchDiscriminator(3, ndf=8, norm="batch", rngs=nnx.Rngs(0))


# ---------------------------------------------------------------- losses

def test_hinge_losses_exact_values():
    real = jnp.array([2.0, 0.5, -1.0, 0.0])     # relu(1 - real) = 0, 0.5, 2, 1 -> mean 0.875
    fake = jnp.array([-2.0, -0.5, 1.0, 3.0])    # relu(1 + fake) = 0, 0.5, 2, 4 -> mean 1.625
    assert float(gan.hinge_d_loss(real, fake)) == pytest.approx(0.5 * (0.875 + 1.625))
    assert float(gan.hinge_g_loss(fake)) == pytest.approx(-0.375)
    assert float(gan.hinge_d_loss(jnp.ones((2, 3, 3, 1)), -jnp.ones((2, 3, 3, 1)))) == 0.0


def test_adaptive_weight_clips_and_stops_gradient():
    assert float(gan.adaptive_weight(1.0, 4.0)) == pytest.approx(1.0 / (4.0 + 1e-4))
    assert float(gan.adaptive_weight(10.0, 1.0)) == pytest.approx(0.75)
    assert float(gan.adaptive_weight(10.0, 1.0, max_weight=1e4)) == pytest.approx(10.0 / (1.0 + 1e-4))
    assert float(gan.adaptive_weight(0.0, 1.0)) == 0.0
    assert float(gan.adaptive_weight(1.0, 0.0, eps=1e-4)) == pytest.approx(0.75)
    g = jax.grad(lambda a: gan.adaptive_weight(a, 4.0) * a)(1.0)
    assert float(g) == pytest.approx(1.0 / (4.0 + 1e-4))       # only the explicit factor a carries gradient


def test_disc_factor_traced():
    f = jax.jit(lambda s: gan.disc_factor(s, 100))
    assert [float(f(jnp.int32(s))) for s in (0, 99, 100, 5000)] == [0.0, 0.0, 1.0, 1.0]
    assert float(gan.disc_factor(0, 0)) == 1.0


def test_last_layer_grad_norm_matches_full_grad():
    h = jax.random.normal(jax.random.key(0), (5, 4))
    w = jax.random.normal(jax.random.key(1), (4, 3))
    target = jnp.ones((5, 3))

    def loss(w_):
        return jnp.mean(jnp.square(h @ w_ - target))

    want = np.linalg.norm(np.asarray(jax.grad(loss)(w)))
    assert float(gan.last_layer_grad_norm(loss, w)) == pytest.approx(want, rel=1e-5)
    # Usable inside a differentiated, jitted loss; contributes no gradient itself.
    outer = jax.jit(jax.grad(lambda w_: gan.last_layer_grad_norm(loss, w_) + 0.0 * jnp.sum(w_)))(w)
    np.testing.assert_array_equal(np.asarray(outer), 0.0)


def test_one_backward_pass_gives_each_group_only_its_own_gradient():
    """d(L_ae(ae, sg(disc)) + L_disc(disc, sg(recon)))/d group == the group's own loss gradient."""
    disc = build_model(lambda r: PatchDiscriminator(3, ndf=4, n_layers=1, rngs=r), seed=1)
    d_graph, d_params = nnx.split(disc, nnx.Param)
    d_params = nnx.to_pure_dict(d_params)
    x = jax.random.uniform(jax.random.key(2), (2, 16, 16, 3), minval=-1, maxval=1)
    kg = jax.random.split(jax.random.key(3), 2)
    ae_params = {"enc": 0.3 * jax.random.normal(kg[0], (3, 8)), "dec": 0.3 * jax.random.normal(kg[1], (8, 3))}
    factor = gan.disc_factor(jnp.int32(5), 0)

    def d_apply(p, img):
        return nnx.merge(d_graph, p)(img)

    def decode_to_last(ae, img):
        return jnp.tanh(img @ ae["enc"])

    def last(h, w):
        return jnp.tanh(h @ w)

    def l_ae(ae, dp):
        h = decode_to_last(ae, x)
        recon = last(h, ae["dec"])
        rec = jnp.mean(jnp.abs(recon - x))
        rec_n = gan.last_layer_grad_norm(lambda w: jnp.mean(jnp.abs(last(h, w) - x)), ae["dec"])
        g_n = gan.last_layer_grad_norm(lambda w: gan.hinge_g_loss(d_apply(dp, last(h, w))), ae["dec"])
        weight = gan.adaptive_weight(rec_n, g_n, max_weight=1e4)
        return rec + weight * factor * gan.hinge_g_loss(d_apply(dp, recon)), recon

    def l_disc(dp, recon):
        return factor * gan.hinge_d_loss(d_apply(dp, x), d_apply(dp, recon))

    def combined(params, decouple=True):
        sg = jax.lax.stop_gradient if decouple else (lambda t: t)
        la, recon = l_ae(params["ae"], sg(params["disc"]))
        return la + l_disc(params["disc"], sg(recon))

    @jax.jit
    def run(params):
        ae, dp = params["ae"], params["disc"]
        recon0 = l_ae(ae, dp)[1]
        own = {"ae": jax.grad(lambda a: l_ae(a, dp)[0])(ae), "disc": jax.grad(lambda d: l_disc(d, recon0))(dp)}
        return jax.grad(combined)(params), jax.grad(lambda q: combined(q, decouple=False))(params), own

    grads, naive, own = run({"ae": ae_params, "disc": d_params})
    g_ae, g_disc = own["ae"], own["disc"]
    for got, want in ((grads["ae"], g_ae), (grads["disc"], g_disc)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    assert all(float(jnp.abs(v).max()) > 0 for v in jax.tree.leaves(g_ae))
    # Without the stop_gradients both groups pick up the other loss's gradient (the test can fail).
    assert not np.allclose(np.asarray(naive["ae"]["dec"]), np.asarray(g_ae["dec"]), rtol=1e-4)
    assert not np.allclose(np.asarray(naive["disc"]["conv_out"]["kernel"]),
                           np.asarray(g_disc["conv_out"]["kernel"]), rtol=1e-4)


# ---------------------------------------------------------------- LPIPS

@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory):
    return perceptual.write_synthetic_lpips_npz(tmp_path_factory.mktemp("lpips") / "w.npz", seed=0)


def _images(seed, shape=(2, 32, 32, 3)):
    return jax.random.uniform(jax.random.key(seed), shape, minval=-1, maxval=1)


def test_lpips_identity_positive_symmetric(lpips_file):
    p = perceptual.load_lpips_weights(lpips_file)
    x, y = _images(0), _images(1)
    dist = jax.jit(perceptual.lpips_distance)
    np.testing.assert_array_equal(np.asarray(dist(p, x, x)), 0.0)
    np.testing.assert_array_equal(np.asarray(dist(p, x, jnp.array(x))), 0.0)
    dxy, dyx = np.asarray(dist(p, x, y)), np.asarray(dist(p, y, x))
    assert dxy.shape == (2,) and np.all(dxy > 0)
    np.testing.assert_allclose(dxy, dyx, rtol=1e-6)
    small = np.asarray(dist(p, x, x + 0.01 * y))
    assert np.all(small < dxy)
    grad = jax.jit(jax.grad(lambda a, b: perceptual.lpips_distance(p, a, b).sum()))
    gx, g0 = grad(x, y), grad(x, x)
    assert np.all(np.isfinite(np.asarray(gx))) and float(jnp.abs(gx).max()) > 0
    assert np.all(np.isfinite(np.asarray(g0)))


def test_lpips_loader_round_trip(lpips_file):
    p = perceptual.load_lpips_weights(lpips_file)
    raw = dict(np.load(lpips_file))
    assert set(raw) == set(perceptual.expected_shapes()) and len(raw) == 31
    np.testing.assert_array_equal(np.asarray(p["vgg"]["conv3_2"]["kernel"]),
                                  np.transpose(raw["vgg.conv3_2.weight"], (2, 3, 1, 0)))
    np.testing.assert_array_equal(np.asarray(p["vgg"]["conv1_1"]["bias"]), raw["vgg.conv1_1.bias"])
    assert [w.shape for w in p["lin"]] == [(64,), (128,), (256,), (512,), (512,)]
    np.testing.assert_array_equal(np.asarray(p["lin"][4]), raw["lin.4.weight"].reshape(-1))
    assert p["vgg"]["conv5_3"]["kernel"].shape == (3, 3, 512, 512)


def _bad_file(tmp_path, lpips_file, edit):
    arrays = dict(np.load(lpips_file))
    edit(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError) as e:
        perceptual.load_lpips_weights(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_lpips_loader_rejects_missing_wrong_shape_extra(tmp_path, lpips_file):
    msg = _bad_file(tmp_path, lpips_file, lambda a: a.pop("vgg.conv4_2.bias"))
    assert "missing keys vgg.conv4_2.bias" in msg
    msg = _bad_file(tmp_path, lpips_file, lambda a: a.update({"lin.2.weight": np.ones((1, 128, 1, 1), np.float32)}))
    assert "wrong shapes lin.2.weight (1, 128, 1, 1) (want (1, 256, 1, 1))" in msg
    msg = _bad_file(tmp_path, lpips_file, lambda a: a.update({"vgg.conv6_1.weight": np.ones(3, np.float32)}))
    assert "unexpected keys vgg.conv6_1.weight" in msg
    msg = _bad_file(tmp_path, lpips_file, lambda a: a.update({"lin.0.weight": -a["lin.0.weight"]}))
    assert "negative entries in lin.0.weight" in msg

    def both(a):
        a.pop("lin.1.weight")
        a["extra"] = np.zeros(2, np.float32)
    msg = _bad_file(tmp_path, lpips_file, both)
    assert "missing keys lin.1.weight" in msg and "unexpected keys extra" in msg
    with pytest.raises(CheckpointError, match="does not exist"):
        perceptual.load_lpips_weights(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable .npz"):
        perceptual.load_lpips_weights(tmp_path / "junk.npz")


def test_convert_torch_state_dicts(tmp_path, lpips_file):
    raw = dict(np.load(lpips_file))
    names = [n for n, _, _ in perceptual.VGG_CONVS]
    vgg = {}
    for name, idx in zip(names, perceptual.TORCHVISION_CONV_INDICES):
        vgg[f"features.{idx}.weight"] = raw[f"vgg.{name}.weight"]
        vgg[f"features.{idx}.bias"] = raw[f"vgg.{name}.bias"]
    vgg["classifier.0.weight"] = np.zeros((4, 3), np.float32)          # the FC head is ignored
    lin = {f"lin{k}.model.1.weight": raw[f"lin.{k}.weight"] for k in range(5)}
    out = perceptual.convert_torch_state_dicts(vgg, lin)
    np.savez(tmp_path / "conv.npz", **out)
    p1, p2 = perceptual.load_lpips_weights(tmp_path / "conv.npz"), perceptual.load_lpips_weights(lpips_file)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(CheckpointError, match=r"missing features\.28\.bias; unexpected features\.30\.weight"):
        bad = dict(vgg)
        bad["features.30.weight"] = bad.pop("features.28.bias")
        perceptual.convert_torch_state_dicts(bad, lin)
    with pytest.raises(CheckpointError, match=r"wrong shapes vgg\.conv1_1\.weight"):
        perceptual.convert_torch_state_dicts({**vgg, "features.0.weight": np.zeros((64, 3, 5, 5), np.float32)}, lin)
