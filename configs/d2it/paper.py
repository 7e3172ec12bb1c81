"""The paper's D²iT sizes on 256-px images (16x16 regions, n_z = 4), with DiT's widths and depths.

  ffhq256_b   D²iT-B  12 blocks (10 DiT + 2 RefineNet), d 768,  12 heads, FFHQ, unconditional
  ffhq256_l   D²iT-L  24 blocks (22 + 2),               d 1024, 16 heads, FFHQ, unconditional (467M)
  imagenet256_xl D²iT-XL 28 blocks (26 + 2),            d 1152, 16 heads, ImageNet, 1000 classes (687M)

Training follows DiT's recipe where the paper is silent (AdamW 1e-4 constant, batch 256, EMA 0.9999).
"""

from configs.d2it.common_d2it import dct_model, dgt_model, stage2_config

SIZES = {"b": (768, 12, 12), "l": (1024, 24, 16), "xl": (1152, 28, 16)}
BUCKETS = (512, 640, 768, 896, 1024)   # 256 + 3 x N_fine tokens, N_fine <= 256


def paper_config(size: str, *, num_classes: int):
    hidden, depth, heads = SIZES[size]
    c = stage2_config(
        grid=16, latent_channels=4, num_classes=num_classes,
        dct=dct_model(hidden=hidden, depth=depth, refine_depth=2, num_heads=heads, dtype="bfloat16",
                      attention="auto", remat="dots"),
        dgt=dgt_model(hidden=384, depth=12, num_heads=6),
        buckets=BUCKETS, total_steps=400_000, batch_size=256, log_every=100, checkpoint_every=10_000,
        sample_every=10_000)
    c.optimizer.learning_rate = 1e-4
    c.ema_decay = 0.9999
    c.num_samples = 16
    c.mesh.data, c.mesh.fsdp = 1, -1
    if num_classes == 1:   # unconditional: one real class, no condition dropout, no guidance
        c.objective.cfg_dropout = c.dgt_objective.cfg_dropout = 0.0
        c.objective.cfg_scale = c.dgt_objective.cfg_scale = 1.0
    return c
