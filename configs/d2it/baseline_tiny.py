"""Fixed-grain baselines of configs/d2it/tiny.py on the same Dynamic VAE: every region fine (a DiT/1
on the f=8 latent) or every region coarse (a DiT/1 on the f=16 latent), no DGT, no RefineNet.

python -m jaxmoda.train --config configs/d2it/baseline_tiny.py:fine --workdir runs/d2it_tiny_fine \\
    --config.dvae_workdir=runs/dvae_tiny
Latents are encoded with the forced grain into <dvae_workdir>/latents_fine (or _coarse).
"""

from configs.d2it import tiny


def get_config(arg="fine"):
    if arg not in ("fine", "coarse"):
        raise ValueError(f"configs/d2it/baseline_tiny.py knows the variants 'fine' and 'coarse', not {arg!r}")
    c = tiny.get_config()
    c.model.dgt.enabled = False
    c.model.dct.refine_depth = 0
    c.model.dct.pos_embed = "sincos"
    c.d2it.force_grain = arg
    n = c.model.grid ** 2
    c.d2it.buckets = [4 * n] if arg == "fine" else [n]
    return c
