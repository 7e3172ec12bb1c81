"""Config loading, overrides and validation: one clear error line per mistake."""

import glob
import os

import pytest

from jaxmoda.config import apply_override, load_config, mesh_shape, split_overrides, validate
from jaxmoda.errors import ConfigError
from tests.helpers import ROOT, TINY, tiny_config


def test_overrides_are_typed():
    config = load_config(TINY, [("total_steps", "7"), ("optimizer.learning_rate", "0.5"),
                                ("data.random_flip", "false"), ("model.attention", "xla"),
                                ("data.patch_scale", "(0.2, 0.4)")])
    assert config.total_steps == 7 and isinstance(config.total_steps, int)
    assert config.optimizer.learning_rate == 0.5
    assert config.data.random_flip is False
    assert tuple(config.data.patch_scale) == (0.2, 0.4)


def test_unknown_key_names_the_key_and_the_choices():
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [("optimizer.learnig_rate", "1e-3")])
    msg = str(e.value)
    assert "config.optimizer.learnig_rate" in msg and "learning_rate" in msg and "\n" not in msg


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"config.total_steps expects an int, got 'many'"):
        load_config(TINY, [("total_steps", "many")])


def test_split_overrides():
    ov, rest = split_overrides(["--config", "x.py", "--config.a.b=1", "--workdir", "w", "--config.c", "2"])
    assert ov == [("a.b", "1"), ("c", "2")] and rest == ["--config", "x.py", "--workdir", "w"]


def test_mesh_resolution_and_errors():
    config = tiny_config()
    assert mesh_shape(config, 8) == {"data": 8, "fsdp": 1, "tensor": 1}
    apply_override(config, "mesh.fsdp", "4")
    apply_override(config, "mesh.tensor", "2")
    assert mesh_shape(config, 8) == {"data": 1, "fsdp": 4, "tensor": 2}
    apply_override(config, "mesh.tensor", "3")
    with pytest.raises(ConfigError, match="does not divide the 8 devices"):
        mesh_shape(config, 8)
    apply_override(config, "mesh.data", "2")
    apply_override(config, "mesh.tensor", "2")
    with pytest.raises(ConfigError, match="has 16 devices but 8 are present"):
        mesh_shape(config, 8)


def test_batch_must_divide_batch_axes():
    config = tiny_config(batch_size=6)
    with pytest.raises(ConfigError, match="config.batch_size=6 does not divide over data\\*fsdp\\*microbatches=8"):
        validate(config, num_devices=8)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("configs/nope.py")


@pytest.mark.parametrize("path", sorted(
    p for p in glob.glob(os.path.join(ROOT, "configs", "*", "*.py"))
    if "def get_config" in open(p).read()))
def test_every_config_file_loads_and_validates(path):
    config = load_config(path)
    validate(config)
    assert config.total_steps > 0 and config.batch_size > 0


def test_config_variants_load_and_a_bad_variant_names_the_choices():
    small, tiny = load_config("configs/moda/renderer_small.py"), load_config("configs/moda/renderer_small.py:tiny")
    assert small.model.base_ch == 2 * tiny.model.base_ch and small.batch_size == tiny.batch_size == 64
    with pytest.raises(ConfigError, match=":small .* or :tiny"):
        load_config("configs/moda/renderer_small.py:huge")
