"""SynthFaces frame sets for the renderer: faces drawn from SynthTalk motion, cached, batched by step.

A frame set holds, for each of N identities, K frames rendered by `jaxmoda.data.synthfaces` from K
motion frames of one SynthTalk clip (so expressions, blinks and head poses are those of real
utterances), plus the identity's canonical keypoints. A training pair is (source frame, driving
frame) of the same identity; the renderer learns source image + driving keypoints -> driving image.

Training identities come from `synthfaces.TRAIN_IDENTITIES` with motion from SynthTalk's training
clips; evaluation identities from `synthfaces.EVAL_IDENTITIES` (faces never seen in training) with
motion from its held-out clips. Sets are written once under the cache root
(`jaxmoda.io.cache.cache_root`) as folders `synthfaces-<split>-<hash>/` of .npy files, the frames
memory-mapped when read (a 256-px set is tens of GB). A set is a pure function of the settings, so
every host builds the same one; hosts sharing a cache folder each write a private copy and rename it
into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import socket
import uuid

import numpy as np

from jaxmoda.data.stepwise import process_rows, step_iterator
from jaxmoda.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SET_VERSION = 1


@dataclasses.dataclass
class FaceSet:
    frames: np.ndarray        # uint8 [N, K, S, S, 3]
    motion: np.ndarray        # float32 [N, K, 70] (raw)
    x_c: np.ndarray           # float32 [N, 21, 3] canonical keypoints
    identity_id: np.ndarray   # int64 [N]

    @property
    def size(self) -> int:
        return int(self.frames.shape[2])


def _clip_motions(clips_dir: str, split: str) -> list[np.ndarray]:
    from array_record.python.array_record_module import ArrayRecordReader

    from jaxmoda.data import synthtalk
    out = []
    for shard in synthtalk.list_shards(clips_dir):
        reader = ArrayRecordReader(shard)
        try:
            for record in reader.read_all():
                clip = synthtalk.read_clip(record)
                if clip["split"] == split:
                    out.append(np.asarray(clip["motion"], np.float32))
        finally:
            reader.close()
    if not out:
        raise DataError(f"{clips_dir} has no {split!r} clips to draw face motion from; write a SynthTalk set with "
                        "held-out clips (python -m jaxmoda.data.synthtalk --out DIR --num N)")
    return out


def build_face_set(motions: list[np.ndarray], identity_ids, frames_per_identity: int, size: int, seed: int,
                   *, progress: bool = True, frames_out: np.ndarray | None = None) -> FaceSet:
    """Renders `frames_per_identity` frames per identity; identity i takes clip i mod len(motions) and
    frames at evenly spaced, seed-jittered times over it. `frames_out` (e.g. a memory-mapped .npy of
    shape [N, K, S, S, 3] uint8) receives the frames instead of a new in-memory array."""
    from tqdm.auto import tqdm

    from jaxmoda.data import synthfaces
    from jaxmoda.data.synthtalk import make_identity
    ids = np.asarray(list(identity_ids), np.int64)
    k = int(frames_per_identity)
    rng = np.random.default_rng(seed)
    frames = np.empty((len(ids), k, size, size, 3), np.uint8) if frames_out is None else frames_out
    motion = np.empty((len(ids), k, 70), np.float32)
    x_c = np.empty((len(ids), 21, 3), np.float32)
    for n, ident in enumerate(tqdm(ids, desc="SynthFaces", unit="face", disable=not progress)):
        clip = motions[n % len(motions)]
        pos = (np.arange(k) + rng.uniform(0, 1, k)) * (len(clip) / k)
        motion[n] = clip[np.minimum(pos.astype(np.int64), len(clip) - 1)]
        frames[n] = synthfaces.render_clip(motion[n], int(ident), size)
        x_c[n] = np.asarray(make_identity(int(ident)).x_c, np.float32)
    return FaceSet(frames, motion, x_c, ids)


def _settings(config, split: str) -> dict:
    r = config.render
    n = r.train_identities if split == "train" else r.eval_identities
    return {"version": SET_VERSION, "split": split, "identities": int(n), "frames": int(r.frames_per_identity),
            "size": int(config.model.image_size), "seed": int(config.seed)}


def face_set_path(config, split: str, clips_dir: str) -> str:
    """Cache folder of a frame set: keyed by the settings, the SynthFaces drawing version and the clip
    set's metadata (so a regenerated clips folder or a new drawing code renders afresh)."""
    from jaxmoda.data.synthfaces import DRAWING_VERSION
    from jaxmoda.io.cache import cache_root
    with open(os.path.join(clips_dir, "metadata.json"), "rb") as f:
        clips = hashlib.sha1(f.read()).hexdigest()
    key = json.dumps(dict(_settings(config, split), clips=clips, drawing=DRAWING_VERSION), sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return os.path.join(cache_root(), f"synthfaces-{split}-{digest}")


_ARRAYS = ("frames", "motion", "x_c", "identity_id")


def _read_set(path: str) -> FaceSet:
    """Frames memory-mapped (a 256-px training set is tens of GB), the rest in memory."""
    arrays = {name: np.load(os.path.join(path, f"{name}.npy"), mmap_mode="r" if name == "frames" else None)
              for name in _ARRAYS}
    return FaceSet(**arrays)


def records_face_set(records: str, split: str, identities: int, frames: int, size: int, *,
                     frames_out: np.ndarray | None = None, progress: bool = True) -> FaceSet:
    """A frame set from `python -m jaxmoda.data.videos` records: each clip of `split` is one identity (its
    first `identities` clips), `frames` frames evenly spaced over it, crops resized to `size`."""
    from array_record.python.array_record_module import ArrayRecordReader
    from PIL import Image
    from tqdm.auto import tqdm

    from jaxmoda.data import synthtalk
    from jaxmoda.data.videos import read_frames
    with open(os.path.join(records, synthtalk.METADATA_FILE)) as f:
        meta = json.load(f)
    if meta.get("source") != "videos":
        raise DataError(f"{records} was not written by python -m jaxmoda.data.videos (no frame shards)")
    frames_u8 = frames_out if frames_out is not None else np.empty((identities, frames, size, size, 3), np.uint8)
    motion, x_c, n = np.zeros((identities, frames, 70), np.float32), np.zeros((identities, 21, 3), np.float32), 0
    with tqdm(total=identities, desc=f"records {split} set", unit="clip", disable=not progress) as bar:
        for shard in meta["shards"]:
            clips = ArrayRecordReader(os.path.join(records, shard["file"]))
            crops = ArrayRecordReader(os.path.join(records, shard["frames_file"]))
            for clip_rec, frame_rec in zip(clips.read_all(), crops.read_all()):
                clip = synthtalk.read_clip(clip_rec)
                if clip["split"] != split or n >= identities:
                    continue
                idx = np.linspace(0, len(clip["motion"]) - 1, frames).round().astype(int)
                crop = read_frames(frame_rec)
                frames_u8[n] = np.stack([np.asarray(Image.fromarray(crop[i]).resize((size, size), Image.BILINEAR))
                                         if crop.shape[1] != size else crop[i] for i in idx])
                motion[n], x_c[n] = clip["motion"][idx], clip["identity"]
                n += 1
                bar.update(1)
            clips.close()
            crops.close()
    if n < identities:
        raise ConfigError(f"{records} has {n} {split} clips; config.render.{split}_identities asks for {identities}")
    return FaceSet(frames=frames_u8, motion=motion, x_c=x_c, identity_id=np.arange(identities))


def load_face_set(config, split: str, *, progress: bool = True) -> FaceSet:
    """The training or evaluation frame set of a renderer config, rendered once and cached: SynthFaces,
    or `config.render.records` (clips of real videos)."""
    from jaxmoda.data.synthfaces import EVAL_IDENTITIES, TRAIN_IDENTITIES
    from jaxmoda.moda.data import data_dir
    if split not in ("train", "eval"):
        raise ValueError(f"split {split!r} is not 'train' or 'eval'")
    s = _settings(config, split)
    if s["identities"] < 1 or s["frames"] < 2:
        raise ConfigError(f"config.render needs at least 1 {split} identity and 2 frames per identity "
                          f"(got {s['identities']} and {s['frames']})")
    records = config.render.get("records", "")
    if records:
        from jaxmoda.io.cache import cache_root
        meta = os.path.join(records, "metadata.json")
        if not os.path.isfile(meta):
            raise DataError(f"config.render.records={records} has no metadata.json; write it with python -m "
                            "jaxmoda.data.videos")
        with open(meta, "rb") as f:
            key = json.dumps(dict(s, records=hashlib.sha1(f.read()).hexdigest()), sort_keys=True)
        path = os.path.join(cache_root(), f"records-faces-{split}-{hashlib.sha1(key.encode()).hexdigest()[:12]}")
        ids = list(range(s["identities"]))

        def build(frames_out):
            return records_face_set(records, split, s["identities"], s["frames"], s["size"], frames_out=frames_out,
                                    progress=progress)
    else:
        clips_dir = data_dir(config)
        path = face_set_path(config, split, clips_dir)
        pool = TRAIN_IDENTITIES if split == "train" else EVAL_IDENTITIES
        if s["identities"] > len(pool):
            raise ConfigError(f"config.render.{split}_identities={s['identities']} exceeds the {len(pool)} available")
        ids = [pool[i] for i in range(s["identities"])]

        def build(frames_out):
            log.info("rendering SynthFaces %s set: %d identities x %d frames at %d px -> %s", split, len(ids),
                     s["frames"], s["size"], path)
            return build_face_set(_clip_motions(clips_dir, split), ids, s["frames"], s["size"],
                                  s["seed"] + (0 if split == "train" else 1), progress=progress, frames_out=frames_out)
    if os.path.isfile(os.path.join(path, "done")):
        return _read_set(path)
    # Written into a uniquely named folder and renamed into place: hosts sharing a cache folder never
    # see a partial set, and a failed render leaves nothing behind.
    tmp = f"{path}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    try:
        shape = (len(ids), s["frames"], s["size"], s["size"], 3)
        frames = np.lib.format.open_memmap(os.path.join(tmp, "frames.npy"), mode="w+", dtype=np.uint8, shape=shape)
        fs = build(frames)
        frames.flush()
        for name in _ARRAYS[1:]:
            np.save(os.path.join(tmp, f"{name}.npy"), getattr(fs, name))
        del frames, fs
        open(os.path.join(tmp, "done"), "w").close()
        try:
            os.replace(tmp, path)
        except OSError:
            if not os.path.isfile(os.path.join(path, "done")):   # not another host's finished copy
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return _read_set(path)


def to_float(frames_u8: np.ndarray) -> np.ndarray:
    return frames_u8.astype(np.float32) / 127.5 - 1.0


def pair_batch(fs: FaceSet, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    """`batch` random (source, driving) pairs, each of one identity (two distinct frames)."""
    n, k = fs.frames.shape[:2]
    ids = rng.integers(0, n, batch)
    src = rng.integers(0, k, batch)
    drv = (src + rng.integers(1, k, batch)) % k
    return {"source": to_float(fs.frames[ids, src]), "driving": to_float(fs.frames[ids, drv]),
            "source_motion": fs.motion[ids, src], "driving_motion": fs.motion[ids, drv], "x_c": fs.x_c[ids]}


def make_pair_iterator(config, fs: FaceSet, *, process_index: int = 0, process_count: int = 1):
    """Checkpointable iterator of this process's rows of the global pair batch of each step."""
    rows = process_rows(config.batch_size, process_index, process_count)
    seed = int(config.seed)

    def make(step: int) -> dict:
        b = pair_batch(fs, np.random.default_rng((seed, 7, step)), config.batch_size)
        return {key: v[rows] for key, v in b.items()}

    return step_iterator(make)
