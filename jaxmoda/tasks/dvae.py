"""D²iT stage 1: training the Dynamic VAE with L1 + KL (+ perceptual) + PatchGAN hinge loss.

Grain maps come from the entropy of each training image against thresholds fitted with the very same
entropy function (jaxmoda.d2it.entropy). The autoencoder and the discriminator are one model trained by
one optimizer in one backward pass: the generator's terms see the discriminator's parameters through
stop_gradient and the discriminator's term sees the reconstruction through stop_gradient, so each
parameter group receives exactly its own gradient (jaxmoda.nn.gan documents the identity).
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoda.config import ConfigDict
from jaxmoda.errors import ConfigError

log = logging.getLogger(__name__)


def _conv_with(h_bhwc: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """The decoder's last 3x3 'SAME' conv with an explicit kernel (for the adaptive GAN weight)."""
    y = jax.lax.conv_general_dilated(h_bhwc, kernel.astype(h_bhwc.dtype), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return (y + bias).astype(jnp.float32)


class DVAETask:
    """Model: `jaxmoda.d2it.dvae.DynamicVAE`; batch: {"image": [B,H,W,3] in [-1,1], "label": int32 [B]}."""

    def __init__(self, config: ConfigDict):
        from jaxmoda.d2it.entropy import EntropySettings
        self.config = config
        m, d = config.model, config.d2it
        self.settings = EntropySettings.from_config(d.entropy)
        size = config.data.image_size
        factors = tuple(m.encoder.factors)
        if len(factors) != 2:
            raise ConfigError(f"config.model.encoder.factors={factors}: the dual-grain latent needs exactly two factors")
        if self.settings.region_size != max(factors):
            raise ConfigError(f"config.d2it.entropy.region_size={self.settings.region_size} must equal the coarse factor "
                              f"{max(factors)} (one grain decision per coarse code)")
        if size % max(factors):
            raise ConfigError(f"config.data.image_size={size} is not a multiple of the coarse factor {max(factors)}")
        if 2 ** (len(m.decoder.ch_mult) - 1) != min(factors):
            raise ConfigError(f"config.model.decoder.ch_mult has {len(m.decoder.ch_mult)} levels; it needs "
                              f"log2({min(factors)}) + 1 to upsample the fine grid back to pixels")
        if not 0.0 <= d.fine_ratio <= 1.0:
            raise ConfigError(f"config.d2it.fine_ratio={d.fine_ratio} must be in [0, 1]")
        self._threshold_value = None
        self.lpips = None
        if d.lpips_weights:
            from jaxmoda.nn.perceptual import load_lpips_weights
            self.lpips = load_lpips_weights(d.lpips_weights)
        else:
            log.info("perceptual loss off: config.d2it.lpips_weights names no weights file")
        self._holdout = None

    @property
    def threshold(self) -> float:
        """Entropy threshold for the configured fine ratio; fitted on first use (runs eagerly, even when
        first read inside a jit trace), so loading a run only to decode costs nothing."""
        if self._threshold_value is None:
            with jax.ensure_compile_time_eval():
                self._threshold_value = self._threshold()
        return self._threshold_value

    def _threshold(self) -> float:
        """Entropy threshold for the configured fine ratio: from a thresholds file or fitted here."""
        from jaxmoda.d2it import fit_thresholds as T
        d = self.config.d2it
        if d.fine_ratio in (0.0, 1.0):  # every region coarse / fine: nothing to fit
            return float("inf") if d.fine_ratio == 0.0 else float("-inf")
        if d.thresholds:
            return T.load_thresholds(d.thresholds, self.settings).threshold_for(d.fine_ratio)
        # Deterministic: the same images every time, so a resumed run or the encoder gets the same value.
        fitted, n = T.fit_dataset(self.config.data, self.settings, num_images=d.threshold_fit_images,
                                  seed=self.config.seed, progress=False)
        value = T.Thresholds.from_fitted(fitted, self.settings).threshold_for(d.fine_ratio)
        log.info("entropy threshold %.4f for fine ratio %.2f, fitted on %d training images", value, d.fine_ratio, n)
        return value

    def build_model(self, rngs: nnx.Rngs):
        from jaxmoda.d2it.dvae import DynamicVAE
        m = self.config.model
        size = self.config.data.image_size
        disc = dict(m.discriminator) if self.config.d2it.disc_weight > 0 else None
        return DynamicVAE(encoder=dict(m.encoder, resolution=size), decoder=dict(m.decoder, resolution=size),
                          discriminator=disc, rngs=rngs)

    def grain_map(self, images: jax.Array) -> jax.Array:
        from jaxmoda.d2it.entropy import entropy_map
        from jaxmoda.d2it.grains import from_fine_mask
        return from_fine_mask(entropy_map(images, self.settings) > self.threshold)

    def reconstruct(self, model, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Posterior-mean reconstruction and the grain map used."""
        grain = self.grain_map(images)
        z, _ = model.encode(images, grain)
        return jnp.clip(model.decode(z), -1.0, 1.0), grain

    def loss(self, model, batch: dict, rng: jax.Array, step: jax.Array) -> tuple[jax.Array, dict]:
        from jaxmoda.nn import gan
        d = self.config.d2it
        x = batch["image"]
        grain = self.grain_map(x)
        z, kl = model.encode(x, grain, rng)
        h = model.decoder.features(z)
        kernel, bias = model.decoder.conv_out.kernel[...], model.decoder.conv_out.bias[...]

        def rec_loss(k):
            x_hat = _conv_with(h, k, bias)
            value = jnp.mean(jnp.abs(x - x_hat))
            if self.lpips is not None:
                from jaxmoda.nn.perceptual import lpips_distance
                value = value + d.lpips_weight * jnp.mean(lpips_distance(self.lpips, x_hat, x))
            return value

        x_hat = _conv_with(h, kernel, bias)
        rec = rec_loss(kernel)
        l1 = jnp.mean(jnp.abs(x - x_hat))
        total = rec + d.kl_weight * jnp.mean(kl)
        metrics = {"l1": l1, "kl": jnp.mean(kl), "fine_ratio": jnp.mean(grain.astype(jnp.float32)),
                   "psnr": jnp.mean(psnr(x, x_hat))}
        if model.disc is not None:
            gd, dstate = nnx.split(model.disc)
            frozen = nnx.merge(gd, jax.lax.stop_gradient(dstate))

            def g_loss(k):
                return gan.hinge_g_loss(frozen(_conv_with(h, k, bias)))

            factor = gan.disc_factor(step, d.disc_start)
            weight = gan.adaptive_weight(gan.last_layer_grad_norm(rec_loss, kernel),
                                         gan.last_layer_grad_norm(g_loss, kernel), max_weight=d.disc_weight_max)
            g = g_loss(kernel)
            d_loss = gan.hinge_d_loss(model.disc(x), model.disc(jax.lax.stop_gradient(x_hat)))
            total = total + factor * d.disc_weight * weight * g + factor * d_loss
            metrics.update(g_loss=g, d_loss=d_loss, d_weight=weight * factor)
        return total, metrics

    def sample(self, model, rng: jax.Array, num: int, **_) -> jax.Array:
        """Held-out originals and their reconstructions, interleaved (original, reconstruction, ...)."""
        images = jnp.asarray(self.holdout(max(num // 2, 1)))
        recon, _ = self.reconstruct(model, images)
        return jnp.stack([images, recon], axis=1).reshape((-1,) + images.shape[1:])

    def holdout(self, num: int) -> np.ndarray:
        """`num` images from the data source under another seed (patches: other cuts of the photos)."""
        if self._holdout is None or len(self._holdout) < num:
            from jaxmoda.data import build_source
            ds, _ = build_source(self.config.data, seed=self.config.seed + 1_000_003)
            picks = [ds[len(ds) - 1 - i] for i in range(num * 2)]
            self._holdout = np.stack([p["image"] for p in picks if p is not None][:num])
        return self._holdout[:num]

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        s, c = self.config.data.image_size, self.config.data.channels
        rng = np.random.default_rng(0)
        return {"image": rng.uniform(-1, 1, (batch_size, s, s, c)).astype(np.float32),
                "label": np.zeros((batch_size,), np.int32)}

    def data_iterator(self, process_index: int, process_count: int):
        from jaxmoda.data import make_train_iterator
        return make_train_iterator(self.config.data, global_batch_size=self.config.batch_size, seed=self.config.seed,
                                   process_index=process_index, process_count=process_count)


def psnr(x: jax.Array, y: jax.Array) -> jax.Array:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2), per example."""
    mse = jnp.mean(jnp.square(jnp.clip(y, -1, 1) - x), axis=tuple(range(1, x.ndim)))
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10))
