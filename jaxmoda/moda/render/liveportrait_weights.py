"""Reading LivePortrait's five released weight files (KwaiVGI/LivePortrait, models.yaml sizes) into the
parameter dicts of `jaxmoda.moda.render.liveportrait`, without torch (jaxmoda.eval.torchfile).

Every key and shape of each file is checked against the architecture; batch norms are folded
(inference statistics, eps 1e-5), the generator's spectral norms too (W = weight_orig / (u . W v)
with the stored u, v), and kernels are transposed to channels last.
"""

from __future__ import annotations

import os

import numpy as np

from jaxmoda.convert.core import StateReader

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
