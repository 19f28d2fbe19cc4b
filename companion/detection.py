"""Detection metrics written out: NMS, precision-recall and AP (segmentation's mask IoU and Dice
live in :mod:`companion.metrics` and are importable from here too).

Each function is the plain version of what a library does, and the tests hold it equal to that
library: :func:`nms` and :func:`batched_nms` to ``torchvision.ops``, :func:`mean_average_precision`
to ``torchmetrics.detection.MeanAveragePrecision``'s ``map_50`` (the COCO evaluation of Lin et al.
2014); ``mask_iou`` and ``dice`` to torchmetrics' ``binary_jaccard_index`` and
``binary_f1_score``.

Boxes are ``(x1, y1, x2, y2)`` rows with ``x2 >= x1`` and ``y2 >= y1``, in pixels or normalised
to [0, 1] (IoU does not depend on the unit). Predictions and targets are lists with one dict per
image, as torchvision's detection models return them and torchmetrics takes them::

    preds   = [{"boxes": (n, 4) float, "scores": (n,) float, "labels": (n,) int}, ...]
    targets = [{"boxes": (k, 4) float, "labels": (k,) int}, ...]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from companion.metrics import box_iou, dice, mask_iou  # noqa: F401 - chapter 16's segmentation scores

#: Recall levels at which COCO reads precision (101-point interpolation). They are float32 values
#: widened to float64 because torchmetrics passes ``torch.linspace(0, 1, 101).tolist()`` to the
#: COCO evaluation; a recall of exactly k/100 can fall on the other side of a float64 level.
RECALL_LEVELS = torch.linspace(0.0, 1.0, 101).double()
#: COCO keeps at most this many detections per image and class (the last of maxDets).
MAX_DETECTIONS = 100
#: pycocotools adds one machine epsilon to the precision's denominator; so do we, so that the
#: numbers agree to the last bit (it changes a precision by at most 2.2e-16).
_EPS = torch.finfo(torch.float64).eps


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def _check_boxes(boxes: Tensor, name: str) -> None:
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"{name} must be a tensor (N, 4) of (x1, y1, x2, y2) rows; got {shape}")
    if not boxes.is_floating_point():
        raise ValueError(f"{name} must be float32 or float64, not {boxes.dtype}")
    if bool(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any()):
        raise ValueError(f"{name} has a box with x2 < x1 or y2 < y1; boxes must be "
                         "(x1, y1, x2, y2)")


def _check_scores(scores: Tensor, n: int, name: str = "scores") -> None:
    if not isinstance(scores, Tensor) or scores.shape != (n,) or not scores.is_floating_point():
        got = (f"{scores.dtype} {tuple(scores.shape)}" if isinstance(scores, Tensor)
               else type(scores).__name__)
        raise ValueError(f"{name} must be a float tensor ({n},), one per box; got {got}")
    if bool(scores.isnan().any()):
        raise ValueError(f"{name} holds NaN; a score must be a number to be ranked")


# --------------------------------------------------------------------------------------------
# Non-maximum suppression
# --------------------------------------------------------------------------------------------
def _iou_one_to_many(box: Tensor, boxes: Tensor) -> Tensor:
    """IoU of ``box`` (4,) with each of ``boxes`` (m, 4), in their dtype, as torchvision's kernel.

    Two empty boxes give 0/0 = NaN, which suppresses nothing (NaN > t is false), as in torchvision.
    """
    w = (torch.minimum(box[2], boxes[:, 2]) - torch.maximum(box[0], boxes[:, 0])).clamp(min=0)
    h = (torch.minimum(box[3], boxes[:, 3]) - torch.maximum(box[1], boxes[:, 1])).clamp(min=0)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def _greedy_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float) -> Tensor:
    """Visit boxes from the highest score down; keep one, drop its same-class neighbours."""
    order = torch.sort(scores, descending=True, stable=True).indices  # ties: lower index first
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for rank, i in enumerate(order.tolist()):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[rank + 1:]
        rest = rest[(classes[rest] == classes[i]) & ~suppressed[rest]]
        # compared in float64 like torchvision's C++ (float ovr > double threshold)
        overlap = _iou_one_to_many(boxes[i], boxes[rest]).double() > iou_threshold
        suppressed[rest[overlap]] = True
    return torch.tensor(keep, dtype=torch.int64)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression: the indices of the boxes kept, highest score first.

    A detector fires on many overlapping windows around one object; NMS keeps the best-scored box
    and discards every box whose IoU with it exceeds ``iou_threshold``, then repeats with the best
    box left (the greedy rule of the Viola-Jones and R-CNN detectors; Everingham et al. 2010
    describe why duplicates count as false positives). Equal scores keep the lower index first.
    Equal to ``torchvision.ops.nms``, including the IoU arithmetic in the boxes' dtype.
    """
    _check_boxes(boxes, "boxes")
    _check_scores(scores, boxes.shape[0])
    return _greedy_nms(boxes, scores, torch.zeros(len(boxes), dtype=torch.int64), iou_threshold)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each class (``idxs``): a box never suppresses a box of another class.

    The result is ordered by score (ties: lower index first), as ``torchvision.ops.batched_nms``.
    torchvision gets the same result by shifting each class's boxes by ``class * (max + 1)`` so
    that classes cannot overlap, and running one NMS; that shift is exact only while the
    coordinates are >= -1 and the shifted sums are exact in the dtype. Here the class condition
    is written out, so any coordinates give the per-class answer.
    """
    _check_boxes(boxes, "boxes")
    _check_scores(scores, boxes.shape[0])
    if not isinstance(idxs, Tensor) or idxs.shape != (boxes.shape[0],) or idxs.is_floating_point():
        raise ValueError(f"idxs must be an integer tensor ({boxes.shape[0]},), a class per box")
    return _greedy_nms(boxes, scores, idxs, iou_threshold)


# --------------------------------------------------------------------------------------------
# Matching detections to ground truth, and the precision-recall curve
# --------------------------------------------------------------------------------------------
def _check_inputs(preds: Sequence[dict], targets: Sequence[dict]) -> None:
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must hold one dict per image; got {len(preds)} "
                         f"and {len(targets)}")
    for i, (p, t) in enumerate(zip(preds, targets)):
        for name, d, keys in (("preds", p, ("boxes", "scores", "labels")),
                              ("targets", t, ("boxes", "labels"))):
            missing = [k for k in keys if k not in d]
            if missing:
                raise ValueError(f"{name}[{i}] lacks {missing}; it must have keys {list(keys)}")
            _check_boxes(d["boxes"], f"{name}[{i}]['boxes']")
            if d["labels"].shape != d["boxes"].shape[:1] or d["labels"].is_floating_point():
                raise ValueError(f"{name}[{i}]['labels'] must be integers, one per box")
        _check_scores(p["scores"], p["boxes"].shape[0], f"preds[{i}]['scores']")


def match_image(
    boxes: Tensor, scores: Tensor, gt_boxes: Tensor, iou_threshold: float = 0.5,
    max_detections: int = MAX_DETECTIONS,
) -> tuple[Tensor, Tensor]:
    """Match one image's detections of one class to its ground truth, COCO's way.

    Detections are visited from the highest score down (ties: lower index first, at most
    ``max_detections``); each takes the still unmatched ground-truth box of highest IoU, if that
    IoU is at least ``iou_threshold`` (among equal IoUs, the later box). A detection that finds
    none, or comes second to a box already taken, is a false positive (Everingham et al. 2010;
    Lin et al. 2014). Returns the visited scores and a bool per detection: true positive?
    """
    order = torch.sort(scores, descending=True, stable=True).indices[:max_detections]
    iou = box_iou(boxes[order], gt_boxes).tolist()  # float64 (n, k), as lists for the loop
    taken = [False] * len(gt_boxes)
    is_tp = torch.zeros(len(order), dtype=torch.bool)
    for d, row in enumerate(iou):
        best, match = min(iou_threshold, 1 - 1e-10), -1
        for g, value in enumerate(row):
            if not taken[g] and value >= best:
                best, match = value, g
        if match >= 0:
            taken[match] = True
            is_tp[d] = True
    return scores[order].double(), is_tp


def _class_detections(
    preds: Sequence[dict], targets: Sequence[dict], label: int, iou_threshold: float,
    max_detections: int,
) -> tuple[Tensor, Tensor, int]:
    """All images' detections of ``label``, ranked by score: (scores, is_tp, ground-truth count)."""
    scores = [torch.zeros(0, dtype=torch.float64)]  # no images: an empty ranking
    hits, n_gt = [torch.zeros(0, dtype=torch.bool)], 0
    for p, t in zip(preds, targets):
        mine, gt = p["labels"] == label, t["labels"] == label
        n_gt += int(gt.sum())
        s, tp = match_image(p["boxes"][mine], p["scores"][mine], t["boxes"][gt],
                            iou_threshold, max_detections)
        scores.append(s)
        hits.append(tp)
    scores, hits = torch.cat(scores), torch.cat(hits)
    order = torch.sort(scores, descending=True, stable=True).indices  # ties: earlier image first
    return scores[order], hits[order], n_gt


def precision_recall_curve(
    preds: Sequence[dict], targets: Sequence[dict], label: int, iou_threshold: float = 0.5,
    max_detections: int = MAX_DETECTIONS,
) -> dict[str, Tensor]:
    """The precision-recall curve of one class over a set of images, for plotting and for AP.

    Walking down the ranked detections, after the n-th: recall = TP / (ground-truth boxes),
    precision = TP / n. ``envelope`` is the precision made non-increasing from the right
    (the best precision at this recall or higher), the curve that AP integrates. Returns
    ``scores``, ``recall``, ``precision``, ``envelope`` (float64, one entry per detection) and
    ``n_gt``, the number of ground-truth boxes of the class.
    """
    _check_inputs(preds, targets)
    return _curve(preds, targets, label, iou_threshold, max_detections)


def _curve(preds: Sequence[dict], targets: Sequence[dict], label: int, iou_threshold: float,
           max_detections: int) -> dict[str, Tensor]:
    """:func:`precision_recall_curve` of inputs already checked."""
    scores, hits, n_gt = _class_detections(preds, targets, label, iou_threshold, max_detections)
    tp = torch.cumsum(hits.double(), 0)
    fp = torch.cumsum((~hits).double(), 0)
    recall = tp / n_gt if n_gt else torch.zeros_like(tp)
    precision = tp / (tp + fp + _EPS)
    envelope = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
    return {"scores": scores, "recall": recall, "precision": precision, "envelope": envelope,
            "n_gt": torch.tensor(n_gt)}


def interpolated_ap(recall: Tensor, envelope: Tensor, levels: Tensor = RECALL_LEVELS) -> Tensor:
    """COCO's 101-point AP: the mean over recall levels r of the envelope at the first recall >= r.

    A level beyond the highest recall reached scores 0 (Lin et al. 2014; PASCAL VOC 2007 used 11
    levels, Everingham et al. 2010).
    """
    at = torch.searchsorted(recall, levels, side="left")
    reached = at < len(recall)
    precision = torch.zeros_like(levels)
    precision[reached] = envelope[at[reached]]
    return precision.mean()


def average_precision(
    preds: Sequence[dict], targets: Sequence[dict], label: int, iou_threshold: float = 0.5,
    max_detections: int = MAX_DETECTIONS,
) -> float:
    """AP of one class at one IoU threshold, COCO's way; -1.0 if the class has no ground truth.

    A class with ground truth and no detections scores 0; a class with detections and no ground
    truth has no recall to speak of and is marked -1 (torchmetrics' convention: left out of mAP).
    """
    _check_inputs(preds, targets)
    return _average_precision(_curve(preds, targets, label, iou_threshold, max_detections))


def _average_precision(curve: dict[str, Tensor]) -> float:
    if int(curve["n_gt"]) == 0:
        return -1.0
    return float(interpolated_ap(curve["recall"], curve["envelope"]))


def average_precision_per_class(
    preds: Sequence[dict], targets: Sequence[dict], iou_threshold: float = 0.5,
    max_detections: int = MAX_DETECTIONS,
) -> dict[int, float]:
    """AP of every class seen in ``preds`` or ``targets`` (-1.0: a class without ground truth)."""
    _check_inputs(preds, targets)
    labels = torch.cat([d["labels"].long() for d in (*preds, *targets)]
                       or [torch.zeros(0, dtype=torch.long)])
    return {int(c): _average_precision(_curve(preds, targets, int(c), iou_threshold,
                                              max_detections))
            for c in torch.unique(labels)}


def mean_average_precision(
    preds: Sequence[dict], targets: Sequence[dict], iou_threshold: float = 0.5,
    max_detections: int = MAX_DETECTIONS,
) -> float:
    """mAP at one IoU threshold: the mean AP over the classes that have ground truth.

    With ``iou_threshold=0.5`` this is COCO's AP50 (``map_50`` of torchmetrics'
    ``MeanAveragePrecision``, Lin et al. 2014), close in spirit to PASCAL VOC's mAP (Everingham
    et al. 2010), which reads precision at 11 recall levels instead of 101. Images without
    predictions count their ground truth as missed; classes without ground truth are left out;
    with no ground truth at all the result is -1.0, as torchmetrics returns.
    """
    per_class = [ap for ap in average_precision_per_class(preds, targets, iou_threshold,
                                                          max_detections).values() if ap > -1]
    return sum(per_class) / len(per_class) if per_class else -1.0
