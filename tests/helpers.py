"""Small shared pieces for the tests."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from jaxmoda.config import apply_override, load_config_file, validate

# XLA flags for test subprocesses: conftest's cheap-compile flags, one device.
SUBPROCESS_XLA_FLAGS = os.environ.get("JAXMODA_TEST_XLA_FLAGS", "")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "dit", "tiny.py")

# A DiT small enough that a CPU step takes milliseconds.
TINY_OVERRIDES = {
    "model.input_size": "16", "model.patch_size": "4", "model.hidden": "32", "model.depth": "2",
    "model.num_heads": "2", "data.image_size": "16", "batch_size": "8", "total_steps": "6",
    "log_every": "1", "checkpoint_every": "3", "sample_every": "1000000", "num_samples": "0",
    "progress_bar": "false", "tensorboard": "false", "async_checkpointing": "false",
    "optimizer.warmup_steps": "0", "objective.sample_steps": "4", "data.num_examples": "512",
}


def tiny_config(**overrides):
    """configs/dit/tiny.py shrunk for tests; keyword overrides use '__' for '.' (model__hidden=64)."""
    return load_test_config(TINY, TINY_OVERRIDES, **overrides)


def load_test_config(path: str, base: dict, **overrides):
    """Loads a config file, applies `base` then keyword overrides ('__' for '.'), validates it."""
    config = load_config_file(path)
    values = dict(base)
    values.update({k.replace("__", "."): str(v) for k, v in overrides.items()})
    for key, raw in values.items():
        apply_override(config, key, raw)
    validate(config)
    return config


def override_args(**overrides) -> list[str]:
    values = dict(TINY_OVERRIDES)
    values.update({k.replace("__", "."): str(v) for k, v in overrides.items()})
    return [f"--config.{k}={v}" for k, v in values.items()]


def run_module(module: str, args: list[str], timeout: float = 300, env_extra: dict | None = None):
    """Runs `python -m module args` in a fresh process (one CPU device unless XLA_FLAGS says otherwise)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = SUBPROCESS_XLA_FLAGS
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def random_params(build, seed: int = 0, scale: float = 0.05):
    """(graphdef, params) of a model with N(0, scale^2) numpy parameters: no XLA compile of the init
    (which costs tens of seconds for conv-heavy models on CPU); for tests that only need shapes to flow."""
    import jax
    import numpy as np

    from jaxmoda.train.state import abstract_model
    graphdef, abstract = abstract_model(build)
    rng = np.random.default_rng(seed)
    shapes = jax.tree.map(lambda a: a, __import__("flax").nnx.to_pure_dict(abstract))
    return graphdef, jax.tree.map(lambda a: (scale * rng.standard_normal(a.shape)).astype(a.dtype), shapes)


def fast_module(build, seed: int = 0):
    """`build(nnx.Rngs(seed))` with the same parameters as eager construction, initialised by one jitted
    program compiled the cheap way the train state is (eager construction of a conv-heavy model spends
    seconds compiling one small program per parameter shape)."""
    import jax
    from flax import nnx

    from jaxmoda.train.state import _init_compiler_options

    def init():
        with nnx.use_eager_sharding(False):
            return nnx.split(build(nnx.Rngs(seed)))

    with nnx.use_eager_sharding(False):
        graphdef = nnx.split(nnx.eval_shape(lambda: build(nnx.Rngs(seed))))[0]
    state = jax.jit(lambda: init()[1]).lower().compile(compiler_options=_init_compiler_options())()
    return nnx.merge(graphdef, state)


def write_torch_zip(path, obj, root: str = "archive") -> None:
    """Writes `obj` (nested dicts of NumPy arrays, or TorchModule trees) in torch.save's zip layout,
    without torch: the pickle names torch's tensor rebuild function and storage classes, and the
    storages are raw bytes under <root>/data/. For testing readers on files with the official names."""
    import collections
    import io
    import pickle
    import zipfile

    import ml_dtypes

    storage_names = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float16): "HalfStorage",
                     np.dtype(ml_dtypes.bfloat16): "BFloat16Storage", np.dtype(np.int64): "LongStorage",
                     np.dtype(np.float64): "DoubleStorage", np.dtype(np.uint8): "ByteStorage"}
    storages: list[bytes] = []

    class Global:
        def __init__(self, module, name):
            self.module, self.name = module, name

        def __call__(self, *args):  # pickle only checks that a reduce function is callable
            raise TypeError

    class Storage:
        def __init__(self, array):
            self.array = array

    class Pickler(pickle._Pickler):
        dispatch = dict(pickle._Pickler.dispatch)
        dispatch[Global] = lambda self, g: self.write(pickle.GLOBAL + f"{g.module}\n{g.name}\n".encode())

        def persistent_id(self, o):
            if isinstance(o, Storage):
                storages.append(np.ascontiguousarray(o.array).tobytes())
                return ("storage", Global("torch", storage_names[o.array.dtype]), str(len(storages) - 1), "cpu",
                        o.array.size)
            return None

        def reducer_override(self, o):
            if isinstance(o, np.ndarray):
                flat = np.ascontiguousarray(o).reshape(-1)
                strides = tuple(int(s) for s in np.cumprod((1,) + o.shape[:0:-1])[::-1]) if o.ndim else ()
                return (Global("torch._utils", "_rebuild_tensor_v2"),
                        (Storage(flat), 0, tuple(o.shape), strides, False, collections.OrderedDict()))
            if isinstance(o, TorchModule):
                return (Global(o.module, o.cls), (), dict(o.attrs))
            return NotImplemented

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{root}/data.pkl", buf.getvalue())
        for i, data in enumerate(storages):
            z.writestr(f"{root}/data/{i}", data)
        z.writestr(f"{root}/version", "3\n")


class TorchModule:
    """A TorchScript module as pickled by torch.jit.save: a `__torch__.*` class with its attributes."""

    def __init__(self, cls: str, module: str = "__torch__.model", **attrs):
        self.cls, self.module, self.attrs = cls, module, attrs
