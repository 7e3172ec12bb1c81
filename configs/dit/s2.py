"""DiT-S/2 on 32x32x4 latents (the official DiT's 256-px shape): hidden 384, depth 12, 6 heads, patch 2.

Train it on pre-encoded latents written as ArrayRecord (--config.data.source=arrayrecord
--config.data.path=...); `python -m jaxmoda.bench --config configs/dit/s2.py` needs no data.
"""

from configs.dit.common_dit import dit_config, dit_model


def get_config(arg=None):
    """`configs/dit/s2.py:cpu` trades recompute for memory traffic, which pays on CPUs: remat of
    everything but matmul outputs and 4 microbatches of 8 (same gradient as one batch of 32)."""
    c = dit_config(
        dit_model(input_size=32, in_channels=4, patch_size=2, hidden=384, depth=12, num_heads=6, num_classes=1000),
        data={"source": "arrayrecord", "image_size": 32, "channels": 4},
        total_steps=400_000, batch_size=32, log_every=100, checkpoint_every=10_000, sample_every=10_000)
    if arg == "cpu":
        c.model.remat = "dots"
        c.microbatches = 4
    elif arg:
        raise ValueError(f"configs/dit/s2.py knows the variant 'cpu', not {arg!r}")
    return c
