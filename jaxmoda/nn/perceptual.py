"""LPIPS (VGG) perceptual distance as plain, frozen JAX functions; weights only from a file you name.

Nothing is ever downloaded. `load_lpips_weights(path)` reads a .npz with exactly these 31 arrays
(float, PyTorch layouts; converted to NHWC/HWIO on load):

    vgg.conv{b}_{i}.weight   [out, in, 3, 3]   the 13 VGG16 convs: conv1_1..conv1_2 (3->64, 64->64),
    vgg.conv{b}_{i}.bias     [out]             conv2_1..2_2 (->128), conv3_1..3_3 (->256),
                                               conv4_1..4_3 (->512), conv5_1..5_3 (->512)
    lin.{k}.weight           [1, C, 1, 1]      k = 0..4, C = 64, 128, 256, 512, 512; entries >= 0

Every key and shape is checked; missing, unexpected and mis-shaped keys are reported together in one
`CheckpointError` line (no tensor is ever dropped silently).

Network (LPIPS v0.1, net="vgg"): x in [-1, 1] -> (x - shift) / scale with shift (-.030, -.088, -.188),
scale (.458, .448, .450) -> VGG16 features (3x3 convs, padding 1, ReLU; 2x2 max-pools before blocks 2-5),
tapped after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 -> each tap unit-normalised over channels
(x / (||x|| + 1e-10)) -> squared difference -> 1x1 non-negative "lin" (C -> 1, no bias) -> spatial mean
-> sum over the 5 taps -> [B]. Inputs must be at least 16x16 (four pools).

Converting the official weights (done once, by you, outside jaxmoda; needs torch + torchvision + the
`lpips` package's `weights/v0.1/vgg.pth`). LPIPS's trunk is torchvision's ImageNet vgg16 `features`,
whose 13 convs are `features.{0,2,5,7,10,12,14,17,19,21,24,26,28}`; the lin layers are
`lin{k}.model.1.weight` (index 1 after a Dropout):

    import numpy as np, torch, torchvision
    from jaxmoda.nn.perceptual import convert_torch_state_dicts
    vgg = torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()   # classifier.* is ignored
    lin = torch.load("lpips/weights/v0.1/vgg.pth", map_location="cpu")
    arrays = convert_torch_state_dicts({k: v.numpy() for k, v in vgg.items()},
                                       {k: v.numpy() for k, v in lin.items()})
    np.savez("lpips_vgg.npz", **arrays)

`write_synthetic_lpips_npz` writes random weights in the same layout: for tests and docs only.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmoda.errors import CheckpointError

# (name, in, out) of the 13 VGG16 convs, in order; block sizes 2, 2, 3, 3, 3.
VGG_CONVS = (("conv1_1", 3, 64), ("conv1_2", 64, 64),
             ("conv2_1", 64, 128), ("conv2_2", 128, 128),
             ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
             ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
             ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512))
BLOCKS = (2, 2, 3, 3, 3)
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
LIN_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """The .npz key -> shape table (torch layouts)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, cin, cout in VGG_CONVS:
        shapes[f"vgg.{name}.weight"] = (cout, cin, 3, 3)
        shapes[f"vgg.{name}.bias"] = (cout,)
    for k, c in enumerate(LIN_CHANNELS):
        shapes[f"lin.{k}.weight"] = (1, c, 1, 1)
    return shapes


def _short(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _check_arrays(arrays: Mapping[str, np.ndarray], source: str) -> None:
    """Raises one CheckpointError line listing missing, unexpected, mis-shaped, non-float or negative-lin keys."""
    want = expected_shapes()
    problems = []
    missing = set(want) - set(arrays)
    unexpected = set(arrays) - set(want)
    if missing:
        problems.append(f"missing keys {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_short(unexpected)}")
    bad_shape = [f"{k} {tuple(arrays[k].shape)} (want {want[k]})" for k in sorted(set(want) & set(arrays))
                 if tuple(arrays[k].shape) != want[k]]
    if bad_shape:
        problems.append("wrong shapes " + ", ".join(bad_shape))
    not_float = [k for k in sorted(set(want) & set(arrays)) if arrays[k].dtype.kind != "f"]
    if not_float:
        problems.append(f"non-float arrays {_short(not_float)}")
    if not problems:
        negative = [k for k in want if k.startswith("lin.") and np.any(arrays[k] < 0)]
        if negative:
            problems.append(f"negative entries in {_short(negative)} (LPIPS lin weights are >= 0)")
    if problems:
        raise CheckpointError(f"LPIPS weights {source} do not match the expected layout: {'; '.join(problems)}; "
                              "see jaxmoda.nn.perceptual for the key layout and convert_torch_state_dicts")


def _read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"LPIPS weights file {path} does not exist; pass the path of a .npz written by "
                              "convert_torch_state_dicts (nothing is downloaded)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"LPIPS weights file {path} is not a readable .npz ({type(e).__name__}); "
                              "write it with numpy.savez from convert_torch_state_dicts") from None


def params_from_arrays(arrays: Mapping[str, np.ndarray], source: str = "(in memory)") -> dict[str, Any]:
    """Checks `arrays` (the .npz layout) and returns the params pytree used by `lpips_distance`.

    Returns:
        {"vgg": {conv name: {"kernel": [3, 3, in, out] (HWIO), "bias": [out]}}, "lin": [w_k [C_k]] * 5},
        float32 jnp arrays.
    """
    _check_arrays(arrays, source)
    vgg = {}
    for name, _, _ in VGG_CONVS:
        w = np.asarray(arrays[f"vgg.{name}.weight"], np.float32)
        vgg[name] = {"kernel": jnp.asarray(np.transpose(w, (2, 3, 1, 0))),
                     "bias": jnp.asarray(np.asarray(arrays[f"vgg.{name}.bias"], np.float32))}
    lin = [jnp.asarray(np.asarray(arrays[f"lin.{k}.weight"], np.float32).reshape(-1)) for k in range(len(LIN_CHANNELS))]
    return {"vgg": vgg, "lin": lin}


def load_lpips_weights(path: str | os.PathLike) -> dict[str, Any]:
    """Loads and checks the LPIPS .npz at `path` (layout in the module docstring); see `params_from_arrays`."""
    return params_from_arrays(_read_npz(path), os.fspath(path))


def convert_torch_state_dicts(vgg_state_dict: Mapping[str, Any], lin_state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Renames torchvision vgg16 + lpips lin state dicts (numpy values) to the .npz layout; layouts unchanged.

    Args:
        vgg_state_dict: torchvision vgg16 (or vgg16.features, prefixed "features.") state dict as numpy:
            features.{0,2,5,...,28}.{weight [out, in, 3, 3], bias [out]}; `classifier.*` keys are ignored.
        lin_state_dict: lpips `vgg.pth` as numpy: lin{k}.model.1.weight [1, C, 1, 1], k = 0..4.

    Returns:
        {npz key: float32 array}, checked like `load_lpips_weights`; save with `np.savez(path, **out)`.
    """
    out: dict[str, np.ndarray] = {}
    known = set()
    for (name, _, _), idx in zip(VGG_CONVS, TORCHVISION_CONV_INDICES):
        for part in ("weight", "bias"):
            src = f"features.{idx}.{part}"
            known.add(src)
            if src in vgg_state_dict:
                out[f"vgg.{name}.{part}"] = np.asarray(vgg_state_dict[src], np.float32)
    for k in range(len(LIN_CHANNELS)):
        src = f"lin{k}.model.1.weight"
        known.add(src)
        if src in lin_state_dict:
            out[f"lin.{k}.weight"] = np.asarray(lin_state_dict[src], np.float32)
    extra = [k for k in vgg_state_dict if k not in known and not k.startswith("classifier.")]
    extra += [k for k in lin_state_dict if k not in known]
    missing = sorted(known - set(vgg_state_dict) - set(lin_state_dict))
    if extra or missing:
        parts = ([f"missing {_short(missing)}"] if missing else []) + ([f"unexpected {_short(extra)}"] if extra else [])
        raise CheckpointError(f"torch state dicts for LPIPS: {'; '.join(parts)}; pass torchvision vgg16().state_dict() "
                              "and lpips weights/v0.1/vgg.pth, values as numpy")
    _check_arrays(out, "converted from torch")
    return out


def write_synthetic_lpips_npz(path: str | os.PathLike, seed: int = 0) -> str:
    """FOR TESTS AND DOCS: writes random weights with the exact .npz keys and shapes; returns the path."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, shape in expected_shapes().items():
        if key.startswith("lin."):
            arrays[key] = rng.uniform(0.0, 1.0, shape).astype(np.float32)
        elif key.endswith(".weight"):
            arrays[key] = (rng.normal(size=shape) * np.sqrt(2.0 / (shape[1] * 9))).astype(np.float32)
        else:
            arrays[key] = (0.01 * rng.normal(size=shape)).astype(np.float32)
    path = os.fspath(path)
    np.savez(path, **arrays)
    return path


def _conv3x3(x: jax.Array, p: Mapping[str, jax.Array]) -> jax.Array:
    y = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]


def _max_pool2(x: jax.Array) -> jax.Array:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def vgg_taps(params: Mapping[str, Any], x_bhwc: jax.Array) -> list[jax.Array]:
    """The 5 LPIPS taps (relu1_2 .. relu5_3) for images in [-1, 1].

    Args:
        params: the pytree from `load_lpips_weights`.
        x_bhwc: [B, H, W, 3], H, W >= 16.

    Returns:
        [B, H, W, 64], [B, H/2, W/2, 128], [B, H/4, W/4, 256], [B, H/8, W/8, 512], [B, H/16, W/16, 512].
    """
    h = (x_bhwc.astype(jnp.float32) - jnp.asarray(SHIFT, jnp.float32)) / jnp.asarray(SCALE, jnp.float32)
    taps, i = [], 0
    for b, n in enumerate(BLOCKS):
        if b:
            h = _max_pool2(h)
        for _ in range(n):
            h = jax.nn.relu(_conv3x3(h, params["vgg"][VGG_CONVS[i][0]]))
            i += 1
        taps.append(h)
    return taps


def _unit_normalize(f: jax.Array) -> jax.Array:
    """f / (||f||_channels + 1e-10), with a finite gradient where a feature vector is all zero."""
    sq = jnp.sum(jnp.square(f), axis=-1, keepdims=True)
    pos = sq > 0
    norm = jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)
    return f / (norm + EPS)


def lpips_distance(params: Mapping[str, Any], x_bhwc: jax.Array, y_bhwc: jax.Array) -> jax.Array:
    """LPIPS(VGG) distance per example; differentiable in x and y, params frozen (gradient-stopped).

    The two images go through the trunk in separate calls (not one concatenated batch), and pixels
    whose feature vectors are equal contribute exactly 0, so `lpips_distance(p, x, x)` is exactly 0.

    Args:
        params: the pytree from `load_lpips_weights`.
        x_bhwc: images [B, H, W, 3] in [-1, 1], H, W >= 16.
        y_bhwc: images of the same shape.

    Returns:
        float32 [B].
    """
    if x_bhwc.shape != y_bhwc.shape or x_bhwc.ndim != 4 or x_bhwc.shape[-1] != 3:
        raise ValueError(f"lpips_distance needs two [B, H, W, 3] images of one shape; got {x_bhwc.shape}, {y_bhwc.shape}")
    if min(x_bhwc.shape[1:3]) < 16:
        raise ValueError(f"lpips_distance needs H, W >= 16 (four 2x2 pools); got {x_bhwc.shape}")
    params = jax.lax.stop_gradient(params)
    total = jnp.zeros((x_bhwc.shape[0],), jnp.float32)
    for fx, fy, w in zip(vgg_taps(params, x_bhwc), vgg_taps(params, y_bhwc), params["lin"]):
        d = jnp.square(_unit_normalize(fx) - _unit_normalize(fy))
        # Mathematically a no-op; makes equal feature vectors give exactly 0 under any XLA fusion.
        d = jnp.where(jnp.all(fx == fy, axis=-1, keepdims=True), 0.0, d)
        total = total + jnp.mean(jnp.einsum("bhwc,c->bhw", d, w), axis=(1, 2))
    return total
