"""Tiny MoDA motion generator on SynthTalk (eSpeak NG speech + synthetic ground-truth motion; CPU).

python -m jaxmoda.train --config configs/moda/tiny.py --workdir runs/moda_tiny
python -m jaxmoda.motion --workdir runs/moda_tiny --audio speech.wav --out motion.npy
python -m jaxmoda.eval_motion --workdir runs/moda_tiny
SynthTalk is generated once into ~/.cache/jaxmoda (or $JAXMODA_CACHE) unless --config.data_dir names
an existing set (python -m jaxmoda.data.synthtalk --out DIR --num N).

configs/moda/tiny.py:fast is the make-demo recipe: 40-frame windows, width 64, one single-stream
block, 200 clips, learning rate 3e-3, 700 steps (about 1.5 min on 2 CPU cores); it lip-syncs, less
well than the default (README, MoDA figures).
"""

from configs.moda.common_moda import moda_config, motion_model


def get_config(arg: str = ""):
    if arg not in ("", "fast"):
        raise ValueError(f"configs/moda/tiny.py knows the variant 'fast' (or none), not {arg!r}")
    c = moda_config(
        motion_model(hidden=96, num_heads=4, four_stream_depth=1, two_stream_depth=1, single_depth=2),
        total_steps=4000, batch_size=16, log_every=50, checkpoint_every=1000, sample_every=1000)
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 200
    c.optimizer.weight_decay = 0.01
    c.optimizer.b2 = 0.99
    c.ema_decay = 0.999
    c.moda.synthtalk_clips = 600
    if arg == "fast":
        c.model.update(hidden=64, single_depth=1, window=40)
        c.moda.synthtalk_clips = 200
        c.optimizer.learning_rate = 3e-3
        c.optimizer.warmup_steps = 50
        c.total_steps = 700
        c.log_every, c.checkpoint_every, c.sample_every = 25, 700, 700
    return c
