"""Tiny Dynamic VAE on 64x64 patches of scikit-image's photographs (CPU, minutes).

python -m jaxmoda.train --config configs/d2it/dvae_tiny.py --workdir runs/dvae_tiny
"""

import ml_collections

from configs.d2it.common_d2it import dvae_config


def get_config():
    encoder = ml_collections.ConfigDict({
        "ch": 32, "ch_mult": (1, 1, 2, 2, 2), "num_res_blocks": 1, "attn_resolutions": (),
        "factors": (8, 16), "z_channels": 4, "head_attention": True})
    decoder = ml_collections.ConfigDict({
        "ch": 32, "ch_mult": (1, 1, 2, 2), "num_res_blocks": 1, "attn_resolutions": (),
        "z_channels": 4, "position_embedding": True})
    disc = ml_collections.ConfigDict({"n_layers": 2, "ndf": 32})
    c = dvae_config(image_size=64, encoder=encoder, decoder=decoder, discriminator=disc,
                    data={"source": "patches", "patch_scale": (0.1, 0.3)},
                    total_steps=1500, batch_size=16, log_every=25, checkpoint_every=500, sample_every=500)
    c.optimizer.learning_rate = 4e-4
    c.optimizer.warmup_steps = 100
    c.d2it.disc_start = 750
    c.d2it.threshold_fit_images = 256
    return c
