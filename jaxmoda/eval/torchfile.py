"""PyTorch weight files read without PyTorch and without running their pickles' code.

A file written by `torch.save` (since 1.6) or `torch.jit.save` is a zip archive: `<root>/data.pkl`
describes the objects and `<root>/data/<key>` holds each storage's raw little-endian bytes. This
module unpickles `data.pkl` with an allow-list: tensors are rebuilt as NumPy arrays from the storage
bytes, `OrderedDict`s and TorchScript modules (`__torch__.*` classes) become plain containers, and
any other global (the way a malicious pickle runs code) is refused. The result is flattened to
{"dotted.name": array}: a state dict stays as it is; a TorchScript module gives its parameters and
buffers by attribute path (e.g. "net.layers.conv.weight").

The legacy (pre-1.6, non-zip) format is not read here: `weights.read_state_dict` hands it to
`torch.load(weights_only=True)` when torch is installed.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
# torch.save since 2.0 pickles UntypedStorage with the dtype given as a torch.<dtype> global.
_TORCH_DTYPES = {"float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
                 "float16": np.float16, "half": np.float16, "bfloat16": ml_dtypes.bfloat16,
                 "int64": np.int64, "long": np.int64, "int32": np.int32, "int": np.int32, "int16": np.int16,
                 "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


class _Dtype:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


class _Module:
    """A TorchScript module or other `__torch__` object: only its state (attributes) is kept."""

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


def _rebuild_tensor(storage, offset, size, stride, *_):
    if len(size) == 0:
        return storage[offset:offset + 1].reshape(()).copy()
    needed = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else offset
    if needed > storage.size:
        raise ValueError(f"tensor of shape {tuple(size)} reads past the end of its storage")
    view = np.lib.stride_tricks.as_strided(storage[offset:], tuple(size),
                                           tuple(s * storage.itemsize for s in stride))
    return np.array(view)


def _rebuild_parameter(data, *_):
    return data


def _identity(value, *_):
    return value


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, archive: zipfile.ZipFile, root: str):
        super().__init__(f)
        self.archive, self.root, self.storages = archive, root, {}

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Dtype(_STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _Dtype(_TORCH_DTYPES[name])
        if module == "torch.jit._pickle" and (name.startswith("build_") or name == "restore_type_tag"):
            return _identity  # TorchScript's typed lists ([1, 1] strides and paddings) and type tags
        if module.startswith("__torch__"):
            return type(name, (_Module,), {})
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (only tensors, state dicts and "
                                     "TorchScript modules are read)")

    def persistent_load(self, pid):
        kind, dtype, key, _, numel = pid[:5]
        if kind != "storage" or not isinstance(dtype, _Dtype):
            raise pickle.UnpicklingError(f"unknown persistent object {pid[:3]}")
        if key not in self.storages:
            data = self.archive.read(f"{self.root}/data/{key}")
            if len(data) < numel * dtype.dtype.itemsize:
                raise ValueError(f"storage {key} is truncated")
            self.storages[key] = np.frombuffer(data, dtype.dtype, count=numel)
        storage = self.storages[key]
        return storage if storage.dtype == dtype.dtype else storage.view(dtype.dtype)


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, _Module):
        _flatten(obj.__dict__, prefix, out)


def is_torch_zip(path: str) -> bool:
    return zipfile.is_zipfile(path) and any(n.endswith("data.pkl") for n in zipfile.ZipFile(path).namelist())


def load(path: str) -> dict[str, np.ndarray]:
    """{name: array} from a torch.save / torch.jit.save zip file (raises on anything it won't unpickle)."""
    with zipfile.ZipFile(path) as archive:
        pkls = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkls:
            raise ValueError("no <root>/data.pkl in the archive: not a PyTorch zip file")
        root = pkls[0].split("/")[0]
        with archive.open(pkls[0]) as f:
            obj = _Unpickler(f, archive, root).load()
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # Lightning-style wrappers
        obj = obj["state_dict"]
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out)
    if not out:
        raise ValueError("the file holds no tensors")
    return out
