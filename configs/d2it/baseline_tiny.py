"""Fixed-grain baselines of configs/d2it/tiny.py on the same Dynamic VAE: every region fine (a DiT/1
on the f=8 latent) or every region coarse (a DiT/1 on the f=16 latent), no DGT, no RefineNet.

python -m jaxmoda.train --config configs/d2it/baseline_tiny.py:fine --workdir runs/d2it_tiny_fine \\
    --config.dvae_workdir=runs/dvae_tiny
Latents are encoded with the forced grain into <dvae_workdir>/latents_fine (or _coarse).
"""

from configs.d2it import tiny
from configs.d2it.common_d2it import fixed_grain_baseline


def get_config(arg="fine"):
    return fixed_grain_baseline(tiny.get_config(), arg, "configs/d2it/baseline_tiny.py")
