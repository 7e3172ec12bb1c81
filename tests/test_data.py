"""Tests for jaxmoda.data (grain pipelines, every source) and jaxmoda.io.images."""

import gzip
import json
import logging
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxmoda.data import build_source, default_data_config, make_train_iterator
from jaxmoda.data import arrayrecord, folder, idx
from jaxmoda.io import images


def cfg(**fields):
    return ml_collections.ConfigDict(fields)


def take(it, n):
    return [next(it) for _ in range(n)]


def to_uint8(x):
    return np.rint((np.asarray(x) + 1.0) * 127.5).astype(np.int64)


def check_example(ex, size, channels):
    assert ex["image"].shape == (size, size, channels)
    assert ex["image"].dtype == np.float32
    assert -1.0 <= ex["image"].min() and ex["image"].max() <= 1.0
    assert ex["label"].dtype == np.int32 and ex["label"].shape == ()


def noise_image(rng, shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_idx(path, array, gz):
    array = np.asarray(array)
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)


def idx_dir(tmp_path, n=16, gz=True, prefix="train"):
    """n constant 28x28 images whose gray level (8 * i + 4) identifies them."""
    root = tmp_path / "fashion"
    root.mkdir(exist_ok=True)
    imgs = np.stack([np.full((28, 28), 8 * i + 4, np.uint8) for i in range(n)])
    suffix = ".gz" if gz else ""
    write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", imgs, gz)
    write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10, gz)
    return root


def identities(batch):
    # Constant images: recover i from the gray level 8 * i + 4.
    levels = to_uint8(batch["image"]).reshape(len(batch["label"]), -1)
    assert (levels == levels[:, :1]).all()
    return [(int(v) - 4) // 8 for v in levels[:, 0]]


# ---------------------------------------------------------------- config


def test_default_config_is_typed_and_complete():
    c = default_data_config()
    assert c.source == "patches" and c.image_size == 32 and c.channels == 3 and c.path == ""
    assert all(v is not None for v in c.to_dict().values())
    with pytest.raises(TypeError):
        c.image_size = "large"  # ml_collections type-checks overrides because defaults are typed


def test_unknown_field_and_bad_batch_size_are_one_line_errors():
    with pytest.raises(ValueError, match=r"unknown data config field\(s\) \['imag_size'\]"):
        build_source(cfg(imag_size=8))
    with pytest.raises(ValueError, match="global_batch_size=10 must be a positive multiple of process_count=4"):
        make_train_iterator(cfg(), global_batch_size=10, seed=0, process_count=4)
    with pytest.raises(ValueError, match="not a scikit-image photo bundled offline"):
        build_source(cfg(photos=("eagle",)))


# ---------------------------------------------------------------- patches


def test_patches_examples_and_labels():
    ds, info = build_source(cfg(image_size=16, num_examples=40))
    assert info["num_classes"] == 8 and info["class_names"][0] == "astronaut"
    assert info["num_examples"] == len(ds) == 40
    for i in (0, 7, 9, 39):
        ex = ds[i]
        check_example(ex, 16, 3)
        assert ex["label"] == i % 8
        assert ex["image"].std() > 0.01  # a real photo crop, not a constant
    np.testing.assert_array_equal(ds[5]["image"], build_source(cfg(image_size=16, num_examples=40))[0][5]["image"])

    gray, _ = build_source(cfg(image_size=8, channels=1, photos=("astronaut", "camera")))
    check_example(gray[0], 8, 1)


def test_patches_batches_depend_only_on_seed():
    c = cfg(image_size=8, num_examples=64)
    a = next(make_train_iterator(c, global_batch_size=8, seed=3))
    b = next(make_train_iterator(c, global_batch_size=8, seed=3))
    d = next(make_train_iterator(c, global_batch_size=8, seed=4))
    assert a["image"].shape == (8, 8, 8, 3) and a["image"].dtype == np.float32
    assert a["label"].shape == (8,) and a["label"].dtype == np.int32
    assert ((0 <= a["label"]) & (a["label"] < 8)).all()
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    assert not np.array_equal(a["image"], d["image"])


@pytest.mark.parametrize("count", [2, 4])
def test_processes_split_the_global_batch_exactly(count):
    # Process p reads rows [p*b, (p+1)*b) of each global batch: stacking the processes' batches in
    # process order gives back the single-process batch, crops and flips included.
    c = cfg(image_size=8, num_examples=64)
    whole = take(make_train_iterator(c, global_batch_size=8, seed=1), 3)
    parts = [take(make_train_iterator(c, global_batch_size=8, seed=1, process_index=p, process_count=count), 3)
             for p in range(count)]
    for step in range(3):
        assert parts[0][step]["image"].shape == (8 // count, 8, 8, 3)
        for key in ("image", "label"):
            merged = np.concatenate([part[step][key] for part in parts])
            np.testing.assert_array_equal(merged, whole[step][key])


def test_iterator_state_resumes_exactly():
    c = cfg(image_size=8, num_examples=50)
    it = make_train_iterator(c, global_batch_size=4, seed=0)
    take(it, 5)
    state = it.get_state()
    expected = take(it, 3)
    resumed = make_train_iterator(c, global_batch_size=4, seed=0)
    resumed.set_state(state)
    for got, want in zip(take(resumed, 3), expected):
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])


def test_worker_process_gives_the_same_batches():
    # One grain worker process (spawned: every decoder must pickle) sees the whole
    # stream, so its batches must equal the in-process ones.
    c = dict(image_size=8, num_examples=32)
    want = take(make_train_iterator(cfg(**c), global_batch_size=4, seed=2), 2)
    it = make_train_iterator(cfg(worker_count=1, **c), global_batch_size=4, seed=2)
    try:
        got = take(it, 2)
    finally:
        it.close()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g["image"], w["image"])
        np.testing.assert_array_equal(g["label"], w["label"])


# ---------------------------------------------------------------- idx


def test_processes_are_disjoint_and_cover_each_epoch(tmp_path):
    c = cfg(source="idx", path=str(tmp_path / "fashion"), image_size=8)
    idx_dir(tmp_path, n=16)
    seen = []
    for p in (0, 1):
        it = make_train_iterator(c, global_batch_size=4, seed=7, process_index=p, process_count=2)
        seen.append([i for b in take(it, 4) for i in identities(b)])  # 4 x 2 = half an epoch each
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(16))


def test_each_epoch_is_a_new_permutation(tmp_path):
    c = cfg(source="idx", path=str(idx_dir(tmp_path, n=16)), image_size=8)
    e1, e2, e3 = (identities(b) for b in take(make_train_iterator(c, global_batch_size=16, seed=0), 3))
    assert sorted(e1) == sorted(e2) == sorted(e3) == list(range(16))
    assert e1 != e2 and e2 != e3


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_parse(tmp_path, gz):
    root = idx_dir(tmp_path, n=12, gz=gz, prefix="t10k")
    ds, info = build_source(cfg(source="idx", path=str(root), split="test", image_size=28, channels=1,
                                random_flip=False))
    assert info["num_examples"] == 12 and info["num_classes"] == 10
    assert info["class_names"][9] == "Ankle boot"
    ex = ds[3]
    check_example(ex, 28, 1)
    assert ex["label"] == 3 and (to_uint8(ex["image"]) == 8 * 3 + 4).all()
    rgb, _ = build_source(cfg(source="idx", path=str(root), split="test", image_size=14))
    check_example(rgb[0], 14, 3)


def test_idx_errors_name_the_file(tmp_path):
    root = idx_dir(tmp_path, n=4, gz=False)
    bad = root / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x03" + bytes(12))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte is not an IDX file \(bad magic number 0x12340803\)"):
        idx.read_idx(str(bad))
    with pytest.raises(ValueError, match="bad magic"):
        build_source(cfg(source="idx", path=str(root)))
    with pytest.raises(FileNotFoundError, match=r"no t10k-images-idx3-ubyte\[\.gz\] in"):
        build_source(cfg(source="idx", path=str(root), split="test"))


# ---------------------------------------------------------------- folder


def make_folder(root, rng, bad=True):
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise_image(rng, (20, 30, 3))).save(root / "a_rgb.png")
    Image.fromarray(noise_image(rng, (24, 24))).save(root / "b_gray.jpg")
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent: composites to white
    Image.fromarray(rgba).save(root / "c_rgba.png")
    if bad:
        (root / "d_corrupt.jpg").write_bytes(b"this is not an image at all")
        full = root / "tmp.png"
        Image.fromarray(noise_image(rng, (32, 32, 3))).save(full)
        data = full.read_bytes()
        full.unlink()
        (root / "e_truncated.png").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("ignored")


def test_folder_skips_bad_files_and_logs_a_count(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(images, "SKIPPED", images._SkipReporter())
    make_folder(tmp_path / "imgs", np.random.default_rng(0))
    ds, info = build_source(cfg(source="folder", path=str(tmp_path / "imgs"), image_size=12, random_flip=False))
    assert info["num_examples"] == 5 and info["num_classes"] == 1
    with caplog.at_level(logging.WARNING):
        good = list(ds.to_iter_dataset())
    assert len(good) == 3
    for ex in good:
        check_example(ex, 12, 3)
    gray = to_uint8(good[1]["image"])
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert (good[2]["image"] == 1.0).all()  # transparent RGBA -> white
    assert "d_corrupt.jpg" in caplog.text and "e_truncated.png" in caplog.text
    assert "2 skipped so far" in caplog.text

    batches = take(make_train_iterator(cfg(source="folder", path=str(tmp_path / "imgs"), image_size=12),
                                       global_batch_size=2, seed=0), 4)  # 2+ epochs, no crash
    assert all(b["image"].shape == (2, 12, 12, 3) for b in batches)


def test_folder_labels_from_subfolders(tmp_path):
    rng = np.random.default_rng(1)
    for name, count in (("dogs", 2), ("cats", 3)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(noise_image(rng, (10, 10, 3))).save(tmp_path / name / f"{i}.png")
    ds, info = build_source(cfg(source="folder", path=str(tmp_path), image_size=4))
    assert info["class_names"] == ["cats", "dogs"] and info["num_examples"] == 5
    assert [int(ds[i]["label"]) for i in range(5)] == [0, 0, 0, 1, 1]


def test_folder_empty_or_missing_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    message = r"no image files \(.png, .jpg.*\) found under .*empty'; check data.path"
    with pytest.raises(FileNotFoundError, match=message):
        build_source(cfg(source="folder", path=str(tmp_path / "empty")))
    with pytest.raises(FileNotFoundError, match=r"image folder '.*nowhere' does not exist; point data.path"):
        make_train_iterator(cfg(source="folder", path=str(tmp_path / "nowhere")), global_batch_size=2, seed=0)
    with pytest.raises(FileNotFoundError, match="data.path is empty"):
        build_source(cfg(source="folder"))


def test_load_image_file_conversions(tmp_path):
    a16 = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)
    Image.fromarray(a16).save(tmp_path / "deep.png")
    out = images.load_image_file(tmp_path / "deep.png", None, 3)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out[..., 0], np.arange(256).reshape(16, 16))
    Image.fromarray(noise_image(np.random.default_rng(2), (20, 40, 3))).save(tmp_path / "wide.png")
    assert images.load_image_file(tmp_path / "wide.png", 8, 1).shape == (8, 8, 1)
    assert images.load_image_file(tmp_path / "wide.png", None, 3).shape == (20, 40, 3)


# ---------------------------------------------------------------- arrayrecord


def test_arrayrecord_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    for name, count in (("a", 3), ("b", 2)):
        (src / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(noise_image(rng, (20 + i, 18, 3))).save(src / name / f"{i}.png")
    (src / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "ar"
    assert arrayrecord.main(["--in", str(src), "--out", str(out), "--shards", "2", "--size", "16"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["class_names"] == ["a", "b"] and meta["num_examples"] == 5 and len(meta["shards"]) == 2

    items, _ = folder.list_labelled_images(str(src))
    good = [(p, l) for p, l in items if "broken" not in p]
    for path_form in (str(out), str(out / "*.array_record")):
        ds, info = build_source(cfg(source="arrayrecord", path=path_form, image_size=16, random_flip=False))
        assert info["num_examples"] == 5 and info["class_names"] == ["a", "b"]
        for i, (path, label) in enumerate(good):
            want = images.load_image_file(path, 16, 3)
            np.testing.assert_array_equal(to_uint8(ds[i]["image"]), want)
            assert ds[i]["label"] == label
    batch = next(make_train_iterator(cfg(source="arrayrecord", path=str(out), image_size=8),
                                     global_batch_size=4, seed=0))
    assert batch["image"].shape == (4, 8, 8, 3)
    with pytest.raises(FileNotFoundError, match="no ArrayRecord files at"):
        build_source(cfg(source="arrayrecord", path=str(tmp_path / "none")))


# ---------------------------------------------------------------- tfds


def test_tfds_through_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        ds, info = build_source(cfg(source="tfds", tfds_name="mnist", image_size=16))
        assert info["num_examples"] == 6 and info["num_classes"] == 10
        check_example(ds[0], 16, 3)
        batch = next(make_train_iterator(cfg(source="tfds", tfds_name="cifar10", image_size=8, channels=1),
                                         global_batch_size=4, seed=0))
    assert batch["image"].shape == (4, 8, 8, 1) and batch["label"].dtype == np.int32
    assert ((0 <= batch["label"]) & (batch["label"] < 10)).all()


def test_tfds_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"pip install jaxmoda\[tfds\]"):
        build_source(cfg(source="tfds", tfds_name="mnist"))


# ---------------------------------------------------------------- sample grids


def test_save_image_grid_size_and_border(tmp_path):
    x = np.linspace(-1, 1, 5 * 8 * 6 * 3, dtype=np.float32).reshape(5, 8, 6, 3)
    path = tmp_path / "grid" / "samples.png"
    assert images.save_image_grid(x, path, nrow=3) == (3 * 6 + 4 * 2, 2 * 8 + 3 * 2)
    grid = np.asarray(Image.open(path))
    assert grid.shape == (22, 26, 3)
    assert (grid[:2] == 255).all() and (grid[:, :2] == 255).all()
    np.testing.assert_array_equal(grid[2:10, 2:8], images.to_uint8_images(x[0]))
    np.testing.assert_array_equal(grid[12:20, 10:16], images.to_uint8_images(x[4]))
    assert images.save_image_grid(x[:4, ..., :1], tmp_path / "g.png") == (2 * 6 + 3 * 2, 2 * 8 + 3 * 2)


def test_idx_images_smaller_than_image_size_are_padded_not_stretched(tmp_path):
    from jaxmoda.data import build_source
    c = cfg(source="idx", path=str(idx_dir(tmp_path, n=4)), image_size=32, channels=1, random_flip=False)
    ds, info = build_source(c)
    x = ds[0]["image"]
    assert x.shape == (32, 32, 1)
    assert np.all(x[:2] == -1.0) and np.all(x[:, -2:] == -1.0)          # 2-px black border
    assert len(np.unique(x[2:30, 2:30])) == 1 and x[2, 2, 0] > -1.0      # the 28x28 image, unscaled
