"""The checked mapping from a PyTorch state dict onto a jaxmoda parameter tree.

A converter reads source tensors through a `StateReader` (which remembers every key it used and every
key it could not find or found with the wrong shape), builds {target path: array}, and `finish`
compares that with the model's abstract parameters. Anything wrong (missing keys, keys nothing used,
wrong source or target shapes) is one `CheckpointError` listing each kind with counts and examples.
Source keys a converter deliberately drops (training-only heads) are declared with `ignore(prefix,
why)` and reported in the summary, never dropped silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxmoda.errors import CheckpointError


class StateReader:
    def __init__(self, state: dict[str, np.ndarray], what: str, strip_prefixes: tuple[str, ...] = ()):
        self.what = what
        self.state = {}
        for k, v in state.items():
            for p in strip_prefixes:
                if k.startswith(p):
                    k = k[len(p):]
                    break
            self.state[k] = v
        self.used: set[str] = set()
        self.missing: list[str] = []
        self.wrong: list[str] = []
        self.ignored: dict[str, tuple[int, str]] = {}

    def has(self, key: str) -> bool:
        return key in self.state

    def __call__(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The tensor `key` (as float32 unless integer), or zeros of `shape` after recording the problem."""
        if key not in self.state:
            self.missing.append(key)
            return np.zeros(shape or (1,), np.float32)
        self.used.add(key)
        v = np.asarray(self.state[key])
        if shape is not None and tuple(v.shape) != tuple(shape):
            self.wrong.append(f"{key}: {tuple(v.shape)}, expected {tuple(shape)}")
            return np.zeros(shape, np.float32)
        return v.astype(np.float32) if v.dtype.kind == "f" or v.dtype.name == "bfloat16" else v

    def ignore(self, prefix: str, why: str) -> None:
        keys = [k for k in self.state if k == prefix or k.startswith(prefix + ".")]
        self.used.update(keys)
        if keys:
            self.ignored[prefix] = (len(keys), why)

    def _source_problems(self) -> list[tuple[str, list[str]]]:
        return [("missing", sorted(set(self.missing))), ("unexpected", sorted(set(self.state) - self.used)),
                ("of the wrong shape", self.wrong)]

    def _raise(self, groups: list[tuple[str, list[str]]]) -> None:
        problems = [f"{len(items)} {label} (e.g. {items[0]})" for label, items in groups if items]
        if problems:
            raise CheckpointError(f"not a {self.what} state dict: " + "; ".join(problems))

    def check(self) -> None:
        """Raises once for source-side problems (missing, unexpected, wrong-shape keys)."""
        self._raise(self._source_problems())

    def finish(self, produced: dict[str, np.ndarray], target: dict[str, Any]) -> dict[str, np.ndarray]:
        """Checks `produced` against the abstract `target` ({path: array-like with .shape}); raises once."""
        bad_target = sorted(k for k in set(target) & set(produced)
                            if tuple(np.shape(produced[k])) != tuple(target[k].shape))
        self._raise(self._source_problems() + [
            ("model parameters with no source", sorted(set(target) - set(produced))),
            ("converted tensors the model lacks", sorted(set(produced) - set(target))),
            ("converted to the wrong model shape",
             [f"{k}: {tuple(np.shape(produced[k]))} vs {tuple(target[k].shape)}" for k in bad_target])])
        return {k: np.asarray(produced[k]).astype(target[k].dtype) for k in target}

    def summary(self) -> str:
        parts = [f"{len(self.used)} tensors read"]
        parts += [f"ignored {n} under {p} ({why})" for p, (n, why) in self.ignored.items()]
        return "; ".join(parts)


def flat_paths(tree: Any) -> dict[str, Any]:
    """{'a.b.c': leaf} of a nested dict (an NNX pure dict of parameters)."""
    import jax
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out[".".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)] = leaf
    return out


def unflatten(flat: dict[str, Any]) -> dict:
    tree: dict = {}
    for key, v in flat.items():
        node = tree
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(int(p) if p.isdigit() else p, {})
        node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = v
    return tree


def linear(w: np.ndarray) -> np.ndarray:
    """torch Linear weight [out, in] -> Flax kernel [in, out]."""
    return np.ascontiguousarray(w.T)
