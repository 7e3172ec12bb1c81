"""SynthFaces: the deterministic numpy/PIL face renderer driven by 70-d motion."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from jaxmoda.data import synthfaces as sf
from jaxmoda.data import synthtalk as st
from jaxmoda.errors import ConfigError, DataError
from jaxmoda.moda import motion as mo


def _neutral() -> np.ndarray:
    return sf.neutral_motion()


def _blink(m: np.ndarray, amount: float = 1.0) -> np.ndarray:
    """SynthTalk's blink offsets (upper lids down, lower lids up, follower down)."""
    m = m.copy()
    for k in st.KEYPOINT_ROLES["upper_lids"]:
        m[mo.exp_dim(k, 1)] += 0.028 * amount
    for k in st.KEYPOINT_ROLES["lower_lids"]:
        m[mo.exp_dim(k, 1)] -= 0.006 * amount
    for k in st.KEYPOINT_ROLES["eye_followers"]:
        m[mo.exp_dim(k, 1)] += 0.010 * amount
    return m


def _open_mouth(m: np.ndarray, jaw: float) -> np.ndarray:
    """SynthTalk's jaw opening: lower lip down, upper lip up, the lip followers with them."""
    m = m.copy()
    (upper, lower), = mo.MOUTH_OPEN_PAIRS
    up_f, lo_f = st.KEYPOINT_ROLES["lip_followers"]
    m[mo.exp_dim(lower, 1)] += 0.055 * jaw
    m[mo.exp_dim(upper, 1)] -= 0.012 * jaw
    m[mo.exp_dim(up_f, 1)] -= 0.004 * jaw
    m[mo.exp_dim(lo_f, 1)] += 0.030 * jaw
    return m


def _gray(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _mask(boxes: list[tuple[int, int, int, int]], size: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    for r0, r1, c0, c1 in boxes:
        mask[r0:r1, c0:c1] = True
    return mask


@pytest.mark.parametrize("size", [64, 128])
def test_shapes_dtype_and_clip_matches_frames(size):
    img = sf.render_face(_neutral(), 3, size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    motion = np.stack([_neutral(), _blink(_neutral()), _open_mouth(_neutral(), 0.8)])
    clip = sf.render_clip(motion, 3, size)
    assert clip.shape == (3, size, size, 3) and clip.dtype == np.uint8
    for i in range(3):  # the batched keypoints give the same frames as one-by-one rendering
        np.testing.assert_array_equal(clip[i], sf.render_face(motion[i], 3, size))
    assert sf.render_clip(np.zeros((0, mo.DIM), np.float32), 3, size).shape == (0, size, size, 3)


def test_deterministic_bytes():
    m = _open_mouth(_blink(_neutral(), 0.5), 0.4)
    m[mo.POSE] = (5.0, -12.0, 3.0)
    a = sf.render_face(m, 17, 96)
    sf.make_face_identity.cache_clear()
    b = sf.render_face(m.tolist(), 17, 96)  # any array-like; fresh identity
    assert a.tobytes() == b.tobytes()
    src1, drv1, dm1 = sf.make_triplet(17, _neutral(), m, 64)
    src2, drv2, dm2 = sf.make_triplet(17, _neutral(), m, 64)
    assert src1.tobytes() == src2.tobytes() and drv1.tobytes() == drv2.tobytes()
    assert dm1.dtype == np.float32 and dm1.shape == (70,) and np.array_equal(dm1, m) and np.array_equal(dm1, dm2)
    assert not np.array_equal(src1, drv1)
    # A synthtalk.Identity renders as its id.
    np.testing.assert_array_equal(sf.render_face(m, st.make_identity(17), 96), a)


def test_identities_differ_and_splits_are_disjoint():
    imgs = [sf.render_face(_neutral(), i, 64).astype(np.float64) for i in range(6)]
    for i in range(6):
        for j in range(i + 1, 6):
            assert np.abs(imgs[i] - imgs[j]).mean() > 5.0, (i, j)
    a, b = sf.make_face_identity(5), sf.make_face_identity(6)
    assert (a.skin, a.hair, a.background) != (b.skin, b.hair, b.background)
    np.testing.assert_array_equal(a.x_c, st.make_identity(5).x_c)  # geometry is SynthTalk's
    assert set(sf.TRAIN_IDENTITIES).isdisjoint(sf.EVAL_IDENTITIES)
    num_synthtalk = (len(st.voice_specs()) + 1) * st.IDS_PER_VOICE  # includes the "unknown voice" slot
    assert all(i in sf.EVAL_IDENTITIES for i in range(num_synthtalk))


def test_blink_changes_mainly_the_eyes():
    size, ident = 128, 2
    m = _neutral()
    open_img = sf.render_face(m, ident, size)
    closed_img = sf.render_face(_blink(m), ident, size)
    boxes = sf.region_boxes(m, ident, size, margin=2.0)
    diff = np.abs(closed_img.astype(np.float64) - open_img).sum(axis=-1)
    eye_mask = _mask([boxes["left_eye"], boxes["right_eye"]], size)
    assert diff.sum() > 2000.0  # clearly visible
    assert diff[eye_mask].sum() / diff.sum() > 0.98
    # The whites of the eyes disappear.
    bright = (_gray(open_img) > 200) & eye_mask
    assert bright.sum() >= 10 and ((_gray(closed_img) > 200) & eye_mask).sum() < 0.1 * bright.sum()
    # A half blink is in between (graded lids).
    half = sf.render_face(_blink(m, 0.5), ident, size).astype(np.float64)
    assert np.abs(half - open_img).sum() > 0.15 * diff.sum()
    assert np.abs(half - closed_img).sum() > 0.15 * diff.sum()


@pytest.mark.parametrize("ident", [0, 7])
def test_mouth_darkness_is_monotonic_in_openness(ident):
    size = 128
    levels = np.linspace(0.0, 1.0, 7)
    motions = [_open_mouth(_neutral(), j) for j in levels]
    openness = np.array([float(mo.mouth_openness(m)) for m in motions])
    assert np.all(np.diff(openness) > 0)
    r0, r1, c0, c1 = sf.region_boxes(motions[-1], ident, size, margin=2.0)["mouth"]
    imgs = [sf.render_face(m, ident, size) for m in motions]
    darkness = np.array([np.mean(255.0 - _gray(img[r0:r1, c0:c1])) for img in imgs])
    assert np.all(np.diff(darkness) > 0.5), darkness
    assert darkness[-1] - darkness[0] > 15.0
    # Nothing outside the mouth box changes.
    outside = ~_mask([(r0, r1, c0, c1)], size)
    np.testing.assert_array_equal(imgs[-1][outside], imgs[0][outside])


def _change_centroid_x(m: np.ndarray, ident: int, size: int) -> float:
    """Column centroid of the pixels that opening the mouth changes: where the mouth is drawn."""
    a = sf.render_face(m, ident, size).astype(np.float64)
    b = sf.render_face(_open_mouth(m, 1.0), ident, size).astype(np.float64)
    w = np.abs(b - a).sum(axis=(0, 2))
    return float((w * np.arange(size)).sum() / w.sum())


def test_head_pose_moves_and_turns_the_face():
    size, ident = 128, 4
    m0 = _neutral()
    base = sf.render_face(m0, ident, size)
    mouth_x0 = _change_centroid_x(m0, ident, size)
    nose = sf.FACE_ROLES["nose_tip"][0]
    for yaw in (-30.0, 30.0):
        m = m0.copy()
        m[68] = yaw
        img = sf.render_face(m, ident, size)
        assert np.abs(img.astype(np.float64) - base).mean() > 3.0
        # Front features shift towards +x for positive yaw (x' = x cos + z sin): the drawn mouth moves.
        shift = _change_centroid_x(m, ident, size) - mouth_x0
        assert np.sign(shift) == np.sign(yaw) and abs(shift) >= 3.0, (yaw, shift)
        kp0, kp1 = sf.keypoints_px(m0, ident, size), sf.keypoints_px(m, ident, size)
        assert np.sign(kp1[nose, 0] - kp0[nose, 0]) == np.sign(yaw)
    for dim, value in ((67, 20.0), (69, 15.0), (64, 0.1)):  # pitch, roll, tx
        m = m0.copy()
        m[dim] += value
        assert np.abs(sf.render_face(m, ident, size).astype(np.float64) - base).mean() > 2.0
    # Small motions change pixels gradually (anti-aliased), not in whole-pixel jumps.
    m = m0.copy()
    m[68] = 0.5
    small = np.abs(sf.render_face(m, ident, size).astype(np.int32) - base)
    assert 0 < small.max() < 120 and small.mean() < 1.0


def test_keypoints_follow_transform_keypoints():
    m = _open_mouth(_neutral(), 0.5)
    m[mo.POSE] = (4.0, 10.0, -3.0)
    parts = mo.split(m)
    x_c = st.make_identity(9).x_c
    kp = np.asarray(mo.transform_keypoints(x_c, parts["pose"], parts["exp"], parts["scale"], parts["t"]))
    px = sf.keypoints_px(m, 9, 128)
    expect = (kp[:, :2] - np.asarray(sf.VIEW_CENTER)) / sf.VIEW_HALF_EXTENT * 64 + 64
    np.testing.assert_allclose(px, expect, atol=1e-4)
    # A neutral frame fills most of the image but stays inside it.
    r0, r1, c0, c1 = sf.region_boxes(_neutral(), 9, 128)["face"]
    assert r0 >= 0 and r1 <= 128 and (r1 - r0) > 0.7 * 128 and (c1 - c0) > 0.5 * 128


def test_backgrounds():
    size = 64
    img = sf.render_face(_neutral(), 1, size, background=(10, 20, 30))
    assert tuple(img[0, 0]) == (10, 20, 30)
    bg = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    img = sf.render_face(_neutral(), 1, size, background=bg)
    np.testing.assert_array_equal(img[:3, :3], bg[:3, :3])  # corners are background, kept exactly
    assert not np.array_equal(img, bg)


def test_validation_errors():
    with pytest.raises(DataError):
        sf.render_face(np.zeros(69), 0)
    with pytest.raises(DataError):
        sf.render_face(np.zeros(70), 0)  # scale 0
    bad = _neutral()
    bad[0] = np.nan
    with pytest.raises(DataError):
        sf.render_face(bad, 0)
    with pytest.raises(ConfigError):
        sf.render_face(_neutral(), 0, size=4)
    with pytest.raises(ConfigError):
        sf.render_face(_neutral(), -1)
    with pytest.raises(DataError):
        sf.render_clip(_neutral(), 0)


def test_save_strip(tmp_path):
    frames = sf.render_clip(np.stack([_neutral()] * 5), 0, 32)
    path = sf.save_strip(frames, tmp_path / "sub" / "strip.png", every=2)
    with Image.open(path) as im:
        assert im.size == (3 * 32, 32)
    path = sf.save_strip(frames, tmp_path / "grid.png", columns=2)
    with Image.open(path) as im:
        assert im.size == (2 * 32, 3 * 32)


def test_synthtalk_clip_and_speed(record_property):
    pytest.importorskip("espeakng_loader")
    clip = st.generate_clip(3, num_sentences=1)
    motion = clip["motion"][:24]
    sf.render_clip(motion[:20], clip["identity_id"], 128)  # warm-up (jit for T <= 32, caches)
    t0 = time.perf_counter()
    frames = sf.render_clip(motion, clip["identity_id"], 128)
    fps = len(motion) / (time.perf_counter() - t0)
    record_property("synthfaces_fps_128", fps)
    print(f"\nsynthfaces: {fps:.1f} frames/s at 128 px ({len(motion)} SynthTalk frames, 4x supersampling)")
    assert frames.shape == (24, 128, 128, 3)
    assert np.abs(np.diff(frames.astype(np.int16), axis=0)).mean() > 0.05  # the face moves
    assert fps > 5.0
