"""Digit scenes: real digits pasted onto real photographs, with exact boxes and masks.

A detector or a segmentation network needs images that hold several objects, each with its box
and its pixels. :class:`DigitScenes` builds them offline from two real sources that ship with the
book's packages:

- the digits are the real MNIST digits of :func:`companion.data.mnist` (the offline 5,000, or full
  MNIST with ``root=``), each resized to a random scale and composited onto the photograph with its
  own intensity as the alpha channel, in a random colour that contrasts with what lies under it;
- the backgrounds are random square crops of real photographs from ``skimage.data``
  (:data:`SCENE_PHOTOS`, grey ones as RGB), resized to the scene's size.

Because every digit is placed by the code, its ground truth is exact: its instance mask is the set
of pixels where the resized digit's alpha exceeds :data:`MASK_THRESHOLD`, its box is the tightest
box around that mask. Digits may share parts of their boxes (box IoU at most
:data:`MAX_BOX_IOU`) but never a pixel of ink (the masks are disjoint, one pixel apart at least), so
the per-pixel semantic mask of :func:`semantic_mask` is unambiguous.

No test digit and no test photo region is ever seen in training:

==========  ====================================================  ==============================
split       digits from                                           photograph region
==========  ====================================================  ==============================
``train``   ``train_val_split(mnist("train"))[0]`` (3,500)        left 70 % of each photograph
``val``     ``train_val_split(mnist("train"))[1]`` (500)          right 30 %, top half
``test``    ``mnist("test")`` (1,000)                             right 30 %, bottom half
==========  ====================================================  ==============================

Scene ``i`` of a split depends only on ``(seed, split, i)`` and the arguments that shape a scene
(``size``, ``digits``), not on ``n``: the first 100 scenes of ``n=1000`` are the scenes of
``n=100``.

Coordinates follow torchvision's detection models: a box is ``(x1, y1, x2, y2)`` in pixels with
pixel ``(row r, column c)`` covering ``[c, c + 1) x [r, r + 1)``, so a box holding columns 3..7
has ``x1 = 3, x2 = 8`` and its area counts its pixels. Labels are the digits 0-9 (torchvision's
R-CNN models reserve 0 for the background: add 1 before giving them these targets).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from companion.data import DataError, ImageDataset, mnist, train_val_split

#: The real photographs of ``skimage.data`` whose crops are the scenes' backgrounds.
SCENE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                "camera", "coins", "grass", "gravel", "brick")
#: Which part of every photograph each split crops from: (row from, row to, col from, col to)
#: as fractions of the photograph's height and width. The three parts are disjoint.
PHOTO_REGIONS = {
    "train": (0.0, 1.0, 0.0, 0.7),
    "val": (0.0, 0.5, 0.7, 1.0),
    "test": (0.5, 1.0, 0.7, 1.0),
}
#: A number per split that enters each scene's random stream (train and val never share one).
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
#: The side of a placed 28x28 digit image, as a fraction of the scene's side.
DIGIT_SCALE = (0.3, 0.55)
#: The side of the photograph crop, as a fraction of the scene's side (clipped to the region).
CROP_SCALE = (0.75, 2.5)
#: A pixel belongs to a digit's mask where the resized digit's alpha exceeds this.
MASK_THRESHOLD = 0.5
#: The largest IoU between two digits' boxes in one scene; their masks never touch.
MAX_BOX_IOU = 0.2
#: How many placements (scale and position) are tried for one digit before giving up.
MAX_ATTEMPTS = 200
#: Positions tried at one scale before another scale is drawn (resizing costs more).
POSITIONS_PER_SCALE = 10
MIN_SIZE = 32
#: ITU-R BT.601 luma weights: how light a colour looks.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Sources: digits and photographs
# --------------------------------------------------------------------------------------------
def scene_digits(split: str, root: str | os.PathLike | None = None) -> ImageDataset:
    """The digits a split's scenes draw from (see the module docstring's table)."""
    if split == "test":
        return mnist("test", root=root)
    train, val = train_val_split(mnist("train", root=root))
    return train if split == "train" else val


@functools.lru_cache(maxsize=1)
def _photographs() -> tuple[np.ndarray, ...]:
    """The photographs of :data:`SCENE_PHOTOS` as float32 RGB (H, W, 3) in [0, 1]."""
    from skimage import data as skdata

    photos = []
    for name in SCENE_PHOTOS:
        image = getattr(skdata, name)()
        if image.ndim == 2:  # grey photograph -> three equal channels
            image = np.repeat(image[..., None], 3, axis=-1)
        photos.append(np.ascontiguousarray(image[..., :3], dtype=np.float32) / 255)
    return tuple(photos)


def photo_region(photo: np.ndarray, split: str) -> np.ndarray:
    """The part of ``photo`` (H, W, 3) that ``split`` crops from (a view, no copy)."""
    r0, r1, c0, c1 = PHOTO_REGIONS[split]
    h, w = photo.shape[:2]
    return photo[int(r0 * h):int(r1 * h), int(c0 * w):int(c1 * w)]


# --------------------------------------------------------------------------------------------
# One scene
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices and weights (n_out, taps) of antialiased linear resampling along one axis.

    The triangle (bilinear) filter, stretched by the shrink factor when shrinking so that every
    input pixel contributes (the antialiasing of Pillow and of torch's ``antialias=True``).
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centre = (np.arange(n_out) + 0.5) * scale
    first = np.maximum(np.floor(centre - support + 0.5).astype(np.int64), 0)
    stop = np.minimum(np.floor(centre + support + 0.5).astype(np.int64), n_in)
    index = first[:, None] + np.arange(int((stop - first).max()))
    weight = np.clip(1 - np.abs((index + 0.5 - centre[:, None]) / support), 0, None)
    weight[index >= stop[:, None]] = 0
    total = weight[:, 0].copy()
    for t in range(1, weight.shape[1]):  # summed tap by tap: the same bits on every CPU
        total += weight[:, t]
    return np.minimum(index, n_in - 1), weight / total[:, None]


def _resample(image: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Resize ``image`` along ``axis`` to ``n_out`` samples (float64, tap by tap)."""
    index, weight = _taps(image.shape[axis], n_out)
    shape = [1] * image.ndim
    shape[axis] = n_out
    out = np.zeros(image.shape[:axis] + (n_out,) + image.shape[axis + 1:])
    for t in range(index.shape[1]):
        out += weight[:, t].reshape(shape) * np.take(image, index[:, t], axis=axis)
    return out


def _resize(image: np.ndarray, side: int) -> np.ndarray:
    """Resize a (C, H, W) array in [0, 1] to (C, side, side) float32, bilinear with antialiasing.

    Written with element-wise NumPy operations only, which round the same way on every CPU:
    torch's ``F.interpolate`` picks kernels by instruction set, so its last bits (and, after
    rounding to ``uint8`` or thresholding, a few pixels of a scene) would differ between machines.
    Weights are non-negative and sum to 1, so values stay in [0, 1].
    """
    rows = _resample(image.astype(np.float64), 1, side)
    return _resample(rows, 2, side).astype(np.float32)


def _background(region: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of ``region`` (H, W, 3) resized to (3, size, size)."""
    h, w = region.shape[:2]
    largest = min(h, w)
    low = min(largest, int(CROP_SCALE[0] * size))
    high = min(largest, int(CROP_SCALE[1] * size))
    side = int(rng.integers(low, high + 1))
    top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    crop = region[top:top + side, left:left + side].transpose(2, 0, 1)
    return _resize(crop, size) if side != size else np.ascontiguousarray(crop)


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with each of ``boxes`` (k, 4), all pixel xyxy with positive area."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def _contrasting_colour(under: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour, dark on a light background and light on a dark one."""
    mean = under.reshape(3, -1).mean(axis=1, dtype=np.float64).tolist()
    luma = sum(w * m for w, m in zip(LUMA.tolist(), mean))  # Python floats: no BLAS, any CPU
    hue = rng.random(3)
    return (0.25 * hue if luma > 0.5 else 0.75 + 0.25 * hue).astype(np.float32)


def _place_digit(
    digit: np.ndarray, size: int, taken: np.ndarray, boxes: list[np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, int, int, np.ndarray] | None:
    """Find a scale and position where ``digit`` (28, 28 float) keeps clear of placed digits.

    Returns the resized alpha, its top-left corner and the box of its mask in the scene, or
    ``None`` when :data:`MAX_ATTEMPTS` tries all collide. ``taken`` marks the pixels next to or
    under an already placed digit's mask.
    """
    for _ in range(MAX_ATTEMPTS // POSITIONS_PER_SCALE):
        side = int(round(rng.uniform(*DIGIT_SCALE) * size))
        alpha = _resize(digit[None], side)[0]
        ink = alpha > MASK_THRESHOLD
        rows, cols = np.nonzero(ink)
        if rows.size == 0:
            continue
        for _ in range(POSITIONS_PER_SCALE):
            top, left = int(rng.integers(size - side + 1)), int(rng.integers(size - side + 1))
            if (taken[top:top + side, left:left + side] & ink).any():
                continue
            box = np.array([left + cols.min(), top + rows.min(),
                            left + cols.max() + 1, top + rows.max() + 1], dtype=np.float32)
            if boxes and _box_iou(box, np.stack(boxes)).max() > MAX_BOX_IOU:
                continue
            return alpha, top, left, box
    return None


def _dilate(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel in the 8 directions (so that masks never touch)."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    row = grown.copy()
    grown[:, 1:] |= row[:, :-1]
    grown[:, :-1] |= row[:, 1:]
    return grown


def make_scene(
    background: np.ndarray, digits: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Composite ``digits`` (each 28x28 float in [0, 1]) onto ``background`` (3, S, S).

    Each digit's intensity is its alpha: ``pixel = (1 - alpha) * photo + alpha * colour``.
    Returns the image (3, S, S) float32, the boxes (k, 4) and the masks (k, S, S) bool.
    Raises :class:`DataError` when a digit finds no free place.
    """
    size = background.shape[-1]
    image = background.copy()
    taken = np.zeros((size, size), dtype=bool)
    boxes, masks = [], []
    for digit in digits:
        placed = _place_digit(digit, size, taken, boxes, rng)
        if placed is None:
            raise DataError(f"could not place {len(digits)} digits without overlap in a "
                            f"{size}x{size} scene; pass fewer digits or a larger size")
        alpha, top, left, box = placed
        side = alpha.shape[0]
        window = image[:, top:top + side, left:left + side]
        colour = _contrasting_colour(window, rng)[:, None, None]
        window += alpha[None] * (colour - window)  # in place: (1 - a) * photo + a * colour
        mask = np.zeros((size, size), dtype=bool)
        mask[top:top + side, left:left + side] = alpha > MASK_THRESHOLD
        taken |= _dilate(mask)
        boxes.append(box)
        masks.append(mask)
    boxes_out = np.stack(boxes) if boxes else np.zeros((0, 4), dtype=np.float32)
    masks_out = np.stack(masks) if masks else np.zeros((0, size, size), dtype=bool)
    return image, boxes_out, masks_out


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------
def _check_arguments(split: str, n: int, size: int, digits: tuple[int, int], seed: int) -> None:
    if split not in SPLIT_CODES:
        raise DataError(f"split must be 'train', 'val' or 'test', not {split!r}")
    for name, value in (("n", n), ("size", size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(f"{name} must be an int, not {type(value).__name__} {value!r}")
    if n < 0:
        raise DataError(f"n must be >= 0 scenes, not {n}")
    if seed < 0:
        raise DataError(f"seed must be >= 0, not {seed}")
    if size < MIN_SIZE:
        raise DataError(f"size must be >= {MIN_SIZE} pixels (a digit needs room), not {size}")
    if (not isinstance(digits, (tuple, list)) or len(digits) != 2
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in digits)
            or not 0 <= digits[0] <= digits[1]):
        raise DataError(f"digits must be (fewest, most) digits per scene with 0 <= fewest <= "
                        f"most, e.g. (1, 3); got {digits!r}")


class DigitScenes(Dataset):
    """Scenes of real digits on real photographs, with boxes, labels and instance masks.

    Item ``i`` is ``(image, target)``: ``image`` float32 (3, size, size) in [0, 1] and ``target``
    the dict torchvision's detection models take: ``boxes`` float32 (k, 4) pixel xyxy,
    ``labels`` int64 (k,) the digits 0-9, ``masks`` bool (k, size, size). See the module
    docstring for the splits, the coordinates and how a scene is made.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``: which digits and which photograph regions.
        n: the number of scenes.
        size: the side of a scene in pixels (>= 32).
        digits: the fewest and most digits per scene (each count equally likely).
        seed: scenes of another seed are other scenes; the same seed gives the same scenes.
        root: passed to :func:`companion.data.mnist` (``None``: the offline 5,000 digits).

    All scenes are made in the constructor (about a millisecond each) and held as ``uint8``
    images: ``images`` (n, 3, size, size), ``targets`` (list of dicts) and ``sources`` (for each
    scene, the indices into ``self.digits`` of its digits, in the order of its boxes).
    """

    def __init__(self, split: str = "train", n: int = 1000, size: int = 64,
                 digits: tuple[int, int] = (1, 3), seed: int = 0,
                 root: str | os.PathLike | None = None) -> None:
        _check_arguments(split, n, size, digits, seed)
        self.split, self.size, self.seed = split, int(size), int(seed)
        self.digit_range = tuple(digits)
        self.digits = scene_digits(split, root)
        regions = [photo_region(p, split) for p in _photographs()]
        pool = self.digits.images[:, 0].numpy().astype(np.float32) / 255  # (N, 28, 28)
        images, self.targets, self.sources = [], [], []
        for i in range(n):
            rng = np.random.default_rng([int(seed), SPLIT_CODES[split], i])
            background = _background(regions[int(rng.integers(len(regions)))], self.size, rng)
            count = int(rng.integers(digits[0], digits[1] + 1))
            which = rng.choice(len(pool), size=count, replace=False)
            image, boxes, masks = make_scene(background, [pool[j] for j in which], rng)
            images.append(np.round(image * 255).astype(np.uint8))
            self.targets.append({"boxes": torch.from_numpy(boxes),
                                 "labels": self.digits.labels[torch.from_numpy(which)].clone(),
                                 "masks": torch.from_numpy(masks)})
            self.sources.append(torch.from_numpy(which.astype(np.int64)))
        shape = (0, 3, self.size, self.size)
        self.images = (torch.from_numpy(np.stack(images)) if images
                       else torch.zeros(shape, dtype=torch.uint8))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"scene {index} of a DigitScenes of {len(self)} scenes")
        target = self.targets[index]
        return self.images[index].float().div_(255), {k: v.clone() for k, v in target.items()}

    def semantic_masks(self, per_digit: bool = False) -> Tensor:
        """Every scene's :func:`semantic_mask`, stacked: int64 (n, size, size)."""
        out = torch.zeros((len(self), self.size, self.size), dtype=torch.int64)
        for i, target in enumerate(self.targets):
            out[i] = semantic_mask(target, self.size, per_digit=per_digit)
        return out

    def __repr__(self) -> str:
        return (f"DigitScenes({self.split}): {len(self)} scenes {self.size}x{self.size}, "
                f"{self.digit_range[0]}-{self.digit_range[1]} digits each, seed {self.seed}; "
                f"digits from {self.digits.name} ({len(self.digits)}), photographs: "
                f"{', '.join(SCENE_PHOTOS)} ({self.split} region)")


def semantic_mask(target: dict[str, Tensor], size: int, *, per_digit: bool = False) -> Tensor:
    """The per-pixel class map of one scene, int64 (size, size).

    ``per_digit=False``: 0 = background, 1 = any digit (two classes, for a binary segmenter).
    ``per_digit=True``: 0 = background, ``1 + d`` for a pixel of digit ``d`` (eleven classes).
    A scene's masks are disjoint, so every pixel has one class.
    """
    masks, labels = target["masks"], target["labels"]
    if masks.ndim != 3 or masks.shape[1:] != (size, size) or masks.shape[0] != labels.shape[0]:
        raise DataError(f"target['masks'] must be (k, {size}, {size}) with one label per mask; got "
                        f"masks {tuple(masks.shape)} and labels {tuple(labels.shape)}")
    values = labels.long() + 1 if per_digit else torch.ones_like(labels, dtype=torch.int64)
    out = torch.zeros((size, size), dtype=torch.int64)
    for mask, value in zip(masks.bool(), values):
        out[mask] = value
    return out


def collate_scenes(
    batch: list[tuple[Tensor, dict[str, Tensor]]],
) -> tuple[Tensor, list[dict[str, Any]]]:
    """For ``DataLoader(collate_fn=collate_scenes)``: images stacked (B, 3, S, S), targets listed.

    Scenes hold different numbers of digits, so their targets cannot be stacked; torchvision's
    detection models take them as a list of dicts, as here.
    """
    if not batch:
        raise DataError("collate_scenes got an empty batch")
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
