"""companion.detection against the libraries that compute the same thing.

==============================================  ==============================================
companion function                              reference
==============================================  ==============================================
detection.nms                                   torchvision.ops.nms (same indices, same order)
detection.batched_nms                           torchvision.ops.batched_nms, and torchvision's
                                                nms run class by class
detection.mean_average_precision                torchmetrics MeanAveragePrecision map_50
                                                (COCO evaluation; needs its pycocotools or
                                                faster-coco-eval backend, else skipped)
detection.average_precision /                   hand-derived COCO values (101 recall levels)
precision_recall_curve
detection.mask_iou (= metrics.mask_iou)         torchmetrics binary_jaccard_index, and
                                                per image equal to the pooled IoU of each image
detection.dice (= metrics.dice)                 torchmetrics binary_f1_score (global and
                                                samplewise)
==============================================  ==============================================

Regimes drawn (derandomized hypothesis): no boxes, one box, identical and zero-area boxes,
tied scores, normalised (0..1) and pixel coordinates, float32 and float64, thresholds 0 and 1,
many classes, classes with predictions but no ground truth, images without predictions or
without ground truth, more than 100 detections of a class in one image; empty masks.
"""

from __future__ import annotations

import pytest
import torch
import torchvision.ops as tv
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import binary_f1_score, binary_jaccard_index

from companion import metrics
from companion.detection import (RECALL_LEVELS, average_precision, average_precision_per_class,
                                 batched_nms, dice, interpolated_ap, mask_iou, match_image,
                                 mean_average_precision, nms, precision_recall_curve)


def cases(n: int) -> settings:
    """Deterministic hypothesis settings with ``n`` examples."""
    return settings(max_examples=n, deadline=None, derandomize=True)


DTYPES = st.sampled_from([torch.float32, torch.float64])
THRESHOLDS = st.one_of(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]), st.floats(0.0, 1.0))


# --------------------------------------------------------------------------------------------
# Boxes and scores
# --------------------------------------------------------------------------------------------
def coordinates(dtype: torch.dtype, scale: float, grid: bool) -> st.SearchStrategy:
    """Floats in [0, scale]: on a coarse grid (``grid``: exact under shifts) or any of ``dtype``."""
    if grid:
        return st.integers(0, 64).map(lambda k: k * scale / 64)
    return st.floats(0.0, scale, width=32 if dtype == torch.float32 else 64)


@st.composite
def boxes_and_scores(draw, grid: bool = False, max_boxes: int = 25):
    """(boxes (N, 4), scores (N,)) with copies, near-copies, zero-area boxes and tied scores."""
    dtype = draw(DTYPES)
    scale = draw(st.sampled_from([1.0, 64.0]))  # normalised and pixel coordinates
    coord = coordinates(dtype, scale, grid)
    rows = []
    for _ in range(draw(st.integers(0, max_boxes))):
        if rows and draw(st.integers(0, 3)) == 0:  # a copy of an earlier box
            rows.append(list(draw(st.sampled_from(rows))))
            continue
        x1, x2 = sorted((draw(coord), draw(coord)))
        y1, y2 = sorted((draw(coord), draw(coord)))
        if draw(st.integers(0, 5)) == 0:  # zero width or height
            x2 = x1
        rows.append([x1, y1, x2, y2])
    boxes = torch.tensor(rows, dtype=dtype).reshape(-1, 4)
    if draw(st.booleans()):  # few distinct values: many ties
        scores = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=len(rows),
                               max_size=len(rows)))
    else:
        scores = draw(st.lists(st.floats(0.0, 1.0, width=32), min_size=len(rows),
                               max_size=len(rows)))
    return boxes, torch.tensor(scores, dtype=dtype)


@cases(200)
@given(data=boxes_and_scores(), threshold=THRESHOLDS)
def test_nms_equals_torchvision(data, threshold):
    boxes, scores = data
    kept = nms(boxes, scores, threshold)
    assert kept.dtype == torch.int64
    assert torch.equal(kept, tv.nms(boxes, scores, threshold))


@cases(120)
@given(data=boxes_and_scores(grid=True), threshold=THRESHOLDS,
       classes=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_batched_nms_equals_torchvision(data, threshold, classes, seed):
    # coordinates on a grid: torchvision's class offsets (class * (max + 1)) add exactly
    boxes, scores = data
    idxs = torch.randint(0, classes, (len(boxes),), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(batched_nms(boxes, scores, idxs, threshold),
                       tv.batched_nms(boxes, scores, idxs, threshold))


def per_class_torchvision(boxes, scores, idxs, threshold):
    """The definition: torchvision's nms within each class, all kept ranked by score."""
    kept = [torch.where(idxs == c)[0][tv.nms(boxes[idxs == c], scores[idxs == c], threshold)]
            for c in torch.unique(idxs)]
    kept = torch.sort(torch.cat(kept or [torch.zeros(0, dtype=torch.int64)])).values
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


@cases(120)
@given(data=boxes_and_scores(), threshold=THRESHOLDS, classes=st.integers(1, 20),
       seed=st.integers(0, 2**16), shift=st.sampled_from([0.0, -100.0]))
def test_batched_nms_is_nms_within_each_class(data, threshold, classes, seed, shift):
    # any floats, also negative coordinates, where torchvision's offset trick does not apply
    boxes, scores = data
    boxes = boxes + shift
    idxs = torch.randint(0, classes, (len(boxes),), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(batched_nms(boxes, scores, idxs, threshold),
                       per_class_torchvision(boxes, scores, idxs, threshold))


def test_batched_nms_equals_torchvision_on_its_per_class_path():
    # above 1,000 boxes torchvision runs nms class by class (_batched_nms_vanilla)
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(1200, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + torch.rand(1200, 2, generator=g) * 20], 1)
    scores, idxs = torch.rand(1200, generator=g), torch.randint(0, 5, (1200,), generator=g)
    ours = batched_nms(boxes, scores, idxs, 0.5)
    assert 100 < len(ours) < 1200
    assert torch.equal(ours, tv.batched_nms(boxes, scores, idxs, 0.5))


def test_nms_hand_case_ties_and_empty():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.95, 0.9, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]  # box 1 (IoU 0.68) suppresses 0 and 2
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 3]  # equal scores: lower index first
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0, 0]), 0.5).tolist() == [1, 0, 3]
    empty = torch.zeros((0, 4))
    assert nms(empty, torch.zeros(0), 0.5).shape == (0,)
    assert batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).shape == (0,)


@pytest.mark.parametrize("dtype, kept", [(torch.float32, [1]), (torch.float64, [1, 0])])
def test_nms_compares_the_iou_with_the_threshold_in_float64(dtype, kept):
    # IoU = 3 / 10: in float32 that is 0.30000001 > 0.3, in float64 exactly 0.3 (not > 0.3)
    boxes = torch.tensor([[0.0, 0, 3, 1], [0, 0, 10, 1]], dtype=dtype)
    scores = torch.tensor([0.5, 0.9], dtype=dtype)
    assert nms(boxes, scores, 0.3).tolist() == kept == tv.nms(boxes, scores, 0.3).tolist()


@pytest.mark.parametrize("call, match", [
    (lambda: nms(torch.zeros(3, 5), torch.zeros(3), 0.5), r"\(N, 4\)"),
    (lambda: nms(torch.zeros(3, 4), torch.zeros(2), 0.5), r"scores must be a float tensor \(3,\)"),
    (lambda: nms(torch.tensor([[2.0, 0, 1, 1]]), torch.zeros(1), 0.5), "x2 < x1"),
    (lambda: nms(torch.zeros(1, 4), torch.tensor([float("nan")]), 0.5), "NaN"),
    (lambda: nms(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1), 0.5), "float32"),
    (lambda: batched_nms(torch.zeros(2, 4), torch.zeros(2), torch.zeros(2), 0.5), "idxs"),
])
def test_nms_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------------------------
# Average precision: hand-derived COCO values
# --------------------------------------------------------------------------------------------
def image(pred_boxes, scores, pred_labels, gt_boxes, gt_labels):
    f = lambda b: torch.tensor(b, dtype=torch.float32).reshape(-1, 4)  # noqa: E731
    return ({"boxes": f(pred_boxes), "scores": torch.tensor(scores, dtype=torch.float32),
             "labels": torch.tensor(pred_labels, dtype=torch.int64)},
            {"boxes": f(gt_boxes), "labels": torch.tensor(gt_labels, dtype=torch.int64)})


BOX, FAR = [0.0, 0, 10, 10], [50.0, 50, 60, 60]
LEVELS = 101  # recall levels 0, 0.01, ..., 1


@pytest.mark.parametrize("pred, expected", [
    # one ground-truth box of class 0 in the image
    (([BOX], [0.9], [0]), 1.0),  # found: precision 1 at every recall level
    (([], [], []), 0.0),  # no predictions: recall never leaves 0
    (([BOX, BOX], [0.9, 0.8], [0, 0]), 1.0),  # a duplicate ranked below the hit costs nothing
    (([FAR, BOX], [0.9, 0.8], [0, 0]), 0.5),  # a false positive ranked above: precision 1/2
    (([BOX], [0.9], [1]), 0.0),  # right place, wrong class
    (([[0.0, 0, 10, 5]], [0.9], [0]), 1.0),  # IoU exactly 0.5 counts (>=)
    (([[0.0, 0, 10, 4.99]], [0.9], [0]), 0.0),  # IoU just below 0.5 does not
])
def test_average_precision_hand_cases(pred, expected):
    preds, targets = image(*pred, [BOX], [0])
    assert average_precision([preds], [targets], 0) == pytest.approx(expected, abs=1e-12)


def test_average_precision_half_the_objects_found():
    # two ground-truth boxes, one found with the top score: precision 1 up to recall 0.5, so
    # the 51 levels 0, 0.01, ..., 0.50 read 1 and the other 50 read 0
    preds, targets = image([BOX], [0.9], [0], [BOX, FAR], [0, 0])
    assert average_precision([preds], [targets], 0) == pytest.approx(51 / LEVELS, abs=1e-12)


def test_mean_over_classes_with_ground_truth_only():
    # class 0 found (AP 1), class 1 missed (AP 0), class 2 predicted but absent (left out)
    preds, targets = image([BOX, FAR], [0.9, 0.8], [0, 2], [BOX, FAR], [0, 1])
    per_class = average_precision_per_class([preds], [targets])
    assert per_class == {0: pytest.approx(1.0), 1: 0.0, 2: -1.0}
    assert mean_average_precision([preds], [targets]) == pytest.approx(0.5)
    no_truth = image([BOX], [0.9], [0], [], [])
    assert mean_average_precision([no_truth[0]], [no_truth[1]]) == -1.0
    assert mean_average_precision([], []) == -1.0


def test_ranking_across_images_and_the_curve():
    # image 1's false positive outranks image 2's hit; ties rank the earlier image first
    a = image([BOX], [0.9], [0], [BOX], [0])
    b = image([FAR, BOX], [0.95, 0.9], [0, 0], [BOX], [0])
    curve = precision_recall_curve([a[0], b[0]], [a[1], b[1]], 0)
    assert curve["recall"].tolist() == [0.0, 0.5, 1.0]
    as_f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    torch.testing.assert_close(curve["precision"], as_f64([0.0, 1 / 2, 2 / 3]))
    torch.testing.assert_close(curve["envelope"], as_f64([2 / 3] * 3))
    assert curve["scores"].tolist() == pytest.approx([0.95, 0.9, 0.9])
    assert int(curve["n_gt"]) == 2
    expected = float(interpolated_ap(curve["recall"], curve["envelope"]))
    assert expected == pytest.approx(2 / 3)
    assert mean_average_precision([a[0], b[0]], [a[1], b[1]]) == pytest.approx(2 / 3)


def test_matching_one_free_box_per_detection_at_iou_at_least_the_threshold():
    gt = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 20, 10]])
    dets = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    scores, hits = match_image(dets, torch.tensor([0.4, 0.9, 0.8, 0.7]), gt)
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.4])
    assert hits.tolist() == [True, True, True, False]  # third takes the IoU-0.5 box
    assert match_image(dets, torch.ones(4), gt, max_detections=2)[1].tolist() == [True, True]


def test_more_than_100_detections_are_cut_per_image_and_class():
    # 150 misses ranked above the one hit: COCO keeps the top 100, so the hit is never seen
    misses = [[50.0 + i, 50, 60 + i, 60] for i in range(150)]
    preds, targets = image(misses + [BOX], [0.9] * 150 + [0.1], [0] * 151, [BOX], [0])
    assert average_precision([preds], [targets], 0) == 0.0
    assert average_precision([preds], [targets], 0, max_detections=200) == pytest.approx(1 / 151)


def test_recall_levels_are_torchmetrics_float32_linspace():
    assert len(RECALL_LEVELS) == LEVELS and RECALL_LEVELS.dtype == torch.float64
    as_passed = torch.tensor(torch.linspace(0, 1, 101).tolist(), dtype=torch.float64)
    assert torch.equal(RECALL_LEVELS, as_passed)


@pytest.mark.parametrize("preds, targets, match", [
    ([{}], [], "one dict per image"),
    ([{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1, dtype=torch.long)}],
     [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}], "lacks"),
    ([{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1), "scores": torch.ones(1)}],
     [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}], "integers"),
])
def test_map_bad_input_raises_clear_errors(preds, targets, match):
    with pytest.raises(ValueError, match=match):
        mean_average_precision(preds, targets)


# --------------------------------------------------------------------------------------------
# mAP against torchmetrics (COCO's own evaluation behind it)
# --------------------------------------------------------------------------------------------
def torchmetrics_map50(preds, targets) -> float:
    """torchmetrics' map_50 with whichever COCO backend is installed; skips without one."""
    from torchmetrics.detection import mean_ap

    if mean_ap._PYCOCOTOOLS_AVAILABLE:
        backend = "pycocotools"
    elif mean_ap._FASTER_COCO_EVAL_AVAILABLE:
        backend = "faster_coco_eval"
    else:
        pytest.skip("torchmetrics' MeanAveragePrecision needs pycocotools or faster-coco-eval")
    metric = mean_ap.MeanAveragePrecision(iou_type="bbox", iou_thresholds=[0.5], backend=backend)
    metric.warn_on_many_detections = False  # more than 100 per image is a case under test
    metric.update(preds, targets)
    return float(metric.compute()["map_50"])


@st.composite
def detection_sets(draw):
    """Images of ground truth and predictions: hits, near misses, duplicates, other classes."""
    dtype = draw(DTYPES)
    scale = draw(st.sampled_from([1.0, 64.0]))
    classes = draw(st.sampled_from([1, 2, 3, 12]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    grid = lambda n: torch.randint(0, 9, (n, 2), generator=g).to(dtype) * scale / 8  # noqa: E731

    def boxes(n):
        xy = grid(n)
        wh = torch.randint(0, 5, (n, 2), generator=g).to(dtype) * scale / 8
        return torch.cat([xy, xy + wh], 1)

    preds, targets = [], []
    for _ in range(draw(st.integers(0, 5))):
        k, n = draw(st.integers(0, 5)), draw(st.integers(0, 8))
        gt, pb = boxes(k), boxes(n)
        if k and n:  # most predictions near a ground-truth box (some exact, some shifted)
            near = torch.rand(n, generator=g) < 0.7
            src = gt[torch.randint(0, k, (n,), generator=g)]
            shift = torch.randint(-1, 2, (n, 4), generator=g).to(dtype) * scale / 16
            pb[near] = (src + shift)[near]
            pb[:, 2:] = torch.maximum(pb[:, 2:], pb[:, :2])
        if draw(st.booleans()):
            scores = torch.randint(0, 4, (n,), generator=g).to(dtype) / 4  # ties
        else:
            scores = torch.rand(n, generator=g, dtype=dtype)
        targets.append({"boxes": gt, "labels": torch.randint(0, classes, (k,), generator=g)})
        preds.append({"boxes": pb, "scores": scores,
                      "labels": torch.randint(0, classes, (n,), generator=g)})
    return preds, targets


@cases(120)
@given(data=detection_sets())
def test_map50_equals_torchmetrics(data):
    preds, targets = data
    ours = mean_average_precision(preds, targets)
    assert ours == pytest.approx(torchmetrics_map50(preds, targets), abs=1e-6)


def test_map50_equals_torchmetrics_on_scenes_with_noisy_predictions():
    from companion.scenes import DigitScenes

    g = torch.Generator().manual_seed(0)
    preds, targets = [], []
    for _, target in DigitScenes("val", n=60):
        k = len(target["boxes"])
        boxes = torch.cat([target["boxes"] + torch.randn(k, 4, generator=g) * 2,
                           torch.rand(3, 4, generator=g).sort(1).values[:, [0, 1, 2, 3]] * 64])
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2])
        labels = torch.cat([target["labels"], torch.randint(0, 10, (3,), generator=g)])
        preds.append({"boxes": boxes, "scores": torch.rand(k + 3, generator=g), "labels": labels})
        targets.append({"boxes": target["boxes"], "labels": target["labels"]})
    ours = mean_average_precision(preds, targets)
    assert 0.1 < ours < 0.99
    assert ours == pytest.approx(torchmetrics_map50(preds, targets), abs=1e-6)


def test_map50_equals_torchmetrics_over_100_detections_per_class():
    g = torch.Generator().manual_seed(1)
    preds, targets = [], []
    for _ in range(3):
        k, n = 20, 180
        xy = torch.rand(k, 2, generator=g)
        gt = torch.cat([xy, xy + torch.rand(k, 2, generator=g) * 0.3], 1)
        xy = torch.rand(n, 2, generator=g)
        pb = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 0.3], 1)
        targets.append({"boxes": gt, "labels": torch.randint(0, 2, (k,), generator=g)})
        preds.append({"boxes": pb, "scores": torch.rand(n, generator=g),
                      "labels": torch.randint(0, 2, (n,), generator=g)})
    assert mean_average_precision(preds, targets) == pytest.approx(
        torchmetrics_map50(preds, targets), abs=1e-6)


# --------------------------------------------------------------------------------------------
# Segmentation: mask IoU and Dice
# --------------------------------------------------------------------------------------------
@st.composite
def mask_pairs(draw):
    n, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    p_on, t_on = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])), draw(st.sampled_from([0.0, 0.3, 1.0]))
    pred, target = torch.rand(n, h, w, generator=g) < p_on, torch.rand(n, h, w, generator=g) < t_on
    if draw(st.booleans()):
        pred[0] = target[0] = False  # an image with nothing to find and nothing found
    return pred, target


@cases(120)
@given(pair=mask_pairs(), empty=st.sampled_from([0.0, 1.0]))
def test_mask_iou_and_dice_equal_torchmetrics(pair, empty):
    pred, target = pair
    p, t = pred.long(), target.long()
    iou = mask_iou(pred, target, empty=empty)
    ref_iou = binary_jaccard_index(p, t, zero_division=empty).double()
    torch.testing.assert_close(iou, ref_iou, rtol=1e-6, atol=1e-6)
    ref_dice = binary_f1_score(p, t, zero_division=empty).double()
    torch.testing.assert_close(dice(pred, target, empty=empty), ref_dice, rtol=1e-6, atol=1e-6)
    per_image = binary_f1_score(p, t, multidim_average="samplewise",
                                zero_division=empty).double().reshape(-1)  # (N,), also N = 1
    torch.testing.assert_close(dice(pred, target, per_image=True, empty=empty), per_image,
                               rtol=1e-6, atol=1e-6)
    ious = mask_iou(pred, target, per_image=True, empty=empty)
    for i in range(len(pred)):
        assert float(ious[i]) == pytest.approx(
            float(binary_jaccard_index(p[i], t[i], zero_division=empty)), abs=1e-6)
        assert float(ious[i]) == float(metrics.mask_iou(pred[i], target[i], empty=empty))
    d = dice(pred, target, per_image=True, empty=empty)
    torch.testing.assert_close(d, 2 * ious / (1 + ious))  # Dice = 2 IoU / (1 + IoU)


def test_mask_scores_hand_case_and_errors():
    pred = torch.tensor([[True, True, False, False]])
    target = torch.tensor([[True, False, True, False]])
    assert float(mask_iou(pred, target)) == pytest.approx(1 / 3)
    assert float(dice(pred, target)) == pytest.approx(1 / 2)
    nothing = torch.zeros(2, 3, dtype=torch.bool)
    assert mask_iou(nothing, nothing, per_image=True).tolist() == [1.0, 1.0]
    assert dice(nothing, nothing, empty=0.0).item() == 0.0
    with pytest.raises(ValueError, match="one shape"):
        mask_iou(pred, target[:, :3])
    with pytest.raises(ValueError, match="per_image"):
        dice(pred[0], target[0], per_image=True)
