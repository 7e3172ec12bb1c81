"""D²iT stage 2: the Dynamic Grain Transformer and the Dynamic Content Transformer, trained in one run
on cached Dynamic VAE latents, sampled end to end (label -> grain map -> content -> DVAE decode).

Training batch (jaxmoda.d2it.latents): {"z": [B, 2h, 2w, C] neighbour-copied latents, "grain": int8
[B, h, w], "label": int32 [B], "mask": bool [B, L]}; the mask's length L is the batch's token bucket.

Multi-grained noise: one Gaussian vector per dense latent position, read in the packed layout, so a
coarse token gets the single noise vector of its region's sub-position 0 and a fine token its own; x_t
of a coarse block is therefore one code (its 4 dense copies stay equal) at every t. The same draw does
not depend on the bucket length, so padding changes nothing but the shapes.

Dynamic grain loss: per-token weights `d2it.coarse_weight` / `d2it.fine_weight` on the squared error,
summed over real tokens and divided by the real-token count (times channels). With unit weights each
latent code counts once (a coarse region once, not four times); `coarse_weight=4` weighs by image area
instead, which equals the dense per-element MSE of a DiT on the neighbour-copied latent.
"""

from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoda.config import ConfigDict
from jaxmoda.d2it import tokens as tok
from jaxmoda.d2it.grains import COARSE, DTYPE, FINE
from jaxmoda.errors import ConfigError, DataError
from jaxmoda.flow import guidance, make_objective
from jaxmoda.tasks.base import compute_setup

log = logging.getLogger(__name__)

FORCE_GRAINS = ("", "fine", "coarse")


class D2iTTask:
    """Model: `jaxmoda.d2it.dgt.D2iT` (dct + dgt)."""

    def __init__(self, config: ConfigDict):
        self.config = config
        m, d = config.model, config.d2it
        self.dtype, self.param_dtype, self.objective = compute_setup(m.dct, config.objective, "model.dct")
        self.h = self.w = int(m.grid)
        try:
            self.dgt_objective = make_objective(config.dgt_objective) if self.has_dgt else None
            from jaxmoda.d2it.dct import LAYOUTS, POS_EMBEDS
            from jaxmoda.d2it.dgt import check_formulation
            if self.has_dgt:
                check_formulation(m.dgt.formulation)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if m.dct.layout not in LAYOUTS:
            raise ConfigError(f"config.model.dct.layout={m.dct.layout!r} is unknown; use 'mixed' (H2) or 'region' (H1)")
        if m.dct.pos_embed not in POS_EMBEDS:
            raise ConfigError(f"config.model.dct.pos_embed={m.dct.pos_embed!r} is unknown; use 'learned' or 'sincos'")
        if not 0 <= m.dct.refine_depth < m.dct.depth:
            raise ConfigError(f"config.model.dct.refine_depth={m.dct.refine_depth} must be in [0, depth={m.dct.depth}): "
                              "the RefineNet blocks are the last of the depth transformer blocks")
        for part in ("dct",) + (("dgt",) if self.has_dgt else ()):
            if m[part].hidden % m[part].num_heads or m[part].hidden % 4:
                raise ConfigError(f"config.model.{part}.hidden={m[part].hidden} must be divisible by num_heads="
                                  f"{m[part].num_heads} and by 4 (2-D sin-cos positions)")
        if d.force_grain not in FORCE_GRAINS:
            raise ConfigError(f"config.d2it.force_grain={d.force_grain!r} is unknown; use '', 'fine' or 'coarse'")
        if d.force_grain and self.has_dgt:
            raise ConfigError("config.d2it.force_grain fixes the grain map; set config.model.dgt.enabled=False with it")
        sizes = sorted(int(x) for x in d.buckets)
        if not sizes or sizes[0] < 1:
            raise ConfigError(f"config.d2it.buckets={list(d.buckets)} must list positive token lengths")
        self.buckets = sizes
        self.sample_length = int(d.sample_length) or sizes[-1]
        if self.sample_length < self.h * self.w:
            raise ConfigError(f"config.d2it.sample_length={self.sample_length} is below h*w={self.h * self.w}, "
                              "the tokens of an all-coarse map")
        self._dvae = None

    @property
    def has_dgt(self) -> bool:
        return bool(self.config.model.dgt.enabled)

    @property
    def num_classes(self) -> int:
        return int(self.config.model.num_classes)

    # ---- model -------------------------------------------------------------------------------------
    def build_model(self, rngs: nnx.Rngs):
        from jaxmoda.d2it.dct import DynamicContentTransformer
        from jaxmoda.d2it.dgt import D2iT, make_dgt
        m = self.config.model
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, rngs=rngs)
        dct = DynamicContentTransformer(
            grid=self.h, latent_channels=m.latent_channels, hidden=m.dct.hidden, depth=m.dct.depth,
            refine_depth=m.dct.refine_depth, num_heads=m.dct.num_heads, num_classes=m.num_classes,
            mlp_ratio=m.dct.mlp_ratio, layout=m.dct.layout, pos_embed=m.dct.pos_embed, attention=m.dct.attention,
            qk_norm=m.dct.qk_norm, remat=m.dct.remat, **kw)
        dgt = None
        if self.has_dgt:
            dgt = make_dgt(grid=self.h, hidden=m.dgt.hidden, depth=m.dgt.depth, num_heads=m.dgt.num_heads,
                           num_classes=m.num_classes, mlp_ratio=m.dgt.mlp_ratio, attention=m.dct.attention, **kw)
        return D2iT(dct, dgt)

    @staticmethod
    def dct_apply(model):
        """The DCT as an objective's apply_fn(x_tokens, t, (labels, layout))."""
        return lambda x, t, cond: model.dct(x, t, cond[0], cond[1])

    # ---- training ----------------------------------------------------------------------------------
    def token_weights(self, packed: tok.Packed) -> jax.Array:
        """float32 [B, L, 1]: the dynamic grain loss weights (padding is masked separately)."""
        d = self.config.d2it
        return jnp.where(packed.grain == FINE, d.fine_weight, d.coarse_weight).astype(jnp.float32)[..., None]

    def loss(self, model, batch: dict, rng: jax.Array, step: jax.Array | None = None) -> tuple[jax.Array, dict]:
        from jaxmoda.d2it.dct import layout_only
        d = self.config.d2it
        # Training sets the scale from the latent cache (data_iterator) before the step is traced;
        # shape-only uses (benchmarks, FLOP counts) without a cache train on unscaled latents.
        scale = float(d.scale_factor) or 1.0
        length = batch["mask"].shape[1]
        grain = self._forced(batch["grain"])
        packed = tok.pack(batch["z"].astype(jnp.float32) * scale, grain, length)
        drop_rng, noise_rng, loss_rng, dgt_drop, dgt_rng = jax.random.split(rng, 5)
        labels = guidance.drop_condition(drop_rng, batch["label"], self.config.objective.cfg_dropout, model.null_label)
        noise = tok.gather_tokens(jax.random.normal(noise_rng, batch["z"].shape, jnp.float32), packed)
        per_example, aux = self.objective.loss(self.dct_apply(model), packed.tokens, (labels, layout_only(packed)),
                                               loss_rng, mask=packed.mask, noise=noise, weight=self.token_weights(packed))
        dct_loss = jnp.mean(per_example)
        real = jnp.sum(packed.mask, axis=1).astype(jnp.float32)
        metrics = {"dct_loss": dct_loss, "fine_ratio": jnp.mean((grain == FINE).astype(jnp.float32)),
                   "bucket_fill": jnp.mean(real) / length}
        total = dct_loss
        if model.dgt is not None:
            from jaxmoda.d2it.dgt import to_bits
            y = guidance.drop_condition(dgt_drop, batch["label"], self.config.dgt_objective.cfg_dropout,
                                        model.dgt.null_label)
            dgt_loss = jnp.mean(self.dgt_objective.loss(model.dgt, to_bits(grain), y, dgt_rng)[0])
            metrics["dgt_loss"] = dgt_loss
            total = total + d.dgt_weight * dgt_loss
        return total, metrics

    def _forced(self, grain):
        f = self.config.d2it.force_grain
        if not f:
            return grain.astype(DTYPE)
        return jnp.full(grain.shape, FINE if f == "fine" else COARSE, DTYPE)

    def scale_factor(self) -> float:
        s = float(self.config.d2it.scale_factor)
        if s > 0:
            return s
        path = self.latents_path()
        from jaxmoda.d2it.latents import read_metadata
        s = float(read_metadata(path)["scale_factor"])
        self.config.d2it.scale_factor = s  # saved in config.json: sampling does not need the cache
        return s

    # ---- sampling ----------------------------------------------------------------------------------
    def sample_grain(self, model, rng: jax.Array, labels: jax.Array, *, cfg_scale: float | None = None,
                     steps: int | None = None) -> jax.Array:
        """DGT grain maps int8 [B, h, w] for `labels` (or the forced map of a baseline)."""
        b = labels.shape[0]
        if model.dgt is None:
            return self._forced(jnp.zeros((b, self.h, self.w), DTYPE))
        from jaxmoda.d2it.dgt import from_bits
        scale = self.config.dgt_objective.cfg_scale if cfg_scale is None else cfg_scale
        fn = guidance.guided_apply_fn(model.dgt, [jnp.full_like(labels, model.dgt.null_label), labels], [scale])
        bits = self.dgt_objective.sample(fn, jax.random.normal(rng, (b, self.h, self.w, 1), jnp.float32), steps=steps)
        return from_bits(bits)

    def sample_latents(self, model, rng: jax.Array, labels: jax.Array, grain: jax.Array, *,
                       cfg_scale: float | None = None, steps: int | None = None, sampler: str | None = None,
                       length: int | None = None) -> jax.Array:
        """DCT content for given maps: dense, copy-consistent latents [B, 2h, 2w, C] (unscaled)."""
        from jaxmoda.d2it.dct import layout_only
        b, c = labels.shape[0], self.config.model.latent_channels
        length = int(length or self.sample_length)
        grain = tok.clip_to_length(grain.astype(DTYPE), length)
        noise_rng, sample_rng = jax.random.split(rng)
        packed = tok.pack(jnp.zeros((b, 2 * self.h, 2 * self.w, c), jnp.float32), grain, length)
        layout = layout_only(packed)
        noise = tok.gather_tokens(jax.random.normal(noise_rng, (b, 2 * self.h, 2 * self.w, c), jnp.float32), packed)
        scale = self.config.objective.cfg_scale if cfg_scale is None else cfg_scale
        null = jnp.full_like(labels, model.null_label)
        fn = guidance.guided_apply_fn(self.dct_apply(model), [(null, layout), (labels, layout)], [scale])
        x = self.objective.sample(fn, noise, steps=steps, sampler=sampler, rng=sample_rng)  # pads stay 0
        return tok.unpack(packed.replace(tokens=x), self.h, self.w) / self.scale_factor()

    def sample(self, model, rng: jax.Array, num: int, *, labels: jax.Array | None = None,
               cfg_scale: float | None = None, dgt_cfg_scale: float | None = None, steps: int | None = None,
               dgt_steps: int | None = None, sampler: str | None = None, grain: jax.Array | None = None) -> dict:
        """label -> DGT grain map (unless `grain` is given) -> DCT latents -> DVAE decode.

        Returns {"images": [num, H, W, 3] in [-1, 1], "grain": int8 [num, h, w]} (the maps used, after any
        clipping to `d2it.sample_length` tokens).
        """
        grain_rng, content_rng = jax.random.split(rng)
        if labels is None:
            labels = jnp.arange(num, dtype=jnp.int32) % self.num_classes
        if grain is None:
            grain = self.sample_grain(model, grain_rng, labels, cfg_scale=dgt_cfg_scale, steps=dgt_steps)
        grain = tok.clip_to_length(jnp.asarray(grain, DTYPE), self.sample_length)
        z = self.sample_latents(model, content_rng, labels, grain, cfg_scale=cfg_scale, steps=steps, sampler=sampler)
        return {"images": jnp.clip(self.decode(z), -1.0, 1.0), "grain": grain}

    def denoise_step(self, model, batch: dict, cfg_scale: float | None = None) -> jax.Array:
        """One guided DCT evaluation of the sampler on a batch's token layout (for FLOP counts)."""
        from jaxmoda.d2it.dct import layout_only
        packed = tok.pack(batch["z"], self._forced(batch["grain"]), batch["mask"].shape[1])
        labels = batch["label"]
        scale = self.config.objective.cfg_scale if cfg_scale is None else cfg_scale
        conds = [(jnp.full_like(labels, model.null_label), layout_only(packed)), (labels, layout_only(packed))]
        fn = guidance.guided_apply_fn(self.dct_apply(model), conds, [scale])
        return fn(packed.tokens, jnp.full(labels.shape, 0.5, jnp.float32))

    def prepare_grain(self, source, num: int) -> np.ndarray:
        """Grain maps int8 [num, h, w] from a .npy file / array ([h, w] or [N, h, w], cycled to num) or from
        an image file (its entropy map under the DVAE's thresholds)."""
        from jaxmoda.d2it.latents import check_grain_maps
        what = "the grain map"
        if isinstance(source, (str, os.PathLike)):
            what = str(source)
            if not os.path.isfile(source):
                raise DataError(f"grain map file {source} does not exist; pass a .npy map or an image")
            if str(source).endswith(".npy"):
                source = np.load(source, allow_pickle=False)
            else:
                source = self._grain_from_image(str(source))
        g = check_grain_maps(source, self.h, self.w, what)
        return g[np.arange(num) % len(g)]

    def _grain_from_image(self, path: str) -> np.ndarray:
        from jaxmoda.io.images import load_image_file
        task, _, _ = self._dvae_parts()
        size = task.config.data.image_size
        image = load_image_file(path, size, 3)
        if image is None:
            raise DataError(f"{path} is not a readable image; pass a PNG/JPEG or a .npy grain map")
        x = image.astype(np.float32) / np.float32(127.5) - np.float32(1.0)  # uint8 -> [-1, 1], as the data pipeline
        return np.asarray(task.grain_map(jnp.asarray(x)[None]))

    # ---- the Dynamic VAE ---------------------------------------------------------------------------
    def check_dvae(self) -> ConfigDict:
        """The DVAE run's config, after checking it matches this model (one error line if not)."""
        from jaxmoda.train.sampling import read_run_config
        path = self.config.dvae_workdir
        if not path:
            raise ConfigError("config.dvae_workdir is empty; train a Dynamic VAE (python -m jaxmoda.train --config "
                              "configs/d2it/dvae_tiny.py --workdir DIR) and pass --config.dvae_workdir=DIR")
        dv = read_run_config(path)
        m = self.config.model
        if dv.model.name != "dvae":
            raise ConfigError(f"config.dvae_workdir={path} trained a {dv.model.name!r} model, not a Dynamic VAE")
        if dv.model.encoder.z_channels != m.latent_channels:
            raise ConfigError(f"the DVAE in {path} has {dv.model.encoder.z_channels} latent channels but "
                              f"config.model.latent_channels={m.latent_channels}; make them agree")
        grid = dv.data.image_size // max(dv.model.encoder.factors)
        if grid != self.h:
            raise ConfigError(f"the DVAE in {path} gives a {grid}x{grid} grain map ({dv.data.image_size}-px images) "
                              f"but config.model.grid={self.h}; set --config.model.grid={grid}")
        return dv

    def _dvae_parts(self):
        if self._dvae is None:
            from jaxmoda.train.sampling import load_for_sampling
            self.check_dvae()
            task, graphdef, ema, _, _ = load_for_sampling(self.config.dvae_workdir)
            self._dvae = (task, graphdef, ema)
        return self._dvae

    def prepare_sampling(self) -> None:
        """Loads the DVAE decoder and the latent scale on the host (sampling traces use both)."""
        self._dvae_parts()
        self.scale_factor()

    def decode(self, z: jax.Array) -> jax.Array:
        _, graphdef, ema = self._dvae_parts()
        return nnx.merge(graphdef, ema).decode(z)

    def latents_path(self) -> str:
        if self.config.latents:
            return self.config.latents
        if not self.config.dvae_workdir:
            raise ConfigError("config.latents and config.dvae_workdir are both empty; name a latent cache or a DVAE run")
        f = self.config.d2it.force_grain
        return os.path.join(self.config.dvae_workdir, "latents" + (f"_{f}" if f else ""))

    def ensure_latents(self) -> str:
        """The latent cache, encoded with the DVAE on first use when the config names none."""
        from jaxmoda.d2it.latents import read_metadata
        path = self.latents_path()
        if not os.path.isfile(os.path.join(path, "metadata.json")):
            if self.config.latents:
                read_metadata(path)  # raises the one-line error naming the fix
            from jaxmoda.d2it.encode import encode_latents
            self.check_dvae()
            log.info("no latent cache at %s yet: encoding the DVAE run's data once", path)
            encode_latents(self.config.dvae_workdir, path, force_grain=self.config.d2it.force_grain,
                           num=int(self.config.d2it.encode_images))
        meta = read_metadata(path)
        m = self.config.model
        if meta["z_shape"] != [2 * self.h, 2 * self.w, m.latent_channels]:
            raise ConfigError(f"the latents in {path} have shape {meta['z_shape']} but the model expects "
                              f"{[2 * self.h, 2 * self.w, m.latent_channels]}; set config.model.grid/latent_channels "
                              "to match the DVAE")
        if meta["num_classes"] > self.num_classes:
            raise ConfigError(f"the latents in {path} have {meta['num_classes']} classes but config.model.num_classes="
                              f"{self.num_classes}; set --config.model.num_classes={meta['num_classes']}")
        return path

    # ---- data and shapes ---------------------------------------------------------------------------
    def data_iterator(self, process_index: int, process_count: int):
        from jaxmoda.d2it.latents import make_latent_iterator
        path = self.ensure_latents()
        self.scale_factor()
        return make_latent_iterator(path, buckets=self.buckets, global_batch_size=self.config.batch_size,
                                    seed=self.config.seed, process_index=process_index, process_count=process_count)

    def example_batch(self, batch_size: int, fine_ratio: float | None = None) -> dict[str, np.ndarray]:
        """Random latents with exactly round(r*h*w) fine regions per map (r = d2it.example_fine_ratio)."""
        r = self.config.d2it.example_fine_ratio if fine_ratio is None else fine_ratio
        h, w, c = self.h, self.w, self.config.model.latent_channels
        rng = np.random.default_rng(0)
        n_fine = int(round(r * h * w))
        grain = np.zeros((batch_size, h * w), np.int8)
        for i in range(batch_size):
            grain[i, rng.permutation(h * w)[:n_fine]] = FINE
        grain = self._forced(grain.reshape(batch_size, h, w))
        need = h * w + 3 * np.sum(np.asarray(grain) == FINE, axis=(1, 2))
        length = tok.bucket_for(need, self.buckets)
        return {"z": rng.normal(size=(batch_size, 2 * h, 2 * w, c)).astype(np.float32),
                "grain": np.asarray(grain), "label": (np.arange(batch_size) % self.num_classes).astype(np.int32),
                "mask": np.arange(length)[None] < need[:, None]}

    def forward_flops_per_example(self, fine_ratio: float | None = None) -> float:
        """Analytic forward FLOPs of the DCT on one example (matmuls and attention, 2 per multiply-add)."""
        m = self.config.model.dct
        r = self.config.d2it.example_fine_ratio if fine_ratio is None else fine_ratio
        hw = self.h * self.w
        d, mlp = m.hidden, int(m.hidden * m.mlp_ratio)
        n_tok = hw + 3 * int(round(r * hw))
        length = tok.bucket_for(n_tok, self.buckets)

        def block(t):
            return 2 * t * d * 3 * d + 4 * t * t * d + 2 * t * d * d + 4 * t * d * mlp + 2 * d * 6 * d

        if m.layout == "mixed":  # every block on the bucket's L slots (padding costs compute too)
            body = m.depth * block(length)
            heads = 2 * 2 * length * d * self.config.model.latent_channels
        else:
            body = (m.depth - m.refine_depth) * block(hw) + m.refine_depth * block(4 * hw)
            heads = 2 * (hw + 4 * hw) * d * self.config.model.latent_channels
        return float(body + heads)
