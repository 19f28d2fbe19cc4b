"""companion.data.cifar10 (through small files in torchvision's CIFAR-10 format) and photo_digits."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from companion import data
from companion.data import DataError

N_PER_BATCH = 7


# --------------------------------------------------------------------------------------------
# Fixtures: tiny CIFAR-10 batches, written the way the official python version is laid out
# --------------------------------------------------------------------------------------------
def _batch(seed: int, n: int = N_PER_BATCH) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "batch_label": f"batch {seed}",
        "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        "labels": [int(v) for v in rng.integers(0, 10, size=n)],
        "filenames": [f"img_{seed}_{i}.png" for i in range(n)],
    }


def _write(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.fixture()
def cifar_root(tmp_path: Path) -> Path:
    folder = tmp_path / data.CIFAR10_FOLDER
    folder.mkdir()
    for i, name in enumerate(data.CIFAR10_FILES["train"] + data.CIFAR10_FILES["test"]):
        _write(folder / name, _batch(i))
    _write(folder / data.CIFAR10_META, {"label_names": list(data.CIFAR10_CLASSES), "num_vis": 3072})
    return tmp_path


def test_cifar10_reads_torchvision_layout(cifar_root: Path) -> None:
    train = data.cifar10("train", root=cifar_root)
    test = data.cifar10("test", root=cifar_root)
    assert len(train) == 5 * N_PER_BATCH and len(test) == N_PER_BATCH
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 32, 32)
    assert train.classes == data.CIFAR10_CLASSES
    assert "CIFAR-10" in train.source and str(cifar_root) in train.source
    # Row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32.
    raw = _batch(5)  # the test batch was written with seed 5
    first = raw["data"][0]
    assert torch.equal(test.images[0, 0], torch.from_numpy(first[:1024].reshape(32, 32)))
    assert torch.equal(test.images[0, 2], torch.from_numpy(first[2048:].reshape(32, 32)))
    assert test.labels.tolist() == raw["labels"]
    x, y = train[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
    assert y == train.labels[3]


def test_cifar10_python2_bytes_keys_and_transform(cifar_root: Path) -> None:
    folder = cifar_root / data.CIFAR10_FOLDER
    batch = _batch(5)
    _write(folder / "test_batch", {b"data": batch["data"], b"labels": batch["labels"]})
    ds = data.cifar10("test", root=cifar_root, transform=lambda x: x * 0 - 1)
    assert ds.labels.tolist() == batch["labels"]
    assert float(ds[0][0].max()) == -1.0


def test_cifar10_without_root_names_offline_alternative() -> None:
    with pytest.raises(DataError, match="photo_digits"):
        data.cifar10("train")


def test_cifar10_bad_split(cifar_root: Path) -> None:
    with pytest.raises(DataError, match="'train' or 'test'"):
        data.cifar10("validation", root=cifar_root)


def test_cifar10_missing_file_names_path(cifar_root: Path) -> None:
    (cifar_root / data.CIFAR10_FOLDER / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3") as info:
        data.cifar10("train", root=cifar_root)
    assert str(cifar_root) in str(info.value) and "photo_digits" in str(info.value)
    data.cifar10("test", root=cifar_root)  # the other split is still readable


def test_cifar10_empty_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        data.cifar10("test", root=tmp_path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not a pickle", "not a readable CIFAR-10 batch"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}), "lacks the 'data' and 'labels'"),
        (pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}), "3072 pixels"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}), "uint8"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}), "2 images but 1 labels"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}), "outside 0..9"),
        (pickle.dumps([1, 2, 3]), "expected a dict"),
    ],
)
def test_cifar10_corrupt_file(cifar_root: Path, content: bytes, message: str) -> None:
    path = cifar_root / data.CIFAR10_FOLDER / "test_batch"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        data.cifar10("test", root=cifar_root)
    assert str(path) in str(info.value)


class _Exploit:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar10_reader_refuses_arbitrary_globals(cifar_root: Path) -> None:
    path = cifar_root / data.CIFAR10_FOLDER / "test_batch"
    path.write_bytes(pickle.dumps({"data": _Exploit(), "labels": []}))
    with pytest.raises(DataError, match="not allowed"):
        data.cifar10("test", root=cifar_root)


def test_cifar10_meta_with_wrong_class_count(cifar_root: Path) -> None:
    _write(cifar_root / data.CIFAR10_FOLDER / data.CIFAR10_META, {"label_names": ["a", "b"]})
    with pytest.raises(DataError, match="names 2 classes"):
        data.cifar10("test", root=cifar_root)


# --------------------------------------------------------------------------------------------
# photo_digits: the offline MNIST-M-style color set
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photo_train():
    return data.photo_digits("train")


@pytest.fixture(scope="module")
def photo_test():
    return data.photo_digits("test")


def test_photo_digits_shapes_range_and_name(photo_train, photo_test) -> None:
    assert photo_train.images.shape == (4000, 3, 32, 32) and photo_test.images.shape == (1000, 3, 32, 32)
    assert photo_train.images.dtype == torch.uint8
    assert photo_train.classes == data.MNIST_CLASSES
    assert "CIFAR" not in photo_train.name and "not CIFAR-10" in photo_train.source
    x, y = photo_test[0]
    assert x.shape == (3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and 0 <= y <= 9
    # Real color: the three channels differ (a gray image would have them equal).
    imgs = photo_train.images[:200].float()
    assert float((imgs[:, 0] - imgs[:, 2]).abs().mean()) > 5


def test_photo_digits_labels_are_the_mnist_labels(photo_train, photo_test) -> None:
    for split, ds in (("train", photo_train), ("test", photo_test)):
        assert torch.equal(ds.labels, data.mnist(split).labels)


def test_photo_digits_blend_follows_the_digit(photo_test) -> None:
    """|patch - digit|: where the digit is full ink the pixel is 1 - patch, so ink and background differ."""
    digits = data.mnist("test").images.float() / 255  # (N, 1, 28, 28)
    color = photo_test.images[:, :, 2:30, 2:30].float() / 255  # undo the 2-pixel padding
    ink = (digits > 0.9).expand_as(color)
    bg = (digits < 0.1).expand_as(color)
    # Per image, ink pixels sit far from the background's mean color more than background pixels do.
    mean_bg = (color * bg).sum((2, 3), keepdim=True) / bg.sum((2, 3), keepdim=True).clamp(min=1)
    dist_ink = ((color - mean_bg).abs() * ink).sum() / ink.sum()
    dist_bg = ((color - mean_bg).abs() * bg).sum() / bg.sum()
    assert dist_ink > 2 * dist_bg


def test_photo_digits_deterministic_and_transform(photo_train) -> None:
    data._photo_digits.cache_clear()
    again = data.photo_digits("train", transform=lambda x: x + 1)
    assert torch.equal(again.images, photo_train.images)
    assert float(again[0][0].min()) >= 1.0
    assert photo_train.transform is None  # a transform on one call does not leak into another


def test_photo_digits_train_and_test_are_stratified(photo_train, photo_test) -> None:
    train_share = torch.bincount(photo_train.labels, minlength=10).float() / len(photo_train)
    test_share = torch.bincount(photo_test.labels, minlength=10).float() / len(photo_test)
    assert float((train_share - test_share).abs().max()) < 0.005


def test_photo_digits_bad_split() -> None:
    with pytest.raises(DataError, match="'train' or 'test'"):
        data.photo_digits("val")


def test_blend_rejects_color_digits() -> None:
    with pytest.raises(DataError, match=r"\(N, 1, H, W\)"):
        data.blend_with_patches(np.zeros((2, 3, 28, 28), np.uint8), [np.zeros((40, 40, 3), np.float32)],
                                np.random.default_rng(0))


def test_blend_against_formula() -> None:
    """One digit on a constant-color photo: the result is |color - digit| exactly (rounded)."""
    digit = np.zeros((1, 1, 28, 28), np.uint8)
    digit[0, 0, 10:18, 12:16] = 255
    photo = np.full((32, 32, 3), [0.2, 0.5, 0.9], np.float32)
    out = data.blend_with_patches(digit, [photo], np.random.default_rng(0))
    expected = np.abs(photo.transpose(2, 0, 1) - np.pad(digit[0, 0].astype(np.float32) / 255, 2)[None])
    assert out.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(out[0], np.round(expected * 255).astype(np.uint8))
