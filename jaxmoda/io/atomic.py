"""Atomic file writes: a temporary file in the destination's folder, then os.replace.

A reader never sees a half-written file, and a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _json_default(obj: Any) -> Any:
    """NumPy scalars and arrays as Python numbers and lists, paths as strings; anything else is an error."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    from jaxmoda.errors import WorkdirError
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise WorkdirError(f"cannot write {path}: {e.strerror}; choose a writable folder") from None
    try:
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes the file private; give it open()'s permissions
        finally:
            os.close(fd)
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """An open file that replaces `path` when the block ends without error, flushed to disk first."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, **dump_kw: Any) -> None:
    """`obj` as JSON (json.dump's keywords; NumPy values and paths are converted, other objects refused)."""
    dump_kw.setdefault("default", _json_default)
    with atomic_open(path) as f:
        json.dump(obj, f, indent=indent, **dump_kw)
        f.write("\n")


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    with atomic_open(path, "wb") as f:   # a file object: np.savez adds no .npz suffix
        np.savez(f, **arrays)
