"""Shared pieces of the DiT configs."""

import ml_collections

from configs.common import get_common
from jaxmoda.data.config import default_data_config
from jaxmoda.flow import default_objective_config


def dit_model(**overrides):
    m = ml_collections.ConfigDict({
        "name": "dit",
        "input_size": 32,
        "in_channels": 3,
        "patch_size": 2,
        "hidden": 384,
        "depth": 12,
        "num_heads": 6,
        "mlp_ratio": 4.0,
        "num_classes": 8,
        "attention": "xla",       # xla | cudnn | splash | auto
        "qk_norm": False,
        "remat": "none",          # none | full | dots | dots_all
        "dtype": "float32",       # compute dtype: float32 | bfloat16 (params stay param_dtype)
        "param_dtype": "float32",
    })
    m.update(overrides)
    return m


def dit_config(model, data=None, **top):
    c = get_common()
    c.model = model
    c.data = default_data_config()
    if data:
        c.data.update(data)
    c.objective = default_objective_config()
    c.update(top)
    return c
