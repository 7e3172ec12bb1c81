"""SynthTalk: a synthetic talking-head benchmark in MoDA's 70-d motion space (moda.md 6.2).

    python -m jaxmoda.data.synthtalk --out DIR --num N [--seed 0] [--workers 1]

Each clip is eSpeak NG speech (`jaxmoda.data.speech`) of one or two sentences from a built-in
corpus, plus ground-truth motion at 25 fps in the `jaxmoda.moda.motion` layout, generated from the
phoneme track and a seed (`jaxmoda.data.synthtalk_motion`; this module holds the corpus, the clips
and their records):

- Mouth: a viseme table maps each eSpeak mnemonic to targets for jaw opening, lip spread and
  rounding (diphthongs get one target per vowel part; ``h`` and other transparent phonemes take the
  next phoneme's target). Coarticulation is a critically damped 2nd-order filter whose 63 %
  step-response time is 40-80 ms (per identity; the pole time is that / 2.146), made anticipatory by
  advancing it by its mean delay so the mouth does not lag the audio. /p b m/ then get a hard
  closure (at least 50 ms, 20 ms ramps) applied after the filter, so lips are exactly closed on
  every bilabial. Jaw opening is written through `motion.MOUTH_OPEN_PAIRS` (lower lip down, upper
  lip up), so it is what `motion.mouth_openness` measures; spread and rounding move the mouth
  corners, and the two remaining lip keypoints follow the jaw and the rounding.
- Eyes: blinks as a renewal process with gamma(3) intervals (mean 3-4 s per identity, shorter for
  fearful, longer for surprised/angry) in an operational time that runs 2.5x faster during
  pauses (higher blink hazard in pauses), 150-250 ms half-sine lid closures. They depend on the
  audio only through the pause track, so a model must learn a distribution, not a function.
- Brows: raises at primary-stressed vowels, more likely and larger on pitch accents (F0 in the vowel
  above the utterance median, from a numpy autocorrelation pitch tracker).
- Head pose: per-clip orientation offsets plus an AR(2) process per angle (double pole, time
  constants about 0.6-1 s), totals near the real std of 9/24/6 deg (pitch/yaw/roll); small nods at
  stressed-syllable onsets; tx, ty follow yaw, pitch weakly; scale is constant per clip, tz is 0.
- Emotion (8 classes, `EMOTIONS`): constant offsets on mouth corners, brows and lids (scaled by a
  per-clip intensity) and a class gain on head-motion amplitude, mouth amplitude and blink rate.
- Identity: canonical keypoints x_c [21, 3] (a template face plus per-identity deformation) and,
  derived from them, a mouth gain (from the mouth width), a rest offset of the lip keypoints and the
  coarticulation speed. Identities belong to voices (4 per voice), so a speaker is a voice + a face.

Keypoint roles are a synthetic convention on top of the real groups (`motion.KP_GROUPS`): upper and
lower lip from `MOUTH_OPEN_PAIRS`, the other lip keypoints in order as (left corner, right corner,
upper-lip follower, lower-lip follower); eyes (upper lids, lower lids, follower) in group order;
brows (left, right). y points down (opening moves the lower lip to larger y). Expression z stays 0,
as for most keypoints in real data.

Frames: frame i covers audio samples [640 i, 640 (i + 1)) at 16 kHz; T = len(audio) // 640; motion
is sampled at frame centres.

Splits: the corpus has `NUM_SENTENCES` sentences; sentence i is held out if i % 8 == 7. A voice
(``base`` or ``base+variant``) is held out if its base is in `EVAL_VOICES` or its variant in
`EVAL_VARIANTS`. **A clip is eval if its voice or any of its sentences is held out**, train
otherwise. The writer makes clip i an eval clip when i % round(1 / eval_fraction) is the last
residue, cycling through the three kinds (held-out voice, held-out sentence, both); train clips draw
only from non-held-out voices and sentences.

Dataset layout (`write_dataset` / the CLI)::

    synthtalk-SSSSS-of-NNNNN.array_record   shards of up to clips_per_shard clips, in clip order
    synthtalk-SSSSS-of-NNNNN.stats.json     per-shard statistics (lets an interrupted run resume)
    motion_stats.json                       MotionStats (mean/std over the train split), MotionStats.load
    metadata.json                           format tag, counts, voices/sentences per split, vocab, stats

Record format: numpy .npz bytes (load with allow_pickle=False; `read_clip` decodes one) with keys
audio (int16 [N], 16 kHz; read_clip returns float32 = int16 / 32768), motion (float32 [T, 70]),
emotion (int32), emotion_intensity (float32), identity (float32 [21, 3] canonical keypoints),
identity_id (int32), voice (str), sentence_ids (int32 [k]), text (str), split (str),
held_out_voice, held_out_sentence (bool), rate_wpm, pitch (int32), seed (int64), phone_start,
phone_end (float32 [P] seconds), phone_id (int32 [P], ids into `PHONEME_VOCAB`), phone_stress
(int8 [P]: 2 primary, 1 secondary, 0), blink_times (float32 [B] blink start seconds),
sample_rate, fps (int32).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxmoda.data import speech
from jaxmoda.data.synthtalk_motion import (  # noqa: F401  (part of this module's API)
    BILABIALS, CLOSED_LEVEL, EMOTIONS, FPS, KEYPOINT_ROLES, PHONEME_VOCAB, SAMPLE_RATE, SAMPLES_PER_FRAME, Identity,
    f0_track, make_identity, phoneme_id, synthesize_motion, viseme)
from jaxmoda.errors import ConfigError, DataError, cli_main
from jaxmoda.io.atomic import write_json
from jaxmoda.moda import motion as mo

log = logging.getLogger(__name__)

FORMAT = "jaxmoda.synthtalk/v1"
GENERATOR_VERSION = 1
METADATA_FILE = "metadata.json"
STATS_FILE = "motion_stats.json"
WRITER_OPTIONS = "group_size:1"


# Voices: eSpeak English accents x variants; a voice spec is "base" or "base+variant".
VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan", "en-029")
VARIANTS = ("", "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7")
EVAL_VOICES = ("en-029",)
EVAL_VARIANTS = ("f4", "m6")
IDS_PER_VOICE = 4
RATE_RANGE = (120, 220)
PITCH_RANGE = (35, 65)
NUM_SENTENCES = 400
EVAL_SENTENCE_PERIOD = 8
HELD_OUT_RULE = (
    "a clip is eval if its voice or any of its sentences is held out; sentence i is held out if "
    f"i % {EVAL_SENTENCE_PERIOD} == {EVAL_SENTENCE_PERIOD - 1}; a voice is held out if its base is in "
    f"{list(EVAL_VOICES)} or its variant in {list(EVAL_VARIANTS)}"
)
_EVAL_KINDS = ("held_out_voice", "held_out_sentence", "both")


# ----------------------------------------------------------------------------------------------
# Corpus.

_NAMES = ("Mary", "Peter", "Bob", "Emma", "Maya", "Ben", "Tom", "Lucy", "Sam", "Paul", "Anna", "Mike", "Grace",
          "Oliver", "Sophie", "David", "Hannah", "Jack", "Olivia", "Leo")
_PEOPLE = ("the doctor", "my brother", "our teacher", "the old man", "the pilot", "her mother", "the baker",
           "the farmer", "my neighbour", "the young artist", "his father", "the mayor")
_VERBS = (("buy", "bought"), ("paint", "painted"), ("find", "found"), ("open", "opened"), ("move", "moved"),
          ("borrow", "borrowed"), ("fix", "fixed"), ("pack", "packed"), ("drop", "dropped"), ("watch", "watched"),
          ("carry", "carried"), ("bring", "brought"), ("clean", "cleaned"), ("keep", "kept"), ("sell", "sold"),
          ("wrap", "wrapped"), ("push", "pushed"), ("lift", "lifted"), ("hide", "hid"), ("measure", "measured"))
_ADJECTIVES = ("big", "purple", "broken", "simple", "heavy", "bright", "quiet", "famous", "empty", "tiny", "shiny",
               "warm", "blue", "muddy", "beautiful", "old", "modern", "bumpy", "soft", "golden", "peculiar",
               "yellow")
_NOUNS = (("box", "boxes"), ("piano", "pianos"), ("bottle", "bottles"), ("map", "maps"), ("lamp", "lamps"),
          ("boat", "boats"), ("apple", "apples"), ("pebble", "pebbles"), ("umbrella", "umbrellas"),
          ("book", "books"), ("table", "tables"), ("mirror", "mirrors"), ("basket", "baskets"),
          ("camera", "cameras"), ("pillow", "pillows"), ("bicycle", "bicycles"), ("window", "windows"),
          ("puppy", "puppies"), ("wallet", "wallets"), ("blanket", "blankets"), ("melon", "melons"),
          ("hammer", "hammers"), ("teapot", "teapots"), ("kite", "kites"))
_PLACES = ("market", "museum", "beach", "bridge", "library", "garden", "harbour", "mountain", "station", "park",
           "kitchen", "office", "village", "hospital", "bakery", "campsite")
_TIMES = ("yesterday", "this morning", "on Monday", "last summer", "at midnight", "before breakfast",
          "after lunch", "every week", "in the spring", "a moment ago")
_DEADLINES = ("Friday", "lunch", "the weekend", "tomorrow morning", "the end of May", "sunset", "the big party")
_NUMBERS = ("two", "three", "four", "seven", "nine", "twelve", "fifteen", "twenty", "fifty", "a hundred")
_CLOCK = ("seven", "eight thirty", "nine", "ten fifteen", "noon", "half past five", "six o'clock")
_TEMPLATES = (
    "{Person} {verbed} the {adj} {noun} at the {place} {time}.",
    "Did {person} really {verb} the {noun} near the {place}?",
    "Please bring me {number} {adj} {nouns} before {deadline}.",
    "Why would {person} {verb} {a_adj} {noun} in the {place}?",
    "Wow, the {noun} in the {place} is so {adj}!",
    "{Person} thinks the {noun} is {adj}, but I am not so sure.",
    "We need {number} {nouns}, {a_noun2}, and maybe {a_adj} {noun3}.",
    "Maybe we should meet by the {place} {time}.",
    "The {adj} {noun} belongs to {person}, doesn't it?",
    "Remember to pack the {noun} and the {noun2} for the trip to the {place}.",
    "I have never seen such {a_adj} {noun} in my whole life!",
    "Tell {person} that the {place} opens at {clock}.",
    "{Person} and {name2} {verbed} {number} {nouns} {time}.",
    "Could you {verb} the {adj} {noun} for me, please?",
    "Nobody knows who {verbed} the {noun} from the {place}.",
    "By the way, the {noun} by the {place} looked {adj} {time}.",
)


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


@functools.lru_cache(maxsize=1)
def corpus() -> tuple[str, ...]:
    """The built-in English corpus: `NUM_SENTENCES` distinct sentences from templates and word lists.

    Generated with a fixed seed, so sentence ids are stable across runs and machines. Statements,
    questions, exclamations and lists (commas give pauses), rich in bilabials.
    """
    rng = np.random.default_rng(20250703)

    def pick(seq: Sequence[Any]) -> Any:
        return seq[int(rng.integers(len(seq)))]

    out: list[str] = []
    seen: set[str] = set()
    k = 0
    while len(out) < NUM_SENTENCES:
        template = _TEMPLATES[k % len(_TEMPLATES)]
        k += 1
        person = pick(_NAMES + _PEOPLE)
        name2 = pick([n for n in _NAMES if n != person])
        verb = pick(_VERBS)
        noun, noun2, noun3 = (_NOUNS[i] for i in rng.choice(len(_NOUNS), 3, replace=False))
        adj = pick(_ADJECTIVES)
        text = template.format(
            Person=person[0].upper() + person[1:], person=person, name2=name2, verb=verb[0], verbed=verb[1],
            adj=adj, a_adj=_article(adj), noun=noun[0], nouns=noun[1], noun2=noun2[0], a_noun2=_article(noun2[0]),
            noun3=noun3[0],
            place=pick(_PLACES), time=pick(_TIMES), deadline=pick(_DEADLINES), number=pick(_NUMBERS),
            clock=pick(_CLOCK),
        )
        if text not in seen:
            seen.add(text)
            out.append(text)
    return tuple(out)


def is_held_out_sentence(sentence_id: int) -> bool:
    """Whether corpus sentence `sentence_id` belongs to the eval split only."""
    return sentence_id % EVAL_SENTENCE_PERIOD == EVAL_SENTENCE_PERIOD - 1


def voice_specs() -> tuple[str, ...]:
    """All SynthTalk voices as ``base`` / ``base+variant``, in a fixed order (identity ids follow it)."""
    return tuple(f"{b}+{v}" if v else b for b in VOICES for v in VARIANTS)


def is_held_out_voice(voice: str) -> bool:
    """Whether a voice spec belongs to the eval split only (held-out base accent or variant)."""
    base, _, variant = voice.partition("+")
    return base in EVAL_VOICES or variant in EVAL_VARIANTS


def _sentence_pools() -> tuple[list[int], list[int]]:
    ids = range(NUM_SENTENCES)
    return [i for i in ids if not is_held_out_sentence(i)], [i for i in ids if is_held_out_sentence(i)]


def _voice_pools() -> tuple[list[str], list[str]]:
    specs = voice_specs()
    return [v for v in specs if not is_held_out_voice(v)], [v for v in specs if is_held_out_voice(v)]


# ----------------------------------------------------------------------------------------------
# Clips.

_CLIP_KEYS = ("audio", "motion", "emotion", "emotion_intensity", "identity", "identity_id", "voice",
              "sentence_ids", "text", "split", "held_out_voice", "held_out_sentence", "rate_wpm", "pitch", "seed",
              "phone_start", "phone_end", "phone_id", "phone_stress", "blink_times", "sample_rate", "fps")


def _emotion_index(emotion: int | str) -> int:
    if isinstance(emotion, str):
        if emotion not in EMOTIONS:
            raise ConfigError(f"unknown emotion {emotion!r}; use one of {', '.join(EMOTIONS)} or an index 0-7")
        return EMOTIONS.index(emotion)
    if not 0 <= int(emotion) < len(EMOTIONS):
        raise ConfigError(f"emotion index {emotion} is out of range; use 0-{len(EMOTIONS) - 1} ({', '.join(EMOTIONS)})")
    return int(emotion)


def generate_clip(seed: int, *, split: str = "train", eval_kind: int | None = None, voice: str | None = None,
                  sentence_ids: Sequence[int] | None = None, num_sentences: int | None = None,
                  emotion: int | str | None = None, identity_id: int | None = None, rate_wpm: int | None = None,
                  pitch: int | None = None) -> dict[str, Any]:
    """Generates one SynthTalk clip, deterministically from `seed` and the overrides.

    Args:
      seed: the clip's seed; the same seed (and overrides) gives a bit-identical clip.
      split: which pools to draw voice and sentences from: "train" (no held-out voice or sentence)
        or "eval" (a held-out voice, held-out sentences, or both, see `eval_kind`). The recorded
        split always follows the held-out rule, so overrides can make an "eval" request a train clip.
      eval_kind: 0 held-out voice + train sentences, 1 train voice + held-out sentences, 2 both;
        None draws it.
      voice: a voice spec from `voice_specs()` (or any eSpeak voice) instead of drawing one.
      sentence_ids: corpus sentence ids to speak (joined with spaces) instead of drawing them.
      num_sentences: how many sentences to draw (default: 1 or 2).
      emotion: an index or name from `EMOTIONS` instead of drawing one.
      identity_id: a face instead of drawing one of the voice's 4.
      rate_wpm: speaking rate instead of drawing one in 120-220.
      pitch: eSpeak base pitch instead of drawing one in 35-65.

    Returns:
      The clip dict with the keys of the record format (module docstring); audio is float32 on
      the int16 grid, so encode/read round trips are exact.
    """
    if split not in ("train", "eval"):
        raise ConfigError(f"split={split!r} is unknown; use 'train' or 'eval'")
    if eval_kind is not None and eval_kind not in (0, 1, 2):
        raise ConfigError(
            f"eval_kind={eval_kind} is unknown; use 0 (held-out voice), 1 (held-out sentence) or 2 (both)"
        )
    root = np.random.SeedSequence([0x5A17, int(seed) & (2 ** 63 - 1)])
    rng_meta, rng_audio, rng_motion = (np.random.default_rng(s) for s in root.spawn(3))
    train_sent, eval_sent = _sentence_pools()
    train_voice, eval_voice = _voice_pools()
    kind = int(rng_meta.integers(3)) if eval_kind is None else eval_kind
    held_voice = split == "eval" and kind in (0, 2)
    held_sent = split == "eval" and kind in (1, 2)
    voice_pool = eval_voice if held_voice else train_voice
    sent_pool = eval_sent if held_sent else train_sent
    drawn_voice = voice_pool[int(rng_meta.integers(len(voice_pool)))]
    n_sent = num_sentences if num_sentences is not None else 1 + int(rng_meta.random() < 0.4)
    if n_sent < 1:
        raise ConfigError(f"num_sentences={n_sent} must be at least 1")
    drawn_sent = [sent_pool[int(i)] for i in rng_meta.choice(len(sent_pool), n_sent, replace=n_sent > len(sent_pool))]
    drawn_emotion = int(rng_meta.integers(len(EMOTIONS)))
    intensity = float(rng_meta.uniform(0.5, 1.0))
    drawn_rate = int(rng_meta.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
    drawn_pitch = int(rng_meta.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
    drawn_id_slot = int(rng_meta.integers(IDS_PER_VOICE))
    lead, tail = rng_meta.uniform(0.2, 0.6), rng_meta.uniform(0.3, 0.7)

    voice = drawn_voice if voice is None else str(voice)
    sentence_ids = drawn_sent if sentence_ids is None else [int(i) for i in sentence_ids]
    texts = corpus()
    for i in sentence_ids:
        if not 0 <= i < len(texts):
            raise ConfigError(
                f"sentence id {i} is out of range; the corpus has {len(texts)} sentences (0-{len(texts) - 1})"
            )
    emotion = drawn_emotion if emotion is None else _emotion_index(emotion)
    specs = voice_specs()
    if identity_id is None:
        identity_id = (specs.index(voice) if voice in specs else len(specs)) * IDS_PER_VOICE + drawn_id_slot
    identity = make_identity(int(identity_id))
    rate = drawn_rate if rate_wpm is None else int(rate_wpm)
    pitch = drawn_pitch if pitch is None else int(pitch)

    text = " ".join(texts[i] for i in sentence_ids)
    base, _, variant = voice.partition("+")
    utt = speech.synthesize(text, voice=base, rate_wpm=rate, pitch=pitch, variant=variant)
    n_lead, n_tail = int(lead * SAMPLE_RATE), int(tail * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(n_lead), utt.audio.astype(np.float64), np.zeros(n_tail)])
    audio = audio + rng_audio.normal(0.0, 3e-4, audio.shape)  # -70 dBFS dither: no digital silence
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
    audio = (pcm.astype(np.float32) / np.float32(32768.0))
    duration = len(audio) / SAMPLE_RATE
    shift = n_lead / SAMPLE_RATE
    track = [(speech.PAUSE, 0.0, shift)] if shift > 0 else []
    stress = [0] * len(track)
    for (name, t0, t1), s in zip(utt.phonemes, utt.stress):
        if name == speech.PAUSE and track and track[-1][0] == speech.PAUSE:
            track[-1] = (speech.PAUSE, track[-1][1], t1 + shift)
        else:
            track.append((name, t0 + shift, t1 + shift))
            stress.append(s)
    if track[-1][0] == speech.PAUSE:
        track[-1] = (speech.PAUSE, track[-1][1], duration)
    else:
        track.append((speech.PAUSE, track[-1][2], duration))
        stress.append(0)
    num_frames = len(audio) // SAMPLES_PER_FRAME
    motion, blinks = synthesize_motion(track, stress, audio, num_frames, emotion=emotion, intensity=intensity,
                                       identity=identity, rng=rng_motion)
    held_out_voice = is_held_out_voice(voice)
    held_out_sentence = any(is_held_out_sentence(i) for i in sentence_ids)
    return {
        "audio": audio,
        "motion": motion,
        "emotion": emotion,
        "emotion_intensity": float(np.float32(intensity)),
        "identity": identity.x_c,
        "identity_id": int(identity_id),
        "voice": voice,
        "sentence_ids": np.asarray(sentence_ids, np.int32),
        "text": text,
        "split": "eval" if (held_out_voice or held_out_sentence) else "train",
        "held_out_voice": held_out_voice,
        "held_out_sentence": held_out_sentence,
        "rate_wpm": rate,
        "pitch": pitch,
        "seed": int(seed),
        "phone_start": np.asarray([t[1] for t in track], np.float32),
        "phone_end": np.asarray([t[2] for t in track], np.float32),
        "phone_id": np.asarray([phoneme_id(t[0]) for t in track], np.int32),
        "phone_stress": np.asarray(stress, np.int8),
        "blink_times": blinks,
        "sample_rate": SAMPLE_RATE,
        "fps": FPS,
    }


def encode_clip(clip: dict[str, Any]) -> bytes:
    """One clip as .npz bytes (the record format of the module docstring)."""
    audio = np.asarray(clip["audio"], np.float32)
    arrays = {
        "audio": np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16),
        "motion": np.asarray(clip["motion"], np.float32),
        "emotion": np.int32(clip["emotion"]),
        "emotion_intensity": np.float32(clip["emotion_intensity"]),
        "identity": np.asarray(clip["identity"], np.float32),
        "identity_id": np.int32(clip["identity_id"]),
        "voice": np.str_(clip["voice"]),
        "sentence_ids": np.asarray(clip["sentence_ids"], np.int32),
        "text": np.str_(clip["text"]),
        "split": np.str_(clip["split"]),
        "held_out_voice": np.bool_(clip["held_out_voice"]),
        "held_out_sentence": np.bool_(clip["held_out_sentence"]),
        "rate_wpm": np.int32(clip["rate_wpm"]),
        "pitch": np.int32(clip["pitch"]),
        "seed": np.int64(clip["seed"]),
        "phone_start": np.asarray(clip["phone_start"], np.float32),
        "phone_end": np.asarray(clip["phone_end"], np.float32),
        "phone_id": np.asarray(clip["phone_id"], np.int32),
        "phone_stress": np.asarray(clip["phone_stress"], np.int8),
        "blink_times": np.asarray(clip["blink_times"], np.float32),
        "sample_rate": np.int32(clip["sample_rate"]),
        "fps": np.int32(clip["fps"]),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


_SCALARS = {"emotion": int, "emotion_intensity": float, "identity_id": int, "voice": str, "text": str, "split": str,
            "held_out_voice": bool, "held_out_sentence": bool, "rate_wpm": int, "pitch": int, "seed": int,
            "sample_rate": int, "fps": int}


def read_clip(record: bytes) -> dict[str, Any]:
    """Decodes one record into the clip dict `generate_clip` returns (audio as float32)."""
    try:
        with np.load(io.BytesIO(record), allow_pickle=False) as f:
            raw = {k: f[k] for k in _CLIP_KEYS}
    except KeyError as e:
        raise DataError(f"record is not a SynthTalk clip (no key {e}); regenerate it with "
                        "python -m jaxmoda.data.synthtalk") from None
    except (OSError, ValueError) as e:
        raise DataError(f"record is not a readable .npz SynthTalk clip ({e}); regenerate the dataset") from None
    clip: dict[str, Any] = {}
    for k, v in raw.items():
        clip[k] = _SCALARS[k](v.item()) if k in _SCALARS else v
    clip["audio"] = raw["audio"].astype(np.float32) / np.float32(32768.0)
    return clip


def phonemes_of(clip: dict[str, Any]) -> list[tuple[str, float, float]]:
    """The clip's phoneme track as (mnemonic, start_s, end_s), names from `PHONEME_VOCAB`."""
    return [(PHONEME_VOCAB[int(i)], float(s), float(e))
            for i, s, e in zip(clip["phone_id"], clip["phone_start"], clip["phone_end"])]


# ----------------------------------------------------------------------------------------------
# Dataset writer.


def clip_seed(seed: int, index: int) -> int:
    """The seed of clip `index` of a dataset generated with `seed`."""
    state = np.random.SeedSequence([0xDA7A, int(seed), int(index)]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def clip_split(index: int, eval_fraction: float) -> tuple[str, int | None]:
    """(split, eval kind) of clip `index`: every round(1 / eval_fraction)-th clip is eval."""
    if eval_fraction <= 0:
        return "train", None
    period = max(1, round(1.0 / eval_fraction))
    if index % period != period - 1:
        return "train", None
    return "eval", (index // period) % 3


def shard_name(index: int, count: int) -> str:
    """File name of shard `index` of `count`."""
    return f"synthtalk-{index:05d}-of-{count:05d}.array_record"


def _shard_task(args: tuple[str, int, int, dict[str, Any], int, int]) -> dict[str, Any]:
    """Writes one shard (in a worker or in-process); returns its statistics."""
    out, shard, count, params, start, stop = args
    return _write_shard(out, shard, count, params, start, stop, progress=None)


def _write_shard(out: str, shard: int, count: int, params: dict[str, Any], start: int, stop: int,
                 progress: Any) -> dict[str, Any]:
    from array_record.python.array_record_module import ArrayRecordWriter

    path = os.path.join(out, shard_name(shard, count))
    stats_path = path.replace(".array_record", ".stats.json")
    if os.path.exists(path) and os.path.exists(stats_path):  # resume an interrupted run
        with open(stats_path) as f:
            done = json.load(f)
        if done.get("params") == params:
            if progress is not None:
                progress.update(stop - start)
            return done
    splits = {s: {"clips": 0, "frames": 0, "audio_seconds": 0.0, "voices": [], "sentences": [],
                  "emotions": [0] * len(EMOTIONS), "kinds": [0, 0, 0], "sum": [0.0] * mo.DIM,
                  "sum_sq": [0.0] * mo.DIM} for s in ("train", "eval")}
    sums = {s: (np.zeros(mo.DIM), np.zeros(mo.DIM)) for s in splits}
    voices: dict[str, set[str]] = {s: set() for s in splits}
    sentences: dict[str, set[int]] = {s: set() for s in splits}
    writer = ArrayRecordWriter(path + ".tmp", WRITER_OPTIONS)
    try:
        for i in range(start, stop):
            split, kind = clip_split(i, params["eval_fraction"])
            clip = generate_clip(clip_seed(params["seed"], i), split=split, eval_kind=kind)
            writer.write(encode_clip(clip))
            st = splits[clip["split"]]
            st["clips"] += 1
            st["frames"] += len(clip["motion"])
            st["audio_seconds"] += len(clip["audio"]) / SAMPLE_RATE
            st["emotions"][clip["emotion"]] += 1
            if clip["split"] == "eval":
                st["kinds"][int(clip["held_out_voice"]) + 2 * int(clip["held_out_sentence"]) - 1] += 1
            m = clip["motion"].astype(np.float64)
            sums[clip["split"]][0][:] += m.sum(axis=0)
            sums[clip["split"]][1][:] += np.square(m).sum(axis=0)
            voices[clip["split"]].add(clip["voice"])
            sentences[clip["split"]].update(int(s) for s in clip["sentence_ids"])
            if progress is not None:
                progress.update(1)
    finally:
        writer.close()
    os.replace(path + ".tmp", path)
    for s, st in splits.items():
        st["sum"], st["sum_sq"] = sums[s][0].tolist(), sums[s][1].tolist()
        st["voices"], st["sentences"] = sorted(voices[s]), sorted(sentences[s])
    result = {"params": params, "file": os.path.basename(path), "clips": stop - start, "splits": splits}
    write_json(stats_path, result, indent=None)
    return result


def _merge_stats(shards: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for s in ("train", "eval"):
        parts = [sh["splits"][s] for sh in shards]
        merged[s] = {
            "clips": sum(p["clips"] for p in parts),
            "frames": sum(p["frames"] for p in parts),
            "audio_seconds": sum(p["audio_seconds"] for p in parts),
            "voices": sorted(set().union(*(p["voices"] for p in parts))),
            "sentences": sorted(set().union(*(p["sentences"] for p in parts))),
            "emotions": dict(zip(EMOTIONS, np.sum([p["emotions"] for p in parts], axis=0).tolist())),
            "sum": np.sum([p["sum"] for p in parts], axis=0),
            "sum_sq": np.sum([p["sum_sq"] for p in parts], axis=0),
        }
        if s == "eval":
            merged[s]["kinds"] = dict(zip(_EVAL_KINDS, np.sum([p["kinds"] for p in parts], axis=0).tolist()))
    return merged


def _motion_stats(st: dict[str, Any], min_std: float = 1e-4) -> mo.MotionStats:
    n = max(st["frames"], 1)
    mean = st["sum"] / n
    std = np.sqrt(np.maximum(st["sum_sq"] / n - mean ** 2, 0.0))
    std = np.where(std < min_std, 1.0, std)  # the tiny-std guard of MotionStats (constant dims: tz, z)
    return mo.MotionStats(mean=mean.astype(np.float32), std=std.astype(np.float32))


def _library_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("espeakng-loader")
    except metadata.PackageNotFoundError:
        return "unknown"


def write_dataset(out: str, num: int, seed: int = 0, *, workers: int = 1, eval_fraction: float = 0.1,
                  clips_per_shard: int = 256, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Generates `num` SynthTalk clips into ArrayRecord shards under `out`; returns the metadata.

    Idempotent: if `out` already holds a complete dataset with the same parameters, its metadata is
    returned without regenerating (training calls this on first use). An interrupted run resumes,
    keeping the shards it finished. Every file is written as ``name.tmp`` and renamed.

    Args:
      out: output directory (created).
      num: number of clips (>= 1). Clip i has seed `clip_seed(seed, i)` and split `clip_split(i)`,
        so the content does not depend on `workers`.
      seed: dataset seed.
      workers: processes generating shards in parallel (spawned; each runs its own eSpeak helper).
      eval_fraction: fraction of eval clips (every round(1/eval_fraction)-th clip); 0 for none.
      clips_per_shard: clips per ArrayRecord shard.
      overwrite: replace a different dataset already in `out` instead of raising.
      progress: show a tqdm progress bar.

    Returns:
      The metadata dict (also written to ``out/metadata.json``).
    """
    from tqdm.auto import tqdm

    if int(num) < 1:
        raise ConfigError(f"num={num} must be at least 1 clip")
    if int(workers) < 1 or int(clips_per_shard) < 1:
        raise ConfigError(f"workers={workers} and clips_per_shard={clips_per_shard} must be at least 1")
    if not 0.0 <= float(eval_fraction) < 1.0:
        raise ConfigError(f"eval_fraction={eval_fraction} must be in [0, 1)")
    params = {"format": FORMAT, "generator_version": GENERATOR_VERSION, "num": int(num), "seed": int(seed),
              "eval_fraction": float(eval_fraction), "clips_per_shard": int(clips_per_shard),
              "espeakng_loader": _library_version()}
    meta_path = os.path.join(out, METADATA_FILE)
    if os.path.exists(meta_path):
        try:
            with open(meta_path) as f:
                existing = json.load(f)
        except (OSError, json.JSONDecodeError):
            existing = {}
        if existing.get("params") == params:
            log.info("SynthTalk dataset already complete in %s", out)
            return existing
        if not overwrite:
            old = existing.get("params", {})
            raise DataError(
                f"{out} already holds a different SynthTalk dataset (num={old.get('num')}, seed={old.get('seed')}); "
                "pass overwrite=True (--overwrite) or choose another output directory"
            )
        os.remove(meta_path)
        for name in os.listdir(out):  # the old dataset's shards (other shard counts would linger)
            if name.startswith("synthtalk-") and name.endswith((".array_record", ".stats.json")):
                os.remove(os.path.join(out, name))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the SynthTalk output directory {out} ({e.strerror}); choose a writable path"
        ) from None
    speech.list_voices()  # fail fast (one line) if the speech library is missing
    count = -(-int(num) // int(clips_per_shard))
    tasks = [(out, k, count, params, k * clips_per_shard, min((k + 1) * clips_per_shard, int(num)))
             for k in range(count)]
    start_time = time.time()
    bar = tqdm(total=int(num), desc="synthtalk", unit="clip", disable=not progress)
    try:
        if workers == 1 or count == 1:
            shards = [_write_shard(*t, progress=bar) for t in tasks]
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # no fork of a (possibly multi-threaded JAX) parent
            shards = []
            with ctx.Pool(min(int(workers), count)) as pool:
                for result in pool.imap_unordered(_shard_task, tasks):
                    shards.append(result)
                    bar.update(result["clips"])
            shards.sort(key=lambda r: r["file"])
    finally:
        bar.close()
    merged = _merge_stats(shards)
    stats_split = "train" if merged["train"]["frames"] else "eval"
    stats = _motion_stats(merged[stats_split])
    stats.save(os.path.join(out, STATS_FILE + ".tmp"))
    os.replace(os.path.join(out, STATS_FILE + ".tmp"), os.path.join(out, STATS_FILE))
    eval_sent = _sentence_pools()[1]
    train_voice, eval_voice = _voice_pools()
    splits = {}
    for s, st in merged.items():
        splits[s] = {k: v for k, v in st.items() if k not in ("sum", "sum_sq")}
    meta = {
        "format": FORMAT,
        "params": params,
        "num_clips": int(num),
        "counts": {s: splits[s]["clips"] for s in splits},
        "splits": splits,
        "shards": [{"file": sh["file"], "clips": sh["clips"]} for sh in shards],
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "samples_per_frame": SAMPLES_PER_FRAME,
        "audio_dtype": "int16",
        "motion_dim": mo.DIM,
        "motion_stats": {"split": stats_split, "file": STATS_FILE, "mean": [float(v) for v in stats.mean],
                         "std": [float(v) for v in stats.std]},
        "held_out": {"rule": HELD_OUT_RULE, "voices": list(EVAL_VOICES), "variants": list(EVAL_VARIANTS),
                     "sentence_ids": eval_sent, "eval_kinds": list(_EVAL_KINDS)},
        "voices": {"train": train_voice, "eval": eval_voice},
        "sentences": list(corpus()),
        "emotions": list(EMOTIONS),
        "phoneme_vocab": list(PHONEME_VOCAB),
        "keypoint_roles": {k: list(v) for k, v in KEYPOINT_ROLES.items()},
        "generation_seconds": time.time() - start_time,
    }
    write_json(meta_path, meta, indent=1)
    return meta


def list_shards(out: str) -> list[str]:
    """Paths of a written dataset's shards, from its metadata."""
    meta_path = os.path.join(out, METADATA_FILE)
    if not os.path.exists(meta_path):
        raise DataError(f"{out} has no {METADATA_FILE}; generate it with python -m jaxmoda.data.synthtalk --out {out}")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise DataError(f"{meta_path} is not a {FORMAT} dataset; regenerate it with python -m jaxmoda.data.synthtalk")
    return [os.path.join(out, s["file"]) for s in meta["shards"]]


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m jaxmoda.data.synthtalk --out DIR --num N [--seed 0 --workers 1]."""
    from jaxmoda.logs import setup_logging

    p = argparse.ArgumentParser(prog="python -m jaxmoda.data.synthtalk", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="parallel generator processes")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="fraction of eval clips (held-out voice/sentence)")
    p.add_argument("--clips-per-shard", type=int, default=256)
    p.add_argument("--overwrite", action="store_true", help="replace a different dataset in --out")
    args = p.parse_args(argv)
    setup_logging()
    t0 = time.time()
    meta = write_dataset(args.out, args.num, args.seed, workers=args.workers, eval_fraction=args.eval_fraction,
                         clips_per_shard=args.clips_per_shard, overwrite=args.overwrite)
    hours = sum(s["audio_seconds"] for s in meta["splits"].values()) / 3600.0
    print(f"wrote {meta['num_clips']} SynthTalk clips ({meta['counts']['train']} train, {meta['counts']['eval']} eval, "
          f"{hours:.2f} h of audio) in {len(meta['shards'])} shards to {args.out} in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    cli_main(main)
