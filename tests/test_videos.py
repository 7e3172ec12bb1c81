"""python -m jaxmoda.data.videos: a folder of videos -> SynthTalk-format clip records, end to end on
videos made here from SynthFaces frames (a motion extractor trained on SynthFaces for 120 steps),
with the bad cases counted: corrupt, empty, no audio, no face, too short; variable frame rate and
phone rotation handled."""

import dataclasses
import json
import os
from fractions import Fraction

import numpy as np
import pytest

from jaxmoda.data import synthfaces, videos
from jaxmoda.errors import ConfigError, DataError
from jaxmoda.io.video import frame_times, frames_at, resample_indices, write_mp4
from jaxmoda.moda import motion as mo
from tests.helpers import fast_module, load_test_config

SIZE = 32


def tone_per_frame(n_frames, seed=0):
    """Audio whose amplitude steps at every 640-sample frame boundary (frame i has amplitude a_i)."""
    amps = np.random.default_rng(seed).uniform(0.05, 0.5, n_frames)
    t = np.arange(640 * n_frames) / 16000
    return (np.repeat(amps, 640) * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), amps


def swaying_motion(n, seed):
    rng = np.random.default_rng(seed)
    m = np.tile(synthfaces.neutral_motion()[None], (n, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    k = np.arange(n)
    m[:, mo.POSE] = 15 * np.sin(2 * np.pi * k[:, None] / [50, 37, 61] + phase)
    return m


def write_vfr(path, frames, times):
    import av
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for img, t in zip(frames, times):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_variable_frame_rate_resampling_picks_the_frame_on_screen(tmp_path):
    times = np.cumsum(np.r_[0, np.random.default_rng(1).uniform(0.02, 0.07, 59)])
    levels = 40 + 3 * np.arange(60)
    write_vfr(tmp_path / "vfr.mp4", [np.full((32, 32, 3), v, np.uint8) for v in levels], times)
    t, end = frame_times(tmp_path / "vfr.mp4")
    np.testing.assert_allclose(t, times, atol=1.5e-3)
    idx = resample_indices(t, end, 25)
    stored = np.round(times * 1000) / 1000  # the file keeps millisecond timestamps
    assert len(idx) == int((end - t[0]) * 25 + 1e-6) and end > stored[-1]
    want = np.searchsorted(stored, stored[0] + np.arange(len(idx)) / 25 + 1e-6, side="right") - 1
    np.testing.assert_array_equal(idx, want)
    shown = [int(round((f.mean() - 40) / 3)) for f in frames_at(tmp_path / "vfr.mp4", idx)]
    np.testing.assert_array_equal(shown, want)  # the decoded frames are those source frames


def test_phone_rotation_is_applied(tmp_path):
    import av
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(90)
        img = np.zeros((32, 64, 3), np.uint8)
        img[:, :32] = 255  # left half white
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    frame = next(frames_at(path, [0]))
    assert frame.shape == (64, 32, 3)  # upright: portrait
    assert frame[-8:].mean() > 200 and frame[:8].mean() < 50  # turned 90° counter-clockwise


@pytest.fixture(scope="module")
def trained_renderer():
    """The tiny renderer at 32 px whose motion extractor is trained 300 steps to read SynthFaces' head
    pose, scale and translation (identity 1000, poses within +-20 degrees)."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from jaxmoda.tasks.renderer import RendererTask
    config = load_test_config("configs/moda/renderer_tiny.py", {}, model__image_size=SIZE)
    model = fast_module(RendererTask(config).build_model)
    rng = np.random.default_rng(0)
    m = np.tile(synthfaces.neutral_motion()[None], (768, 1)).astype(np.float32)
    m[:, mo.POSE] = rng.uniform(-20, 20, (768, 3))
    m[:, mo.TRANS.start:mo.TRANS.start + 2] += rng.uniform(-0.04, 0.04, (768, 2))
    images = synthfaces.render_clip(m, 1000, SIZE).astype(np.float32) / 127.5 - 1
    graphdef, params = nnx.split(model.motion_extractor, nnx.Param)
    tx = optax.adam(3e-3)
    opt = tx.init(params)
    from jaxmoda.moda.render.model import extracted_motion

    @jax.jit
    def step(params, opt, x, y):
        def f(p):
            pred = extracted_motion(nnx.merge(graphdef, p)(x))
            return jnp.mean(jnp.square((pred[:, mo.POSE] - y[:, mo.POSE]) / 10)) + \
                jnp.mean(jnp.square((pred[:, 63:67] - y[:, 63:67]) * 10))
        loss, grads = jax.value_and_grad(f)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    for i in range(300):
        sel = rng.integers(0, len(m), 32)
        params, opt, loss = step(params, opt, jnp.asarray(images[sel]), jnp.asarray(m[sel]))
    nnx.update(model.motion_extractor, params)
    return model


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    src = root / "in"
    (src / "speaker_a").mkdir(parents=True)
    motions = {}
    for name, n, seed in (("speaker_a/take1.mp4", 110, 0), ("speaker_a/take2.mp4", 230, 1)):
        m = swaying_motion(n, seed)
        frames = synthfaces.render_clip(m, 1000, SIZE)
        wave, _ = tone_per_frame(n, seed)
        write_mp4(src / name, np.asarray(frames), fps=25, audio=wave)
        motions[name] = m
    frames = np.asarray(synthfaces.render_clip(swaying_motion(90, 2), 1000, SIZE))
    write_mp4(src / "mute.mp4", frames, fps=25)                                   # no audio
    write_mp4(src / "short.mp4", frames[:40], fps=25, audio=tone_per_frame(40)[0])  # under one window
    (src / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(5000))     # not a video
    (src / "empty.mov").write_bytes(b"")                                         # 0 bytes
    (src / "notes.txt").write_text("not a video")
    return root, motions


def test_videos_become_aligned_records_with_counted_failures(video_dir, trained_renderer):
    from array_record.python.array_record_module import ArrayRecordReader

    from jaxmoda.data import synthtalk
    root, motions = video_dir
    extractor = videos.MotionExtractor.from_module(trained_renderer, SIZE, batch=16)
    opts = videos.Options(size=SIZE, clip_seconds=4.0, eval_fraction=0.0, detect=False)
    out = root / "records"
    report = videos.run(str(root / "in"), str(out), extractor, opts, {"speaker_a/take2.mp4": 1}, progress=False)
    assert report["videos"] == 6 and report["new"] == 2 and report["clips"] == 1 + 2  # 110 -> 1 clip; 230 -> 100+100+(30 dropped)
    assert report["skipped"] == {"no audio stream": ["mute.mp4"], "shorter than one 80-frame window": ["short.mp4"],
                                 "not a readable video": ["broken.mp4"], "empty file": ["empty.mov"]}
    meta = videos.finalize(str(out), opts)
    clips = []
    for shard in synthtalk.list_shards(str(out)):
        r = ArrayRecordReader(shard)
        clips += [synthtalk.read_clip(x) for x in r.read_all()]
        r.close()
    assert len(clips) == 3 and meta["counts"] == {"train": 3, "eval": 0}
    by_video = {}
    for c in clips:
        by_video.setdefault(c["voice"], []).append(c)
        assert len(c["audio"]) == 640 * len(c["motion"]) and c["identity"].shape == (21, 3)
    assert [len(c["motion"]) for c in by_video["speaker_a/take2.mp4"]] == [100, 100]
    assert by_video["speaker_a/take2.mp4"][0]["emotion"] == 1 and by_video["speaker_a/take1.mp4"][0]["emotion"] == 5
    # Frame i <-> samples [640 i, 640 (i + 1)): each frame's audio has that frame's amplitude.
    _, amps = tone_per_frame(230, 1)
    second = by_video["speaker_a/take2.mp4"][1]["audio"].reshape(100, 640)
    peak = np.abs(second[:, 64:-64]).max(1)  # away from the steps
    np.testing.assert_allclose(peak, amps[100:200], rtol=0.08, atol=0.01)
    # The extracted motion follows the known head pose (threshold: Pearson r > 0.9 on pitch, yaw and roll),
    # as example_videos --check reports it.
    from jaxmoda.data.example_videos import compare_with_truth
    np.savez(root / "truth.npz", **{f"{k}/motion": v for k, v in motions.items()})
    check = compare_with_truth(str(out), str(root / "truth.npz"))
    rs = [check["per_video"]["speaker_a/take2.mp4"][axis]["r"] for axis in ("pitch", "yaw", "roll")]
    assert check["videos"] == 2 and min(rs) > 0.9, rs
    np.savez(root / "other.npz", **{"elsewhere.mp4/motion": motions["speaker_a/take2.mp4"]})
    with pytest.raises(DataError, match="no video of .* has a truth entry"):
        compare_with_truth(str(out), str(root / "other.npz"))
    # Statistics equal a direct computation over the train clips' motion.
    stats = mo.MotionStats.load(str(out / synthtalk.STATS_FILE))
    allm = np.concatenate([c["motion"] for c in clips]).astype(np.float64)
    std = allm.std(0)
    np.testing.assert_allclose(stats.mean, allm.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.std, np.where(std < 1e-4, 1.0, std), rtol=1e-4, atol=1e-6)
    # Frames for the renderer: JPEG crops, one per motion frame.
    fr = ArrayRecordReader(str(out / meta["shards"][0]["frames_file"]))
    first = videos.read_frames(fr.read_all()[0])
    fr.close()
    assert first.shape[1:] == (SIZE, SIZE, 3) and len(first) in (100, 110)
    # Rerun: finished videos and recorded failures are not processed again.
    again = videos.run(str(root / "in"), str(out), extractor, opts, {}, progress=False)
    assert again["new"] == 0 and again["already_done"] == 2 and sum(len(v) for v in again["skipped"].values()) == 4
    # Two processes split the files between them.
    halves = [videos.list_videos(str(root / "in"))[p::2] for p in range(2)]
    assert sorted(halves[0] + halves[1]) == videos.list_videos(str(root / "in")) and not set(halves[0]) & set(halves[1])


def test_face_detection_path_and_a_video_without_a_face(tmp_path, trained_renderer, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    m = swaying_motion(90, 3)
    m[:, mo.POSE] *= 0.3
    faces = np.asarray(synthfaces.render_clip(m, 0, 96))
    framed = np.full((90, 180, 240, 3), 70, np.uint8)
    framed[:, 40:136, 60:156] = faces
    write_mp4(src / "framed.mp4", framed, fps=25, audio=tone_per_frame(90)[0])
    noise = np.random.default_rng(0).integers(0, 255, (90, 120, 160, 3), dtype=np.uint8)
    write_mp4(src / "noface.mp4", noise, fps=25, audio=tone_per_frame(90)[0])
    extractor = videos.MotionExtractor.from_module(trained_renderer, SIZE, batch=16)
    opts = videos.Options(size=64, clip_seconds=4.0, eval_fraction=0.0)
    report = videos.run(str(src), str(tmp_path / "out"), extractor, opts, {}, progress=False)
    assert report["new"] == 1 and list(report["skipped"]) == ["no face on most frames"]
    part = tmp_path / "out" / videos.PARTS / videos.part_name("framed.mp4")
    assert json.load(open(part / "done.json"))["clips"] == 1
    # Detecting on every 5th frame and interpolating finds the boxes detecting on every frame finds.
    from jaxmoda.moda.render import face
    calls = []
    real = face.detect_face
    monkeypatch.setattr(face, "detect_face", lambda img: calls.append(1) or real(img))
    boxes = {}
    for k in (1, 5):
        calls.clear()
        boxes[k], shape = videos.track_faces(str(src / "framed.mp4"), np.arange(90), dataclasses.replace(opts, detect_every=k))
        assert len(calls) == (90 if k == 1 else 19) and shape == (180, 240, 3)
    assert np.abs(boxes[5] - boxes[1]).max() < 3.0   # pixels, on a 96-px face


def test_cli_errors(tmp_path):
    with pytest.raises(ConfigError, match="--fps must be 25"):
        videos.main(["--in", str(tmp_path), "--out", str(tmp_path / "o"), "--fps", "30"])
    with pytest.raises(ConfigError, match="--detect-every 0"):
        videos.main(["--in", str(tmp_path), "--out", str(tmp_path / "o"), "--detect-every", "0"])
    with pytest.raises(ConfigError, match="--motion-extractor is required"):
        videos.main(["--in", str(tmp_path), "--out", str(tmp_path / "o")])
    (tmp_path / "labels.csv").write_text("video,emotion\na.mp4,grumpy\n")
    with pytest.raises(ConfigError, match="unknown emotion 'grumpy'"):
        videos.read_emotions(str(tmp_path / "labels.csv"))
    assert os.path.basename(videos.part_name("x/y z.mp4")).startswith("x_y_z-")


def test_records_make_a_renderer_frame_set(video_dir, trained_renderer, monkeypatch):
    from jaxmoda.moda.render.data import load_face_set, pair_batch
    root, _ = video_dir
    out = root / "records"
    if not (out / "metadata.json").exists():  # written by the test above when run first
        opts = videos.Options(size=SIZE, clip_seconds=4.0, eval_fraction=0.0, detect=False)
        videos.run(str(root / "in"), str(out), videos.MotionExtractor.from_module(trained_renderer, SIZE), opts, {},
                   progress=False)
        videos.finalize(str(out), opts)
    monkeypatch.setenv("JAXMODA_CACHE", str(root / "cache"))  # a private cache for the frame set
    config = load_test_config("configs/moda/renderer_records_256.py", {}, model__image_size=16,
                              render__records=str(out), render__train_identities=3, render__frames_per_identity=4)
    fs = load_face_set(config, "train", progress=False)
    assert len([p for p in os.listdir(root / "cache") if p.startswith("records-faces-train-")]) == 1  # cached
    assert fs.frames.shape == (3, 4, 16, 16, 3) and fs.motion.shape == (3, 4, 70) and fs.x_c.shape == (3, 21, 3)
    b = pair_batch(fs, np.random.default_rng(0), 5)
    assert b["source"].shape == (5, 16, 16, 3) and np.isfinite(b["driving_motion"]).all()
    config.render.train_identities = 9
    with pytest.raises(ConfigError, match="has 3 train clips; config.render.train_identities asks for 9"):
        load_face_set(config, "train", progress=False)
