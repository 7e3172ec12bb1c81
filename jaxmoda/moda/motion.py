"""MoDA's 70-d per-frame motion space: LivePortrait (LP) keypoint parameters.

Layout of one frame (moda.md 1.2), in this order:

    0:63   exp    21x3 expression offsets delta, row-major (kp0.xyz, kp1.xyz, ..., kp20.xyz)
    63     scale  s
    64:67  t      (tx, ty, tz) in grid units; tz is carried but never used by the renderer
    67:70  pose   (pitch, yaw, roll) in degrees

LP keypoint algebra (moda.md 1.1, 1.3): the head pose is R = (Rz(roll) Ry(yaw) Rx(pitch))^T used
with row vectors, and the driving keypoints are `x_d = s * (x_c @ R + delta) + (tx, ty, 0)`.

Arrays: functions accept numpy or jax arrays with any leading axes `...`. The numpy-in/numpy-out
helpers (`split`, `join`, `MotionStats.normalize`, `smooth_pose`, `mouth_openness`) return the
same kind of array they were given; the geometry (`bins_to_degrees`, `rotation_matrix`,
`transform_keypoints`) is written in jnp and always returns jax arrays.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmoda.errors import ConfigError, DataError

# ----------------------------------------------------------------------------------------------
# Layout.

DIM = 70
NUM_KP = 21
EXP = slice(0, 63)
SCALE = 63
TRANS = slice(64, 67)
POSE = slice(67, 70)

# Semantic keypoint groups shared by MoDA / Ditto / JoyVASA (moda.md 1.1).
KP_GROUPS: dict[str, tuple[int, ...]] = {
    "brows": (1, 2),
    "eyes": (11, 13, 15, 16, 18),
    "lips": (6, 12, 14, 17, 19, 20),
}

# Names accepted by `group_dims`: the keypoint groups, "pose" (pitch, yaw, roll plus tx, ty: the
# rigid head motion the renderer uses; scale and tz are excluded because MoDA's renderer ignores
# them) and "exp" (all 63 expression coordinates).
GROUP_NAMES: tuple[str, ...] = ("brows", "eyes", "lips", "pose", "exp")

# MoDA's "driven" keypoints: brows, eyes, lips (moda.md 1.1); all their xyz come from the generator.
DRIVEN_KPS: tuple[int, ...] = (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)

# Mouth openness: (upper-lip kp, lower-lip kp) pairs whose expression-offset y difference
# (lower.y - upper.y) measures the lip opening. Choice and evidence: LivePortrait's own
# "lip close <-> open" retargeting control moves kp19.y by +1e-3 and kp17.y by -1e-4 per unit of
# opening (the two move apart along y), and kp19.y has by far the largest lip std in the real data
# (0.021, moda.md 1.2). So kp17 is taken as the upper lip and kp19 as the lower lip / jaw. The
# other lip kps (6, 12, 14, 20) move with smiling / grinning / pouting in that control set and are
# not used for openness. With this sign, opening the mouth makes openness grow.
MOUTH_OPEN_PAIRS: tuple[tuple[int, int], ...] = ((17, 19),)

_Y = 1  # the y axis index within a keypoint's xyz

# Pose bins of LP's motion extractor: degrees = 3 * E[bin] - 97.5 over 66 bins.
NUM_POSE_BINS = 66
_BIN_DEGREES = 3.0
_BIN_OFFSET = 97.5

_STATS_FORMAT = "jaxmoda.moda.motion_stats/v1"


def exp_dim(kp: int, axis: int) -> int:
    """Index into the 70-d vector of keypoint `kp`'s expression coordinate `axis` (0=x, 1=y, 2=z)."""
    if not 0 <= kp < NUM_KP or not 0 <= axis < 3:
        raise ConfigError(f"keypoint {kp} axis {axis} is out of range; use kp in 0..20 and axis in 0..2")
    return kp * 3 + axis


def group_dims(name: str) -> np.ndarray:
    """Sorted indices into the 70-d vector of a named group.

    Args:
      name: one of `GROUP_NAMES`. A keypoint group ("brows", "eyes", "lips") gives all xyz
        coordinates of its keypoints ("lips" -> 18 dims); "pose" gives tx, ty, pitch, yaw, roll
        (64, 65, 67, 68, 69); "exp" gives 0..62.

    Returns:
      int64 [n] sorted indices.
    """
    if name in KP_GROUPS:
        dims = [exp_dim(kp, a) for kp in KP_GROUPS[name] for a in range(3)]
    elif name == "pose":
        dims = [TRANS.start, TRANS.start + 1, *range(POSE.start, POSE.stop)]
    elif name == "exp":
        dims = list(range(EXP.start, EXP.stop))
    else:
        raise ConfigError(f"unknown motion group {name!r}; valid groups: {', '.join(GROUP_NAMES)}")
    return np.asarray(sorted(dims), dtype=np.int64)


# Expression coordinates MoDA's absolute-mode renderer takes from the generator (moda.md 1.3):
# every xyz of the driven keypoints plus kp3.y, kp4.y, kp5.z, kp8.z, kp9.y, kp9.z (45 in all);
# all other expression coordinates are pinned to the source image's.
RENDER_EXP_DIMS: np.ndarray = np.asarray(
    sorted(
        [exp_dim(kp, a) for kp in DRIVEN_KPS for a in range(3)]
        + [exp_dim(3, 1), exp_dim(4, 1), exp_dim(5, 2), exp_dim(8, 2), exp_dim(9, 1), exp_dim(9, 2)]
    ),
    dtype=np.int64,
)


# ----------------------------------------------------------------------------------------------
# Array helpers.


def _is_jax(x: Any) -> bool:
    return isinstance(x, jax.Array)


def _xp(x: Any) -> Any:
    """The array namespace (jnp or np) matching `x`."""
    return jnp if _is_jax(x) else np


def _arr(x: Any) -> Any:
    """`x` as an array, keeping jax arrays as they are (lists and scalars become numpy)."""
    return x if _is_jax(x) else np.asarray(x)


def _as_f32(x: Any) -> Any:
    """`x` as float32, keeping its kind (jax stays jax, anything else becomes numpy)."""
    if _is_jax(x):
        return x.astype(jnp.float32)
    return np.asarray(x, dtype=np.float32)


def _check_last_dim(x: Any, what: str) -> None:
    if x.ndim < 1 or x.shape[-1] != DIM:
        raise DataError(f"{what} has shape {tuple(x.shape)}; expected [..., {DIM}] motion frames")


# ----------------------------------------------------------------------------------------------
# Split / join.


def split(x70: Any) -> dict[str, Any]:
    """Splits [..., 70] motion into its parts.

    Args:
      x70: [..., 70] numpy or jax array.

    Returns:
      dict with exp [..., 21, 3], scale [...], t [..., 3] (tx, ty, tz), pose [..., 3]
      (pitch, yaw, roll degrees); same array kind and dtype as `x70`.
    """
    x70 = _arr(x70)
    _check_last_dim(x70, "motion")
    lead = x70.shape[:-1]
    return {
        "exp": x70[..., EXP].reshape(*lead, NUM_KP, 3),
        "scale": x70[..., SCALE],
        "t": x70[..., TRANS],
        "pose": x70[..., POSE],
    }


def join(parts: Mapping[str, Any]) -> Any:
    """Inverse of `split`: exp [..., 21, 3], scale [...], t [..., 3], pose [..., 3] -> [..., 70].

    Returns a jax array if any part is a jax array, else numpy.
    """
    missing = {"exp", "scale", "t", "pose"} - set(parts)
    if missing:
        raise DataError(f"motion parts are missing {sorted(missing)}; pass exp, scale, t and pose")
    exp, scale, t, pose = parts["exp"], parts["scale"], parts["t"], parts["pose"]
    xp = jnp if any(_is_jax(p) for p in (exp, scale, t, pose)) else np
    exp, scale, t, pose = (xp.asarray(p) for p in (exp, scale, t, pose))
    lead = exp.shape[:-2]
    if exp.shape[-2:] != (NUM_KP, 3) or scale.shape != lead or t.shape != (*lead, 3) or pose.shape != (*lead, 3):
        raise DataError(
            f"motion parts have shapes exp {tuple(exp.shape)}, scale {tuple(scale.shape)}, t {tuple(t.shape)}, "
            f"pose {tuple(pose.shape)}; expected [..., 21, 3], [...], [..., 3], [..., 3]"
        )
    return xp.concatenate([exp.reshape(*lead, NUM_KP * 3), scale[..., None], t, pose], axis=-1)


# ----------------------------------------------------------------------------------------------
# Normalisation statistics.


@dataclasses.dataclass(frozen=True, eq=False)
class MotionStats:
    """Per-dimension z-score statistics of the 70-d motion.

    Attributes:
      mean: float32 [70].
      std: float32 [70], all > 0. Dims whose data std is below `min_std` hold 1.0 (the tiny-std
        guard): the official code divides by `std + 1e-5`, which amplifies any numerical noise on
        the ~constant dims (tz, most expression z) by 1e5; with std 1 such dims are only
        mean-centred.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        mean = np.array(self.mean, dtype=np.float32).reshape(-1)  # own copies, made read-only below
        std = np.array(self.std, dtype=np.float32).reshape(-1)
        if mean.shape != (DIM,) or std.shape != (DIM,):
            raise DataError(f"motion stats need mean and std of {DIM} values, got {mean.size} and {std.size}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise DataError(
                "motion stats need finite mean and finite std > 0; recompute them with MotionStats.from_data"
            )
        mean.setflags(write=False)
        std.setflags(write=False)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_data(cls, x: Any, min_std: float = 1e-4) -> MotionStats:
        """Statistics over all frames of `x`.

        Args:
          x: [..., 70] motion (any leading axes, at least one frame).
          min_std: dims whose std is below this get std 1.0 (see the class docstring).

        Returns:
          The `MotionStats`.
        """
        data = np.asarray(x, dtype=np.float64)
        _check_last_dim(data, "motion data")
        data = data.reshape(-1, DIM)
        if data.shape[0] == 0:
            raise DataError("motion data has no frames; pass at least one [70] frame")
        if not np.all(np.isfinite(data)):
            raise DataError("motion data contains NaN or inf; clean the dataset before computing stats")
        mean = data.mean(axis=0)
        std = data.std(axis=0)
        std = np.where(std < min_std, 1.0, std)
        return cls(mean=mean.astype(np.float32), std=std.astype(np.float32))

    def normalize(self, x: Any) -> Any:
        """(x - mean) / std over the last axis; [..., 70] numpy or jax -> same kind, float32."""
        x = _arr(x)
        _check_last_dim(x, "motion")
        xp = _xp(x)
        return (_as_f32(x) - xp.asarray(self.mean)) / xp.asarray(self.std)

    def denormalize(self, x: Any) -> Any:
        """Inverse of `normalize`: x * std + mean; [..., 70] numpy or jax -> same kind, float32."""
        x = _arr(x)
        _check_last_dim(x, "normalized motion")
        xp = _xp(x)
        return _as_f32(x) * xp.asarray(self.std) + xp.asarray(self.mean)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the stats as JSON with a format tag (float32 values round-trip exactly)."""
        payload = {
            "format": _STATS_FORMAT,
            "dim": DIM,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }
        with open(path, "w") as f:
            json.dump(payload, f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MotionStats:
        """Reads stats written by `save`; any problem raises a one-line `DataError`."""
        fix = "recompute it with MotionStats.from_data(motion).save(path) or use default_stats()"
        try:
            with open(path) as f:
                payload = json.load(f)
        except FileNotFoundError:
            raise DataError(f"motion stats file {path} does not exist; {fix}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"motion stats file {path} is not readable JSON ({reason}); {fix}") from None
        if not isinstance(payload, dict) or payload.get("format") != _STATS_FORMAT:
            raise DataError(f"motion stats file {path} lacks the format tag {_STATS_FORMAT!r}; {fix}")
        try:
            mean = np.asarray(payload["mean"], dtype=np.float32)
            std = np.asarray(payload["std"], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"motion stats file {path} has no numeric 'mean' and 'std' lists; {fix}") from None
        if mean.shape != (DIM,) or std.shape != (DIM,):
            raise DataError(
                f"motion stats file {path} holds mean/std of shapes {mean.shape}/{std.shape}, not ({DIM},); {fix}"
            )
        try:
            return cls(mean=mean, std=std)
        except DataError as e:
            raise DataError(f"motion stats file {path}: {e}; {fix}") from None


def default_stats() -> MotionStats:
    """Plausible real-data stats (moda.md 1.2) for use before dataset stats exist.

    Scale mean 1.286 std 0.069; t mean (-0.013, 0.100, 0) std (0.066, 0.035, guarded 1.0);
    pose mean (-2.34, -0.25, -0.33) deg std (8.88, 23.86, 5.61) deg; expression mean 0 with std
    0.01 on x and y and the guarded 1.0 on z (most expression z are ~constant in real data).
    """
    mean = np.zeros(DIM, np.float32)
    std = np.ones(DIM, np.float32)
    for kp in range(NUM_KP):
        std[exp_dim(kp, 0)] = 0.01
        std[exp_dim(kp, 1)] = 0.01
    mean[SCALE], std[SCALE] = 1.286, 0.069
    mean[TRANS] = (-0.013, 0.100, 0.0)
    std[TRANS] = (0.066, 0.035, 1.0)
    mean[POSE] = (-2.34, -0.25, -0.33)
    std[POSE] = (8.88, 23.86, 5.61)
    return MotionStats(mean=mean, std=std)


# ----------------------------------------------------------------------------------------------
# Pose and keypoint geometry (jnp).


def bins_to_degrees(logits: Any) -> jax.Array:
    """LP's soft-argmax over 66 pose bins: 3 * E_softmax[k] - 97.5 degrees.

    Args:
      logits: [..., 66] bin logits.

    Returns:
      float32 [...] degrees (a one-hot at bin k gives 3k - 97.5; uniform logits give 0).
    """
    logits = jnp.asarray(logits, jnp.float32)
    if logits.shape[-1] != NUM_POSE_BINS:
        raise DataError(f"pose logits have shape {tuple(logits.shape)}; expected [..., {NUM_POSE_BINS}] bins")
    probs = jax.nn.softmax(logits, axis=-1)
    expectation = probs @ jnp.arange(NUM_POSE_BINS, dtype=jnp.float32)
    return _BIN_DEGREES * expectation - _BIN_OFFSET


def rotation_matrix(pitch: Any, yaw: Any, roll: Any) -> jax.Array:
    """LP's head rotation for row vectors: R = (Rz(roll) @ Ry(yaw) @ Rx(pitch))^T.

    Args:
      pitch, yaw, roll: degrees, broadcastable arrays of any leading shape [...].

    Returns:
      float32 [..., 3, 3]; rotate keypoints as `x @ R` with x [..., N, 3].
    """
    p, y, r = jnp.broadcast_arrays(*(jnp.deg2rad(jnp.asarray(a, jnp.float32)) for a in (pitch, yaw, roll)))
    one, zero = jnp.ones_like(p), jnp.zeros_like(p)

    def mat(rows: list[list[jax.Array]]) -> jax.Array:  # 3x3 nested lists of [...] -> [..., 3, 3]
        return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)

    rx = mat([[one, zero, zero], [zero, jnp.cos(p), -jnp.sin(p)], [zero, jnp.sin(p), jnp.cos(p)]])
    ry = mat([[jnp.cos(y), zero, jnp.sin(y)], [zero, one, zero], [-jnp.sin(y), zero, jnp.cos(y)]])
    rz = mat([[jnp.cos(r), -jnp.sin(r), zero], [jnp.sin(r), jnp.cos(r), zero], [zero, zero, one]])
    return jnp.swapaxes(rz @ ry @ rx, -1, -2)


def transform_keypoints(x_c: Any, pose_deg: Any, exp: Any, scale: Any, t: Any) -> jax.Array:
    """LP's driving keypoints: s * (x_c @ R(pose) + exp) + (tx, ty, 0).

    Args:
      x_c: [..., 21, 3] canonical keypoints.
      pose_deg: [..., 3] (pitch, yaw, roll) degrees.
      exp: [..., 21, 3] expression offsets.
      scale: [...] scale s.
      t: [..., 3] (tx, ty, tz); tz is ignored, as in LivePortrait.

    Returns:
      float32 [..., 21, 3] driving keypoints.
    """
    x_c = jnp.asarray(x_c, jnp.float32)
    pose_deg = jnp.asarray(pose_deg, jnp.float32)
    exp = jnp.asarray(exp, jnp.float32)
    scale = jnp.asarray(scale, jnp.float32)
    t = jnp.asarray(t, jnp.float32)
    rot = rotation_matrix(pose_deg[..., 0], pose_deg[..., 1], pose_deg[..., 2])  # [..., 3, 3]
    t_xy0 = t * jnp.asarray([1.0, 1.0, 0.0], jnp.float32)  # drop tz
    return scale[..., None, None] * (x_c @ rot + exp) + t_xy0[..., None, :]


def compose_absolute(generated: Any, source: Any) -> Any:
    """MoDA's absolute-mode selection of what the renderer takes from generated motion.

    Expression coordinates in `RENDER_EXP_DIMS` and (tx, ty, pitch, yaw, roll) come from
    `generated`; every other expression coordinate and the scale come from `source`; tz is 0.
    Not reproduced (moda.md 1.3): the fixed eyeball-gaze offsets (constants unknown) and the
    `rescale_ratio` on t, which belongs to the dataset's scale handling.

    Args:
      generated: [..., 70] de-normalised generated motion.
      source: [..., 70] or [70] motion of the source image (broadcast over frames).

    Returns:
      [..., 70] motion to feed `transform_keypoints`; jax if either input is jax, else numpy.
    """
    xp = jnp if _is_jax(generated) or _is_jax(source) else np
    gen = xp.asarray(_as_f32(generated))
    src = xp.asarray(_as_f32(source))
    _check_last_dim(gen, "generated motion")
    _check_last_dim(src, "source motion")
    src = xp.broadcast_to(src, gen.shape)
    take_gen = np.zeros(DIM, bool)
    take_gen[RENDER_EXP_DIMS] = True
    take_gen[[TRANS.start, TRANS.start + 1]] = True
    take_gen[POSE] = True
    out = xp.where(xp.asarray(take_gen), gen, src)
    keep_tz = np.ones(DIM, np.float32)
    keep_tz[TRANS.start + 2] = 0.0
    return out * xp.asarray(keep_tz)


# ----------------------------------------------------------------------------------------------
# Mouth openness.


def mouth_direction() -> np.ndarray:
    """Unit vector [70] along which mouth openness is measured.

    Nonzero only on the y dims of the `MOUTH_OPEN_PAIRS` keypoints: +w on each lower-lip y and -w
    on each upper-lip y, normalised to unit length. `mouth_openness(x) == x @ mouth_direction()`,
    so metrics can project any motion or motion delta onto it.

    Returns:
      float32 [70].
    """
    w = np.zeros(DIM, np.float64)
    for upper, lower in MOUTH_OPEN_PAIRS:
        w[exp_dim(lower, _Y)] += 1.0
        w[exp_dim(upper, _Y)] -= 1.0
    return (w / np.linalg.norm(w)).astype(np.float32)


def mouth_openness(x70: Any) -> Any:
    """Lip opening per frame: projection of the motion on `mouth_direction()`.

    Equals the summed vertical gap sum_pairs (lower.y - upper.y) of the expression offsets divided
    by the norm of the direction weights (for the single pair (17, 19): (y19 - y17) / sqrt(2)).
    It is linear and has no offset, so it is relative to the neutral expression (offsets 0) and
    grows as the mouth opens. Use it on de-normalised motion.

    Args:
      x70: [..., 70] numpy or jax motion (or motion delta).

    Returns:
      float32 [...] of the same kind.
    """
    x70 = _arr(x70)
    _check_last_dim(x70, "motion")
    xp = _xp(x70)
    return _as_f32(x70) @ xp.asarray(mouth_direction())


# ----------------------------------------------------------------------------------------------
# Temporal smoothing.


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(4.0 * sigma + 0.5)
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (k / sigma) ** 2)
    return w / w.sum()


def smooth_pose(x: Any, sigma_frames: float) -> Any:
    """Gaussian smoothing along time of the rigid dims 63:70 (scale, t, pose) only.

    The expression dims 0:63 are returned bit-exactly unchanged. Edges use 'nearest' (the first /
    last frame is repeated); the kernel is truncated at 4 sigma (as scipy's gaussian_filter1d).

    Args:
      x: [T, 70] motion (or [..., T, 70]; time is axis -2), numpy or jax.
      sigma_frames: kernel std in frames; 0 returns the input values unchanged.

    Returns:
      Same shape, kind and dtype as `x`.
    """
    if not (math.isfinite(sigma_frames) and sigma_frames >= 0):
        raise ConfigError(f"smoothing sigma_frames={sigma_frames} must be a finite number >= 0")
    x = _arr(x)
    _check_last_dim(x, "motion")
    if x.ndim < 2:
        raise DataError(f"motion has shape {tuple(x.shape)}; smoothing needs [T, {DIM}] frames")
    xp = _xp(x)
    if sigma_frames == 0 or x.shape[-2] == 0:
        return x.copy() if xp is np else x
    weights = _gaussian_kernel(float(sigma_frames))
    radius = (len(weights) - 1) // 2
    rigid = x[..., SCALE:].astype(np.float64 if xp is np else jnp.float32)  # [..., T, 7]
    n_time = rigid.shape[-2]
    pad = [(0, 0)] * (rigid.ndim - 2) + [(radius, radius), (0, 0)]
    padded = xp.pad(rigid, pad, mode="edge")  # [..., T + 2r, 7]
    acc = xp.zeros_like(rigid)
    for i, w in enumerate(weights):
        acc = acc + w * padded[..., i : i + n_time, :]
    return xp.concatenate([x[..., :SCALE], acc.astype(x.dtype)], axis=-1)
