"""Shared pieces of the MoDA renderer configs (LivePortrait-style; jaxmoda/tasks/renderer.py)."""

import ml_collections

from configs.common import get_common


def renderer_model(size: str = "tiny", **overrides):
    """Module sizes of `jaxmoda.moda.render.modules.RendererConfig`: 'tiny' (CPU) or 'full' (256 px)."""
    from dataclasses import asdict

    from jaxmoda.moda.render.modules import RendererConfig
    base = RendererConfig.tiny() if size == "tiny" else RendererConfig.full()
    m = ml_collections.ConfigDict({"name": "renderer", **asdict(base)})
    m.discriminator = ml_collections.ConfigDict({"n_layers": 3, "ndf": 64})
    m.update(overrides)
    return m


def render_group(**overrides):
    g = ml_collections.ConfigDict({
        "train_identities": 400,   # SynthFaces training faces (synthfaces.TRAIN_IDENTITIES)
        "eval_identities": 64,     # held-out faces (synthfaces.EVAL_IDENTITIES)
        "frames_per_identity": 16,
        "records": "",             # records of python -m jaxmoda.data.videos: one clip = one identity (else SynthFaces)
        "kp_from": "true",         # 'true': labelled keypoints; 'extracted': the motion extractor's (end to end)
        "l1_weight": 1.0,
        "lpips_weights": "",       # .npz of VGG16 + LPIPS heads (jaxmoda.nn.perceptual); empty = no perceptual term
        "lpips_weight": 1.0,
        "disc_weight": 0.0,        # PatchGAN hinge term; 0 = off
        "disc_start": 0,
        "motion_weight": 1.0,      # supervised motion extractor (labels exist on SynthFaces)
        "equivariance_weight": 0.1,
        "prior_weight": 0.01,
        "prior_distance": 0.003,   # squared distance (x_c units) below which two canonical keypoints repel
        "prior_depth": 0.1,        # target mean depth of the canonical keypoints (SynthTalk's: 0.08-0.12)
    })
    g.update(overrides)
    return g


def renderer_config(model, **top):
    c = get_common()
    c.model = model
    c.render = render_group()
    c.data_dir = ""                # SynthTalk clips whose motion drives the faces; empty = generate and cache
    c.moda = ml_collections.ConfigDict({"synthtalk_clips": 200, "synthtalk_seed": 0})
    c.num_samples = 8              # held-out (source | driving | re-rendered) rows in the sample grid
    c.update(top)
    return c
