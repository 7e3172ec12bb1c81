"""The FID InceptionV3: converter checks, batch-norm folding and layouts, output shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmoda.eval import inception


def synthetic_state(seed=0):
    rng = np.random.default_rng(seed)
    state = {}
    for k, shape in inception.expected_torch_shapes().items():
        if k.endswith("running_var"):
            state[k] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif k.endswith("conv.weight"):
            state[k] = (rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)  # He
        elif k.endswith("bn.weight"):
            state[k] = rng.uniform(0.8, 1.2, shape).astype(np.float32)
        else:
            state[k] = (0.01 * rng.normal(size=shape)).astype(np.float32)
    state["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.int64(0)  # ignored, as in every torch checkpoint
    return state


def test_converter_checks_every_key_and_shape():
    state = synthetic_state()
    inception.from_torch_state_dict(state)
    bad = dict(state)
    del bad["Mixed_6e.branch7x7dbl_5.conv.weight"]
    bad["extra.weight"] = np.zeros(3)
    bad["fc.bias"] = np.zeros(1000)
    with pytest.raises(ValueError, match=r"1 missing \(e.g. Mixed_6e.branch7x7dbl_5.conv.weight\); 1 unexpected "
                                         r"\(e.g. extra.weight\); 1 of the wrong shape \(e.g. fc.bias"):
        inception.from_torch_state_dict(bad)


def test_folded_conv_matches_conv_then_batch_norm_in_torch_layout():
    state = synthetic_state(1)
    params = inception.from_torch_state_dict(state)
    x = np.random.default_rng(2).normal(size=(1, 9, 9, 3)).astype(np.float32)
    got = np.asarray(inception._conv(params, "Conv2d_1a_3x3", jnp.asarray(x)))
    w = state["Conv2d_1a_3x3.conv.weight"]  # [out, in, kh, kw], stride 2, no padding
    out = np.zeros((1, 4, 4, 32))
    for i in range(4):
        for j in range(4):
            patch = x[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]  # [kh, kw, in]
            out[0, i, j] = np.einsum("hwc,ochw->o", patch, w)
    bn = {t: state[f"Conv2d_1a_3x3.bn.{t}"] for t in ("weight", "bias", "running_mean", "running_var")}
    want = np.maximum((out - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-3) * bn["weight"] + bn["bias"], 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_average_pool_ignores_padding():
    x = jnp.ones((1, 4, 4, 2))
    np.testing.assert_allclose(np.asarray(inception._avg_pool_exclude_pad(x)), 1.0)  # corners too


def test_feature_shapes_at_299_and_a_small_forward():
    params = jax.tree.map(jnp.asarray, inception.from_torch_state_dict(synthetic_state()))
    shapes = jax.eval_shape(inception.features, params, jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32))
    assert shapes["pool"].shape == (2, 2048) and shapes["logits"].shape == (2, 1008)
    assert shapes["spatial"].shape == (2, 17 * 17 * 7)
    x = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (2, 80, 80, 3)), jnp.float32)
    out = jax.jit(lambda p, x: inception.features(p, x, size=75))(params, x)
    assert out["pool"].shape == (2, 2048) and bool(jnp.all(jnp.isfinite(out["logits"])))
    assert float(jnp.abs(out["pool"][0] - out["pool"][1]).max()) > 0  # different images, different features
    with pytest.raises(ValueError, match=r"images must be \[N, H, W, 3\]"):
        inception.features(params, jnp.zeros((2, 8, 8)))


def test_weights_files_load_and_damaged_ones_are_clear(tmp_path):
    from jaxmoda.errors import CheckpointError
    state = synthetic_state()
    path = tmp_path / "pt_inception.npz"
    np.savez(path, **state)
    params = inception.load(str(path))
    np.testing.assert_allclose(params["fc"]["b"], state["fc.bias"])
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.npz could not be read"):
        inception.load(str(tmp_path / "cut.npz"))
    partial = {k: v for k, v in state.items() if not k.startswith("Mixed_7c")}
    np.savez(tmp_path / "partial.npz", **partial)
    with pytest.raises(CheckpointError, match="partial.npz: not a pytorch-fid FID Inception state dict: 45 missing"):
        inception.load(str(tmp_path / "partial.npz"))
    with pytest.raises(CheckpointError, match="unknown format .ckpt"):
        (tmp_path / "w.ckpt").write_bytes(b"x")
        inception.load(str(tmp_path / "w.ckpt"))
