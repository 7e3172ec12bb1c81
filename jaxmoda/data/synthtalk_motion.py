"""SynthTalk's face motion: visemes from eSpeak phonemes, identities (canonical keypoints), emotions,
and `synthesize_motion`, the 70-d motion of one utterance (jaxmoda.data.synthtalk builds clips on it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from jaxmoda.data import speech
from jaxmoda.moda import motion as mo

FPS = 25
SAMPLE_RATE = speech.SAMPLE_RATE
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted", "contempt")

# eSpeak English mnemonics (stress marks stripped); 0 is the pause, 1 anything else.
PHONEME_VOCAB = (
    "_", "<unk>",
    "0", "3", "3:", ";", "@", "@-", "@2", "@5", "@L", "A", "A:", "A@", "D", "E", "E2", "I", "I#", "I2", "IR",
    "N", "O", "O2", "O:", "O@", "OI", "S", "T", "U", "U@", "V", "VR", "Z", "a", "a#", "aI", "aI2", "aI@", "aI3",
    "aU", "aU@", "aa", "b", "d", "d#", "dZ", "e", "e@", "eI", "f", "g", "h", "i", "i:", "i@", "i@3", "j", "k",
    "l", "l/", "m", "n", "n-", "o@", "oU", "p", "r", "r-", "s", "t", "t#", "tS", "t[", "u", "u:", "v", "w",
    "w#", "x", "z", "?",
)
_VOCAB_INDEX = {p: i for i, p in enumerate(PHONEME_VOCAB)}

# ----------------------------------------------------------------------------------------------
# Visemes.

# Vowel symbol -> (jaw opening 0..1, lip spread -1..1, rounding 0..1).
_VOWELS: dict[str, tuple[float, float, float]] = {
    "i": (0.22, 0.75, 0.0), "I": (0.30, 0.55, 0.0), "e": (0.42, 0.50, 0.0), "E": (0.52, 0.40, 0.0),
    "a": (0.85, 0.20, 0.0), "A": (0.90, 0.00, 0.05), "&": (0.80, 0.30, 0.0), "@": (0.40, 0.00, 0.0),
    "3": (0.40, 0.00, 0.25), "V": (0.62, 0.05, 0.0), "0": (0.72, 0.00, 0.45), "Q": (0.72, 0.00, 0.45),
    "O": (0.65, -0.10, 0.65), "o": (0.45, -0.20, 0.80), "u": (0.22, -0.35, 0.95), "U": (0.30, -0.20, 0.75),
    "y": (0.25, -0.20, 0.85), "Y": (0.35, -0.15, 0.75),
}
# Consonant (by its longest matching prefix) -> targets.
_CONSONANTS: dict[str, tuple[float, float, float]] = {
    "f": (0.10, 0.10, 0.0), "v": (0.10, 0.10, 0.0), "T": (0.20, 0.05, 0.0), "D": (0.20, 0.05, 0.0),
    "t": (0.18, 0.10, 0.0), "d": (0.18, 0.10, 0.0), "n": (0.18, 0.10, 0.0), "l": (0.22, 0.05, 0.0),
    "s": (0.12, 0.30, 0.0), "z": (0.12, 0.30, 0.0), "S": (0.16, -0.10, 0.55), "Z": (0.16, -0.10, 0.55),
    "tS": (0.16, -0.10, 0.55), "dZ": (0.16, -0.10, 0.55), "k": (0.28, 0.00, 0.0), "g": (0.28, 0.00, 0.0),
    "N": (0.26, 0.00, 0.0), "x": (0.28, 0.00, 0.0), "r": (0.22, -0.10, 0.45), "w": (0.12, -0.30, 0.95),
    "j": (0.18, 0.45, 0.0),
}
BILABIALS = ("p", "b", "m")
_TRANSPARENT = ("h", "?", ";")
_UNKNOWN = (0.25, 0.0, 0.0)
_REST = (0.0, 0.0, 0.0)
CLOSED_LEVEL = -0.04  # jaw value on a bilabial closure (lips pressed), in jaw-opening units


def viseme(mnemonic: str) -> tuple[str, list[tuple[float, float, float]]]:
    """Articulatory targets of one eSpeak mnemonic (stress marks already stripped).

    Returns:
      (kind, targets): kind is "pause", "bilabial", "transparent" (h, glottal stop, modifiers: take
      the next phoneme's target), "vowel" or "consonant"; targets are (jaw, spread, round) tuples,
      one per vowel part of a diphthong (e.g. ``aI`` -> a, I), one otherwise, none when transparent.
    """
    if not mnemonic or mnemonic.startswith(speech.PAUSE):
        return "pause", [_REST]
    if mnemonic[0] in _VOWELS:
        parts = [_VOWELS[c] for c in mnemonic if c in _VOWELS]
        return "vowel", parts
    if mnemonic[0] in BILABIALS:
        return "bilabial", [(CLOSED_LEVEL, 0.0, 0.0)]
    if mnemonic[0] in _TRANSPARENT:
        return "transparent", []
    for n in (2, 1):
        if mnemonic[:n] in _CONSONANTS:
            return "consonant", [_CONSONANTS[mnemonic[:n]]]
    return "consonant", [_UNKNOWN]


def phoneme_id(mnemonic: str) -> int:
    """Index of a mnemonic in `PHONEME_VOCAB` (1, ``<unk>``, if it is not listed)."""
    return _VOCAB_INDEX.get(mnemonic, 1)


# ----------------------------------------------------------------------------------------------
# Keypoint roles (a synthetic convention on the real groups; see the module docstring).

_UPPER_LIPS = tuple(u for u, _ in mo.MOUTH_OPEN_PAIRS)
_LOWER_LIPS = tuple(lo for _, lo in mo.MOUTH_OPEN_PAIRS)
_OTHER_LIPS = tuple(k for k in mo.KP_GROUPS["lips"] if k not in _UPPER_LIPS + _LOWER_LIPS)
_CORNERS = _OTHER_LIPS[:2]  # (left, right)
_LIP_FOLLOWERS = _OTHER_LIPS[2:4]  # (upper follower, lower follower)
_EYES = mo.KP_GROUPS["eyes"]
_UPPER_LIDS = _EYES[0:4:2]
_LOWER_LIDS = _EYES[1:4:2]
_EYE_FOLLOWERS = _EYES[4:]
_BROWS = mo.KP_GROUPS["brows"]  # (left, right)
KEYPOINT_ROLES = {
    "upper_lips": _UPPER_LIPS, "lower_lips": _LOWER_LIPS, "mouth_corners": _CORNERS,
    "lip_followers": _LIP_FOLLOWERS, "upper_lids": _UPPER_LIDS, "lower_lids": _LOWER_LIDS,
    "eye_followers": _EYE_FOLLOWERS, "brows": _BROWS,
}

# Amplitudes in expression-offset units (moda.md 1.2: lip y std up to ~0.02).
_JAW_LOWER, _JAW_UPPER = 0.055, 0.012  # lower / upper lip y per unit of jaw opening
_SPREAD_X, _ROUND_X = 0.012, 0.010  # corner x per unit of spread / rounding
_BLINK_UPPER, _BLINK_LOWER, _BLINK_FOLLOW = 0.028, 0.006, 0.010
_BROW_Y, _BROW_X = 0.016, 0.002

# Template face: canonical keypoints of the average identity (x right, y down, z towards camera).
_TEMPLATE = np.zeros((mo.NUM_KP, 3), np.float64)
_TEMPLATE[:] = [
    (0.00, -0.60, 0.10), (-0.25, -0.35, 0.15), (0.25, -0.35, 0.15), (-0.45, -0.10, -0.10), (0.45, -0.10, -0.10),
    (0.00, 0.60, 0.05), (-0.17, 0.35, 0.12), (-0.35, 0.30, -0.05), (0.35, 0.30, -0.05), (0.00, 0.10, 0.30),
    (0.00, -0.15, 0.20), (-0.22, -0.22, 0.12), (0.17, 0.35, 0.12), (-0.22, -0.16, 0.12), (0.00, 0.30, 0.16),
    (0.22, -0.22, 0.12), (0.22, -0.16, 0.12), (0.00, 0.33, 0.15), (0.30, -0.19, 0.10), (0.00, 0.38, 0.15),
    (0.00, 0.43, 0.14),
]


@dataclasses.dataclass(frozen=True)
class _Emotion:
    corner_dy: tuple[float, float]  # (left, right) mouth-corner y offsets; negative raises
    brow_dy: float  # negative raises the brows
    brow_in: float  # inner-brow pull towards the midline (frown)
    lid_dy: float  # upper-lid offset; negative widens the eyes
    head_gain: float  # head-motion amplitude
    mouth_gain: float  # jaw-opening amplitude
    blink_rate: float  # multiplies the blink hazard


_EMOTION_TABLE = {
    "neutral": _Emotion((0.0, 0.0), 0.0, 0.0, 0.0, 1.00, 1.00, 1.0),
    "happy": _Emotion((-0.010, -0.010), -0.003, 0.000, 0.002, 1.25, 1.10, 1.0),
    "sad": _Emotion((0.008, 0.008), -0.004, 0.002, 0.004, 0.60, 0.80, 1.1),
    "angry": _Emotion((0.003, 0.003), 0.008, 0.004, -0.002, 1.30, 1.05, 0.8),
    "surprised": _Emotion((0.0, 0.0), -0.014, -0.002, -0.006, 1.15, 1.25, 0.7),
    "fearful": _Emotion((0.004, 0.004), -0.010, 0.003, -0.005, 0.90, 0.95, 1.4),
    "disgusted": _Emotion((0.006, 0.006), 0.005, 0.003, 0.003, 0.85, 0.90, 1.0),
    "contempt": _Emotion((-0.008, 0.0), 0.0, 0.0, 0.001, 0.80, 0.95, 1.0),
}


@dataclasses.dataclass(frozen=True)
class Identity:
    """A synthetic face.

    Attributes:
      identity_id: index; identities 4v..4v+3 belong to voice v of `voice_specs()`.
      x_c: float32 [21, 3] canonical keypoints.
      mouth_gain: jaw-opening gain, from the mouth width of x_c (wider mouth, larger motion).
      lip_offset: float32 [21, 3] rest offset of the lip keypoints (zero elsewhere; equal y on each
        MOUTH_OPEN_PAIRS pair, so openness is unchanged), from x_c's lip shape.
      jaw_t63, lip_t63: coarticulation 63 % step-response times in seconds (40-80 ms).
      blink_interval: mean inter-blink interval in seconds (3-4 s).
    """

    identity_id: int
    x_c: np.ndarray
    mouth_gain: float
    lip_offset: np.ndarray
    jaw_t63: float
    lip_t63: float
    blink_interval: float


def make_identity(identity_id: int) -> Identity:
    """The identity with this id (deterministic)."""
    rng = np.random.default_rng(np.random.SeedSequence([0x1D, int(identity_id)]))
    width, height = rng.uniform(0.9, 1.1), rng.uniform(0.92, 1.08)
    x_c = _TEMPLATE * np.array([width, height, 1.0]) + rng.normal(0.0, 0.025, _TEMPLATE.shape)
    lips = list(mo.KP_GROUPS["lips"])
    left, right = _CORNERS
    mouth_w = abs(x_c[right, 0] - x_c[left, 0]) / abs(_TEMPLATE[right, 0] - _TEMPLATE[left, 0])
    gain = float(np.clip(mouth_w ** 2, 0.7, 1.4))
    offset = np.zeros_like(x_c)
    offset[lips, :2] = 0.15 * (x_c[lips, :2] - _TEMPLATE[lips, :2] * np.array([width, height]))
    for u, lo in mo.MOUTH_OPEN_PAIRS:  # same y on both lips of a pair: openness stays 0 at rest
        offset[[u, lo], 1] = offset[[u, lo], 1].mean()
    # Coarticulation speed and blink rate: idiosyncratic but tied to the face (jaw length).
    jaw_len = (x_c[5, 1] - x_c[9, 1]) / (_TEMPLATE[5, 1] - _TEMPLATE[9, 1])
    jaw_t63 = float(np.clip(0.060 + 0.08 * (jaw_len - 1.0) + rng.normal(0.0, 0.006), 0.045, 0.080))
    lip_t63 = float(np.clip(jaw_t63 - 0.012 + rng.normal(0.0, 0.004), 0.040, 0.065))
    return Identity(int(identity_id), x_c.astype(np.float32), gain, offset.astype(np.float32), jaw_t63, lip_t63,
                    float(rng.uniform(3.0, 4.0)))


# ----------------------------------------------------------------------------------------------
# Signal helpers.


def f0_track(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, hop: int = 160, fmin: float = 70.0,
             fmax: float = 400.0) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation pitch tracker (numpy).

    Args:
      audio: float [N].
      sample_rate: Hz.
      hop: samples between analysis frames (frame k is centred on sample k * hop).
      fmin, fmax: search range in Hz.

    Returns:
      (f0 [K] Hz, 0 where unvoiced; voiced bool [K]), K = N // hop + 1.
    """
    win = int(2.5 * sample_rate / fmin) // 2 * 2
    x = np.pad(np.asarray(audio, np.float64), (win // 2, win // 2 + hop))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][: len(audio) // hop + 1]
    frames = frames - frames.mean(axis=1, keepdims=True)
    window = np.hanning(win)
    nfft = 1 << math.ceil(math.log2(2 * win))
    spec = np.fft.rfft(frames * window, nfft)
    ac = np.fft.irfft(np.abs(spec) ** 2, nfft)[:, :win]
    wac = np.fft.irfft(np.abs(np.fft.rfft(window, nfft)) ** 2, nfft)[:win]
    ac = ac / np.maximum(ac[:, :1], 1e-12) / np.maximum(wac / wac[0], 1e-3)  # window-corrected
    lo, hi = max(int(sample_rate / fmax), 1), min(int(sample_rate / fmin), win - 2)
    band = ac[:, lo - 1: hi + 1]
    is_peak = (band[:, 1:-1] >= band[:, :-2]) & (band[:, 1:-1] >= band[:, 2:])
    best = np.max(np.where(is_peak, band[:, 1:-1], -np.inf), axis=1, keepdims=True)
    # The shortest-lag peak within 10 % of the best one: no octave-down errors.
    lag = lo + np.argmax(is_peak & (band[:, 1:-1] >= 0.9 * best), axis=1)
    peak = ac[np.arange(len(ac)), lag]
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    voiced = (peak > 0.5) & (rms > 0.02 * max(float(rms.max()), 1e-9))
    return np.where(voiced, sample_rate / lag, 0.0), voiced


def _filter_kernel(t63: float, dt: float) -> tuple[np.ndarray, int]:
    """Critically damped 2nd-order impulse response (pole time t63 / 2.146) and its mean delay in steps."""
    tau = t63 / 2.146  # 1 - (1 + x) exp(-x) = 0.632 at x = 2.146
    t = np.arange(0.0, 10.0 * tau, dt)
    h = t / tau ** 2 * np.exp(-t / tau)
    h /= h.sum()
    return h, round(float((h * np.arange(len(h))).sum()))


def _coarticulate(x: np.ndarray, t63: float, dt: float) -> np.ndarray:
    """Filters [n] with the critically damped filter, advanced by its mean delay (no net lag)."""
    h, delay = _filter_kernel(t63, dt)
    pad = len(h)
    xp = np.concatenate([np.full(pad, x[0]), x, np.full(pad, x[-1])])
    y = np.convolve(xp, h)
    return y[pad + delay: pad + delay + len(x)]


def _bump(t: np.ndarray, start: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """Raised-cosine bump: 0 before `start`, 1 on [start + rise, start + rise + hold], 0 after."""
    up = np.clip((t - start) / rise, 0.0, 1.0)
    down = np.clip((start + rise + hold + fall - t) / fall, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))


def _ar2(rng: np.random.Generator, n: int, std: np.ndarray, tc_s: np.ndarray, burn_in: int = 300) -> np.ndarray:
    """Stationary AR(2) with a double real pole per column: [n, k] with the given std and time constants."""
    r = np.exp(-1.0 / (FPS * tc_s))
    a1, a2 = 2.0 * r, -(r ** 2)
    gamma0 = (1.0 - a2) / ((1.0 + a2) * ((1.0 - a2) ** 2 - a1 ** 2))  # variance per unit innovation variance
    sigma = std / np.sqrt(gamma0)
    eps = rng.normal(0.0, 1.0, (n + burn_in, len(std))) * sigma
    x = np.zeros((n + burn_in, len(std)))
    for i in range(2, n + burn_in):
        x[i] = a1 * x[i - 1] + a2 * x[i - 2] + eps[i]
    return x[burn_in:]


# ----------------------------------------------------------------------------------------------
# Motion.


def synthesize_motion(phonemes: Sequence[tuple[str, float, float]], stress: Sequence[int], audio: np.ndarray,
                      num_frames: int, *, emotion: int, intensity: float, identity: Identity,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth motion for a phoneme track (see the module docstring).

    Args:
      phonemes: contiguous (mnemonic, start_s, end_s) covering the audio; pauses are ``_``.
      stress: per phoneme 2 / 1 / 0.
      audio: float32 [N] at 16 kHz (for the pitch tracker).
      num_frames: T.
      emotion: index into `EMOTIONS`.
      intensity: emotion intensity in [0, 1] (scales the constant offsets).
      identity: the face.
      rng: the clip's motion generator.

    Returns:
      (motion float32 [T, 70], blink start times float32 [B]).
    """
    emo = _EMOTION_TABLE[EMOTIONS[emotion]]
    duration = max(len(audio) / SAMPLE_RATE, phonemes[-1][2] if phonemes else 0.0)
    t_frames = (np.arange(num_frames) + 0.5) / FPS
    dt = 1e-3
    n_fine = math.ceil(duration / dt) + 1
    t_fine = np.arange(n_fine) * dt

    # Mouth: viseme targets on a 1 ms grid, transparent phonemes take the next target.
    targets = np.zeros((n_fine, 3))
    closures: list[tuple[float, float]] = []
    next_target = _REST
    for name, t0, t1 in reversed(list(phonemes)):
        kind, parts = viseme(name)
        i0, i1 = round(t0 / dt), round(t1 / dt)
        if kind == "transparent":
            parts = [next_target]
        if kind == "bilabial":
            closures.append((t0, t1))
            parts = [next_target]  # the jaw keeps moving under the closure, the lips gate it below
        edges = np.linspace(i0, i1, len(parts) + 1).round().astype(int)
        for p, a, b in zip(parts, edges[:-1], edges[1:]):
            targets[a:b] = p
        next_target = parts[0]
    jaw = _coarticulate(targets[:, 0], identity.jaw_t63, dt)
    spread = _coarticulate(targets[:, 1], identity.lip_t63, dt)
    rounding = _coarticulate(targets[:, 2], identity.lip_t63, dt)
    gate = np.zeros(n_fine)
    for t0, t1 in closures:  # hard closure: >= 50 ms plateau around the bilabial, 20 ms ramps
        centre, half = 0.5 * (t0 + t1), max(0.5 * (t1 - t0), 0.025)
        a, b = max(int((centre - half - 0.02) / dt), 0), min(int((centre + half + 0.02) / dt) + 2, n_fine)
        dist = np.maximum(np.abs(t_fine[a:b] - centre) - half, 0.0)
        gate[a:b] = np.maximum(gate[a:b], np.clip(1.0 - dist / 0.02, 0.0, 1.0))
    opening = jaw * (1.0 - gate) + gate * CLOSED_LEVEL
    spread = spread * (1.0 - 0.5 * gate)
    idx = np.clip(np.round(t_frames / dt).astype(int), 0, n_fine - 1)
    opening, spread, rounding = opening[idx], spread[idx], rounding[idx]

    exp = np.zeros((num_frames, mo.NUM_KP, 3))
    exp += identity.lip_offset
    g = identity.mouth_gain * (1.0 + (emo.mouth_gain - 1.0) * intensity)
    for u, lo in mo.MOUTH_OPEN_PAIRS:
        exp[:, lo, 1] += _JAW_LOWER * g * opening
        exp[:, u, 1] -= _JAW_UPPER * g * opening
    left, right = _CORNERS
    exp[:, left, 0] += -_SPREAD_X * spread + _ROUND_X * rounding
    exp[:, right, 0] += _SPREAD_X * spread - _ROUND_X * rounding
    exp[:, left, 1] += emo.corner_dy[0] * intensity
    exp[:, right, 1] += emo.corner_dy[1] * intensity
    if _LIP_FOLLOWERS:
        exp[:, _LIP_FOLLOWERS[0], 1] += -0.004 * g * opening - 0.003 * rounding
    if len(_LIP_FOLLOWERS) > 1:
        exp[:, _LIP_FOLLOWERS[1], 1] += 0.030 * g * opening

    # Blinks: gamma(3) renewal in an operational time that runs faster in pauses.
    in_pause = np.zeros(n_fine, bool)
    for name, t0, t1 in phonemes:
        if name == speech.PAUSE:
            in_pause[round(t0 / dt): round(t1 / dt)] = True
    hazard = np.where(in_pause, 2.5, 1.0) * emo.blink_rate
    op_time = np.cumsum(hazard) * dt
    mean_interval, shape = identity.blink_interval, 3.0
    blink_starts = []
    s = rng.uniform(0.0, 1.0) * rng.gamma(shape, mean_interval / shape)  # stationary-ish start
    while s < op_time[-1]:
        blink_starts.append(float(np.searchsorted(op_time, s)) * dt)
        s += max(rng.gamma(shape, mean_interval / shape), 0.4)
    blink = np.zeros(num_frames)
    for t0 in blink_starts:
        d, amp = rng.uniform(0.15, 0.25), rng.uniform(0.85, 1.0)
        phase = (t_frames - t0) / d
        on = (phase >= 0.0) & (phase <= 1.0)
        blink[on] = np.maximum(blink[on], amp * np.sin(np.pi * phase[on]))
    for k in _UPPER_LIDS:
        exp[:, k, 1] += _BLINK_UPPER * blink + emo.lid_dy * intensity
    for k in _LOWER_LIDS:
        exp[:, k, 1] -= _BLINK_LOWER * blink
    for k in _EYE_FOLLOWERS:
        exp[:, k, 1] += _BLINK_FOLLOW * blink

    # Brows: raises at primary-stressed vowels, likelier and larger on pitch accents.
    half = len(audio) // 2 * 2  # the tracker runs at 8 kHz with a 20 ms hop (pitch < 400 Hz)
    f0, voiced = f0_track(0.5 * (audio[0:half:2] + audio[1:half:2]), SAMPLE_RATE // 2, hop=160)
    f0_step = 160 / (SAMPLE_RATE // 2)
    f0_ref = float(np.median(f0[voiced])) if voiced.any() else 0.0
    brow = np.zeros(num_frames)
    nod = np.zeros(num_frames)
    head_gain = emo.head_gain
    for (name, t0, t1), s_mark in zip(phonemes, stress):
        if s_mark != 2 or viseme(name)[0] != "vowel":
            continue
        k0, k1 = int(t0 / f0_step), int(t1 / f0_step) + 1
        seg = f0[k0:k1][voiced[k0:k1]]
        accent = float(np.clip((np.median(seg) / f0_ref - 1.0) / 0.12, 0.0, 1.0)) if seg.size and f0_ref else 0.0
        u_raise, amp_u, u_nod, nod_amp = rng.uniform(size=4)
        if u_raise < 0.3 + 0.6 * accent:
            amp = (0.35 + 0.65 * accent) * (0.7 + 0.3 * amp_u)
            brow += amp * _bump(t_frames, t0 - 0.08, 0.12, max(t1 - t0, 0.05), 0.25)
        if u_nod < 0.4:
            nod += (1.5 + 2.0 * nod_amp) * head_gain * _bump(t_frames, t0 - 0.05, 0.15, 0.0, 0.15)
    brow = np.minimum(brow, 1.0)
    b_left, b_right = _BROWS
    exp[:, b_left, 1] += -_BROW_Y * brow + emo.brow_dy * intensity
    exp[:, b_right, 1] += -_BROW_Y * brow + emo.brow_dy * intensity
    exp[:, b_left, 0] += -_BROW_X * brow + emo.brow_in * intensity
    exp[:, b_right, 0] += _BROW_X * brow - emo.brow_in * intensity
    exp[..., 2] = 0.0

    # Head: per-clip orientation + AR(2) wander (+ nods); t follows the angles weakly.
    offset = np.array([-2.34, -0.25, -0.33]) + rng.normal(0.0, 1.0, 3) * np.array([6.0, 18.0, 4.0])
    wander = _ar2(rng, num_frames, np.array([6.5, 15.0, 4.0]) * head_gain * rng.uniform(0.8, 1.2),
                  np.array([0.6, 1.0, 0.8]) * rng.uniform(0.8, 1.25))
    pose = offset + wander
    pose[:, 0] += nod
    t_xy0 = np.array([-0.013, 0.100]) + rng.normal(0.0, 1.0, 2) * np.array([0.045, 0.025])
    tx = t_xy0[0] + 0.0015 * pose[:, 1]
    ty = t_xy0[1] + 0.0015 * pose[:, 0]
    scale = 1.286 + 0.05 * rng.normal()

    x70 = np.zeros((num_frames, mo.DIM))
    x70[:, mo.EXP] = exp.reshape(num_frames, -1)
    x70[:, mo.SCALE] = scale
    x70[:, mo.TRANS.start] = tx
    x70[:, mo.TRANS.start + 1] = ty
    x70[:, mo.POSE] = pose
    return x70.astype(np.float32), np.asarray(blink_starts, np.float32)
