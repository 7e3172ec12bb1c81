"""python -m jaxmoda.export and jaxmoda.serve: a trained run's sampler serialised with a symbolic batch,
run without the model code, bit-exact with in-process sampling. (D²iT and MoDA round trips live beside
their trained runs: tests/test_d2it_stage2.py and tests/test_moda_task.py.)"""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmoda import export, serve
from jaxmoda.errors import ConfigError
from jaxmoda.train.loop import train
from jaxmoda.train.sampling import load_for_sampling
from tests.helpers import ROOT, tiny_config


def in_process(workdir, fn):
    """`fn(task, model, key, *inputs)` jitted on the run's EMA params, one device (what export traces)."""
    task, graphdef, ema, _, _ = load_for_sampling(str(workdir), mesh_devices=jax.devices()[:1])
    if hasattr(task, "prepare_sampling"):
        task.prepare_sampling()
    jitted = jax.jit(lambda p, key, *xs: fn(task, nnx.merge(graphdef, p), key, *xs))
    return lambda seed, *xs: jax.device_get(jitted(jax.device_get(ema), jax.random.key(seed), *map(jnp.asarray, xs)))


def test_dit_export_round_trip_any_batch_and_bad_inputs(tmp_path):
    run, out = tmp_path / "run", tmp_path / "export"
    train(tiny_config(total_steps=2, checkpoint_every=2, model__param_dtype="bfloat16"), str(run))
    assert export.main(["--workdir", str(run), "--out", str(out)]) == 0
    assert export.main(["--workdir", str(run), "--out", str(out)]) == 0  # an earlier export is replaced
    for bad in (run, tmp_path):  # the run itself, a folder holding it
        with pytest.raises(ConfigError, match="contains the run"):
            export.main(["--workdir", str(run), "--out", str(bad)])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier export"):
        export.main(["--workdir", str(run), "--out", str(tmp_path / "other")])
    meta = json.load(open(out / "meta.json"))
    assert "bfloat16" in meta["dtypes"]
    assert meta["kind"] == "dit" and meta["inputs"] == [{"name": "labels", "shape": ["b"], "dtype": "int32"}]
    served = serve.load(str(out))
    want = in_process(run, lambda task, model, key, labels: task.sample(model, key, labels.shape[0], labels=labels))
    for labels in (np.array([0, 1, 2], np.int32), np.arange(5, dtype=np.int32)):
        got = served(seed=3, labels=labels)["images"]
        assert got.shape == (len(labels), 16, 16, 3)
        np.testing.assert_array_equal(got, want(3, labels))
    assert not np.array_equal(served(seed=4, labels=labels)["images"], got)
    with pytest.raises(serve.ExportError, match="missing"):
        served(seed=0)
    with pytest.raises(serve.ExportError, match="expects"):
        served(seed=0, labels=np.zeros((2, 2), np.int32))
    # The serving side imports no model code.
    code = ("import sys, numpy as np; from jaxmoda import serve; s = serve.load(sys.argv[1]); "
            "x = s(seed=3, labels=np.arange(5, dtype=np.int32))['images']; "
            "bad = [m for m in sys.modules if m.startswith(('jaxmoda.', 'flax', 'optax', 'orbax')) and m != 'jaxmoda.serve']; "
            "print(bad, x.shape)")
    res = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "", "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 0 and res.stdout.strip() == "[] (5, 16, 16, 3)", res.stderr[-2000:]


def test_missing_or_foreign_export_folders_are_clear(tmp_path):
    with pytest.raises(serve.ExportError, match="python -m jaxmoda.export"):
        serve.load(str(tmp_path))
