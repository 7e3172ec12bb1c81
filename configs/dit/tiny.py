"""Tiny class-conditional DiT on 32x32 patches of scikit-image's photographs (CPU, minutes).

python -m jaxmoda.train --config configs/dit/tiny.py --workdir runs/dit_tiny
"""

from configs.dit.common_dit import dit_config, dit_model


def get_config():
    c = dit_config(
        dit_model(input_size=32, in_channels=3, patch_size=4, hidden=128, depth=4, num_heads=4, num_classes=8),
        data={"source": "patches", "image_size": 32, "channels": 3},
        total_steps=3000, batch_size=32, log_every=25, checkpoint_every=1000, sample_every=1000)
    c.optimizer.learning_rate = 3e-4
    c.optimizer.warmup_steps = 100
    c.ema_decay = 0.999
    c.objective.sample_steps = 32
    c.objective.sampler = "heun"
    c.objective.cfg_scale = 2.0
    return c
