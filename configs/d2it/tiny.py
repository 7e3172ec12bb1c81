"""Tiny D²iT (DGT + DCT in one run) on the latents of the tiny Dynamic VAE (64-px patches of
scikit-image's photographs, 8 classes = source photographs; CPU, minutes).

python -m jaxmoda.train --config configs/d2it/dvae_tiny.py --workdir runs/dvae_tiny
python -m jaxmoda.train --config configs/d2it/tiny.py --workdir runs/d2it_tiny --config.dvae_workdir=runs/dvae_tiny
python -m jaxmoda.sample --workdir runs/d2it_tiny --num 16 --out grid.png
The latents are encoded into runs/dvae_tiny/latents on first use.
"""

from configs.d2it.common_d2it import dct_model, dgt_model, stage2_config


def get_config():
    c = stage2_config(
        grid=4, latent_channels=4, num_classes=8,
        dct=dct_model(hidden=128, depth=4, refine_depth=1, num_heads=4),
        dgt=dgt_model(hidden=64, depth=2, num_heads=4),
        buckets=(28, 40, 52, 64),          # 4x4 regions: 16 + 3 x N_fine tokens, at most 64
        total_steps=2000, batch_size=32, log_every=25, checkpoint_every=500, sample_every=500)
    c.optimizer.learning_rate = 3e-4
    c.optimizer.warmup_steps = 100
    c.ema_decay = 0.999
    c.objective.sample_steps = 32
    c.objective.sampler = "heun"
    c.objective.cfg_scale = 2.0
    c.d2it.encode_images = 4096        # 4096 patches and their flips
    c.num_samples = 16
    return c
