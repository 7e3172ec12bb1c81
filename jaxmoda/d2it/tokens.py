"""D²iT dual-grain latent layouts: neighbour copy, region-major blocks, packed token sets.

Notation: a grain map `grain_bhw` is int8 [B, h, w] over 16-px regions (COARSE=0 / FINE=1, from
`jaxmoda.d2it.grains`); the fine latent grid is [B, 2h, 2w, C] (f=8) and the coarse one [B, h, w, C]
(f=16). Region r = i*w + j is row-major; sub-position q = a*2 + b is offset (a, b) in its 2x2 block.

Three layouts of the same latent:
  * dense   [B, 2h, 2w, C]: what the DVAE decoder eats; coarse blocks hold 4 bit-identical copies.
  * regions [B, h*w, 4, C]: `to_regions` / `from_regions`; sub-position 0 is a coarse block's value.
  * packed  `Packed` of fixed length L (a config bucket): one token per coarse region (its sub-position
    0) and four per fine region, region-major, real tokens first and padding at the end (right padding,
    as the cuDNN attention path needs).

Everything here is a pure jnp function with static shapes, jittable with `length` static. Inside jit,
`pack` cannot raise: a map that needs more than L tokens (`overflow`) silently loses its last tokens
(and `unpack` leaves their dense positions at zero), so data pipelines call the host-side
`check_bucket` (or `bucket_for`) before batching. Batch-sharded inputs work on Auto-axis meshes (as
`jaxmoda.parallel.make_mesh` builds); an Explicit-axis mesh (jax.make_mesh's default) rejects the
block reshape in `to_regions`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxmoda.d2it.grains import COARSE, FINE
from jaxmoda.errors import ConfigError, DataError


@flax.struct.dataclass
class Packed:
    """A fixed-length dual-grain token set; a jax pytree of arrays.

    Padding slots (mask False) hold tokens 0, coords (0, 0), region 0, sub 0 and grain COARSE; mask
    keys with `mask` in attention and zero padded outputs before any pooling or loss.
    """

    tokens: jax.Array  # [B, L, C], dtype of z_dense: fine code, or a coarse block's sub-position 0
    mask: jax.Array    # bool [B, L], True = real token; real tokens first
    coords: jax.Array  # float32 [B, L, 2] (row, col) in fine-grid units; coarse = (2i+.5, 2j+.5)
    region: jax.Array  # int32 [B, L], region id i*w + j
    sub: jax.Array     # int32 [B, L], sub-position a*2 + b for fine tokens, 0 for coarse
    grain: jax.Array   # int8 [B, L], COARSE or FINE

    @property
    def length(self) -> int:
        """The static bucket length L."""
        return self.tokens.shape[1]


def _check_grain_shape(grain_bhw: jax.Array, h: int, w: int, what: str) -> None:
    if grain_bhw.ndim != 3 or tuple(grain_bhw.shape[1:]) != (h, w):
        raise DataError(
            f"grain map shape {tuple(grain_bhw.shape)} does not match {what}; "
            f"pass an int8 [B, {h}, {w}] map (one cell per 2x2 fine block)"
        )


def _is_fine(grain: jax.Array) -> jax.Array:
    return grain == jnp.asarray(FINE, grain.dtype)


def _up2(x_bhw: jax.Array) -> jax.Array:
    """Nearest x2 upsampling of axes 1 and 2: [B, h, w, ...] -> [B, 2h, 2w, ...]."""
    return jnp.repeat(jnp.repeat(x_bhw, 2, axis=1), 2, axis=2)


def neighbour_copy(z_fine: jax.Array, z_coarse: jax.Array, grain_bhw: jax.Array) -> jax.Array:
    """Forms the dense latent: coarse codes copied to their 2x2 fine positions.

    Args:
      z_fine: [B, 2h, 2w, C], the f=8 latent.
      z_coarse: [B, h, w, C], the f=16 latent.
      grain_bhw: int8 [B, h, w], COARSE / FINE.

    Returns:
      z_dense [B, 2h, 2w, C]: z_fine where the region is fine, bit-identical copies of
      z_coarse[b, i, j] on the whole block 2i:2i+2, 2j:2j+2 where it is coarse.
    """
    b, h, w, c = z_coarse.shape
    if z_fine.shape != (b, 2 * h, 2 * w, c):
        raise DataError(
            f"z_fine shape {tuple(z_fine.shape)} does not match z_coarse {tuple(z_coarse.shape)}; "
            f"the fine latent must be [B, 2h, 2w, C] = {(b, 2 * h, 2 * w, c)}"
        )
    _check_grain_shape(grain_bhw, h, w, f"z_coarse {tuple(z_coarse.shape)}")
    fine = _up2(_is_fine(grain_bhw))[..., None]
    return jnp.where(fine, z_fine, _up2(z_coarse).astype(z_fine.dtype))


def to_regions(x_dense: jax.Array) -> jax.Array:
    """Region-major view: [B, 2h, 2w, ...] -> [B, h*w, 4, ...], sub-position q = a*2 + b."""
    b, hh, ww = x_dense.shape[:3]
    if hh % 2 or ww % 2:
        raise DataError(f"dense latent shape {tuple(x_dense.shape)} needs even height and width (2h, 2w)")
    h, w, rest = hh // 2, ww // 2, x_dense.shape[3:]
    x = x_dense.reshape((b, h, 2, w, 2) + rest)
    x = jnp.moveaxis(x, 2, 3)  # [B, h, w, a, b, ...]
    return x.reshape((b, h * w, 4) + rest)


def from_regions(x_reg: jax.Array, h: int, w: int) -> jax.Array:
    """Inverse of `to_regions`: [B, h*w, 4, ...] -> [B, 2h, 2w, ...]."""
    b, n, four = x_reg.shape[:3]
    if n != h * w or four != 4:
        raise DataError(
            f"region array shape {tuple(x_reg.shape)} does not match h={h}, w={w}; expected [B, {h * w}, 4, ...]"
        )
    rest = x_reg.shape[3:]
    x = x_reg.reshape((b, h, w, 2, 2) + rest)
    x = jnp.moveaxis(x, 3, 2)  # [B, h, a, w, b, ...]
    return x.reshape((b, 2 * h, 2 * w) + rest)


def is_copy_consistent(z_dense: jax.Array, grain_bhw: jax.Array) -> jax.Array:
    """bool [B]: every coarse block's 4 vectors equal (==) its sub-position 0. NaN is never consistent."""
    z_reg = to_regions(z_dense)
    b, n = z_reg.shape[:2]
    h, w = z_dense.shape[1] // 2, z_dense.shape[2] // 2
    _check_grain_shape(grain_bhw, h, w, f"z_dense {tuple(z_dense.shape)}")
    same = jnp.all((z_reg == z_reg[:, :, :1]).reshape(b, n, -1), axis=-1)
    return jnp.all(same | _is_fine(grain_bhw).reshape(b, n), axis=-1)


def required_length(grain_bhw: jax.Array) -> jax.Array:
    """int32 [B]: tokens a map needs, h*w + 3 * N_fine."""
    _, h, w = grain_bhw.shape
    return h * w + 3 * jnp.sum(_is_fine(grain_bhw), axis=(1, 2), dtype=jnp.int32)


def overflow(grain_bhw: jax.Array, length: int) -> jax.Array:
    """bool [B]: True where the map needs more than `length` tokens (pack would drop some)."""
    return required_length(grain_bhw) > length


def clip_to_length(grain_bhw: jax.Array, length: int) -> jax.Array:
    """Makes every map fit `length` tokens: fine regions past the budget (region-major order) turn coarse.

    The in-graph counterpart of `check_bucket` for generated maps (the DGT's samples); maps that fit
    are returned unchanged.
    """
    b, h, w = grain_bhw.shape
    fine = _is_fine(grain_bhw).reshape(b, h * w)
    need = h * w + 3 * jnp.cumsum(fine, axis=1, dtype=jnp.int32)  # tokens used up to and including r
    keep = fine & (need <= length)
    return jnp.where(keep, jnp.asarray(FINE, grain_bhw.dtype), jnp.asarray(COARSE, grain_bhw.dtype)).reshape(b, h, w)


def _take(values: jax.Array, idx_bn: jax.Array) -> jax.Array:
    """values [B, M, ...], idx int [B, N] -> [B, N, ...] (per-example gather along axis 1)."""
    return jax.vmap(lambda v, i: jnp.take(v, i, axis=0))(values, idx_bn)


def _where_mask(mask_bl: jax.Array, x: jax.Array, fill=0) -> jax.Array:
    m = mask_bl.reshape(mask_bl.shape + (1,) * (x.ndim - mask_bl.ndim))
    return jnp.where(m, x, jnp.asarray(fill, x.dtype))


def pack(z_dense: jax.Array, grain_bhw: jax.Array, length: int) -> Packed:
    """Packs a dense latent into a fixed-length token set (`length` static).

    Token order is stable and region-major: region 0's token(s), then region 1's, ...; a fine region
    gives sub-positions 0..3, a coarse region one token (its sub-position 0; the other 3 copies are not
    read, so gradients reach only sub-position 0 of coarse blocks). Tokens beyond `length` are dropped
    without error (jit cannot raise): call `check_bucket` on the host, or use `overflow` in-graph.

    Args:
      z_dense: [B, 2h, 2w, C] dense latent (normally copy-consistent).
      grain_bhw: int [B, h, w], COARSE / FINE.
      length: static bucket length L >= 1; L > 4*h*w only adds padding.

    Returns:
      `Packed` with tokens [B, L, C] and mask/coords/region/sub/grain [B, L(, 2)].
    """
    b, hh, ww = z_dense.shape[:3]
    h, w = hh // 2, ww // 2
    _check_grain_shape(grain_bhw, h, w, f"z_dense {tuple(z_dense.shape)}")
    length = int(length)
    if length < 1:
        raise ConfigError(f"bucket length {length} must be >= 1; set config bucket lengths to positive ints")
    n_slots = 4 * h * w  # candidate slot s = region*4 + sub
    fine_r = _is_fine(grain_bhw).reshape(b, h * w)
    valid_s = (jnp.arange(n_slots) % 4 == 0)[None] | jnp.repeat(fine_r, 4, axis=1)  # [B, S]
    order = jnp.argsort(~valid_s, axis=1, stable=True).astype(jnp.int32)  # real slots first, in order
    keep = min(length, n_slots)
    slot = order[:, :keep]
    mask = jnp.take_along_axis(valid_s, slot, axis=1)
    if keep < length:
        pad = ((0, 0), (0, length - keep))
        slot, mask = jnp.pad(slot, pad), jnp.pad(mask, pad)
    region, sub = slot // 4, slot % 4
    is_fine = jnp.take_along_axis(fine_r, region, axis=1) & mask
    i, j = (region // w).astype(jnp.float32), (region % w).astype(jnp.float32)
    a = jnp.where(is_fine, sub // 2, 0.5).astype(jnp.float32)
    bb = jnp.where(is_fine, sub % 2, 0.5).astype(jnp.float32)
    coords = jnp.stack([2 * i + a, 2 * j + bb], axis=-1)
    tokens = _take(to_regions(z_dense).reshape((b, n_slots) + z_dense.shape[3:]), slot)
    return Packed(
        tokens=_where_mask(mask, tokens),
        mask=mask,
        coords=_where_mask(mask, coords),
        region=_where_mask(mask, region),
        sub=_where_mask(mask, sub),
        grain=jnp.where(is_fine, jnp.int8(FINE), jnp.int8(COARSE)),
    )


def gather_tokens(x_dense: jax.Array, packed: Packed) -> jax.Array:
    """Reads any dense array in `packed`'s token layout: [B, 2h, 2w, ...] -> [B, L, ...].

    Same as `pack(x_dense, grain, L).tokens` without re-sorting (e.g. for noise or targets); a coarse
    token reads sub-position 0 of its block; padded slots are 0.
    """
    b = x_dense.shape[0]
    x_slots = to_regions(x_dense).reshape((b, -1) + x_dense.shape[3:])
    return _where_mask(packed.mask, _take(x_slots, packed.region * 4 + packed.sub))


def scatter_to_dense(values: jax.Array, packed: Packed, h: int, w: int, fill=0) -> jax.Array:
    """Writes per-token values back to the dense grid: [B, L, ...] -> [B, 2h, 2w, ...].

    A coarse token's value goes to all 4 positions of its block, a fine token's to its own position;
    positions with no real token (only when `pack` dropped tokens) get `fill`. Implemented as an int
    scatter of token ids followed by a gather, so gradients w.r.t. `values` sum over a coarse block.
    """
    b, length = packed.mask.shape
    n_slots = 4 * h * w
    q = jnp.arange(4, dtype=jnp.int32)
    fine = (packed.grain == FINE)[..., None]
    dest = packed.region[..., None] * 4 + jnp.where(fine, packed.sub[..., None], q)  # [B, L, 4]
    writes = packed.mask[..., None] & (~fine | (q == 0))
    dest = jnp.where(writes, dest, n_slots).reshape(b, length * 4)  # n_slots = out of range, dropped
    ids = jnp.broadcast_to(jnp.repeat(jnp.arange(length, dtype=jnp.int32), 4), (b, length * 4))
    src = jax.vmap(lambda d, i: jnp.full((n_slots,), -1, jnp.int32).at[d].set(i, mode="drop"))(dest, ids)
    dense = _where_mask(src >= 0, _take(values, jnp.maximum(src, 0)), fill)
    return from_regions(dense.reshape((b, h * w, 4) + values.shape[2:]), h, w)


def unpack(packed: Packed, h: int, w: int) -> jax.Array:
    """Inverse of `pack`: tokens -> z_dense [B, 2h, 2w, C], coarse tokens broadcast to their block.

    unpack(pack(z, G, L), h, w) == z exactly when z is copy-consistent for G and L >= required_length.
    """
    return scatter_to_dense(packed.tokens, packed, h, w)


def check_bucket(grain_np: np.ndarray, length: int, config_key: str = "d2it.bucket") -> None:
    """Host-side check, before jit, that every map fits a bucket of `length` tokens.

    Args:
      grain_np: integer numpy [h, w] or [B, h, w] grain map(s) with values COARSE / FINE.
      length: the bucket length L.
      config_key: the config key named in the error message.

    Raises:
      DataError: one line, for values other than COARSE/FINE or a map needing more than L tokens.
    """
    g = np.asarray(grain_np)
    if g.ndim == 2:
        g = g[None]
    if g.ndim != 3:
        raise DataError(f"grain map shape {g.shape} is not [h, w] or [B, h, w]; pass the 16-px region grain map")
    if not np.isin(g, (COARSE, FINE)).all():
        raise DataError(
            f"grain map holds values {np.unique(g).tolist()}; use COARSE={int(COARSE)} / FINE={int(FINE)} "
            "(from jaxmoda.d2it.grains), not the paper's 1/2"
        )
    need = g.shape[1] * g.shape[2] + 3 * np.sum(g == FINE, axis=(1, 2))
    worst = int(np.argmax(need))
    if need[worst] > length:
        n_fine = int(np.sum(g[worst] == FINE))
        raise DataError(
            f"image needs {int(need[worst])} tokens ({g.shape[1]}*{g.shape[2]} + 3 x {n_fine} fine regions) "
            f"but the bucket length is {int(length)}; raise config.{config_key} or lower the fine ratio"
        )


def bucket_for(max_required, buckets: Sequence[int], config_key: str = "d2it.buckets") -> int:
    """The smallest bucket >= max_required (an int, or an array whose max is taken)."""
    need = int(np.max(np.asarray(max_required)))
    sizes = sorted(int(x) for x in buckets)
    if not sizes:
        raise ConfigError(f"config.{config_key} is empty; list bucket lengths such as [512, 640, 768, 896, 1024]")
    for size in sizes:
        if size >= need:
            return size
    raise ConfigError(
        f"a batch needs {need} tokens but the largest bucket in config.{config_key} is {sizes[-1]}; "
        f"add a bucket >= {need} or lower the fine ratio"
    )
