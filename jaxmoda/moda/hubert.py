"""HuBERT-base / wav2vec2-base speech encoder in Flax NNX (architecture only) and MoDA's 25-fps read-out.

MoDA conditions its motion generator on the hidden states of TencentGameMate `chinese-hubert-base`
(section 3.1 of the MoDA brief). This module builds that encoder so converted weights can be loaded
later; it ships no weights. Architecture (post-norm, "base"; Hugging Face `do_stable_layer_norm=False`,
`feat_extract_norm="group"`):

    wave [B, N] -> conv feature extractor: 7 x (Conv1d no bias -> [GroupNorm on layer 0] -> GELU),
        512 channels, kernels (10, 3, 3, 3, 3, 2, 2), strides (5, 2, 2, 2, 2, 2, 2): 320x down-sampling,
        T50 = ~N / 320 - 1 frames (49 for 1 s)
    -> feature projection: LayerNorm(512) -> Linear 512 -> 768
    -> + GELU(grouped Conv1d(768, kernel 128, 16 groups, "same" padding, last step dropped))
    -> LayerNorm                                            -> hidden state 0
    -> 12 x [x = LN(x + MHA(x)); x = LN(x + FFN(x))]        -> hidden states 1..12
       (12 heads, FFN 768 -> 3072 -> 768, exact-erf GELU, eps 1e-5 everywhere)

`HubertModel.__call__` returns all 13 hidden states [B, 13, T, 768]. With `num_frames` it applies
MoDA's "presample": the 50-Hz CNN features are linearly interpolated (align_corners=True) to exactly
`num_frames` 25-fps frames *before* the projection and transformer, which is what MoDA's audio
processor does. `to_video_rate` is the alternative that resamples the 50-Hz outputs afterwards.
Dropout, layer drop and time masking are training-only and not implemented.

Parameter names mirror Hugging Face `HubertModel` (and `Wav2Vec2Model`, minus the `wav2vec2.`
prefix of task heads). An NNX parameter path joined with dots maps to a state-dict key by the table
below (`hf_name` implements the renaming; the importer still transposes and folds):

Abbreviations: `CL = feature_extractor.conv_layers.{i}`, `EL = encoder.layers.{l}`. Every NNX
`kernel` / `scale` leaf is HF's `weight`; every `bias` keeps its name and shape; o / i = out / in channels.

| NNX path                                  | HF state-dict key                          | HF shape -> NNX shape      |
|-------------------------------------------|--------------------------------------------|----------------------------|
| CL.conv.kernel                            | CL.conv.weight                             | [o, i, k] -> [k, i, o]     |
| CL.conv.bias (only when conv_bias)        | CL.conv.bias                               | [out]                      |
| CL.layer_norm.scale, .bias (i = 0 only)   | CL.layer_norm.weight, .bias (GroupNorm)    | [512]                      |
| feature_projection.layer_norm.scale, bias | feature_projection.layer_norm.weight, bias | [512]                      |
| feature_projection.projection.kernel      | feature_projection.projection.weight       | [768, 512] -> [512, 768]   |
| masked_spec_embed (unused at inference)   | masked_spec_embed                          | [768]                      |
| encoder.pos_conv_embed.conv.kernel        | ...pos_conv_embed.conv.weight_g, weight_v  | (*) -> [128, 48, 768]      |
| encoder.pos_conv_embed.conv.bias          | encoder.pos_conv_embed.conv.bias           | [768]                      |
| encoder.layer_norm.scale, .bias           | encoder.layer_norm.weight, .bias           | [768]                      |
| EL.attention.{q,k,v,out}_proj.kernel      | EL.attention.{q,k,v,out}_proj.weight       | [768, 768] -> transposed   |
| EL.layer_norm.scale, .bias                | EL.layer_norm.weight, .bias                | [768]                      |
| EL.feed_forward.intermediate_dense.kernel | EL.feed_forward.intermediate_dense.weight  | [3072, 768] -> [768, 3072] |
| EL.feed_forward.output_dense.kernel       | EL.feed_forward.output_dense.weight        | [768, 3072] -> [3072, 768] |
| EL.final_layer_norm.scale, .bias          | EL.final_layer_norm.weight, .bias          | [768]                      |

(*) Weight norm is represented by its effective weight: the importer must fold
`w = weight_g * weight_v / ||weight_v||` (weight_v [768, 48, 128], weight_g [1, 1, 128]), the norm
taken over the output and input-channel axes (dims 0, 1) separately for every kernel tap (torch
`weight_norm(dim=2)`), then transpose [out, in/groups, k] -> [k, in/groups, out].
Newer torch checkpoints name them `encoder.pos_conv_embed.conv.parametrizations.weight.original0`
(= g) and `.original1` (= v). Biases of linear layers and 1-D norms keep their shape. Linear kernels
carry logical axes (`embed`, `heads`, `mlp`) through `jaxmoda.nn.layers.dense`; conv kernels use
`conv_w, conv_in, conv_out` and stay replicated under the default rules.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoda.errors import ConfigError, DataError
from jaxmoda.moda import audio
from jaxmoda.nn import logical
from jaxmoda.nn.layers import dense

CONV1D_AXES = ("conv_w", "conv_in", "conv_out")


@dataclasses.dataclass(frozen=True)
class HubertConfig:
    """Encoder hyperparameters; field names equal the Hugging Face `HubertConfig` keys.

    Defaults are HuBERT-base / chinese-hubert-base / wav2vec2-base. `tiny()` gives a test-size variant.
    """

    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    feat_proj_layer_norm: bool = True
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    layer_norm_eps: float = 1e-5
    do_stable_layer_norm: bool = False

    def __post_init__(self):
        problems = []
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) >= 1:
            problems.append("conv_dim, conv_kernel and conv_stride must have the same non-zero length")
        if self.feat_extract_norm != "group":
            problems.append(f"feat_extract_norm={self.feat_extract_norm!r} is not supported "
                            f"(only 'group', the base models)")
        if self.do_stable_layer_norm:
            problems.append("do_stable_layer_norm=True (pre-norm 'large' models) is not supported")
        if self.hidden_size % self.num_attention_heads:
            problems.append(f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                            f"{self.num_attention_heads}")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            problems.append(f"hidden_size={self.hidden_size} is not divisible by num_conv_pos_embedding_groups="
                            f"{self.num_conv_pos_embedding_groups}")
        if problems:
            raise ConfigError("hubert config: " + "; ".join(problems))

    @classmethod
    def tiny(cls, **overrides: Any) -> HubertConfig:
        """A test-size model with the real conv geometry (same frame rate): 2 layers, width 32."""
        kw = {"conv_dim": (32,) * 7, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 64, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HubertConfig:
        """From a Hugging Face `config.json` dict (unrelated keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in dict(d).items() if k in names}
        return cls(**kw)

    @property
    def num_states(self) -> int:
        """Hidden states returned per frame: input embedding + one per layer."""
        return self.num_hidden_layers + 1


def conv_output_length(num_samples: int, config: HubertConfig | None = None) -> int:
    """Frames out of the conv feature extractor for `num_samples` samples (0 when too short)."""
    cfg = config or HubertConfig()
    n = int(num_samples)
    for k, s in zip(cfg.conv_kernel, cfg.conv_stride):
        if n < k:
            return 0
        n = (n - k) // s + 1
    return n


def linear_resample(x: jax.Array, num_out: int, axis: int = -2) -> jax.Array:
    """Linear interpolation along `axis` to `num_out` samples with align_corners=True.

    Output k sits at input position k (T_in - 1) / (num_out - 1): the first and last samples are
    kept and a linear ramp stays exactly linear. A single input frame is repeated.
    """
    axis = axis % x.ndim
    t_in = x.shape[axis]
    if num_out < 1 or t_in < 1:
        raise ValueError(f"cannot resample {t_in} frames to {num_out}")
    if t_in == 1 or num_out == 1:
        idx = np.zeros((num_out,), np.int32)
        return jnp.take(x, idx, axis=axis)
    pos = np.arange(num_out, dtype=np.float64) * (t_in - 1) / (num_out - 1)
    lo = np.minimum(np.floor(pos).astype(np.int32), t_in - 2)
    frac = (pos - lo).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = num_out
    frac = jnp.asarray(frac.reshape(shape), dtype=x.dtype)
    return jnp.take(x, lo, axis=axis) * (1 - frac) + jnp.take(x, lo + 1, axis=axis) * frac


def to_video_rate(states: jax.Array, num_frames: int, axis: int = -2) -> jax.Array:
    """Resamples 50-Hz encoder outputs (e.g. [B, L, T50, C]) to exactly `num_frames` 25-fps frames.

    Linear interpolation with align_corners=True along `axis` (see `linear_resample`); pass
    `num_frames = audio.num_frames(N)` for N input samples.
    """
    return linear_resample(states, int(num_frames), axis=axis)


def _layer_norm(dim: int, eps: float, axis_name: str, dtype, param_dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=eps, use_fast_variance=False, dtype=dtype, param_dtype=param_dtype,
                         scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), (axis_name,)),
                         bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axis_name,)), rngs=rngs)


def _conv1d(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, padding: Any = "VALID", groups: int = 1,
            use_bias: bool, dtype, param_dtype, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(in_ch, out_ch, (kernel,), strides=(stride,), padding=padding, feature_group_count=groups,
                    use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                    kernel_init=nnx.with_partitioning(nnx.initializers.he_normal(), CONV1D_AXES),
                    bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("conv_out",)), rngs=rngs)


class ConvLayer(nnx.Module):
    """Conv1d -> (GroupNorm with one group per channel, first layer only) -> GELU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, *, group_norm: bool, use_bias: bool,
                 eps: float, dtype, param_dtype, rngs: nnx.Rngs):
        self.conv = _conv1d(in_ch, out_ch, kernel, stride=stride, use_bias=use_bias, dtype=dtype,
                            param_dtype=param_dtype, rngs=rngs)
        if group_norm:
            self.layer_norm = nnx.GroupNorm(
                out_ch, num_groups=out_ch, epsilon=eps, use_fast_variance=False, dtype=dtype, param_dtype=param_dtype,
                scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("conv_out",)),
                bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("conv_out",)), rngs=rngs)
        else:
            self.layer_norm = None

    def __call__(self, x_btc: jax.Array) -> jax.Array:
        h = self.conv(x_btc)
        if self.layer_norm is not None:
            h = self.layer_norm(h)
        return jax.nn.gelu(h, approximate=False)


class FeatureExtractor(nnx.Module):
    """The 7-layer conv feature encoder: wave [B, N] -> [B, T50, conv_dim[-1]]."""

    def __init__(self, cfg: HubertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        layers = []
        in_ch = 1
        for i, (out_ch, k, s) in enumerate(zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride)):
            layers.append(ConvLayer(in_ch, out_ch, k, s, group_norm=(i == 0), use_bias=cfg.conv_bias,
                                    eps=cfg.layer_norm_eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs))
            in_ch = out_ch
        self.conv_layers = nnx.List(layers)

    def __call__(self, wave_bn: jax.Array) -> jax.Array:
        h = wave_bn[..., None]
        for layer in self.conv_layers:
            h = layer(h)
        return h


class FeatureProjection(nnx.Module):
    """LayerNorm over the conv channels (if enabled), then Linear to the model width."""

    def __init__(self, cfg: HubertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        c = cfg.conv_dim[-1]
        self.layer_norm = (_layer_norm(c, cfg.layer_norm_eps, "conv_out", dtype, param_dtype, rngs)
                           if cfg.feat_proj_layer_norm else None)
        self.projection = dense(c, cfg.hidden_size, ("conv_out", "embed"), dtype=dtype, param_dtype=param_dtype,
                                rngs=rngs)

    def __call__(self, x_btc: jax.Array) -> jax.Array:
        if self.layer_norm is not None:
            x_btc = self.layer_norm(x_btc)
        return self.projection(x_btc)


class PositionalConvEmbedding(nnx.Module):
    """Grouped Conv1d with "same" length (an even kernel drops its last output step), then GELU.

    The kernel is the effective weight of HF's weight-normed conv (see the module docstring).
    """

    def __init__(self, cfg: HubertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        k = cfg.num_conv_pos_embeddings
        pad = ((k // 2, k // 2 - 1 if k % 2 == 0 else k // 2),)
        self.conv = _conv1d(cfg.hidden_size, cfg.hidden_size, k, padding=pad, groups=cfg.num_conv_pos_embedding_groups,
                            use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        return jax.nn.gelu(self.conv(x_btd), approximate=False)


class SelfAttention(nnx.Module):
    """Multi-head self-attention with separate q/k/v/out projections (HF naming), no mask."""

    def __init__(self, dim: int, num_heads: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.num_heads = num_heads
        kw = {"dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        self.q_proj = dense(dim, dim, ("embed", "heads"), **kw)
        self.k_proj = dense(dim, dim, ("embed", "heads"), **kw)
        self.v_proj = dense(dim, dim, ("embed", "heads"), **kw)
        self.out_proj = dense(dim, dim, ("heads", "embed"), **kw)

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        b, t, d = x_btd.shape
        split = lambda a: a.reshape(b, t, self.num_heads, d // self.num_heads)
        names = ("act_batch", "act_tokens", "act_heads", None)
        q, k, v = (logical.constrain(split(p(x_btd)), names) for p in (self.q_proj, self.k_proj, self.v_proj))
        o = jax.nn.dot_product_attention(q, k, v)
        return self.out_proj(o.reshape(b, t, d))


class FeedForward(nnx.Module):
    """Linear -> exact GELU -> Linear."""

    def __init__(self, dim: int, hidden: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.intermediate_dense = dense(dim, hidden, ("embed", "mlp"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.output_dense = dense(hidden, dim, ("mlp", "embed"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        h = jax.nn.gelu(self.intermediate_dense(x_btd), approximate=False)
        h = logical.constrain(h, ("act_batch", "act_tokens", "act_mlp"))
        return self.output_dense(h)


class EncoderLayer(nnx.Module):
    """Post-norm transformer layer: x = LN(x + MHA(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: HubertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = {"dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        d, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.attention = SelfAttention(d, cfg.num_attention_heads, **kw)
        self.layer_norm = _layer_norm(d, eps, "embed", dtype, param_dtype, rngs)
        self.feed_forward = FeedForward(d, cfg.intermediate_size, **kw)
        self.final_layer_norm = _layer_norm(d, eps, "embed", dtype, param_dtype, rngs)

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        x = self.layer_norm(x_btd + self.attention(x_btd))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nnx.Module):
    """Positional conv embedding, LayerNorm, then the transformer layers; returns every hidden state."""

    def __init__(self, cfg: HubertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.pos_conv_embed = PositionalConvEmbedding(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.layer_norm = _layer_norm(cfg.hidden_size, cfg.layer_norm_eps, "embed", dtype, param_dtype, rngs)
        self.layers = nnx.List([EncoderLayer(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                                for _ in range(cfg.num_hidden_layers)])

    def __call__(self, x_btd: jax.Array) -> list[jax.Array]:
        h = self.layer_norm(x_btd + self.pos_conv_embed(x_btd))
        h = logical.constrain(h, ("act_batch", "act_tokens", "act_embed"))
        states = [h]
        for layer in self.layers:
            h = layer(h)
            h = logical.constrain(h, ("act_batch", "act_tokens", "act_embed"))
            states.append(h)
        return states


class HubertModel(nnx.Module):
    """HuBERT-base / wav2vec2-base encoder returning all hidden states (names mirror HF `HubertModel`)."""

    def __init__(self, config: HubertConfig | None = None, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        cfg = config or HubertConfig()
        self.config = cfg
        kw = {"dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        self.feature_extractor = FeatureExtractor(cfg, **kw)
        self.feature_projection = FeatureProjection(cfg, **kw)
        self.masked_spec_embed = nnx.Param(
            nnx.initializers.uniform(1.0)(rngs.params(), (cfg.hidden_size,), param_dtype), out_sharding=("embed",))
        self.encoder = Encoder(cfg, **kw)

    def __call__(self, wave_bn: jax.Array, num_frames: int | None = None) -> jax.Array:
        """Encodes raw 16 kHz audio.

        Args:
            wave_bn: [B, N] samples (already zero-mean/unit-variance normalised when the checkpoint
                expects it; see `normalize_wave`).
            num_frames: None: run at the conv frame rate (~50 Hz). An int: MoDA's presample, the conv
                features are linearly resampled (align_corners=True) to exactly this many frames
                before the projection and transformer.

        Returns:
            [B, num_hidden_layers + 1, T, hidden_size]: hidden state 0 (embedding after the
            positional conv and LayerNorm) then each layer's output; T = conv frames or `num_frames`.
        """
        if wave_bn.ndim != 2:
            raise ValueError(f"HubertModel expects wave [B, N], got shape {wave_bn.shape}")
        if conv_output_length(wave_bn.shape[1], self.config) < 1:
            raise DataError(f"audio of {wave_bn.shape[1]} samples is too short for the HuBERT feature extractor; "
                            f"pass at least 400 samples (25 ms)")
        feats = self.feature_extractor(wave_bn)
        if num_frames is not None:
            feats = linear_resample(feats, int(num_frames), axis=1)
        states = self.encoder(self.feature_projection(feats))
        return jnp.stack(states, axis=1)


def init_hubert(config: HubertConfig | None = None, seed: int = 0, *, dtype=jnp.float32,
                param_dtype=jnp.float32) -> HubertModel:
    """Builds a randomly initialised `HubertModel` with logical sharding metadata but no eager sharding
    (jaxmoda's convention, as `jaxmoda.train.state.build_model`), so it works outside a mesh."""
    with nnx.use_eager_sharding(False):
        return HubertModel(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(seed))


def hf_name(path: Sequence[Any]) -> str:
    """The Hugging Face state-dict key of an NNX parameter path (the table in the module docstring).

    `encoder.pos_conv_embed.conv.weight` stands for the folded weight norm (weight_g, weight_v).
    """
    parts = [str(p) for p in path]
    if parts and parts[-1] in ("kernel", "scale"):
        parts[-1] = "weight"
    return ".".join(parts)


def normalize_wave(wave: jax.Array | np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance normalisation of one utterance (HF `Wav2Vec2FeatureExtractor`, do_normalize)."""
    x = np.asarray(wave, dtype=np.float64)
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


@nnx.jit(static_argnames=("num_frames",))
def _encode(model: HubertModel, wave_bn: jax.Array, num_frames: int | None) -> jax.Array:
    return model(wave_bn, num_frames=num_frames)


def hubert_features(model: HubertModel, wave16k: np.ndarray, *, presample: bool = True, normalize: bool = True,
                    include_embedding: bool = True, chunk_seconds: float = 60.0) -> np.ndarray:
    """HuBERT hidden states per 25-fps video frame, in the [T, L, C] slot of `audio.audio_features`.

    Args:
        model: a `HubertModel` (with converted weights for meaningful features).
        wave16k: float [N] mono samples at 16 kHz.
        presample: True: MoDA's order, conv features resampled to 25 fps before the transformer.
            False: the transformer runs at 50 Hz and `to_video_rate` resamples its outputs.
        normalize: zero-mean/unit-variance normalise each chunk first (`do_normalize` checkpoints,
            including chinese-hubert-base).
        include_embedding: keep hidden state 0 (L = layers + 1 = 13); False gives MoDA's stack of
            layers 1..12 (L = 12).
        chunk_seconds: audio is encoded in independent chunks of at most this length (MoDA: 60 s),
            each a whole number of video frames.

    Returns:
        float32 [T, L, hidden_size], T = audio.num_frames(N).

    Raises:
        DataError: for audio shorter than one 25-fps frame (40 ms).
    """
    x = np.asarray(wave16k, dtype=np.float32)
    if x.ndim != 1:
        raise DataError(f"hubert_features takes mono [N] samples, got shape {x.shape}; use audio.to_mono_16k first")
    total = audio.num_frames(x.size)
    if total < 1:
        raise DataError(f"audio has {x.size} samples ({1000.0 * x.size / audio.SAMPLE_RATE:.1f} ms), shorter than "
                        f"40 ms (one 25-fps frame = {audio.HOP} samples at 16 kHz); pass a longer recording")
    chunk = max(1, math.floor(chunk_seconds * audio.FPS)) * audio.HOP
    outs = []
    for start in range(0, total * audio.HOP, chunk):
        piece = x[start: start + chunk]
        t = audio.num_frames(piece.size)
        if normalize:
            piece = normalize_wave(piece)
        wave = jnp.asarray(piece)[None]
        if presample:
            states = _encode(model, wave, t)
        else:
            states = to_video_rate(_encode(model, wave, None), t)
        outs.append(np.asarray(states[0], dtype=np.float32).transpose(1, 0, 2))
    out = np.concatenate(outs, axis=0)
    return out if include_embedding else out[:, 1:]
