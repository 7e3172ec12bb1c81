"""python -m jaxmoda.talk --motion-workdir M --renderer-workdir R --image portrait.png --audio speech.wav
    --out talk.mp4 [--emotion happy --seed 0 --cfg-audio 1.2 --cfg-emotion 1.0 --steps 10 --batch 16
    --strip frames.png --no-paste-back]

One portrait and one speech file to a talking-head video:
  1. crop and align the face (jaxmoda.moda.render.face), at the renderer's resolution;
  2. the renderer's motion extractor reads the portrait's canonical keypoints and motion;
  3. the MoDA motion generator turns the speech into 25-fps motion for that identity, starting from the
     portrait's own motion (jaxmoda.moda.generate);
  4. MoDA's absolute mode keeps the portrait's scale and non-driven expression
     (motion.compose_absolute), and the renderer draws every frame from the one portrait;
  5. frames are pasted back into the full portrait and written as H.264 at 25 fps with the speech
     (16 kHz mono AAC) muxed in.
The video has exactly one frame per 640 samples of 16-kHz audio.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time

import numpy as np

from jaxmoda.errors import ConfigError, DataError, cli_main
from jaxmoda.logs import setup_logging

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Loaded:
    """A trained run ready to use: task, graphdef, EMA params, mesh and logical-axis rules."""
    task: object
    graphdef: object
    params: object
    mesh: object
    rules: object


def load_run(workdir: str, kind: str) -> Loaded:
    from jaxmoda.train.sampling import load_for_sampling
    task, graphdef, params, mesh, rules = load_for_sampling(workdir)
    if task.config.model.name != kind:
        raise ConfigError(f"{workdir} trained a {task.config.model.name!r} model; pass a {kind!r} run there")
    return Loaded(task, graphdef, params, mesh, rules)


def load_portrait(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    if not os.path.isfile(path):
        raise DataError(f"portrait {path!r} does not exist; pass a PNG or JPEG photograph of one face")
    try:
        with Image.open(path) as img:
            from PIL import ImageOps
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"), np.uint8)   # phone photos: upright
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"portrait {path!r} is not a readable image ({e}); pass a PNG or JPEG file") from None


def load_liveportrait(folder: str) -> Loaded:
    """LivePortrait's released renderer (jaxmoda.moda.render.liveportrait) as a renderer for `talk`:
    256-px crops in, its 512-px output averaged down to 256."""
    import types

    import jax
    import jax.numpy as jnp

    from jaxmoda.moda.render import liveportrait as lp
    params = jax.tree.map(jnp.asarray, lp.load(folder))
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    return Loaded(types.SimpleNamespace(image_size=256, kind="liveportrait"), None, params, mesh, ())


def _renderer_fns(run: Loaded):
    """Jitted (extract, render_batch) for a renderer run, cached on its task."""
    import jax
    from flax import nnx

    from jaxmoda.moda.render.model import render_frames
    cache = run.task.__dict__.setdefault("_talk_fns", {})
    if not cache and getattr(run.task, "kind", "") == "liveportrait":
        from jaxmoda.moda.render import liveportrait as lp

        def extract(params, image):
            info = lp.motion_info(params["M"], (image + 1.0) / 2.0)
            return info["kp"], lp.source_motion(info)

        def render(params, source, x_c, source_motion, driving):
            out = lp.reenact(params, (source + 1.0) / 2.0, x_c, source_motion, driving)
            b, h, w, c = out.shape
            return out.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4)) * 2.0 - 1.0

        cache["extract"], cache["render"] = jax.jit(extract), jax.jit(render)
    if not cache:
        def extract(params, image):
            return nnx.merge(run.graphdef, params).extract(image)

        def render(params, source, x_c, source_motion, driving):
            out = render_frames(nnx.merge(run.graphdef, params), source, x_c, source_motion, driving)
            return jax.numpy.clip(out, -1.0, 1.0)

        cache["extract"], cache["render"] = jax.jit(extract), jax.jit(render)
    return cache["extract"], cache["render"]


def read_portrait_motion(renderer: Loaded, crop_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(canonical keypoints [21, 3], motion [70]) of a face crop."""
    from jaxmoda.nn.logical import axis_rules
    extract, _ = _renderer_fns(renderer)
    with axis_rules(renderer.mesh, renderer.rules):
        x_c, motion = extract(renderer.params, crop_u8[None].astype(np.float32) / 127.5 - 1.0)
    return np.asarray(x_c[0], np.float32), np.asarray(motion[0], np.float32)


def render_motion(renderer: Loaded, crop_u8: np.ndarray, x_c: np.ndarray, source_motion: np.ndarray,
                  motion: np.ndarray, *, batch: int = 16, progress: bool = True) -> np.ndarray:
    """uint8 frames [T, S, S, 3]: the crop driven by motion [T, 70] (padded batches, one compile)."""
    from tqdm.auto import tqdm

    from jaxmoda.nn.logical import axis_rules
    _, render = _renderer_fns(renderer)
    source = crop_u8[None].astype(np.float32) / 127.5 - 1.0
    t = len(motion)
    out = np.empty((t, *crop_u8.shape), np.uint8)
    with axis_rules(renderer.mesh, renderer.rules), tqdm(total=t, desc="rendering", unit="frame",
                                                         disable=not progress) as bar:
        for start in range(0, t, batch):
            chunk = motion[start:start + batch]
            n = len(chunk)
            if n < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
            frames = render(renderer.params, source, x_c[None], source_motion[None], chunk.astype(np.float32))
            out[start:start + n] = np.round((np.asarray(frames[:n]) + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
            bar.update(n)
    return out


def talk(motion_run: Loaded, renderer: Loaded, portrait: np.ndarray, wave16k: np.ndarray, *, emotion: int,
         seed: int = 0, cfg_audio: float | None = None, cfg_emotion: float | None = None, steps: int | None = None,
         batch: int = 16, progress: bool = True) -> dict:
    """The whole pipeline on arrays (see the module docstring). Returns the rendered face crops [T, S, S, 3]
    uint8, the generated and the driving motion, the crop, its transform (`face.paste_back_frames` puts
    the crops back into the portrait, streaming) and timings."""
    from jaxmoda.moda.generate import generate_motion
    from jaxmoda.moda.motion import compose_absolute
    from jaxmoda.moda.render.face import crop_face
    from jaxmoda.nn.logical import axis_rules
    timings = {}
    t0 = time.time()
    size = renderer.task.image_size
    crop, m, framed = crop_face(portrait, size)
    x_c, source_motion = read_portrait_motion(renderer, crop)
    feats = motion_run.task.audio_features(wave16k)
    timings["prepare_s"] = time.time() - t0
    t0 = time.time()
    with axis_rules(motion_run.mesh, motion_run.rules):
        generated = generate_motion(motion_run.task, motion_run.graphdef, motion_run.params, feats[None],
                                    identity=x_c.reshape(63), emotion=np.int32(emotion), prefix=source_motion,
                                    cfg_audio=cfg_audio, cfg_emotion=cfg_emotion, steps=steps, seed=seed,
                                    progress=progress)[0]
    if not np.all(np.isfinite(generated)):
        raise DataError("generated motion is not finite; the motion run's checkpoint may be corrupt (retrain it)")
    driving = np.asarray(compose_absolute(generated, source_motion), np.float32)
    timings["motion_s"] = time.time() - t0
    t0 = time.time()
    crops = render_motion(renderer, crop, x_c, source_motion, driving, batch=batch, progress=progress)
    timings["render_s"] = time.time() - t0
    return {"crops": crops, "motion": generated, "driving": driving, "crop": crop, "transform": m,
            "face_found": framed, "timings": timings}


def frames_of(result: dict, portrait: np.ndarray, paste: bool = True):
    """The video's frames from a `talk` result: the crops pasted back into the portrait (a generator),
    or the crops themselves."""
    from jaxmoda.moda.render.face import paste_back_frames
    return paste_back_frames(portrait, result["crops"], result["transform"]) if paste else result["crops"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.talk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--motion-workdir", required=True, help="a trained MoDA motion-generator run")
    render_from = parser.add_mutually_exclusive_group(required=True)
    render_from.add_argument("--renderer-workdir", help="a trained renderer run")
    render_from.add_argument("--liveportrait", help="a folder with LivePortrait's five released .pth files "
                             "(jaxmoda.moda.render.liveportrait)")
    parser.add_argument("--image", required=True, help="portrait (PNG/JPEG) with one face")
    parser.add_argument("--audio", required=True, help="speech (WAV/FLAC/OGG, any rate, mono or stereo)")
    parser.add_argument("--out", default="talk.mp4")
    parser.add_argument("--emotion", default="none", help="emotion name, or none (no emotion)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cfg-audio", type=float, default=None)
    parser.add_argument("--cfg-emotion", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None, help="sampler steps per window (default: the run's)")
    parser.add_argument("--batch", type=int, default=16, help="frames rendered per call")
    parser.add_argument("--strip", default="", help="also write a PNG strip of every 5th frame here")
    parser.add_argument("--no-paste-back", action="store_true", help="write the face crop only")
    args = parser.parse_args(argv)
    setup_logging()
    from jaxmoda.io.video import write_mp4
    from jaxmoda.moda import audio as audio_lib
    from jaxmoda.motion import emotion_id
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch} must be at least 1")
    portrait = load_portrait(args.image)
    wave = audio_lib.load_audio(args.audio)
    if audio_lib.num_frames(len(wave)) < 1:
        raise DataError(f"audio {args.audio!r} is shorter than one video frame (40 ms); pass a longer recording")
    from jaxmoda.train.sampling import read_run_config
    runs = {}
    checks = [("--motion-workdir", args.motion_workdir, "moda")]
    if args.renderer_workdir:
        checks.append(("--renderer-workdir", args.renderer_workdir, "renderer"))
    for flag, path, kind in checks:
        runs[kind] = read_run_config(path)     # cheap checks before any checkpoint is read
        if runs[kind].model.name != kind:
            raise ConfigError(f"{flag} {path} trained a {runs[kind].model.name!r} model; pass a {kind!r} run there")
    emo = emotion_id(args.emotion, runs["moda"].moda.emotions, int(runs["moda"].model.num_emotions))
    motion_run = load_run(args.motion_workdir, "moda")
    renderer = load_run(args.renderer_workdir, "renderer") if args.renderer_workdir else \
        load_liveportrait(args.liveportrait)
    out = talk(motion_run, renderer, portrait, wave, emotion=emo, seed=args.seed, cfg_audio=args.cfg_audio,
               cfg_emotion=args.cfg_emotion, steps=args.steps, batch=args.batch)
    paste = not args.no_paste_back
    write_mp4(args.out, frames_of(out, portrait, paste), fps=25, audio=wave, sample_rate=audio_lib.SAMPLE_RATE)
    if args.strip:
        from jaxmoda.data.synthfaces import save_strip
        every5 = dict(out, crops=out["crops"][::5][:40])
        save_strip(np.stack(list(frames_of(every5, portrait, paste))), args.strip, columns=10)
    t = out["timings"]
    n = len(out["crops"])
    print(f"wrote {args.out}: {n} frames ({n / 25.0:.2f} s at 25 fps) with audio; motion {t['motion_s']:.1f} s, "
          f"rendering {t['render_s']:.1f} s ({n / max(t['render_s'], 1e-9):.1f} frames/s)"
          + ("" if out["face_found"] else "; no face box found, the whole picture was used"))
    return 0


if __name__ == "__main__":
    cli_main(main)
