"""LivePortrait's released renderer: the importer against the official key lists (written out here from
the published architecture; totals checked against the sizes the released module code implies), the
batch-norm / spectral-norm folds, the layout helpers, and a forward at 128 px with random weights."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmoda.errors import CheckpointError
from jaxmoda.moda.render import liveportrait as lp
from jaxmoda.moda.render import warp
from tests.helpers import write_torch_zip


def _conv(p, cout, cin, k, nd=2, bias=True, groups=1):
    return [(f"{p}.weight", (cout, cin // groups) + (k,) * nd)] + ([(f"{p}.bias", (cout,))] if bias else [])


def _bn(p, c):
    return [(f"{p}.{t}", (c,)) for t in ("weight", "bias", "running_mean", "running_var")] + \
        [(f"{p}.num_batches_tracked", ())]


def _lin(p, o, i):
    return [(f"{p}.weight", (o, i)), (f"{p}.bias", (o,))]


def _ln(p, c):
    return [(f"{p}.weight", (c,)), (f"{p}.bias", (c,))]


def _sn(p, cout, cin, k, bias=True):
    return ([(f"{p}.bias", (cout,))] if bias else []) + [(f"{p}.weight_orig", (cout, cin, k, k)),
                                                         (f"{p}.weight_u", (cout,)), (f"{p}.weight_v", (cin * k * k,))]


def official_keys():
    """Key -> shape of the five released files, spelled out from the architecture."""
    f = _conv("first.conv", 64, 3, 3) + _bn("first.norm", 64)
    for i, (a, b) in enumerate(((64, 128), (128, 256))):
        f += _conv(f"down_blocks.{i}.conv", b, a, 3) + _bn(f"down_blocks.{i}.norm", b)
    f += _conv("second", 512, 256, 1)
    for i in range(6):
        q = f"resblocks_3d.3dr{i}"
        f += _conv(f"{q}.conv1", 32, 32, 3, 3) + _conv(f"{q}.conv2", 32, 32, 3, 3) + _bn(f"{q}.norm1", 32) + _bn(f"{q}.norm2", 32)
    dims, depths, P = (96, 192, 384, 768), (3, 3, 9, 3), "detector."
    m = _conv(P + "downsample_layers.0.0", 96, 3, 4) + _ln(P + "downsample_layers.0.1", 96)
    for i in range(1, 4):
        m += _ln(P + f"downsample_layers.{i}.0", dims[i - 1]) + _conv(P + f"downsample_layers.{i}.1", dims[i], dims[i - 1], 2)
    for s in range(4):
        d = dims[s]
        for b in range(depths[s]):
            q = P + f"stages.{s}.{b}"
            m += _conv(f"{q}.dwconv", d, d, 7, groups=d) + _ln(f"{q}.norm", d) + _lin(f"{q}.pwconv1", 4 * d, d)
            m += [(f"{q}.grn.gamma", (1, 1, 1, 4 * d)), (f"{q}.grn.beta", (1, 1, 1, 4 * d))] + _lin(f"{q}.pwconv2", d, 4 * d)
    m += _ln(P + "norm", 768)
    for head, n in (("fc_kp", 63), ("fc_scale", 1), ("fc_pitch", 66), ("fc_yaw", 66), ("fc_roll", 66), ("fc_t", 3), ("fc_exp", 63)):
        m += _lin(P + head, n, 768)
    D, w = "dense_motion_network.", []
    for i in range(5):
        a, b = (110 if i == 0 else min(1024, 32 * 2 ** i)), min(1024, 32 * 2 ** (i + 1))
        w += _conv(D + f"hourglass.encoder.down_blocks.{i}.conv", b, a, 3, 3) + _bn(D + f"hourglass.encoder.down_blocks.{i}.norm", b)
    for j, i in enumerate(reversed(range(5))):
        a, b = (1 if i == 4 else 2) * min(1024, 32 * 2 ** (i + 1)), min(1024, 32 * 2 ** i)
        w += _conv(D + f"hourglass.decoder.up_blocks.{j}.conv", b, a, 3, 3) + _bn(D + f"hourglass.decoder.up_blocks.{j}.norm", b)
    w += _conv(D + "hourglass.decoder.conv", 142, 142, 3, 3) + _bn(D + "hourglass.decoder.norm", 142)
    w += _conv(D + "mask", 22, 142, 7, 3) + _conv(D + "compress", 4, 32, 1, 3) + _bn(D + "norm", 4)
    w += _conv(D + "occlusion", 1, 142 * 16, 7) + _conv("third.conv", 256, 512, 3) + _bn("third.norm", 256)
    w += _conv("fourth", 256, 256, 1)
    g = _conv("fc", 512, 256, 3)
    for name, fin, fout in [(f"G_middle_{i}", 512, 512) for i in range(6)] + [("up_0", 512, 256), ("up_1", 256, 64)]:
        fm = min(fin, fout)
        g += _sn(f"{name}.conv_0", fm, fin, 3) + _sn(f"{name}.conv_1", fout, fm, 3)
        g += _sn(f"{name}.conv_s", fout, fin, 1, bias=False) if fin != fout else []
        for norm, nc in [("norm_0", fin), ("norm_1", fm)] + ([("norm_s", fin)] if fin != fout else []):
            g += _conv(f"{name}.{norm}.mlp_shared.0", 128, 256, 3) + _conv(f"{name}.{norm}.mlp_gamma", nc, 128, 3)
            g += _conv(f"{name}.{norm}.mlp_beta", nc, 128, 3)
    g += _conv("conv_img.0", 12, 64, 3)
    s = {}
    for net, sizes in (("retarget_shoulder", (126, 128, 128, 64, 65)), ("retarget_mouth", (65, 128, 128, 64, 63)),
                       ("retarget_eye", (66, 256, 256, 128, 128, 64, 63))):
        s[net] = []
        for i in range(len(sizes) - 1):
            s[net] += _lin(f"module.mlp.{2 * i}", sizes[i + 1], sizes[i])
    return {"F": f, "M": m, "W": w, "G": g, "S": s}


def test_key_lists_have_the_released_sizes():
    keys = official_keys()
    count = lambda rows: (len(rows), sum(math.prod(s) for k, s in rows if not k.endswith("num_batches_tracked")))
    assert count(keys["F"]) == (107, 837_888)
    assert count(keys["M"]) == (212, 28_118_728)
    assert count(keys["W"]) == (97, 45_536_585)
    assert count(keys["G"]) == (182, 55_438_348)
    assert [count(keys["S"][n]) for n in ("retarget_shoulder", "retarget_mouth", "retarget_eye")] == \
        [(8, 45_249), (8, 37_311), (12, 144_703)]


def synthetic(rows, rng, scale=0.02):
    out = {}
    for k, shape in rows:
        if k.endswith("num_batches_tracked"):
            out[k] = np.array(7, np.int64)
        elif k.endswith("running_var"):
            out[k] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif k.endswith(".weight") and len(shape) == 1:  # norm scales
            out[k] = rng.uniform(0.8, 1.2, shape).astype(np.float32)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            out[k] = (rng.standard_normal(shape) * (scale if len(shape) == 1 else 1 / math.sqrt(fan_in))).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The five files, written in torch's zip format with the official names (random values)."""
    rng = np.random.default_rng(0)
    keys = official_keys()
    root = tmp_path_factory.mktemp("liveportrait")
    (root / "base_models").mkdir()
    (root / "retargeting_models").mkdir()
    states = {k: synthetic(keys[k], rng) for k in "FMWG"}
    for k in "FMWG":
        write_torch_zip(root / "base_models" / lp.FILES[k], states[k])
    states["S"] = {net: synthetic(rows, rng) for net, rows in keys["S"].items()}
    write_torch_zip(root / "retargeting_models" / lp.FILES["S"], states["S"])
    return root, states


def test_import_folds_norms_and_checks_every_key(released, tmp_path):
    root, states = released
    params = lp.load(str(root))
    f = states["F"]
    bn = params["F"]["first.norm"]
    want = f["first.norm.weight"] / np.sqrt(f["first.norm.running_var"] + 1e-5)
    np.testing.assert_allclose(bn["scale"], want, rtol=1e-6)
    np.testing.assert_allclose(bn["bias"], f["first.norm.bias"] - f["first.norm.running_mean"] * want, rtol=1e-5, atol=1e-7)
    g = states["G"]
    w, u, v = (g[f"up_0.conv_s.{t}"].astype(np.float64) for t in ("weight_orig", "weight_u", "weight_v"))
    np.testing.assert_allclose(params["G"]["up_0.conv_s"]["w"], np.transpose(w / (u @ w.reshape(256, -1) @ v), (2, 3, 1, 0)),
                               rtol=1e-5)
    assert "b" not in params["G"]["up_0.conv_s"]
    m = states["M"]
    np.testing.assert_array_equal(params["M"]["fc_exp"]["w"], m["detector.fc_exp.weight"].T)
    np.testing.assert_array_equal(params["S"]["retarget_eye.10"]["w"], states["S"]["retarget_eye"]["module.mlp.10.weight"].T)
    bn_channels = sum(shape[0] for k, shape in official_keys()["W"] if k.endswith("running_mean"))
    assert lp.param_count(params["W"]) == 45_536_585 - 2 * bn_channels  # each batch norm: 4 vectors folded into 2
    bad = dict(states["W"])
    del bad["dense_motion_network.mask.bias"]
    bad["fourth.weight"] = bad["fourth.weight"][:, :128]
    write_torch_zip(tmp_path / lp.FILES["W"], bad)
    for k in "FMGS":
        (tmp_path / lp.FILES[k]).write_bytes((root / ("retargeting_models" if k == "S" else "base_models") / lp.FILES[k]).read_bytes())
    with pytest.raises(CheckpointError, match=r"warping_module.pth: not a LivePortrait warping module state dict: 1 missing "
                                              r"\(e.g. dense_motion_network.mask.bias\); 1 of the wrong shape \(e.g. fourth.weight"):
        lp.load(str(tmp_path))
    (tmp_path / lp.FILES["G"]).unlink()
    with pytest.raises(CheckpointError, match="lacks spade_generator.pth"):
        lp.load(str(tmp_path))


def test_layout_helpers():
    x = jnp.arange(2 * 3 * 3 * 64, dtype=jnp.float32).reshape(2, 3, 3, 64)  # channel c*16 + d, c < 4
    v = lp.to_volume(x)
    assert v.shape == (2, 16, 3, 3, 4) and float(v[0, 5, 1, 2, 3]) == float(x[0, 1, 2, 3 * 16 + 5])
    np.testing.assert_array_equal(lp.from_volume(v), x)
    y = jnp.arange(1 * 2 * 2 * 12, dtype=jnp.float32).reshape(1, 2, 2, 12)  # torch: out[c, 2h+i, 2w+j] = in[c*4+i*2+j, h, w]
    ps = lp.pixel_shuffle(y)
    assert ps.shape == (1, 4, 4, 3) and float(ps[0, 2 * 1 + 1, 2 * 0 + 0, 2]) == float(y[0, 1, 0, 2 * 4 + 1 * 2 + 0])


def test_forward_at_128_pixels(released):
    root, _ = released
    params = jax.tree.map(jnp.asarray, lp.load(str(root)))
    src = jnp.asarray(np.random.default_rng(1).uniform(0, 1, (1, 128, 128, 3)), jnp.float32)
    vol = jax.jit(lp.appearance)(params["F"], src)
    assert vol.shape == (1, 16, 32, 32, 32)
    info = jax.jit(lp.motion_info)(params["M"], src)
    assert info["kp"].shape == (1, 21, 3) and info["pose"].shape == (1, 3) and lp.source_motion(info).shape == (1, 70)
    kp = info["kp"]
    feats = jax.jit(lp.warp_features)(params["W"], vol, kp, kp)
    # With equal source and driving keypoints every sparse flow is the grid itself, so the mask-weighted
    # deformation is that grid (LivePortrait's align_corners=True coordinates), whatever the weights.
    np.testing.assert_allclose(feats["deformation"][0], warp.identity_grid(16, 32, 32, align_corners=True), atol=1e-5)
    assert feats["out"].shape == (1, 32, 32, 256) and feats["occlusion"].shape == (1, 32, 32, 1)
    img = jax.jit(lp.generate)(params["G"], feats["out"])
    assert img.shape == (1, 256, 256, 3) and float(img.min()) >= 0 and float(img.max()) <= 1
    kp_d = lp.stitch(params["S"], kp, kp + 0.05)
    assert kp_d.shape == (1, 21, 3) and float(jnp.abs(kp_d - kp - 0.05).max()) > 0


def test_reenact_drives_one_source_with_several_motions_and_talk_can_load_it(released, tmp_path):
    from jaxmoda import talk
    root, _ = released
    params = jax.tree.map(jnp.asarray, lp.load(str(root)))
    src = jnp.asarray(np.random.default_rng(2).uniform(0, 1, (1, 128, 128, 3)), jnp.float32)
    info = lp.motion_info(params["M"], src)
    motion = lp.source_motion(info)
    driving = jnp.concatenate([motion, motion.at[:, -2].add(10.0)])  # the same pose, then 10 degrees more yaw
    frames = jax.jit(lp.reenact)(params, src, info["kp"], motion, driving)
    assert frames.shape == (2, 256, 256, 3) and float(jnp.abs(frames[0] - frames[1]).max()) > 0
    # render reads the source's keypoints and motion itself; the same frame up to float32 reordering in a
    # deep random-weight network (a wiring error would change it everywhere).
    diff = jnp.abs(jax.jit(lp.render)(params, src, motion) - frames[:1])
    assert float(diff.mean()) < 1e-3 and float(diff.max()) < 2e-2
    loaded = talk.load_liveportrait(str(root))
    assert loaded.task.image_size == 256
    with pytest.raises(CheckpointError, match="lacks appearance_feature_extractor.pth"):
        talk.load_liveportrait(str(tmp_path))
