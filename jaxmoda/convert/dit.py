"""The released DiT checkpoints (facebookresearch/DiT: DiT-XL-2-256x256.pt and its layout at any size)
-> jaxmoda's `DiT` (jaxmoda.nn.dit), also the layout of D²iT's content transformer backbone.

| DiT state-dict key (i = block)                   | jaxmoda path                      | transform                  |
|--------------------------------------------------|-----------------------------------|----------------------------|
| x_embedder.proj.weight [D, C, p, p], .bias        | patch_embed.proj.kernel, .bias    | -> [(p p C), D]            |
| t_embedder.mlp.0 / mlp.2 .weight, .bias           | t_embed.fc1 / fc2                 | transposed                 |
| y_embedder.embedding_table.weight [K+1, D]        | y_embed.table.embedding           | row K is the null label    |
| pos_embed [1, T, D] (fixed)                       | (computed: sincos_2d)             | checked equal, not loaded  |
| blocks.i.attn.qkv.weight [3D, D], .bias           | blocks.blocks.attn.qkv.kernel[i]  | -> [D, 3, H, D/H]          |
| blocks.i.attn.proj.weight, .bias                  | blocks.blocks.attn.out.kernel[i]  | -> [H, D/H, D]             |
| blocks.i.mlp.fc1 / fc2 .weight, .bias             | blocks.blocks.mlp.fc1 / fc2       | transposed                 |
| blocks.i.adaLN_modulation.1.weight [6D, D], .bias | blocks.blocks.ada[i]              | transposed (same chunks)   |
| final_layer.adaLN_modulation.1 .weight, .bias     | final.ada                         | transposed                 |
| final_layer.linear.weight [p p C', D], .bias      | final.proj                        | C' = 2C with learned sigma: the variance channels are dropped (reported) |

The released models are DDPM ε-predictors (1000 steps, linear betas, t = k): use `objective.name=ddpm`.
"""

from __future__ import annotations

import numpy as np

from jaxmoda.convert.core import StateReader, flat_paths, linear
from jaxmoda.errors import CheckpointError


def convert(state: dict[str, np.ndarray], abstract_params, *, num_heads: int, patch_size: int,
            in_channels: int, grid: int) -> tuple[dict, str]:
    """(flat {path: array} for a DiT's abstract pure-dict params, summary) from a DiT state dict."""
    from jaxmoda.nn.embeddings import sincos_2d
    r = StateReader(state, "DiT (facebookresearch/DiT layout)", strip_prefixes=("module.",))
    target = flat_paths(abstract_params)
    d = target["patch_embed.proj.kernel"].shape[1]
    depth = target["blocks.blocks.ada.kernel"].shape[0]
    p, c, h = patch_size, in_channels, num_heads
    out = {}
    w = r("x_embedder.proj.weight", (d, c, p, p))
    out["patch_embed.proj.kernel"] = np.transpose(w, (2, 3, 1, 0)).reshape(p * p * c, d)
    out["patch_embed.proj.bias"] = r("x_embedder.proj.bias", (d,))
    for ours, theirs in (("fc1", "mlp.0"), ("fc2", "mlp.2")):
        shape = target[f"t_embed.{ours}.kernel"].shape
        out[f"t_embed.{ours}.kernel"] = linear(r(f"t_embedder.{theirs}.weight", shape[::-1]))
        out[f"t_embed.{ours}.bias"] = r(f"t_embedder.{theirs}.bias", (d,))
    out["y_embed.table.embedding"] = r("y_embedder.embedding_table.weight", target["y_embed.table.embedding"].shape)
    if r.has("pos_embed"):
        pos = r("pos_embed", (1, grid * grid, d))[0]
        err = float(np.abs(pos - sincos_2d(d, grid, grid)).max())
        if err > 1e-4:
            raise CheckpointError(f"pos_embed differs from the fixed 2-D sin-cos embedding by {err:.3g}: not a "
                                  f"DiT trained at a {grid}x{grid} token grid (check input_size and patch_size)")
    blocks: dict[str, list] = {}
    for i in range(depth):
        b = f"blocks.{i}"
        blocks.setdefault("attn.qkv.kernel", []).append(linear(r(f"{b}.attn.qkv.weight", (3 * d, d))).reshape(d, 3, h, d // h))
        blocks.setdefault("attn.qkv.bias", []).append(r(f"{b}.attn.qkv.bias", (3 * d,)).reshape(3, h, d // h))
        blocks.setdefault("attn.out.kernel", []).append(linear(r(f"{b}.attn.proj.weight", (d, d))).reshape(h, d // h, d))
        blocks.setdefault("attn.out.bias", []).append(r(f"{b}.attn.proj.bias", (d,)))
        for fc in ("fc1", "fc2"):
            shape = target[f"blocks.blocks.mlp.{fc}.kernel"].shape[1:]
            blocks.setdefault(f"mlp.{fc}.kernel", []).append(linear(r(f"{b}.mlp.{fc}.weight", shape[::-1])))
            blocks.setdefault(f"mlp.{fc}.bias", []).append(r(f"{b}.mlp.{fc}.bias", (shape[1],)))
        blocks.setdefault("ada.kernel", []).append(linear(r(f"{b}.adaLN_modulation.1.weight", (6 * d, d))))
        blocks.setdefault("ada.bias", []).append(r(f"{b}.adaLN_modulation.1.bias", (6 * d,)))
    out.update({f"blocks.blocks.{k}": np.stack(v) for k, v in blocks.items()})
    out["final.ada.kernel"] = linear(r("final_layer.adaLN_modulation.1.weight", (2 * d, d)))
    out["final.ada.bias"] = r("final_layer.adaLN_modulation.1.bias", (2 * d,))
    w = r.state.get("final_layer.linear.weight")
    c_out = c if w is None or w.shape[0] != 2 * p * p * c else 2 * c
    w = r("final_layer.linear.weight", (p * p * c_out, d)).reshape(p, p, c_out, d)[:, :, :c].reshape(p * p * c, d)
    bias = r("final_layer.linear.bias", (p * p * c_out,)).reshape(p, p, c_out)[:, :, :c].reshape(-1)
    out["final.proj.kernel"], out["final.proj.bias"] = linear(w), bias
    params = r.finish(out, target)
    summary = r.summary() + (f"; dropped the {c} learned-variance output channels of final_layer.linear"
                             if c_out == 2 * c else "")
    return params, summary
