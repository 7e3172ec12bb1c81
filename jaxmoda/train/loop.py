"""The training loop: config -> data -> sharded batch -> pure step on a sharded state -> metrics/checkpoints.

Every model family runs through `train(config, workdir)`; a task (jaxmoda/tasks) supplies the model,
its loss, its samples and its data.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import tempfile
import time
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxmoda import parallel
from jaxmoda.config import ConfigDict, to_json, validate
from jaxmoda.errors import DataError, JaxmodaError, WorkdirError
from jaxmoda.io.atomic import write_text
from jaxmoda.nn.logical import axis_rules
from jaxmoda.tasks import get_task
from jaxmoda.train.checkpoint import Checkpointer, export_params, param_signature
from jaxmoda.train.metrics import MetricWriter
from jaxmoda.train.setup import build_training
from jaxmoda.train.state import param_count, to_device_memory

log = logging.getLogger("jaxmoda")


class TrainingDiverged(JaxmodaError):
    """The loss became NaN or inf."""


def prepare_workdir(workdir: str) -> str:
    """Creates the workdir and proves it is writable (before any compile)."""
    if workdir.startswith("gs://"):
        raise WorkdirError(f"workdir {workdir}: gs:// paths are not written directly; mount the bucket on every host "
                           "(gcsfuse) and pass the mount point as --workdir (see launch/README.md)")
    workdir = os.path.abspath(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test_", dir=workdir)  # unique across hosts sharing it
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise WorkdirError(f"workdir {workdir} is not writable ({e.strerror or e}); pass a --workdir you can write to") from None
    return workdir


def saved_steps(workdir: str) -> list[int]:
    """Steps of the finished checkpoints in WORKDIR/checkpoints (Orbax's temporary folders excluded)."""
    folder = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def check_workdir_config(workdir: str, config: ConfigDict) -> None:
    """Refuses, before any compile, a workdir whose config.json describes a different model."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path) or not saved_steps(workdir):
        return  # nothing to resume: a new config may take the folder
    try:
        with open(path) as f:
            saved = json.load(f).get("model", {})
    except (OSError, ValueError):
        return  # unreadable: the checkpoint's own metadata decides
    saved, now = _architecture(saved), _architecture(json.loads(to_json(config)).get("model", {}))
    differ = sorted(k for k in set(saved) & set(now) if saved[k] != now[k])  # keys added later keep defaults
    if differ:
        k = differ[0]
        raise WorkdirError(
            f"workdir {workdir} was written for a different model (model.{k}={saved.get(k)!r} there, {now.get(k)!r} now; "
            f"{len(differ)} field(s) differ); pass a new --workdir or the run's own config")


# Model fields that change how a step runs, not what the parameters are: free to differ on resume.
RUNTIME_MODEL_KEYS = frozenset({"attention", "dtype", "remat", "scan_layers"})


def _architecture(model: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in model.items():
        if k in RUNTIME_MODEL_KEYS:
            continue
        if isinstance(v, dict):
            flat.update(_architecture(v, f"{prefix}{k}."))
        else:
            flat[prefix + k] = v
    return flat


def model_meta(config: ConfigDict, params: Any, opt_state: Any = None) -> dict:
    meta = {"model_name": config.model.name, "model": config.model.to_dict(), "params": param_signature(params)}
    if opt_state is not None:
        meta["optimizer"] = config.optimizer.to_dict()
        meta["optimizer_layout"] = list(param_signature(opt_state))
    return meta


class _StopFlag:
    """Preemption: SIGTERM makes the loop save a checkpoint and exit 0.

    One process: a Python SIGTERM handler sets a flag, checked after every step. Several processes:
    JAX's preemption service (started by `jax.distributed.initialize`) catches SIGTERM on any host,
    agrees on the next step all hosts can reach, and `reached_preemption_sync_point` is true there on
    every host, so all save the same step. No Python handler is installed then: it would replace the
    service's own.
    """

    def __init__(self):
        self.set = False
        self._previous = None
        self._sync = None

    def install(self):
        if jax.process_count() > 1:
            from jax._src import distributed
            if distributed.global_state.preemption_sync_manager is not None:
                from jax.experimental import multihost_utils
                self._sync = multihost_utils.reached_preemption_sync_point
                return
            log.warning("jax_enable_preemption_service is off: SIGTERM ends the processes without a checkpoint; "
                        "restarts resume from the last periodic one")
            return  # one host saving alone would wait at Orbax's barrier for hosts that never come
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread (e.g. called from a test thread): no handler
            self._previous = None

    def reached(self, step: int) -> bool:
        """Whether to save and stop after `step` (call once per step, on every process)."""
        return self._sync(step) if self._sync is not None else self.set

    def _handler(self, signum, frame):
        self.set = True

    def uninstall(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def make_sampler(task, graphdef, mesh, rules, num: int):
    """A jitted `sample(ema_params, rng) -> outputs` under the axis rules."""
    if hasattr(task, "prepare_sampling"):  # host-side loading (e.g. D²iT's DVAE decoder), before any trace
        task.prepare_sampling()
    fn = jax.jit(lambda ema, rng: task.sample(nnx.merge(graphdef, ema), rng, num))

    def run(ema, rng):
        with axis_rules(mesh, rules):
            return fn(to_device_memory(ema), rng)

    return run


def gather_to_host(x: jax.Array) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def write_samples(task, sampler, state, workdir: str, step: int, writer: MetricWriter) -> str | None:
    from jaxmoda.io.images import save_samples
    outputs = jax.tree.map(gather_to_host, sampler(state.ema, jax.random.key(12345)))
    if jax.process_index() != 0:
        return None
    path = os.path.join(workdir, "samples", f"step_{step:06d}.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_samples(outputs, path)
    if writer.tb is not None:
        from PIL import Image
        writer.add_image("samples", np.asarray(Image.open(path).convert("RGB")), step)
    return path


def train(config: ConfigDict, workdir: str) -> dict:
    """Trains (or resumes) the model of `config` in `workdir`; returns a summary dict."""
    workdir = prepare_workdir(workdir)
    check_workdir_config(workdir, config)
    parallel.maybe_initialize_distributed(config)
    validate(config, num_devices=jax.device_count())
    parallel.check_batch_layout(config)
    # Join the preemption service before the long compile and restore: a SIGTERM then is not lost.
    stop = _StopFlag()
    stop.install()
    stop.reached(max(saved_steps(workdir), default=0))
    try:  # set-up; the handler is removed again if it fails
        task = get_task(config)
        primary = jax.process_index() == 0

        try:
            data_iter = task.data_iterator(jax.process_index(), jax.process_count())
        except JaxmodaError:
            raise
        except (ValueError, OSError) as e:
            raise DataError(str(e).splitlines()[0]) from None

        run = build_training(config, task=task)
        state, mesh, rules, graphdef, step_fn = run.state, run.mesh, run.rules, run.graphdef, run.step
        meta = model_meta(config, state.params, state.opt_state)
        if primary:
            log.info("model %s: %s parameters; mesh %s; %.0f%% of parameter bytes replicated",
                     config.model.name, f"{param_count(state.params):,}", dict(mesh.shape),
                     100 * parallel.fraction_replicated(state.params))

        ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints,
                            async_save=config.async_checkpointing)
        latest = ckpt.latest_step()
        if latest is not None:
            abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
            state = ckpt.restore(latest, abstract, data_iter, meta)
            log.info("resumed from %s/checkpoints/%d", workdir, latest)
        if primary:  # only once the checkpoint is known to match: a refused run leaves the folder as it was
            write_text(os.path.join(workdir, "config.json"), to_json(config))

        sampler = make_sampler(task, graphdef, mesh, rules, config.num_samples) if config.num_samples > 0 else None
    except BaseException:
        stop.uninstall()
        raise

    step = int(jax.device_get(state.step))
    total = config.total_steps
    writer = MetricWriter(workdir, tensorboard=config.tensorboard and primary, total_steps=total, initial_step=step,
                          progress_bar=config.progress_bar)
    last_saved = latest
    pending: list[tuple[int, dict]] = []   # device metrics not yet read (read one step late)
    window: list[dict] = []
    t_window = time.perf_counter()
    steps_in_window = 0
    summary = {"start_step": step, "preempted": False}
    t_start = time.perf_counter()

    def check(entries):
        for s, m in entries:
            loss = float(jax.device_get(m["loss"]))
            if not math.isfinite(loss):
                good = f"step {last_saved}" if last_saved is not None else "none yet"
                raise TrainingDiverged(
                    f"loss is {loss} at step {s}; training stopped and the last good checkpoint ({good}) is intact: "
                    "lower config.optimizer.learning_rate or enable config.optimizer.grad_clip")
            window.append({k: float(jax.device_get(v)) for k, v in m.items()})

    try:
        while step < total:
            if stop.reached(step):
                check(pending)
                pending.clear()
                if last_saved != step:
                    ckpt.save(step, state, data_iter, meta)
                ckpt.wait()
                summary["preempted"] = True
                log.warning("SIGTERM: saved checkpoint at step %d; exiting", step)
                break
            batch = parallel.global_batch(next(data_iter), mesh, rules)
            state, metrics = step_fn(state, batch)
            step += 1
            steps_in_window += 1
            if step == summary["start_step"] + 1:  # keep compilation out of steps_per_sec
                jax.block_until_ready(metrics)
                t_window, steps_in_window = time.perf_counter(), 0
            check(pending)          # the previous step's metrics: ready by now, no stall
            pending = [(step, metrics)]
            writer.advance()
            if step % config.log_every == 0 or step == total:
                check(pending)
                pending = []
                elapsed = time.perf_counter() - t_window
                scalars = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                # The first window after (re)start excludes the compiling step when it can.
                scalars["steps_per_sec"] = (steps_in_window / max(elapsed, 1e-9) if steps_in_window
                                            else 1.0 / max(time.perf_counter() - t_start, 1e-9))
                writer.write(step, scalars)
                window.clear()
                steps_in_window, t_window = 0, time.perf_counter()
            if step % config.checkpoint_every == 0 or step == total:
                check(pending)
                pending = []
                ckpt.save(step, state, data_iter, meta)
                last_saved = step
            if sampler is not None and (step % config.sample_every == 0 or step == total):
                path = write_samples(task, sampler, state, workdir, step, writer)
                if path:
                    summary["last_samples"] = path
                t_window = time.perf_counter()
        check(pending)
        ckpt.wait()
        if step >= total and config.export_params and not summary["preempted"]:
            export_params(os.path.join(workdir, "export"), state.ema, dict(meta, step=step, config=config.to_dict()))
    finally:
        stop.uninstall()
        writer.close()
        ckpt.close()
    summary.update(step=step, compiles=step_fn.cache_size())
    return summary
