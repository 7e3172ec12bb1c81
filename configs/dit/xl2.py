"""DiT-XL/2 on 32x32x4 latents (ImageNet-256 shape): hidden 1152, depth 28, 16 heads, bf16 compute.

The D²iT paper's baseline at full size; for pods (FSDP over `fsdp`) and for accelerator benchmarks.
"""

from configs.dit.common_dit import dit_config, dit_model


def get_config():
    c = dit_config(
        dit_model(input_size=32, in_channels=4, patch_size=2, hidden=1152, depth=28, num_heads=16, num_classes=1000,
                  dtype="bfloat16", attention="auto"),
        data={"source": "arrayrecord", "image_size": 32, "channels": 4},
        total_steps=400_000, batch_size=256, log_every=100, checkpoint_every=10_000, sample_every=10_000)
    c.mesh.data, c.mesh.fsdp = 1, -1
    return c
