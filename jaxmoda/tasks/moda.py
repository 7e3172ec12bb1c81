"""MoDA's motion generator: the multi-modal DiT trained with rectified flow on motion windows.

Batch (jaxmoda.moda.data): {"motion": float32 [B, 1 + W, 70] normalised (the prefix frame, then the
window), "mask": bool [B, W] (real frames; short clips are padded), "audio": float32 [B, W, L, C],
"emotion": int32 [B], "identity": float32 [B, 63]}.

Loss (rectified flow: x_t = (1 - t) x0 + t eps, v = eps - x0, uniform t, so x0_hat = x_t - t v_hat),
for each group g of dims in `moda.loss.groups` (exp 0:63, pose 63:70, lip = the 18 lip coordinates):
  mse      mean over real frames of (v_hat - v)^2                             (the flow-matching term)
  velocity mean of (D x0_hat - D x0)^2, D = first difference in time          (frame-difference matching)
  smooth   mean of (D2 x0_hat - D2 x0)^2, D2 = second difference               (acceleration matching)
total = sum_g w_g (mse + w_velocity velocity + w_smooth smooth). The paper names velocity and
smoothness terms without defining them; these are this library's forms, matched to the data's own
differences (so they never pull motion towards stillness). Condition dropout: audio -> the learned
null audio (p = 0.2), emotion -> null label (0.1), prefix -> learned null prefix (0.0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoda.config import ConfigDict
from jaxmoda.errors import ConfigError
from jaxmoda.flow import guidance
from jaxmoda.tasks.base import compute_setup

GROUPS = ("exp", "pose", "lip")


def group_dims(name: str) -> np.ndarray:
    from jaxmoda.moda import motion
    if name == "pose":
        return np.arange(63, 70)  # scale, t and angles: what the pose smoothing touches
    return motion.group_dims("lips" if name == "lip" else name)


def _masked_mean(err_btd: jax.Array, mask_bt: jax.Array) -> jax.Array:
    m = mask_bt.astype(jnp.float32)[..., None]
    count = jnp.maximum(jnp.sum(m, axis=(1, 2)) * err_btd.shape[-1], 1.0)
    return jnp.sum(err_btd * m, axis=(1, 2)) / count


class MoDATask:
    """Model: `jaxmoda.moda.dit.MotionDiT`."""

    def __init__(self, config: ConfigDict):
        self.config = config
        m = config.model
        self.dtype, self.param_dtype, self.objective = compute_setup(m, config.objective)
        if config.objective.name != "rectified_flow":
            raise ConfigError("config.objective.name must be 'rectified_flow' for MoDA (flow matching on motion)")
        if m.hidden % m.num_heads or (m.hidden // m.num_heads) % 2:
            raise ConfigError(f"config.model.hidden={m.hidden} must split into num_heads={m.num_heads} heads of even width")
        from jaxmoda.moda.audio import AudioSettings, feature_shape
        try:
            self.audio = AudioSettings.from_config(config.audio)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config.audio: {e}") from None
        self.frontend = config.audio.frontend
        if self.frontend == "hubert":  # MoDA stacks HuBERT-base hidden states 1..12
            from jaxmoda.moda.frontend import hubert_shape
            self.audio_layers, self.audio_channels = hubert_shape(config.audio)
        else:
            self.audio_layers, self.audio_channels = feature_shape(self.audio)
        lw = config.moda.loss
        for g in lw.groups:
            if g not in GROUPS:
                raise ConfigError(f"config.moda.loss.groups has {g!r}; choose from {', '.join(GROUPS)}")
        self.dims = {g: jnp.asarray(group_dims(g)) for g in lw.groups}
        self._stats = None
        self._frontend = None

    def audio_features(self, wave16k) -> np.ndarray:
        """Per-frame audio features [T, L, C] of 16-kHz mono samples, by the configured front end."""
        if self._frontend is None:
            from jaxmoda.moda.frontend import make_frontend
            self._frontend = make_frontend(self.config.audio)
        return self._frontend(wave16k)

    @property
    def window(self) -> int:
        return int(self.config.model.window)

    def build_model(self, rngs: nnx.Rngs):
        from jaxmoda.moda.dit import MotionDiT
        m = self.config.model
        return MotionDiT(hidden=m.hidden, num_heads=m.num_heads, audio_layers=self.audio_layers,
                         audio_channels=self.audio_channels, num_emotions=m.num_emotions,
                         four_stream_depth=m.four_stream_depth, two_stream_depth=m.two_stream_depth,
                         single_depth=m.single_depth, mlp_ratio=m.mlp_ratio, rope_base=m.rope_base,
                         attention=m.attention, remat=m.remat, dtype=self.dtype, param_dtype=self.param_dtype,
                         rngs=rngs)

    # ---- training ----------------------------------------------------------------------------------
    def conditions(self, model, batch: dict, rng: jax.Array | None = None) -> dict:
        """The model's condition dict; with `rng`, training's condition dropout."""
        b = batch["emotion"].shape[0]
        cond = {"prefix": batch["motion"][:, 0], "prefix_on": jnp.ones((b,), bool), "audio": batch["audio"],
                "audio_on": jnp.ones((b,), bool), "emotion": batch["emotion"], "identity": batch["identity"]}
        if rng is not None:
            d = self.config.moda
            ra, re, rp = jax.random.split(rng, 3)
            cond["audio_on"] = ~jax.random.bernoulli(ra, d.audio_drop, (b,))
            cond["prefix_on"] = ~jax.random.bernoulli(rp, d.prefix_drop, (b,))
            cond["emotion"] = guidance.drop_condition(re, batch["emotion"], d.emotion_drop, model.null_emotion)
        return cond

    def loss(self, model, batch: dict, rng: jax.Array, step: jax.Array | None = None) -> tuple[jax.Array, dict]:
        lw = self.config.moda.loss
        drop_rng, flow_rng = jax.random.split(rng)
        x0 = batch["motion"][:, 1:]
        mask = batch["mask"]
        x_t, t, _, v = self.objective.draw(x0, flow_rng)
        v_hat = model(x_t, t, self.conditions(model, batch, drop_rng))
        x0_hat = x_t - t[:, None, None] * v_hat
        d1 = mask[:, 1:] & mask[:, :-1]
        d2 = d1[:, 1:] & d1[:, :-1]
        metrics, total = {}, 0.0
        for g, dims in self.dims.items():
            vh, vt, xh, xt = (jnp.take(a, dims, axis=-1) for a in (v_hat, v, x0_hat, x0))
            mse = _masked_mean(jnp.square(vh - vt), mask)
            vel = _masked_mean(jnp.square(jnp.diff(xh, axis=1) - jnp.diff(xt, axis=1)), d1)
            acc = _masked_mean(jnp.square(jnp.diff(xh, n=2, axis=1) - jnp.diff(xt, n=2, axis=1)), d2)
            term = mse + lw.velocity * vel + lw.smooth * acc
            total = total + lw[f"{g}_weight"] * jnp.mean(term)
            metrics.update({f"{g}_mse": jnp.mean(mse), f"{g}_velocity": jnp.mean(vel), f"{g}_smooth": jnp.mean(acc)})
        metrics["t_mean"] = jnp.mean(t)
        return total, metrics

    # ---- sampling ----------------------------------------------------------------------------------
    def sample_window(self, model, rng: jax.Array, prefix: jax.Array, audio: jax.Array, identity: jax.Array,
                      emotion: jax.Array, *, cfg_audio: float | None = None, cfg_emotion: float | None = None,
                      steps: int | None = None) -> jax.Array:
        """One normalised window [B, W, 70] with nested guidance: null -> +audio (cfg_audio) -> +emotion
        (cfg_emotion). Identity and prefix are kept in every branch (as MoDA)."""
        b, w = audio.shape[:2]
        d = self.config.moda
        sa = d.cfg_audio if cfg_audio is None else cfg_audio
        se = d.cfg_emotion if cfg_emotion is None else cfg_emotion
        on, off = jnp.ones((b,), bool), jnp.zeros((b,), bool)
        null_e = jnp.full((b,), model.null_emotion, jnp.int32)
        emotion = jnp.broadcast_to(jnp.asarray(emotion, jnp.int32), (b,))
        identity = jnp.broadcast_to(identity, (b, 63))
        base = {"prefix": prefix, "prefix_on": on, "audio": audio, "identity": identity}
        conds = [dict(base, audio_on=off, emotion=null_e), dict(base, audio_on=on, emotion=null_e),
                 dict(base, audio_on=on, emotion=emotion)]
        fn = guidance.guided_apply_fn(model, conds, [sa, se])
        noise = jax.random.normal(rng, (b, w, 70), jnp.float32)
        return self.objective.sample(fn, noise, steps=steps)

    def denoise_step(self, model, batch: dict) -> jax.Array:
        """One guided evaluation of the sampler (3 branches: null, +audio, +emotion), for FLOP counts."""
        b = batch["emotion"].shape[0]
        on, off = jnp.ones((b,), bool), jnp.zeros((b,), bool)
        null_e = jnp.full((b,), model.null_emotion, jnp.int32)
        base = {"prefix": batch["motion"][:, 0], "prefix_on": on, "audio": batch["audio"], "identity": batch["identity"]}
        conds = [dict(base, audio_on=off, emotion=null_e), dict(base, audio_on=on, emotion=null_e),
                 dict(base, audio_on=on, emotion=batch["emotion"])]
        fn = guidance.guided_apply_fn(model, conds, [self.config.moda.cfg_audio, self.config.moda.cfg_emotion])
        return fn(batch["motion"][:, 1:], jnp.full((b,), 0.5, jnp.float32))

    def sample(self, model, rng: jax.Array, num: int, **options) -> jax.Array:
        """`num` windows for the example batch's conditions (normalised motion [num, W, 70])."""
        batch = jax.tree.map(jnp.asarray, self.example_batch(num))
        return self.sample_window(model, rng, batch["motion"][:, 0], batch["audio"], batch["identity"],
                                  batch["emotion"], **options)

    # ---- data and shapes ---------------------------------------------------------------------------
    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        w = self.window
        return {"motion": rng.normal(size=(batch_size, w + 1, 70)).astype(np.float32),
                "mask": np.ones((batch_size, w), bool),
                "audio": rng.normal(size=(batch_size, w, self.audio_layers, self.audio_channels)).astype(np.float32),
                "emotion": (np.arange(batch_size) % self.config.model.num_emotions).astype(np.int32),
                "identity": rng.normal(scale=0.1, size=(batch_size, 63)).astype(np.float32)}

    def data_iterator(self, process_index: int, process_count: int):
        from jaxmoda.moda.data import make_window_iterator
        return make_window_iterator(self.config, process_index=process_index, process_count=process_count)

    def forward_flops_per_example(self) -> float:
        """Analytic forward FLOPs of one window (2 per multiply-add; matmuls and attention)."""
        m = self.config.model
        d, w, mlp = m.hidden, self.window, int(m.hidden * m.mlp_ratio)
        n = 4 * w
        attn = 4 * n * n * d
        per_stream = 2 * w * (3 * d * d + d * d + 2 * d * mlp)
        stage1 = m.four_stream_depth * (4 * per_stream + attn)
        stage2 = m.two_stream_depth * (2 * w * (3 * d * d + d * d + 2 * d * mlp) + 2 * 3 * w * (3 * d * d + d * d + 2 * d * mlp) + attn)
        stage3 = m.single_depth * (2 * n * (3 * d * d + d * d + 2 * d * mlp) + attn)
        embed = 2 * w * (140 * d + d * d + self.audio_layers * self.audio_channels * d + 2 * d * d) + 2 * w * d * 70
        return float(stage1 + stage2 + stage3 + embed)
