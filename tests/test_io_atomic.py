"""jaxmoda.io.atomic: the one writer of JSON, text and .npz files."""

import json
import os
import pathlib

import numpy as np
import pytest

from jaxmoda.errors import WorkdirError
from jaxmoda.io import atomic


def test_json_takes_numpy_values_and_refuses_other_objects_keeping_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    atomic.write_json(path, {"x": np.float32(0.5), "n": np.int64(3), "a": np.arange(3), "p": pathlib.Path("/d")})
    assert json.loads(path.read_text()) == {"x": 0.5, "n": 3, "a": [0, 1, 2], "p": "/d"}
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        atomic.write_json(path, {"bad": object()})
    assert json.loads(path.read_text())["n"] == 3 and os.listdir(tmp_path) == ["r.json"]   # no temporary left


def test_files_get_the_permissions_open_would_give(tmp_path):
    atomic.write_text(tmp_path / "t.txt", "hello")
    atomic.write_npz(tmp_path / "a.npz", {"z": np.zeros(2)})
    expected = 0o666 & ~atomic._UMASK
    for name in ("t.txt", "a.npz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected
    assert (tmp_path / "t.txt").read_text() == "hello" and np.load(tmp_path / "a.npz")["z"].shape == (2,)


def test_an_unwritable_place_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WorkdirError, match="cannot write .*choose a writable folder"):
        atomic.write_json(blocker / "sub" / "r.json", {})
