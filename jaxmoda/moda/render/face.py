"""Face crop, alignment and paste-back for the talking-head pipeline.

A crop is an affine map `M` (2 x 3, original pixel -> crop pixel) chosen so the face fills the crop
the way SynthFaces frames are framed (the renderer's training data): the crop side is
`CROP_SCALE` face widths, centred a little above the face box's centre, and rotated so the eyes are
level when both eyes are found. `paste_back` applies the inverse map with a feathered mask.

Faces are found with OpenCV's Haar cascades, which ship inside the opencv-python-headless wheel
(`pip install 'jaxmoda[video]'`); without OpenCV, or when no face is found (drawn faces often are
not), the crop is the largest centred square and the log says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np

from jaxmoda.errors import DataError

log = logging.getLogger(__name__)

CROP_SCALE = 2.0        # crop side / face-box width
CENTER_SHIFT = -0.12    # crop centre above the face box's centre, in face-box heights


def _cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def detect_face(image: np.ndarray) -> tuple[tuple[float, float, float, float] | None, float]:
    """(largest face box (x0, y0, x1, y1) or None, roll angle in degrees from the eyes, 0 if unknown)."""
    cv2 = _cv2()
    if cv2 is None or not hasattr(cv2, "data"):
        return None, 0.0
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        return None, 0.0
    side = min(gray.shape[:2])
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(max(24, side // 10),) * 2)
    if len(faces) == 0:
        return None, 0.0
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    angle = 0.0
    eyes_cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
    if not eyes_cascade.empty():
        upper = gray[y:y + h // 2, x:x + w]
        eyes = eyes_cascade.detectMultiScale(upper, scaleFactor=1.1, minNeighbors=5, minSize=(max(8, w // 10),) * 2)
        if len(eyes) >= 2:
            (ax, ay, aw, ah), (bx, by, bw, bh) = sorted(sorted(eyes, key=lambda e: -e[2] * e[3])[:2], key=lambda e: e[0])
            dx, dy = (bx + bw / 2) - (ax + aw / 2), (by + bh / 2) - (ay + ah / 2)
            if dx > w * 0.2:
                angle = math.degrees(math.atan2(dy, dx))
    return (float(x), float(y), float(x + w), float(y + h)), angle


def crop_transform(image_shape: tuple[int, ...], size: int, box=None, angle: float = 0.0, *,
                   scale: float = CROP_SCALE, shift: float = CENTER_SHIFT) -> np.ndarray:
    """2 x 3 affine map from original pixels to `size` x `size` crop pixels.

    With a face box: side `scale` * box width, centred `shift` box heights above its centre (defaults
    CROP_SCALE, CENTER_SHIFT; SynthFaces frames a face as scale 1.23, shift 0 would),
    rotated by -angle; if that square is larger than the picture's short side (the face already fills
    the picture), the largest square inside the picture nearest to that centre, unrotated. Without a
    box: the largest centred square.
    """
    h, w = image_shape[:2]
    short = float(min(h, w))
    if box is None:
        cx, cy, side, angle = w / 2.0, h / 2.0, short, 0.0
    else:
        x0, y0, x1, y1 = box
        side = scale * (x1 - x0)
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0 + shift * (y1 - y0)
        if side >= short:
            side, angle = short, 0.0
            cx = min(max(cx, side / 2.0), w - side / 2.0)
            cy = min(max(cy, side / 2.0), h - side / 2.0)
    s = size / side
    a = math.radians(angle)
    c, si = math.cos(a) * s, math.sin(a) * s
    # crop = S R (p - centre) + size / 2, with R rotating by -angle (levels the eyes).
    m = np.array([[c, si, 0.0], [-si, c, 0.0]], np.float64)
    m[:, 2] = np.array([size / 2.0, size / 2.0]) - m[:, :2] @ np.array([cx, cy])
    return m


def warp_affine(image: np.ndarray, m: np.ndarray, out_hw: tuple[int, int], fill: float | None = None,
                fast: bool = False) -> np.ndarray:
    """Bilinear warp of image [H, W, C] or [H, W] by the forward map m (source -> output), float32.

    Outside the image: edge padding, or the constant `fill` when given. `fast` uses OpenCV's warpAffine
    where it is installed (5-bit interpolation weights: within about 1/32 of a level step per unit of
    neighbouring difference, rounded to whole levels for uint8 input; about 10x faster on video frames).
    """
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    oh, ow = out_hw
    native = image.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64) and image.ndim in (2, 3)
    cv2 = _cv2() if fast and fill is None and native and (image.ndim == 2 or image.shape[-1] <= 4) else None
    if cv2 is not None:
        # Same pixel-centre convention: source x = A (x_out + 1/2) + b - 1/2, as OpenCV's inverse map.
        m_cv = np.concatenate([inv[:, :2], (inv[:, :2] @ np.array([0.5, 0.5]) + inv[:, 2] - 0.5)[:, None]], 1)
        out = cv2.warpAffine(np.ascontiguousarray(image), m_cv, (ow, oh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
        return out.astype(np.float32).reshape(out_hw + image.shape[2:])   # OpenCV drops a single channel axis
    ys, xs = np.mgrid[0:oh, 0:ow].astype(np.float64)
    # Pixel centres: output pixel (i, j) covers [j, j+1) x [i, i+1).
    px = inv[0, 0] * (xs + 0.5) + inv[0, 1] * (ys + 0.5) + inv[0, 2] - 0.5
    py = inv[1, 0] * (xs + 0.5) + inv[1, 1] * (ys + 0.5) + inv[1, 2] - 0.5
    h, w = image.shape[:2]
    outside = (px < -0.5) | (px > w - 0.5) | (py < -0.5) | (py > h - 0.5)
    px, py = np.clip(px, 0, w - 1), np.clip(py, 0, h - 1)
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (px - x0)[..., None], (py - y0)[..., None]
    img = image.astype(np.float32)
    img = img if img.ndim == 3 else img[..., None]
    out = ((img[y0, x0] * (1 - fx) + img[y0, x1] * fx) * (1 - fy) + (img[y1, x0] * (1 - fx) + img[y1, x1] * fx) * fy)
    if fill is not None:
        out[outside] = fill
    return out if image.ndim == 3 else out[..., 0]


def crop_face(image: np.ndarray, size: int, *, detect: bool = True) -> tuple[np.ndarray, np.ndarray, bool]:
    """(crop uint8 [size, size, 3], affine map original -> crop, whether a face box was found).

    A picture whose face already fills it (a face box wider than 1 / CROP_SCALE of its short side,
    like SynthFaces frames) gives the largest square around the face (`crop_transform`).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise DataError(f"portrait must be an RGB uint8 image, got {image.dtype} {image.shape}")
    box, angle = detect_face(image) if detect else (None, 0.0)
    if detect and box is None:
        log.warning("no face found in the portrait; using its centred square (pass a tighter crop for better results)")
    m = crop_transform(image.shape, size, box, angle)
    crop = np.clip(np.round(warp_affine(*_prefiltered(image, m), (size, size))), 0, 255).astype(np.uint8)
    return crop, m, box is not None


def _prefiltered(image: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image box-filtered by the integer factor f the crop shrinks it by, the map from its pixels):
    bilinear sampling alone would alias a large photograph shrunk to the renderer's size."""
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    f = int(1.0 / scale) if scale > 0 else 1
    if f < 2:
        return image, m
    from PIL import Image
    small = np.asarray(Image.fromarray(image).reduce(f))
    # Continuous pixel coordinates (pixel i covers [i, i + 1)) scale exactly: x_original = f * x_small.
    return small, np.concatenate([m[:, :2] * f, m[:, 2:]], axis=1)


def feather_mask(size: int, border: float = 0.12) -> np.ndarray:
    """float32 [size, size]: 1 inside, ramping to 0 over the outer `border` fraction of the crop."""
    r = (np.arange(size) + 0.5) / size
    ramp = np.clip(np.minimum(r, 1 - r) / border, 0, 1)
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def paste_back_frames(image: np.ndarray, crops, m: np.ndarray, border: float = 0.12) -> Iterator[np.ndarray]:
    """Yields uint8 [H, W, 3] frames: each crop [s, s, 3] warped back into `image` through the inverse of
    m with a feathered edge. Only the crop's bounding box is resampled, one frame at a time, so long
    videos of large photographs stream through in bounded memory."""
    h, w = image.shape[:2]
    s = int(np.shape(crops)[1])
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    corners = inv @ np.array([[0, s, 0, s], [0, 0, s, s], [1, 1, 1, 1]], np.float64)
    x0, y0 = max(0, int(np.floor(corners[0].min()))), max(0, int(np.floor(corners[1].min())))
    x1, y1 = min(w, int(np.ceil(corners[0].max()))), min(h, int(np.ceil(corners[1].max())))
    if x1 <= x0 or y1 <= y0:   # the crop lies outside the picture: nothing to paste
        for _ in crops:
            yield image.copy()
        return
    to_box = inv.copy()
    to_box[:, 2] -= (x0, y0)                      # crop pixels -> pixels of the bounding box
    alpha = warp_affine(feather_mask(s, border), to_box, (y1 - y0, x1 - x0), fill=0.0)[..., None]
    base = image[y0:y1, x0:x1].astype(np.float32)
    for c in crops:
        fg = warp_affine(np.asarray(c), to_box, (y1 - y0, x1 - x0))
        frame = image.copy()
        frame[y0:y1, x0:x1] = np.clip(np.round(base + alpha * (fg - base)), 0, 255).astype(np.uint8)
        yield frame


def paste_back(image: np.ndarray, crops: np.ndarray, m: np.ndarray, border: float = 0.12) -> np.ndarray:
    """All of `paste_back_frames` as one uint8 [T, H, W, 3] array."""
    return np.stack(list(paste_back_frames(image, crops, m, border)))
