"""The one attention of jaxmoda: multi-head attention with padding masks, behind one dispatcher.

Layout is [batch, tokens, heads, head_dim] everywhere. A padding mask is a bool [batch, tokens]
(True = real token). Padded keys never contribute to a real query's output (their softmax weight is
exactly zero), so the values stored at padded positions cannot change a real output. Outputs at padded
queries are well defined but meaningless; callers mask them in losses and pooling.

Implementations (config `attention`):
  xla:    plain XLA softmax attention (fp32 scores); any mask, any dtype, every backend.
  cudnn:  the fused cuDNN kernel (NVIDIA GPUs, bf16/fp16). Masks are passed as sequence lengths,
          so they must be right-padded (real tokens first), which every jaxmoda token packer guarantees.
  splash: the TPU Pallas splash-attention kernel with segment ids for padding (TPU only; the tests
          run the same kernel in Pallas interpret mode on CPU, alone and per shard under a mesh).
  auto:   cudnn on GPU for bf16/fp16 inputs, splash on TPU, xla otherwise.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmoda.nn import logical

IMPLEMENTATIONS = ("xla", "cudnn", "splash", "auto")


def check_implementation(name: str, dtype=jnp.float32) -> None:
    """Raises a one-line ValueError when `name` cannot run here (called before compiling)."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation {name!r} is unknown; choose one of {', '.join(IMPLEMENTATIONS)}")
    backend = jax.default_backend()
    if name == "cudnn":
        if backend != "gpu":
            raise ValueError(f"attention='cudnn' needs an NVIDIA GPU but the backend is {backend!r}; use attention='xla' or 'auto'")
        if jnp.dtype(dtype) not in (jnp.bfloat16, jnp.float16):
            raise ValueError(f"attention='cudnn' needs dtype bfloat16 or float16, got {jnp.dtype(dtype).name}; set the model dtype to bfloat16")
    if name == "splash" and backend != "tpu":
        raise ValueError(f"attention='splash' needs a TPU but the backend is {backend!r}; use attention='xla' or 'auto'")


def resolve(name: str, dtype) -> str:
    if name != "auto":
        return name
    backend = jax.default_backend()
    if backend == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
        return "cudnn"
    if backend == "tpu":
        return "splash"
    return "xla"


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None, *,
                          implementation: str = "xla") -> jax.Array:
    """Non-causal attention. q [B,T,H,D], k/v [B,S,H,D], mask bool [B,S] (True = real) or None.

    For `cudnn` and `splash` the mask is also applied to queries (it must be the same token set,
    i.e. self-attention), which only changes outputs at padded queries.
    """
    impl = resolve(implementation, q.dtype)
    if impl == "xla":
        return _xla_attention(q, k, v, mask)
    if impl == "cudnn":
        lengths = None if mask is None else jnp.sum(mask, axis=-1, dtype=jnp.int32)
        return jax.nn.dot_product_attention(
            q, k, v, query_seq_lengths=lengths if q.shape[1] == k.shape[1] else None,
            key_value_seq_lengths=lengths, implementation="cudnn")
    if impl == "splash":
        return _splash_attention(q, k, v, mask)
    raise ValueError(f"attention implementation {implementation!r} is unknown; choose one of {', '.join(IMPLEMENTATIONS)}")


def _xla_attention(q, k, v, mask):
    """Plain softmax attention in head-major layout (faster on CPU than the token-major einsums).

    Scores and softmax are computed in fp32. Padded keys get the most negative finite score, so their
    weight underflows to exactly 0 and their values never reach a real query.
    """
    scale = q.shape[-1] ** -0.5
    qh, kh, vh = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))  # [B, H, T, D]
    s = jnp.einsum("bhtd,bhsd->bhts", qh, kh, preferred_element_type=jnp.float32) * scale
    if mask is not None:
        s = jnp.where(mask[:, None, None, :], s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.swapaxes(jnp.einsum("bhts,bhsd->bhtd", p, vh), 1, 2)


@functools.lru_cache(maxsize=32)
def _splash_kernel(num_heads: int, q_len: int, kv_len: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm
    mask = sm.MultiHeadMask([sm.FullMask((q_len, kv_len)) for _ in range(num_heads)])
    block = min(512, q_len, kv_len)
    sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                          block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                          block_q_dq=block, block_kv_dq=block)
    return sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, block_sizes=sizes, interpret=interpret)


def _splash_attention(q, k, v, mask, interpret: bool = False):
    """Splash attention per example; padding via segment ids (pads form segment 0, real tokens 1)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    b, t, h, d = q.shape
    kernel = _splash_kernel(h, t, k.shape[1], interpret)
    scale = d ** -0.5
    qh, kh, vh = (jnp.swapaxes(x, 1, 2) for x in (q * scale, k, v))  # [B,H,T,D]
    if mask is None:
        mask = jnp.ones((b, k.shape[1]), bool)
    seg = mask.astype(jnp.int32)

    def one(qi, ki, vi, si):
        return kernel(qi, ki, vi, segment_ids=sk.SegmentIds(q=si if t == k.shape[1] else jnp.ones((t,), jnp.int32), kv=si))

    ctx = logical.current_rules()
    if ctx is None:
        out = jax.vmap(one)(qh, kh, vh, seg)
    else:  # Pallas kernels are not auto-partitioned: run per shard over batch and heads.
        mesh, rules = ctx
        from jax.sharding import PartitionSpec as P
        bspec = logical.logical_to_spec(("act_batch", "act_heads", None, None), rules, mesh, qh.shape)
        sspec = P(bspec[0], None)
        out = jax.shard_map(lambda a, b_, c, s: jax.vmap(one)(a, b_, c, s), mesh=mesh,
                            in_specs=(bspec, bspec, bspec, sspec), out_specs=bspec, check_vma=False)(qh, kh, vh, seg)
    return jnp.swapaxes(out, 1, 2)


class Attention(nnx.Module):
    """Multi-head self-attention with a fused q/k/v projection and optional RoPE and QK-norm."""

    def __init__(self, dim: int, num_heads: int, *, implementation: str = "xla", qk_norm: bool = False,
                 qk_norm_eps: float = 1e-6, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by num_heads={num_heads}")
        head_dim = dim // num_heads
        self.num_heads, self.head_dim, self.implementation = num_heads, head_dim, implementation
        init_qkv = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0, out_axis=(2, 3), batch_axis=(1,))
        init_out = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1), out_axis=2)
        self.qkv = nnx.Einsum(
            "btd,dxhk->btxhk", (dim, 3, num_heads, head_dim), (3, num_heads, head_dim),
            kernel_init=nnx.with_partitioning(init_qkv, ("embed", "qkv", "heads", "head_dim")),
            bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("qkv", "heads", "head_dim")),
            dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.out = nnx.Einsum(
            "bthk,hkd->btd", (num_heads, head_dim, dim), (dim,),
            kernel_init=nnx.with_partitioning(init_out, ("heads", "head_dim", "embed")),
            bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)),
            dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if qk_norm:
            self.q_norm = nnx.RMSNorm(head_dim, epsilon=qk_norm_eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            self.k_norm = nnx.RMSNorm(head_dim, epsilon=qk_norm_eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        else:
            self.q_norm = self.k_norm = None

    def project(self, x_btd: jax.Array, rope=None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """q, k, v [B, T, H, Dh] of one token stream (qk-normed, then rotated by `rope` if given)."""
        qkv = self.qkv(x_btd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        names = ("act_batch", "act_tokens", "act_heads", None)
        return tuple(logical.constrain(a, names) for a in (q, k, v))

    def attend(self, q: jax.Array, k: jax.Array, v: jax.Array, mask_bt: jax.Array | None = None) -> jax.Array:
        """Attention of (possibly several streams') concatenated q/k/v: [B, T, H, Dh]."""
        o = dot_product_attention(q, k, v, mask_bt, implementation=self.implementation)
        return logical.constrain(o, ("act_batch", "act_tokens", "act_heads", None))

    def __call__(self, x_btd: jax.Array, mask_bt: jax.Array | None = None, rope=None) -> jax.Array:
        return self.out(self.attend(*self.project(x_btd, rope), mask_bt))
