"""Tiny MoDA motion generator on SynthTalk (eSpeak NG speech + synthetic ground-truth motion; CPU).

python -m jaxmoda.train --config configs/moda/tiny.py --workdir runs/moda_tiny
python -m jaxmoda.motion --workdir runs/moda_tiny --audio speech.wav --out motion.npy
python -m jaxmoda.eval_motion --workdir runs/moda_tiny
SynthTalk is generated once into ~/.cache/jaxmoda (or $JAXMODA_CACHE) unless --config.data_dir names
an existing set (python -m jaxmoda.data.synthtalk --out DIR --num N).
"""

from configs.moda.common_moda import moda_config, motion_model


def get_config():
    c = moda_config(
        motion_model(hidden=96, num_heads=4, four_stream_depth=1, two_stream_depth=1, single_depth=2),
        total_steps=4000, batch_size=16, log_every=50, checkpoint_every=1000, sample_every=1000)
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 200
    c.optimizer.weight_decay = 0.01
    c.optimizer.b2 = 0.99
    c.ema_decay = 0.999
    c.moda.synthtalk_clips = 600
    return c
