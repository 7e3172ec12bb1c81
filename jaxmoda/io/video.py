"""MP4 writing and probing through PyAV (its wheel ships FFmpeg with libx264 and AAC; no system ffmpeg).

    write_mp4(path, frames, fps=25, audio=wave16k, sample_rate=16000)
    probe(path) -> {"frames", "fps", "width", "height", "video_codec", "audio_codec", "audio_seconds", ...}

Frames are H.264 (yuv420p, so odd sizes are padded by one pixel), audio is AAC mono. The file is
written beside its destination and renamed into place, so a failure never leaves a truncated MP4.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np

from jaxmoda.errors import DataError


def _av():
    try:
        import av
    except ImportError:
        raise DataError("writing MP4 needs PyAV; pip install 'jaxmoda[video]' (or pip install av)") from None
    return av


def _check_frame(frame: np.ndarray, shape: tuple | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8 or (shape and frame.shape != shape):
        want = f"{shape}" if shape else "[H, W, 3]"
        raise DataError(f"MP4 frames must be uint8 {want} RGB arrays, got {frame.dtype} {frame.shape}")
    return frame


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray] | np.ndarray, *, fps: float = 25,
              audio: np.ndarray | None = None, sample_rate: int = 16000, crf: int = 18) -> str:
    """Writes uint8 frames ([T, H, W, 3] or any iterable of [H, W, 3], consumed once, so frames can be
    streamed) and float mono audio in [-1, 1] as an H.264/AAC MP4."""
    av = _av()
    if audio is not None:
        audio = np.asarray(audio, np.float32)
        if audio.ndim == 2 and audio.shape[1] <= 8 < audio.shape[0]:
            audio = audio.mean(axis=1)            # [N, channels] -> mono
        if audio.ndim != 1:
            raise DataError(f"MP4 audio must be mono [N] (or [N, channels], mixed down), got shape {audio.shape}")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise DataError("MP4 needs at least one frame")
    first = _check_frame(first, None)
    h, w = first.shape[:2]
    ph, pw = h + h % 2, w + w % 2
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.mp4"
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=rate)
            video.width, video.height, video.pix_fmt = pw, ph, "yuv420p"
            video.options = {"crf": str(int(crf)), "preset": "medium"}
            astream = None
            if audio is not None and len(audio):
                astream = container.add_stream("aac", rate=int(sample_rate))
                astream.layout = "mono"
            for frame in itertools.chain([first], it):
                frame = _check_frame(frame, first.shape)
                if (ph, pw) != (h, w):   # yuv420p needs even sizes
                    frame = np.pad(frame, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
                for packet in video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
            if astream is not None:
                samples = np.clip(audio.reshape(1, -1), -1.0, 1.0)
                chunk = 1024
                for start in range(0, samples.shape[1], chunk):
                    piece = np.ascontiguousarray(samples[:, start:start + chunk])
                    af = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
                    af.sample_rate = int(sample_rate)
                    af.pts = start
                    af.time_base = Fraction(1, int(sample_rate))
                    for packet in astream.encode(af):
                        container.mux(packet)
                for packet in astream.encode():
                    container.mux(packet)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def probe(path: str | os.PathLike) -> dict:
    """Decoded facts of a video file: frame count (by decoding), fps, size, codecs, audio duration."""
    av = _av()
    path = os.fspath(path)
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as e:
        raise DataError(f"cannot open video {path!r} ({e}); pass an MP4/MOV/MKV file") from None
    with container:
        info: dict = {"video_codec": None, "audio_codec": None, "frames": 0, "audio_samples": 0, "audio_seconds": 0.0}
        if container.streams.video:
            v = container.streams.video[0]
            info.update(video_codec=v.codec_context.name, width=v.codec_context.width, height=v.codec_context.height,
                        fps=float(v.average_rate) if v.average_rate else None)
        if container.streams.audio:
            a = container.streams.audio[0]
            info.update(audio_codec=a.codec_context.name, sample_rate=a.codec_context.sample_rate)
        for frame in container.decode(*container.streams.video, *container.streams.audio):
            if isinstance(frame, av.VideoFrame):
                info["frames"] += 1
            else:
                info["audio_samples"] += frame.samples
        if info["audio_codec"]:
            info["audio_seconds"] = info["audio_samples"] / float(info["sample_rate"])
    return info


def _open(path: str):
    av = _av()
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable video ({type(e).__name__}: {str(e)[:120]})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream")
    return container


def _upright(frame) -> np.ndarray:
    """RGB uint8 of a decoded frame turned upright by its display matrix (phone videos), in 90° steps."""
    img = frame.to_ndarray(format="rgb24")
    turns = int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(img, k=turns)) if turns else img


def frame_times(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """(presentation time in seconds of every video frame, in decode order, end time of the last frame)."""
    path = os.fspath(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        times = []
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                times.append(float(packet.pts * packet.time_base))
    if not times:
        raise DataError(f"{path}: no video frames")
    times = np.sort(np.asarray(times, np.float64))
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / 25.0
    return times, float(times[-1] + step)


def resample_indices(times: np.ndarray, end: float, fps: float) -> np.ndarray:
    """For each output frame i at time times[0] + i / fps (i < (end - times[0]) * fps), the index of the
    source frame shown then: the last one starting at or before it. Constant and variable frame rates alike."""
    n = int(np.floor((end - times[0]) * fps + 1e-6))
    t_out = times[0] + np.arange(n) / fps
    return np.clip(np.searchsorted(times, t_out + 1e-6, side="right") - 1, 0, len(times) - 1)


def frames_at(path: str | os.PathLike, indices: np.ndarray, transform=None) -> Iterator[np.ndarray]:
    """Decodes a video once and yields, for each entry of `indices` (non-decreasing source frame indices
    in presentation order), that frame upright, passed through `transform` (computed once per source frame)."""
    path = os.fspath(path)
    indices = np.asarray(indices)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        k = 0
        for j, frame in enumerate(container.decode(stream)):
            if k >= len(indices):
                break
            if indices[k] != j:
                continue
            out = _upright(frame)
            out = transform(out, j) if transform else out
            while k < len(indices) and indices[k] == j:
                yield out
                k += 1


def read_audio(path: str | os.PathLike, sample_rate: int = 16000) -> tuple[np.ndarray, float] | None:
    """(mono float32 samples at `sample_rate`, start time in seconds) of the first audio stream, or None."""
    av = _av()
    path = os.fspath(path)
    with _open(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
        parts, start = [], None
        for frame in container.decode(stream):
            if start is None:
                start = float(frame.time) if frame.time is not None else 0.0
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    if not parts:
        return None
    return np.concatenate(parts).astype(np.float32), float(start or 0.0)
