"""Face tracking and cropping for video frames (python -m jaxmoda.data.videos).

The face is searched (OpenCV's Haar cascade, at most DETECT_SIDE pixels on the longer side) on every
`opts.detect_every`-th output frame; boxes between detections and over misses are interpolated, then
smoothed with a centred moving average of `opts.smooth` frames. Crops are square, `opts.size` pixels,
framed as `opts.crop_scale` face-box widths, `opts.crop_shift` box heights off centre. Head roll is
not levelled: it is part of the motion the extractor reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from jaxmoda.errors import DataError

if TYPE_CHECKING:
    from jaxmoda.data.videos import Options

DETECT_SIDE = 320           # frames are searched for faces at this longer side


def track_faces(path: str, indices: np.ndarray, opts: Options) -> tuple[np.ndarray, tuple]:
    """(smoothed face boxes [T, 4] (x0, y0, x1, y1 in source pixels) of the output frames, frame shape)."""
    from jaxmoda.io.images import array_to_pil
    from jaxmoda.moda.render.face import detect_face
    boxes = []

    def detect(img, _):
        scale = min(1.0, DETECT_SIDE / max(img.shape[:2]))
        small = np.asarray(array_to_pil(img).resize((max(1, round(img.shape[1] * scale)),
                                                     max(1, round(img.shape[0] * scale)))))
        box, _ = detect_face(small)
        return (None if box is None else np.asarray(box) / scale), img.shape
    from jaxmoda.io.video import frames_at
    every = max(1, int(opts.detect_every))
    probe = np.unique(np.append(np.arange(0, len(indices), every), len(indices) - 1))  # output frames searched
    shape = None
    for box, shape in frames_at(path, indices[probe], detect):
        boxes.append(box)
    if len(boxes) != len(probe):   # the container lists frames the decoder does not give
        raise DataError(f"decoded {len(boxes)} of the {len(probe)} frames searched for a face; the file is damaged")
    found = np.array([b is not None for b in boxes])
    if found.mean() < opts.min_face_fraction:
        raise DataError(f"no face on most frames (found on {100 * found.mean():.0f}%, "
                        f"needs {100 * opts.min_face_fraction:.0f}%)")
    arr = np.full((len(indices), 4), np.nan)
    t = np.arange(len(indices))
    hits = probe[found]
    det = np.stack([b for b in boxes if b is not None])
    for k in range(4):  # interpolate between detections (and over misses), then a centred moving average
        arr[:, k] = np.interp(t, hits, det[:, k])
        if opts.smooth > 1:
            pad = opts.smooth // 2
            padded = np.pad(arr[:, k], pad, mode="edge")
            arr[:, k] = np.convolve(padded, np.ones(opts.smooth) / opts.smooth, mode="valid")[:len(t)]
    return arr, shape


def crops_of(path: str, indices: np.ndarray, boxes, opts: Options) -> np.ndarray:
    """uint8 face crops [T, size, size, 3]."""
    from jaxmoda.io.video import frames_at
    from jaxmoda.moda.render.face import crop_transform, warp_affine
    out = np.empty((len(indices), opts.size, opts.size, 3), np.uint8)
    n = 0
    for n, img in enumerate(frames_at(path, indices), 1):
        m = crop_transform(img.shape, opts.size, None if boxes is None else tuple(boxes[n - 1]),
                           scale=opts.crop_scale, shift=opts.crop_shift)
        out[n - 1] = np.clip(np.round(warp_affine(img, m, (opts.size, opts.size), fast=True)), 0, 255)
    if n != len(indices):
        raise DataError(f"decoded {n} of the {len(indices)} frames to crop; the file is damaged")
    return out
