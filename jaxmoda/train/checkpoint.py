"""The one checkpoint manager: Orbax, async, keep-N, atomic, with the data iterator and a model signature.

Layout under WORKDIR/checkpoints/<step>/:
  state/  the TrainState as a pure dict (params, opt_state, ema, step, rng)
  data/   the grain iterator state of each process
  meta/   JSON: the model config and every parameter's shape, checked before any restore
Orbax writes each step into a temporary folder and renames it when complete, so a crash mid-save
leaves the previous checkpoint intact. `export_params` writes a params-only (EMA) copy for serving.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from jaxmoda.errors import CheckpointError

log = logging.getLogger(__name__)


def param_signature(params: Any) -> dict[str, list[int]]:
    """{"path/to/param": shape} for every parameter (works on arrays and ShapeDtypeStructs)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): list(leaf.shape) for path, leaf in flat}


def describe_mismatch(saved: dict, current: dict) -> str:
    missing = [k for k in current if k not in saved]
    extra = [k for k in saved if k not in current]
    shape = [k for k in current if k in saved and list(saved[k]) != list(current[k])]
    parts = []
    if shape:
        k = shape[0]
        parts.append(f"{len(shape)} shape(s) differ, e.g. {k}: saved {saved[k]} vs now {current[k]}")
    if missing:
        parts.append(f"{len(missing)} param(s) not in the checkpoint, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected param(s), e.g. {extra[0]}")
    return "; ".join(parts)


class Checkpointer:
    """Saves and restores TrainState + data iterator + meta; all processes call every method."""

    def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, data_iterator: Any | None, meta: dict, *, force: bool = True) -> bool:
        import grain
        items = {"state": ocp.args.StandardSave(serialization.to_state_dict(state)),
                 "meta": ocp.args.JsonSave(meta)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def read_meta(self, step: int) -> dict:
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:
            raise CheckpointError(f"checkpoint {self.directory}/{step} has no readable meta ({type(e).__name__}); "
                                  "it was not written by jaxmoda or is damaged: use another --workdir") from None
        return restored["meta"]

    def check_compatible(self, step: int, meta: dict) -> None:
        """Raises CheckpointError when the checkpoint was written for another model."""
        saved = self.read_meta(step)
        if saved.get("params") != meta["params"]:
            detail = describe_mismatch(saved.get("params", {}), meta["params"])
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} was written for a different model "
                f"({saved.get('model_name', '?')}: {detail}); use a new --workdir or the config it was trained with")
        if "optimizer_layout" in meta and "optimizer_layout" in saved and saved["optimizer_layout"] != meta["optimizer_layout"]:
            changed = sorted(k for k in meta.get("optimizer", {}) if saved.get("optimizer", {}).get(k) != meta["optimizer"][k])
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} holds optimizer state of another layout "
                f"(config.optimizer changed: {', '.join(changed) or 'structure'}); resume with the original "
                "optimizer settings or use a new --workdir")

    def restore(self, step: int, abstract_state: Any, data_iterator: Any | None, meta: dict) -> Any:
        """Restores onto the shardings carried by `abstract_state` (any mesh) and the iterator in place."""
        import grain
        self.check_compatible(step, meta)
        target = serialization.to_state_dict(abstract_state)
        items = {"state": ocp.args.StandardRestore(target)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:
            raise CheckpointError(f"checkpoint {self.directory}/{step} could not be restored "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); use another --workdir") from None
        return serialization.from_state_dict(abstract_state, restored["state"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def export_params(directory: str, params: Any, meta: dict) -> None:
    """Writes a params-only checkpoint (e.g. the EMA weights) plus meta.json into `directory`."""
    directory = os.path.abspath(directory)
    ckptr = ocp.StandardCheckpointer()
    target = os.path.join(directory, "params")
    ckptr.save(target, params, force=True)
    ckptr.wait_until_finished()
    if jax.process_index() == 0:
        tmp = os.path.join(directory, "meta.json.tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=2, default=str)
        os.replace(tmp, os.path.join(directory, "meta.json"))


def load_exported_params(directory: str, abstract_params: Any, meta: dict) -> Any:
    """Loads `export_params` output onto the shardings of `abstract_params` after checking the signature."""
    path = os.path.join(os.path.abspath(directory), "meta.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"{directory} has no meta.json; pass a folder written by jaxmoda's export")
    with open(path) as f:
        saved = json.load(f)
    if saved.get("params") != meta["params"]:
        raise CheckpointError(f"export {directory} was written for a different model "
                              f"({describe_mismatch(saved.get('params', {}), meta['params'])}); pass the matching config")
    return ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(directory), "params"), abstract_params)


def to_host(tree: Any) -> Any:
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)
