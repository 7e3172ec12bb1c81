"""Two processes on this machine (jax.distributed on 127.0.0.1) train one step together."""

import json
import os
import socket
import subprocess
import sys

import jax

from jaxmoda.train.setup import build_training
from tests.helpers import ROOT, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_device_loss() -> float:
    config = tiny_config()
    run = build_training(config, jax.devices()[:1])
    _, metrics = run.step(run.state, run.global_batch(run.task.example_batch(config.batch_size)))
    return float(metrics["loss"])


def test_two_processes_agree_on_the_loss():
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="", PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "dist_worker.py"), str(port), "2", str(i)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-3000:]
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert {o["process"] for o in outs} == {0, 1} and all(o["devices"] == 2 for o in outs)
    assert outs[0]["loss"] == outs[1]["loss"]
    assert abs(outs[0]["loss"] - _single_device_loss()) < 1e-5
