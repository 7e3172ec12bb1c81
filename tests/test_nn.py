"""Shared blocks: masked attention, embeddings, patches, the DiT forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmoda.nn.attention import Attention, check_implementation, dot_product_attention
from jaxmoda.nn.dit import DiT, DiTBlock
from jaxmoda.nn.embeddings import patchify, rope_1d, sincos_2d, timestep_features, unpatchify
from jaxmoda.nn.stack import BlockStack
from jaxmoda.train.state import build_model


def _reference_attention(q, k, v, mask):
    s = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
    s = jnp.where(mask[:, None, None, :], s, -jnp.inf)
    return jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(s, axis=-1), v)


def test_xla_attention_matches_reference():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 7, 3, 8)), jnp.float32) for _ in range(3))
    mask = jnp.asarray([[1] * 7, [1] * 4 + [0] * 3], bool)
    out = dot_product_attention(q, k, v, mask)
    np.testing.assert_allclose(out, _reference_attention(q, k, v, mask), atol=1e-5)


def test_padded_tokens_never_change_real_outputs():
    """Through a stack of masked DiT blocks, padded token values do not reach any real token (exactly)."""
    stack = build_model(lambda r: BlockStack(lambda rr: DiTBlock(32, 4, rngs=rr), 3, rngs=r))
    # adaLN-Zero starts as the identity; randomise the gates so the blocks really mix tokens.
    params = nnx.state(stack, nnx.Param)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    nnx.update(stack, jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(kk, x.shape) for x, kk in zip(leaves, keys)]))
    b, t, d = 2, 10, 32
    x = jax.random.normal(jax.random.key(2), (b, t, d))
    c = jax.random.normal(jax.random.key(3), (b, d))
    mask = jnp.arange(t)[None] < jnp.asarray([[6], [9]])
    x2 = jnp.where(mask[..., None], x, 100.0 * jax.random.normal(jax.random.key(4), x.shape))
    y1, y2 = stack(x, c, mask), stack(x2, c, mask)
    assert not np.array_equal(np.asarray(x), np.asarray(x2))
    np.testing.assert_array_equal(np.asarray(y1)[np.asarray(mask)], np.asarray(y2)[np.asarray(mask)])
    # And without the mask the padded values do change real outputs (the test can fail).
    assert not np.allclose(np.asarray(stack(x, c))[np.asarray(mask)], np.asarray(stack(x2, c))[np.asarray(mask)])


def test_patchify_roundtrip_and_order():
    x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
    p = patchify(x, 4)
    assert p.shape == (2, 4, 48)
    np.testing.assert_array_equal(p[0, 1].reshape(4, 4, 3), x[0, :4, 4:8])
    np.testing.assert_array_equal(unpatchify(p, 4, 8, 8, 3), x)


def test_position_and_time_features():
    pe = sincos_2d(16, 3, 5)
    assert pe.shape == (15, 16) and len({tuple(r) for r in np.round(pe, 6)}) == 15
    # The released DiT buffer: np.meshgrid(w, h) puts the column index first; sin then cos per axis.
    omega = 1.0 / 10000 ** (np.arange(4) / 4.0)
    rows, cols = np.divmod(np.arange(15), 5)
    axis = lambda pos: np.concatenate([np.sin(pos[:, None] * omega), np.cos(pos[:, None] * omega)], 1)
    np.testing.assert_allclose(pe, np.concatenate([axis(cols), axis(rows)], 1), atol=1e-6)
    f = timestep_features(jnp.asarray([0.0, 0.5, 1.0]), 64)
    assert f.shape == (3, 64) and np.allclose(f[0, :32], 1.0)
    x = jax.random.normal(jax.random.key(0), (1, 5, 2, 8))
    r = rope_1d(x, jnp.arange(5)[None])
    np.testing.assert_allclose(jnp.linalg.norm(r, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(r[:, 0], x[:, 0], atol=1e-6)  # position 0 is not rotated


def test_dit_forward_shapes_and_dtype():
    m = build_model(lambda r: DiT(input_size=16, in_channels=3, patch_size=4, hidden=32, depth=2, num_heads=2,
                                  num_classes=5, dtype=jnp.bfloat16, rngs=r))
    assert m.final.proj.kernel[...].dtype == jnp.float32  # params stay fp32 with bf16 compute
    out = m(jnp.ones((3, 16, 16, 3)), jnp.asarray([0.1, 0.5, 0.9]), jnp.asarray([0, 4, 5]))
    assert out.shape == (3, 16, 16, 3) and out.dtype == jnp.float32


def test_remat_policy_and_unrolled_layers_do_not_change_values():
    def make(remat):
        return build_model(lambda r: DiT(input_size=8, in_channels=1, patch_size=2, hidden=16, depth=2, num_heads=2,
                                         num_classes=2, remat=remat, rngs=r), seed=0)
    x, t, y = jnp.ones((2, 8, 8, 1)), jnp.asarray([0.3, 0.7]), jnp.asarray([0, 1])

    def loss(m):
        return jnp.sum(m(x, t, y) ** 2) + sum(jnp.sum(p ** 2) for p in jax.tree.leaves(nnx.state(m, nnx.Param)))
    g1 = jax.tree.leaves(nnx.grad(loss)(make("none")))
    g2 = jax.tree.leaves(nnx.grad(loss)(make("full")))
    from jaxmoda.nn.stack import layer_loop
    with layer_loop(scan=False):  # config.scan_layers=False: the same stacked params, unrolled
        g3 = jax.tree.leaves(nnx.grad(loss)(make("dots")))
    for a, b, c in zip(g1, g2, g3):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)


def test_attention_implementation_checks():
    check_implementation("xla")
    with pytest.raises(ValueError, match="unknown"):
        check_implementation("flash")
    if jax.default_backend() != "gpu":
        with pytest.raises(ValueError, match="needs an NVIDIA GPU"):
            check_implementation("cudnn", jnp.bfloat16)
    if jax.default_backend() != "tpu":
        with pytest.raises(ValueError, match="needs a TPU"):
            check_implementation("splash")


def test_attention_module_masks_queries_independently():
    attn = build_model(lambda r: Attention(16, 2, rngs=r))
    x = jax.random.normal(jax.random.key(0), (1, 6, 16))
    mask = jnp.asarray([[1, 1, 1, 0, 0, 0]], bool)
    full = attn(x[:, :3])
    padded = attn(x, mask)[:, :3]
    np.testing.assert_allclose(full, padded, atol=1e-6)


def test_splash_kernel_matches_xla_with_padding():
    """The TPU splash path (Pallas, run in interpret mode on CPU), alone and per shard under a mesh."""
    from jaxmoda import parallel
    from jaxmoda.nn import attention as A
    from jaxmoda.nn.logical import axis_rules
    from tests.helpers import tiny_config
    q, k, v = (jax.random.normal(jax.random.key(i), (4, 128, 2, 64)) for i in range(3))
    mask = jnp.arange(128)[None] < jnp.asarray([[128], [77], [5], [100]])
    ref = np.asarray(A._xla_attention(q, k, v, mask))
    real = np.asarray(mask)
    out = np.asarray(A._splash_attention(q, k, v, mask, interpret=True))
    np.testing.assert_allclose(out[real], ref[real], atol=1e-5)
    config = tiny_config()
    for axis, size in (("data", "2"), ("fsdp", "2"), ("tensor", "2")):
        config.mesh[axis] = int(size)
    mesh = parallel.make_mesh(config)
    with axis_rules(mesh, parallel.rules_of(config)):
        sharded = np.asarray(jax.jit(lambda a, b, c, m: A._splash_attention(a, b, c, m, interpret=True))(q, k, v, mask))
    np.testing.assert_allclose(sharded[real], ref[real], atol=1e-5)
