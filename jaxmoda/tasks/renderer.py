"""MoDA's renderer: training the LivePortrait-style motion extractor, warping renderer and stitching.

Batch (`jaxmoda.moda.render.data.pair_batch`): a source and a driving frame of one identity
([B, S, S, 3] in [-1, 1]), their 70-d motions and the identity's canonical keypoints x_c.

Loss terms (weights in `config.render`; every term is logged):

* reconstruction: L1 between the driving frame and the source re-rendered with the driving
  keypoints, plus `lpips_weight` x LPIPS when `lpips_weights` names a weights file (VGG + linear
  heads, `jaxmoda.nn.perceptual`; nothing is downloaded), plus a PatchGAN hinge term from
  `disc_start` when `disc_weight` > 0.
* motion (`motion_weight`): the motion extractor regresses each frame's canonical keypoints (L1 in
  grid units) and its 70-d motion (L1 z-scored by `motion.default_stats`, averaged per group so that
  expression, scale, translation and pose weigh the same: `motion_group_errors`); with labelled data
  this pins the extractor to the generator's motion space.
* equivariance (`equivariance_weight`, LivePortrait / FOMM): keypoints found on a randomly
  rotated, scaled and shifted copy of the driving frame, mapped back through that transform, equal
  those found on the frame itself.
* prior (`prior_weight`, face-vid2vid): canonical keypoints (in the units of x_c, LivePortrait's)
  stay at least sqrt(`prior_distance`) apart (hinge on squared distances) and their mean depth stays
  at `prior_depth`.

`config.render.kp_from` picks the keypoints the renderer is trained with: 'true' (the labels,
default on SynthFaces) or 'extracted' (the motion extractor's, end to end, as on unlabelled video).
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoda.config import ConfigDict
from jaxmoda.errors import ConfigError
from jaxmoda.tasks.dvae import psnr

log = logging.getLogger(__name__)

_RENDERER_FIELDS = ("base_ch", "down", "feat_ch", "depth", "res3d_blocks", "num_kp", "num_bins", "motion_ch",
                    "dm_compress", "dm_hidden", "dm_layers", "heatmap_variance", "gen_in", "gen_ch", "gen_mid",
                    "spade_hidden", "stitch_hidden")


def renderer_config(model: ConfigDict):
    """`RendererConfig` from `config.model` (image_size plus the module sizes)."""
    from jaxmoda.moda.render.modules import RendererConfig
    kw = {k: (tuple(model[k]) if isinstance(model[k], (list, tuple)) else model[k]) for k in _RENDERER_FIELDS}
    cfg = RendererConfig(image_size=int(model.image_size), **kw)
    if cfg.image_size % (2 ** cfg.down) or cfg.image_size % (2 ** len(cfg.motion_ch)):
        raise ConfigError(f"config.model.image_size={cfg.image_size} must be divisible by 2**down={2 ** cfg.down} "
                          f"and by 2**len(motion_ch)={2 ** len(cfg.motion_ch)}")
    if cfg.num_kp != 21:
        raise ConfigError(f"config.model.num_kp={cfg.num_kp}: the 70-d motion drives 21 keypoints")
    return cfg


def similarity_warp(images: jax.Array, rng: jax.Array, max_angle: float = 10.0, max_scale: float = 0.08,
                    max_shift: float = 0.08) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Random similarity transforms of a batch: (warped [B, S, S, C], A [B, 2, 2], b [B, 2]).

    The warped image at grid point p shows the original at A p + b, so keypoints k_w found on the
    warped image correspond to A k_w + b on the original (zeros outside the original).
    """
    from jaxmoda.moda.render.warp import grid_sample_2d, identity_grid_2d
    bsz, s = images.shape[0], images.shape[1]
    ka, ks, kt = jax.random.split(rng, 3)
    angle = jnp.deg2rad(jax.random.uniform(ka, (bsz,), minval=-max_angle, maxval=max_angle))
    scale = 1.0 + jax.random.uniform(ks, (bsz,), minval=-max_scale, maxval=max_scale)
    shift = jax.random.uniform(kt, (bsz, 2), minval=-max_shift, maxval=max_shift)
    c, si = jnp.cos(angle) * scale, jnp.sin(angle) * scale
    a = jnp.stack([jnp.stack([c, -si], -1), jnp.stack([si, c], -1)], -2)          # [B, 2, 2]
    grid = identity_grid_2d(s, s)                                                  # [S, S, 2]
    coords = jnp.einsum("bij,hwj->bhwi", a, grid) + shift[:, None, None, :]
    return grid_sample_2d(images, coords), a, shift


def prior_loss(kp: jax.Array, distance: float, depth: float) -> jax.Array:
    """face-vid2vid's keypoint prior on [B, K, 3]: mean over pairs i != j of max(0, distance - |k_i - k_j|^2)
    plus |mean_k z - depth|, averaged over the batch."""
    k = kp.shape[1]
    d2 = jnp.sum(jnp.square(kp[:, :, None, :] - kp[:, None, :, :]), -1)
    off = 1.0 - jnp.eye(k)
    sep = jnp.sum(jnp.maximum(0.0, distance - d2) * off, axis=(1, 2)) / (k * (k - 1))
    return jnp.mean(sep + jnp.abs(jnp.mean(kp[..., 2], -1) - depth))


def motion_group_errors(pred: jax.Array, true: jax.Array, std: jax.Array) -> dict[str, jax.Array]:
    """Mean z-scored L1 of the extractor's 70-d motion per group: expression (63 dims), scale (1),
    translation (3) and head pose (3).

    The motion loss averages these four, so each group weighs the same whatever its size; a plain
    mean over the 70 dimensions gives the 3 pose angles 3/70 of it, and an extractor so trained
    reads head pose about 15x too small.
    """
    from jaxmoda.moda import motion as mm
    err = jnp.abs(pred - true) / std
    return {"exp": jnp.mean(err[..., mm.EXP]), "scale": jnp.mean(err[..., mm.SCALE]),
            "trans": jnp.mean(err[..., mm.TRANS]), "pose": jnp.mean(err[..., mm.POSE])}


class RendererTask:
    """Model: `jaxmoda.moda.render.model.TalkingHeadRenderer`; batch: see the module docstring."""

    def __init__(self, config: ConfigDict):
        from jaxmoda.moda.motion import default_stats
        self.config = config
        self.rcfg = renderer_config(config.model)
        r = config.render
        if r.kp_from not in ("true", "extracted"):
            raise ConfigError(f"config.render.kp_from={r.kp_from!r} is unknown; use 'true' or 'extracted'")
        for key in ("l1_weight", "lpips_weight", "disc_weight", "motion_weight", "equivariance_weight", "prior_weight"):
            if r[key] < 0:
                raise ConfigError(f"config.render.{key}={r[key]} must be >= 0")
        self.lpips = None
        if r.lpips_weights and r.lpips_weight > 0:
            from jaxmoda.nn.perceptual import load_lpips_weights
            self.lpips = load_lpips_weights(r.lpips_weights)
        self.motion_std = jnp.asarray(default_stats().std)
        self._eval = None

    @property
    def image_size(self) -> int:
        return self.rcfg.image_size

    def build_model(self, rngs: nnx.Rngs):
        from jaxmoda.moda.render.model import TalkingHeadRenderer
        disc = dict(self.config.model.discriminator) if self.config.render.disc_weight > 0 else None
        return TalkingHeadRenderer(self.rcfg, disc=disc, rngs=rngs)

    # ------------------------------------------------------------------------------------------

    def _motion_terms(self, model, images, motion, x_c):
        from jaxmoda.moda.render.model import extracted_motion, grid_keypoints
        out = model.motion_extractor(images)
        pred_motion = extracted_motion(out)
        kp_err = jnp.mean(jnp.abs(out["kp"] - x_c))
        groups = motion_group_errors(pred_motion, motion, self.motion_std)
        motion_err = sum(groups.values()) / len(groups)
        return kp_err + motion_err, grid_keypoints(out["kp"], pred_motion), out["kp"], groups

    def loss(self, model, batch: dict, rng: jax.Array, step: jax.Array) -> tuple[jax.Array, dict]:
        from jaxmoda.moda.render.model import grid_keypoints
        from jaxmoda.nn import gan
        r = self.config.render
        src, drv = batch["source"], batch["driving"]
        b = src.shape[0]
        images = jnp.concatenate([src, drv])
        motions = jnp.concatenate([batch["source_motion"], batch["driving_motion"]])
        x_c = jnp.concatenate([batch["x_c"], batch["x_c"]])
        motion_loss, kp_pred, kp_c_pred, groups = self._motion_terms(model, images, motions, x_c)
        if r.kp_from == "true":
            kp_s, kp_d = grid_keypoints(batch["x_c"], batch["source_motion"]), grid_keypoints(batch["x_c"], batch["driving_motion"])
        else:
            kp_s, kp_d = kp_pred[:b], kp_pred[b:]
        pred = model.render(src, kp_s, kp_d)
        l1 = jnp.mean(jnp.abs(pred - drv))
        total = r.l1_weight * l1 + r.motion_weight * motion_loss
        metrics = {"l1": l1, "motion": motion_loss, "psnr": jnp.mean(psnr(drv, pred)),
                   "copy_psnr": jnp.mean(psnr(drv, src)), **{f"motion_{k}": v for k, v in groups.items()}}
        if self.lpips is not None:
            from jaxmoda.nn.perceptual import lpips_distance
            lp = jnp.mean(lpips_distance(self.lpips, pred, drv))
            total = total + r.lpips_weight * lp
            metrics["lpips"] = lp
        if r.equivariance_weight > 0:
            warped, a, shift = similarity_warp(drv, rng)
            kp_w = grid_keypoints(*model.extract(warped))[..., :2]
            mapped = jnp.einsum("bij,bkj->bki", a, kp_w) + shift[:, None, :]
            equiv = jnp.mean(jnp.abs(mapped - kp_pred[b:, :, :2]))
            total = total + r.equivariance_weight * equiv
            metrics["equivariance"] = equiv
        if r.prior_weight > 0:
            prior = prior_loss(kp_c_pred, r.prior_distance, r.prior_depth)
            total = total + r.prior_weight * prior
            metrics["prior"] = prior
        if model.disc is not None:
            gd, dstate = nnx.split(model.disc)
            frozen = nnx.merge(gd, jax.lax.stop_gradient(dstate))
            factor = gan.disc_factor(step, r.disc_start)
            g = gan.hinge_g_loss(frozen(pred))
            d_loss = gan.hinge_d_loss(model.disc(drv), model.disc(jax.lax.stop_gradient(pred)))
            total = total + factor * (r.disc_weight * g + d_loss)
            metrics.update(g_loss=g, d_loss=d_loss)
        return total, metrics

    # ------------------------------------------------------------------------------------------

    def eval_pairs(self, num: int) -> dict[str, np.ndarray]:
        """`num` fixed (source, driving) pairs of held-out identities."""
        from jaxmoda.moda.render.data import load_face_set, pair_batch
        if self._eval is None:
            self._eval = load_face_set(self.config, "eval", progress=False)
        return pair_batch(self._eval, np.random.default_rng((int(self.config.seed), 11)), num)

    def prepare_sampling(self) -> None:
        self.eval_pairs(1)

    def reenact(self, model, batch: dict) -> jax.Array:
        return jnp.clip(model.reenact(batch["source"], batch["x_c"], batch["source_motion"], batch["driving_motion"]),
                        -1.0, 1.0)

    def sample(self, model, rng: jax.Array, num: int, **_) -> jax.Array:
        """Held-out pairs side by side: source | driving frame | source re-rendered with its keypoints."""
        batch = {k: jnp.asarray(v) for k, v in self.eval_pairs(max(num, 1)).items()}
        out = self.reenact(model, batch)
        return jnp.concatenate([batch["source"], batch["driving"], out], axis=2)

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        from jaxmoda.data.synthfaces import neutral_motion
        from jaxmoda.data.synthtalk import make_identity
        s = self.image_size
        rng = np.random.default_rng(0)
        m = np.broadcast_to(neutral_motion(), (batch_size, 70)).astype(np.float32)
        x_c = np.broadcast_to(np.asarray(make_identity(0).x_c, np.float32), (batch_size, 21, 3)).copy()
        return {"source": rng.uniform(-1, 1, (batch_size, s, s, 3)).astype(np.float32),
                "driving": rng.uniform(-1, 1, (batch_size, s, s, 3)).astype(np.float32),
                "source_motion": m.copy(), "driving_motion": m.copy(), "x_c": x_c}

    def data_iterator(self, process_index: int, process_count: int):
        from jaxmoda.moda.render.data import load_face_set, make_pair_iterator
        fs = load_face_set(self.config, "train")
        return make_pair_iterator(self.config, fs, process_index=process_index, process_count=process_count)
