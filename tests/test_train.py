"""The training engine end to end: compiles once, learns, resumes exactly, stops cleanly."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmoda import parallel
from jaxmoda.config import apply_override
from jaxmoda.errors import ConfigError
from jaxmoda.tasks import get_task
from jaxmoda.train.checkpoint import Checkpointer
from jaxmoda.train.loop import TrainingDiverged, model_meta, train
from jaxmoda.train.metrics import read_metrics
from jaxmoda.train.state import abstract_train_state, make_optimizer
from jaxmoda.train.setup import build_training
from tests.helpers import ROOT, SUBPROCESS_XLA_FLAGS, override_args, run_module, tiny_config


def _losses(workdir):
    return {r["step"]: r["loss"] for r in read_metrics(workdir)}


def test_train_writes_everything_and_compiles_once(tmp_path):
    config = tiny_config(total_steps=5, num_samples=4, sample_every=5)
    summary = train(config, str(tmp_path))
    assert summary["compiles"] == 1, "the jitted train step must compile once over 5 steps"
    records = read_metrics(str(tmp_path))
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    for key in ("loss", "learning_rate", "steps_per_sec", "grad_norm"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert json.load(open(tmp_path / "config.json"))["model"]["hidden"] == 32
    assert os.path.exists(tmp_path / "samples" / "step_000005.png")
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "5"]
    assert os.path.exists(tmp_path / "export" / "meta.json")
    # The sampling command reads the run back (EMA params of the latest checkpoint).
    res = run_module("jaxmoda.sample", ["--workdir", str(tmp_path), "--num", "6", "--steps", "2",
                                        "--sampler", "heun", "--out", str(tmp_path / "grid.png")])
    assert res.returncode == 0, res.stderr[-2000:]
    from PIL import Image
    assert Image.open(tmp_path / "grid.png").size == (3 * 18 + 2, 2 * 18 + 2)  # 16-px tiles, 2-px borders


def test_tiny_dit_learns_a_fixed_set():
    """200 steps on one fixed batch: the mean loss of the last 20 steps must be under 60% of the first step's.

    Flow matching keeps an irreducible part (random t and noise each step), so the ratio cannot reach 0;
    measured here it is about 0.5.
    """
    config = tiny_config(optimizer__learning_rate=2e-3, objective__cfg_dropout=0.0, objective__time_sampler="uniform",
                         ema_warmup="true")
    run = build_training(config)
    batch = run.global_batch(next(run.task.data_iterator(0, 1)))
    state, step = run.state, run.step
    losses = []
    for _ in range(200):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    first, last = losses[0], float(np.mean(losses[-20:]))
    assert last < 0.6 * first, (first, last)


def test_resume_in_a_new_process_is_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(tiny_config(total_steps=6), str(straight))
    train(tiny_config(total_steps=3), str(split))
    # The second half runs in a fresh process on the same 8-device mesh.
    res = run_module("jaxmoda.train", ["--config", "configs/dit/tiny.py", "--workdir", str(split),
                                       *override_args(total_steps=6)],
                     env_extra={"XLA_FLAGS": f"{SUBPROCESS_XLA_FLAGS} --xla_force_host_platform_device_count=8"})
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = _losses(str(straight)), _losses(str(split))
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for s in range(1, 7):
        assert abs(a[s] - b[s]) <= 1e-6, (s, a[s], b[s])
    config = tiny_config(total_steps=6)
    task = get_task(config)
    tx, _ = make_optimizer(config.optimizer)
    mesh = parallel.make_mesh(config)
    abstract, _, _ = abstract_train_state(task.build_model, tx, mesh, parallel.rules_of(config))
    meta = model_meta(config, abstract.params)
    sa = Checkpointer(str(straight / "checkpoints"), async_save=False).restore(6, abstract, None, meta)
    sb = Checkpointer(str(split / "checkpoints"), async_save=False).restore(6, abstract, None, meta)
    for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)


def test_restore_onto_another_mesh_and_continue(tmp_path):
    config = tiny_config(total_steps=3, model__hidden=64, model__num_heads=4)
    apply_override(config, "mesh.data", "8")
    train(config, str(tmp_path))
    config2 = tiny_config(total_steps=5, model__hidden=64, model__num_heads=4)
    for k, v in (("data", "1"), ("fsdp", "4"), ("tensor", "2")):
        apply_override(config2, f"mesh.{k}", v)
    summary = train(config2, str(tmp_path))
    assert summary["start_step"] == 3 and summary["step"] == 5
    losses = _losses(str(tmp_path))
    assert sorted(losses) == [1, 2, 3, 4, 5] and all(np.isfinite(list(losses.values())))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    train(tiny_config(total_steps=3), str(tmp_path))
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    # A huge learning rate blows the loss up within a few steps.
    bad = tiny_config(total_steps=200, optimizer__learning_rate=1e12, checkpoint_every=100)
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf) at step \d+; .*last good checkpoint \(step 3\) is intact"):
        train(bad, str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before


def test_sigterm_saves_and_exits_zero(tmp_path):
    args = ["--config", "configs/dit/tiny.py", "--workdir", str(tmp_path), *override_args(total_steps=100000, checkpoint_every=100000)]
    env = dict(os.environ, XLA_FLAGS=SUBPROCESS_XLA_FLAGS)
    proc = subprocess.Popen([sys.executable, "-m", "jaxmoda.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(read_metrics(str(tmp_path))) < 3:
            time.sleep(0.5)
        assert len(read_metrics(str(tmp_path))) >= 3, "training did not start in time"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    steps = [int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()]
    assert len(steps) == 1 and steps[0] >= 3


def test_microbatches_give_the_full_batch_gradient():
    """Accumulating 4 microbatches equals one full-batch gradient when the loss is deterministic."""
    from flax import nnx
    from jaxmoda.train.step import accumulate_gradients
    config = tiny_config()
    task = get_task(config)
    from jaxmoda.train.state import build_model
    model = build_model(task.build_model)
    graphdef, params = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(params)
    batch = {k: jnp.asarray(v) for k, v in task.example_batch(8).items()}

    def objective(p, b, rng):  # fixed t, no noise: the per-example losses do not depend on the rng
        out = nnx.merge(graphdef, p)(b["image"], jnp.full((b["image"].shape[0],), 0.3), b["label"])
        return jnp.mean((out - b["image"]) ** 2), {"n": jnp.float32(b["image"].shape[0])}

    (l1, m1), g1 = accumulate_gradients(objective, params, batch, jax.random.key(0), 1)
    (l4, m4), g4 = accumulate_gradients(objective, params, batch, jax.random.key(0), 4)
    assert abs(float(l1) - float(l4)) < 1e-6 and float(m4["n"]) == 2.0
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_resume_forgets_metrics_of_steps_it_redoes(tmp_path):
    from jaxmoda.train.metrics import MetricWriter
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 6)))
    MetricWriter(str(tmp_path), tensorboard=False, initial_step=3, progress_bar=False).close()
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [1, 2, 3]


def test_unrolled_layers_step_matches_the_scanned_step():
    """config.scan_layers=False (layer loop unrolled in the train step) computes the same step."""
    devices = jax.devices()[:1]
    runs = [build_training(tiny_config(scan_layers=str(scan)), devices) for scan in (True, False)]
    batch = runs[0].task.example_batch(8)
    out = [r.step(r.state, r.global_batch(batch)) for r in runs]
    assert abs(float(out[0][1]["loss"]) - float(out[1][1]["loss"])) < 1e-6
    for a, b in zip(jax.tree.leaves(out[0][0].params), jax.tree.leaves(out[1][0].params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    hlo = [r.step.lower(r.state, r.global_batch(batch)).as_text() for r in runs]
    assert hlo[0].count("while") > hlo[1].count("while")  # the layer scan is gone when unrolled


def test_host_offloaded_ema_trains_saves_and_resumes_like_the_device_ema(tmp_path):
    """config.ema_memory_kind='pinned_host': the EMA lives in host memory; losses and EMA are unchanged."""
    from jaxmoda.train.sampling import load_for_sampling
    runs = {}
    for kind in ("device", "pinned_host"):
        run = build_training(tiny_config(ema_memory_kind=kind), jax.devices()[:2])
        state, batch = run.state, run.global_batch(run.task.example_batch(8))
        for _ in range(2):
            state, m = run.step(state, batch)
        runs[kind] = (state, float(m["loss"]))
    host = runs["pinned_host"][0]
    assert all(x.sharding.memory_kind == "pinned_host" for x in jax.tree.leaves(host.ema))
    assert all(x.sharding.memory_kind == "device" for x in jax.tree.leaves(host.params))
    assert runs["device"][1] == pytest.approx(runs["pinned_host"][1], abs=1e-7)
    for a, b in zip(jax.tree.leaves(runs["device"][0].ema), jax.tree.leaves(host.ema)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-7)
    # The whole loop: checkpoint, resume, samples and export from host memory.
    cfg = dict(ema_memory_kind="pinned_host", num_samples="2", sample_every="3", total_steps="3", checkpoint_every="3")
    train(tiny_config(**cfg), str(tmp_path))
    assert train(tiny_config(**dict(cfg, total_steps="4")), str(tmp_path))["start_step"] == 3
    assert os.path.exists(tmp_path / "samples" / "step_000003.png")
    load_for_sampling(str(tmp_path))
    with pytest.raises(ConfigError, match="ema_memory_kind='gpu_host' is unknown"):
        build_training(tiny_config(ema_memory_kind="gpu_host"), jax.devices()[:1])
