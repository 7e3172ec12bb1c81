"""Class-conditional D²iT on Fashion-MNIST latents (10 classes; 32-px images = 2x2 regions).

python -m jaxmoda.train --config configs/d2it/dvae_fmnist.py --workdir runs/dvae_fmnist
python -m jaxmoda.train --config configs/d2it/fmnist.py --workdir runs/d2it_fmnist --config.dvae_workdir=runs/dvae_fmnist
"""

from configs.d2it.common_d2it import dct_model, dgt_model, stage2_config


def get_config():
    c = stage2_config(
        grid=2, latent_channels=4, num_classes=10,
        dct=dct_model(hidden=256, depth=6, refine_depth=2, num_heads=4),
        dgt=dgt_model(hidden=64, depth=2, num_heads=4),
        buckets=(7, 10, 13, 16),           # 2x2 regions: 4 + 3 x N_fine tokens
        total_steps=50_000, batch_size=128, log_every=100, checkpoint_every=5000, sample_every=5000)
    c.optimizer.learning_rate = 2e-4
    c.optimizer.warmup_steps = 500
    c.ema_decay = 0.9995
    c.objective.cfg_scale = 2.0
    return c
