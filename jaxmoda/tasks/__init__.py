"""Tasks glue a model family to the shared engine: how to build it, its loss, its samples, its data.

`get_task(config)` picks the task from `config.model.name`. New model families (D²iT, MoDA) add a
module here and one line to `_TASKS`; the train loop, checkpoints and entry points do not change.
"""

from __future__ import annotations

import importlib

from jaxmoda.config import ConfigDict
from jaxmoda.errors import ConfigError

_TASKS = {
    "dit": "jaxmoda.tasks.dit:DiTTask",
    "dvae": "jaxmoda.tasks.dvae:DVAETask",
    "d2it": "jaxmoda.tasks.d2it:D2iTTask",
    "moda": "jaxmoda.tasks.moda:MoDATask",
    "renderer": "jaxmoda.tasks.renderer:RendererTask",
}


def get_task(config: ConfigDict):
    name = config.model.name
    if name not in _TASKS:
        raise ConfigError(f"config.model.name={name!r} is unknown; choose one of {', '.join(sorted(_TASKS))}")
    module, cls = _TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)(config)
