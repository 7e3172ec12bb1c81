"""Bad input ends with one clear error line (status 2), never a bare traceback."""

import os

import numpy as np
from PIL import Image

from tests.helpers import override_args, run_module


def _one_error_line(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _train(workdir, *extra, **overrides):
    return run_module("jaxmoda.train", ["--config", "configs/dit/tiny.py", "--workdir", str(workdir),
                                        *override_args(**overrides), *extra])


def test_wrong_config_key(tmp_path):
    _one_error_line(_train(tmp_path, "--config.optimizer.lr=1"), "config.optimizer.lr", "learning_rate")
    assert not os.path.exists(tmp_path / "checkpoints")


def test_corrupt_images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.jpg").write_text("hello")
    line = _one_error_line(_train(tmp_path / "run", data__source="folder", data__path=str(folder)),
                           "could not be decoded", "data.path")
    assert "broken.png" in line or "notes.jpg" in line


def test_a_few_corrupt_images_are_skipped_not_fatal(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"ok{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    res = _train(tmp_path / "run", data__source="folder", data__path=str(folder), total_steps=2, batch_size=2,
                 checkpoint_every=2)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "broken.png" in res.stderr and "skipped" in res.stderr


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _one_error_line(_train(blocker / "run"), "is not writable", "--workdir")
    # A read-only filesystem (writes under /proc fail even for root).
    _one_error_line(_train("/proc/jaxmoda_run"), "is not writable")


def test_checkpoint_from_a_different_model(tmp_path):
    assert _train(tmp_path, total_steps=1, checkpoint_every=1).returncode == 0
    before = (tmp_path / "config.json").read_text()
    _one_error_line(_train(tmp_path, total_steps=2, model__hidden=48), "different model", "--workdir")
    assert (tmp_path / "config.json").read_text() == before  # the refused run changed nothing
    res = run_module("jaxmoda.sample", ["--workdir", str(tmp_path / "nothing_here"), "--num", "2"])
    _one_error_line(res, "no config.json")
