"""LivePortrait's released renderer (KwaiVGI/LivePortrait, models.yaml sizes) as pure JAX functions over
imported weights: appearance extractor F, motion extractor M (ConvNeXt-V2-tiny), warping module W
(dense-motion hourglass + occlusion), SPADE generator G and the stitching MLP S. Channels last.

    params = load("pretrained_weights/liveportrait")        # the folder holding the five .pth files
    frames = render(params, source01, driving_motion70)       # [B, 512, 512, 3] in [0, 1]

`load` (jaxmoda.moda.render.liveportrait_weights, re-exported here) reads the five .pth files without
torch, checks every key and shape, folds batch and spectral norms and transposes kernels.
Layout facts reproduced here: the 2-D <-> 3-D reshapes take channel c*16 + d;
the dense-motion input channel is k*5 + j (k = 0 background, j = 0 heatmap); LivePortrait's grids are
align_corners=True coordinates sampled with align_corners=False (as in its code); PixelShuffle order.
The forward follows the published architecture; it has not been compared with a PyTorch run of the
released weights here (no torch), so treat outputs as unverified until checked on real files.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmoda.moda import motion as mo
from jaxmoda.moda.render import warp
from jaxmoda.moda.render.liveportrait_weights import (  # noqa: F401  (part of this module's API)
    BINS, BN_EPS, CNX_DEPTHS, CNX_DIMS, CONVERTERS, DEPTH, FILES, HEADS, KP, KP_VARIANCE, LN_EPS, MLPS, SPADE_BLOCKS,
    VOL_CH, convert_appearance, convert_generator, convert_motion, convert_stitching, convert_warping,
    hourglass_channels, load)


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
