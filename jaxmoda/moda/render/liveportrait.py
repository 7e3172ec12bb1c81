"""LivePortrait's released renderer (KwaiVGI/LivePortrait, models.yaml sizes) as pure JAX functions over
imported weights: appearance extractor F, motion extractor M (ConvNeXt-V2-tiny), warping module W
(dense-motion hourglass + occlusion), SPADE generator G and the stitching MLP S. Channels last.

    params = load("pretrained_weights/liveportrait")        # the folder holding the five .pth files
    frames = render(params, source01, driving_motion70)       # [B, 512, 512, 3] in [0, 1]

`load` reads appearance_feature_extractor.pth, motion_extractor.pth, warping_module.pth,
spade_generator.pth and stitching_retargeting_module.pth without torch (jaxmoda.eval.torchfile),
checks every key and shape of each against the architecture, folds batch norms (inference statistics,
eps 1e-5) and the generator's spectral norms (W = weight_orig / (u . W v) with the stored u, v) and
transposes kernels. Layout facts reproduced here: the 2-D <-> 3-D reshapes take channel c*16 + d;
the dense-motion input channel is k*5 + j (k = 0 background, j = 0 heatmap); LivePortrait's grids are
align_corners=True coordinates sampled with align_corners=False (as in its code); PixelShuffle order.
The forward follows the published architecture; it has not been compared with a PyTorch run of the
released weights here (no torch), so treat outputs as unverified until checked on real files.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmoda.convert.core import StateReader
from jaxmoda.moda import motion as mo
from jaxmoda.moda.render import warp

FILES = {"F": "appearance_feature_extractor.pth", "M": "motion_extractor.pth", "W": "warping_module.pth",
         "G": "spade_generator.pth", "S": "stitching_retargeting_module.pth"}
DEPTH, VOL_CH, KP, BINS = 16, 32, 21, 66
CNX_DEPTHS, CNX_DIMS = (3, 3, 9, 3), (96, 192, 384, 768)
HEADS = {"fc_kp": 3 * KP, "fc_scale": 1, "fc_pitch": BINS, "fc_yaw": BINS, "fc_roll": BINS, "fc_t": 3, "fc_exp": 3 * KP}
MLPS = {"retarget_shoulder": (126, (128, 128, 64), 65), "retarget_mouth": (65, (128, 128, 64), 63),
        "retarget_eye": (66, (256, 256, 128, 128, 64), 63)}
BN_EPS, LN_EPS, KP_VARIANCE = 1e-5, 1e-6, 0.01


# ------------------------------------------------------------------------------------------------
# Conversion: one reader per file, every tensor checked.

def _conv(r: StateReader, name: str, cin: int, cout: int, k: int, *, dims: int = 2, bias: bool = True) -> dict:
    w = r(f"{name}.weight", (cout, cin) + (k,) * dims)
    out = {"w": np.transpose(w, tuple(range(2, 2 + dims)) + (1, 0))}
    if bias:
        out["b"] = r(f"{name}.bias", (cout,))
    return out


def _bn(r: StateReader, name: str, c: int) -> dict:
    g, b = r(f"{name}.weight", (c,)), r(f"{name}.bias", (c,))
    mean, var = r(f"{name}.running_mean", (c,)), r(f"{name}.running_var", (c,))
    if r.has(f"{name}.num_batches_tracked"):
        r(f"{name}.num_batches_tracked")
    scale = g / np.sqrt(var.astype(np.float64) + BN_EPS)
    return {"scale": scale.astype(np.float32), "bias": (b - mean * scale).astype(np.float32)}


def _ln(r: StateReader, name: str, c: int) -> dict:
    return {"scale": r(f"{name}.weight", (c,)), "bias": r(f"{name}.bias", (c,))}


def _linear(r: StateReader, name: str, cin: int, cout: int) -> dict:
    return {"w": r(f"{name}.weight", (cout, cin)).T.copy(), "b": r(f"{name}.bias", (cout,))}


def _spectral(r: StateReader, name: str, cin: int, cout: int, k: int, bias: bool = True) -> dict:
    w = r(f"{name}.weight_orig", (cout, cin, k, k)).astype(np.float64)
    u, v = r(f"{name}.weight_u", (cout,)).astype(np.float64), r(f"{name}.weight_v", (cin * k * k,)).astype(np.float64)
    sigma = float(u @ (w.reshape(cout, -1) @ v))
    out = {"w": np.transpose(w / sigma, (2, 3, 1, 0)).astype(np.float32)}
    if bias:
        out["b"] = r(f"{name}.bias", (cout,))
    return out


def convert_appearance(state: dict) -> dict:
    r = StateReader(state, "LivePortrait appearance feature extractor")
    p = {"first.conv": _conv(r, "first.conv", 3, 64, 3), "first.norm": _bn(r, "first.norm", 64)}
    for i, (cin, cout) in enumerate(((64, 128), (128, 256))):
        p[f"down_blocks.{i}.conv"] = _conv(r, f"down_blocks.{i}.conv", cin, cout, 3)
        p[f"down_blocks.{i}.norm"] = _bn(r, f"down_blocks.{i}.norm", cout)
    p["second"] = _conv(r, "second", 256, 512, 1)
    for i in range(6):
        n = f"resblocks_3d.3dr{i}"
        for j in (1, 2):
            p[f"{n}.conv{j}"] = _conv(r, f"{n}.conv{j}", VOL_CH, VOL_CH, 3, dims=3)
            p[f"{n}.norm{j}"] = _bn(r, f"{n}.norm{j}", VOL_CH)
    r.check()
    return p


def convert_motion(state: dict) -> dict:
    r = StateReader(state, "LivePortrait motion extractor (detector.* ConvNeXt-V2-tiny)", strip_prefixes=("detector.",))
    p = {"ds0.conv": _conv(r, "downsample_layers.0.0", 3, CNX_DIMS[0], 4),
         "ds0.norm": _ln(r, "downsample_layers.0.1", CNX_DIMS[0])}
    for i in range(1, 4):
        p[f"ds{i}.norm"] = _ln(r, f"downsample_layers.{i}.0", CNX_DIMS[i - 1])
        p[f"ds{i}.conv"] = _conv(r, f"downsample_layers.{i}.1", CNX_DIMS[i - 1], CNX_DIMS[i], 2)
    for s, (depth, dim) in enumerate(zip(CNX_DEPTHS, CNX_DIMS)):
        for b in range(depth):
            n = f"stages.{s}.{b}"
            p[f"{n}.dwconv"] = {"w": np.transpose(r(f"{n}.dwconv.weight", (dim, 1, 7, 7)), (2, 3, 1, 0)),
                                "b": r(f"{n}.dwconv.bias", (dim,))}
            p[f"{n}.norm"] = _ln(r, f"{n}.norm", dim)
            p[f"{n}.pwconv1"] = _linear(r, f"{n}.pwconv1", dim, 4 * dim)
            p[f"{n}.grn"] = {"gamma": r(f"{n}.grn.gamma", (1, 1, 1, 4 * dim)).reshape(-1),
                             "beta": r(f"{n}.grn.beta", (1, 1, 1, 4 * dim)).reshape(-1)}
            p[f"{n}.pwconv2"] = _linear(r, f"{n}.pwconv2", 4 * dim, dim)
    p["norm"] = _ln(r, "norm", CNX_DIMS[-1])
    for head, n in HEADS.items():
        p[head] = _linear(r, head, CNX_DIMS[-1], n)
    r.check()
    return p


def hourglass_channels() -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """(encoder (in, out), decoder (in, out), output channels) of the dense-motion hourglass."""
    inp, exp, mx, n = (KP + 1) * 5, 32, 1024, 5
    enc = [(inp if i == 0 else min(mx, exp * 2 ** i), min(mx, exp * 2 ** (i + 1))) for i in range(n)]
    dec = [((1 if i == n - 1 else 2) * min(mx, exp * 2 ** (i + 1)), min(mx, exp * 2 ** i)) for i in reversed(range(n))]
    return enc, dec, exp + inp


def convert_warping(state: dict) -> dict:
    r = StateReader(state, "LivePortrait warping module")
    enc, dec, out_ch = hourglass_channels()
    h = "dense_motion_network.hourglass"
    p = {}
    for i, (cin, cout) in enumerate(enc):
        p[f"{h}.encoder.down_blocks.{i}.conv"] = _conv(r, f"{h}.encoder.down_blocks.{i}.conv", cin, cout, 3, dims=3)
        p[f"{h}.encoder.down_blocks.{i}.norm"] = _bn(r, f"{h}.encoder.down_blocks.{i}.norm", cout)
    for i, (cin, cout) in enumerate(dec):
        p[f"{h}.decoder.up_blocks.{i}.conv"] = _conv(r, f"{h}.decoder.up_blocks.{i}.conv", cin, cout, 3, dims=3)
        p[f"{h}.decoder.up_blocks.{i}.norm"] = _bn(r, f"{h}.decoder.up_blocks.{i}.norm", cout)
    p[f"{h}.decoder.conv"] = _conv(r, f"{h}.decoder.conv", out_ch, out_ch, 3, dims=3)
    p[f"{h}.decoder.norm"] = _bn(r, f"{h}.decoder.norm", out_ch)
    d = "dense_motion_network"
    p[f"{d}.mask"] = _conv(r, f"{d}.mask", out_ch, KP + 1, 7, dims=3)
    p[f"{d}.compress"] = _conv(r, f"{d}.compress", VOL_CH, 4, 1, dims=3)
    p[f"{d}.norm"] = _bn(r, f"{d}.norm", 4)
    p[f"{d}.occlusion"] = _conv(r, f"{d}.occlusion", out_ch * DEPTH, 1, 7)
    p["third.conv"], p["third.norm"] = _conv(r, "third.conv", 512, 256, 3), _bn(r, "third.norm", 256)
    p["fourth"] = _conv(r, "fourth", 256, 256, 1)
    r.check()
    return p


SPADE_BLOCKS = [(f"G_middle_{i}", 512, 512) for i in range(6)] + [("up_0", 512, 256), ("up_1", 256, 64)]


def convert_generator(state: dict) -> dict:
    r = StateReader(state, "LivePortrait SPADE generator")
    p = {"fc": _conv(r, "fc", 256, 512, 3)}
    for name, fin, fout in SPADE_BLOCKS:
        mid = min(fin, fout)
        p[f"{name}.conv_0"] = _spectral(r, f"{name}.conv_0", fin, mid, 3)
        p[f"{name}.conv_1"] = _spectral(r, f"{name}.conv_1", mid, fout, 3)
        norms = [("norm_0", fin), ("norm_1", mid)]
        if fin != fout:
            p[f"{name}.conv_s"] = _spectral(r, f"{name}.conv_s", fin, fout, 1, bias=False)
            norms.append(("norm_s", fin))
        for norm, nc in norms:
            n = f"{name}.{norm}"
            p[f"{n}.mlp_shared"] = _conv(r, f"{n}.mlp_shared.0", 256, 128, 3)
            p[f"{n}.mlp_gamma"] = _conv(r, f"{n}.mlp_gamma", 128, nc, 3)
            p[f"{n}.mlp_beta"] = _conv(r, f"{n}.mlp_beta", 128, nc, 3)
    p["conv_img"] = _conv(r, "conv_img.0", 64, 12, 3)
    r.check()
    return p


def convert_stitching(state: dict) -> dict:
    state = {k.replace("module.", ""): v for k, v in state.items()}
    r = StateReader(state, "LivePortrait stitching/retargeting (retarget_shoulder / _mouth / _eye)")
    p = {}
    for net, (cin, hidden, cout) in MLPS.items():
        sizes = (cin,) + hidden + (cout,)
        for i in range(len(sizes) - 1):
            p[f"{net}.{2 * i}"] = _linear(r, f"{net}.mlp.{2 * i}", sizes[i], sizes[i + 1])
    r.check()
    return p


CONVERTERS = {"F": convert_appearance, "M": convert_motion, "W": convert_warping, "G": convert_generator,
              "S": convert_stitching}


def load(folder: str) -> dict[str, dict]:
    """{"F", "M", "W", "G", "S"} parameter dicts from a folder holding the five released files (searched
    recursively, as in pretrained_weights/liveportrait/{base_models, retargeting_models})."""
    from jaxmoda.errors import CheckpointError
    from jaxmoda.eval.weights import read_state_dict
    found = {}
    for root, _, files in os.walk(folder):
        for key, name in FILES.items():
            if name in files and key not in found:
                found[key] = os.path.join(root, name)
    missing = [FILES[k] for k in FILES if k not in found]
    if missing:
        raise CheckpointError(f"{folder} lacks {', '.join(missing)}; pass the folder of LivePortrait's released "
                              "weights (pretrained_weights/liveportrait)")
    out = {}
    for key, path in found.items():
        try:
            out[key] = CONVERTERS[key](read_state_dict(path))
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
    return out


# ------------------------------------------------------------------------------------------------
# Forward (NHWC / NDHWC).

def _conv_apply(x, p, stride: int = 1, padding: str | int = "SAME", groups: int = 1):
    nd = x.ndim - 2
    pad = [(padding, padding)] * nd if isinstance(padding, int) else padding
    dn = ("NHWC", "HWIO", "NHWC") if nd == 2 else ("NDHWC", "DHWIO", "NDHWC")
    y = jax.lax.conv_general_dilated(x, p["w"], (stride,) * nd, pad, dimension_numbers=dn, feature_group_count=groups)
    return y + p["b"] if "b" in p else y


def _affine(x, p):
    return x * p["scale"] + p["bias"]


def _layer_norm(x, p):
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + LN_EPS) * p["scale"] + p["bias"]


def _avg_pool_hw(x):
    """2 x 2 average pool over H, W (2-D [B, H, W, C] or 3-D [B, D, H, W, C])."""
    *lead, h, w, c = x.shape
    return x.reshape(*lead, h // 2, 2, w // 2, 2, c).mean(axis=(-4, -2))


def _up_hw(x, f: int = 2):
    return jnp.repeat(jnp.repeat(x, f, axis=-3), f, axis=-2)


def to_volume(x):
    """[B, H, W, C*16] (channel c*16 + d) -> [B, 16, H, W, C]."""
    b, h, w, cd = x.shape
    return jnp.transpose(x.reshape(b, h, w, cd // DEPTH, DEPTH), (0, 4, 1, 2, 3))


def from_volume(v):
    """[B, D, H, W, C] -> [B, H, W, C*D] with channel c*D + d (the inverse of `to_volume`)."""
    b, d, h, w, c = v.shape
    return jnp.transpose(v, (0, 2, 3, 4, 1)).reshape(b, h, w, c * d)


def appearance(p: dict, image01) -> jax.Array:
    """RGB [B, S, S, 3] in [0, 1] -> feature volume [B, 16, S/4, S/4, 32]."""
    x = jax.nn.relu(_affine(_conv_apply(image01, p["first.conv"]), p["first.norm"]))
    for i in range(2):
        x = _avg_pool_hw(jax.nn.relu(_affine(_conv_apply(x, p[f"down_blocks.{i}.conv"]), p[f"down_blocks.{i}.norm"])))
    v = to_volume(_conv_apply(x, p["second"]))
    for i in range(6):
        n = f"resblocks_3d.3dr{i}"
        h = _conv_apply(jax.nn.relu(_affine(v, p[f"{n}.norm1"])), p[f"{n}.conv1"])
        v = v + _conv_apply(jax.nn.relu(_affine(h, p[f"{n}.norm2"])), p[f"{n}.conv2"])
    return v


def motion_info(p: dict, image01) -> dict:
    """RGB [B, S, S, 3] in [0, 1] -> canonical kp [B, 21, 3], exp [B, 21, 3], t [B, 3], scale [B],
    pose [B, 3] degrees (pitch, yaw, roll), as LivePortrait's get_kp_info."""
    x = _layer_norm(_conv_apply(image01, p["ds0.conv"], stride=4, padding=0), p["ds0.norm"])
    for s, depth in enumerate(CNX_DEPTHS):
        if s:
            x = _conv_apply(_layer_norm(x, p[f"ds{s}.norm"]), p[f"ds{s}.conv"], stride=2, padding=0)
        for b in range(depth):
            n = f"stages.{s}.{b}"
            y = _conv_apply(x, p[f"{n}.dwconv"], padding=3, groups=x.shape[-1])
            y = jax.nn.gelu(_layer_norm(y, p[f"{n}.norm"]) @ p[f"{n}.pwconv1"]["w"] + p[f"{n}.pwconv1"]["b"],
                            approximate=False)
            gx = jnp.sqrt(jnp.sum(jnp.square(y), axis=(1, 2), keepdims=True))
            nx = gx / (jnp.mean(gx, axis=-1, keepdims=True) + 1e-6)
            y = p[f"{n}.grn"]["gamma"] * (y * nx) + p[f"{n}.grn"]["beta"] + y
            x = x + y @ p[f"{n}.pwconv2"]["w"] + p[f"{n}.pwconv2"]["b"]
    f = _layer_norm(jnp.mean(x, axis=(1, 2)), p["norm"])
    o = {k: f @ p[k]["w"] + p[k]["b"] for k in HEADS}
    b = f.shape[0]
    pose = jnp.stack([mo.bins_to_degrees(o[k]) for k in ("fc_pitch", "fc_yaw", "fc_roll")], -1)
    return {"kp": o["fc_kp"].reshape(b, KP, 3), "exp": o["fc_exp"].reshape(b, KP, 3), "t": o["fc_t"],
            "scale": o["fc_scale"][:, 0], "pose": pose}


def _hourglass(p: dict, x):
    h = "dense_motion_network.hourglass"
    skips = [x]
    for i in range(5):
        x = _avg_pool_hw(jax.nn.relu(_affine(_conv_apply(x, p[f"{h}.encoder.down_blocks.{i}.conv"]),
                                             p[f"{h}.encoder.down_blocks.{i}.norm"])))
        skips.append(x)
    out = skips.pop()
    for i in range(5):
        out = jax.nn.relu(_affine(_conv_apply(_up_hw(out), p[f"{h}.decoder.up_blocks.{i}.conv"]),
                                  p[f"{h}.decoder.up_blocks.{i}.norm"]))
        out = jnp.concatenate([out, skips.pop()], axis=-1)
    return jax.nn.relu(_affine(_conv_apply(out, p[f"{h}.decoder.conv"]), p[f"{h}.decoder.norm"]))


def warp_features(p: dict, volume, kp_source, kp_driving) -> dict:
    """Feature volume [B, D, H, W, 32] and keypoints [B, 21, 3] -> {"out": [B, H, W, 256], "deformation":
    [B, D, H, W, 3], "occlusion": [B, H, W, 1]} (DenseMotionNetwork + WarpingNetwork)."""
    b, d, h, w, _ = volume.shape
    dm = "dense_motion_network"
    comp = jax.nn.relu(_affine(_conv_apply(volume, p[f"{dm}.compress"]), p[f"{dm}.norm"]))
    sparse = warp.keypoint_flows(kp_source, kp_driving, d, h, w, align_corners=True)      # [B, 22, D, H, W, 3]
    deformed = warp.grid_sample_3d(comp, sparse)                                           # [B, 22, D, H, W, 4]
    heat = (warp.gaussian_heatmaps(kp_driving, d, h, w, KP_VARIANCE, align_corners=True)
            - warp.gaussian_heatmaps(kp_source, d, h, w, KP_VARIANCE, align_corners=True))
    heat = jnp.concatenate([jnp.zeros_like(heat[:, :1]), heat], axis=1)[..., None]       # [B, 22, D, H, W, 1]
    x = jnp.concatenate([heat, deformed], axis=-1)                                         # channel k*5 + j
    x = jnp.transpose(x, (0, 2, 3, 4, 1, 5)).reshape(b, d, h, w, (KP + 1) * 5)
    pred = _hourglass(p, x)
    mask = jax.nn.softmax(_conv_apply(pred, p[f"{dm}.mask"]), axis=-1)                  # [B, D, H, W, 22]
    deformation = jnp.einsum("bdhwk,bkdhwc->bdhwc", mask, sparse)
    occlusion = jax.nn.sigmoid(_conv_apply(from_volume(pred), p[f"{dm}.occlusion"]))
    out = from_volume(warp.grid_sample_3d(volume, deformation))
    out = jax.nn.leaky_relu(_affine(_conv_apply(out, p["third.conv"]), p["third.norm"]), 0.01)
    return {"out": _conv_apply(out, p["fourth"]) * occlusion, "deformation": deformation, "occlusion": occlusion}


def _instance_norm(x, eps: float = 1e-5):
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps)


def _spade(p: dict, n: str, x, seg):
    seg = _up_hw(seg, x.shape[1] // seg.shape[1]) if seg.shape[1] != x.shape[1] else seg
    actv = jax.nn.relu(_conv_apply(seg, p[f"{n}.mlp_shared"]))
    return _instance_norm(x) * (1 + _conv_apply(actv, p[f"{n}.mlp_gamma"])) + _conv_apply(actv, p[f"{n}.mlp_beta"])


def _spade_block(p: dict, name: str, x, seg):
    lrelu = lambda v: jax.nn.leaky_relu(v, 0.2)
    x_s = _conv_apply(_spade(p, f"{name}.norm_s", x, seg), p[f"{name}.conv_s"]) if f"{name}.conv_s" in p else x
    dx = _conv_apply(lrelu(_spade(p, f"{name}.norm_0", x, seg)), p[f"{name}.conv_0"])
    dx = _conv_apply(lrelu(_spade(p, f"{name}.norm_1", dx, seg)), p[f"{name}.conv_1"])
    return x_s + dx


def pixel_shuffle(x, r: int = 2):
    """[B, H, W, C*r*r] -> [B, H*r, W*r, C] with torch's order (input channel c*r*r + i*r + j)."""
    b, h, w, crr = x.shape
    c = crr // (r * r)
    return jnp.transpose(x.reshape(b, h, w, c, r, r), (0, 1, 4, 2, 5, 3)).reshape(b, h * r, w * r, c)


def generate(p: dict, feature) -> jax.Array:
    """Warped features [B, H, W, 256] -> RGB [B, 8H, 8W, 3] in [0, 1] (SPADE decoder)."""
    x = _conv_apply(feature, p["fc"])
    for i in range(6):
        x = _spade_block(p, f"G_middle_{i}", x, feature)
    x = _spade_block(p, "up_0", _up_hw(x), feature)
    x = _spade_block(p, "up_1", _up_hw(x), feature)
    return jax.nn.sigmoid(pixel_shuffle(_conv_apply(jax.nn.leaky_relu(x, 0.2), p["conv_img"])))


def mlp(p: dict, net: str, x):
    n = len(MLPS[net][1]) + 1
    for i in range(n):
        x = x @ p[f"{net}.{2 * i}"]["w"] + p[f"{net}.{2 * i}"]["b"]
        x = jax.nn.relu(x) if i < n - 1 else x
    return x


def stitch(p: dict, kp_source, kp_driving):
    """LivePortrait's stitching: driving keypoints corrected by S(x_s, x_d) (63 offsets + a shared tx, ty)."""
    b = kp_source.shape[0]
    delta = mlp(p, "retarget_shoulder", jnp.concatenate([kp_source.reshape(b, -1), kp_driving.reshape(b, -1)], -1))
    shift = jnp.concatenate([delta[:, 63:65], jnp.zeros((b, 1), delta.dtype)], -1)[:, None]
    return kp_driving + delta[:, :63].reshape(b, KP, 3) + shift


def source_motion(info: dict) -> jax.Array:
    """motion_info outputs -> the 70-d motion vector of jaxmoda.moda.motion."""
    return mo.join({"exp": info["exp"], "scale": info["scale"], "t": info["t"], "pose": info["pose"]})


def render(params: dict[str, dict], source01, driving_motion, *, use_stitching: bool = True) -> jax.Array:
    """Source portraits [B, S, S, 3] in [0, 1] re-posed to 70-d motion [B, 70] -> [B, 2S, 2S, 3] in [0, 1]
    (S = 256 for the released weights); each source's keypoints and motion are read from it."""
    info = motion_info(params["M"], source01)
    return reenact(params, source01, info["kp"], source_motion(info), driving_motion, use_stitching=use_stitching)


def param_count(params: Any) -> int:
    return int(sum(np.size(v) for v in jax.tree.leaves(params)))


def reenact(params: dict[str, dict], source01, x_c, source_motion, driving_motion, *, use_stitching: bool = True):
    """Frames [B, 2S, 2S, 3] in [0, 1] of one source [1, S, S, 3] (or B sources) driven by motion [B, 70],
    with its canonical keypoints x_c [1, 21, 3] and own motion [1, 70] already read (one source's
    appearance volume is computed once for the batch)."""
    b = driving_motion.shape[0]
    s, d = mo.split(source_motion), mo.split(driving_motion)
    x_s = mo.transform_keypoints(x_c, s["pose"], s["exp"], s["scale"], s["t"])
    x_d = mo.transform_keypoints(jnp.broadcast_to(x_c, (b, KP, 3)), d["pose"], d["exp"], d["scale"], d["t"])
    x_s = jnp.broadcast_to(x_s, x_d.shape)
    if use_stitching:
        x_d = stitch(params["S"], x_s, x_d)
    vol = appearance(params["F"], source01)
    feats = warp_features(params["W"], jnp.broadcast_to(vol, (b,) + vol.shape[1:]), x_s, x_d)
    return generate(params["G"], feats["out"])
