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


# --- MoDA motion generator -------------------------------------------------------------------------
MD, MH, AL, AC, T = 32, 2, 2, 8, 6   # width, heads, audio layers, audio channels, frames


def official_moda_state(seed=0, depths=(1, 1, 1)):
    """A state dict in the released TalkingHeadDiT layout (`talking_head_dit.` keys), small."""
    rng = np.random.default_rng(seed)
    f = lambda *s: (0.2 * rng.standard_normal(s)).astype(np.float32)
    d, hd, hid = MD, MD // MH, 4 * MD
    sd = {}
    for name, n_in in (("motion_embedder", 140), ("identity_embedder", 63), ("time_embedder", 256)):
        sd.update({f"{name}.mlp.0.weight": f(d, n_in), f"{name}.mlp.0.bias": f(d),
                   f"{name}.mlp.2.weight": f(d, d), f"{name}.mlp.2.bias": f(d)})
    sd.update({"audio_embedder.proj1.weight": f(d, AL * AC), "audio_embedder.proj1.bias": f(d),
               "audio_embedder.proj2.weight": f(d, d), "audio_embedder.proj2.bias": f(d),
               "audio_embedder.proj3.weight": f(d, d), "audio_embedder.proj3.bias": f(d),
               "audio_embedder.norm.weight": 1 + f(d), "emo_embedder.embedding_table.weight": f(9, d)})

    def stream(prefix, names):
        qkv, q, k, proj, mlp, ada = names
        sd.update({f"{prefix}.{qkv}.weight": f(3 * d, d), f"{prefix}.{qkv}.bias": f(3 * d),
                   f"{prefix}.{q}.weight": 1 + f(hd), f"{prefix}.{k}.weight": 1 + f(hd),
                   f"{prefix}.{proj}.weight": f(d, d), f"{prefix}.{proj}.bias": f(d),
                   f"{prefix}.{mlp}.fc1.weight": f(hid, d), f"{prefix}.{mlp}.fc1.bias": f(hid),
                   f"{prefix}.{mlp}.fc2.weight": f(d, hid), f"{prefix}.{mlp}.fc2.bias": f(d),
                   f"{prefix}.{ada}.1.weight": f(6 * d, d), f"{prefix}.{ada}.1.bias": f(6 * d)})
    for i in range(depths[0]):
        stream(f"blocks4.{i}", MODA_NAMES[0])
        for j in (1, 2, 3):
            stream(f"blocks4.{i}", moda_names(j, True))
    for i in range(depths[1]):
        stream(f"blocks2.{i}", MODA_NAMES[0])
        stream(f"blocks2.{i}", moda_names(1, False))
    for i in range(depths[2]):
        b = f"blocks.{i}"
        sd.update({f"{b}.attn1.xs_q_norm.weight": 1 + f(hd), f"{b}.attn1.xs_k_norm.weight": 1 + f(hd),
                   f"{b}.qkv_xs.weight": f(3 * d + hid, d), f"{b}.qkv_xs.bias": f(3 * d + hid),
                   f"{b}.linear2.weight": f(d, d + hid), f"{b}.linear2.bias": f(d),
                   f"{b}.adaLN_modulation_xs.1.weight": f(3 * d, d), f"{b}.adaLN_modulation_xs.1.bias": f(3 * d)})
    sd.update({"final_layer.linear.weight": f(70, d), "final_layer.linear.bias": f(70),
               "final_layer.adaLN_modulation.1.weight": f(2 * d, d), "final_layer.adaLN_modulation.1.bias": f(2 * d)})
    out = {f"talking_head_dit.{k}": v for k, v in sd.items()}
    out["scheduler.sigmas"] = np.arange(1, 1001, dtype=np.float32) / 1000
    return out


MODA_NAMES = [("attn1.qkv_xs", "attn1.xs_q_norm", "attn1.xs_k_norm", "attn1.xs_proj", "xs_mlp", "adaLN_modulation_xs")]


def moda_names(j, four):
    s = str(j) if four else ""
    return (f"attn1.qkv_au{s}", f"attn1.au_q_norm{s}", f"attn1.au_k_norm{s}", f"attn1.au_proj{s}", f"audio_mlp{s}",
            f"adaLN_modulation_audio{s}")


def official_moda_forward(sd, x_t, sigma, prefix, audio, emo, ident, depths=(1, 1, 1)):
    """The released TalkingHeadDiT forward in NumPy: interleaved-pair RoPE (base 256), affine qk and
    audio RMSNorms, fused single-stream projections."""
    sd = {k.replace("talking_head_dit.", ""): v for k, v in sd.items()}
    d, h, hd = MD, MH, MD // MH
    lin = lambda v, n: v @ sd[f"{n}.weight"].T + sd[f"{n}.bias"]
    silu = lambda v: v / (1 + np.exp(-v))
    gelu = lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))
    rms = lambda v, eps=1e-6: v / np.sqrt(np.mean(v * v, -1, keepdims=True) + eps)
    mod = lambda v, shift, scale: v * (1 + scale[:, None]) + shift[:, None]
    b, n = x_t.shape[:2]
    mlp2 = lambda v, name: lin(silu(lin(v, f"{name}.mlp.0")), f"{name}.mlp.2")
    m = mlp2(np.concatenate([np.broadcast_to(prefix[:, None], x_t.shape), x_t], -1), "motion_embedder")
    a = lin(np.maximum(lin(np.maximum(lin(audio.reshape(b, n, -1), "audio_embedder.proj1"), 0),
                           "audio_embedder.proj2"), 0), "audio_embedder.proj3")
    a = rms(a) * sd["audio_embedder.norm.weight"]
    emb = sd["emo_embedder.embedding_table.weight"][emo]
    e, i = np.repeat(emb[:, None], n, 1), np.repeat(mlp2(ident, "identity_embedder")[:, None], n, 1)
    freqs = np.exp(-np.log(10000) * np.arange(128) / 128)
    args = sigma[:, None] * 1000 * freqs[None]
    c = mlp2(np.concatenate([np.cos(args), np.sin(args)], -1), "time_embedder") + emb

    def rope(x, pos):  # x [B, N, H, hd]; pairs (2k, 2k+1)
        ang = pos[:, None] * (256.0 ** (-np.arange(0, hd, 2) / hd))[None]
        cos, sin = np.cos(ang)[None, :, None], np.sin(ang)[None, :, None]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = x0 * cos - x1 * sin, x0 * sin + x1 * cos
        return out

    def heads(y, qn, kn, pos):
        y = y.reshape(b, -1, 3, h, hd)
        q, k, v = rms(y[:, :, 0], 1e-5) * sd[f"{qn}.weight"], rms(y[:, :, 1], 1e-5) * sd[f"{kn}.weight"], y[:, :, 2]
        return (rope(q, pos), rope(k, pos), v) if pos is not None else (q, k, v)

    def attend(q, k, v):
        s = np.einsum("bnhd,bmhd->bhnm", q, k) / np.sqrt(hd)
        p = np.exp(s - s.max(-1, keepdims=True))
        return np.einsum("bhnm,bmhd->bnhd", p / p.sum(-1, keepdims=True), v).reshape(b, -1, d)

    def multi(xs, block, names, poss):
        mods, parts = [], []
        for x, (qkv, qn, kn, _, _, ada), pos in zip(xs, names, poss):
            md = np.split(lin(silu(c), f"{block}.{ada}.1"), 6, -1)
            mods.append(md)
            parts.append(heads(lin(mod(rms(x), md[0], md[1]), f"{block}.{qkv}"), f"{block}.{qn}", f"{block}.{kn}", pos))
        o = attend(*(np.concatenate([p[j] for p in parts], 1) for j in range(3)))
        out, start = [], 0
        for x, (_, _, _, proj, mlp, _), md in zip(xs, names, mods):
            x = x + md[2][:, None] * lin(o[:, start:start + x.shape[1]], f"{block}.{proj}")
            start += x.shape[1]
            x = x + md[5][:, None] * lin(gelu(lin(mod(rms(x), md[3], md[4]), f"{block}.{mlp}.fc1")), f"{block}.{mlp}.fc2")
            out.append(x)
        return out

    pos = np.arange(n, dtype=np.float64)
    pos3 = np.tile(pos, 3)
    for k in range(depths[0]):
        m, a, e, i = multi([m, a, e, i], f"blocks4.{k}", MODA_NAMES + [moda_names(j, True) for j in (1, 2, 3)],
                           [pos, pos, None, None])
    cnd = np.concatenate([a, e, i], 1)
    for k in range(depths[1]):
        m, cnd = multi([m, cnd], f"blocks2.{k}", MODA_NAMES + [moda_names(1, False)], [pos, pos3])
    x = np.concatenate([m, cnd], 1)
    for k in range(depths[2]):
        blk = f"blocks.{k}"
        shift, scale, gate = np.split(lin(silu(c), f"{blk}.adaLN_modulation_xs.1"), 3, -1)
        y = lin(mod(rms(x), shift, scale), f"{blk}.qkv_xs")
        o = attend(*heads(y[..., :3 * d], f"{blk}.attn1.xs_q_norm", f"{blk}.attn1.xs_k_norm", np.concatenate([pos, pos3])))
        x = x + gate[:, None] * lin(np.concatenate([o, gelu(y[..., 3 * d:])], -1), f"{blk}.linear2")
    shift, scale = np.split(lin(silu(c), "final_layer.adaLN_modulation.1"), 2, -1)
    return lin(mod(rms(x[:, :n]), shift, scale), "final_layer.linear")


def test_imported_moda_generator_computes_the_released_forward():
    from jaxmoda.convert import moda as moda_convert
    from jaxmoda.moda.dit import MotionDiT
    graphdef, abstract = abstract_model(lambda r: MotionDiT(hidden=MD, num_heads=MH, audio_layers=AL, audio_channels=AC,
                                                            four_stream_depth=1, two_stream_depth=1, single_depth=1,
                                                            rngs=r))
    sd = official_moda_state()
    params, summary = moda_convert.convert(sd, nnx.to_pure_dict(abstract), num_heads=MH)
    assert "ignored 1 under scheduler" in summary and "null_audio, null_prefix not in the file" in summary
    nnx.replace_by_pure_dict(abstract, jax.tree.map(jnp.asarray, unflatten(params)))
    model = nnx.merge(graphdef, abstract)
    rng = np.random.default_rng(5)
    x_t, prefix = rng.standard_normal((2, T, 70)), rng.standard_normal((2, 70))
    audio, ident = rng.standard_normal((2, T, AL, AC)), rng.standard_normal((2, 63))
    sigma, emo = np.array([0.3, 0.9]), np.array([2, 8])
    want = official_moda_forward(sd, x_t, sigma, prefix, audio, emo, ident)
    cond = {"prefix": jnp.asarray(prefix, jnp.float32), "prefix_on": jnp.ones(2, bool),
            "audio": jnp.asarray(audio, jnp.float32), "audio_on": jnp.ones(2, bool),
            "emotion": jnp.asarray(emo), "identity": jnp.asarray(ident, jnp.float32)}
    got = model(jnp.asarray(x_t, jnp.float32), jnp.asarray(sigma, jnp.float32), cond)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-3, atol=2e-3)
    bad = dict(sd)
    del bad["talking_head_dit.blocks4.0.attn1.au_q_norm2.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing \(e.g. blocks4.0.attn1.au_q_norm2.weight\)"):
        moda_convert.convert(bad, nnx.to_pure_dict(abstract), num_heads=MH)


def test_convert_command_imports_a_moda_generator_that_generates(tmp_path):
    from jaxmoda.convert.__main__ import main
    from jaxmoda.train.sampling import load_for_sampling
    from tests.helpers import ROOT, write_torch_zip
    weights = tmp_path / "net-200.pth"
    write_torch_zip(weights, official_moda_state(depths=(1, 1, 1)))
    over = ["--config.model.hidden=32", "--config.model.num_heads=2", "--config.model.four_stream_depth=1",
            "--config.model.two_stream_depth=1", "--config.model.single_depth=1", "--config.audio.frontend=logmel",
            "--config.audio.n_mels=7", "--config.audio.use_f0=false", "--config.audio.use_delta=true"]
    out = tmp_path / "moda_imported"
    assert main(["moda", "--weights", str(weights), "--config", f"{ROOT}/configs/moda/tiny.py", "--out", str(out),
                 *over]) == 0
    task, _, ema, _, _ = load_for_sampling(str(out))
    assert (task.audio_layers, task.audio_channels) == (AL, AC)  # 2 x (7 mels + energy)
    np.testing.assert_array_equal(np.asarray(ema["null_prefix"]), 0)
