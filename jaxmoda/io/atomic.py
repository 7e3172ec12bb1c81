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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    from jaxmoda.errors import WorkdirError
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=folder)
    except OSError as e:
        raise WorkdirError(f"cannot write {path}: {e.strerror}; choose a writable folder") from None
    os.fchmod(fd, 0o644)  # mkstemp makes the file private; these files are shared like any output
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, **dump_kw: Any) -> None:
    """`obj` as JSON (json.dump's keywords; values JSON cannot hold are written with str by default)."""
    dump_kw.setdefault("default", str)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent, **dump_kw)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path, ".npz") as tmp:  # np.savez appends .npz to names without it
        np.savez(tmp, **arrays)
