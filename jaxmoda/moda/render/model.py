"""The talking-head renderer as one trainable model, and the keypoint maths that connects it to motion.

`TalkingHeadRenderer` holds the motion extractor (image -> canonical keypoints and 70-d motion), the
renderer (appearance volume, dense motion, warping, SPADE generator), the stitching MLP and, when a
GAN term is configured, a PatchGAN discriminator.

Keypoints. Motion in the 70-d layout (`jaxmoda.moda.motion`) drives the canonical keypoints `x_c`
through `motion.transform_keypoints` in LivePortrait's units, where the square [-1.05, 1.05]^2 fills
the face crop (`synthfaces.VIEW_HALF_EXTENT`). `grid_keypoints` divides by that extent, so (x, y)
land in the (-1, 1) grid frame of the appearance volume (x: columns, y: rows, z: depth).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmoda.moda import motion as mo
from jaxmoda.moda.render.modules import (
    MotionExtractor,
    Renderer,
    RendererConfig,
    StitchingMLP,
)

VIEW_HALF_EXTENT = 1.05   # LP units from the crop centre to its border (= synthfaces.VIEW_HALF_EXTENT)
SCALE_PRIOR = 1.0         # the motion extractor predicts the scale as SCALE_PRIOR + its head's output


def grid_keypoints(x_c: jax.Array, motion70: jax.Array) -> jax.Array:
    """[B, 21, 3] canonical keypoints, [B, 70] motion -> [B, 21, 3] keypoints in grid units."""
    p = mo.split(motion70)
    return mo.transform_keypoints(x_c, p["pose"], p["exp"], p["scale"], p["t"]) / VIEW_HALF_EXTENT


def extracted_motion(out: dict) -> jax.Array:
    """The motion extractor's outputs -> [B, 70] motion (pose by soft-argmax over the bins)."""
    return mo.join({"exp": out["exp"], "scale": out["scale"] + SCALE_PRIOR, "t": out["t"],
                    "pose": mo.bins_to_degrees(out["pose_bins"])})


class TalkingHeadRenderer(nnx.Module):
    """motion_extractor + renderer + stitching (+ discriminator when `disc` is a config dict)."""

    def __init__(self, cfg: RendererConfig, *, disc: dict | None = None, rngs: nnx.Rngs):
        self.cfg = cfg
        self.motion_extractor = MotionExtractor(cfg, rngs=rngs)
        self.renderer = Renderer(cfg, zero_init_mask=True, rngs=rngs)
        self.stitching = StitchingMLP(cfg, rngs=rngs)
        if disc is not None:
            from jaxmoda.nn.patchgan import PatchDiscriminator
            self.disc = PatchDiscriminator(**disc, rngs=rngs)
        else:
            self.disc = None

    def extract(self, image: jax.Array) -> tuple[jax.Array, jax.Array]:
        """image [B, S, S, 3] in [-1, 1] -> (canonical keypoints [B, 21, 3], motion [B, 70])."""
        out = self.motion_extractor(image)
        return out["kp"], extracted_motion(out)

    def render(self, source: jax.Array, kp_source: jax.Array, kp_driving: jax.Array) -> jax.Array:
        """Source image and grid keypoints -> image in [-1, 1]."""
        return self.renderer(source, kp_source, kp_driving)

    def reenact(self, source: jax.Array, x_c: jax.Array, source_motion: jax.Array, driving_motion: jax.Array):
        """The source image re-posed to `driving_motion` ([B, 70]) with canonical keypoints `x_c`."""
        return self.render(source, grid_keypoints(x_c, source_motion), grid_keypoints(x_c, driving_motion))

    def __call__(self, source, x_c, source_motion, driving_motion):
        return self.reenact(source, x_c, source_motion, driving_motion)


def render_frames(model: TalkingHeadRenderer, source: jax.Array, x_c: jax.Array, source_motion: jax.Array,
                  driving_motion: jax.Array, *, stitch: bool = True) -> jax.Array:
    """One source [1, S, S, 3] driven by F motions [F, 70] -> [F, S, S, 3]; the appearance volume is
    computed once and shared by every frame. With `stitch`, the driving keypoints pass through the
    stitching MLP first (LivePortrait's paste-back correction; the identity until it is trained or
    imported)."""
    volume = model.renderer.appearance(source)
    f = driving_motion.shape[0]
    kp_s = jnp.broadcast_to(grid_keypoints(x_c, source_motion), (f, *x_c.shape[1:]))
    kp_d = grid_keypoints(jnp.broadcast_to(x_c, (f, *x_c.shape[1:])), driving_motion)
    if stitch:
        kp_d = model.stitching.stitch(kp_s, kp_d)
    return model.renderer.render_features(jnp.broadcast_to(volume, (f, *volume.shape[1:])), kp_s, kp_d)
