"""Dynamic VAE at the paper's scale: 256x256 images, f = 8 / 16, DQ-VAE-sized trunk (for accelerators).

python -m jaxmoda.train --config configs/d2it/dvae_256.py:ffhq --workdir /mnt/gcs/BUCKET/dvae_ffhq \\
    --config.data.path=/data/ffhq
`:imagenet` reads an ArrayRecord copy of ImageNet train (data/folder_to_arrayrecord.py --size 256).
The architecture follows the DQ-VAE encoder/decoder (research notes, d2it.md 3.1 and 3.5); D²iT's own
n_z is not published, 4 (the SD-VAE / DiT setting) is the default.
"""

import ml_collections

from configs.d2it.common_d2it import dvae_config


def get_config(arg="ffhq"):
    encoder = ml_collections.ConfigDict({
        "ch": 128, "ch_mult": (1, 1, 2, 2, 4), "num_res_blocks": 2, "attn_resolutions": (32, 16),
        "factors": (8, 16), "z_channels": 4, "head_attention": True})
    decoder = ml_collections.ConfigDict({
        "ch": 128, "ch_mult": (1, 1, 2, 2), "num_res_blocks": 3, "attn_resolutions": (32,),
        "z_channels": 4, "position_embedding": True})
    disc = ml_collections.ConfigDict({"n_layers": 3, "ndf": 64})
    if arg == "ffhq":
        data = {"source": "folder", "path": "", "class_from_subdirs": False}
    elif arg == "imagenet":
        data = {"source": "arrayrecord", "path": ""}
    else:
        raise ValueError(f"configs/d2it/dvae_256.py knows the variants 'ffhq' and 'imagenet', not {arg!r}")
    c = dvae_config(image_size=256, encoder=encoder, decoder=decoder, discriminator=disc, data=data,
                    total_steps=400_000, batch_size=240, log_every=100, checkpoint_every=5000, sample_every=5000)
    # DQ-VAE: base lr 4.5e-6 x global batch (8 x 30 = 240) = 1.08e-3, warmup then cosine to 0.
    c.optimizer.learning_rate = 1.08e-3
    c.optimizer.schedule = "cosine"
    c.optimizer.decay_steps = 400_000
    c.optimizer.warmup_steps = 2000
    c.mesh.data, c.mesh.fsdp = -1, 1
    c.d2it.threshold_fit_images = 4096
    return c
