from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.data import load_data
from edgekd.data.shapes import CLASSES, make_split
from edgekd.errors import DataError
from edgekd.preprocess import Preprocess

from .conftest import SHARED_DATA


def test_shapes_is_deterministic_balanced_and_varied():
    a, la = make_split("val", 40)
    b, lb = make_split("val", 40)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert np.bincount(la).tolist() == [4] * len(CLASSES)
    # not trivial: same class, different images (pose, colour, clutter, noise)
    assert np.abs(a[0].astype(int) - a[10].astype(int)).mean() > 20
    train, _ = make_split("train", 10)
    assert not np.array_equal(train, a[:10])


def test_builtin_splits_and_preprocess():
    d = load_data("builtin:shapes10", max_train=50, max_eval=20)
    assert (len(d.train), len(d.val), len(d.test)) == (50, 20, 20)
    x = d.preprocess(d.train.image(0))
    assert x.shape == (3, 64, 64) and x.dtype == np.float32


def _tree(root: Path, classes: dict[str, int], size=(40, 30)):
    rng = np.random.default_rng(0)
    for c, n in classes.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(root / c / f"{i}.jpg")


def test_flat_imagefolder_is_split_and_corrupt_files_are_skipped(tmp_path: Path):
    _tree(tmp_path, {"cat": 10, "dog": 10})
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    d = load_data(str(tmp_path), val_fraction=0.2)
    assert d.classes == ["cat", "dog"] and d.skipped == 1
    assert len(d.train) + len(d.val) + len(d.test) == 20
    assert d.preprocess.size == (64, 64)  # 40x30 rounded up to a multiple of 32, at least 64


def test_train_test_layout(tmp_path: Path):
    _tree(tmp_path / "train", {"a": 6, "b": 6})
    _tree(tmp_path / "test", {"a": 2, "b": 2})
    d = load_data(str(tmp_path), image_size=32)
    assert len(d.test) == 4 and len(d.train) + len(d.val) == 12 and d.preprocess.size == (32, 32)


@pytest.mark.parametrize("setup,match", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "is empty"),
    (lambda p: (p / "cls").mkdir(parents=True) or (p / "cls" / "x.txt").write_text("x"), "has no images"),
    (lambda p: _tree(p / "train", {"a": 3, "c": 3}) or _tree(p / "test", {"b": 2, "c": 2}),
     "differ from the training classes"),
])
def test_bad_data_folders(tmp_path: Path, setup, match):
    p = tmp_path / "data"
    setup(p)
    with pytest.raises(DataError, match=match):
        load_data(str(p))


def test_preprocess_round_trips_through_dict():
    p = Preprocess(size=(48, 64))
    assert Preprocess.from_dict(p.to_dict()) == p


@pytest.mark.skipif(not (SHARED_DATA / "cifar10-jpg").is_dir(), reason="../shared/data not present")
def test_cifar10_jpg_loads_as_imagefolder():
    d = load_data(str(SHARED_DATA / "cifar10-jpg"), max_train=100, max_eval=50)
    assert len(d.classes) == 10 and d.preprocess.size == (64, 64)
    assert d.train.image(0).shape == (32, 32, 3)


def test_16bit_png_is_scaled_by_bit_depth_also_through_the_decoded_cache(tmp_path: Path):
    """convert("RGB") clips 16-bit grayscale: 32768 of 65535 became 255 (near-white). Scaled, it is 128."""
    from edgekd.preprocess import load_image

    for cls, value in (("dark", 16384), ("light", 49152)):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(np.full((16, 16), value, np.uint16)).save(tmp_path / cls / f"{i}.png")
    assert Image.open(tmp_path / "dark" / "0.png").mode.startswith("I;16")
    dark, light = load_image(tmp_path / "dark" / "0.png"), load_image(tmp_path / "light" / "0.png")
    assert dark.shape == (16, 16, 3) and dark.mean() == 64 and light.mean() == 191
    d = load_data(str(tmp_path), image_size=32)
    cached = d.train.decoded((32, 32))
    assert cached.images is not None
    assert sorted({int(cached.images[i].mean()) for i in range(len(cached))}) == [64, 191]


def test_hidden_and_system_folders_are_not_classes(tmp_path: Path):
    _tree(tmp_path, {"a": 6, "b": 6})
    _tree(tmp_path / "__MACOSX", {"a": 2})
    _tree(tmp_path / ".thumbnails", {"x": 2})
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "a" / "._0.jpg").write_bytes(b"\0\5\26\7 AppleDouble")  # macOS resource fork beside 0.jpg
    d = load_data(str(tmp_path))
    assert d.classes == ["a", "b"] and d.skipped == 0
    assert len(d.train) + len(d.val) + len(d.test) == 12


def test_train_folder_without_val_or_test_holds_out_its_own_test_split(tmp_path: Path, caplog):
    """DIR/train alone used to make the validation split (which picks the best epoch) the test split too."""
    _tree(tmp_path / "train", {"a": 10, "b": 10})
    with caplog.at_level("WARNING", logger="edgekd"):
        d = load_data(str(tmp_path), val_fraction=0.2)
    assert "no val/ or test/" in caplog.text
    splits = [set(s.paths) for s in (d.train, d.val, d.test)]
    assert all(splits) and sum(map(len, splits)) == 20
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])


def test_one_class_folder_is_refused_but_calibration_images_may_have_one(tmp_path: Path):
    _tree(tmp_path, {"only": 12})
    with pytest.raises(DataError, match="only one class folder"):
        load_data(str(tmp_path))
    assert load_data(str(tmp_path), min_classes=1).classes == ["only"]
