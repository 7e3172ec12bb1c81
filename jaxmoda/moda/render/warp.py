"""Grid sampling and sparse keypoint motion for LivePortrait's 3-D warping module (moda.md 1.1, 1.4).

Conventions (all functions):

* Channels last. A 3-D volume is `[B, D, H, W, C]`, a 2-D image `[B, H, W, C]`.
* A sampling grid holds normalised coordinates in the last axis, ordered like PyTorch's
  `F.grid_sample`: `(x, y, z)` index the `(W, H, D)` axes (x is the fastest, last spatial axis;
  2-D grids are `(x, y)` for `(W, H)`). Keypoints use the same `(x, y, z)` frame.
* `align_corners=False` (PyTorch's default) unless asked otherwise: -1 and +1 are the *outer
  edges* of the first and last voxel, so voxel `i` of an axis of size `n` has its centre at
  `x = (2 i + 1) / n - 1`, and a coordinate maps to the continuous voxel index
  `p = ((x + 1) n - 1) / 2`. With `align_corners=True`, -1 and +1 are the centres of the first and
  last voxel: `p = (x + 1) (n - 1) / 2`.
* Zeros padding: trilinear (bilinear in 2-D) interpolation of the 8 (4) voxels around `p`; each
  corner that lies outside the volume contributes zero, so values fade linearly to zero within
  half a voxel of the border and are exactly zero further out.
* Sampling is differentiable w.r.t. both the volume and the grid (the gradient w.r.t. the grid
  is that of the interpolation weights; it is discontinuous at voxel centres, as in PyTorch).
  Computation is in `result_type(volume, grid)`.

Note on LivePortrait/FOMM: their `make_coordinate_grid` spaces coordinates as `linspace(-1, 1, n)`
(align_corners=True positions) while their `F.grid_sample` uses align_corners=False, so their
identity flow is off by up to half a voxel. Here `identity_grid` defaults to the centres under
align_corners=False so that the identity flow is exact; pass `align_corners=True` to
`identity_grid`/`keypoint_flows`/`gaussian_heatmaps` (but not to the sampler) to reproduce
LivePortrait's grid numerically when porting its weights.
"""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
import numpy as np

__all__ = [
    "gaussian_heatmaps",
    "grid_sample_2d",
    "grid_sample_2d_reference",
    "grid_sample_3d",
    "grid_sample_3d_reference",
    "identity_grid",
    "identity_grid_2d",
    "keypoint_flows",
]


# ----------------------------------------------------------------------------------------------
# Coordinate mapping.


def _to_index(x, n: int, align_corners: bool):
    """Normalised coordinate(s) -> continuous voxel index along an axis of size n."""
    if align_corners:
        return (x + 1.0) * (0.5 * (n - 1))
    return ((x + 1.0) * n - 1.0) * 0.5


def _axis_coords(n: int, align_corners: bool) -> np.ndarray:
    """Normalised coordinates of the n voxel centres of one axis (float64 numpy)."""
    i = np.arange(n, dtype=np.float64)
    if align_corners:
        return np.zeros(1) if n == 1 else 2.0 * i / (n - 1) - 1.0
    return (2.0 * i + 1.0) / n - 1.0


# ----------------------------------------------------------------------------------------------
# Sampling.


def _grid_sample_nd(volume, grid, align_corners: bool):
    """Multilinear sampling of volume [B, *S, C] at grid [B, *out, n] with n = len(S)."""
    volume = jnp.asarray(volume)
    grid = jnp.asarray(grid)
    spatial = volume.shape[1:-1]
    n = len(spatial)
    if grid.ndim < 2 or grid.shape[-1] != n:
        raise ValueError(f"grid must be [B, ..., {n}] for a {n}-d volume, got shape {grid.shape}")
    if grid.shape[0] != volume.shape[0]:
        raise ValueError(f"volume batch {volume.shape[0]} != grid batch {grid.shape[0]}; "
                         "repeat the volume or the grid to a common batch")
    if not jnp.issubdtype(grid.dtype, jnp.floating):
        grid = grid.astype(jnp.float32)
    dtype = jnp.result_type(volume.dtype, grid.dtype)
    b, c = volume.shape[0], volume.shape[-1]
    out_shape = grid.shape[1:-1]
    # Everything is flattened to 2-D: the volume to [B * N, C] rows and the points to [B * M]
    # (also avoids a very slow XLA:CPU reduction over [1, M, C] in the backward pass).
    num = math.prod(spatial)
    flat = volume.reshape(b * num, c).astype(dtype)
    g = grid.reshape(-1, n).astype(dtype)
    m = g.shape[0] // b

    # Per spatial axis a (in volume order): the lower corner, its fractional offset, and the
    # flat-index stride. Grid component k addresses spatial axis n - 1 - k.
    lows, fracs, strides = [], [], []
    stride = 1
    for a in reversed(range(n)):
        size = spatial[a]
        p = _to_index(g[..., n - 1 - a], size, align_corners)
        # Clamping far-away points keeps the int cast safe; their corners all stay outside.
        p = jnp.clip(p, -2.0, size + 1.0)
        lo = jnp.floor(p)
        fracs.insert(0, p - lo)
        lows.insert(0, lo.astype(jnp.int32))
        strides.insert(0, stride)
        stride *= size

    base = jnp.repeat(jnp.arange(b, dtype=jnp.int32) * num, m)  # [B * M] row offset of each batch
    out = jnp.zeros((b * m, c), dtype)
    for bits in itertools.product((0, 1), repeat=n):
        weight = None
        valid = None
        index = None
        for a, bit in enumerate(bits):
            i = lows[a] + bit
            w = fracs[a] if bit else 1.0 - fracs[a]
            ok = (i >= 0) & (i < spatial[a])
            term = jnp.clip(i, 0, spatial[a] - 1) * strides[a]
            weight = w if weight is None else weight * w
            valid = ok if valid is None else valid & ok
            index = term if index is None else index + term
        weight = jnp.where(valid, weight, 0.0)
        rows = flat.at[base + index].get(mode="promise_in_bounds")  # indices are clipped above
        out = out + rows * weight[:, None]
    return out.reshape(b, *out_shape, c)


def grid_sample_3d(volume, grid, *, align_corners: bool = False):
    """Trilinear sampling of `volume` [B, D, H, W, C] at `grid` [B, d, h, w, 3] -> [B, d, h, w, C].

    Grid coordinates are normalised to [-1, 1] and ordered (x, y, z) = (W, H, D) axes; the
    default `align_corners=False` and zeros padding match PyTorch's `F.grid_sample` defaults
    (see the module docstring). Any grid shape [B, ..., 3] is accepted; the output is
    [B, ..., C]. Jittable, differentiable w.r.t. volume and grid.
    """
    if jnp.ndim(volume) != 5:
        raise ValueError(f"volume must be [B, D, H, W, C], got shape {jnp.shape(volume)}")
    return _grid_sample_nd(volume, grid, align_corners)


def grid_sample_2d(image, grid, *, align_corners: bool = False):
    """Bilinear sampling of `image` [B, H, W, C] at `grid` [B, h, w, 2] -> [B, h, w, C].

    Same conventions as `grid_sample_3d`: coordinates (x, y) = (W, H) axes in [-1, 1],
    align_corners=False by default, zeros padding.
    """
    if jnp.ndim(image) != 4:
        raise ValueError(f"image must be [B, H, W, C], got shape {jnp.shape(image)}")
    return _grid_sample_nd(image, grid, align_corners)


# ----------------------------------------------------------------------------------------------
# Grids, sparse motion, heatmaps.


def identity_grid(d: int, h: int, w: int, *, align_corners: bool = False, dtype=jnp.float32):
    """[d, h, w, 3] normalised (x, y, z) coordinates of the voxel centres.

    Sampling a [B, d, h, w, C] volume with this grid (and the same `align_corners`) returns it
    unchanged: bit-exactly when the coordinates are exact floats (align_corners=False with
    power-of-two sizes, e.g. LivePortrait's 16x64x64), otherwise up to float32 rounding of the
    coordinates (~1e-5 relative; PyTorch behaves the same).
    """
    z, y, x = np.meshgrid(_axis_coords(d, align_corners), _axis_coords(h, align_corners),
                          _axis_coords(w, align_corners), indexing="ij")
    return jnp.asarray(np.stack([x, y, z], axis=-1), dtype=dtype)


def identity_grid_2d(h: int, w: int, *, align_corners: bool = False, dtype=jnp.float32):
    """[h, w, 2] normalised (x, y) coordinates of the pixel centres (2-D `identity_grid`)."""
    y, x = np.meshgrid(_axis_coords(h, align_corners), _axis_coords(w, align_corners), indexing="ij")
    return jnp.asarray(np.stack([x, y], axis=-1), dtype=dtype)


def _check_kp(kp, name: str):
    kp = jnp.asarray(kp)
    if kp.ndim != 3 or kp.shape[-1] != 3:
        raise ValueError(f"{name} must be [B, K, 3] (x, y, z) keypoints, got shape {kp.shape}")
    return kp


def keypoint_flows(kp_source, kp_driving, d: int, h: int, w: int, *, align_corners: bool = False):
    """Sparse 3-D motions [B, K+1, d, h, w, 3] (LivePortrait/FOMM `create_sparse_motions`).

    Entry 0 is the identity grid (background); entry k+1 is `identity - kp_driving[k] +
    kp_source[k]`, i.e. the grid that samples the source volume so that a neighbourhood of the
    driving keypoint k is fetched from around source keypoint k (pure translation, no Jacobian).
    """
    kp_source = _check_kp(kp_source, "kp_source")
    kp_driving = _check_kp(kp_driving, "kp_driving")
    if kp_source.shape != kp_driving.shape:
        raise ValueError(f"kp_source {kp_source.shape} and kp_driving {kp_driving.shape} differ in shape")
    dtype = jnp.result_type(kp_source.dtype, kp_driving.dtype, jnp.float32)
    ident = identity_grid(d, h, w, align_corners=align_corners, dtype=dtype)
    shift = (kp_source - kp_driving).astype(dtype)[:, :, None, None, None, :]  # [B, K, 1, 1, 1, 3]
    sparse = ident + shift
    bg = jnp.broadcast_to(ident, (kp_source.shape[0], 1, d, h, w, 3))
    return jnp.concatenate([bg, sparse], axis=1)


def gaussian_heatmaps(kp, d: int, h: int, w: int, variance: float = 0.01, *, align_corners: bool = False):
    """Gaussian blobs [B, K, d, h, w]: exp(-|grid - kp|^2 / (2 variance)) on the voxel centres."""
    kp = _check_kp(kp, "kp")
    dtype = jnp.result_type(kp.dtype, jnp.float32)
    ident = identity_grid(d, h, w, align_corners=align_corners, dtype=dtype)
    diff = ident - kp.astype(dtype)[:, :, None, None, None, :]
    return jnp.exp(-0.5 * jnp.sum(diff * diff, axis=-1) / variance)


# ----------------------------------------------------------------------------------------------
# Slow reference implementations (numpy, explicit loops), for tests.


def _reference_nd(volume, grid, align_corners: bool) -> np.ndarray:
    volume = np.asarray(volume, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    b, c = volume.shape[0], volume.shape[-1]
    spatial = volume.shape[1:-1]
    n = len(spatial)
    pts = grid.reshape(b, -1, n)
    out = np.zeros((b, pts.shape[1], c))
    for bi in range(b):
        for m in range(pts.shape[1]):
            # Continuous index per spatial axis (volume order): grid component n-1-a.
            p = [_to_index(pts[bi, m, n - 1 - a], spatial[a], align_corners) for a in range(n)]
            lo = [math.floor(v) for v in p]
            for bits in itertools.product((0, 1), repeat=n):
                idx = tuple(lo[a] + bits[a] for a in range(n))
                if not all(0 <= idx[a] < spatial[a] for a in range(n)):
                    continue
                wgt = 1.0
                for a in range(n):
                    f = p[a] - lo[a]
                    wgt *= f if bits[a] else 1.0 - f
                out[bi, m] += wgt * volume[(bi, *idx)]
    return out.reshape(b, *grid.shape[1:-1], c)


def grid_sample_3d_reference(volume, grid, *, align_corners: bool = False) -> np.ndarray:
    """Loop-by-loop float64 numpy version of `grid_sample_3d` (tests only; slow)."""
    return _reference_nd(volume, grid, align_corners)


def grid_sample_2d_reference(image, grid, *, align_corners: bool = False) -> np.ndarray:
    """Loop-by-loop float64 numpy version of `grid_sample_2d` (tests only; slow)."""
    return _reference_nd(image, grid, align_corners)
