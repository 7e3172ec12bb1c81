"""Shared pieces of the D²iT configs."""

import ml_collections

from configs.common import get_common
from jaxmoda.data.config import default_data_config


def entropy_config(region_size=16):
    return ml_collections.ConfigDict({
        "region_size": region_size,   # = the coarse factor: one grain decision per coarse code
        "bins": 0,                    # 0 = the paper's P = region_size^2 bins
        "sigma": 0.01,
        "value_min": -1.0,
        "value_max": 1.0,
    })


def d2it_group(**overrides):
    d = ml_collections.ConfigDict({
        "entropy": entropy_config(),
        "fine_ratio": 0.5,            # r: dataset-average fraction of fine regions (DQ-VAE's default)
        "thresholds": "",             # a thresholds.json from python -m jaxmoda.d2it.fit_thresholds;
                                      # empty = fit on threshold_fit_images training images at start
        "threshold_fit_images": 512,
        "kl_weight": 1e-6,            # LDM's KL weight; the paper does not give D²iT's
        "lpips_weights": "",          # .npz of LPIPS-VGG weights (jaxmoda.nn.perceptual); empty = off
        "lpips_weight": 1.0,
        "disc_weight": 1.0,           # 0 disables the discriminator
        "disc_weight_max": 0.75,      # cap of the adaptive GAN weight (DQ-VAE)
        "disc_start": 0,
    })
    d.update(overrides)
    return d


def dvae_config(*, image_size, encoder, decoder, discriminator, data=None, **top):
    c = get_common()
    c.model = ml_collections.ConfigDict({"name": "dvae", "encoder": encoder, "decoder": decoder,
                                         "discriminator": discriminator})
    c.data = default_data_config()
    c.data.image_size = image_size
    if data:
        c.data.update(data)
    c.d2it = d2it_group()
    c.optimizer.b1, c.optimizer.b2 = 0.5, 0.9     # Adam betas of the taming/DQ-VAE recipe
    c.ema_decay = 0.999
    c.num_samples = 16
    c.update(top)
    return c


def dct_model(**overrides):
    """The Dynamic Content Transformer: `depth` transformer blocks, the last `refine_depth` of them the
    RefineNet (the paper counts RefineNet blocks as layers: D²iT-B = 10 DiT + 2 RefineNet)."""
    m = ml_collections.ConfigDict({
        "hidden": 768, "depth": 12, "refine_depth": 2, "num_heads": 12, "mlp_ratio": 4.0,
        "layout": "mixed",        # mixed (H2: all blocks on coarse + fine tokens) | region (H1: h*w region tokens)
        "pos_embed": "learned",   # learned (the paper's ablation) | sincos
        "attention": "xla",       # xla | cudnn | splash | auto
        "qk_norm": False,
        "remat": "none",          # none | full | dots | dots_all
        "dtype": "float32",
        "param_dtype": "float32",
    })
    m.update(overrides)
    return m


def dgt_model(**overrides):
    """The Dynamic Grain Transformer: a small DiT over the grain map (patch 1)."""
    m = ml_collections.ConfigDict({
        "enabled": True,          # False for the fixed-grain baselines (d2it.force_grain)
        "formulation": "analog_bits",   # analog_bits (flow/DDPM on +-1 maps) | masked (not built)
        "hidden": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0,
    })
    m.update(overrides)
    return m


def stage2_config(*, grid, latent_channels, num_classes, dct, dgt, buckets, **top):
    """A D²iT stage-2 run: DGT + DCT on the cached latents of the DVAE named by `dvae_workdir`."""
    from jaxmoda.flow import default_objective_config
    c = get_common()
    c.model = ml_collections.ConfigDict({"name": "d2it", "grid": grid, "latent_channels": latent_channels,
                                         "num_classes": num_classes, "dct": dct, "dgt": dgt})
    c.dvae_workdir = ""            # the trained Dynamic VAE run (its decoder renders samples)
    c.latents = ""                 # a cache from python -m jaxmoda.d2it.encode; empty = <dvae_workdir>/latents,
                                   # encoded there on first use
    c.objective = default_objective_config()        # the DCT's (rectified flow; 'ddpm' = the paper's)
    c.dgt_objective = default_objective_config()    # the DGT's
    c.dgt_objective.sample_steps = 25
    c.dgt_objective.cfg_scale = 1.0
    c.d2it = ml_collections.ConfigDict({
        "buckets": list(buckets),      # token bucket lengths; one compiled step per bucket
        "sample_length": 0,            # tokens at sampling; 0 = the largest bucket (denser maps are clipped)
        "coarse_weight": 1.0,          # dynamic grain loss weights per coarse / fine token
        "fine_weight": 1.0,
        "dgt_weight": 1.0,             # DGT loss weight in the joint objective
        "force_grain": "",             # '' | fine | coarse: fixed-grain DiT baselines on the same DVAE
        "scale_factor": 0.0,           # latent scale; 0 = 1/std from the cache (then saved in config.json)
        "encode_images": 0,            # images to encode on first use (0 = all of the DVAE's data)
        "example_fine_ratio": 0.5,     # fine ratio of benchmark/compile example batches
    })
    c.update(top)
    return c


def fixed_grain_baseline(c, arg, config_file):
    """A D²iT stage-2 config turned into its fixed-grain DiT baseline on the same Dynamic VAE: every
    region fine (a DiT/1 on the f=8 latent) or every region coarse (a DiT/1 on the f=16 latent), no
    DGT, no RefineNet; latents encoded with the forced grain into <dvae_workdir>/latents_<arg>."""
    if arg not in ("fine", "coarse"):
        raise ValueError(f"{config_file} knows the variants 'fine' and 'coarse', not {arg!r}")
    c.model.dgt.enabled = False
    c.model.dct.refine_depth = 0
    c.model.dct.pos_embed = "sincos"
    c.d2it.force_grain = arg
    n = c.model.grid ** 2
    c.d2it.buckets = [4 * n] if arg == "fine" else [n]
    return c
