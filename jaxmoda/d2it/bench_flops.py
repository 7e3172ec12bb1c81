"""python -m jaxmoda.d2it.bench_flops [--size xl] [--batch 8] [--out table.md]

XLA-counted FLOPs of D²iT against DiT baselines at 256-px shapes, from abstract shapes (nothing is
allocated or run, so the XL size counts on a CPU): per training example (one train step / batch) and
per image per sampling step (one guided DCT evaluation, CFG doubling included). D²iT rows at fine
ratios r = 0.3 / 0.5 / 0.7 for both layouts; baselines: DiT/2 on the 32x32x4 latent (256 tokens), the
DCT with every region fine (1024 tokens, DiT/1 on f=8) and every region coarse (256 tokens, DiT/1 on
f=16). Prints a Markdown table (and writes it with --out).
"""

from __future__ import annotations

import argparse
import logging

from jaxmoda.errors import cli_main
from jaxmoda.logs import emit

SIZES = {"b": "ffhq256_b", "l": "ffhq256_l", "xl": "imagenet256_xl"}
DIT = {"b": (768, 12, 12), "l": (1024, 24, 16), "xl": (1152, 28, 16)}


def variants(size: str, batch: int) -> list[tuple[str, str, dict]]:
    common = {"batch_size": str(batch), "mesh.data": "1", "mesh.fsdp": "-1"}
    d2it = f"configs/d2it/{SIZES[size]}.py"
    hidden, depth, heads = DIT[size]
    rows = [(f"DiT-{size.upper()}/2 (f=8 latent)", "configs/dit/xl2.py",
             dict(common, **{"model.hidden": str(hidden), "model.depth": str(depth), "model.num_heads": str(heads)}))]
    for layout, name in (("mixed", "H2 mixed"), ("region", "H1 region")):
        for r in ("0.3", "0.5", "0.7"):
            rows.append((f"D²iT-{size.upper()} {name}, r={r}", d2it,
                         dict(common, **{"model.dct.layout": layout, "d2it.example_fine_ratio": r})))
    for grain, n in (("fine", 1024), ("coarse", 256)):
        rows.append((f"DCT all-{grain} baseline (no DGT/RefineNet)", d2it,
                     dict(common, **{"d2it.force_grain": grain, "model.dgt.enabled": "false",
                                     "model.dct.refine_depth": "0", "d2it.buckets": f"[{n}]"})))
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.d2it.bench_flops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="xl", choices=sorted(SIZES))
    parser.add_argument("--batch", type=int, default=8, help="examples per counted step (FLOPs are reported per example)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from jaxmoda.bench import count_flops
    from jaxmoda.config import apply_override, load_config_file

    lines = ["| model | tokens (real / bucket) | params | train GFLOPs / example | sample GFLOPs / image / step | vs DiT/2 (train, sample) |",
             "|---|---|---|---|---|---|"]
    base = None
    for name, path, overrides in variants(args.size, args.batch):
        config = load_config_file(path)
        for key, raw in overrides.items():
            apply_override(config, key, raw)
        r = count_flops(config)
        train, sample = r["train_flops_per_example"] / 1e9, r["sample_flops_per_image_step"] / 1e9
        base = base or (train, sample)
        tokens = (f"{r['tokens_per_example']:.0f} / {r['bucket_length']}" if "bucket_length" in r else "256 / 256")
        lines.append(f"| {name} | {tokens} | {r['params'] / 1e6:.0f}M | {train:.0f} | {sample:.0f} | "
                     f"{train / base[0]:.2f}x, {sample / base[1]:.2f}x |")
        print(lines[-1], flush=True)
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    cli_main(main)
