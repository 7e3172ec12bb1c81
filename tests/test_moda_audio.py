"""MoDA audio front end: 16 kHz loading, 25-fps log-mel/energy/F0 features and the HuBERT encoder."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
import soxr
from flax import nnx

from jaxmoda.errors import ConfigError, DataError
from jaxmoda.moda import audio, hubert

SR = audio.SAMPLE_RATE


def _speechy(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced harmonic source (F0 ~ 140 Hz) with syllable-rate envelope plus a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    phase = np.cumsum(140.0 * (1 + 0.1 * np.sin(2 * np.pi * 0.8 * t)) / SR)
    src = sum(np.sin(2 * np.pi * k * phase) / k for k in range(1, 25))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    x = src * env + 0.01 * rng.standard_normal(n)
    return (0.1 * x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


# ------------------------------------------------------------------------------------------------- frames


@pytest.mark.parametrize("n", [640, 641, 1279, 1280, 16000, 16001, 40 * 640 + 639])
def test_frame_count_is_floor(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    feats = audio.audio_features(x)
    assert audio.num_frames(n) == n // 640
    assert feats.shape == (n // 640,) + audio.feature_shape()
    assert feats.dtype == np.float32


@pytest.mark.parametrize("n", [0, 1, 639])
def test_shorter_than_one_frame_raises(n):
    with pytest.raises(DataError, match="shorter than 40 ms"):
        audio.audio_features(np.zeros(n, np.float32))


def test_constants_and_shape():
    assert (audio.SAMPLE_RATE, audio.FPS, audio.HOP) == (16000, 25, 640)
    assert audio.feature_shape() == (2, 83)
    s = audio.AudioSettings(use_f0=False, use_delta=False, n_mels=40)
    assert audio.feature_shape(s) == (1, 41)
    assert audio.audio_features(np.ones(1300, np.float32) * 0.1, s).shape == (2, 1, 41)


@pytest.mark.parametrize("n", [100, 640 * 7 + 5, 640 * 12 + 320, 640 * 20 + 630, 640 * 29 + 639])
def test_click_peaks_in_its_frame(n):
    x = np.zeros(30 * 640, np.float32)
    x[n] = 0.9
    feats = audio.audio_features(x)
    energy = feats[:, 0, audio.feature_slices()["energy"]][:, 0]
    assert abs(int(np.argmax(energy)) - n // 640) <= 1
    assert int(np.argmax(energy)) == n // 640  # energy is exact per frame
    mel_loud = feats[:, 0, :80].mean(axis=1)
    assert abs(int(np.argmax(mel_loud)) - n // 640) <= 1


def test_silence_is_finite_and_distinct():
    z = audio.audio_features(np.zeros(16000, np.float32))
    assert np.all(np.isfinite(z))
    assert np.all(z[:, 1] == 0)  # no change, no delta
    sl = audio.feature_slices()
    assert np.all(z[:, 0, sl["voiced"]] == -1) and np.all(z[:, 0, sl["lf0"]] == 0)
    speech = audio.audio_features(_speechy(1.0))
    assert z[:, 0, sl["energy"]].max() < speech[:, 0, sl["energy"]].min() - 1.0


def test_harmonic_tone_f0_and_voicing():
    t = np.arange(SR) / SR
    x = 0.2 * sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    s = audio.AudioSettings()
    feats = audio.audio_features(x.astype(np.float32), s)
    sl = audio.feature_slices(s)
    np.testing.assert_allclose(feats[:, 0, sl["voiced"]], 1.0)
    np.testing.assert_allclose(feats[:, 0, sl["lf0"]], np.log2(150 / s.f0_ref_hz), atol=0.01)
    noise = audio.audio_features(np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.05, s)
    assert np.mean(noise[:, 0, sl["voiced"]] > 0) < 0.1


def test_features_are_roughly_normalised():
    f = audio.audio_features(_speechy(4.0))
    assert np.all(np.isfinite(f))
    assert -1.5 < f[:, 0].mean() < 1.5 and 0.2 < f[:, 0].std() < 2.0


# ------------------------------------------------------------------------------------------------- loading


def test_stereo_and_44k_match_16k_mono(tmp_path):
    x = _speechy(2.0, seed=1)
    mono = tmp_path / "mono16k.wav"
    sf.write(mono, x, SR, subtype="FLOAT")
    stereo = tmp_path / "stereo16k.wav"
    sf.write(stereo, np.stack([0.6 * x, 1.4 * x], axis=1), SR, subtype="FLOAT")
    hi = tmp_path / "mono44k.flac"
    sf.write(hi, soxr.resample(x.astype(np.float64), SR, 44100), 44100, subtype="PCM_24")

    ref = audio.audio_features(audio.load_audio(mono))
    np.testing.assert_allclose(audio.load_audio(mono), x, atol=1e-7)
    np.testing.assert_allclose(audio.audio_features(audio.load_audio(stereo)), ref, atol=1e-4)
    wave44 = audio.load_audio(hi)
    assert wave44.dtype == np.float32 and wave44.shape == x.shape
    got = audio.audio_features(wave44)
    assert got.shape == ref.shape
    # mel bins above ~7 kHz lose energy in the resampler's transition band; compare the rest closely
    import librosa

    s = audio.AudioSettings()
    centres = librosa.mel_frequencies(s.n_mels + 2, fmin=s.fmin, fmax=s.fmax)[1:-1]
    keep = np.concatenate([centres < 7000.0, np.ones(3, bool)])
    np.testing.assert_allclose(got[:, :, keep], ref[:, :, keep], atol=0.05)
    assert np.median(np.abs(got - ref)) < 0.01


def test_to_mono_16k_layouts_and_ints():
    x = _speechy(0.5)
    np.testing.assert_allclose(audio.to_mono_16k(np.stack([x, x]), SR), x, atol=1e-7)  # [C, N]
    np.testing.assert_allclose(audio.to_mono_16k(np.stack([x, x], 1), SR), x, atol=1e-7)  # [N, C]
    pcm = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(audio.to_mono_16k(pcm, SR), x, atol=1e-4)
    assert audio.to_mono_16k(np.zeros(8000), 8000).shape == (16000,)


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(DataError, match="missing.wav"):
        audio.load_audio(missing)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(DataError, match="empty.wav.*no samples"):
        audio.load_audio(empty)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(DataError, match="garbage.wav") as e:
        audio.load_audio(garbage)
    assert "\n" not in str(e.value)


def test_settings_from_config():
    cfg = audio.default_audio_config()
    assert cfg.frontend == "logmel" and cfg.n_mels == 80 and cfg.use_f0 and cfg.hubert_weights == ""
    assert audio.AudioSettings.from_config(cfg) == audio.AudioSettings()
    assert audio.AudioSettings.from_config({"n_mels": 40, "use_f0": False}).n_mels == 40
    with pytest.raises(ConfigError, match="n_melz"):
        audio.AudioSettings.from_config({"n_melz": 40})
    with pytest.raises(ConfigError, match="frontend"):
        audio.AudioSettings.from_config({"frontend": "mfcc"})
    with pytest.raises(ConfigError):
        audio.AudioSettings(f0_min=500, f0_max=100)


# ------------------------------------------------------------------------------------------------- HuBERT


@pytest.fixture(scope="module")
def tiny():
    return hubert.init_hubert(hubert.HubertConfig.tiny(), seed=0)


def test_hubert_output_shape(tiny):
    cfg = tiny.config
    wave = jnp.asarray(np.random.default_rng(0).standard_normal((2, SR)), jnp.float32)
    out = nnx.jit(lambda m, w: m(w))(tiny, wave)
    t50 = hubert.conv_output_length(SR, cfg)
    assert t50 == 49
    assert out.shape == (2, cfg.num_hidden_layers + 1, t50, cfg.hidden_size)
    assert bool(jnp.all(jnp.isfinite(out)))
    pre = nnx.jit(lambda m, w: m(w, num_frames=25))(tiny, wave)
    assert pre.shape == (2, cfg.num_states, 25, cfg.hidden_size)


def test_to_video_rate_exact_length_and_ramp():
    for n in (640, 16000, 16000 + 639, 3 * SR + 17):
        t50 = hubert.conv_output_length(n)
        t = audio.num_frames(n)
        ramp = jnp.broadcast_to(jnp.linspace(-1.0, 2.0, t50)[None, None, :, None], (1, 2, t50, 3))
        out = hubert.to_video_rate(ramp, t)
        assert out.shape == (1, 2, t, 3)
        want = np.linspace(-1.0, 2.0, t) if t > 1 else np.array([-1.0])
        if t50 > 1:
            np.testing.assert_allclose(np.asarray(out[0, 0, :, 0]), want, atol=1e-6)


def test_hubert_features_shape(tiny):
    cfg = tiny.config
    x = _speechy(1.0)[: SR - 100]
    f = hubert.hubert_features(tiny, x)
    assert f.shape == (audio.num_frames(x.size), cfg.num_states, cfg.hidden_size) == (24, 3, 32)
    assert f.dtype == np.float32 and np.all(np.isfinite(f))
    post = hubert.hubert_features(tiny, x, presample=False, include_embedding=False)
    assert post.shape == (24, cfg.num_hidden_layers, cfg.hidden_size)
    chunked = hubert.hubert_features(tiny, _speechy(1.2), chunk_seconds=0.4)
    assert chunked.shape == (30, 3, 32)
    with pytest.raises(DataError, match="shorter than 40 ms"):
        hubert.hubert_features(tiny, np.zeros(600, np.float32))


def test_hubert_param_names_mirror_hf(tiny):
    params = nnx.state(tiny, nnx.Param)
    names = {hubert.hf_name(p): tuple(v.shape) for p, v in nnx.to_flat_state(params)}
    cfg = tiny.config
    d, c = cfg.hidden_size, cfg.conv_dim[-1]
    assert names["feature_extractor.conv_layers.0.conv.weight"] == (10, 1, c)
    assert names["feature_extractor.conv_layers.0.layer_norm.weight"] == (c,)
    assert "feature_extractor.conv_layers.1.layer_norm.weight" not in names
    assert "feature_extractor.conv_layers.0.conv.bias" not in names
    assert names["feature_projection.layer_norm.weight"] == (c,)
    assert names["feature_projection.projection.weight"] == (c, d)
    assert names["encoder.pos_conv_embed.conv.weight"] == (16, d // 4, d)
    assert names["masked_spec_embed"] == (d,)
    for layer in range(cfg.num_hidden_layers):
        pre = f"encoder.layers.{layer}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            assert names[pre + f"attention.{proj}.weight"] == (d, d) and names[pre + f"attention.{proj}.bias"] == (d,)
        assert names[pre + "feed_forward.intermediate_dense.weight"] == (d, cfg.intermediate_size)
        assert names[pre + "feed_forward.output_dense.weight"] == (cfg.intermediate_size, d)
        assert pre + "final_layer_norm.bias" in names and pre + "layer_norm.weight" in names
    expected = 7 + 2 + 2 + 2 + 1 + 2 + 2 + cfg.num_hidden_layers * 16
    assert len(names) == expected
    specs = nnx.to_pure_dict(nnx.get_partition_spec(params))
    assert tuple(specs["encoder"]["layers"][0]["feed_forward"]["intermediate_dense"]["kernel"]) == ("embed", "mlp")


def test_pos_conv_is_centred_same_length(tiny):
    pos = tiny.encoder.pos_conv_embed
    d, k, t0 = tiny.config.hidden_size, tiny.config.num_conv_pos_embeddings, 20
    x = jnp.zeros((1, 40, d)).at[0, t0].set(1.0)
    y = pos.conv(x) - pos.conv(jnp.zeros((1, 40, d)))
    touched = np.nonzero(np.abs(np.asarray(y[0])).sum(-1) > 0)[0]
    assert y.shape == (1, 40, d)
    assert touched.min() == t0 - (k // 2 - 1) and touched.max() == t0 + k // 2  # HF: pad k/2, drop last


def test_hubert_config_from_hf_dict():
    cfg = hubert.HubertConfig.from_dict({"conv_dim": [512] * 7, "hidden_size": 768, "model_type": "hubert",
                                         "vocab_size": 32})
    assert cfg == hubert.HubertConfig()
    with pytest.raises(ConfigError, match="do_stable_layer_norm"):
        hubert.HubertConfig(do_stable_layer_norm=True)
    full = nnx.eval_shape(lambda: hubert.init_hubert())
    n = sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(full, nnx.Param)))
    assert 94_000_000 < n < 95_000_000  # HuBERT-base: ~94.4 M parameters
