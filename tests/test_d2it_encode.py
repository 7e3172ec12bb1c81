"""Latent caching and the reconstruction report of a (briefly) trained Dynamic VAE."""

import json
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmoda.d2it import encode as enc
from jaxmoda.d2it import reconstruct as rec
from jaxmoda.train.loop import train
from jaxmoda.train.sampling import load_for_sampling
from tests.test_d2it_dvae import dvae_config


def test_encode_writes_latents_and_flips_that_decode_back(tmp_path):
    run = tmp_path / "dvae"
    train(dvae_config(total_steps=2, checkpoint_every=2, d2it__disc_weight="0.0"), str(run))
    out = tmp_path / "latents"
    assert enc.main(["--workdir", str(run), "--out", str(out), "--num", "3", "--batch-size", "2"]) == 0
    meta = json.load(open(out / "metadata.json"))
    assert meta["records"] == 6 and meta["z_shape"] == [8, 8, 4] and meta["grain_shape"] == [4, 4]
    assert meta["scale_factor"] > 0 and meta["entropy"]["region_size"] == 16
    from array_record.python.array_record_module import ArrayRecordReader
    reader = ArrayRecordReader(str(out / enc.shard_name(0, 1)))
    records = [enc.read_record(r) for r in reader.read_all()]
    reader.close()
    assert [bool(r["flip"]) for r in records] == [False, False, True, True, False, True]
    task, graphdef, ema, _, _ = load_for_sampling(str(run))
    from jaxmoda.data import build_source
    ds, _ = build_source(task.config.data, seed=task.config.seed)
    image = jnp.asarray(ds[0]["image"])[None]
    model = nnx.merge(graphdef, ema)
    want, grain = task.reconstruct(model, image)
    np.testing.assert_array_equal(records[0]["grain"], np.asarray(grain[0]))
    got = jnp.clip(model.decode(jnp.asarray(records[0]["z"], jnp.float32)[None]), -1, 1)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-2)  # z stored as float16
    # The reconstruction report: 3 rows per image (original, reconstruction, grain overlay).
    assert rec.main(["--workdir", str(run), "--num", "2", "--out", str(tmp_path / "recon.png")]) == 0
    from PIL import Image
    assert Image.open(tmp_path / "recon.png").size == (3 * 66 + 2, 2 * 66 + 2)
    assert os.path.getsize(tmp_path / "recon.png") > 1000
