"""Dynamic VAE on Fashion-MNIST (IDX files; Debian's dataset-fashion-mnist installs them under
/usr/share/datasets/fashion-mnist), 28x28 padded to 32x32 so the image is 2x2 coarse regions.

python -m jaxmoda.train --config configs/d2it/dvae_fmnist.py --workdir runs/dvae_fmnist
"""

import ml_collections

from configs.d2it.common_d2it import dvae_config


def get_config():
    encoder = ml_collections.ConfigDict({
        "ch": 32, "ch_mult": (1, 2, 2, 2, 2), "num_res_blocks": 1, "attn_resolutions": (),
        "factors": (8, 16), "z_channels": 4, "head_attention": True})
    decoder = ml_collections.ConfigDict({
        "ch": 32, "ch_mult": (1, 2, 2, 2), "num_res_blocks": 1, "attn_resolutions": (),
        "z_channels": 4, "position_embedding": True})
    disc = ml_collections.ConfigDict({"n_layers": 2, "ndf": 32, "in_channels": 1})
    c = dvae_config(image_size=32, encoder=dict(encoder, in_channels=1), decoder=dict(decoder, out_channels=1),
                    discriminator=disc,
                    data={"source": "idx", "path": "/usr/share/datasets/fashion-mnist", "channels": 1},
                    total_steps=20_000, batch_size=64, log_every=50, checkpoint_every=2000, sample_every=2000)
    c.optimizer.learning_rate = 4e-4
    c.d2it.disc_start = 5000
    return c
