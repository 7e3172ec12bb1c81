"""Tests for jaxmoda.d2it.tokens: neighbour copy, region-major layout, packed token sets, buckets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmoda.d2it import tokens as tk
from jaxmoda.d2it.grains import COARSE, FINE
from jaxmoda.errors import ConfigError, DataError

# Jitted once for the module (eager op-by-op dispatch is slow on CPU); neighbour copy stays eager.
_pack = jax.jit(tk.pack, static_argnames="length")
_unpack = jax.jit(tk.unpack, static_argnums=(1, 2))
_scatter = jax.jit(tk.scatter_to_dense, static_argnums=(2, 3, 4))


def _grain(rng, b, h, w, ratio=None):
    ratio = rng.uniform(0.0, 1.0) if ratio is None else ratio
    return (rng.uniform(size=(b, h, w)) < ratio).astype(np.int8)


def _latents(rng, b, h, w, c):
    z_fine = rng.standard_normal((b, 2 * h, 2 * w, c)).astype(np.float32)
    z_coarse = rng.standard_normal((b, h, w, c)).astype(np.float32)
    return z_fine, z_coarse


def _dense(rng, grain, c):
    b, h, w = grain.shape
    z_fine, z_coarse = _latents(rng, b, h, w, c)
    return np.asarray(tk.neighbour_copy(z_fine, z_coarse, grain))


def _maps(rng, b, h, w):
    """~20 random maps of varied fine ratio, plus all-coarse and all-fine."""
    maps = [_grain(rng, b, h, w) for _ in range(20)]
    return maps + [np.zeros((b, h, w), np.int8), np.ones((b, h, w), np.int8)]


def test_neighbour_copy_blocks_and_distinct_count():
    rng = np.random.default_rng(0)
    b, h, w, c = 3, 4, 5, 3
    grain = _grain(rng, b, h, w, 0.4)
    z_fine, z_coarse = _latents(rng, b, h, w, c)
    z = np.asarray(tk.neighbour_copy(z_fine, z_coarse, grain))
    assert z.shape == (b, 2 * h, 2 * w, c)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                block = z[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                if grain[n, i, j] == FINE:
                    np.testing.assert_array_equal(block, z_fine[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2])
                else:
                    assert (block.view(np.uint32) == z_coarse[n, i, j].view(np.uint32)).all()
        n_distinct = len(np.unique(z[n].reshape(-1, c), axis=0))
        assert n_distinct == h * w + 3 * int((grain[n] == FINE).sum())
    assert np.asarray(tk.is_copy_consistent(z, grain)).all()
    bad = z.copy()
    coarse = np.argwhere(grain[0] == COARSE)[0]
    bad[0, 2 * coarse[0] + 1, 2 * coarse[1]] += 1.0
    np.testing.assert_array_equal(np.asarray(tk.is_copy_consistent(bad, grain)), [False, True, True])


def test_neighbour_copy_rejects_mismatched_shapes():
    z_fine, z_coarse = _latents(np.random.default_rng(0), 1, 4, 4, 2)
    with pytest.raises(DataError, match="z_fine shape"):
        tk.neighbour_copy(z_fine[:, :7], z_coarse, np.zeros((1, 4, 4), np.int8))
    with pytest.raises(DataError, match="grain map shape"):
        tk.neighbour_copy(z_fine, z_coarse, np.zeros((1, 8, 8), np.int8))


def test_regions_layout_and_inverse():
    h, w = 3, 4
    x = jnp.arange(2 * 2 * h * 2 * w * 2).reshape(2, 2 * h, 2 * w, 2)
    reg = tk.to_regions(x)
    assert reg.shape == (2, h * w, 4, 2)
    for i in range(h):
        for j in range(w):
            for a in range(2):
                for b in range(2):
                    np.testing.assert_array_equal(reg[:, i * w + j, a * 2 + b], x[:, 2 * i + a, 2 * j + b])
    np.testing.assert_array_equal(tk.from_regions(reg, h, w), x)
    # Trailing dims are optional (per-position scalars).
    np.testing.assert_array_equal(tk.from_regions(tk.to_regions(x[..., 0]), h, w), x[..., 0])


@pytest.mark.parametrize("hw,c", [(4, 3), (16, 4)])
def test_pack_unpack_round_trip(hw, c):
    rng = np.random.default_rng(1)
    maps = _maps(rng, 2, hw, hw)
    grain = np.concatenate(maps)  # all maps in one batch: one compile
    z = _dense(rng, grain, c)
    out = np.asarray(_unpack(_pack(z, grain, 4 * hw * hw), hw, hw))
    assert (out.view(np.uint32) == z.view(np.uint32)).all()
    # The tightest bucket also round-trips: all-coarse, all-fine and a few random maps alone.
    for k in (0, 1, 2, len(maps) - 2, len(maps) - 1):
        g, zk = maps[k], z[2 * k:2 * k + 2]
        length = int(np.asarray(tk.required_length(g)).max())
        out = np.asarray(_unpack(_pack(zk, g, length), hw, hw))
        assert (out.view(np.uint32) == zk.view(np.uint32)).all()


def test_bookkeeping_order_coords_ids():
    rng = np.random.default_rng(2)
    b, h, w, c = 4, 4, 5, 2
    length = 4 * h * w + 3  # larger than all slots: only padding is added
    for grain in _maps(rng, b, h, w):
        # Not copy-consistent on purpose: a coarse token must read sub-position 0 of its block.
        z = rng.standard_normal((b, 2 * h, 2 * w, c)).astype(np.float32)
        p = jax.tree.map(np.asarray, _pack(z, grain, length))
        assert p.tokens.shape == (b, length, c) and p.length == length
        assert p.mask.dtype == bool and p.coords.dtype == np.float32
        assert p.region.dtype == np.int32 and p.sub.dtype == np.int32 and p.grain.dtype == np.int8
        need = np.asarray(tk.required_length(grain))
        np.testing.assert_array_equal(need, h * w + 3 * (grain == FINE).sum((1, 2)))
        np.testing.assert_array_equal(p.mask.sum(1), need)
        for n in range(b):
            k = need[n]
            assert p.mask[n, :k].all() and not p.mask[n, k:].any()  # real first, L - k padded
            assert (p.tokens[n, k:] == 0).all() and (p.coords[n, k:] == 0).all()
            assert (p.region[n, k:] == 0).all() and (p.sub[n, k:] == 0).all()
            assert (p.grain[n, k:] == COARSE).all()
            expect = []  # (region, sub, grain, row, col, value) in region-major order
            for i in range(h):
                for j in range(w):
                    r = i * w + j
                    if grain[n, i, j] == FINE:
                        for a in range(2):
                            for bb in range(2):
                                v = z[n, 2 * i + a, 2 * j + bb]
                                expect.append((r, a * 2 + bb, FINE, 2 * i + a, 2 * j + bb, v))
                    else:
                        expect.append((r, 0, COARSE, 2 * i + 0.5, 2 * j + 0.5, z[n, 2 * i, 2 * j]))
            assert len(expect) == k
            np.testing.assert_array_equal(p.region[n, :k], [e[0] for e in expect])
            np.testing.assert_array_equal(p.sub[n, :k], [e[1] for e in expect])
            np.testing.assert_array_equal(p.grain[n, :k], [e[2] for e in expect])
            np.testing.assert_array_equal(p.coords[n, :k], [(e[3], e[4]) for e in expect])
            np.testing.assert_array_equal(p.tokens[n, :k], np.stack([e[5] for e in expect]))
            # A coarse token and its region's fine sub-positions share the 16x16 cell.
            np.testing.assert_array_equal(np.floor(p.coords[n, :k] / 2).astype(int),
                                          np.stack([p.region[n, :k] // w, p.region[n, :k] % w], -1))


def test_bucket_length_leaves_real_tokens_identical():
    rng = np.random.default_rng(3)
    grain = _grain(rng, 3, 16, 16, 0.2)
    assert np.asarray(tk.required_length(grain)).max() <= 640
    z = _dense(rng, grain, 4)
    short, full = _pack(z, grain, 640), _pack(z, grain, 1024)
    for a, b in zip(jax.tree.leaves(short), jax.tree.leaves(full)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[:, :640])
    assert not np.asarray(full.mask)[:, 640:].any()
    np.testing.assert_array_equal(_unpack(short, 16, 16), z)
    # gather_tokens reads another dense array in the same layout without re-sorting.
    np.testing.assert_array_equal(jax.jit(tk.gather_tokens)(z, short), short.tokens)


def test_overflow_drops_trailing_tokens():
    grain = np.ones((1, 4, 4), np.int8)  # needs 64 tokens
    z = _dense(np.random.default_rng(4), grain, 2)
    p = _pack(z, grain, 40)
    assert np.asarray(tk.overflow(grain, 40)).tolist() == [True]
    assert np.asarray(tk.overflow(grain, 64)).tolist() == [False]
    assert np.asarray(p.mask).all()
    np.testing.assert_array_equal(np.asarray(p.tokens), np.asarray(_pack(z, grain, 64).tokens)[:, :40])
    out = np.asarray(_unpack(p, 4, 4))
    reg_out, reg_z = np.asarray(tk.to_regions(out)), np.asarray(tk.to_regions(z))
    np.testing.assert_array_equal(reg_out[:, :10], reg_z[:, :10])  # first 40 tokens = 10 fine regions
    assert (reg_out[:, 10:] == 0).all()


def test_check_bucket_and_bucket_for():
    grain = np.zeros((2, 16, 16), np.int8)
    grain[1, :4] = FINE  # 64 fine regions: 256 + 192 = 448 tokens
    tk.check_bucket(grain, 448)
    tk.check_bucket(grain[0], 256)
    with pytest.raises(DataError) as err:
        tk.check_bucket(grain, 447, config_key="model.bucket")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == ("image needs 448 tokens (16*16 + 3 x 64 fine regions) but the bucket length is 447; "
                   "raise config.model.bucket or lower the fine ratio")
    with pytest.raises(DataError, match="paper's 1/2"):
        tk.check_bucket(grain + 1, 1024)
    buckets = [1024, 512, 640, 768, 896]
    assert tk.bucket_for(448, buckets) == 512
    assert tk.bucket_for(512, buckets) == 512
    assert tk.bucket_for(513, buckets) == 640
    assert tk.bucket_for(np.array([300, 700]), buckets) == 768
    assert tk.bucket_for(tk.required_length(grain), buckets) == 512
    with pytest.raises(ConfigError, match="largest bucket"):
        tk.bucket_for(1025, buckets)
    with pytest.raises(ConfigError, match="empty"):
        tk.bucket_for(10, [])


def test_pack_compiles_once_for_different_maps():
    rng = np.random.default_rng(5)
    jitted = jax.jit(lambda z, g: tk.pack(z, g, 1024))  # a fresh function: its own cache
    for ratio in (0.0, 0.3, 1.0):
        grain = _grain(rng, 2, 16, 16, ratio)
        jitted(_dense(rng, grain, 4), grain)
    assert jitted._cache_size() == 1


def test_scatter_to_dense_per_token_values_and_grad():
    rng = np.random.default_rng(6)
    grain = _grain(rng, 2, 4, 4, 0.5)
    p = _pack(_dense(rng, grain, 2), grain, 64)
    ids = jnp.where(p.mask, jnp.arange(64)[None], -1)
    dense = np.asarray(_scatter(ids, p, 4, 4, -7))
    assert dense.shape == (2, 8, 8)
    reg = np.asarray(tk.to_regions(dense))
    for n in range(2):
        for r in range(16):
            fine = grain[n].reshape(-1)[r] == FINE
            assert len(set(reg[n, r])) == (4 if fine else 1)
    # d/dvalues of sum(dense): coarse tokens feed 4 positions, fine tokens 1, padding 0.
    g = jax.jit(jax.grad(lambda v: tk.scatter_to_dense(v, p, 4, 4).sum()))(jnp.ones((2, 64)))
    expect = np.where(np.asarray(p.mask), np.where(np.asarray(p.grain) == FINE, 1.0, 4.0), 0.0)
    np.testing.assert_array_equal(g, expect)


def test_pack_shards_over_batch_mesh():
    # Auto axes, as jaxmoda.parallel.make_mesh builds them (jax.make_mesh defaults to Explicit).
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    rng = np.random.default_rng(7)
    grain = _grain(rng, 8, 16, 16, 0.3)
    z = _dense(rng, grain, 4)
    shard = NamedSharding(mesh, P("data"))
    p = _pack(jax.device_put(z, shard), jax.device_put(grain, shard), length=1024)
    assert p.tokens.sharding.shard_shape(p.tokens.shape)[0] == 1
    ref = _pack(z, grain, 1024)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    out = _unpack(p, 16, 16)
    np.testing.assert_array_equal(np.asarray(out), z)
