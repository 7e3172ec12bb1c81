"""The released MoDA motion generator (TalkingHeadDiT, keys `talking_head_dit.*`) -> jaxmoda's MotionDiT.

| MoDA key (i = block, j = 1..3 audio / emotion / identity)  | jaxmoda path                               |
|-------------------------------------------------------------|--------------------------------------------|
| motion_embedder / identity_embedder / time_embedder .mlp.0/.2 | motion_embed / identity_embed / t_embed .fc1/.fc2 |
| audio_embedder.proj1..3, .norm.weight                        | audio_embed.fc1..3, .norm_scale            |
| emo_embedder.embedding_table.weight [9, d]                   | emotion_embed.table.embedding (row 8 null) |
| blocks4.i: attn1.qkv_xs / qkv_au{j}, xs_q_norm / au_q_norm{j}, xs_k_norm / au_k_norm{j}, xs_proj / au_proj{j}, xs_mlp / audio_mlp{j}, adaLN_modulation_xs / _audio{j}.1 | stage1.blocks.streams.{0 / j} (qkv, q_norm, k_norm, out, mlp, ada) [i] |
| blocks2.i: the same with `au` / `audio` for the condition stream | stage2.blocks.streams.{0 / 1} [i]   |
| blocks.i: attn1.xs_q/k_norm, qkv_xs [3d + 4d, d], linear2 [d, d + 4d], adaLN_modulation_xs.1 | stage3.blocks (attn.qkv + mlp_in; attn.out + mlp_out) [i] |
| final_layer.linear, final_layer.adaLN_modulation.1           | final, final_ada                           |

The released code rotates interleaved channel pairs (2k, 2k+1) with RoPE; jaxmoda pairs halves (k, k + D/2).
q and k (and their RMSNorm scales) are permuted within each head to match, which leaves every attention
score unchanged. linear2's single bias goes to attn.out, and mlp_out's bias is zero: the sum is the same.
The null features (`null_audio_feat`, `null_motion_feat`) are not registered parameters in the released
code and are usually absent: then null_audio / null_prefix are set to zeros and the summary says so.
`scheduler.sigmas` (a recomputable buffer) is ignored.
"""

from __future__ import annotations

import numpy as np

from jaxmoda.convert.core import StateReader, flat_paths, linear


def _perm(head_dim: int) -> np.ndarray:
    return np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])


def _qkv(w: np.ndarray, b: np.ndarray, d: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """[3d, d] weight, [3d] bias -> kernel [d, 3, h, hd], bias [3, h, hd] with q and k permuted."""
    hd = d // h
    kernel, bias = linear(w).reshape(d, 3, h, hd), b.reshape(3, h, hd)
    p = _perm(hd)
    kernel[:, :2], bias[:2] = kernel[:, :2][..., p], bias[:2][..., p]
    return kernel, bias


def _stream(r: StateReader, base: str, names: dict, d: int, h: int, hidden: int) -> dict:
    hd = d // h
    out = {}
    out["attn.qkv.kernel"], out["attn.qkv.bias"] = _qkv(r(f"{base}.{names['qkv']}.weight", (3 * d, d)),
                                                        r(f"{base}.{names['qkv']}.bias", (3 * d,)), d, h)
    for ours, theirs in (("q_norm", names["q"]), ("k_norm", names["k"])):
        out[f"attn.{ours}.scale"] = r(f"{base}.{theirs}.weight", (hd,))[_perm(hd)]
    out["attn.out.kernel"] = linear(r(f"{base}.{names['out']}.weight", (d, d))).reshape(h, hd, d)
    out["attn.out.bias"] = r(f"{base}.{names['out']}.bias", (d,))
    for fc, shape in (("fc1", (hidden, d)), ("fc2", (d, hidden))):
        out[f"mlp.{fc}.kernel"] = linear(r(f"{base}.{names['mlp']}.{fc}.weight", shape))
        out[f"mlp.{fc}.bias"] = r(f"{base}.{names['mlp']}.{fc}.bias", (shape[0],))
    out["ada.kernel"] = linear(r(f"{base}.{names['ada']}.1.weight", (6 * d, d)))
    out["ada.bias"] = r(f"{base}.{names['ada']}.1.bias", (6 * d,))
    return out


def _stack(dicts: list[dict], prefix: str) -> dict:
    return {f"{prefix}.{k}": np.stack([x[k] for x in dicts]) for k in dicts[0]} if dicts else {}


def _names(stream: int, four: bool) -> dict:
    if stream == 0:
        return {"qkv": "attn1.qkv_xs", "q": "attn1.xs_q_norm", "k": "attn1.xs_k_norm", "out": "attn1.xs_proj",
                "mlp": "xs_mlp", "ada": "adaLN_modulation_xs"}
    j = str(stream) if four else ""
    return {"qkv": f"attn1.qkv_au{j}", "q": f"attn1.au_q_norm{j}", "k": f"attn1.au_k_norm{j}",
            "out": f"attn1.au_proj{j}", "mlp": f"audio_mlp{j}", "ada": f"adaLN_modulation_audio{j}"}


def convert(state: dict[str, np.ndarray], abstract_params, *, num_heads: int) -> tuple[dict, str]:
    """(flat {path: array} for a MotionDiT's abstract pure-dict params, summary) from a MoDA state dict."""
    r = StateReader(state, "MoDA motion generator (talking_head_dit layout)",
                    strip_prefixes=("module.talking_head_dit.", "talking_head_dit.", "module."))
    r.ignore("scheduler", "the flow-matching sigmas buffer, recomputed here")
    target = flat_paths(abstract_params)
    d = target["t_embed.fc2.kernel"].shape[0]
    h = num_heads
    hidden = target["stage3.blocks.mlp_in.kernel"].shape[-1] if "stage3.blocks.mlp_in.kernel" in target else 4 * d
    out: dict[str, np.ndarray] = {}
    for ours, theirs in (("motion_embed", "motion_embedder"), ("identity_embed", "identity_embedder"),
                         ("t_embed", "time_embedder")):
        for fc, idx in (("fc1", 0), ("fc2", 2)):
            shape = target[f"{ours}.{fc}.kernel"].shape
            out[f"{ours}.{fc}.kernel"] = linear(r(f"{theirs}.mlp.{idx}.weight", shape[::-1]))
            out[f"{ours}.{fc}.bias"] = r(f"{theirs}.mlp.{idx}.bias", (d,))
    for k in (1, 2, 3):
        shape = target[f"audio_embed.fc{k}.kernel"].shape
        out[f"audio_embed.fc{k}.kernel"] = linear(r(f"audio_embedder.proj{k}.weight", shape[::-1]))
        out[f"audio_embed.fc{k}.bias"] = r(f"audio_embedder.proj{k}.bias", (d,))
    out["audio_embed.norm_scale"] = r("audio_embedder.norm.weight", (d,))
    out["emotion_embed.table.embedding"] = r("emo_embedder.embedding_table.weight",
                                             target["emotion_embed.table.embedding"].shape)
    notes = []
    for ours, theirs, size in (("null_audio", "null_audio_feat", target["null_audio"].shape[0]),
                               ("null_prefix", "null_motion_feat", target["null_prefix"].shape[0])):
        if r.has(theirs):
            out[ours] = r(theirs).reshape(-1)
        else:
            out[ours] = np.zeros((size,), np.float32)
            notes.append(ours)
    depth = {s: target[f"{s}.blocks.streams.0.ada.kernel"].shape[0] if f"{s}.blocks.streams.0.ada.kernel" in target
             else 0 for s in ("stage1", "stage2")}
    for i_stream in range(4):
        out.update(_stack([_stream(r, f"blocks4.{i}", _names(i_stream, True), d, h, hidden)
                           for i in range(depth["stage1"])], f"stage1.blocks.streams.{i_stream}"))
    for i_stream in range(2):
        out.update(_stack([_stream(r, f"blocks2.{i}", _names(i_stream, False), d, h, hidden)
                           for i in range(depth["stage2"])], f"stage2.blocks.streams.{i_stream}"))
    singles = []
    n3 = target["stage3.blocks.ada.kernel"].shape[0] if "stage3.blocks.ada.kernel" in target else 0
    hd = d // h
    for i in range(n3):
        b = f"blocks.{i}"
        w, bias = r(f"{b}.qkv_xs.weight", (3 * d + hidden, d)), r(f"{b}.qkv_xs.bias", (3 * d + hidden,))
        blk = {}
        blk["attn.qkv.kernel"], blk["attn.qkv.bias"] = _qkv(w[:3 * d], bias[:3 * d], d, h)
        blk["mlp_in.kernel"], blk["mlp_in.bias"] = linear(w[3 * d:]), bias[3 * d:]
        for ours, theirs in (("q_norm", "attn1.xs_q_norm"), ("k_norm", "attn1.xs_k_norm")):
            blk[f"attn.{ours}.scale"] = r(f"{b}.{theirs}.weight", (hd,))[_perm(hd)]
        w2 = r(f"{b}.linear2.weight", (d, d + hidden))
        blk["attn.out.kernel"] = linear(w2[:, :d]).reshape(h, hd, d)
        blk["attn.out.bias"] = r(f"{b}.linear2.bias", (d,))
        blk["mlp_out.kernel"], blk["mlp_out.bias"] = linear(w2[:, d:]), np.zeros((d,), np.float32)
        blk["ada.kernel"] = linear(r(f"{b}.adaLN_modulation_xs.1.weight", (3 * d, d)))
        blk["ada.bias"] = r(f"{b}.adaLN_modulation_xs.1.bias", (3 * d,))
        singles.append(blk)
    out.update(_stack(singles, "stage3.blocks"))
    out["final.kernel"] = linear(r("final_layer.linear.weight", (target["final.kernel"].shape[1], d)))
    out["final.bias"] = r("final_layer.linear.bias", target["final.bias"].shape)
    out["final_ada.kernel"] = linear(r("final_layer.adaLN_modulation.1.weight", (2 * d, d)))
    out["final_ada.bias"] = r("final_layer.adaLN_modulation.1.bias", (2 * d,))
    params = r.finish(out, target)
    summary = r.summary()
    if notes:
        summary += f"; {', '.join(notes)} not in the file (the released code draws them at random): set to zeros"
    return params, summary
