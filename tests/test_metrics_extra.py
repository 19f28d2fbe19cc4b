"""IoU (boxes, masks), precision/recall/F1 and calibration, checked by hand and against references."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.metrics import (box_iou, calibration_bins, confusion_matrix, expected_calibration_error,
                               mask_iou, precision_recall_f1)


# --------------------------------------------------------------------------------------------
# IoU by hand
# --------------------------------------------------------------------------------------------
def test_box_iou_hand_cases():
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3],   # overlap 1, union 4 + 4 - 1 = 7
                      [0.0, 0, 2, 2],   # identical
                      [2.0, 0, 4, 2],   # touching edge: no area in common
                      [0.0, 0, 1, 2]])  # inside: 2 / 4
    assert box_iou(a, b).tolist() == [[pytest.approx(1 / 7), 1.0, 0.0, 0.5]]


def test_mask_iou_is_tp_over_tp_fp_fn():
    pred = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    true = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)
    # TP = 2, FP = 1, FN = 1, and 5 true negatives that must NOT count
    assert float(mask_iou(pred, true)) == pytest.approx(2 / 4)
    # the seed's formula, TP / (TP + TN), would give 2 / 7 here
    assert float(mask_iou(torch.zeros(4, 4), torch.zeros(4, 4))) == 1.0
    assert float(mask_iou(torch.zeros(4, 4), torch.zeros(4, 4), empty=0.0)) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        mask_iou(pred, true[:2])


def test_box_iou_rejects_bad_boxes():
    with pytest.raises(ValueError, match=r"x2 < x1"):
        box_iou(torch.tensor([[2.0, 0, 1, 1]]), torch.tensor([[0.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(torch.zeros(3), torch.zeros(1, 4))


# --------------------------------------------------------------------------------------------
# IoU properties and references
# --------------------------------------------------------------------------------------------
coord = st.integers(0, 20)


@st.composite
def boxes(draw, n: int):
    out = []
    for _ in range(n):
        x1, x2 = sorted((draw(coord), draw(coord)))
        y1, y2 = sorted((draw(coord), draw(coord)))
        out.append([x1, y1, x2 + 1, y2 + 1])  # at least 1 x 1
    return torch.tensor(out, dtype=torch.float64)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(boxes(3), boxes(4))
def test_box_iou_matches_torchvision_and_rasterised_masks(a, b):
    from torchvision.ops import box_iou as tv_box_iou

    ours = box_iou(a, b)
    assert torch.allclose(ours, tv_box_iou(a, b))
    assert torch.allclose(ours, box_iou(b, a).T)  # symmetric
    assert bool(((ours >= 0) & (ours <= 1)).all())

    def raster(box):  # integer boxes -> pixel masks, so box IoU == mask IoU exactly
        m = torch.zeros(22, 22, dtype=torch.bool)
        x1, y1, x2, y2 = box.long().tolist()
        m[y1:y2, x1:x2] = True
        return m

    for i in range(len(a)):
        for j in range(len(b)):
            assert float(ours[i, j]) == pytest.approx(float(mask_iou(raster(a[i]), raster(b[j]))))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1))
def test_mask_iou_matches_torchmetrics_jaccard(seed):
    from torchmetrics.functional.classification import binary_jaccard_index

    g = torch.Generator().manual_seed(seed)
    pred, true = torch.rand(2, 16, 16, generator=g) > 0.5
    if (pred | true).any():
        assert float(mask_iou(pred, true)) == pytest.approx(float(binary_jaccard_index(pred.long(), true.long())))


# --------------------------------------------------------------------------------------------
# Precision, recall, F1
# --------------------------------------------------------------------------------------------
def test_precision_recall_f1_match_scikit_learn():
    from sklearn.metrics import precision_recall_fscore_support

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (200,), generator=g)
    p = torch.where(torch.rand(200, generator=g) < 0.6, y, torch.randint(0, 4, (200,), generator=g))
    p[p == 3] = 2  # class 3 is never predicted: precision 0 by convention
    scores = precision_recall_f1(confusion_matrix(p, y, 4))
    ref = precision_recall_fscore_support(y.numpy(), p.numpy(), labels=range(4), zero_division=0)
    for ours, theirs in zip((scores["precision"], scores["recall"], scores["f1"], scores["support"]), ref):
        assert torch.allclose(ours.double(), torch.as_tensor(theirs).double())


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------
def test_calibration_bins_by_hand():
    probs = torch.tensor([[0.95, 0.05], [0.65, 0.35], [0.55, 0.45], [0.1, 0.9]])
    targets = torch.tensor([0, 1, 0, 1])
    bins = calibration_bins(probs, targets, n_bins=2)  # (0, 0.5], (0.5, 1]
    assert bins["count"].tolist() == [0, 4]
    assert float(bins["confidence"][1]) == pytest.approx((0.95 + 0.65 + 0.55 + 0.9) / 4)
    assert float(bins["accuracy"][1]) == pytest.approx(3 / 4)
    assert float(expected_calibration_error(probs, targets, 2)) == pytest.approx(abs(0.75 - 3.05 / 4))
    # a confidence exactly on an edge goes to the lower bin, (lo, hi]
    edge = calibration_bins(torch.tensor([[0.5, 0.5]]), torch.tensor([0]), n_bins=2)
    assert edge["count"].tolist() == [1, 0]


def test_ece_matches_torchmetrics():
    from torchmetrics.functional.classification import multiclass_calibration_error

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 10, generator=g) * 3
    targets = torch.randint(0, 10, (500,), generator=g)
    probs = logits.softmax(1)
    ours = expected_calibration_error(probs, targets, n_bins=15)
    ref = multiclass_calibration_error(probs, targets, num_classes=10, n_bins=15, norm="l1")
    assert float(ours) == pytest.approx(float(ref), abs=1e-6)


def test_perfectly_calibrated_predictions_have_zero_ece():
    # confidence 1.0 and always right
    probs = torch.eye(5)
    assert float(expected_calibration_error(probs, torch.arange(5))) == 0.0
