"""A renderer for one GPU: the tiny renderer's layout at twice its widths (838K parameters), 64 px,
2000 SynthFaces training faces, batch 64, cosine decay to zero over 10100 steps.

python -m jaxmoda.train --config configs/moda/renderer_small.py --workdir runs/renderer_small
python -m jaxmoda.eval_render --workdir runs/renderer_small
python -m jaxmoda.train --config configs/moda/renderer_small.py:tiny ...   # the 258K tiny model, same data and schedule

On one H100 (the two variants sharing it) 47-52 steps/s. README: held-out PSNR +5.4 dB over copying
the source (+3.0 dB for :tiny). The 2000 faces (32000 frames, 393 MB) are drawn once and cached, in
about 80 s on 2 CPU cores.
"""

from configs.moda import renderer_tiny
from jaxmoda.errors import ConfigError

WIDER = {"base_ch": 32, "feat_ch": 16, "depth": 8, "gen_in": 64, "gen_ch": 64, "spade_hidden": 32, "dm_hidden": 32}


def get_config(arg="small"):
    if arg not in ("small", "tiny"):
        raise ConfigError(f"configs/moda/renderer_small.py:{arg} is unknown; use :small (default) or :tiny")
    c = renderer_tiny.get_config()
    if arg == "small":
        c.model.update(WIDER)
    c.batch_size = 64
    c.render.train_identities = 2000
    c.total_steps = 10100 if arg == "small" else 11300
    c.optimizer.schedule = "cosine"
    c.optimizer.decay_steps = c.total_steps - c.optimizer.warmup_steps
    c.log_every = 100
    c.checkpoint_every = 2000
    c.sample_every = 4000
    return c
