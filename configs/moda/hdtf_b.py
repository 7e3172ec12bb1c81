"""MoDA at the paper's size (TalkingHeadDiT-B: hidden 768, 12 heads, 3 + 6 + 12 blocks, 373M) with the
HuBERT-base audio front end (12 layers x 768 per frame), for accelerators.

python -m jaxmoda.train --config configs/moda/hdtf_b.py --workdir /mnt/gcs/BUCKET/moda_b \\
    --config.data_dir=RECORDS_DIR --config.audio.hubert_weights=chinese-hubert-base/pytorch_model.bin
Training recipe where the paper is silent (moda.md 4.2): AdamW 1e-4, 2k warm-up then cosine, wd 0.01,
betas (0.9, 0.99), clip 1, batch 256 windows, EMA 0.999, bf16.
"""

from configs.moda.common_moda import moda_config, motion_model


def get_config():
    c = moda_config(motion_model(dtype="bfloat16", attention="auto", remat="dots"),
                    total_steps=200_000, batch_size=256, log_every=100, checkpoint_every=5000, sample_every=5000)
    c.audio.frontend = "hubert"
    c.optimizer.learning_rate = 1e-4
    c.optimizer.warmup_steps = 2000
    c.optimizer.schedule = "cosine"
    c.optimizer.decay_steps = 200_000
    c.optimizer.weight_decay = 0.01
    c.optimizer.b2 = 0.99
    c.ema_decay = 0.999
    return c
