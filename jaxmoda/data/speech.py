"""Text-to-speech with phoneme timings: eSpeak NG through ctypes (moda.md 6.2).

`synthesize(text)` returns an `Utterance`: 16 kHz float32 audio plus the phoneme track (eSpeak's
own mnemonics such as ``i:``, ``eI``, ``@``, ``N``; pauses as ``_``) and word timings. The library
and its voice data come from the `espeakng-loader` pip package (no system eSpeak is used).

Determinism. eSpeak NG keeps synthesis state in C statics that survive between utterances (pitch
"flutter" phase and other wave-generator state) and cannot be reset through its API, so the same
request gives slightly different audio depending on what was synthesised before it in the process;
re-initialising does not help. To make every call a pure function of its arguments, synthesis runs
in a small helper process (one per client process, started on first use) that initialises the
library once and then forks a fresh child per request: every child starts from the same pristine
state. The fork happens in the helper, which is single-threaded and holds nothing else, so it is
cheap (about a millisecond) and safe even when the caller is a multi-threaded JAX process.

Timing. Phoneme and word start times come from the events' sample counter (eSpeak fills it with the
number of output samples at the event, exact at 22.05 kHz), falling back to the millisecond
`audio_position` if that counter is not usable. Each phoneme ends where the next one starts; the
track is padded with a leading ``_`` so that it starts at 0 and the last entry ends at the audio's
duration. Stress marks (``'`` primary, ``,`` secondary) are stripped from the mnemonics and kept in
`Utterance.stress`.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib.util
import json
import os
import struct
import subprocess
import sys
import threading
from typing import Any

import numpy as np

from jaxmoda.errors import ConfigError, DataError

SAMPLE_RATE = 16000  # output rate of `synthesize`
ESPEAK_RATE = 22050  # eSpeak NG's native rate
PAUSE = "_"
RATE_RANGE = (80, 450)  # eSpeak's accepted words-per-minute range

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EV_LIST_TERMINATED, _EV_WORD, _EV_PHONEME = 0, 1, 7
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE, _P_WORDGAP = 1, 2, 3, 4, 7

_STRESS_MARKS = {"'": 2, ",": 1}
_HEADER = struct.Struct("<II")  # helper response: JSON length, audio byte length


class MissingSpeechLibraryError(DataError, ImportError):
    """The eSpeak NG library or its voice data (the `espeakng-loader` package) is not available."""


@dataclasses.dataclass(frozen=True, eq=False)
class Utterance:
    """One synthesised utterance.

    Attributes:
      text: the text spoken.
      voice: the eSpeak voice, with its variant as ``base+variant`` when one was used.
      rate_wpm: speaking rate in words per minute.
      pitch: eSpeak base pitch (0-100, 50 normal).
      audio: float32 [N] in [-1, 1] at `sample_rate`.
      sample_rate: 16000.
      phonemes: (mnemonic, start_s, end_s) tuples, contiguous (each starts where the previous one
        ends), starting at 0 and ending at the audio duration; pauses are ``_``.
      stress: per phoneme 2 (primary stress), 1 (secondary) or 0, from eSpeak's stress marks.
      words: (word, start_s, end_s) tuples; a word ends with its last non-pause phoneme.
    """

    text: str
    voice: str
    rate_wpm: int
    pitch: int
    audio: np.ndarray
    sample_rate: int
    phonemes: list[tuple[str, float, float]]
    stress: list[int]
    words: list[tuple[str, float, float]]

    @property
    def duration(self) -> float:
        """Audio length in seconds."""
        return len(self.audio) / self.sample_rate


# ----------------------------------------------------------------------------------------------
# Library location.


def _library_paths() -> tuple[str, str]:
    """(shared library path, directory holding ``espeak-ng-data``) from `espeakng-loader`."""
    fix = "install it with `pip install espeakng-loader` (it ships libespeak-ng and its voices)"
    if importlib.util.find_spec("espeakng_loader") is None:
        raise MissingSpeechLibraryError(f"the eSpeak NG library package espeakng-loader is not installed; {fix}")
    import espeakng_loader

    lib = espeakng_loader.get_library_path()
    try:
        data = espeakng_loader.get_data_path()
    except RuntimeError as e:
        raise MissingSpeechLibraryError(f"espeakng-loader has no voice data ({e}); reinstall it: {fix}") from None
    if not os.path.isfile(lib):
        raise MissingSpeechLibraryError(f"the eSpeak NG library {lib} does not exist; reinstall espeakng-loader: {fix}")
    return lib, os.path.dirname(os.path.abspath(data))


# ----------------------------------------------------------------------------------------------
# The helper process (runs `_helper_main`; never imported for its side effects).


def _load_library(lib_path: str) -> Any:
    import ctypes

    lib = ctypes.CDLL(lib_path)
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    return lib


def _event_types() -> tuple[Any, Any]:
    """ctypes mirrors of speak_lib.h's espeak_EVENT and t_espeak_callback."""
    import ctypes

    class _EventId(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    class _Event(ctypes.Structure):
        _fields_ = [
            ("type", ctypes.c_int),
            ("unique_identifier", ctypes.c_uint),
            ("text_position", ctypes.c_int),
            ("length", ctypes.c_int),
            ("audio_position", ctypes.c_int),
            ("sample", ctypes.c_int),
            ("user_data", ctypes.c_void_p),
            ("id", _EventId),
        ]

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
    return _Event, callback


def _list_voices_in_helper(lib: Any, data_dir: str) -> tuple[list[str], list[str]]:
    import ctypes

    class _Voice(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                    ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                    ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]

    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    table = lib.espeak_ListVoices(None)
    voices = set()
    i = 0
    while table and table[i]:
        ident = table[i].contents.identifier
        if ident:
            voices.add(ident.decode("utf-8", "replace").rsplit("/", 1)[-1].lower())
        i += 1
    vdir = os.path.join(data_dir, "espeak-ng-data", "voices", "!v")
    names = os.listdir(vdir) if os.path.isdir(vdir) else []
    variants = sorted(f for f in names if os.path.isfile(os.path.join(vdir, f)))
    return sorted(voices), variants


def _synth_in_child(lib: Any, req: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Runs one synthesis (in a freshly forked child); returns (events JSON, int16 audio bytes)."""
    import ctypes

    callback_t = _event_types()[1]
    chunks: list[bytes] = []
    phonemes: list[list[Any]] = []
    words: list[list[int]] = []

    def on_audio(wav: Any, n: int, events: Any) -> int:
        if wav and n > 0:
            chunks.append(ctypes.string_at(wav, n * 2))
        i = 0
        while events and events[i].type != _EV_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EV_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                phonemes.append([name, ev.sample, ev.audio_position])
            elif ev.type == _EV_WORD:
                words.append([ev.text_position, ev.length, ev.sample, ev.audio_position])
            i += 1
        return 0

    cb = callback_t(on_audio)  # referenced until the end of this function, i.e. the whole synthesis
    lib.espeak_SetSynthCallback.argtypes = [callback_t]
    lib.espeak_SetSynthCallback(cb)
    if hasattr(lib, "espeak_ng_SetRandSeed"):  # belt and braces: the fresh child is already pristine
        lib.espeak_ng_SetRandSeed(ctypes.c_long(1))
    if lib.espeak_SetVoiceByName(req["voice"].encode()) != 0:
        return {"error": f"eSpeak could not load voice {req['voice']!r}"}, b""
    for param, value in ((_P_RATE, req["rate"]), (_P_PITCH, req["pitch"]), (_P_RANGE, 50), (_P_VOLUME, 100),
                         (_P_WORDGAP, 0)):
        lib.espeak_SetParameter(param, int(value), 0)
    text = req["text"].encode("utf-8") + b"\0"
    buf = ctypes.create_string_buffer(text, len(text))
    rc = lib.espeak_Synth(buf, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    if rc != 0:
        return {"error": f"espeak_Synth failed with status {rc}"}, b""
    audio = b"".join(chunks)
    return {"phonemes": phonemes, "words": words, "samples": len(audio) // 2}, audio


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int) -> bytes:
    parts = []
    while True:
        block = os.read(fd, 1 << 16)
        if not block:
            return b"".join(parts)
        parts.append(block)


def _send(fd: int, meta: dict[str, Any], audio: bytes = b"") -> None:
    payload = json.dumps(meta).encode()
    _write_all(fd, _HEADER.pack(len(payload), len(audio)) + payload + audio)


def _helper_main() -> None:
    """Helper process: initialise eSpeak once, then fork one child per request (stdin -> stdout)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's; the helper ends at stdin EOF
    out_fd = os.dup(1)
    os.dup2(2, 1)  # anything the C library prints goes to stderr, never into the protocol stream
    lib_path, data_dir = sys.argv[1], sys.argv[2]
    try:
        lib = _load_library(lib_path)
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_dir.encode(),
                                     _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
        if rate <= 0:
            raise OSError(f"espeak_Initialize returned {rate} for data directory {data_dir}")
        voices, variants = _list_voices_in_helper(lib, data_dir)
    except OSError as e:
        _send(out_fd, {"error": str(e).splitlines()[0] if str(e) else type(e).__name__})
        return
    _send(out_fd, {"sample_rate": rate, "voices": voices, "variants": variants})
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return
        req = json.loads(line)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: pristine library state, one synthesis, then exit
            os.close(r)
            try:
                meta, audio = _synth_in_child(lib, req)
            except BaseException as e:  # noqa: BLE001 - reported to the client, never raised here
                meta, audio = {"error": f"{type(e).__name__}: {e}"}, b""
            try:
                _send(w, meta, audio)
            finally:
                os._exit(0)
        os.close(w)
        data = _read_all(r)  # read while the child writes (responses exceed a pipe buffer)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        complete = len(data) >= _HEADER.size and len(data) == _HEADER.size + sum(_HEADER.unpack(data[:_HEADER.size]))
        if status != 0 or not complete:
            _send(out_fd, {"error": f"the synthesis process died (wait status {status})"})
        else:
            _write_all(out_fd, data)


# ----------------------------------------------------------------------------------------------
# Client side.


class _HelperGone(Exception):
    """The helper process exited (killed, or crashed); the client starts a new one once."""


class _Engine:
    """The client end of one helper process."""

    def __init__(self) -> None:
        lib_path, data_dir = _library_paths()
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from jaxmoda.data.speech import _helper_main; _helper_main()", lib_path, data_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )
        try:
            ready, _ = self._receive()
        except _HelperGone:
            ready = {"error": "the helper process exited at start-up; see the messages above"}
        if "error" in ready:
            self.close()
            raise MissingSpeechLibraryError(
                f"the eSpeak NG library {lib_path} could not be started ({ready['error']}); "
                "reinstall it with `pip install --force-reinstall espeakng-loader`"
            )
        self.native_rate = int(ready["sample_rate"])
        self.voices: list[str] = ready["voices"]
        self.variants: list[str] = ready["variants"]

    def _receive(self) -> tuple[dict[str, Any], bytes]:
        stream = self.proc.stdout
        head = stream.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise _HelperGone()
        n_meta, n_audio = _HEADER.unpack(head)
        meta, audio = stream.read(n_meta), stream.read(n_audio)
        if len(meta) < n_meta or len(audio) < n_audio:
            raise _HelperGone()
        return json.loads(meta), audio

    def request(self, req: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        with self.lock:
            try:
                self.proc.stdin.write(json.dumps(req).encode() + b"\n")
                self.proc.stdin.flush()
            except OSError:
                raise _HelperGone() from None
            try:
                return self._receive()
            except BaseException:
                self.proc.kill()  # a half-read response (e.g. Ctrl-C) would desynchronise the stream
                raise

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


_ENGINE: _Engine | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Engine:
    """The helper of this process, started on first use (and again after a fork of the client)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None or _ENGINE.pid != os.getpid():
            _ENGINE = _Engine()
        return _ENGINE


def _reset_engine(dead: _Engine) -> None:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is dead:
            _ENGINE = None
    dead.close()


@atexit.register
def _shutdown() -> None:
    if _ENGINE is not None and _ENGINE.pid == os.getpid():
        _ENGINE.close()


def list_voices() -> list[str]:
    """Names of the available eSpeak voices (e.g. ``en-us``, ``en``, ``en-gb-x-rp``, ``de``), sorted."""
    return list(_engine().voices)


def list_variants() -> list[str]:
    """Names of the voice variants (e.g. ``f3``, ``m3``, ``klatt``) usable as ``voice+variant``, sorted."""
    return list(_engine().variants)


def _voice_spec(voice: str, variant: str) -> str:
    """Validates `voice` (optionally ``base+variant``) and `variant`; returns ``base[+variant]``."""
    eng = _engine()
    base, _, inline = str(voice).strip().partition("+")
    variant = str(variant or inline).strip()
    if inline and variant != inline:
        raise ConfigError(f"voice {voice!r} already names variant {inline!r}; do not also pass variant={variant!r}")
    base = base.lower()
    if base not in eng.voices:
        examples = ", ".join(v for v in ("en-us", "en", "en-gb-x-rp", "de", "fr") if v in eng.voices)
        raise ConfigError(
            f"unknown eSpeak voice {base!r}; use one of the {len(eng.voices)} names from list_voices() "
            f"(e.g. {examples})"
        )
    if variant and variant not in eng.variants:
        raise ConfigError(
            f"unknown eSpeak voice variant {variant!r}; use one of list_variants() (e.g. f1-f5, m1-m7, klatt) or ''"
        )
    return f"{base}+{variant}" if variant else base


# ----------------------------------------------------------------------------------------------
# Resampling and event post-processing.


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by FFT (deterministic, float64 inside).

    The signal is zero-padded (at least 1024 samples, and up to a whole number of `rate_in /
    gcd` blocks so the output length is an integer), its spectrum is cut at 0.95 of the lower
    Nyquist frequency with a raised-cosine taper from 0.85 (no brick-wall ringing), and the result
    is trimmed to round(len(x) * rate_out / rate_in) samples.

    Args:
      x: float [N] signal.
      rate_in, rate_out: sample rates in Hz.

    Returns:
      float32 [round(N * rate_out / rate_in)].
    """
    x = np.asarray(x, np.float64)
    if rate_in == rate_out or x.size == 0:
        return x.astype(np.float32)
    g = np.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    n_out = round(len(x) * rate_out / rate_in)
    blocks = -(-(len(x) + 1024) // down)
    n_in_pad = blocks * down
    n_out_pad = blocks * up
    spec = np.fft.rfft(x, n_in_pad)
    n_bins = n_out_pad // 2 + 1
    freqs = np.arange(min(n_bins, spec.size)) * (rate_in / n_in_pad)
    nyq = 0.5 * min(rate_in, rate_out)
    lo, hi = 0.85 * nyq, 0.95 * nyq
    taper = np.clip((hi - freqs) / (hi - lo), 0.0, 1.0)
    taper = 0.5 - 0.5 * np.cos(np.pi * taper)
    out_spec = np.zeros(n_bins, np.complex128)
    out_spec[: len(freqs)] = spec[: len(freqs)] * taper
    y = np.fft.irfft(out_spec, n_out_pad) * (n_out_pad / n_in_pad)
    return y[:n_out].astype(np.float32)


def _event_times(rows: list[list[Any]], total: int, native_rate: int) -> np.ndarray:
    """Event start times in seconds from the sample counter, or from the ms position if it is unusable."""
    samples = np.asarray([r[-2] for r in rows], np.float64)
    ms = np.asarray([r[-1] for r in rows], np.float64)
    if len(rows) and np.all(samples >= 0) and np.all(np.diff(samples) >= 0) and samples[-1] <= total + 1:
        t = samples / native_rate
    else:
        t = np.maximum.accumulate(ms) / 1000.0 if len(rows) else ms
    return np.clip(t, 0.0, total / native_rate)


def _phoneme_track(meta: dict[str, Any], native_rate: int, duration: float
                   ) -> tuple[list[tuple[str, float, float]], list[int]]:
    """Contiguous (mnemonic, start, end) track over [0, duration] and its stress marks."""
    rows = meta["phonemes"]
    starts = _event_times(rows, meta["samples"], native_rate)
    ends = list(starts[1:]) + [duration]
    entries: list[list[Any]] = []  # [name, start, end, stress]
    for (name, *_), t0, t1 in zip(rows, starts, ends):
        stress = 0
        while name and name[0] in "',%=":
            stress = max(stress, _STRESS_MARKS.get(name[0], 0))
            name = name[1:]
        name = PAUSE if (not name or name.startswith(PAUSE)) else name
        t0, t1 = float(min(t0, duration)), float(min(max(t1, t0), duration))
        if t1 <= t0:
            continue  # zero-length events (e.g. the end-of-clause marker at the very end)
        entries.append([name, t0, t1, stress])
    # Make the track contiguous over [0, duration]: fill gaps with pauses, then merge pauses.
    filled: list[list[Any]] = []
    cursor = 0.0
    for e in entries:
        if e[1] > cursor:
            filled.append([PAUSE, cursor, e[1], 0])
        e[1] = max(e[1], cursor)
        if e[2] > e[1]:
            filled.append(e)
            cursor = e[2]
    if cursor < duration:
        filled.append([PAUSE, cursor, duration, 0])
    merged: list[list[Any]] = []
    for e in filled:
        if merged and e[0] == PAUSE and merged[-1][0] == PAUSE:
            merged[-1][2] = e[2]
        else:
            merged.append(e)
    if not merged:
        merged = [[PAUSE, 0.0, duration, 0]]
    return [(n, t0, t1) for n, t0, t1, _ in merged], [s for *_, s in merged]


def _word_track(text: str, meta: dict[str, Any], native_rate: int, duration: float,
                phonemes: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    rows = meta["words"]
    if not rows:
        return []
    starts = _event_times(rows, meta["samples"], native_rate)
    out = []
    for k, (pos, length, *_) in enumerate(rows):
        word = text[max(pos - 1, 0): max(pos - 1, 0) + max(length, 0)]
        t0 = float(starts[k])
        nxt = float(starts[k + 1]) if k + 1 < len(rows) else duration
        spoken = [(s, e) for n, s, e in phonemes if n != PAUSE and t0 <= s < nxt]
        if spoken:  # the event comes slightly before the word's first phoneme; use the phonemes
            out.append((word, spoken[0][0], spoken[-1][1]))
        else:
            out.append((word, t0, nxt))
    return out


# ----------------------------------------------------------------------------------------------
# Public entry point.


def synthesize(text: str, voice: str = "en-us", rate_wpm: int = 160, pitch: int = 50,
               variant: str = "") -> Utterance:
    """Speaks `text` with eSpeak NG and returns 16 kHz audio with phoneme and word timings.

    Deterministic: the same arguments give bit-identical results in any process, whatever was
    synthesised before (see the module docstring).

    Args:
      text: UTF-8 text (no SSML); must contain something speakable.
      voice: an eSpeak voice from `list_voices()` (e.g. ``en-us``, ``en``, ``en-gb-x-rp``),
        optionally with a variant as ``en-us+f3``.
      rate_wpm: speaking rate in words per minute (80-450).
      pitch: base pitch 0-100 (50 normal).
      variant: a variant from `list_variants()` (e.g. ``f3``, ``m3``), or '' for the voice's own.

    Returns:
      The `Utterance`.

    Raises:
      ConfigError: unknown voice or variant, or rate/pitch out of range.
      DataError: empty text or a synthesis failure.
      MissingSpeechLibraryError: espeakng-loader is missing or its library cannot be started.
    """
    text = str(text).strip()
    if not text:
        raise DataError("synthesize() got empty text; pass a sentence to speak")
    if not RATE_RANGE[0] <= int(rate_wpm) <= RATE_RANGE[1]:
        raise ConfigError(f"rate_wpm={rate_wpm} is outside eSpeak's range; use {RATE_RANGE[0]}-{RATE_RANGE[1]} wpm")
    if not 0 <= int(pitch) <= 100:
        raise ConfigError(f"pitch={pitch} is outside eSpeak's range; use 0-100 (50 is normal)")
    spec = _voice_spec(voice, variant)
    req = {"text": text, "voice": spec, "rate": int(rate_wpm), "pitch": int(pitch)}
    eng = _engine()
    try:
        meta, raw = eng.request(req)
    except _HelperGone:  # killed from outside (or crashed): start a fresh helper and retry once
        _reset_engine(eng)
        eng = _engine()
        try:
            meta, raw = eng.request(req)
        except _HelperGone:
            raise DataError(
                "the eSpeak NG helper process keeps exiting; check that `python -c 'import espeakng_loader'` works"
            ) from None
    if "error" in meta:
        raise DataError(f"eSpeak failed on {text[:40]!r} with voice {spec!r}: {meta['error']}")
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    audio = np.clip(resample(pcm, eng.native_rate, SAMPLE_RATE), -1.0, 1.0)
    duration = len(audio) / SAMPLE_RATE
    phonemes, stress = _phoneme_track(meta, eng.native_rate, duration)
    words = _word_track(text, meta, eng.native_rate, duration, phonemes)
    return Utterance(text=text, voice=spec, rate_wpm=int(rate_wpm), pitch=int(pitch), audio=audio,
                     sample_rate=SAMPLE_RATE, phonemes=phonemes, stress=stress, words=words)


__all__ = [
    "ESPEAK_RATE",
    "PAUSE",
    "SAMPLE_RATE",
    "MissingSpeechLibraryError",
    "Utterance",
    "list_variants",
    "list_voices",
    "resample",
    "synthesize",
]
