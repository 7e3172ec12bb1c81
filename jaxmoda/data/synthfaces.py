"""SynthFaces: a deterministic numpy/PIL renderer of stylised faces driven by MoDA's 70-d motion.

    python -m jaxmoda.data.synthfaces --out strip.png [--seed 0 --size 128 --every 4 --frames 48]

Real face video and LivePortrait weights are not available here, so the neural renderer is trained
on faces drawn by this module from the same 70-d motion (`jaxmoda.moda.motion` layout) that MoDA
generates. Every frame is a pure function of (motion, identity, size): no randomness at render time.

Geometry. The 21 driving keypoints are LivePortrait's (moda.md 1.1):
``x_d = motion.transform_keypoints(x_c, pose, exp, scale, t) = s * (x_c @ R + exp) + (tx, ty, 0)``
with the identity's canonical keypoints `x_c` (`synthtalk.make_identity`). The renderer takes the
*head-frame* keypoints ``h = ((x_d - (tx, ty, 0)) / s) @ R^T = x_c + exp @ R^T`` (exact because R
is a rotation) and their displacement ``d = h - x_c``. Every face part is a 3-D curve built in the
head frame from a per-identity rest shape plus ``gain * d`` of the keypoints that drive it, then
mapped back with ``s * (p @ R) + (tx, ty)`` (so a part with rest ``x_c`` and gain 1 lands exactly
on ``x_d``), and projected orthographically (z is dropped; z points towards the camera, y down):

    column = (x - VIEW_CENTER[0]) / VIEW_HALF_EXTENT * size / 2 + size / 2
    row    = (y - VIEW_CENTER[1]) / VIEW_HALF_EXTENT * size / 2 + size / 2

i.e. the LP square [-1.05, 1.05]^2 fills the image; a neutral frame (s = 1.286, t = (0, 0.1), the
dataset means) spans about rows 0.02-0.94 (hair top to chin; some hair touches the top edge) and
columns 0.17-0.83 of the image. Pixels are in continuous coordinates (pixel i covers [i, i + 1)).

Parts (keypoint roles: `synthtalk.KEYPOINT_ROLES` for lips, eyes, brows; `FACE_ROLES` below for
the rest, from SynthTalk's template face):

- Face outline: a closed Catmull-Rom curve through the hairline (on the cranium ellipsoid), the
  temples, the cheeks (kp 3, 4), the jaw (kp 7, 8) and the chin (kp 5), in 3-D, so yaw / pitch /
  roll turn it; the cranium is an ellipsoid whose exact orthographic silhouette is drawn in the hair
  colour behind it (the hair band above the hairline and at the temples); ears, neck and shoulders.
- Texture: per-identity freckles / moles on the face surface (drawn only while facing the camera)
  and cheek blush, all fixed in the head frame, so they move rigidly with the head.
- Eyes: an almond opening between two corners; its height is ``H * a`` with the lid aperture
  ``a = clip(1 + (d_lower.y - d_upper.y) / EYE_CLOSE_SPAN, 0, 1.35)`` from the upper / lower lid
  keypoints (kp 11/13 left, 15/16 right): a SynthTalk blink (upper lid +0.028, lower -0.006)
  closes it. Iris, pupil and catch-light are clipped to the opening. The eye follower (kp 18) moves
  the lid-crease lines above both eyes.
- Brows (kp 1, 2): thick arcs translated by ``BROW_GAIN * d``.
- Nose (kp 10 bridge, kp 9 tip): ridge shadow, tip and nostrils at the tip's depth, so they shift
  most under yaw.
- Lips: corners kp 6, 12 (x gain `CORNER_GAIN_X`, y gain `MOUTH_GAIN`); upper / lower inner edges
  at the middle move by ``MOUTH_GAIN * d.y`` of kp 17 / 19 (`motion.MOUTH_OPEN_PAIRS`), the outer
  edges follow the lip followers kp 14 / 20. Between the inner edges the mouth is dark (with a
  tongue darker than the lips), so the opening height at the middle is
  ``MOUTH_GAIN * (d19.y - d17.y)`` and grows monotonically with `motion.mouth_openness`.

Anti-aliasing: everything is drawn with PIL at `supersample` x the size (default 4) and reduced by
box averaging, so sub-pixel motions change pixel values gradually (1 / supersample px steps).

Identities. `make_face_identity(identity_id)` adds an appearance to `synthtalk.make_identity`'s
geometry: skin tone, hair / brow colour, iris colour, lip colour, background and shirt colour,
eye size, hairline height, lip thickness, freckles, blush; all drawn from the id alone.
`EVAL_IDENTITIES` = ids 0..999 contains every face SynthTalk clips use (0..367), so a renderer
trained on `TRAIN_IDENTITIES` (ids 1000..99999, disjoint) is always evaluated on SynthTalk faces
it has never seen, as LivePortrait is on a new photo.
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from PIL import Image, ImageDraw

from jaxmoda.data import synthtalk as st
from jaxmoda.errors import ConfigError, DataError, cli_main
from jaxmoda.moda import motion as mo

# ----------------------------------------------------------------------------------------------
# Constants.

VIEW_CENTER = (0.0, 0.0)  # LP image units (x_d x, y) at the image centre
VIEW_HALF_EXTENT = 1.05  # LP units from the image centre to its border
SUPERSAMPLE = 4
DRAWING_VERSION = 1  # bump when a change alters the pixels drawn (cached frame sets key on it)

EVAL_IDENTITIES = range(1000)  # includes all SynthTalk faces (ids 0..367)
TRAIN_IDENTITIES = range(1000, 100_000)

# Keypoints of the face outline and nose (SynthTalk's template face; the expression keypoints'
# roles are `synthtalk.KEYPOINT_ROLES`).
FACE_ROLES: dict[str, tuple[int, ...]] = {
    "forehead": (0,), "cheeks": (3, 4), "jaw": (7, 8), "chin": (5,), "nose_tip": (9,), "nose_bridge": (10,),
}
_ROLES = st.KEYPOINT_ROLES
_LEFT_EYE = (_ROLES["upper_lids"][0], _ROLES["lower_lids"][0])  # (11, 13)
_RIGHT_EYE = (_ROLES["upper_lids"][1], _ROLES["lower_lids"][1])  # (15, 16)
_EYE_FOLLOWER = _ROLES["eye_followers"][0]  # 18
_BROWS = _ROLES["brows"]  # (1, 2)
_CORNERS = _ROLES["mouth_corners"]  # (6, 12)
_UPPER_LIP = _ROLES["upper_lips"][0]  # 17
_LOWER_LIP = _ROLES["lower_lips"][0]  # 19
_UPPER_FOLLOWER, _LOWER_FOLLOWER = _ROLES["lip_followers"]  # 14, 20

# Displacement gains (head-frame displacement d -> drawn displacement) and shape constants.
EYE_CLOSE_SPAN = 0.030  # decrease of the lid gap that closes the eye (SynthTalk blink: 0.029-0.034)
BROW_GAIN = 1.6
MOUTH_GAIN = 1.5
CORNER_GAIN_X = 2.0
_EYE_W, _EYE_HU, _EYE_HL = 0.085, 0.036, 0.020  # eye half-width, upper / lower opening heights
_IRIS_R = 0.030

_SKIN = np.array([(255, 226, 200), (243, 200, 170), (226, 174, 134), (200, 138, 100), (165, 106, 72),
                  (124, 80, 52), (94, 60, 42)], np.float64)
_HAIR = np.array([(24, 20, 18), (58, 40, 28), (100, 66, 40), (146, 94, 52), (196, 158, 98), (226, 202, 144),
                  (136, 46, 26), (150, 150, 150), (228, 228, 222)], np.float64)
_IRIS = np.array([(76, 48, 30), (112, 76, 42), (92, 118, 60), (58, 108, 150), (108, 128, 140), (40, 30, 26)],
                 np.float64)

Color = tuple[int, int, int]


def _lum(c: Sequence[float]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _rgb(c: Sequence[float]) -> Color:
    r, g, b = (round(min(max(v, 0.0), 255.0)) for v in c)
    return (r, g, b)


def _mix(a: Sequence[float], b: Sequence[float], w: float) -> Color:
    return _rgb([(1.0 - w) * x + w * y for x, y in zip(a, b)])


# ----------------------------------------------------------------------------------------------
# Identities.


@dataclasses.dataclass(frozen=True, eq=False)
class FaceIdentity:
    """Geometry (from `synthtalk.make_identity`) plus appearance of one synthetic face.

    Attributes:
      identity_id: the id; everything below is a deterministic function of it.
      geometry: the SynthTalk identity (canonical keypoints ``geometry.x_c`` [21, 3]).
      skin, hair, brow, iris, lips, background, shirt: RGB colours.
      eye_size: scale of the eye opening (0.85-1.15).
      brow_thickness: brow thickness in LP units.
      hairline: hairline y offset from the forehead keypoint (kp 0), LP units (positive: lower).
      lip_thickness: (upper, lower) lip thickness in LP units.
      nose_width: half-width of the nostrils in LP units.
      freckles: float32 [n, 4] head-frame (x, y, z, radius) of freckles / moles on the face surface.
      freckle_colors: n RGB colours.
      blush: cheek colour (skin mixed towards red).
      rest: head-frame rest anchors of the parts (sanitised from x_c, see `_rest_anchors`).
    """

    identity_id: int
    geometry: st.Identity
    skin: Color
    hair: Color
    brow: Color
    iris: Color
    lips: Color
    background: Color
    shirt: Color
    eye_size: float
    brow_thickness: float
    hairline: float
    lip_thickness: tuple[float, float]
    nose_width: float
    freckles: np.ndarray
    freckle_colors: tuple[Color, ...]
    blush: Color
    rest: dict[str, Any]

    @property
    def x_c(self) -> np.ndarray:
        return self.geometry.x_c


def _palette(table: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    return table[int(rng.integers(len(table)))] + rng.normal(0.0, jitter, 3)


def _rest_anchors(x_c: np.ndarray, eye_size: float) -> dict[str, Any]:
    """Sanitised head-frame rest positions of eyes, brows, mouth and nose.

    SynthTalk's canonical keypoints carry N(0, 0.025) noise per coordinate, as large as the gap
    between the lids or the lips, so small parts are placed from robust combinations of them (eye
    centre = mean of its lids, mouth line = mean of the lips, clipped widths / offsets) and the
    keypoints' motion is applied as displacements from `x_c`.
    """
    x_c = np.asarray(x_c, np.float64)
    eyes = []
    for up, lo in (_LEFT_EYE, _RIGHT_EYE):
        eyes.append(0.5 * (x_c[up] + x_c[lo]))
    mouth = 0.5 * (x_c[_UPPER_LIP] + x_c[_LOWER_LIP])
    left, right = _CORNERS
    half_w = float(np.clip(0.5 * abs(x_c[right, 0] - x_c[left, 0]), 0.13, 0.21))
    corner_dy = float(np.clip(0.5 * (x_c[left, 1] + x_c[right, 1]) - mouth[1], -0.02, 0.015))
    eye_y = 0.5 * (eyes[0][1] + eyes[1][1])
    mouth[1] = float(np.clip(mouth[1], eye_y + 0.42, eye_y + 0.62))
    nose = x_c[FACE_ROLES["nose_tip"][0]].copy()
    nose[1] = float(np.clip(nose[1], eye_y + 0.22, mouth[1] - 0.17))
    bridge = x_c[FACE_ROLES["nose_bridge"][0]].copy()
    bridge[1] = float(np.clip(bridge[1], eye_y - 0.04, nose[1] - 0.15))
    brows = []
    for b, eye in zip(_BROWS, eyes):
        p = x_c[b].copy()
        p[0] = float(np.clip(p[0], eye[0] - 0.05, eye[0] + 0.05))
        p[1] = float(np.clip(p[1], eye[1] - _EYE_HU * eye_size - 0.14, eye[1] - _EYE_HU * eye_size - 0.06))
        brows.append(p)
    return {"eyes": eyes, "brows": brows, "mouth": mouth, "mouth_half_w": half_w, "corner_dy": corner_dy,
            "nose": nose, "bridge": bridge}


def _face_surface_z(x: np.ndarray, y: np.ndarray, x_c: np.ndarray) -> np.ndarray:
    """Depth of the face surface at head-frame (x, y): a half ellipsoid through the cheeks."""
    half_w = 0.5 * (x_c[4, 0] - x_c[3, 0])
    return -0.15 + 0.40 * np.sqrt(np.clip(1.0 - (x / (half_w + 0.05)) ** 2 - (y / 0.85) ** 2, 0.0, 1.0))


@functools.lru_cache(maxsize=4096)
def make_face_identity(identity_id: int) -> FaceIdentity:
    """The face with this id: `synthtalk.make_identity(identity_id)` plus its appearance."""
    identity_id = int(identity_id)
    if identity_id < 0:
        raise ConfigError(f"identity_id={identity_id} must be >= 0")
    geometry = st.make_identity(identity_id)
    rng = np.random.default_rng(np.random.SeedSequence([0xFACE5, identity_id]))
    t = rng.uniform(0.0, 1.0) * (len(_SKIN) - 1)
    k = min(int(t), len(_SKIN) - 2)
    skin = _SKIN[k] + (t - k) * (_SKIN[k + 1] - _SKIN[k]) + rng.normal(0.0, 4.0, 3)
    hair = _palette(_HAIR, rng, 8.0)
    iris = _palette(_IRIS, rng, 8.0)
    brow = hair * 0.75 if _lum(hair) < 120 else 0.55 * hair + 0.45 * (0.5 * skin)
    lips = skin * np.array([0.80, 0.56, 0.58]) + np.array([22.0, 2.0, 6.0]) + rng.normal(0.0, 4.0, 3)
    lips = np.minimum(lips, skin - 18.0)  # lips always darker than skin (mouth darkness is monotonic)
    for _ in range(64):  # a background that contrasts with the skin
        h, s, v = rng.uniform(0.0, 1.0), rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.95)
        bg = np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0
        if abs(_lum(bg) - _lum(skin)) > 45.0:
            break
    shirt = np.array(colorsys.hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.9))) * 255
    eye_size = float(rng.uniform(0.85, 1.15))
    x_c = np.asarray(geometry.x_c, np.float64)
    rest = _rest_anchors(x_c, eye_size)
    # Freckles and moles on the cheeks / forehead, away from eyes, nose and mouth.
    n_freckles = int(rng.choice([0, 0, 6, 12, 24, 40]))
    n_moles = int(rng.integers(0, 3))
    spots, colors = [], []
    freckle_c, mole_c = _mix(skin, (90, 40, 20), 0.28), _mix(skin, (50, 25, 15), 0.6)
    tries = 0
    while len(spots) < n_freckles + n_moles and tries < 1000:
        tries += 1
        x, y = rng.uniform(-0.36, 0.36), rng.uniform(-0.52, 0.32)
        near = [rest["eyes"][0], rest["eyes"][1], rest["mouth"], rest["nose"]]
        if any(abs(x - p[0]) < 0.14 and abs(y - p[1]) < 0.09 for p in near[:2]):
            continue
        if abs(x - rest["mouth"][0]) < rest["mouth_half_w"] + 0.04 and -0.08 < y - rest["mouth"][1] < 0.12:
            continue
        if abs(x - rest["nose"][0]) < 0.09 and rest["bridge"][1] - 0.02 < y < rest["nose"][1] + 0.06:
            continue
        mole = len(spots) >= n_freckles
        z = float(_face_surface_z(np.array(x), np.array(y), x_c)) + 0.005
        spots.append((x, y, z, rng.uniform(0.012, 0.017) if mole else rng.uniform(0.006, 0.011)))
        colors.append(mole_c if mole else freckle_c)
    blush = _mix(skin, (220, 70, 80), float(rng.uniform(0.0, 0.22)))
    return FaceIdentity(
        identity_id=identity_id, geometry=geometry, skin=_rgb(skin), hair=_rgb(hair), brow=_rgb(brow),
        iris=_rgb(iris), lips=_rgb(lips), background=_rgb(bg), shirt=_rgb(shirt), eye_size=eye_size,
        brow_thickness=float(rng.uniform(0.018, 0.030)), hairline=float(rng.uniform(-0.08, 0.07)),
        lip_thickness=(float(rng.uniform(0.022, 0.034)), float(rng.uniform(0.030, 0.044))),
        nose_width=float(rng.uniform(0.040, 0.058)),
        freckles=np.asarray(spots, np.float32).reshape(-1, 4), freckle_colors=tuple(colors), blush=blush,
        rest=rest,
    )


def _as_face_identity(identity: Any) -> FaceIdentity:
    if isinstance(identity, FaceIdentity):
        return identity
    if isinstance(identity, st.Identity):
        fid = make_face_identity(identity.identity_id)
        if not np.array_equal(fid.x_c, identity.x_c):  # a custom geometry: keep the id's appearance
            fid = dataclasses.replace(fid, geometry=identity, rest=_rest_anchors(identity.x_c, fid.eye_size))
        return fid
    if isinstance(identity, (int, np.integer)):
        return make_face_identity(int(identity))
    raise ConfigError(f"identity must be an int id, a FaceIdentity or a synthtalk.Identity, got {type(identity)}")


# ----------------------------------------------------------------------------------------------
# Geometry helpers.


def _catmull_rom_closed(points: np.ndarray, samples: int) -> np.ndarray:
    """Closed uniform Catmull-Rom curve through [n, k] points, `samples` points per segment."""
    n = len(points)
    u = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
    out = []
    for i in range(n):
        p0, p1, p2, p3 = points[(i - 1) % n], points[i], points[(i + 1) % n], points[(i + 2) % n]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * u ** 3))
    return np.concatenate(out)


def _arc(left: np.ndarray, right: np.ndarray, mid_offset: float, n: int, power: float = 0.8,
         bow: float = 0.0) -> np.ndarray:
    """3-D curve from `left` to `right` whose y departs from the chord by mid_offset * (1 - u^2)^power."""
    u = np.linspace(-1.0, 1.0, n)
    w = (u + 1.0) / 2.0
    pts = left[None, :] * (1.0 - w[:, None]) + right[None, :] * w[:, None]
    shape = (1.0 - u ** 2) ** power
    if bow:
        shape = shape * (1.0 - bow * np.exp(-((u / 0.22) ** 2)))
    pts[:, 1] += mid_offset * shape
    pts[:, 2] += 0.02 * (1.0 - u ** 2)  # lips / lids bulge slightly towards the camera
    return pts


@dataclasses.dataclass
class _Frame:
    """The rigid transform of one frame: head frame -> supersampled pixel coordinates."""

    rot: np.ndarray  # [3, 3]
    scale: float
    t: np.ndarray  # [2]
    px_per_unit: float
    half: float  # canvas size / 2

    def project(self, p: np.ndarray) -> np.ndarray:
        """Head-frame points [..., 3] -> pixel (column, row) [..., 2] on the supersampled canvas."""
        img = self.scale * (np.asarray(p, np.float64) @ self.rot)[..., :2] + self.t
        return (img - np.asarray(VIEW_CENTER)) * self.px_per_unit + self.half

    def facing(self, normal: np.ndarray) -> np.ndarray:
        """z of head-frame directions after rotation (> 0: towards the camera)."""
        return (np.asarray(normal, np.float64) @ self.rot)[..., 2]


def _ellipsoid_outline(fr: _Frame, centre: np.ndarray, axes: np.ndarray, n: int = 72) -> np.ndarray:
    """Exact orthographic silhouette of a head-frame ellipsoid, as n pixel points."""
    cov = fr.rot.T @ np.diag(np.square(axes)) @ fr.rot  # row-vector map p -> p @ R
    chol = np.linalg.cholesky(cov[:2, :2])
    a = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    ring = (chol @ np.stack([np.cos(a), np.sin(a)]))
    c = fr.project(centre)
    return c[None, :] + ring.T * fr.scale * fr.px_per_unit


def _poly(points: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points]


# ----------------------------------------------------------------------------------------------
# Layout: every part as pixel polygons for one frame.


def _layout(fid: FaceIdentity, h: np.ndarray, fr: _Frame) -> dict[str, Any]:
    """Pixel-space shapes of one frame from head-frame keypoints h [21, 3]."""
    x_c = np.asarray(fid.x_c, np.float64)
    d = h - x_c  # head-frame displacement of every keypoint
    rest = fid.rest
    out: dict[str, Any] = {}

    # Cranium (hair) ellipsoid, fitted to the forehead and cheeks.
    k_fore, (k_cl, k_cr), (k_jl, k_jr), k_chin = (FACE_ROLES["forehead"][0], FACE_ROLES["cheeks"],
                                                    FACE_ROLES["jaw"], FACE_ROLES["chin"][0])
    half_w = 0.5 * (h[k_cr, 0] - h[k_cl, 0])
    cx = 0.5 * (h[k_cr, 0] + h[k_cl, 0])
    c_centre = np.array([cx, h[k_fore, 1] + 0.30, -0.22])
    c_axes = np.array([half_w + 0.09, 0.56, 0.58])
    out["hair"] = _ellipsoid_outline(fr, c_centre, c_axes)

    def on_cranium(x: float, y: float, inset: float = 0.0) -> np.ndarray:
        q = 1.0 - ((x - c_centre[0]) / c_axes[0]) ** 2 - ((y - c_centre[1]) / c_axes[1]) ** 2
        return np.array([x, y, c_centre[2] + c_axes[2] * math.sqrt(max(q, 0.0)) - inset])

    # Ears: ellipses in a plane facing mostly sideways, behind the cheeks.
    ears = []
    for k, side in ((k_cl, -1.0), (k_cr, 1.0)):
        if fr.facing(np.array([side, 0.0, 0.25])) < -0.05:  # turned away: hidden behind the head
            continue
        centre = np.array([h[k, 0] + side * 0.03, h[k, 1] + 0.02, -0.20])
        a = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)[:, None]
        back = np.array([side * 0.45, 0.0, -0.89])
        ring = centre + 0.095 * np.cos(a) * np.array([0.0, 1.0, 0.0]) + 0.055 * np.sin(a) * back
        ears.append(fr.project(ring))
    out["ears"] = ears

    # Neck: from under the jaw (moves with the head) to below the image.
    top = fr.project(np.array([[cx - 0.17, h[k_jl, 1] + 0.12, -0.25], [cx + 0.17, h[k_jr, 1] + 0.12, -0.25]]))
    base = fr.project(np.array([[0.0, 0.0, 0.0]]))  # head origin, for the body position
    body_y = fr.half * 2.2
    s_px = fr.scale * fr.px_per_unit
    out["neck"] = np.array([top[0], top[1], [base[0, 0] + 0.23 * s_px, body_y], [base[0, 0] - 0.23 * s_px, body_y]])
    out["shoulders"] = (base[0, 0], base[0, 1] + 1.25 * s_px, 0.95 * s_px, 0.5 * s_px)  # ellipse cx, cy, rx, ry

    # Face outline: hairline on the cranium, temples, cheeks, jaw, chin (3-D, then projected).
    y_hair = h[k_fore, 1] + fid.hairline
    hw = 0.72 * c_axes[0]
    ctrl = [on_cranium(cx + u * hw, y_hair + 0.06 * u * u, 0.01) for u in np.linspace(-1.0, 1.0, 5)]
    y_temple = 0.5 * (y_hair + h[k_cr, 1]) + 0.04
    ctrl.append(on_cranium(cx + 0.93 * (c_axes[0] - 0.02), y_temple, 0.02))
    ctrl.append(h[k_cr] + np.array([0.035, 0.0, 0.0]))
    ctrl.append(h[k_jr] + np.array([0.025, 0.03, 0.0]))
    ctrl.append(0.5 * (h[k_jr] + h[k_chin]) + np.array([0.04, 0.06, 0.0]))
    ctrl.append(h[k_chin] + np.array([0.0, 0.035, 0.0]))
    ctrl.append(0.5 * (h[k_jl] + h[k_chin]) + np.array([-0.04, 0.06, 0.0]))
    ctrl.append(h[k_jl] + np.array([-0.025, 0.03, 0.0]))
    ctrl.append(h[k_cl] + np.array([-0.035, 0.0, 0.0]))
    ctrl.append(on_cranium(cx - 0.93 * (c_axes[0] - 0.02), y_temple, 0.02))
    out["face"] = fr.project(_catmull_rom_closed(np.array(ctrl), 8))

    # Texture: freckles / moles, visible while their surface faces the camera.
    spots = []
    if len(fid.freckles):
        pts = fid.freckles[:, :3].astype(np.float64)
        normals = np.stack([pts[:, 0] / 0.5, pts[:, 1] / 0.85, np.full(len(pts), 1.0)], axis=1)
        vis = fr.facing(normals) > 0.25
        centres = fr.project(pts)
        for i in np.nonzero(vis)[0]:
            spots.append((centres[i], float(fid.freckles[i, 3]) * s_px, fid.freckle_colors[i]))
    out["spots"] = spots
    blush = []
    for eye in rest["eyes"]:
        c = np.array([eye[0] * 1.1, eye[1] + 0.26, 0.0])
        c[2] = float(_face_surface_z(np.array(c[0]), np.array(c[1]), x_c))
        a = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)[:, None]
        blush.append(fr.project(c + np.cos(a) * np.array([0.09, 0.0, 0.0]) + np.sin(a) * np.array([0.0, 0.05, 0.0])))
    out["blush"] = blush

    # Eyes.
    eyes = []
    crease_dy = d[_EYE_FOLLOWER, 1]
    for (up, lo), centre in zip((_LEFT_EYE, _RIGHT_EYE), rest["eyes"]):
        shift = 0.5 * (d[up] + d[lo])
        c = centre + np.array([shift[0], 0.5 * (d[up, 1] + d[lo, 1]) * 0.3, shift[2]])
        aperture = float(np.clip(1.0 + (d[lo, 1] - d[up, 1]) / EYE_CLOSE_SPAN, 0.0, 1.35))
        w = _EYE_W * fid.eye_size
        out_sign = 1.0 if c[0] > cx else -1.0  # +x points away from the midline for the right eye
        inner = c + np.array([-out_sign * w, 0.006, 0.0])
        outer = c + np.array([out_sign * w, -0.006, 0.0])  # outer corners slightly higher
        left_c, right_c = (inner, outer) if out_sign > 0 else (outer, inner)
        hu, hl = _EYE_HU * fid.eye_size * aperture, _EYE_HL * fid.eye_size * aperture
        upper = _arc(left_c, right_c, -hu, 13, power=0.7)
        lower = _arc(left_c, right_c, hl, 13, power=0.9)
        crease = _arc(left_c + np.array([0.01, 0.0, 0.0]), right_c - np.array([0.01, 0.0, 0.0]),
                      -(_EYE_HU * fid.eye_size + 0.022), 11, power=0.7)
        crease[:, 1] += 0.6 * crease_dy - 0.014
        iris_c = c + np.array([0.0, -0.004, 0.01])
        eyes.append({
            "opening": fr.project(np.concatenate([upper, lower[::-1]])),
            "upper": fr.project(upper), "lower": fr.project(lower), "crease": fr.project(crease),
            "iris": (fr.project(iris_c), _IRIS_R * fid.eye_size * s_px),
            "glint": (fr.project(iris_c + np.array([0.010, -0.010, 0.01])), 0.008 * s_px),
            "open": hu + hl > 1e-3,
        })
    out["eyes"] = eyes

    # Brows: thick arcs, inner end thicker.
    brows = []
    for b, rest_b in zip(_BROWS, rest["brows"]):
        c = rest_b + BROW_GAIN * d[b]
        inward = 1.0 if c[0] < cx else -1.0  # +x points to the midline for the left brow
        u = np.linspace(-1.0, 1.0, 11)
        length = 0.115 * (0.9 + 0.2 * fid.eye_size)
        x = c[0] + u * length
        arch = 0.035 * (1.0 - u ** 2) + 0.012 * (u * -inward)  # outer end slightly lower
        thick = fid.brow_thickness * (0.55 + 0.45 * (0.5 + 0.5 * u * inward))
        top = np.stack([x, c[1] - arch - 0.5 * thick, np.full_like(x, c[2])], axis=1)
        bot = np.stack([x, c[1] - arch + 0.5 * thick, np.full_like(x, c[2])], axis=1)
        brows.append(fr.project(np.concatenate([top, bot[::-1]])))
    out["brows"] = brows

    # Nose.
    tip = rest["nose"] + d[FACE_ROLES["nose_tip"][0]]
    bridge = rest["bridge"] + d[FACE_ROLES["nose_bridge"][0]]
    nw = fid.nose_width
    ridge = np.array([bridge + np.array([-0.03, 0.0, 0.0]), 0.5 * (bridge + tip) + np.array([-0.035, 0.0, 0.0]),
                      tip + np.array([-0.045, -0.03, -0.04]), tip + np.array([-0.03, -0.04, -0.02])])
    ala = np.array([tip + np.array([-nw - 0.02, -0.01, -0.06]), tip + np.array([-nw, 0.025, -0.04]),
                    tip + np.array([0.0, 0.035, 0.0]), tip + np.array([nw, 0.025, -0.04]),
                    tip + np.array([nw + 0.02, -0.01, -0.06])])
    nostrils = [fr.project(tip + np.array([sgn * 0.55 * nw, 0.028, -0.03])) for sgn in (-1.0, 1.0)]
    out["nose"] = {"ridge": fr.project(ridge), "ala": fr.project(ala), "nostrils": nostrils,
                   "nostril_r": (0.012 * s_px, 0.007 * s_px)}

    # Mouth.
    m = rest["mouth"]
    k_l, k_r = _CORNERS
    gain = np.array([CORNER_GAIN_X, MOUTH_GAIN, 1.0])
    cl = np.array([m[0] - rest["mouth_half_w"], m[1] + rest["corner_dy"], m[2] - 0.03]) + gain * d[k_l]
    cr = np.array([m[0] + rest["mouth_half_w"], m[1] + rest["corner_dy"], m[2] - 0.03]) + gain * d[k_r]
    chord_mid = 0.5 * (cl[1] + cr[1])
    y_ui = m[1] + MOUTH_GAIN * d[_UPPER_LIP, 1]
    y_li = m[1] + MOUTH_GAIN * d[_LOWER_LIP, 1]
    press = max(y_ui - y_li, 0.0)
    if press > 0.0:
        y_ui = y_li = 0.5 * (y_ui + y_li)
    t_up, t_lo = fid.lip_thickness
    t_up, t_lo = max(t_up - press, 0.5 * t_up), max(t_lo - press, 0.5 * t_lo)
    y_uo = min(y_ui - 0.45 * t_up, m[1] - t_up + MOUTH_GAIN * d[_UPPER_FOLLOWER, 1])
    y_lo = max(y_li + 0.5 * t_lo, m[1] + t_lo + MOUTH_GAIN * d[_LOWER_FOLLOWER, 1])
    n = 17
    upper_outer = _arc(cl, cr, y_uo - chord_mid, n, power=0.55, bow=0.22)
    upper_inner = _arc(cl, cr, y_ui - chord_mid, n, power=0.8)
    lower_inner = _arc(cl, cr, y_li - chord_mid, n, power=0.8)
    lower_outer = _arc(cl, cr, y_lo - chord_mid, n, power=0.6)
    gap = y_li - y_ui
    tongue_c = np.array([m[0], y_li - 0.25 * gap, m[2] - 0.02])
    out["mouth"] = {
        "upper_lip": fr.project(np.concatenate([upper_outer, upper_inner[::-1]])),
        "lower_lip": fr.project(np.concatenate([lower_inner, lower_outer[::-1]])),
        "inner": fr.project(np.concatenate([upper_inner, lower_inner[::-1]])),
        "line": fr.project(upper_inner),
        "tongue": (fr.project(tongue_c), 0.55 * rest["mouth_half_w"] * s_px, 0.35 * max(gap, 0.0) * s_px),
        "open": gap > 1e-4,
    }
    return out


# ----------------------------------------------------------------------------------------------
# Drawing.


@functools.lru_cache(maxsize=64)
def _background(color: Color, canvas: int) -> Image.Image:
    """A static vertical gradient (lighter at the top) in the identity's background colour."""
    ramp = np.linspace(1.06, 0.86, canvas)[:, None, None]
    img = np.clip(np.asarray(color, np.float64)[None, None, :] * ramp, 0, 255)
    return Image.fromarray(np.broadcast_to(np.round(img), (canvas, canvas, 3)).astype(np.uint8))


def _draw_clipped(img: Image.Image, clip_poly: np.ndarray, paint: Any) -> None:
    """Runs `paint(draw, offset)` on a crop and pastes it back only inside `clip_poly`."""
    lo = np.floor(clip_poly.min(axis=0)).astype(int) - 1
    hi = np.ceil(clip_poly.max(axis=0)).astype(int) + 2
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, img.size)
    if np.any(hi - lo < 2):
        return
    box = (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
    patch = img.crop(box)
    paint(ImageDraw.Draw(patch), lo.astype(np.float64))
    mask = Image.new("L", patch.size, 0)
    ImageDraw.Draw(mask).polygon(_poly(clip_poly - lo), fill=255)
    img.paste(patch, box[:2], mask)


def _ellipse(draw: ImageDraw.ImageDraw, c: np.ndarray, rx: float, ry: float, fill: Color) -> None:
    draw.ellipse([float(c[0] - rx), float(c[1] - ry), float(c[0] + rx), float(c[1] + ry)], fill=fill)


def _paint(fid: FaceIdentity, lay: dict[str, Any], canvas: Image.Image, ss: int) -> None:
    draw = ImageDraw.Draw(canvas)
    skin = fid.skin
    shade = _mix(skin, (40, 20, 10), 0.22)
    line = max(1, round(0.9 * ss))

    cx, cy, rx, ry = lay["shoulders"]
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fid.shirt)
    draw.polygon(_poly(lay["neck"]), fill=shade)
    draw.polygon(_poly(lay["hair"]), fill=fid.hair)
    for ear in lay["ears"]:
        draw.polygon(_poly(ear), fill=_mix(skin, (40, 20, 10), 0.12))
    draw.polygon(_poly(lay["face"]), fill=skin)
    draw.line(_poly(np.concatenate([lay["face"], lay["face"][:1]])), fill=shade, width=line)

    def paint_texture(d: ImageDraw.ImageDraw, off: np.ndarray) -> None:  # clipped to the face outline
        for b in lay["blush"]:
            d.polygon(_poly(b - off), fill=fid.blush)
        for c, r, col in lay["spots"]:
            _ellipse(d, c - off, r, r, col)

    _draw_clipped(canvas, lay["face"], paint_texture)

    nose = lay["nose"]
    draw.line(_poly(nose["ridge"]), fill=shade, width=line)
    draw.line(_poly(nose["ala"]), fill=shade, width=line)
    for c in nose["nostrils"]:
        _ellipse(draw, c, *nose["nostril_r"], _mix(skin, (30, 10, 10), 0.55))

    lid = _mix(skin, (20, 10, 10), 0.75)
    sclera = (238, 236, 230)
    for eye in lay["eyes"]:
        draw.line(_poly(eye["crease"]), fill=_mix(skin, (40, 20, 10), 0.3), width=line)
        if eye["open"]:
            draw.polygon(_poly(eye["opening"]), fill=sclera)
            (ic, ir), (gc, gr) = eye["iris"], eye["glint"]

            def paint_iris(d: ImageDraw.ImageDraw, off: np.ndarray, ic=ic, ir=ir, gc=gc, gr=gr) -> None:
                _ellipse(d, ic - off, ir, ir, fid.iris)
                _ellipse(d, ic - off, 0.45 * ir, 0.45 * ir, (15, 12, 12))
                _ellipse(d, gc - off, gr, gr, (250, 250, 250))

            _draw_clipped(canvas, eye["opening"], paint_iris)
        draw.line(_poly(eye["upper"]), fill=lid, width=max(1, round(1.4 * ss)))
        draw.line(_poly(eye["lower"]), fill=_mix(skin, (20, 10, 10), 0.35), width=line)
    for brow in lay["brows"]:
        draw.polygon(_poly(brow), fill=fid.brow)

    mouth = lay["mouth"]
    draw.polygon(_poly(mouth["upper_lip"]), fill=fid.lips)
    draw.polygon(_poly(mouth["lower_lip"]), fill=fid.lips)
    inner_col = (38, 12, 16)
    if mouth["open"]:
        draw.polygon(_poly(mouth["inner"]), fill=inner_col)
        tc, trx, try_ = mouth["tongue"]
        tongue = _mix(fid.lips, inner_col, 0.35)

        def paint_tongue(d: ImageDraw.ImageDraw, off: np.ndarray) -> None:
            _ellipse(d, tc - off, trx, try_, tongue)

        _draw_clipped(canvas, mouth["inner"], paint_tongue)
    draw.line(_poly(mouth["line"]), fill=_mix(fid.lips, inner_col, 0.5), width=line)


def _frame_geometry(motion70: np.ndarray, x_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Driving keypoints [T, 21, 3] (`motion.transform_keypoints`) and rotations [T, 3, 3]."""
    m = np.asarray(motion70, np.float32)
    if m.ndim != 2 or m.shape[-1] != mo.DIM:
        raise DataError(f"motion has shape {m.shape}; expected [{mo.DIM}] or [T, {mo.DIM}] frames")
    if not np.all(np.isfinite(m)):
        raise DataError("motion contains NaN or inf; pass finite de-normalised motion")
    if np.any(m[:, mo.SCALE] <= 1e-3):
        raise DataError("motion scale (dim 63) must be > 0; pass de-normalised motion (SynthTalk scale ~1.29)")
    n = len(m)
    bucket = 1 << max(n - 1, 0).bit_length()  # pad T to a power of two: few jit compilations
    padded = np.concatenate([m, np.repeat(m[:1], bucket - n, axis=0)]) if bucket > n else m
    kp, rot = _keypoints_jit(np.asarray(x_c, np.float32), padded)
    return np.asarray(kp, np.float64)[:n], np.asarray(rot, np.float64)[:n]


@jax.jit
def _keypoints_jit(x_c: jax.Array, m: jax.Array) -> tuple[jax.Array, jax.Array]:
    parts = mo.split(m)
    pose = parts["pose"]
    kp = mo.transform_keypoints(x_c, pose, parts["exp"], parts["scale"], parts["t"])
    return kp, mo.rotation_matrix(pose[:, 0], pose[:, 1], pose[:, 2])


def _render_one(fid: FaceIdentity, kp: np.ndarray, rot: np.ndarray, m70: np.ndarray, size: int,
                background: Any, ss: int) -> np.ndarray:
    scale = float(m70[mo.SCALE])
    t = np.array([m70[mo.TRANS.start], m70[mo.TRANS.start + 1]], np.float64)
    head = ((kp - np.array([t[0], t[1], 0.0])) / scale) @ rot.T  # = x_c + exp @ R^T
    canvas_size = size * ss
    fr = _Frame(rot=rot, scale=scale, t=t, px_per_unit=canvas_size / (2.0 * VIEW_HALF_EXTENT), half=canvas_size / 2)
    lay = _layout(fid, head, fr)
    if background is None:
        canvas = _background(fid.background, canvas_size).copy()
    elif isinstance(background, np.ndarray):
        canvas = Image.fromarray(background).resize((canvas_size, canvas_size), Image.NEAREST)
    else:
        canvas = Image.new("RGB", (canvas_size, canvas_size), background)
    _paint(fid, lay, canvas, ss)
    if ss > 1:
        canvas = canvas.reduce(ss)
    return np.asarray(canvas, np.uint8)


def _check(size: int, supersample: int, background: Any) -> Any:
    if int(size) < 8:
        raise ConfigError(f"size={size} must be at least 8 pixels")
    if not 1 <= int(supersample) <= 8:
        raise ConfigError(f"supersample={supersample} must be in 1..8")
    if background is None:
        return None
    if isinstance(background, np.ndarray):
        if background.shape != (size, size, 3) or background.dtype != np.uint8:
            raise ConfigError(f"background array must be uint8 [{size}, {size}, 3], got {background.dtype} "
                              f"{background.shape}")
        return background
    bg = tuple(int(v) for v in background)
    if len(bg) != 3:
        raise ConfigError(f"background must be None, an RGB triple or a uint8 image, got {background!r}")
    return bg


def render_face(motion70: Any, identity: Any, size: int = 128, *, background: Any = None,
                supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Draws one frame.

    Args:
      motion70: [70] de-normalised motion (`jaxmoda.moda.motion` layout), numpy or jax.
      identity: an identity id, a `FaceIdentity` or a `synthtalk.Identity` (its x_c is used, with
        the appearance of its id).
      size: output height and width in pixels.
      background: None (the identity's static gradient), an RGB triple, or a uint8 [size, size, 3]
        image kept exactly where the face does not cover it.
      supersample: drawing resolution factor for anti-aliasing (box-filtered down).

    Returns:
      uint8 [size, size, 3].
    """
    m = np.asarray(motion70, np.float32)
    if m.shape != (mo.DIM,):
        raise DataError(f"motion70 has shape {m.shape}; expected [{mo.DIM}] (use render_clip for [T, {mo.DIM}])")
    fid = _as_face_identity(identity)
    bg = _check(size, supersample, background)
    kp, rot = _frame_geometry(m[None], fid.x_c)
    return _render_one(fid, kp[0], rot[0], m, int(size), bg, int(supersample))


def render_clip(motion: Any, identity_id: Any, size: int = 128, *, background: Any = None,
                supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Draws every frame of [T, 70] motion (keypoints computed in one batched call).

    Returns:
      uint8 [T, size, size, 3].
    """
    m = np.asarray(motion, np.float32)
    if m.ndim != 2 or m.shape[1] != mo.DIM:
        raise DataError(f"motion has shape {m.shape}; expected [T, {mo.DIM}]")
    fid = _as_face_identity(identity_id)
    bg = _check(size, supersample, background)
    out = np.empty((len(m), int(size), int(size), 3), np.uint8)
    if len(m) == 0:
        return out
    kp, rot = _frame_geometry(m, fid.x_c)
    for i in range(len(m)):
        out[i] = _render_one(fid, kp[i], rot[i], m[i], int(size), bg, int(supersample))
    return out


def make_triplet(identity_id: Any, source_motion: Any, driving_motion: Any,
                 size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A renderer training example: (source image, driving image, driving motion float32 [70]).

    Both images show the same identity on the same background; the renderer learns
    (source image, driving motion) -> driving image.
    """
    src = render_face(source_motion, identity_id, size)
    drv_m = np.asarray(driving_motion, np.float32).copy()
    drv = render_face(drv_m, identity_id, size)
    return src, drv, drv_m


def neutral_motion(scale: float = 1.286, t: Sequence[float] = (0.0, 0.1)) -> np.ndarray:
    """A frontal neutral frame: zero expression and pose, the given scale and (tx, ty)."""
    m = np.zeros(mo.DIM, np.float32)
    m[mo.SCALE] = scale
    m[mo.TRANS.start], m[mo.TRANS.start + 1] = t
    return m


def keypoints_px(motion70: Any, identity: Any, size: int = 128) -> np.ndarray:
    """Pixel (column, row) of the 21 driving keypoints (`motion.transform_keypoints`) of one frame.

    The exact orthographic projection the renderer uses (module docstring); float64 [21, 2].
    """
    m = np.asarray(motion70, np.float32)
    fid = _as_face_identity(identity)
    kp, _ = _frame_geometry(m.reshape(1, -1), fid.x_c)
    return (kp[0, :, :2] - np.asarray(VIEW_CENTER)) * (size / (2.0 * VIEW_HALF_EXTENT)) + size / 2


def region_boxes(motion70: Any, identity: Any, size: int = 128, margin: float = 1.0) -> dict[str, tuple[int, int, int, int]]:
    """Pixel boxes (row0, row1, col0, col1), end-exclusive, of the drawn parts of one frame.

    Keys: "left_eye", "right_eye" (opening, lids and crease), "eyes" (both eyes and brows),
    "mouth" (lips and inner mouth), "face" (face outline). Useful for region losses and tests.
    """
    m = np.asarray(motion70, np.float32)
    fid = _as_face_identity(identity)
    kp, rot = _frame_geometry(m[None], fid.x_c)
    scale = float(m[mo.SCALE])
    t = np.array([m[mo.TRANS.start], m[mo.TRANS.start + 1]], np.float64)
    head = ((kp[0] - np.array([t[0], t[1], 0.0])) / scale) @ rot[0].T
    fr = _Frame(rot=rot[0], scale=scale, t=t, px_per_unit=size / (2.0 * VIEW_HALF_EXTENT), half=size / 2)
    lay = _layout(fid, head, fr)

    def box(*arrays: np.ndarray) -> tuple[int, int, int, int]:
        pts = np.concatenate([np.asarray(a).reshape(-1, 2) for a in arrays])
        c0, r0 = np.floor(pts.min(axis=0) - margin).astype(int)
        c1, r1 = np.ceil(pts.max(axis=0) + margin).astype(int)
        return (max(int(r0), 0), min(int(r1), size), max(int(c0), 0), min(int(c1), size))

    eye_parts = [[e["opening"], e["upper"], e["lower"], e["crease"]] for e in lay["eyes"]]
    mouth = lay["mouth"]
    return {
        "left_eye": box(*eye_parts[0]), "right_eye": box(*eye_parts[1]),
        "eyes": box(*eye_parts[0], *eye_parts[1], *lay["brows"]),
        "mouth": box(mouth["upper_lip"], mouth["lower_lip"], mouth["inner"]),
        "face": box(lay["face"]),
    }


def save_strip(frames: Any, path: str | os.PathLike[str], every: int = 1, columns: int | None = None) -> str:
    """Writes frames[::every] side by side as one PNG (wrapped into rows of `columns` if given).

    Args:
      frames: uint8 [T, H, W, 3].
      path: output .png path (parent directories are created).
      every: keep every k-th frame.
      columns: frames per row (default: all in one row).

    Returns:
      The path written.
    """
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8 or len(f) == 0:
        raise DataError(f"frames must be non-empty uint8 [T, H, W, 3], got {f.dtype} {f.shape}")
    if int(every) < 1:
        raise ConfigError(f"every={every} must be >= 1")
    f = f[:: int(every)]
    cols = len(f) if columns is None else max(1, min(int(columns), len(f)))
    rows = -(-len(f) // cols)
    _, h, w, _ = f.shape
    sheet = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, frame in enumerate(f):
        r, c = divmod(i, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = frame
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return os.fspath(path)


def main(argv: list[str] | None = None) -> int:
    """CLI: renders one SynthTalk clip and writes a PNG strip of it."""
    p = argparse.ArgumentParser(prog="python -m jaxmoda.data.synthfaces", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--seed", type=int, default=0, help="SynthTalk clip seed")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--every", type=int, default=4, help="keep every k-th frame")
    p.add_argument("--frames", type=int, default=48, help="render at most this many frames")
    p.add_argument("--columns", type=int, default=None)
    args = p.parse_args(argv)
    clip = st.generate_clip(args.seed)
    frames = render_clip(clip["motion"][: args.frames], clip["identity_id"], args.size)
    save_strip(frames, args.out, every=args.every, columns=args.columns)
    print(f"wrote {args.out}: {len(frames[:: args.every])} frames of identity {clip['identity_id']} "
          f"({clip['text']!r})")
    return 0


if __name__ == "__main__":
    cli_main(main)
