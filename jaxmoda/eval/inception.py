"""InceptionV3 as used for FID (the pytorch-fid / TF FID graph variant), as pure JAX functions.

Parameters are a flat dict keyed by the PyTorch module names of pytorch-fid's `FIDInceptionA/C/E`
network ("Conv2d_1a_3x3", "Mixed_5b.branch1x1", ..., "fc"). Each convolution's batch norm (eps 1e-3,
inference statistics) is folded into a per-channel scale and bias: {"w": [kh, kw, in, out],
"scale": [out], "bias": [out]}. `from_torch_state_dict` converts a state dict given as NumPy arrays
(see jaxmoda.eval.weights for the file readers) and checks every key and shape.

`features(params, images)` takes images in [-1, 1] ([N, H, W, 3], any size: resized bilinearly to
299 x 299) and returns {"pool": [N, 2048], "logits": [N, 1008], "spatial": [N, 17, 17, 768]}: the
pool features for FID and precision/recall, the logits for IS, the Mixed_6e map for sFID-style
spatial statistics. The FID variant differs from torchvision's InceptionV3 in its average pools
(padding not counted) and in Mixed_7c's max pool.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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


def expected_torch_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of pytorch-fid's FID Inception state dict (batch-norm counters excluded), with shape."""
    shapes = {}
    for name, (cin, cout, (kh, kw), _, _) in SPECS.items():
        shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for t in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{t}"] = (cout,)
    shapes["fc.weight"], shapes["fc.bias"] = (NUM_LOGITS, 2048), (NUM_LOGITS,)
    return shapes


def from_torch_state_dict(state: dict[str, np.ndarray]) -> dict[str, Any]:
    """Folded JAX parameters from a pytorch-fid Inception state dict of NumPy arrays (every key checked)."""
    want = expected_torch_shapes()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    wrong = sorted(k for k in set(want) & set(state) if tuple(np.shape(state[k])) != want[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {wrong[0]}: {tuple(np.shape(state[wrong[0]]))}, "
                         f"expected {want[wrong[0]]})")
        raise ValueError("not a pytorch-fid FID Inception state dict: " + "; ".join(parts))
    params: dict[str, Any] = {}
    for name in SPECS:
        g, b = (np.asarray(state[f"{name}.bn.{t}"], np.float64) for t in ("weight", "bias"))
        mean, var = (np.asarray(state[f"{name}.bn.{t}"], np.float64) for t in ("running_mean", "running_var"))
        scale = g / np.sqrt(var + BN_EPS)
        params[name] = {"w": np.transpose(np.asarray(state[f"{name}.conv.weight"], np.float32), (2, 3, 1, 0)),
                        "scale": scale.astype(np.float32), "bias": (b - mean * scale).astype(np.float32)}
    params["fc"] = {"w": np.asarray(state["fc.weight"], np.float32).T, "b": np.asarray(state["fc.bias"], np.float32)}
    return params


def load(path: str) -> dict[str, Any]:
    """Folded parameters from a pytorch-fid Inception weights file (.npz, .safetensors or a torch state dict)."""
    from jaxmoda.errors import CheckpointError
    from jaxmoda.eval.weights import read_state_dict
    try:
        return from_torch_state_dict(read_state_dict(path))
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


def features(params: dict, images: jax.Array, size: int = 299) -> dict[str, jax.Array]:
    """{"pool": [N, 2048], "logits": [N, 1008], "spatial": [N, h, w, 768]} of images in [-1, 1]."""
    x = jnp.asarray(images, jnp.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3] in [-1, 1], got shape {x.shape}")
    if x.shape[1:3] != (size, size):
        x = jax.image.resize(x, (x.shape[0], size, size, 3), "bilinear", antialias=False)
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
        x = _mixed_c(params, name, x)
    spatial = x
    x = jnp.concatenate([_chain(params, x, "Mixed_7a.branch3x3_1", "Mixed_7a.branch3x3_2"),
                         _chain(params, x, *(f"Mixed_7a.branch7x7x3_{i}" for i in (1, 2, 3, 4))),
                         _max_pool(x)], axis=-1)
    x = _mixed_e(params, "Mixed_7b", x, max_pool=False)
    x = _mixed_e(params, "Mixed_7c", x, max_pool=True)
    pool = jnp.mean(x, axis=(1, 2))
    logits = pool @ params["fc"]["w"] + params["fc"]["b"]
    return {"pool": pool, "logits": logits, "spatial": spatial}
