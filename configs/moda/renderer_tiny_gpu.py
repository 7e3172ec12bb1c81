"""The tiny MoDA renderer (configs/moda/renderer_tiny.py's 258K-parameter model) trained on one GPU:
5x the training faces, batch 64 and a cosine decay to zero.

python -m jaxmoda.train --config configs/moda/renderer_tiny_gpu.py --workdir runs/renderer_tiny_gpu
python -m jaxmoda.eval_render --workdir runs/renderer_tiny_gpu

The 2000 training faces (32000 frames at 64 px, 393 MB) are drawn once and cached, in about
2 minutes on 2 CPU cores. README: the held-out gain over copying the source, with the time it took.
"""

from configs.moda import renderer_tiny


def get_config():
    c = renderer_tiny.get_config()
    c.batch_size = 64
    c.total_steps = 16000
    c.render.train_identities = 2000
    c.optimizer.schedule = "cosine"
    c.optimizer.decay_steps = c.total_steps - c.optimizer.warmup_steps
    c.log_every = 100
    c.checkpoint_every = 2000
    c.sample_every = 4000
    return c
