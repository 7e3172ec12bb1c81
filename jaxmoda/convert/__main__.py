"""python -m jaxmoda.convert dit --weights DiT-XL-2-256x256.pt --config configs/dit/xl2.py --out RUN [--config.k=v]

Imports released PyTorch weights into a jaxmoda run folder: RUN/config.json and RUN/export (the params
and their signature), which `python -m jaxmoda.sample --workdir RUN`, `jaxmoda.eval.fid` and
`jaxmoda.export` load like a trained run. Weight files are read without running their pickles
(.pt/.pth/.bin through jaxmoda.eval.torchfile, or .safetensors / .npz); every key and shape is checked.

Kinds:
  dit   facebookresearch/DiT layout (DiT-XL-2-256x256.pt); the released models are DDPM ε-predictors, so
        the config is switched to objective.name=ddpm with 1000 linear-beta steps unless --keep-objective.
  moda  the released MoDA motion generator (net-200.pth, `talking_head_dit.*`) into a MotionDiT config
        (configs/moda/hdtf_b.py). Motion is normalised with the config's moda.motion_mean / motion_std:
        set them to the statistics the weights were trained with.
HuBERT / wav2vec2-base weights need no import step: point config.audio.hubert_weights at the
Hugging Face file.
"""

from __future__ import annotations

import argparse
import os

from jaxmoda.errors import ConfigError, cli_main
from jaxmoda.logs import setup_logging


def import_run(kind: str, weights: str, config, out: str) -> str:
    from flax import nnx

    from jaxmoda.config import to_json
    from jaxmoda.convert.core import unflatten
    from jaxmoda.eval.weights import read_state_dict
    from jaxmoda.io.atomic import write_text
    from jaxmoda.tasks import get_task
    from jaxmoda.train.checkpoint import export_params, param_signature
    from jaxmoda.train.state import abstract_model
    if config.model.name != kind:
        raise ConfigError(f"the {kind} importer needs a config with model.name={kind!r}, got {config.model.name!r}")
    m = config.model
    _, abstract = abstract_model(get_task(config).build_model)
    pure = nnx.to_pure_dict(abstract)
    state = read_state_dict(weights)
    if kind == "dit":
        from jaxmoda.convert import dit
        flat, summary = dit.convert(state, pure, num_heads=m.num_heads, patch_size=m.patch_size,
                                    in_channels=m.in_channels, grid=m.input_size // m.patch_size)
    else:
        from jaxmoda.convert import moda
        flat, summary = moda.convert(state, pure, num_heads=m.num_heads)
    os.makedirs(out, exist_ok=True)
    meta = {"model_name": kind, "params": param_signature(pure), "step": 0, "imported_from": os.path.abspath(weights),
            "config": config.to_dict()}
    export_params(os.path.join(out, "export"), unflatten(flat), meta)
    write_text(os.path.join(out, "config.json"), to_json(config))
    return summary


def main(argv: list[str]) -> int:
    from jaxmoda.config import load_config, split_overrides
    overrides, rest = split_overrides(argv)
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["dit", "moda"])
    parser.add_argument("--weights", required=True, help="the released weights file (.pt, .pth, .bin, .safetensors)")
    parser.add_argument("--config", required=True, help="the jaxmoda config of the same architecture")
    parser.add_argument("--out", required=True, help="the run folder to write (config.json + export/)")
    parser.add_argument("--keep-objective", action="store_true", help="keep the config's objective")
    args = parser.parse_args(rest)
    setup_logging()
    if os.path.isdir(os.path.join(args.out, "checkpoints")):
        raise ConfigError(f"{args.out} holds a training run's checkpoints; import into a new folder")
    config = load_config(args.config, overrides)
    if args.kind == "dit" and not args.keep_objective:  # DiT's DDPM: 1000 linear-beta steps, sampled with DDIM by default
        config.objective.update({"name": "ddpm", "sampler": "auto", "sample_shift": 1.0, "num_train_timesteps": 1000,
                                 "beta_start": 1e-4, "beta_end": 0.02})
    summary = import_run(args.kind, args.weights, config, args.out)
    print(f"imported {args.weights} into {args.out} ({summary}); sample it with "
          f"python -m jaxmoda.sample --workdir {args.out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
