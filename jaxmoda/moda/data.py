"""MoDA training data: talking-head clips -> per-frame audio features -> bucket-free window batches.

Clips come from a SynthTalk folder (`python -m jaxmoda.data.synthtalk`; generated and cached on first
use when `config.data_dir` is empty). Audio features of every clip are computed once per audio setting
and cached beside the clips (`features-<hash>.npz`: features float16 [sum T, L, C], raw motion
[sum T, 70], per-clip offsets, emotion, identity and split), then held in memory.

A training batch is drawn from (seed, step) alone, so every process takes its rows of the same global
batch: clips uniformly from the train split, a start uniform in [0, max(T - W, 0)], the W-frame window
(zero-padded with `mask` False past a short clip's end), and its prefix frame (the frame before the
window; the first frame itself for a window at 0). Motion is normalised with the dataset's statistics
(jaxmoda.moda.motion.MotionStats, tiny-std guard), which the run stores in its config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os

import numpy as np

from jaxmoda.data.stepwise import process_rows, step_iterator
from jaxmoda.errors import ConfigError, DataError
from jaxmoda.io.cache import cache_root

log = logging.getLogger(__name__)


def data_dir(config) -> str:
    """The clips folder: config.data_dir, or a SynthTalk set generated (once) under the cache root."""
    if config.data_dir:
        if not os.path.isfile(os.path.join(config.data_dir, "metadata.json")):
            raise DataError(f"config.data_dir={config.data_dir} holds no clips (no metadata.json); write a SynthTalk "
                            "set with python -m jaxmoda.data.synthtalk --out DIR --num N, or leave it empty")
        return config.data_dir
    d = config.moda
    if d.synthtalk_clips <= 0:
        raise ConfigError("config.data_dir is empty and config.moda.synthtalk_clips is 0; name a clips folder or "
                          "set a number of SynthTalk clips to generate")
    from jaxmoda.data import synthtalk
    path = os.path.join(cache_root(), f"synthtalk-n{d.synthtalk_clips}-s{d.synthtalk_seed}-v{synthtalk.GENERATOR_VERSION}")
    synthtalk.write_dataset(path, d.synthtalk_clips, d.synthtalk_seed, workers=min(2, os.cpu_count() or 1))
    return path


@dataclasses.dataclass
class ClipSet:
    """All clips of a folder, features computed, concatenated along time."""

    features: np.ndarray      # float16 [sum T, L, C]
    motion: np.ndarray        # float32 [sum T, 70] (raw, un-normalised)
    offsets: np.ndarray       # int64 [n + 1]
    emotion: np.ndarray       # int32 [n]
    identity: np.ndarray      # float32 [n, 63]
    split: np.ndarray         # str [n] ('train' | 'eval')
    extras: list              # per clip: dict with audio length, phoneme track, voice, text

    def __len__(self) -> int:
        return len(self.emotion)

    def length(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def clip(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.features[a:b], self.motion[a:b]

    def indices(self, split: str) -> np.ndarray:
        return np.nonzero(self.split == split)[0]


def _settings_hash(audio_cfg) -> str:
    items = {k: audio_cfg[k] for k in sorted(audio_cfg.keys())}
    weights = audio_cfg.get("hubert_weights", "") if audio_cfg.get("frontend") == "hubert" else ""
    if weights and os.path.isfile(weights):  # new weights at the same path give new features
        items["hubert_weights_stat"] = [os.path.getsize(weights), os.path.getmtime(weights)]
    items = json.dumps(items, sort_keys=True, default=str)
    return hashlib.sha1(items.encode()).hexdigest()[:10]


def load_clips(path: str, audio_cfg, *, progress: bool = True) -> ClipSet:
    """Reads every clip of `path` with its audio features (computed once and cached)."""
    from jaxmoda.data import synthtalk
    from jaxmoda.moda import audio as audio_lib
    from jaxmoda.moda.frontend import make_frontend
    audio_lib.AudioSettings.from_config(audio_cfg)  # checks the keys
    cache = os.path.join(path, f"features-{_settings_hash(audio_cfg)}.npz")
    if os.path.isfile(cache):
        with np.load(cache, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        extras = json.loads(str(arrays.pop("extras")))
        return ClipSet(extras=extras, **arrays)
    from array_record.python.array_record_module import ArrayRecordReader
    from tqdm.auto import tqdm
    features_of = make_frontend(audio_cfg)
    feats, motion, offsets, emotion, identity, split, extras = [], [], [0], [], [], [], []
    shards = synthtalk.list_shards(path)
    total = sum(json.load(open(os.path.join(path, "metadata.json"))).get("counts", {}).values()) or None
    bar = tqdm(total=total if isinstance(total, int) else None, desc="audio features", unit="clip",
               disable=not progress)
    for shard in shards:
        reader = ArrayRecordReader(shard)
        for record in reader.read_all():
            clip = synthtalk.read_clip(record)
            f = features_of(clip["audio"])
            m = np.asarray(clip["motion"], np.float32)
            t = min(len(f), len(m))
            feats.append(f[:t].astype(np.float16))
            motion.append(m[:t])
            offsets.append(offsets[-1] + t)
            emotion.append(int(clip["emotion"]))
            identity.append(np.asarray(clip["identity"], np.float32).reshape(63))
            split.append(str(clip["split"]))
            extras.append({"phone_start": np.asarray(clip["phone_start"]).tolist(),
                           "phone_end": np.asarray(clip["phone_end"]).tolist(),
                           "phone_id": np.asarray(clip["phone_id"]).tolist(),
                           "voice": str(clip["voice"]), "text": str(clip["text"]),
                           "num_samples": int(len(clip["audio"]))})
            bar.update(1)
        reader.close()
    bar.close()
    if not emotion:
        raise DataError(f"{path} holds no clips; regenerate it with python -m jaxmoda.data.synthtalk")
    out = ClipSet(features=np.concatenate(feats), motion=np.concatenate(motion), offsets=np.asarray(offsets, np.int64),
                  emotion=np.asarray(emotion, np.int32), identity=np.stack(identity), split=np.asarray(split),
                  extras=extras)
    tmp = f"{cache}.{os.getpid()}.tmp.npz"
    np.savez(tmp, features=out.features, motion=out.motion, offsets=out.offsets, emotion=out.emotion,
             identity=out.identity, split=out.split, extras=np.asarray(json.dumps(extras)))
    os.replace(tmp, cache)
    return out


def motion_stats(path: str):
    from jaxmoda.moda.motion import MotionStats
    stats_file = os.path.join(path, "motion_stats.json")
    if os.path.isfile(stats_file):
        return MotionStats.load(stats_file)
    raise DataError(f"{stats_file} is missing; regenerate the clips (python -m jaxmoda.data.synthtalk) or write "
                    "MotionStats.from_data(motion).save(path)")


@dataclasses.dataclass(frozen=True)
class WindowMaker:
    """step -> this process's rows of global batch `step`."""

    clips: ClipSet
    train: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    window: int
    global_batch: int
    seed: int
    process_index: int
    process_count: int

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(step)])
        ids = rng.choice(self.train, self.global_batch)
        starts = rng.random(self.global_batch)
        rows = process_rows(self.global_batch, self.process_index, self.process_count)
        return make_windows(self.clips, ids[rows], starts[rows], self.window, self.mean, self.std)


def make_windows(clips: ClipSet, ids, starts_unit, window: int, mean: np.ndarray, std: np.ndarray) -> dict:
    """Windows of clips `ids` starting at fraction `starts_unit` of their free range (see module doc)."""
    w = window
    lc = clips.features.shape[1:]
    b = len(ids)
    motion = np.zeros((b, w + 1, 70), np.float32)
    audio = np.zeros((b, w) + lc, np.float32)
    mask = np.zeros((b, w), bool)
    for r, (i, u) in enumerate(zip(ids, starts_unit)):
        f, m = clips.clip(int(i))
        t = len(m)
        s = int(u * (max(t - w, 0) + 1))
        n = min(w, t - s)
        motion[r, 0] = m[max(s - 1, 0)]
        motion[r, 1:1 + n] = m[s:s + n]
        motion[r, 1 + n:] = m[s + n - 1]  # padding repeats the last frame (masked out of the loss)
        audio[r, :n] = f[s:s + n]
        mask[r, :n] = True
    motion = (motion - mean) / std
    return {"motion": motion.astype(np.float32), "mask": mask, "audio": audio,
            "emotion": clips.emotion[np.asarray(ids, int)].astype(np.int32),
            "identity": clips.identity[np.asarray(ids, int)].astype(np.float32)}


def prepare(config):
    """(clips, stats) for a MoDA config; fills config.moda.motion_mean/std and default_identity once."""
    path = data_dir(config)
    clips = load_clips(path, config.audio)
    stats = motion_stats(path)
    d = config.moda
    if not len(d.motion_mean):
        d.motion_mean = [float(x) for x in stats.mean]
        d.motion_std = [float(x) for x in stats.std]
        d.default_identity = [float(x) for x in clips.identity[clips.indices("train")].mean(0)]
    return clips, stats


def make_window_iterator(config, *, process_index: int = 0, process_count: int = 1):
    if config.batch_size % process_count:
        raise ConfigError(f"batch_size={config.batch_size} must be a multiple of the {process_count} processes")
    clips, _ = prepare(config)
    train = clips.indices("train")
    if not len(train):
        raise DataError("the clips folder has no train-split clips; generate more clips")
    mean = np.asarray(config.moda.motion_mean, np.float32)
    std = np.asarray(config.moda.motion_std, np.float32)
    log.info("MoDA data: %d train clips (%.0f s), %d eval clips", len(train),
             sum(clips.length(i) for i in train) / 25.0, len(clips.indices("eval")))
    maker = WindowMaker(clips, train, mean, std, int(config.model.window), config.batch_size, config.seed,
                        process_index, process_count)
    return step_iterator(maker)
