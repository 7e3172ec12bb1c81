"""Sharding: weights really split on a (data=2, fsdp=2, tensor=2) mesh; the step matches one device."""

import jax
import numpy as np

from jaxmoda import parallel
from jaxmoda.config import apply_override
from jaxmoda.nn.logical import logical_to_spec
from jaxmoda.train.setup import build_training
from tests.helpers import tiny_config


def _setup(config, devices):
    run = build_training(config, devices)
    batch_np = run.task.example_batch(config.batch_size)
    return run.mesh, run.rules, run.state, run.step, batch_np


def _mesh_config(data, fsdp, tensor):
    config = tiny_config(model__hidden=64, model__num_heads=4)
    for k, v in (("data", data), ("fsdp", fsdp), ("tensor", tensor)):
        apply_override(config, f"mesh.{k}", str(v))
    return config


def test_large_weights_are_split_on_a_2x2x2_mesh():
    config = _mesh_config(2, 2, 2)
    mesh, rules, state, _, _ = _setup(config, jax.devices())
    flat = jax.tree_util.tree_flatten_with_path(state.params)[0]
    large = [(jax.tree_util.keystr(p), x) for p, x in flat if x.size >= 4096]
    assert len(large) >= 6
    for name, x in large:
        shard = x.sharding.shard_shape(x.shape)
        frac = np.prod(shard) / np.prod(x.shape)
        assert frac in (0.5, 0.25), f"{name} {x.shape} shard {shard} is {frac} of the weight"
    # The MLP and attention matrices use both fsdp and tensor: a quarter each.
    qkv = state.params["blocks"]["blocks"]["attn"]["qkv"]["kernel"]
    assert np.prod(qkv.sharding.shard_shape(qkv.shape)) * 4 == np.prod(qkv.shape)
    # Optimizer moments and EMA follow their parameters.
    mu = state.opt_state[1][0].mu["blocks"]["blocks"]["mlp"]["fc1"]["kernel"]
    fc1 = state.params["blocks"]["blocks"]["mlp"]["fc1"]["kernel"]
    assert mu.sharding == fc1.sharding
    assert state.ema["blocks"]["blocks"]["mlp"]["fc1"]["kernel"].sharding == fc1.sharding
    assert parallel.fraction_replicated(state.params) < 0.05


def test_one_step_matches_single_device():
    config8 = _mesh_config(2, 2, 2)
    config1 = _mesh_config(-1, 1, 1)
    _, rules8, s8, step8, batch_np = _setup(config8, jax.devices())
    mesh1, rules1, s1, step1, _ = _setup(config1, jax.devices()[:1])
    mesh8 = step8.mesh
    out8, m8 = step8(s8, parallel.global_batch(batch_np, mesh8, rules8))
    out1, m1 = step1(s1, parallel.global_batch(batch_np, mesh1, rules1))
    assert abs(float(m8["loss"]) - float(m1["loss"])) < 1e-5
    for a, b in zip(jax.tree.leaves(out8.params), jax.tree.leaves(out1.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_logical_rules_skip_non_dividing_axes():
    mesh = parallel.make_mesh(_mesh_config(2, 2, 2), jax.devices())
    rules = (("embed", "fsdp"), ("mlp", "tensor"), ("act_batch", ("data", "fsdp")))
    assert tuple(logical_to_spec(("embed", "mlp"), rules, mesh, (64, 256))) == ("fsdp", "tensor")
    assert tuple(logical_to_spec(("embed", "mlp"), rules, mesh, (63, 256))) == (None, "tensor")
    assert tuple(logical_to_spec(("act_batch", None), rules, mesh, (8, 3))) == (("data", "fsdp"), None)
    assert tuple(logical_to_spec(("act_batch", None), rules, mesh, (2, 3))) == ("data", None)


def test_an_fsdp_axis_its_dimension_cannot_take_moves_to_another_parameter_dimension():
    from jax.sharding import Mesh, PartitionSpec as P
    mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(1, 4, 2), ("data", "fsdp", "tensor"))
    rules = (("embed", "fsdp"), ("mlp", "tensor"), ("layers", None))
    names = ("layers", "embed", "mlp")
    assert logical_to_spec(names, rules, mesh, (4, 8, 6)) == P(None, "fsdp", "tensor")
    # width 6 does not divide over fsdp=4: as a parameter the axis moves to the widest free dimension it
    # divides (never the layer stack); activations keep the plain rule.
    assert logical_to_spec(names, rules, mesh, (4, 6, 6), move_dropped=True) == P(None, None, "tensor")
    assert logical_to_spec(("layers", "embed", None), rules, mesh, (4, 6, 8), move_dropped=True) == P(None, None, "fsdp")
    assert logical_to_spec(("layers", "embed", None), rules, mesh, (4, 6, 8)) == P(None, None, None)
    assert logical_to_spec(("layers", "embed", None), rules, mesh, (8, 6, 6), move_dropped=True) == P(None, None, None)


def test_multi_slice_meshes_put_only_data_across_slices():
    from types import SimpleNamespace

    import pytest

    from jaxmoda.errors import ConfigError
    devices = [SimpleNamespace(id=i, slice_index=i // 4) for i in range(8)]  # two 4-chip slices
    with pytest.raises(ConfigError, match="multiple of the 2 TPU slices"):
        parallel.make_mesh(_mesh_config(1, 8, 1), devices)
