"""MoDA motion generator end to end: SynthTalk -> features -> windows -> training -> the motion CLI."""

import json
import os

import numpy as np
import pytest

from jaxmoda.errors import ConfigError, DataError
from tests.helpers import ROOT, load_test_config

SMALL = {"model.hidden": "32", "model.num_heads": "2", "model.four_stream_depth": "1", "model.two_stream_depth": "1",
         "model.single_depth": "1", "batch_size": "8", "moda.synthtalk_clips": "40", "progress_bar": "false",
         "tensorboard": "false", "async_checkpointing": "false", "log_every": "10", "optimizer.warmup_steps": "10",
         "optimizer.learning_rate": "2e-3", "objective.sample_steps": "3"}


def moda_config(**overrides):
    return load_test_config(f"{ROOT}/configs/moda/tiny.py", SMALL, **overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run trained briefly on 40 SynthTalk clips (cached under a temporary JAXMODA_CACHE)."""
    root = tmp_path_factory.mktemp("moda")
    old = os.environ.get("JAXMODA_CACHE")
    os.environ["JAXMODA_CACHE"] = str(root / "cache")
    from jaxmoda.train.loop import train
    config = moda_config(total_steps="80", checkpoint_every="80")
    train(config, str(root / "run"))
    yield root
    if old is None:
        os.environ.pop("JAXMODA_CACHE", None)
    else:
        os.environ["JAXMODA_CACHE"] = old


def test_training_learns_and_stores_what_generation_needs(trained):
    from jaxmoda.train.metrics import read_metrics
    m = read_metrics(str(trained / "run"))
    assert m[-1]["lip_mse"] < 0.8 * m[0]["lip_mse"] and m[-1]["loss"] < 0.8 * m[0]["loss"]
    saved = json.load(open(trained / "run" / "config.json"))["moda"]
    assert len(saved["motion_mean"]) == 70 and len(saved["default_identity"]) == 63
    assert min(saved["motion_std"]) > 0
    from jaxmoda.train.sampling import load_for_sampling
    _, _, ema, _, _ = load_for_sampling(str(trained / "run"))
    assert "null_audio" in ema and "null_prefix" in ema  # the null conditions live in the checkpoint


def test_windows_are_deterministic_and_split_across_processes(trained):
    from jaxmoda.moda.data import WindowMaker, prepare
    config = moda_config()
    clips, _ = prepare(config)
    mean, std = np.asarray(config.moda.motion_mean, np.float32), np.asarray(config.moda.motion_std, np.float32)
    train_ids = clips.indices("train")
    assert len(clips.indices("eval")) > 0 and set(train_ids).isdisjoint(clips.indices("eval"))
    whole = WindowMaker(clips, train_ids, mean, std, 80, 8, 0, 0, 1)(5)
    halves = [WindowMaker(clips, train_ids, mean, std, 80, 8, 0, p, 2)(5) for p in range(2)]
    for k in whole:
        np.testing.assert_array_equal(whole[k], np.concatenate([h[k] for h in halves]))
    assert whole["motion"].shape == (8, 81, 70) and whole["audio"].shape == (8, 80, 2, 83)
    # A window's frames are the clip's motion, normalised; padding is masked.
    f, m = clips.clip(int(train_ids[0]))
    from jaxmoda.moda.data import make_windows
    b = make_windows(clips, [train_ids[0]], [0.0], 80, mean, std)
    n = min(80, len(m))
    np.testing.assert_allclose(b["motion"][0, 1:1 + n] * std + mean, m[:n], atol=1e-5)
    np.testing.assert_array_equal(b["mask"][0], np.arange(80) < n)
    np.testing.assert_array_equal(b["audio"][0, :n], f[:n].astype(np.float32))


def run_motion(trained, tmp_path, wave, **kw):
    import soundfile as sf

    from jaxmoda.motion import main
    path = tmp_path / kw.pop("name", "a.wav")
    sf.write(path, wave, kw.pop("sr", 16000))
    out = tmp_path / "m.npy"
    args = ["--workdir", str(trained / "run"), "--audio", str(path), "--out", str(out)]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    assert main(args) == 0
    return np.load(out)


def test_motion_cli_output_length_for_long_short_and_silent_audio(trained, tmp_path):
    rng = np.random.default_rng(0)
    ten = 0.1 * rng.standard_normal(160000).astype(np.float32)
    assert run_motion(trained, tmp_path, ten, emotion="happy", plot=tmp_path / "p.png").shape == (250, 70)
    assert (tmp_path / "p.png").exists()
    half = 0.1 * rng.standard_normal(8000).astype(np.float32)
    assert run_motion(trained, tmp_path, half).shape == (12, 70)
    # 44.1 kHz stereo is resampled and mixed down: 1 s -> 25 frames.
    stereo = 0.1 * rng.standard_normal((44100, 2)).astype(np.float32)
    assert run_motion(trained, tmp_path, stereo, sr=44100).shape == (25, 70)
    silent = run_motion(trained, tmp_path, np.zeros(32000, np.float32))
    assert silent.shape == (50, 70) and np.all(np.isfinite(silent))


def test_motion_cli_bad_inputs(trained, tmp_path):
    from jaxmoda.motion import main
    base = ["--workdir", str(trained / "run"), "--out", str(tmp_path / "m.npy")]
    with pytest.raises(ConfigError, match="emotion 'ecstatic' is unknown"):
        run_motion(trained, tmp_path, np.zeros(16000, np.float32), emotion="ecstatic")
    with pytest.raises(DataError, match="shorter than"):
        run_motion(trained, tmp_path, np.zeros(300, np.float32))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(DataError, match="empty.wav"):
        main(base + ["--audio", str(tmp_path / "empty.wav")])
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(DataError, match="junk.wav"):
        main(base + ["--audio", str(tmp_path / "junk.wav")])


def test_window_export_round_trip(trained, tmp_path):
    from jaxmoda import export, serve
    from tests.test_export import in_process
    run, out = trained / "run", tmp_path / "export"
    meta = export.export_run(str(run), str(out))
    assert [i["name"] for i in meta["inputs"]] == ["prefix", "audio", "identity", "emotion"]
    served = serve.load(str(out))
    config = moda_config()
    rng = np.random.default_rng(0)
    w = meta["settings"]["window"]
    _, _, length, channels = meta["inputs"][1]["shape"]
    inputs = {"prefix": rng.normal(size=(2, 70)).astype(np.float32),
              "audio": rng.normal(size=(2, w, length, channels)).astype(np.float32),
              "identity": rng.normal(size=(2, 63)).astype(np.float32), "emotion": np.array([0, 3], np.int32)}
    got = served(seed=5, **inputs)["motion"]
    assert got.shape == (2, w, 70) and np.isfinite(got).all()

    def window(task, model, key, prefix, audio, identity, emotion):
        mean, std = jnp.asarray(task.config.moda.motion_mean), jnp.asarray(task.config.moda.motion_std)
        return task.sample_window(model, key, (prefix - mean) / std, audio, identity, emotion) * std + mean
    import jax.numpy as jnp
    np.testing.assert_array_equal(got, in_process(run, window)(5, *inputs.values()))
    assert config.model.window == w


def test_hubert_front_end_from_hugging_face_files(trained, tmp_path):
    """frontend='hubert' with a Hugging Face-layout weights file + config.json: the task's feature shape
    comes from that config, SynthTalk clips get HuBERT features, and a missing file is a clear error."""
    import dataclasses

    from jaxmoda.moda import hubert
    from jaxmoda.moda.data import load_clips
    from jaxmoda.tasks import get_task
    from tests.helpers import write_torch_zip
    from tests.test_convert import hf_hubert_state
    cfg = hubert.HubertConfig.tiny()
    folder = tmp_path / "hubert-tiny"
    folder.mkdir()
    write_torch_zip(folder / "pytorch_model.bin", hf_hubert_state(cfg))
    (folder / "config.json").write_text(json.dumps({**dataclasses.asdict(cfg), "model_type": "hubert"}))
    config = moda_config(**{"audio.frontend": "hubert", "audio.hubert_weights": str(folder / "pytorch_model.bin")})
    task = get_task(config)
    assert (task.audio_layers, task.audio_channels) == (2, 32)
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert task.audio_features(wave).shape == (25, 2, 32)
    from jaxmoda.moda.data import data_dir
    clips = load_clips(data_dir(config), config.audio, progress=False)
    assert clips.features.shape[1:] == (2, 32) and len(clips.features) == len(clips.motion)
    bad = moda_config(**{"audio.frontend": "hubert", "audio.hubert_weights": str(tmp_path / "none.bin")})
    with pytest.raises(ConfigError, match="needs config.audio.hubert_weights, a Hugging Face HuBERT weights file"):
        get_task(bad).audio_features(wave)
