"""companion.scenes: real digits on real photographs, with exact boxes and masks.

The ground truth is checked against what it claims to be: each mask is the placed digit's own
thresholded pixels (found again by resizing the source digit), each box is the tight box of its
mask (torchvision.ops.masks_to_boxes), the masks are disjoint, and the splits share no digit and
no photograph pixel. Determinism, the DataLoader path and every bad argument are tested too.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.ops import box_iou, masks_to_boxes

from companion import scenes
from companion.data import DataError, mnist
from companion.scenes import (DigitScenes, collate_scenes, make_scene, photo_region,
                              semantic_mask)

N = 40


@functools.lru_cache(maxsize=None)
def built(split: str = "train", n: int = N, size: int = 64, digits=(1, 3), seed: int = 0):
    return DigitScenes(split, n=n, size=size, digits=digits, seed=seed)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_items_follow_the_torchvision_detection_convention(split):
    ds = built(split)
    assert len(ds) == N
    for i in range(N):
        image, target = ds[i]
        k = target["labels"].shape[0]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert set(target) == {"boxes", "labels", "masks"}
        assert target["boxes"].shape == (k, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].dtype == torch.int64 and target["masks"].dtype == torch.bool
        assert target["masks"].shape == (k, 64, 64) and 1 <= k <= 3
        assert bool(((target["labels"] >= 0) & (target["labels"] <= 9)).all())
    counts = np.bincount([len(t["labels"]) for t in ds.targets], minlength=4)
    assert (counts[1:] > 0).all(), f"every count of digits 1..3 should occur: {counts}"


def test_boxes_are_the_tight_boxes_of_the_masks():
    for ds in (built("train"), built("test", size=96, digits=(2, 4))):
        for target in ds.targets:
            masks, boxes = target["masks"], target["boxes"]
            assert bool(masks.flatten(1).any(1).all()), "an empty mask"
            # masks_to_boxes gives the last pixel's index; a box ends at that pixel's far edge
            expected = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])
            torch.testing.assert_close(boxes, expected, rtol=0, atol=0)
            x1, y1, x2, y2 = boxes.long().T
            for m, a, b, c, d in zip(masks, x1, y1, x2, y2):
                assert int(m[b:d, a:c].sum()) == int(m.sum()), "mask pixels outside the box"


def test_masks_are_disjoint_and_box_overlap_is_limited():
    for target in built("train", digits=(3, 4)).targets:
        masks = target["masks"]
        assert int(masks.sum(0).max()) <= 1, "two digits share a pixel"
        iou = box_iou(target["boxes"], target["boxes"]).fill_diagonal_(0)
        assert float(iou.max()) <= scenes.MAX_BOX_IOU + 1e-6


def _thresholded(digit: torch.Tensor, side: int) -> torch.Tensor:
    """The digit (1, 28, 28 uint8) resized to ``side`` and thresholded, cropped to its ink."""
    alpha = scenes._resize(digit.float().numpy() / 255, side)[0]
    ink = torch.from_numpy(alpha > scenes.MASK_THRESHOLD)
    rows, cols = ink.any(1).nonzero(), ink.any(0).nonzero()
    return ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


@pytest.mark.parametrize("split", ["train", "test"])
def test_each_mask_is_its_source_digit_thresholded(split):
    ds = built(split)
    lo, hi = (round(f * ds.size) for f in scenes.DIGIT_SCALE)
    for target, sources in zip(ds.targets[:15], ds.sources[:15]):
        assert torch.equal(target["labels"], ds.digits.labels[sources])
        for mask, box, j in zip(target["masks"], target["boxes"].long(), sources):
            crop = mask[box[1]:box[3], box[0]:box[2]]
            shapes = [_thresholded(ds.digits.images[j], s) for s in range(lo, hi + 1)]
            assert any(torch.equal(crop, s) for s in shapes), "mask is not the digit's pixels"


def test_digit_pixels_are_composited_over_the_photograph():
    digit = mnist("test").images[0, 0].numpy().astype(np.float32) / 255
    background = np.full((3, 64, 64), 0.3, dtype=np.float32)  # dark: the digit is drawn light
    image, boxes, masks = make_scene(background, [digit], np.random.default_rng(0))
    luma = torch.from_numpy(scenes.LUMA @ image.reshape(3, -1)).reshape(64, 64)
    mask = torch.from_numpy(masks[0])
    # alpha > 0.5 towards a colour of luma >= 0.75: at least halfway from 0.3 to 0.75
    assert float(luma[mask].min()) > 0.3 + 0.5 * (0.75 - 0.3) - 1e-6
    x1, y1, x2, y2 = boxes[0].astype(int)
    outside = np.ones((64, 64), dtype=bool)
    outside[max(y1 - 6, 0):y2 + 6, max(x1 - 6, 0):x2 + 6] = False
    assert np.allclose(image[:, outside], 0.3), "pixels far from the digit changed"


def test_same_seed_same_scenes_other_seed_other_scenes():
    a, b = built("train", seed=3), DigitScenes("train", n=N, seed=3)
    assert torch.equal(a.images, b.images)
    for ta, tb in zip(a.targets, b.targets):
        assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not torch.equal(a.images, built("train", seed=4).images)
    assert not torch.equal(built("train").images, built("val").images)


def test_a_scene_does_not_depend_on_n():
    short, long = DigitScenes("val", n=5), built("val")
    assert torch.equal(short.images, long.images[:5])
    assert all(torch.equal(s["boxes"], t["boxes"]) for s, t in zip(short.targets, long.targets))


def _pixels(ds, sources) -> set[bytes]:
    return {ds.digits.images[int(j)].numpy().tobytes() for s in sources for j in s}


def test_no_test_or_validation_digit_in_training_scenes():
    train, val, test = built("train", n=300), built("val", n=100), built("test", n=100)
    test_digits = {img.numpy().tobytes() for img in mnist("test").images}
    train_used, val_used = _pixels(train, train.sources), _pixels(val, val.sources)
    assert len(train_used) > 300
    assert not train_used & test_digits, "a test digit in a training scene"
    assert not val_used & test_digits and not train_used & val_used
    assert _pixels(test, test.sources) <= test_digits
    assert len(train.digits) == 3500 and len(val.digits) == 500 and len(test.digits) == 1000


def test_photograph_regions_are_disjoint():
    photo = np.arange(300 * 451, dtype=np.float32).reshape(300, 451, 1)  # chelsea's shape
    seen = [set(photo_region(photo, s).ravel().tolist()) for s in ("train", "val", "test")]
    assert sum(map(len, seen)) == photo.size, "the regions do not tile the photograph"
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


def test_semantic_mask_both_conventions():
    image, target = built("test")[0]
    binary = semantic_mask(target, 64)
    per_digit = semantic_mask(target, 64, per_digit=True)
    assert binary.dtype == per_digit.dtype == torch.int64 and binary.shape == (64, 64)
    assert torch.equal(binary.bool(), target["masks"].any(0))
    assert set(binary.unique().tolist()) == {0, 1}
    for mask, label in zip(target["masks"], target["labels"]):
        assert bool((per_digit[mask] == label + 1).all())
    stacked = built("test").semantic_masks(per_digit=True)
    assert torch.equal(stacked[0], per_digit) and stacked.shape == (N, 64, 64)
    with pytest.raises(DataError, match="masks"):
        semantic_mask(target, 32)


def test_collate_for_a_dataloader():
    loader = DataLoader(built("train"), batch_size=8, collate_fn=collate_scenes)
    images, targets = next(iter(loader))
    assert images.shape == (8, 3, 64, 64) and len(targets) == 8
    assert torch.equal(targets[2]["boxes"], built("train").targets[2]["boxes"])
    with pytest.raises(DataError, match="empty"):
        collate_scenes([])


def test_empty_scenes_and_no_scenes():
    ds = DigitScenes("test", n=3, digits=(0, 0))
    image, target = ds[1]
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 64, 64)
    assert target["labels"].shape == (0,) and not bool(semantic_mask(target, 64).any())
    assert len(DigitScenes("test", n=0)) == 0
    with pytest.raises(IndexError, match="scene 3"):
        ds[3]


@pytest.mark.parametrize("kwargs, match", [
    (dict(split="validation"), "split"),
    (dict(n=-1), "n must be"),
    (dict(n=2.5), "n must be an int"),
    (dict(size=16), "size must be >= 32"),
    (dict(digits=(3, 1)), "fewest <= most"),
    (dict(digits=(-1, 2)), "fewest <= most"),
    (dict(digits=3), "digits must be"),
    (dict(seed=-2), "seed"),
    (dict(n=5, digits=(9, 9)), "could not place 9 digits"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(DataError, match=match):
        DigitScenes(**kwargs)
