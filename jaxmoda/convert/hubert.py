"""Hugging Face HubertModel / Wav2Vec2Model weights (safetensors or pytorch_model.bin) -> jaxmoda's
`HubertModel` (jaxmoda.moda.hubert; its docstring has the name table).

Kernels are transposed ([out, in] -> [in, out]; conv [out, in, k] -> [k, in, out]); the positional
convolution's weight norm (weight_g, weight_v, or parametrizations.weight.original0/1) is folded into
one kernel. A `wav2vec2.` / `hubert.` prefix (pre-training and CTC checkpoints) is stripped and their
heads (quantizer, project_q, project_hid, lm_head, final_proj, label_embs_concat) are ignored and named.
"""

from __future__ import annotations

import numpy as np

from jaxmoda.convert.core import StateReader, flat_paths, linear

HEADS = {"quantizer": "wav2vec2 pre-training quantizer", "project_q": "pre-training head",
         "project_hid": "pre-training head", "lm_head": "CTC head", "final_proj": "HuBERT pre-training head",
         "label_embs_concat": "HuBERT pre-training targets", "dropout_features": "unused"}


def _pos_conv(r: StateReader, shape) -> np.ndarray:
    k, in_per_group, out = shape
    base = "encoder.pos_conv_embed.conv"
    if r.has(f"{base}.parametrizations.weight.original0"):
        g, v = f"{base}.parametrizations.weight.original0", f"{base}.parametrizations.weight.original1"
    else:
        g, v = f"{base}.weight_g", f"{base}.weight_v"
    g, v = r(g, (1, 1, k)), r(v, (out, in_per_group, k))
    norm = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=(0, 1), keepdims=True))
    w = g * v / np.maximum(norm, 1e-12)
    return np.ascontiguousarray(np.transpose(w, (2, 1, 0)))


def convert(state: dict[str, np.ndarray], abstract_params) -> tuple[dict, str]:
    """(flat {path: array} for `abstract_params` (an NNX pure dict), summary) from a HF state dict."""
    from jaxmoda.moda.hubert import hf_name
    r = StateReader(state, "Hugging Face HuBERT / wav2vec2-base", strip_prefixes=("wav2vec2.", "hubert."))
    for head, why in HEADS.items():
        r.ignore(head, why)
    target = flat_paths(abstract_params)
    out = {}
    for path, leaf in target.items():
        shape = tuple(leaf.shape)
        if path == "encoder.pos_conv_embed.conv.kernel":
            out[path] = _pos_conv(r, shape)
            continue
        key = hf_name(path.split("."))
        if path.endswith("kernel") and len(shape) == 3:  # Conv1d [out, in, k] -> [k, in, out]
            out[path] = np.transpose(r(key, (shape[2], shape[1], shape[0])), (2, 1, 0))
        elif path.endswith("kernel"):
            out[path] = linear(r(key, shape[::-1]))
        else:
            out[path] = r(key, shape)
    return r.finish(out, target), r.summary()


def read_config(weights: str):
    """The HubertConfig of a Hugging Face weights file: its folder's config.json, else HuBERT-base."""
    import json
    import os

    from jaxmoda.moda.hubert import HubertConfig
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), "config.json")
    if not os.path.isfile(path):
        return HubertConfig()
    with open(path) as f:
        return HubertConfig.from_dict(json.load(f))


def load_model(weights: str):
    """A `HubertModel` holding the weights of a Hugging Face HuBERT / wav2vec2-base file (sizes from the
    config.json beside it, else HuBERT-base), every key and shape checked."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxmoda.convert.core import unflatten
    from jaxmoda.eval.weights import read_state_dict
    from jaxmoda.moda.hubert import HubertModel
    from jaxmoda.train.state import abstract_model
    cfg = read_config(weights)
    graphdef, abstract = abstract_model(lambda r: HubertModel(cfg, rngs=r))
    flat, _ = convert(read_state_dict(weights), nnx.to_pure_dict(abstract))
    nnx.replace_by_pure_dict(abstract, jax.tree.map(jnp.asarray, unflatten(flat)))
    return nnx.merge(graphdef, abstract)
