"""MoDA renderer at LivePortrait's resolution (256x256) and module widths, on SynthFaces.

python -m jaxmoda.train --config configs/moda/renderer_256.py --workdir /mnt/gcs/BUCKET/renderer_256
Perceptual term: --config.render.lpips_weights=/path/lpips_vgg.npz (jaxmoda.nn.perceptual converts the
VGG16 + LPIPS heads from PyTorch files); the PatchGAN term starts at disc_start.
"""

from configs.moda.common_renderer import renderer_config, renderer_model


def get_config():
    c = renderer_config(renderer_model("full", image_size=256), total_steps=200_000, batch_size=64, log_every=100,
                        checkpoint_every=5000, sample_every=5000)
    c.render.train_identities = 5000      # x 16 frames: 15.7 GB of uint8 frames, memory-mapped
    c.render.eval_identities = 256
    c.render.frames_per_identity = 16
    c.render.disc_weight = 0.1
    c.render.disc_start = 20_000
    c.moda.synthtalk_clips = 4000
    c.optimizer.learning_rate = 2e-4
    c.optimizer.warmup_steps = 1000
    c.optimizer.b1 = 0.5
    c.optimizer.b2 = 0.999
    c.optimizer.grad_clip = 0.0
    c.ema_decay = 0.999
    c.mesh.data = -1
    return c
