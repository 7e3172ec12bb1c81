"""SynthTalk: eSpeak NG speech with phoneme timings, ground-truth motion and the dataset writer."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from jaxmoda.data import speech
from jaxmoda.data import synthtalk as st
from jaxmoda.errors import ConfigError, DataError
from jaxmoda.moda import motion as mo

SENTENCE = "Please bring the papers to the meeting."


def _frame_times(num_frames: int) -> np.ndarray:
    return (np.arange(num_frames) + 0.5) / st.FPS


# ----------------------------------------------------------------------------------------------
# Speech.


def test_synthesize_gives_audio_and_contiguous_phoneme_timings():
    u = speech.synthesize(SENTENCE, voice="en-us", rate_wpm=160)
    assert u.audio.dtype == np.float32 and u.audio.ndim == 1 and u.sample_rate == 16000
    assert 1.0 < u.duration < 5.0 and np.abs(u.audio).max() <= 1.0
    starts = np.array([s for _, s, _ in u.phonemes])
    ends = np.array([e for _, _, e in u.phonemes])
    assert starts[0] == 0.0 and np.all(ends > starts)
    np.testing.assert_array_equal(starts[1:], ends[:-1])  # contiguous, so monotonic
    assert abs(ends[-1] - u.duration) < 1e-9  # covers the whole utterance
    names = [n for n, _, _ in u.phonemes]
    assert {"p", "b", "m", "i:"} <= set(names) and names[0] == "_"
    assert all(not n.startswith(("'", ",")) for n in names) and 2 in u.stress and len(u.stress) == len(names)
    assert [w for w, _, _ in u.words] == ["Please", "bring", "the", "papers", "to", "the", "meeting"]
    # The timings line up with the audio: vowels are loud, the leading pause is silent.
    def rms(t0: float, t1: float) -> float:
        seg = u.audio[int(t0 * 16000): int(t1 * 16000)]
        return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if seg.size else 0.0

    vowels = [rms(s, e) for n, s, e in u.phonemes if st.viseme(n)[0] == "vowel"]
    assert np.median(vowels) > 20 * rms(*u.phonemes[0][1:]) + 1e-4


def test_synthesize_is_deterministic_and_validates(monkeypatch):
    first = speech.synthesize(SENTENCE, voice="en-us", rate_wpm=180)
    speech.synthesize("Something else entirely, with commas.", voice="en", variant="f3", rate_wpm=140)
    again = speech.synthesize(SENTENCE, voice="en-us", rate_wpm=180)
    np.testing.assert_array_equal(first.audio, again.audio)
    assert first.phonemes == again.phonemes
    # A helper killed from outside is replaced transparently, with the same results.
    import signal
    os.kill(speech._engine().proc.pid, signal.SIGKILL)
    np.testing.assert_array_equal(speech.synthesize(SENTENCE, voice="en-us", rate_wpm=180).audio, first.audio)
    assert speech.synthesize(SENTENCE, voice="en-us+m3").voice == "en-us+m3"
    assert "en-us" in speech.list_voices() and "f3" in speech.list_variants()
    with pytest.raises(ConfigError, match="unknown eSpeak voice 'xx-nope'"):
        speech.synthesize("hi", voice="xx-nope")
    with pytest.raises(ConfigError, match="variant"):
        speech.synthesize("hi", variant="nope")
    with pytest.raises(ConfigError, match="rate_wpm"):
        speech.synthesize("hi", rate_wpm=20)
    with pytest.raises(DataError, match="empty"):
        speech.synthesize("  ")
    # A missing library is a one-line DataError naming the package to install.
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "espeakng_loader" else real_find_spec(name, *a))
    monkeypatch.setattr(speech, "_ENGINE", None)
    with pytest.raises(speech.MissingSpeechLibraryError, match="pip install espeakng-loader") as info:
        speech.synthesize("hi")
    assert isinstance(info.value, DataError) and "\n" not in str(info.value)


def test_resample_and_pitch_tracker():
    t = np.arange(22050) / 22050
    y = speech.resample(np.sin(2 * np.pi * 1000 * t), 22050, 16000)
    assert y.shape == (16000,)
    ref = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    np.testing.assert_allclose(y[2000:14000], ref[2000:14000], atol=2e-3)
    tone = 0.5 * np.sin(2 * np.pi * 150 * np.arange(16000) / 16000)
    f0, voiced = st.f0_track(tone)
    assert voiced[5:-5].all() and np.allclose(f0[5:-5], 150, rtol=0.03)


# ----------------------------------------------------------------------------------------------
# Clips and motion.


def test_generate_clip_is_deterministic_with_plausible_motion():
    a, b, c = st.generate_clip(5), st.generate_clip(5), st.generate_clip(6)
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
    assert a["text"] != c["text"] or not np.array_equal(a["motion"], c["motion"])
    for clip in (a, c):
        motion, audio = clip["motion"], clip["audio"]
        assert audio.dtype == np.float32 and motion.dtype == np.float32
        assert motion.shape == (len(audio) // st.SAMPLES_PER_FRAME, mo.DIM)
        assert np.all(np.isfinite(motion))
        assert np.abs(motion[:, mo.EXP]).max() < 0.15
        assert np.abs(motion[:, mo.POSE]).max() < 90.0
        assert np.all((motion[:, mo.SCALE] > 1.0) & (motion[:, mo.SCALE] < 1.6))
        assert np.all(motion[:, mo.TRANS.start + 2] == 0.0) and np.abs(motion[:, 64:66]).max() < 0.5
        assert clip["identity"].shape == (21, 3) and 0 <= clip["emotion"] < len(st.EMOTIONS)
        assert clip["split"] == "train" and not clip["held_out_voice"] and not clip["held_out_sentence"]
        np.testing.assert_array_equal(clip["phone_start"][1:], clip["phone_end"][:-1])
        assert clip["phone_start"][0] == 0 and abs(clip["phone_end"][-1] - len(audio) / 16000) < 1e-4
        # Expression z and the keypoints outside the driven groups stay at 0.
        exp = motion[:, mo.EXP].reshape(-1, 21, 3)
        assert np.all(exp[..., 2] == 0.0) and np.all(exp[:, [0, 3, 4, 5, 7, 8, 9, 10]] == 0.0)


def test_bilabials_close_the_mouth_and_vowels_open_it():
    checked_closed = checked_open = 0
    for seed in (0, 1, 2):
        clip = st.generate_clip(seed, num_sentences=2)
        t = _frame_times(len(clip["motion"]))
        openness = mo.mouth_openness(clip["motion"])
        for name, t0, t1 in st.phonemes_of(clip):
            kind, parts = st.viseme(name)
            inside = (t >= t0) & (t <= t1)
            if kind == "bilabial":
                assert np.all(openness[inside] <= 0.0), (name, t0, t1, openness[inside])
                near = (t >= t0 - 0.04) & (t <= t1 + 0.04)
                assert openness[near].min() <= 0.0  # M3: every /p b m/ closes within +-40 ms
                checked_closed += int(inside.sum())
            elif kind == "vowel" and parts[0][0] >= 0.6 and t1 - t0 >= 0.08:
                assert openness[inside].max() > 0.005, (name, t0, t1, openness[inside])
                checked_open += int(inside.sum())
        lead = t < clip["phone_end"][0] - 0.15  # leading silence: closed at rest
        assert np.abs(openness[lead]).max() < 1e-3
    assert checked_closed >= 10 and checked_open >= 5


def test_blinks_occur_over_a_long_clip():
    clip = st.generate_clip(11, num_sentences=6)
    duration = len(clip["audio"]) / 16000
    assert duration > 12.0
    blinks = clip["blink_times"]
    assert 2 <= len(blinks) <= duration / 1.0 and np.all(np.diff(blinks) > 0.3)
    lid = clip["motion"][:, mo.exp_dim(st.KEYPOINT_ROLES["upper_lids"][0], 1)]
    assert lid.max() - np.median(lid) > 0.015  # a lid closure shows up in the eye keypoints
    frames_closed = np.flatnonzero(lid - np.median(lid) > 0.01) / st.FPS
    assert all(np.any(np.abs(frames_closed - (b + 0.1)) < 0.15) for b in blinks if b + 0.25 < duration - 0.04)


def test_emotion_and_identity_conditioning():
    assert st.EMOTIONS == ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted", "contempt")
    happy = st.generate_clip(3, emotion="happy")
    sad = st.generate_clip(3, emotion="sad")
    left = st.KEYPOINT_ROLES["mouth_corners"][0]
    corner_y = [np.median(c["motion"][:, mo.exp_dim(left, 1)]) for c in (happy, sad)]
    assert corner_y[0] < corner_y[1] - 0.005  # happy raises the corners (y points down)
    assert happy["motion"][:, mo.POSE].std(0).sum() > sad["motion"][:, mo.POSE].std(0).sum()
    a, b = st.make_identity(0), st.make_identity(1)
    assert not np.allclose(a.x_c, b.x_c) and a.mouth_gain != b.mouth_gain
    for u, lo in mo.MOUTH_OPEN_PAIRS:  # the rest offset leaves openness at 0
        assert a.lip_offset[u, 1] == a.lip_offset[lo, 1]
    with pytest.raises(ConfigError, match="emotion"):
        st.generate_clip(3, emotion="bored")


# ----------------------------------------------------------------------------------------------
# Dataset writer.


def test_write_dataset_records_metadata_and_held_out_split(tmp_path, capsys):
    from array_record.python.array_record_module import ArrayRecordReader

    out = str(tmp_path / "synthtalk")
    assert st.main(["--out", out, "--num", "6", "--eval-fraction", "0.5", "--clips-per-shard", "4"]) == 0
    assert "wrote 6 SynthTalk clips (3 train, 3 eval" in capsys.readouterr().out
    with open(os.path.join(out, st.METADATA_FILE)) as f:
        meta = json.load(f)
    assert meta["format"] == st.FORMAT and meta["counts"] == {"train": 3, "eval": 3}
    assert meta["fps"] == 25 and meta["sample_rate"] == 16000 and len(meta["shards"]) == 2
    assert meta["splits"]["eval"]["kinds"] == {"held_out_voice": 1, "held_out_sentence": 1, "both": 1}
    assert meta["phoneme_vocab"][0] == "_" and len(meta["sentences"]) == st.NUM_SENTENCES
    assert not os.listdir(out) or not any(n.endswith(".tmp") for n in os.listdir(out))
    stats = mo.MotionStats.load(os.path.join(out, st.STATS_FILE))
    np.testing.assert_allclose(stats.mean, meta["motion_stats"]["mean"], rtol=1e-6)
    clips = []
    for shard in st.list_shards(out):
        reader = ArrayRecordReader(shard)
        clips += [st.read_clip(r) for r in reader.read_all()]
        reader.close()
    assert len(clips) == 6
    train_motion = np.concatenate([c["motion"] for c in clips if c["split"] == "train"]).astype(np.float64)
    np.testing.assert_allclose(stats.mean[mo.POSE], train_motion[:, mo.POSE].mean(0), rtol=1e-4)
    for i, clip in enumerate(clips):
        held = clip["held_out_voice"] or clip["held_out_sentence"]
        assert (clip["split"] == "eval") == held == (i % 2 == 1)
        assert clip["held_out_voice"] == st.is_held_out_voice(clip["voice"])
        assert clip["held_out_sentence"] == any(st.is_held_out_sentence(int(s)) for s in clip["sentence_ids"])
        if clip["split"] == "train":
            assert clip["voice"] in meta["voices"]["train"]
            assert not set(clip["sentence_ids"].tolist()) & set(meta["held_out"]["sentence_ids"])
    assert set(meta["splits"]["train"]["voices"]).isdisjoint(meta["voices"]["eval"])
    # read_clip round trip: a record decodes to exactly the generated clip.
    split, kind = st.clip_split(1, 0.5)
    want = st.generate_clip(st.clip_seed(0, 1), split=split, eval_kind=kind)
    for key in want:
        np.testing.assert_array_equal(np.asarray(clips[1][key]), np.asarray(want[key]), err_msg=key)
    assert clips[1]["split"] == "eval"
    phones = st.phonemes_of(clips[1])
    assert phones[0][0] == "_" and all(n in st.PHONEME_VOCAB for n, _, _ in phones)
    # Idempotent on first use; a different request for the same directory is a one-line error.
    again = st.write_dataset(out, 6, 0, eval_fraction=0.5, clips_per_shard=4, progress=False)
    assert again["params"] == meta["params"]
    with pytest.raises(DataError, match="already holds a different SynthTalk dataset"):
        st.write_dataset(out, 7, 0, eval_fraction=0.5, clips_per_shard=4, progress=False)
    with pytest.raises(DataError, match="not a SynthTalk clip"):
        import io
        buf = io.BytesIO()
        np.savez(buf, motion=np.zeros((2, 70), np.float32))
        st.read_clip(buf.getvalue())
