"""companion.models.detect: shapes, the box encoding and its inverse, the loss at its zero and
away from it, the focal loss against torchvision's, clear errors, and that both nets can learn."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.ops import box_iou, sigmoid_focal_loss

from companion.models.detect import (
    GridDetector,
    UNet,
    Up,
    boxes_to_offsets,
    collisions,
    decode,
    detection_loss,
    encode_batch,
    encode_targets,
    focal_loss,
    offsets_to_boxes,
    perfect_logits,
)
from param_formulas import conv_params, n_params


def cases(n: int) -> settings:
    """Deterministic hypothesis settings with ``n`` examples."""
    return settings(max_examples=n, deadline=None, derandomize=True)


DTYPES = st.sampled_from([torch.float32, torch.float64])


@st.composite
def boxes_in_image(draw, size: int = 64, max_boxes: int = 6, dtype=torch.float64):
    """(N, 4) boxes with positive width and height inside a ``size`` x ``size`` image."""
    n = draw(st.integers(0, max_boxes))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    corner = torch.rand(n, 2, generator=g, dtype=torch.float64) * (size - 2)
    wh = 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * (size - 1 - corner)
    return torch.cat([corner, corner + wh], dim=1).to(dtype)


# --------------------------------------------------------------------------------------------
# Shapes and parameter counts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stride, size", [(4, 32), (8, 64), (16, 64)])
def test_detector_predicts_one_vector_per_cell(stride, size):
    model = GridDetector(num_classes=10, width=4, stride=stride).eval()
    out = model(torch.rand(2, 3, size, size + stride))  # not square
    assert out.shape == (2, 5 + 10, size // stride, (size + stride) // stride)


def test_detector_parameter_count_matches_its_layers():
    w = 4  # stride 8: three stride-2 stages of widths w, 2w, 4w, then the head
    widths = [(3, w), (w, 2 * w), (2 * w, 4 * w)]
    backbone = sum(conv_params(a, b, 3, False) + conv_params(b, b, 3, False) + 4 * b
                   for a, b in widths)
    head = conv_params(4 * w, 4 * w, 3, False) + 2 * 4 * w + conv_params(4 * w, 5 + 3, 1)
    assert n_params(GridDetector(num_classes=3, width=w, stride=8)) == backbone + head


def test_detector_starts_at_the_focal_loss_prior():
    """Lin et al.'s initialisation: every cell starts with objectness probability 0.01."""
    bias = GridDetector(width=4).head[-1].bias
    assert torch.sigmoid(bias[0]).item() == pytest.approx(0.01, rel=1e-5)
    assert bias[1:].abs().max() < 1  # only the objectness bias is moved


@pytest.mark.parametrize("depth, size", [(1, 8), (2, 32), (3, 64)])
def test_unet_returns_a_logit_map_of_the_input_size(depth, size):
    model = UNet(num_classes=3, width=4, depth=depth).eval()
    assert model(torch.rand(2, 3, size, 2 * size)).shape == (2, 3, size, 2 * size)


def test_unet_parameter_count_matches_its_layers():
    def double(a: int, b: int) -> int:  # two conv-BN-ReLU: no conv bias, BN weight and bias
        return conv_params(a, b, 3, False) + conv_params(b, b, 3, False) + 4 * b

    w, k = 4, 2
    encoder = double(3, w) + double(w, 2 * w) + double(2 * w, 4 * w)
    decoder = (conv_params(4 * w, 2 * w, 2) + double(4 * w, 2 * w)  # transposed conv + skip
               + conv_params(2 * w, w, 2) + double(2 * w, w))
    assert n_params(UNet(num_classes=k, width=w, depth=2)) == encoder + decoder + conv_params(w, k, 1)


def test_up_doubles_the_resolution_and_joins_the_skip():
    up = Up(8, 4)
    assert up(torch.rand(1, 8, 5, 7), torch.rand(1, 4, 10, 14)).shape == (1, 4, 10, 14)


# --------------------------------------------------------------------------------------------
# Bad input gets a clear error
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, match", [((2, 1, 64, 64), r"\(B, 3, H, W\)"),
                                          ((3, 64, 64), r"\(B, 3, H, W\)"),
                                          ((1, 3, 60, 64), "divisible by 8")])
def test_detector_rejects_bad_images(shape, match):
    with pytest.raises(ValueError, match=match):
        GridDetector(width=4)(torch.rand(shape))


def test_unet_rejects_sizes_its_pooling_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet(width=4, depth=2)(torch.rand(1, 3, 30, 32))


@pytest.mark.parametrize("kwargs, match", [({"stride": 6}, "power of two"), ({"stride": 1}, "power of two"),
                                           ({"width": 0}, "positive")])
def test_detector_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridDetector(**kwargs)


@pytest.mark.parametrize("kwargs", [{"num_classes": 1}, {"depth": 0}, {"width": 0}])
def test_unet_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError, match="UNet needs"):
        UNet(**kwargs)


@pytest.mark.parametrize("boxes, match", [(torch.zeros(2, 5), r"\(N, 4\)"),
                                          (torch.tensor([[10.0, 10, 5, 20]]), "x2 > x1"),
                                          (torch.tensor([[10.0, 10, 20, 10]]), "y2 > y1")])
def test_encoding_rejects_bad_boxes(boxes, match):
    with pytest.raises(ValueError, match=match):
        encode_targets(boxes, torch.zeros(len(boxes), dtype=torch.long), (8, 8), 8)


def test_encoding_rejects_labels_that_do_not_match_the_boxes():
    with pytest.raises(ValueError, match=r"labels must have shape \(1,\)"):
        encode_targets(torch.tensor([[1.0, 1, 9, 9]]), torch.tensor([1, 2]), (8, 8), 8)


def test_loss_rejects_targets_of_another_grid():
    target = encode_batch([{"boxes": torch.tensor([[1.0, 1, 9, 9]]), "labels": torch.tensor([1])}],
                          (4, 4), 16)
    with pytest.raises(ValueError, match="model's stride"):
        detection_loss(torch.zeros(1, 15, 8, 8), target)
    with pytest.raises(ValueError, match=r"\(B, 5 \+ classes, H, W\)"):
        detection_loss(torch.zeros(1, 5, 4, 4), target)
    with pytest.raises(ValueError, match=r"\(B, 5 \+ classes, H, W\)"):
        decode(torch.zeros(15, 4, 4), stride=16)


# --------------------------------------------------------------------------------------------
# The encoding and its inverse
# --------------------------------------------------------------------------------------------
@cases(60)
@given(boxes=boxes_in_image(), stride=st.sampled_from([4, 8, 16]), dtype=DTYPES)
def test_offsets_to_boxes_inverts_boxes_to_offsets(boxes, stride, dtype):
    boxes = boxes.to(dtype)
    cells, offsets = boxes_to_offsets(boxes, stride)
    assert offsets.dtype == dtype and cells.dtype == torch.long
    assert bool(((offsets[:, :2] >= 0) & (offsets[:, :2] < 1)).all())  # the centre's own cell
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(offsets_to_boxes(offsets, cells, stride), boxes, rtol=0, atol=tol)


def test_offsets_of_a_hand_worked_box():
    # centre (20, 12) at stride 8: cell column 2, row 1, at (0.5, 0.5) in it; size 16 x 8 px
    cells, offsets = boxes_to_offsets(torch.tensor([[12.0, 8, 28, 16]]), 8)
    assert cells.tolist() == [[2, 1]]
    torch.testing.assert_close(offsets, torch.tensor([[0.5, 0.5, math.log(2), 0.0]]))


@cases(40)
@given(boxes=boxes_in_image(dtype=torch.float32), stride=st.sampled_from([4, 8]),
       data=st.data())
def test_decode_of_perfect_logits_gives_the_boxes_back(boxes, stride, data):
    """decode(encode(boxes)) == boxes, for every box that has its cell to itself."""
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 9), min_size=len(boxes),
                                             max_size=len(boxes))), dtype=torch.long)
    grid = (64 // stride, 64 // stride)
    target = encode_batch([{"boxes": boxes, "labels": labels}], grid, stride)
    # three cells decode each box (up to rounding): NMS at IoU 0.999 keeps one of them
    (found,) = decode(perfect_logits(target, 10), stride, iou_threshold=0.999)
    cells, _ = boxes_to_offsets(boxes, stride)
    unique = [i for i in range(len(boxes)) if (cells == cells[i]).all(1).sum() == 1]
    assert len(boxes) - collisions(boxes, stride) <= len(found["boxes"]) <= len(boxes)
    for i in unique:  # each box with a cell of its own comes back, with its label
        j = int(box_iou(boxes[i:i + 1], found["boxes"]).argmax())
        torch.testing.assert_close(found["boxes"][j], boxes[i], rtol=0, atol=1e-3)
        assert found["labels"][j] == labels[i] and found["scores"][j] > 0.99


def test_encoding_marks_the_centre_cell_and_its_two_nearest_neighbours():
    # centre (20, 12) at stride 8: cell (2, 1) at (0.5, 0.5) -> neighbours right and below;
    # centre (43, 51): cell (5, 6) at (0.375, 0.375) -> neighbours left and above
    boxes = torch.tensor([[12.0, 8, 28, 16], [35.0, 43, 51, 59]])
    target = encode_targets(boxes, torch.tensor([3, 7]), (8, 8), 8)
    rows, cols = torch.nonzero(target["labels"] == 3, as_tuple=True)
    assert sorted(zip(cols.tolist(), rows.tolist())) == [(2, 1), (2, 2), (3, 1)]
    rows, cols = torch.nonzero(target["labels"] == 7, as_tuple=True)
    assert sorted(zip(cols.tolist(), rows.tolist())) == [(4, 6), (5, 5), (5, 6)]
    assert target["objectness"].sum() == 6
    # the same centre measured from each cell: (0.5, 0.5) from its own, shifted by a cell otherwise
    torch.testing.assert_close(target["offsets"][:, 1, 2], torch.tensor([0.5, 0.5, math.log(2), 0]))
    torch.testing.assert_close(target["offsets"][:2, 1, 3], torch.tensor([-0.5, 0.5]))
    torch.testing.assert_close(target["offsets"][:2, 2, 2], torch.tensor([0.5, -0.5]))
    torch.testing.assert_close(target["offsets"][:2, 6, 4], torch.tensor([1.375, 0.375]))


def test_a_neighbour_outside_the_grid_is_dropped():
    # centre (2, 2): cell (0, 0), the nearer edges are the image's own
    target = encode_targets(torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([1]), (8, 8), 8)
    assert target["objectness"].sum() == 1 and target["labels"][0, 0] == 1


def test_a_centre_cell_beats_a_neighbour_and_the_larger_box_wins():
    boxes = torch.tensor([[0.0, 0, 16, 16],  # centre (8, 8): cell (1, 1), neighbours (0, 1), (1, 0)
                          [6.0, 6, 10, 10],  # the same centre, smaller: loses all three cells
                          [10.0, 2, 14, 6]])  # centre (12, 4): cell (1, 0), neighbours (2, 0), (1, 1)
    target = encode_targets(boxes, torch.tensor([3, 4, 5]), (8, 8), 8)
    assert collisions(boxes, 8) == 1
    assert (target["labels"] == 4).sum() == 0  # the smaller of two boxes centred in one cell
    assert target["labels"][1, 1] == 3 and target["labels"][1, 0] == 3  # (row, column)
    assert target["labels"][0, 1] == 5  # box 2's centre cell, although box 0 is larger
    assert target["labels"][0, 2] == 5 and target["objectness"].sum() == 4


def test_an_image_without_objects_has_no_positive_cell():
    target = encode_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), (8, 8), 8)
    assert target["objectness"].sum() == 0 and (target["labels"] == -1).all()


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------
def two_scenes() -> dict[str, torch.Tensor]:
    return encode_batch([
        {"boxes": torch.tensor([[3.0, 5, 20, 30], [30, 30, 60, 62]]), "labels": torch.tensor([3, 7])},
        {"boxes": torch.tensor([[10.0, 40, 26, 60]]), "labels": torch.tensor([0])},
    ], (8, 8), 8)


def test_loss_of_a_perfect_prediction_is_zero():
    target = two_scenes()
    parts = detection_loss(perfect_logits(target, 10), target)
    assert parts["loss"] < 1e-5 and parts["objectness"] < 1e-10 and parts["class"] < 1e-10


@pytest.mark.parametrize("part, spoil", [
    ("objectness", lambda p: p[:, 0].neg_()),  # says object where none is and vice versa
    ("box", lambda p: p[:, 3:5].add_(0.5)),  # every box too large
    ("class", lambda p: p[:, 5:].roll(1, dims=1)),  # the wrong class everywhere
])
def test_each_part_of_the_loss_grows_with_its_own_error(part, spoil):
    target = two_scenes()
    pred = perfect_logits(target, 10)
    spoilt = pred.clone()
    if part == "class":
        spoilt[:, 5:] = spoil(pred)
    else:
        spoil(spoilt)
    before, after = detection_loss(pred, target), detection_loss(spoilt, target)
    assert after[part] > before[part] + 0.4
    assert after["loss"] > before["loss"] + 0.4
    others = [k for k in ("objectness", "box", "class") if k != part]
    for k in others:  # an error of one kind costs only in its own term
        assert after[k] == pytest.approx(before[k].item(), abs=1e-6)


def test_loss_without_objects_is_the_objectness_term_alone():
    target = encode_batch([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}],
                          (8, 8), 8)
    pred = torch.randn(1, 15, 8, 8, generator=torch.Generator().manual_seed(0))
    parts = detection_loss(pred, target)
    assert parts["box"] == 0 and parts["class"] == 0 and parts["loss"] == parts["objectness"] > 0


@cases(60)
@given(shape=st.sampled_from([(0,), (1,), (7,), (2, 3, 4)]), scale=st.sampled_from([0.1, 3.0, 40.0]),
       alpha=st.sampled_from([0.25, 0.5, 0.9]), gamma=st.sampled_from([0.0, 1.0, 2.0]),
       seed=st.integers(0, 2**16), dtype=DTYPES)
def test_focal_loss_matches_torchvision(shape, scale, alpha, gamma, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    targets = torch.randint(0, 2, shape, generator=g).to(dtype)
    ours = focal_loss(logits, targets, alpha=alpha, gamma=gamma)
    ref = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="sum")
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(ours, ref, rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------------
# Decoding: thresholds and suppression
# --------------------------------------------------------------------------------------------
def test_decode_suppresses_a_duplicate_and_keeps_other_classes():
    # two boxes of IoU 0.72 whose centres (23, 23) and (25, 25) lie in neighbouring cells
    boxes = torch.tensor([[11.0, 11, 35, 35], [13.0, 13, 37, 37]])
    assert box_iou(boxes[:1], boxes[1:]).item() == pytest.approx(484 / 668)

    def found(labels: list[int], iou_threshold: float) -> int:
        target = encode_batch([{"boxes": boxes, "labels": torch.tensor(labels)}], (8, 8), 8)
        return len(decode(perfect_logits(target, 10), 8, iou_threshold=iou_threshold)[0]["boxes"])

    assert found([4, 4], iou_threshold=0.5) == 1  # one object, found twice: one box stays
    assert found([4, 4], iou_threshold=0.8) == 2  # overlap below the threshold: both stay
    assert found([4, 5], iou_threshold=0.5) == 2  # another class is never suppressed


def test_decode_sorts_by_score_and_respects_the_threshold_and_the_cap():
    pred = torch.randn(2, 15, 8, 8, generator=torch.Generator().manual_seed(1))
    for found in decode(pred, 8, score_threshold=0.2, max_detections=5):
        assert len(found["boxes"]) <= 5 and bool((found["scores"] >= 0.2).all())
        assert torch.equal(found["scores"], found["scores"].sort(descending=True).values)
        assert bool((found["boxes"] >= 0).all() and (found["boxes"] <= 64).all())


# --------------------------------------------------------------------------------------------
# Both nets can learn: fit a handful of images
# --------------------------------------------------------------------------------------------
def fit(model: nn.Module, x: torch.Tensor, loss_fn, steps: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model(x)).backward()
        optimizer.step()
    model.eval()


def test_detector_fits_four_images():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 0.3
    targets = []
    colours = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    for i in range(4):  # one square per image; its class is its colour
        c = 4 + 5 * i
        x[i, :, c:c + 10, c:c + 10] = colours[i, :, None, None]
        targets.append({"boxes": torch.tensor([[c, c, c + 10.0, c + 10.0]]), "labels": torch.tensor([i])})
    model = GridDetector(num_classes=4, width=8, stride=4)
    target = encode_batch(targets, (8, 8), 4)
    fit(model, x, lambda p: detection_loss(p, target)["loss"], steps=100)
    with torch.no_grad():
        found = decode(model(x), 4, score_threshold=0.1)
    for f, t in zip(found, targets):
        assert len(f["boxes"]) >= 1 and f["labels"][0] == t["labels"][0]
        assert box_iou(f["boxes"][:1], t["boxes"]).item() > 0.5


def test_unet_fits_four_masks():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16) * 0.5
    masks = torch.zeros(4, 16, 16, dtype=torch.long)
    for i in range(4):
        masks[i, 2 + i:8 + i, 3:12] = 1
        x[i, 1, 2 + i:8 + i, 3:12] += 0.4
    model = UNet(num_classes=2, width=4, depth=2)
    fit(model, x, lambda logits: nn.functional.cross_entropy(logits, masks), steps=60)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    assert (predicted == masks).float().mean() > 0.95
