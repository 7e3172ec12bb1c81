"""The baseline class-conditional DiT on images or latents, trained with the shared flow core."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoda.config import ConfigDict
from jaxmoda.errors import ConfigError
from jaxmoda.flow import guidance
from jaxmoda.tasks.base import compute_setup
from jaxmoda.nn.dit import DiT

class DiTTask:
    """Model: `jaxmoda.nn.dit.DiT`; batch: {"image": [B,H,W,C] in [-1,1], "label": int32 [B]}."""

    def __init__(self, config: ConfigDict):
        self.config = config
        m = config.model
        self.dtype, self.param_dtype, self.objective = compute_setup(m, config.objective)
        if m.input_size % m.patch_size:
            raise ConfigError(f"config.model.input_size={m.input_size} is not divisible by config.model.patch_size={m.patch_size}")
        if m.hidden % m.num_heads:
            raise ConfigError(f"config.model.hidden={m.hidden} is not divisible by config.model.num_heads={m.num_heads}")
        if config.data.image_size != m.input_size or config.data.channels != m.in_channels:
            raise ConfigError(
                f"config.data gives {config.data.image_size}x{config.data.image_size}x{config.data.channels} images but "
                f"config.model expects {m.input_size}x{m.input_size}x{m.in_channels}; make them agree")

    def build_model(self, rngs: nnx.Rngs) -> DiT:
        m = self.config.model
        return DiT(input_size=m.input_size, in_channels=m.in_channels, patch_size=m.patch_size, hidden=m.hidden,
                   depth=m.depth, num_heads=m.num_heads, num_classes=m.num_classes, mlp_ratio=m.mlp_ratio,
                   attention=m.attention, qk_norm=m.qk_norm, remat=m.remat, dtype=self.dtype,
                   param_dtype=self.param_dtype, rngs=rngs)

    def loss(self, model: DiT, batch: dict, rng: jax.Array, step: jax.Array | None = None) -> tuple[jax.Array, dict]:
        drop_rng, loss_rng = jax.random.split(rng)
        labels = guidance.drop_condition(drop_rng, batch["label"], self.config.objective.cfg_dropout, model.null_label)
        per_example, aux = self.objective.loss(model, batch["image"], labels, loss_rng)
        return jnp.mean(per_example), aux

    def sample(self, model: DiT, rng: jax.Array, num: int, *, labels: jax.Array | None = None,
               cfg_scale: float | None = None, steps: int | None = None, sampler: str | None = None) -> jax.Array:
        m = self.config.model
        label_rng, noise_rng, sample_rng = jax.random.split(rng, 3)
        if labels is None:
            labels = jnp.arange(num, dtype=jnp.int32) % m.num_classes
        scale = self.config.objective.cfg_scale if cfg_scale is None else cfg_scale
        null = jnp.full_like(labels, model.null_label)
        fn = guidance.guided_apply_fn(model, [null, labels], [scale])
        noise = jax.random.normal(noise_rng, (num, m.input_size, m.input_size, m.in_channels), jnp.float32)
        x = self.objective.sample(fn, noise, steps=steps, sampler=sampler, rng=sample_rng)
        return jnp.clip(x, -1.0, 1.0)

    def denoise_step(self, model: DiT, batch: dict, cfg_scale: float | None = None) -> jax.Array:
        """One guided model evaluation of the sampler on a batch's shapes (for FLOP counts)."""
        labels = batch["label"]
        scale = self.config.objective.cfg_scale if cfg_scale is None else cfg_scale
        fn = guidance.guided_apply_fn(model, [jnp.full_like(labels, model.null_label), labels], [scale])
        return fn(batch["image"], jnp.full(labels.shape, 0.5, jnp.float32))

    def forward_flops_per_example(self) -> float:
        """Analytic forward FLOPs of one example (2 per multiply-add; matmuls and attention only)."""
        m = self.config.model
        t = (m.input_size // m.patch_size) ** 2
        d, pc = m.hidden, m.patch_size ** 2 * m.in_channels
        mlp = int(d * m.mlp_ratio)
        block = 2 * t * d * 3 * d + 4 * t * t * d + 2 * t * d * d + 4 * t * d * mlp + 2 * d * 6 * d
        embed = 2 * t * pc * d + 2 * (256 * d + d * d)
        final = 2 * t * d * pc + 2 * d * 2 * d
        return float(m.depth * block + embed + final)

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        m = self.config.model
        rng = np.random.default_rng(0)
        return {"image": rng.uniform(-1, 1, (batch_size, m.input_size, m.input_size, m.in_channels)).astype(np.float32),
                "label": (np.arange(batch_size) % m.num_classes).astype(np.int32)}

    def data_iterator(self, process_index: int, process_count: int):
        from jaxmoda.data import build_source, make_train_iterator
        _, info = build_source(self.config.data, seed=self.config.seed)
        if info["num_classes"] > self.config.model.num_classes:
            raise ConfigError(
                f"the dataset has {info['num_classes']} classes but config.model.num_classes={self.config.model.num_classes}; "
                f"set --config.model.num_classes={info['num_classes']}")
        return make_train_iterator(self.config.data, global_batch_size=self.config.batch_size, seed=self.config.seed,
                                   process_index=process_index, process_count=process_count)
