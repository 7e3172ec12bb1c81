"""Load, override and validate ml-collections configs.

A config file is a Python file with `get_config(arg=None) -> ConfigDict` (big_vision style);
`path.py:arg` passes `arg`. Command-line overrides are `--config.a.b=value`; the value is parsed to the
type of the existing field, so a misspelt key or a value of the wrong type is one clear error line
before anything is built or compiled.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
from typing import Any, Iterable, Sequence

import ml_collections

from jaxmoda.errors import ConfigError

ConfigDict = ml_collections.ConfigDict

# Keys every training config must define, under these names.
REQUIRED_KEYS = ("total_steps", "batch_size", "log_every", "checkpoint_every", "sample_every")
MESH_AXES = ("data", "fsdp", "tensor")


def _add_config_root(path: str) -> None:
    """Makes `import configs.<...>` work inside config files, wherever the command runs from."""
    d = os.path.dirname(os.path.abspath(path))
    while d != os.path.dirname(d):
        if os.path.basename(d) == "configs" and os.path.isfile(os.path.join(d, "common.py")):
            root = os.path.dirname(d)
            if root not in sys.path:
                sys.path.insert(0, root)
            return
        d = os.path.dirname(d)


def load_config_file(spec: str) -> ConfigDict:
    """Imports `path.py[:arg]` and returns its `get_config(arg)`."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist; pass --config configs/<family>/<name>.py")
    _add_config_root(path)
    module_name = "jaxmoda_config_" + os.path.splitext(os.path.basename(path))[0]
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as e:  # a config file with a bug: say which file
        raise ConfigError(f"config file {path!r} failed to import: {type(e).__name__}: {e}") from e
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} has no get_config(); define get_config(arg=None)")
    config = module.get_config(arg) if arg else module.get_config()
    if not isinstance(config, ConfigDict):
        raise ConfigError(f"get_config() in {path!r} must return an ml_collections.ConfigDict")
    return config


def _parse_value(key: str, raw: str, current: Any) -> Any:
    """Parses `raw` to the type of `current` (the field's present value)."""
    if isinstance(current, bool):
        low = raw.lower()
        if low in ("1", "true", "yes"):
            return True
        if low in ("0", "false", "no"):
            return False
        raise ConfigError(f"config.{key} expects a bool (true/false), got {raw!r}")
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"config.{key} expects an int, got {raw!r}") from None
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"config.{key} expects a float, got {raw!r}") from None
    if isinstance(current, str):
        return raw
    if isinstance(current, (tuple, list)):
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = tuple(s.strip() for s in raw.split(",") if s.strip())
        if not isinstance(value, (tuple, list)):
            value = (value,)
        return type(current)(value)
    if current is None:
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
    raise ConfigError(f"config.{key} holds a {type(current).__name__}; it cannot be set from the command line")


def _valid_keys(node: ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        name = f"{prefix}{k}"
        if isinstance(v, ConfigDict):
            keys.extend(_valid_keys(v, name + "."))
        else:
            keys.append(name)
    return keys


def apply_override(config: ConfigDict, key: str, raw: str) -> None:
    """Sets `config.<key>` (dotted) from the string `raw`, parsed to the field's type."""
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts):
        if not isinstance(node, ConfigDict) or part not in node:
            where = ".".join(parts[:i])
            choices = sorted(node.keys()) if isinstance(node, ConfigDict) else []
            hint = f"; keys under config{'.' + where if where else ''}: {', '.join(choices)}" if choices else ""
            raise ConfigError(f"unknown config key 'config.{key}'{hint}")
        if i < len(parts) - 1:
            node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ConfigDict):
        raise ConfigError(f"config.{key} is a group; set one of its fields, e.g. config.{key}.{next(iter(current.keys()))}")
    value = _parse_value(key, raw, current)
    with node.unlocked():
        node[parts[-1]] = value


def split_overrides(argv: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Splits `--config.a.b=v` (or `--config.a.b v`) arguments from the rest."""
    overrides, rest = [], []
    i = 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" in body:
                key, raw = body.split("=", 1)
            elif i + 1 < len(argv):
                key, raw = body, argv[i + 1]
                i += 1
            else:
                raise ConfigError(f"{arg} has no value; write {arg}=VALUE")
            overrides.append((key, raw))
        else:
            rest.append(arg)
        i += 1
    return overrides, rest


def load_config(spec: str, overrides: Iterable[tuple[str, str]] = ()) -> ConfigDict:
    """Loads a config file, applies overrides, validates, and returns it locked."""
    config = load_config_file(spec)
    for key, raw in overrides:
        apply_override(config, key, raw)
    validate(config)
    config.lock()
    return config


def mesh_shape(config: ConfigDict, num_devices: int) -> dict[str, int]:
    """Resolves `config.mesh` (one axis may be -1) against the device count."""
    sizes = {}
    for axis in MESH_AXES:
        if axis not in config.mesh:
            raise ConfigError(f"config.mesh.{axis} is missing; the mesh axes are {', '.join(MESH_AXES)}")
        sizes[axis] = int(config.mesh[axis])
    extra = set(config.mesh.keys()) - set(MESH_AXES)
    if extra:
        raise ConfigError(f"config.mesh has unknown axes {sorted(extra)}; the mesh axes are {', '.join(MESH_AXES)}")
    free = [a for a, s in sizes.items() if s == -1]
    if len(free) > 1:
        raise ConfigError(f"config.mesh: only one axis may be -1, got {free}")
    for a, s in sizes.items():
        if s == 0 or s < -1:
            raise ConfigError(f"config.mesh.{a}={s} is invalid; use a positive size or -1 (fill with the remaining devices)")
    fixed = 1
    for a, s in sizes.items():
        if s != -1:
            fixed *= s
    if free:
        if num_devices % fixed:
            raise ConfigError(
                f"config.mesh {_fmt(sizes)} does not divide the {num_devices} devices; "
                f"make the product of the fixed axes divide {num_devices}")
        sizes[free[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ConfigError(
            f"config.mesh {_fmt(sizes)} has {fixed} devices but {num_devices} are present; "
            f"set one axis to -1 or make the product {num_devices}")
    return sizes


def _fmt(sizes: dict[str, int]) -> str:
    return ",".join(f"{a}={s}" for a, s in sizes.items())


def validate(config: ConfigDict, num_devices: int | None = None) -> None:
    """Checks a training config; raises ConfigError with one line naming the key."""
    for key in REQUIRED_KEYS:
        if key not in config:
            raise ConfigError(f"config.{key} is missing; every training config defines {', '.join(REQUIRED_KEYS)}")
        if not isinstance(config[key], int) or config[key] <= 0:
            raise ConfigError(f"config.{key} must be a positive int, got {config[key]!r}")
    if "mesh" not in config:
        raise ConfigError("config.mesh is missing; start from configs/common.py")
    if num_devices is not None:
        sizes = mesh_shape(config, num_devices)
        batch_axes = sizes["data"] * sizes["fsdp"] * int(config.get("microbatches", 1))
        if config.get("microbatches", 1) < 1:
            raise ConfigError(f"config.microbatches must be >= 1, got {config.microbatches}")
        if config.batch_size % batch_axes:
            raise ConfigError(
                f"config.batch_size={config.batch_size} does not divide over data*fsdp*microbatches={batch_axes}; "
                f"use a multiple of {batch_axes}")
    for rule in config.get("logical_axis_rules", ()):
        if len(rule) != 2:
            raise ConfigError(f"config.logical_axis_rules entry {rule!r} must be (logical_name, mesh_axes)")
        axes = rule[1] if isinstance(rule[1], (tuple, list)) else (rule[1],)
        for axis in axes:
            if axis is not None and axis not in MESH_AXES:
                raise ConfigError(
                    f"config.logical_axis_rules maps {rule[0]!r} to unknown mesh axis {axis!r}; use {', '.join(MESH_AXES)}")


def to_json(config: ConfigDict) -> str:
    """The resolved config as JSON (tuples become lists)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def from_json(text: str) -> ConfigDict:
    """Rebuilds a ConfigDict written by `to_json` (lists inside rules become tuples again)."""

    def fix(node):
        if isinstance(node, dict):
            return {k: fix(v) for k, v in node.items()}
        if isinstance(node, list):
            return tuple(fix(v) for v in node)
        return node

    return ConfigDict(fix(json.loads(text)))
