"""Checkpoint importers on synthetic state dicts with the official key names and shapes: every key and
shape checked, problems reported together, and the imported models compute what the original layout
computes (a NumPy forward of the published DiT architecture; HuBERT's transposes and weight norm)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmoda.convert import dit as dit_convert
from jaxmoda.convert import hubert as hubert_convert
from jaxmoda.convert.core import unflatten
from jaxmoda.errors import CheckpointError
from jaxmoda.nn.dit import DiT
from jaxmoda.nn.embeddings import sincos_2d
from jaxmoda.train.state import abstract_model

D, DEPTH, HEADS, P, C, S, K = 32, 2, 4, 2, 3, 8, 5   # width, blocks, heads, patch, channels, size, classes


def official_dit_state(seed=0, learn_sigma=True, D=D, DEPTH=DEPTH, P=P, C=C, S=S, K=K):
    """A state dict in facebookresearch/DiT's layout (names and shapes of DiT-XL/2, smaller)."""
    rng = np.random.default_rng(seed)
    f = lambda *s: (0.2 * rng.standard_normal(s)).astype(np.float32)
    c_out = 2 * C if learn_sigma else C
    g = S // P
    sd = {"x_embedder.proj.weight": f(D, C, P, P), "x_embedder.proj.bias": f(D),
          "t_embedder.mlp.0.weight": f(D, 256), "t_embedder.mlp.0.bias": f(D),
          "t_embedder.mlp.2.weight": f(D, D), "t_embedder.mlp.2.bias": f(D),
          "y_embedder.embedding_table.weight": f(K + 1, D), "pos_embed": sincos_2d(D, g, g)[None],
          "final_layer.adaLN_modulation.1.weight": f(2 * D, D), "final_layer.adaLN_modulation.1.bias": f(2 * D),
          "final_layer.linear.weight": f(P * P * c_out, D), "final_layer.linear.bias": f(P * P * c_out)}
    for i in range(DEPTH):
        b = f"blocks.{i}"
        sd.update({f"{b}.attn.qkv.weight": f(3 * D, D), f"{b}.attn.qkv.bias": f(3 * D),
                   f"{b}.attn.proj.weight": f(D, D), f"{b}.attn.proj.bias": f(D),
                   f"{b}.mlp.fc1.weight": f(4 * D, D), f"{b}.mlp.fc1.bias": f(4 * D),
                   f"{b}.mlp.fc2.weight": f(D, 4 * D), f"{b}.mlp.fc2.bias": f(D),
                   f"{b}.adaLN_modulation.1.weight": f(6 * D, D), f"{b}.adaLN_modulation.1.bias": f(6 * D)})
    return sd


def official_dit_forward(sd, x_nchw, t, y):
    """The published DiT forward in NumPy (NCHW, integer-scale t, learned-sigma output channels)."""
    silu = lambda v: v / (1 + np.exp(-v))
    gelu = lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))
    ln = lambda v: (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-6)
    mod = lambda v, shift, scale: v * (1 + scale[:, None]) + shift[:, None]
    lin = lambda v, name: v @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]
    n, _, h, w = x_nchw.shape
    patches = x_nchw.reshape(n, C, h // P, P, w // P, P).transpose(0, 2, 4, 1, 3, 5).reshape(n, -1, C * P * P)
    x = patches @ sd["x_embedder.proj.weight"].reshape(D, -1).T + sd["x_embedder.proj.bias"] + sd["pos_embed"]
    freqs = np.exp(-np.log(10000) * np.arange(128) / 128)
    args = t[:, None] * freqs[None]
    temb = lin(silu(lin(np.concatenate([np.cos(args), np.sin(args)], -1), "t_embedder.mlp.0")), "t_embedder.mlp.2")
    c = temb + sd["y_embedder.embedding_table.weight"][y]
    for i in range(DEPTH):
        b = f"blocks.{i}"
        s1, c1, g1, s2, c2, g2 = np.split(lin(silu(c), f"{b}.adaLN_modulation.1"), 6, axis=-1)
        qkv = lin(mod(ln(x), s1, c1), f"{b}.attn.qkv").reshape(n, -1, 3, HEADS, D // HEADS).transpose(2, 0, 3, 1, 4)
        logits = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) / np.sqrt(D // HEADS)
        att = np.exp(logits - logits.max(-1, keepdims=True))
        o = (att / att.sum(-1, keepdims=True)) @ qkv[2]
        x = x + g1[:, None] * lin(o.transpose(0, 2, 1, 3).reshape(n, -1, D), f"{b}.attn.proj")
        x = x + g2[:, None] * lin(gelu(lin(mod(ln(x), s2, c2), f"{b}.mlp.fc1")), f"{b}.mlp.fc2")
    shift, scale = np.split(lin(silu(c), "final_layer.adaLN_modulation.1"), 2, axis=-1)
    out = lin(mod(ln(x), shift, scale), "final_layer.linear")
    c_out = out.shape[-1] // (P * P)
    out = out.reshape(n, h // P, w // P, P, P, c_out)
    return np.einsum("nhwpqc->nchpwq", out).reshape(n, c_out, h, w)


def build_dit():
    return abstract_model(lambda r: DiT(input_size=S, in_channels=C, patch_size=P, hidden=D, depth=DEPTH,
                                        num_heads=HEADS, num_classes=K, rngs=r))


def imported_model(sd):
    graphdef, abstract = build_dit()
    params, summary = dit_convert.convert(sd, nnx.to_pure_dict(abstract), num_heads=HEADS, patch_size=P,
                                          in_channels=C, grid=S // P)
    nnx.replace_by_pure_dict(abstract, jax.tree.map(jnp.asarray, unflatten(params)))
    return nnx.merge(graphdef, abstract), summary


@pytest.mark.parametrize("learn_sigma", [True, False])
def test_imported_dit_computes_the_published_forward(learn_sigma):
    sd = official_dit_state(learn_sigma=learn_sigma)
    model, summary = imported_model(sd)
    assert ("dropped the 3 learned-variance" in summary) == learn_sigma
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, C, S, S)).astype(np.float32)
    k, y = np.array([10.0, 700.0]), np.array([1, K])  # K: the null label
    want = official_dit_forward(sd, x, k, y)[:, :C].transpose(0, 2, 3, 1)
    got = model(jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(k / 1000.0), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-4)


def test_dit_import_reports_every_problem_at_once():
    sd = official_dit_state()
    del sd["blocks.1.mlp.fc2.bias"]
    sd["blocks.0.attn.qkv.weight"] = sd["blocks.0.attn.qkv.weight"][:-1]
    sd["extra_head.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"not a DiT \(facebookresearch/DiT layout\) state dict: 1 missing "
                                              r"\(e.g. blocks.1.mlp.fc2.bias\); 1 unexpected \(e.g. extra_head.weight\);"
                                              r" 1 of the wrong shape \(e.g. blocks.0.attn.qkv.weight: \(95, 32\)"):
        imported_model(sd)
    sd = official_dit_state()
    sd["pos_embed"] = sd["pos_embed"][:, ::-1]  # another grid / layout
    with pytest.raises(CheckpointError, match="pos_embed differs from the fixed 2-D sin-cos embedding"):
        imported_model(sd)


def hf_hubert_state(cfg, seed=0, prefix="", new_weight_norm=False):
    """A Hugging Face HubertModel state dict (names and shapes of hubert-base, smaller)."""
    rng = np.random.default_rng(seed)
    f = lambda *s: (0.1 * rng.standard_normal(s)).astype(np.float32)
    hd, ff, k, g = cfg.hidden_size, cfg.intermediate_size, cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups
    sd = {"feature_projection.layer_norm.weight": f(cfg.conv_dim[-1]), "feature_projection.layer_norm.bias": f(cfg.conv_dim[-1]),
          "feature_projection.projection.weight": f(hd, cfg.conv_dim[-1]), "feature_projection.projection.bias": f(hd),
          "encoder.pos_conv_embed.conv.bias": f(hd), "encoder.layer_norm.weight": f(hd), "encoder.layer_norm.bias": f(hd),
          "masked_spec_embed": f(hd)}
    wn = ("parametrizations.weight.original0", "parametrizations.weight.original1") if new_weight_norm else ("weight_g", "weight_v")
    sd[f"encoder.pos_conv_embed.conv.{wn[0]}"] = np.abs(f(1, 1, k)) + 0.5
    sd[f"encoder.pos_conv_embed.conv.{wn[1]}"] = f(hd, hd // g, k)
    cin = 1
    for i, (ch, kw) in enumerate(zip(cfg.conv_dim, cfg.conv_kernel)):
        sd[f"feature_extractor.conv_layers.{i}.conv.weight"] = f(ch, cin, kw)
        cin = ch
    sd["feature_extractor.conv_layers.0.layer_norm.weight"] = f(cfg.conv_dim[0])
    sd["feature_extractor.conv_layers.0.layer_norm.bias"] = f(cfg.conv_dim[0])
    for layer in range(cfg.num_hidden_layers):
        e = f"encoder.layers.{layer}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[f"{e}.attention.{proj}.weight"], sd[f"{e}.attention.{proj}.bias"] = f(hd, hd), f(hd)
        for norm in ("layer_norm", "final_layer_norm"):
            sd[f"{e}.{norm}.weight"], sd[f"{e}.{norm}.bias"] = f(hd), f(hd)
        sd[f"{e}.feed_forward.intermediate_dense.weight"], sd[f"{e}.feed_forward.intermediate_dense.bias"] = f(ff, hd), f(ff)
        sd[f"{e}.feed_forward.output_dense.weight"], sd[f"{e}.feed_forward.output_dense.bias"] = f(hd, ff), f(hd)
    return {prefix + k: v for k, v in sd.items()}


@pytest.mark.parametrize("prefix,new_wn", [("", False), ("wav2vec2.", True)])
def test_hubert_import_transposes_and_folds_weight_norm(prefix, new_wn):
    from jaxmoda.moda.hubert import HubertConfig, HubertModel
    cfg = HubertConfig.tiny()
    graphdef, abstract = abstract_model(lambda r: HubertModel(cfg, rngs=r))
    sd = hf_hubert_state(cfg, prefix=prefix, new_weight_norm=new_wn)
    if prefix:
        sd["quantizer.codevectors"] = np.zeros((1, 4, 8), np.float32)  # a pre-training head: ignored, reported
    params, summary = hubert_convert.convert(sd, nnx.to_pure_dict(abstract))
    assert ("ignored 1 under quantizer" in summary) == bool(prefix)
    e0 = f"{prefix}encoder.layers.0"
    np.testing.assert_array_equal(params["encoder.layers.0.attention.q_proj.kernel"], sd[f"{e0}.attention.q_proj.weight"].T)
    np.testing.assert_array_equal(params["encoder.layers.0.final_layer_norm.scale"], sd[f"{e0}.final_layer_norm.weight"])
    conv = sd[f"{prefix}feature_extractor.conv_layers.1.conv.weight"]
    np.testing.assert_array_equal(params["feature_extractor.conv_layers.1.conv.kernel"], conv.transpose(2, 1, 0))
    wn = ("parametrizations.weight.original0", "parametrizations.weight.original1") if new_wn else ("weight_g", "weight_v")
    g = sd[f"{prefix}encoder.pos_conv_embed.conv.{wn[0]}"]
    v = sd[f"{prefix}encoder.pos_conv_embed.conv.{wn[1]}"]
    kernel = params["encoder.pos_conv_embed.conv.kernel"]  # [k, in/groups, out]
    np.testing.assert_allclose(np.linalg.norm(kernel, axis=(1, 2)), g.reshape(-1), rtol=1e-5)  # |w[:, :, tap]| = g
    np.testing.assert_allclose(kernel[3] / np.linalg.norm(kernel[3]), (v[:, :, 3] / np.linalg.norm(v[:, :, 3])).T, rtol=1e-5)
    nnx.replace_by_pure_dict(abstract, jax.tree.map(jnp.asarray, unflatten(params)))
    model = nnx.merge(graphdef, abstract)
    out = model(jnp.asarray(np.random.default_rng(2).standard_normal((1, 3200)), jnp.float32))
    assert out.shape == (1, cfg.num_hidden_layers + 1, 9, cfg.hidden_size) and bool(jnp.all(jnp.isfinite(out)))
    del sd[f"{e0}.attention.k_proj.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing \(e.g. encoder.layers.0.attention.k_proj.bias\)"):
        hubert_convert.convert(sd, nnx.to_pure_dict(abstract))


def test_convert_command_writes_a_run_that_samples(tmp_path):
    from jaxmoda.convert.__main__ import main
    from jaxmoda.train.sampling import sample_run
    from tests.helpers import TINY, TINY_OVERRIDES, write_torch_zip
    sd = official_dit_state(3, D=32, DEPTH=2, P=4, C=3, S=16, K=8)  # configs/dit/tiny.py as tests shrink it
    weights = tmp_path / "DiT-tiny.pt"
    write_torch_zip(weights, sd)
    overrides = [f"--config.{k}={v}" for k, v in TINY_OVERRIDES.items()]
    out = tmp_path / "imported"
    assert main(["dit", "--weights", str(weights), "--config", TINY, "--out", str(out), *overrides]) == 0
    images = np.asarray(sample_run(str(out), 2, seed=0, steps=3))
    assert images.shape == (2, 16, 16, 3) and np.isfinite(images).all() and images.std() > 0
    sd["blocks.0.mlp.fc1.weight"] = sd["blocks.0.mlp.fc1.weight"][:, :-1]
    write_torch_zip(weights, sd)
    with pytest.raises(CheckpointError, match=r"1 of the wrong shape \(e.g. blocks.0.mlp.fc1.weight"):
        main(["dit", "--weights", str(weights), "--config", TINY, "--out", str(tmp_path / "other"), *overrides])
