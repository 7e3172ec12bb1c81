"""Several processes on this machine (jax.distributed on 127.0.0.1, CPU collectives over gloo) train
together with `python -m jaxmoda.train`: the same losses as one process with the same global batch, and
a SIGTERM on one host stops all of them at one step, from which they resume."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from jaxmoda.train.loop import train
from tests.helpers import ROOT, SUBPROCESS_XLA_FLAGS, override_args, run_module, tiny_config

TIMEOUT = 240  # seconds for any group of processes; they are killed after it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir, count: int, port: int, **overrides) -> list[subprocess.Popen]:
    # No shared compilation cache: the processes would write the same entries at once.
    env = dict(os.environ, XLA_FLAGS=SUBPROCESS_XLA_FLAGS, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
               JAX_COMPILATION_CACHE_DIR="")
    return [subprocess.Popen(
        [sys.executable, "-m", "jaxmoda.train", "--config", "configs/dit/tiny.py", "--workdir", str(workdir),
         *override_args(**overrides), f"--config.distributed.coordinator_address=127.0.0.1:{port}",
         f"--config.distributed.num_processes={count}", f"--config.distributed.process_id={i}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(count)]


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    errs = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 0, err[-3000:]
            errs.append(err)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return errs


def _losses(workdir) -> dict[int, float]:
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl")) if line.strip()]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), steps  # written by process 0 alone
    return {r["step"]: r["loss"] for r in records}


def _assert_same(got: dict, want: dict):
    assert got and set(got) <= set(want), (sorted(got), sorted(want))
    for step, loss in got.items():
        assert abs(loss - want[step]) < 1e-5, (step, loss, want[step])


def test_two_and_four_processes_match_one_and_a_preempted_pair_resumes(tmp_path):
    four = tmp_path / "four"
    _finish(_start(four, 4, _free_port(), total_steps=4, checkpoint_every=4))
    assert os.path.isdir(four / "checkpoints" / "4")

    # A long two-process run; SIGTERM reaches process 1 only, once step 2 is logged.
    pair, port = tmp_path / "pair", _free_port()
    procs = _start(pair, 2, port, total_steps=100000, checkpoint_every=100000)
    deadline = time.monotonic() + TIMEOUT
    while not (os.path.exists(pair / "metrics.jsonl") and len(_losses(pair)) >= 2):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "the pair did not start"
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)
    errs = _finish(procs)
    saved = sorted(int(s) for s in os.listdir(pair / "checkpoints") if s.isdigit())
    assert len(saved) == 1, saved
    stop = saved[0]
    assert f"saved checkpoint at step {stop}" in errs[0], errs[0][-2000:]  # process 0 logs

    _finish(_start(pair, 2, _free_port(), total_steps=stop + 2, checkpoint_every=100000))
    resumed = _losses(pair)
    assert max(resumed) == stop + 2 and sorted(resumed) == list(range(1, stop + 3))

    # The reference: one process, the same global batch of 8 (here over 8 fake devices).
    one = tmp_path / "one"
    train(tiny_config(total_steps=stop + 2, checkpoint_every=100000), str(one))
    want = _losses(one)
    _assert_same(_losses(four), want)
    _assert_same(resumed, want)


def test_an_unreachable_coordinator_is_one_clear_error(tmp_path):
    res = run_module("jaxmoda.train", ["--config", "configs/dit/tiny.py", "--workdir", str(tmp_path),
                                       *override_args(), f"--config.distributed.coordinator_address=127.0.0.1:{_free_port()}",
                                       "--config.distributed.num_processes=2", "--config.distributed.process_id=1",
                                       "--config.distributed.initialization_timeout=3"], timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "did not answer within 3 s" in errors[0], res.stderr[-2000:]
