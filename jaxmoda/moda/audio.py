"""MoDA's default audio front end: 16 kHz loading and weight-free 25-fps speech features.

MoDA feeds its motion generator one audio feature block per video frame (25 fps, i.e. 640 samples at
16 kHz). The released model uses HuBERT hidden states ([T, 12, 768]); without those weights this module
computes hand-made features in the same [T, L, C] "layers x channels" slot (see `jaxmoda.moda.hubert`
for the HuBERT path, whose `hubert_features` returns the same layout).

Frame alignment. Video frame i describes samples [640 i, 640 (i + 1)); `num_frames(N) = N // 640`
and samples past 640 T are ignored. Every analysis runs at 50 Hz with hop 320: 50-Hz frame j is
*centred* on sample 320 j + 160, so 50-Hz frames 2i and 2i + 1 are centred on the first and second
halves of video frame i. Analysis windows reach a little past the frame (the 25 ms mel window by
40 samples each side, the YIN window further); outside [0, 640 T) the signal is taken as zeros.
The two 50-Hz frames of a video frame are pooled in the power domain (mel, energy) or over voiced
frames (F0) before the log, so e.g. the energy feature is exactly the log mean square of the
frame's 640 samples.

Feature layout of `audio_features` (float32 [T, L, C]):

    L index 0: static features, L index 1: their temporal delta (central difference
        (s[i+1] - s[i-1]) / 2 at 25 fps, edges replicated; times `delta_scale`); L = 1 when
        `use_delta` is False.
    C channels (default C = 83):
        [0, n_mels)      log-mel power, 80 bins (Slaney mel scale, fmin..fmax Hz), 25 ms Hann window
        n_mels           log energy (mean square of the frame's 640 samples)
        n_mels + 1       log-F0: log2(F0 / f0_ref_hz) / lf0_scale averaged over the voiced 50-Hz
                         frames, 0 when neither is voiced          (only when use_f0)
        n_mels + 2       voicing: 2 v - 1 with v in {0, 0.5, 1} the voiced fraction of the two
                         50-Hz frames (YIN aperiodicity below threshold and level above
                         `voicing_floor_db`)                       (only when use_f0)

Normalisation uses fixed constants (dB offset and scale, `AudioSettings`), never per-utterance
statistics, so level is preserved and silence stays distinguishable: digital silence maps to
(floor_db - mean) / scale (about -3) on the mel and energy channels, -1 on voicing, 0 on log-F0,
and 0 on every delta. Levels are relative to digital full scale (a full-scale sine is 0 dB power in
its FFT bin). F0 comes from a vectorised YIN (de Cheveigne & Kawahara 2002) written here, because
`librosa.yin` does not return the aperiodicity needed for the voicing flag.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from jaxmoda.errors import ConfigError, DataError

SAMPLE_RATE = 16000
FPS = 25
HOP = SAMPLE_RATE // FPS  # 640 samples per video frame
HOP50 = HOP // 2  # 320 samples per 50-Hz analysis frame
_BLOCK = 2048  # 50-Hz frames per FFT batch (bounds memory on long recordings)

FRONTENDS = ("logmel", "hubert")


def num_frames(num_samples: int) -> int:
    """Number of 25-fps video frames covered by `num_samples` samples at 16 kHz (floor)."""
    return int(num_samples) // HOP


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------


def _as_float(wave: np.ndarray) -> np.ndarray:
    a = np.asarray(wave)
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        if info.min == 0:  # unsigned PCM (8-bit WAV): centre first
            return (a.astype(np.float64) - (info.max + 1) / 2) / ((info.max + 1) / 2)
        return a.astype(np.float64) / float(-info.min)
    if np.issubdtype(a.dtype, np.bool_):
        return a.astype(np.float64)
    return a.astype(np.float64, copy=False)


def to_mono_16k(wave: np.ndarray, sr: int) -> np.ndarray:
    """Mixes an array down to mono and resamples it to 16 kHz.

    Args:
        wave: [N] mono, or 2-D multichannel audio. 2-D arrays are read as [N, channels] (soundfile's
            layout) unless the first axis is short (<= 8) and the second long, which is read as
            [channels, N] (librosa's layout). Integer PCM is scaled to [-1, 1).
        sr: sample rate of `wave` in Hz.

    Returns:
        float32 [M] at 16 kHz, M = round(N * 16000 / sr); channels are averaged.

    Raises:
        DataError: for a non-positive sample rate, more than 2 dimensions or non-finite samples.
    """
    a = _as_float(wave)
    if not sr or sr <= 0:
        raise DataError(f"audio sample rate must be positive, got {sr}; pass the rate the samples were recorded at")
    if a.ndim == 2:
        if a.shape[0] <= 8 < a.shape[1]:
            a = a.T
        a = a.mean(axis=1)
    elif a.ndim != 1:
        raise DataError(f"audio array must be [N] or [N, channels], got shape {tuple(a.shape)}; mix it to mono first")
    if a.size and not np.all(np.isfinite(a)):
        raise DataError("audio contains NaN or infinite samples; clean the recording before feature extraction")
    if int(sr) != SAMPLE_RATE and a.size:
        import soxr

        a = soxr.resample(a, int(sr), SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(a, dtype=np.float32)


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Reads an audio file as float32 mono at 16 kHz.

    Any sample rate is resampled (soxr, high quality) and channels are averaged. Formats are those of
    libsndfile (WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1, ...).

    Args:
        path: the audio file.

    Returns:
        float32 [N] samples in [-1, 1] at 16 kHz.

    Raises:
        DataError: when the file is missing, unreadable or holds no samples (one line naming it).
    """
    import soundfile as sf

    name = os.fspath(path)
    if not os.path.isfile(name):
        raise DataError(f"audio file {name!r} does not exist; pass the path of a WAV/FLAC/OGG recording")
    try:
        data, sr = sf.read(name, dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError, OSError) as e:  # LibsndfileError is a RuntimeError
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"cannot read audio file {name!r} ({reason}); convert it to WAV or FLAC, "
                        f"e.g. `ffmpeg -i IN -ac 1 -ar 16000 OUT.wav`") from None
    if data.shape[0] == 0:
        raise DataError(f"audio file {name!r} holds no samples; pass a non-empty recording")
    try:
        return to_mono_16k(data, sr)
    except DataError as e:
        raise DataError(f"audio file {name!r}: {e}") from None


# ---------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AudioSettings:
    """Parameters of `audio_features` (the defaults define MoDA-port's log-mel front end).

    Attributes:
        n_mels: mel bins.
        win_length: analysis window in samples (25 ms); even and >= 320.
        n_fft: FFT size (>= win_length).
        fmin, fmax: mel filterbank range in Hz.
        use_f0: append normalised log-F0 and a voicing channel.
        f0_min, f0_max: YIN search range in Hz.
        yin_threshold: YIN absolute threshold on the cumulative-mean-normalised difference; a frame
            whose minimum stays above it is unvoiced.
        voicing_floor_db: frames quieter than this (dBFS mean square) are unvoiced.
        use_delta: add the temporal delta as a second layer (L = 2).
        floor_db: power floor of the log (digital silence maps here).
        mel_db_mean, mel_db_scale: fixed normalisation of the log-mel channels.
        energy_db_mean, energy_db_scale: fixed normalisation of the log-energy channel.
        f0_ref_hz, lf0_scale: log-F0 = log2(F0 / f0_ref_hz) / lf0_scale.
        delta_scale: multiplies the delta layer.
    """

    n_mels: int = 80
    win_length: int = 400
    n_fft: int = 512
    fmin: float = 20.0
    fmax: float = 8000.0
    use_f0: bool = True
    f0_min: float = 65.0
    f0_max: float = 500.0
    yin_threshold: float = 0.2
    voicing_floor_db: float = -60.0
    use_delta: bool = True
    floor_db: float = -100.0
    mel_db_mean: float = -45.0
    mel_db_scale: float = 20.0
    energy_db_mean: float = -35.0
    energy_db_scale: float = 20.0
    f0_ref_hz: float = 150.0
    lf0_scale: float = 1.0
    delta_scale: float = 2.0

    def __post_init__(self):
        problems = []
        if self.n_mels < 1:
            problems.append(f"n_mels={self.n_mels} must be >= 1")
        if self.win_length < HOP50 or self.win_length % 2:
            problems.append(f"win_length={self.win_length} must be even and >= {HOP50}")
        if self.n_fft < self.win_length:
            problems.append(f"n_fft={self.n_fft} must be >= win_length={self.win_length}")
        if not 0 <= self.fmin < self.fmax <= SAMPLE_RATE / 2:
            problems.append(f"need 0 <= fmin < fmax <= {SAMPLE_RATE // 2} Hz, got fmin={self.fmin}, fmax={self.fmax}")
        if not 0 < self.f0_min < self.f0_max <= SAMPLE_RATE / 4:
            problems.append(f"need 0 < f0_min < f0_max <= {SAMPLE_RATE // 4} Hz, got {self.f0_min}, {self.f0_max}")
        if self.mel_db_scale <= 0 or self.energy_db_scale <= 0 or self.lf0_scale <= 0 or self.f0_ref_hz <= 0:
            problems.append("normalisation scales and f0_ref_hz must be positive")
        if problems:
            raise ConfigError("audio settings: " + "; ".join(problems))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | ml_collections.ConfigDict | None) -> AudioSettings:
        """Builds settings from an audio config (ConfigDict or dict, e.g. `default_audio_config()`).

        Keys other than the dataclass fields must be `frontend` or `hubert_weights` (they select the
        front end and are checked here, but are not settings of the log-mel features).

        Raises:
            ConfigError: for an unknown key or a bad value.
        """
        if cfg is None:
            return cls()
        items = dict(cfg.items()) if hasattr(cfg, "items") else dict(cfg)
        fields = {f.name for f in dataclasses.fields(cls)}
        extra = {"frontend", "hubert_weights"}
        unknown = sorted(k for k in items if k not in fields and k not in extra)
        if unknown:
            raise ConfigError(f"unknown audio config key(s) {', '.join(unknown)}; valid keys: "
                              f"{', '.join(sorted(fields | extra))}")
        frontend = items.get("frontend", "logmel")
        if frontend not in FRONTENDS:
            raise ConfigError(f"audio.frontend={frontend!r} is not one of {', '.join(FRONTENDS)}")
        return cls(**{k: v for k, v in items.items() if k in fields})


def default_audio_config() -> ml_collections.ConfigDict:
    """The `audio` config block: front-end choice plus the main log-mel settings."""
    s = AudioSettings()
    return ml_collections.ConfigDict({
        "frontend": "logmel",     # logmel (no weights) | hubert (needs hubert_weights)
        "n_mels": s.n_mels,
        "use_f0": s.use_f0,
        "use_delta": s.use_delta,
        "f0_min": s.f0_min,
        "f0_max": s.f0_max,
        "hubert_weights": "",     # path of converted HuBERT-base weights (frontend='hubert')
    })


def feature_shape(settings: AudioSettings | None = None) -> tuple[int, int]:
    """(L, C) of `audio_features` for these settings (default (2, 83))."""
    s = settings or AudioSettings()
    return (2 if s.use_delta else 1), s.n_mels + 1 + (2 if s.use_f0 else 0)


def feature_slices(settings: AudioSettings | None = None) -> dict[str, slice]:
    """Channel ranges of the C axis: `mel`, `energy`, and with F0 `lf0` and `voiced`."""
    s = settings or AudioSettings()
    out = {"mel": slice(0, s.n_mels), "energy": slice(s.n_mels, s.n_mels + 1)}
    if s.use_f0:
        out["lf0"] = slice(s.n_mels + 1, s.n_mels + 2)
        out["voiced"] = slice(s.n_mels + 2, s.n_mels + 3)
    return out


# ---------------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------------


def _frames50(x: np.ndarray, t: int, length: int, left: int) -> np.ndarray:
    """[2t, length] frames at hop 320; frame j starts at sample 320 j - left (zeros outside x)."""
    right = HOP50 * (2 * t - 1) + length - left - x.size
    padded = np.pad(x, (left, max(right, 0)))
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::HOP50][: 2 * t]


@functools.lru_cache(maxsize=8)
def _mel_basis(n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, norm=None,
                               dtype=np.float64)


def _mel_power(x: np.ndarray, t: int, s: AudioSettings) -> np.ndarray:
    """Mel power [2t, n_mels] at 50 Hz; a full-scale sine has power 1 in its FFT bin."""
    w = s.win_length
    frames = _frames50(x, t, w, w // 2 - HOP50 // 2)
    window = np.hanning(w + 1)[:w]  # periodic Hann
    basis = _mel_basis(s.n_fft, s.n_mels, float(s.fmin), float(s.fmax)).T

    def block(f: np.ndarray) -> np.ndarray:
        spec = np.fft.rfft(f * window, n=s.n_fft, axis=-1)
        return ((spec.real ** 2 + spec.imag ** 2) * (4.0 / window.sum() ** 2)) @ basis

    return np.concatenate([block(frames[i: i + _BLOCK]) for i in range(0, frames.shape[0], _BLOCK)])


def _yin(x: np.ndarray, t: int, s: AudioSettings) -> tuple[np.ndarray, np.ndarray]:
    """F0 in Hz and a voiced flag at 50 Hz ([2t] each), YIN with the integration window centred per frame."""
    max_tau = math.ceil(SAMPLE_RATE / s.f0_min)
    min_tau = max(2, math.floor(SAMPLE_RATE / s.f0_max))
    w = max(s.win_length, max_tau)
    w += w % 2
    length = w + max_tau + 2
    frames = _frames50(x, t, length, w // 2 - HOP50 // 2)
    parts = [_yin_block(frames[i: i + _BLOCK], w, min_tau, max_tau, s) for i in range(0, frames.shape[0], _BLOCK)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _yin_block(frames: np.ndarray, w: int, min_tau: int, max_tau: int,
               s: AudioSettings) -> tuple[np.ndarray, np.ndarray]:
    """YIN on [F, w + max_tau + 2] frames with integration window w: (F0 Hz [F], voiced [F])."""
    n = 1 << math.ceil(math.log2(frames.shape[1] + w))
    # r(tau) = sum_{j<w} x_j x_{j+tau}; e(tau) = sum_{j<w} x_{j+tau}^2; d(tau) = e(0) + e(tau) - 2 r(tau)
    r = np.fft.irfft(np.conj(np.fft.rfft(frames[:, :w], n=n)) * np.fft.rfft(frames, n=n), n=n)[:, : max_tau + 2]
    cs = np.concatenate([np.zeros((frames.shape[0], 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    taus = np.arange(max_tau + 2)
    e = cs[:, taus + w] - cs[:, taus]
    d = np.maximum(e[:, :1] + e - 2.0 * r, 0.0)
    # cumulative-mean-normalised difference d'(tau) = d(tau) tau / sum_{k=1..tau} d(k), d'(0) = 1
    csum = np.cumsum(d[:, 1:], axis=1)
    tiny = 1e-12 * np.maximum(e[:, :1], 1e-20)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = np.where(csum > tiny, d[:, 1:] * taus[1:] / np.maximum(csum, tiny), 1.0)
    # YIN step 4: the first local minimum in [min_tau, max_tau] that dips below the threshold.
    seg = cmnd[:, min_tau - 1: max_tau + 2]
    mid = seg[:, 1:-1]
    is_min = (mid <= seg[:, :-2]) & (mid <= seg[:, 2:]) & (mid < s.yin_threshold)
    found = is_min.any(axis=1)
    first = np.where(found, np.argmax(is_min, axis=1), np.argmin(mid, axis=1))
    tau = first + min_tau
    rows = np.arange(frames.shape[0])
    a, b, c = cmnd[rows, tau - 1], cmnd[rows, tau], cmnd[rows, tau + 1]
    den = a - 2.0 * b + c
    shift = np.where(den > 1e-12, 0.5 * (a - c) / np.where(den > 1e-12, den, 1.0), 0.0)
    f0 = SAMPLE_RATE / (tau + np.clip(shift, -1.0, 1.0))
    loud = e[:, 0] / w > 10.0 ** (s.voicing_floor_db / 10.0)
    return f0, found & loud


def _db(p: np.ndarray, floor_db: float) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(p, 10.0 ** (floor_db / 10.0)))


def audio_features(wave16k: np.ndarray, settings: AudioSettings | None = None) -> np.ndarray:
    """Weight-free 25-fps speech features in MoDA's [T, L, C] audio slot (layout: module docstring).

    Args:
        wave16k: float [N] mono samples at 16 kHz (e.g. from `load_audio`).
        settings: `AudioSettings`; defaults give [T, 2, 83].

    Returns:
        float32 [T, L, C] with T = num_frames(N) = N // 640; row i describes samples [640 i, 640 i + 640).
        L: 0 static, 1 delta (absent when `use_delta` is False). C: log-mel [0, n_mels), log energy
        n_mels, then with `use_f0` normalised log-F0 n_mels + 1 and voicing (-1 / 0 / 1) n_mels + 2
        (`feature_slices` gives the ranges).

    Raises:
        DataError: for audio shorter than one 25-fps frame (40 ms) or non-finite samples.
    """
    s = settings or AudioSettings()
    x = np.asarray(wave16k)
    if x.ndim != 1:
        raise DataError(f"audio_features takes mono [N] samples, got shape {tuple(x.shape)}; use to_mono_16k first")
    t = num_frames(x.size)
    if t < 1:
        raise DataError(f"audio has {x.size} samples ({1000.0 * x.size / SAMPLE_RATE:.1f} ms), shorter than 40 ms "
                        f"(one 25-fps frame = {HOP} samples at 16 kHz); pass a longer recording")
    x = _as_float(x)[: t * HOP]
    if not np.all(np.isfinite(x)):
        raise DataError("audio contains NaN or infinite samples; clean the recording before feature extraction")

    mel = _mel_power(x, t, s).reshape(t, 2, s.n_mels).mean(axis=1)
    mel = (_db(mel, s.floor_db) - s.mel_db_mean) / s.mel_db_scale
    energy = np.mean(x.reshape(t, HOP) ** 2, axis=1)
    energy = (_db(energy, s.floor_db) - s.energy_db_mean) / s.energy_db_scale
    static = [mel, energy[:, None]]
    if s.use_f0:
        f0, voiced = _yin(x, t, s)
        lf0 = np.where(voiced, np.log2(f0 / s.f0_ref_hz) / s.lf0_scale, 0.0).reshape(t, 2)
        v = voiced.reshape(t, 2).astype(np.float64)
        count = v.sum(axis=1)
        static.append((lf0.sum(axis=1) / np.maximum(count, 1.0))[:, None])
        static.append((count - 1.0)[:, None])  # 2 v - 1 with v = count / 2
    static = np.concatenate(static, axis=1)
    if not s.use_delta:
        return static[:, None].astype(np.float32)
    padded = np.pad(static, ((1, 1), (0, 0)), mode="edge")
    delta = s.delta_scale * 0.5 * (padded[2:] - padded[:-2])
    return np.stack([static, delta], axis=1).astype(np.float32)
