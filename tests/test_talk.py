"""The talking-head pipeline: MP4 writing and probing, face crop and paste-back, and portrait + audio -> video."""

import os

import numpy as np
import pytest

from jaxmoda.errors import DataError
from jaxmoda.io.video import probe, write_mp4
from jaxmoda.moda.render import face

pytest.importorskip("av")


def test_mp4_has_every_frame_at_25_fps_and_the_audio_duration(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (37, 47, 33, 3), dtype=np.uint8)   # odd sizes are padded to even
    audio = (0.3 * np.sin(np.arange(37 * 640) / 16000 * 2 * np.pi * 220)).astype(np.float32)
    path = write_mp4(tmp_path / "a.mp4", frames, fps=25, audio=audio, sample_rate=16000)
    info = probe(path)
    assert info["frames"] == 37 and info["fps"] == 25.0
    assert (info["width"], info["height"]) == (34, 48)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert abs(info["audio_seconds"] - 37 / 25) <= 1024 / 16000   # within one AAC frame


def test_bad_frames_raise_and_leave_no_file(tmp_path):
    with pytest.raises(DataError, match="uint8"):
        write_mp4(tmp_path / "b.mp4", np.zeros((3, 8, 8, 3), np.float32))
    frames = [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.zeros((6, 8, 3), np.uint8)]
    with pytest.raises(DataError, match=r"\(8, 8, 3\)"):        # a frame of another size, mid-stream
        write_mp4(tmp_path / "c.mp4", iter(frames))
    assert os.listdir(tmp_path) == []
    with pytest.raises(DataError, match="cannot open video"):
        probe(tmp_path / "missing.mp4")


def test_crop_and_paste_back_round_trip():
    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 255, (12, 16, 3)), np.ones((16, 16, 1))).astype(np.uint8)  # 192 x 256
    m = face.crop_transform(smooth.shape, 96, box=(100.0, 60.0, 148.0, 108.0), angle=10.0)
    crop = np.clip(np.round(face.warp_affine(smooth, m, (96, 96))), 0, 255).astype(np.uint8)
    back = face.paste_back(smooth, crop[None], m, border=0.12)[0]
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    centre = inv @ np.array([48.0, 48.0, 1.0])
    cy, cx = int(centre[1]), int(centre[0])
    inner = np.abs(back[cy - 10:cy + 10, cx - 10:cx + 10].astype(int) - smooth[cy - 10:cy + 10, cx - 10:cx + 10])
    assert inner.mean() < 12   # resampled twice: close to the original inside the crop
    np.testing.assert_array_equal(back[:10, :10], smooth[:10, :10])   # untouched far outside it


def test_fast_warp_matches_the_exact_one():
    pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    img = np.kron(rng.integers(0, 255, (12, 16, 3)), np.ones((16, 16, 1))).astype(np.uint8)   # 192 x 256
    for box, angle in (((100.0, 60.0, 148.0, 108.0), 10.0), ((-20.0, -10.0, 60.0, 70.0), -7.0)):  # second: off the edge
        m = face.crop_transform(img.shape, 96, box=box, angle=angle, scale=1.5)
        exact, fast = face.warp_affine(img, m, (96, 96)), face.warp_affine(img, m, (96, 96), fast=True)
        assert fast.shape == exact.shape == (96, 96, 3)
        diff = np.abs(fast - exact)
        assert diff.mean() < 0.5 and diff.max() < 255 / 32 + 0.5, (diff.mean(), diff.max())


def test_a_portrait_without_a_face_box_is_taken_whole():
    img = np.full((80, 120, 3), 128, np.uint8)
    crop, m, found = face.crop_face(img, 64)
    assert crop.shape == (64, 64, 3) and not found
    np.testing.assert_allclose(m @ np.array([60.0, 40.0, 1.0]), [32.0, 32.0])   # centred square


def test_the_astronaut_photograph_gives_a_face_crop():
    pytest.importorskip("cv2")
    from skimage import data
    img = data.astronaut()
    _, m, found = face.crop_face(img, 64)
    assert found
    box, _ = face.detect_face(img)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.0])
    assert np.all(np.abs(m @ centre - 32) < 12)   # the face sits in the middle of the crop


@pytest.fixture(scope="module")
def runs():
    """Untrained tiny MoDA and renderer, built in memory (the pipeline must not care)."""
    import jax

    from jaxmoda import parallel
    from jaxmoda.moda.motion import default_stats
    from jaxmoda.talk import Loaded
    from jaxmoda.tasks import get_task
    from tests.helpers import load_test_config, random_params

    def build(path, base, **kw):
        config = load_test_config(path, base, **kw)
        config.mesh.data = 1
        mesh = parallel.make_mesh(config, jax.devices()[:1])
        task = get_task(config)
        graphdef, params = random_params(task.build_model)
        return Loaded(task, graphdef, params, mesh, parallel.rules_of(config))

    stats = default_stats()
    motion = build("configs/moda/tiny.py:fast", {}, objective__sample_steps=2)
    motion.task.config.moda.motion_mean = stats.mean.tolist()
    motion.task.config.moda.motion_std = stats.std.tolist()
    renderer = build("configs/moda/renderer_tiny.py", {}, model__image_size=32)
    return motion, renderer


def test_talk_on_a_real_photograph_gives_one_frame_per_audio_frame(runs, tmp_path):
    from skimage import data

    from jaxmoda.moda.audio import num_frames
    from jaxmoda.talk import frames_of, talk
    motion, renderer = runs
    wave = (0.2 * np.sin(np.arange(8000) / 16000 * 2 * np.pi * 180)).astype(np.float32)   # 0.5 s
    photo = data.astronaut()
    out = talk(motion, renderer, photo, wave, emotion=8, batch=8, progress=False)
    t = num_frames(len(wave))
    assert out["crops"].shape == (t, 32, 32, 3) and out["crops"].dtype == np.uint8
    assert out["motion"].shape == (t, 70) and np.all(np.isfinite(out["motion"]))
    frames = np.stack(list(frames_of(out, photo)))
    assert frames.shape == (t, 512, 512, 3)
    np.testing.assert_array_equal(frames[:, 400:], np.broadcast_to(photo[400:], (t, 112, 512, 3)))  # below the face
    assert np.any(frames[:, 100:160, 200:260] != photo[100:160, 200:260])                           # the face is redrawn
    path = write_mp4(tmp_path / "talk.mp4", (f[::4, ::4] for f in frames), audio=wave)
    info = probe(path)
    assert info["frames"] == t and info["fps"] == 25.0 and abs(info["audio_seconds"] - 0.5) <= 0.064


def test_cli_rejects_bad_inputs_before_loading_anything(tmp_path):
    from jaxmoda.talk import main
    wav = tmp_path / "short.wav"
    import soundfile as sf
    sf.write(wav, np.zeros(100, np.float32), 16000)
    png = tmp_path / "p.png"
    from PIL import Image
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(png)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    common = ["--motion-workdir", str(tmp_path / "nope"), "--renderer-workdir", str(tmp_path / "nope")]
    with pytest.raises(DataError, match="does not exist"):
        main([*common, "--image", str(tmp_path / "missing.png"), "--audio", str(wav)])
    with pytest.raises(DataError, match="not a readable image"):
        main([*common, "--image", str(tmp_path / "bad.png"), "--audio", str(wav)])
    with pytest.raises(DataError, match="shorter than one video frame"):
        main([*common, "--image", str(png), "--audio", str(wav)])
    from jaxmoda.errors import CheckpointError
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    with pytest.raises(CheckpointError, match="no config.json"):
        main([*common, "--image", str(png), "--audio", str(wav)])


def test_a_face_filling_a_tall_picture_gets_the_largest_square_around_it():
    m = face.crop_transform((300, 100, 3), 50, box=(10.0, 20.0, 90.0, 100.0))   # face in the top third
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    corners = inv @ np.array([[0, 50, 0, 50], [0, 0, 50, 50], [1, 1, 1, 1]], float)
    np.testing.assert_allclose([corners[0].min(), corners[0].max()], [0, 100], atol=1e-9)   # full width
    assert corners[1].min() >= 0 and corners[1].max() <= 300 and corners[1].min() <= 20 < 100 <= corners[1].max()


def test_stereo_audio_is_mixed_down(tmp_path):
    frames = np.zeros((10, 16, 16, 3), np.uint8)
    stereo = np.stack([np.full(6400, 0.2, np.float32), np.full(6400, -0.2, np.float32)], axis=1)
    info = probe(write_mp4(tmp_path / "s.mp4", frames, audio=stereo))
    assert info["frames"] == 10 and abs(info["audio_seconds"] - 0.4) <= 0.064
