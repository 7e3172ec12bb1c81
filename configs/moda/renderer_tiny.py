"""Tiny MoDA renderer on SynthFaces at 64x64 (CPU).

python -m jaxmoda.train --config configs/moda/renderer_tiny.py --workdir runs/renderer_tiny
python -m jaxmoda.eval_render --workdir runs/renderer_tiny
6000 steps take about 70 min on 2 CPU cores (README: held-out PSNR +1.6 dB over copying the source;
+2.6 dB at 13000 steps with --config.total_steps=13000).
The faces are drawn once from SynthTalk motion (200 clips, the set configs/moda/tiny.py:fast uses) and cached.
"""

from configs.moda.common_renderer import renderer_config, renderer_model


def get_config():
    c = renderer_config(renderer_model("tiny", image_size=64), total_steps=6000, batch_size=8, log_every=25,
                        checkpoint_every=1000, sample_every=1000)
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 100
    c.optimizer.b2 = 0.99
    c.optimizer.grad_clip = 0.0   # the extractor's and the renderer's gradients differ in scale by 10-100x
    c.ema_decay = 0.999
    return c
