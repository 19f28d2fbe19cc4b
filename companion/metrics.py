"""Metrics: batch scores on logits (accuracy), confusion-matrix scores, IoU and calibration."""

from __future__ import annotations

import torch
from torch import Tensor


def accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """Fraction of rows whose highest logit is the target class."""
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"accuracy expects logits (N, classes) and targets (N,); got {tuple(logits.shape)} and {tuple(targets.shape)}")
    return (logits.argmax(dim=1) == targets).float().mean()


def confusion_matrix(predictions: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """``cm[i, j]`` counts examples of true class ``i`` predicted as class ``j``.

    Labels must lie in ``0 .. num_classes - 1``: an out-of-range label would otherwise
    be counted silently in another cell of the flattened matrix.
    """
    if predictions.ndim != 1 or predictions.shape != targets.shape:
        raise ValueError(f"confusion_matrix expects predictions (N,) and targets (N,); "
                         f"got {tuple(predictions.shape)} and {tuple(targets.shape)}")
    for name, labels in (("predictions", predictions), ("targets", targets)):
        low, high = (int(labels.min()), int(labels.max())) if labels.numel() else (0, 0)
        if low < 0 or high >= num_classes:
            raise ValueError(f"{name} hold labels in [{low}, {high}] but num_classes="
                             f"{num_classes} allows 0..{num_classes - 1}; pass the right "
                             "num_classes")
    index = targets.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


# --------------------------------------------------------------------------------------------
# Per-class scores from a confusion matrix
# --------------------------------------------------------------------------------------------
def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den``, and 0 where ``den == 0`` (a class never predicted: precision 0).

    Every positive denominator divides as it is, also one below 1 (the union of two
    normalised boxes, precision + recall of a weak class); only the zero ones are
    replaced, by 1, so that no 0/0 is computed.
    """
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)),
                       torch.zeros_like(num))


def precision_recall_f1(cm: Tensor) -> dict[str, Tensor]:
    """Per-class precision, recall and F1 from a confusion matrix ``cm[true, predicted]``.

    precision_c = TP / (TP + FP) (column c), recall_c = TP / (TP + FN) (row c),
    F1 = harmonic mean of the two. A class with no predictions (or no examples) scores 0.
    """
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"precision_recall_f1 expects a square confusion matrix; got shape {tuple(cm.shape)}")
    cm = cm.double()
    tp = cm.diag()
    precision = _safe_div(tp, cm.sum(dim=0))
    recall = _safe_div(tp, cm.sum(dim=1))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(dim=1).long()}


# --------------------------------------------------------------------------------------------
# Intersection over union (detection and segmentation)
# --------------------------------------------------------------------------------------------
def box_area(boxes: Tensor) -> Tensor:
    """Areas of boxes given as ``(x1, y1, x2, y2)`` rows, ``x2 >= x1`` and ``y2 >= y1``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of every pair of boxes: ``(N, 4)`` and ``(M, 4)`` in ``(x1, y1, x2, y2)`` -> ``(N, M)``.

    IoU = |A ∩ B| / |A ∪ B| = |A ∩ B| / (|A| + |B| - |A ∩ B|). Counting pixels of box A as the
    prediction and B as the truth, that is TP / (TP + FP + FN). Two empty boxes score 0.
    """
    for name, b in (("boxes_a", boxes_a), ("boxes_b", boxes_b)):
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2); got {tuple(b.shape)}")
        if bool(((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any()):
            raise ValueError(f"{name} has a box with x2 < x1 or y2 < y1; boxes must be (x1, y1, x2, y2)")
    boxes_a, boxes_b = boxes_a.double(), boxes_b.double()
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # no overlap -> 0 width or height
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = box_area(boxes_a)[:, None] + box_area(boxes_b)[None, :] - inter
    return _safe_div(inter, union)


def _mask_counts(pred: Tensor, target: Tensor, per_image: bool) -> tuple[Tensor, Tensor, Tensor]:
    """True positives, false positives and false negatives, pooled or per image (first axis)."""
    if pred.shape != target.shape:
        raise ValueError(f"masks must have one shape; got pred {tuple(pred.shape)} and target "
                         f"{tuple(target.shape)}")
    if per_image and pred.ndim < 2:
        raise ValueError(f"per_image=True needs masks (N, ...) with images on the first axis; "
                         f"got {tuple(pred.shape)}")
    pred, target = pred.bool(), target.bool()
    dims = tuple(range(1, pred.ndim)) if per_image else tuple(range(pred.ndim))
    count = lambda m: m.sum(dim=dims).double()  # noqa: E731
    return count(pred & target), count(pred & ~target), count(~pred & target)


def _ratio(num: Tensor, den: Tensor, empty: float) -> Tensor:
    """``num / den``, and ``empty`` where both masks are empty (``den == 0``)."""
    return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(den, float(empty)))


def mask_iou(pred: Tensor, target: Tensor, *, per_image: bool = False,
             empty: float = 1.0) -> Tensor:
    """IoU (Jaccard index) of boolean masks: TP / (TP + FP + FN), float64.

    TP counts pixels in both masks, FP pixels only in ``pred``, FN pixels only in ``target``; true
    negatives (background in both) do not appear.
    ``per_image=False`` pools the pixels of all images (torchmetrics' ``binary_jaccard_index``);
    ``per_image=True`` gives one IoU per image (first axis). When prediction and truth are both
    empty the ratio is 0/0: it is returned as ``empty`` -- 1.0 by default (nothing to find,
    nothing found: a perfect answer), which is ``zero_division=1`` in torchmetrics.
    """
    tp, fp, fn = _mask_counts(pred, target, per_image)
    return _ratio(tp, tp + fp + fn, empty)


def dice(pred: Tensor, target: Tensor, *, per_image: bool = False, empty: float = 1.0) -> Tensor:
    """Dice coefficient (F1 of the pixels): 2 TP / (2 TP + FP + FN), float64.

    Dice = 2 IoU / (1 + IoU), so it ranks predictions as IoU does but is higher except at 0 and 1.
    Pooling, ``per_image`` and ``empty`` as in :func:`mask_iou` (torchmetrics:
    ``binary_f1_score`` with ``multidim_average="global"`` or ``"samplewise"``).
    """
    tp, fp, fn = _mask_counts(pred, target, per_image)
    return _ratio(2 * tp, 2 * tp + fp + fn, empty)


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------
def calibration_bins(probs: Tensor, targets: Tensor, n_bins: int = 10) -> dict[str, Tensor]:
    """Reliability-diagram bins of the top-class confidence.

    ``probs`` is ``(N, classes)`` (softmax outputs). Bin b holds the examples whose confidence
    lies in ``(edges[b], edges[b+1]]`` (the first bin also holds 0). Returns ``edges`` (n_bins+1),
    and per bin the ``count``, mean ``confidence`` and ``accuracy`` (0 for empty bins).
    """
    if probs.ndim != 2 or targets.shape != probs.shape[:1]:
        raise ValueError(f"calibration_bins expects probs (N, classes) and targets (N,); got {tuple(probs.shape)} and {tuple(targets.shape)}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    probs = probs.double()
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == targets).double()
    # k / n_bins rounded once: torch.linspace can land an ulp below it (0.5499... for
    # 11/20), which would send a confidence of exactly 0.55 to the bin above
    edges = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    index = torch.bucketize(confidence, edges[1:-1], right=False)  # (lo, hi] -> bin
    count = torch.bincount(index, minlength=n_bins).double()
    conf_sum = torch.bincount(index, weights=confidence, minlength=n_bins)
    acc_sum = torch.bincount(index, weights=correct, minlength=n_bins)
    return {"edges": edges, "count": count.long(), "confidence": _safe_div(conf_sum, count),
            "accuracy": _safe_div(acc_sum, count)}


def expected_calibration_error(probs: Tensor, targets: Tensor, n_bins: int = 10) -> Tensor:
    """ECE = sum over bins of (bin share of examples) * |bin accuracy - bin mean confidence|."""
    bins = calibration_bins(probs, targets, n_bins)
    weight = bins["count"].double() / max(int(bins["count"].sum()), 1)
    return (weight * (bins["accuracy"] - bins["confidence"]).abs()).sum()
