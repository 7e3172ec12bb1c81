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
