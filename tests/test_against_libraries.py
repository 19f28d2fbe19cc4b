"""Companion functions against the well-kept libraries that compute the same thing.

Hypothesis draws the inputs across the regimes where a home-made metric or operator
usually goes wrong, and every drawn case is compared with the library's answer. The
settings are derandomized (the same examples on every run and machine), so a failure
in CI reproduces locally.

==================================  ============================================  ====
companion function                  reference                                     in
==================================  ============================================  ====
metrics.accuracy                    torchmetrics multiclass_accuracy(micro)       A
metrics.confusion_matrix            sklearn.metrics.confusion_matrix(labels=)     A
metrics.precision_recall_f1         sklearn precision_recall_fscore_support(      A
                                    zero_division=0)
metrics.box_area                    torchvision.ops.box_area                      A
metrics.box_iou                     torchvision.ops.box_iou                       A
metrics.mask_iou                    sklearn.metrics.jaccard_score(zero_division)  A
                                    torchmetrics binary_jaccard_index             B
metrics.calibration_bins            pandas.cut(right=True, include_lowest=True)   A
                                    + groupby; sklearn calibration_curve
metrics.expected_calibration_error  torchmetrics multiclass_calibration_error     A
                                    (l1), and the ECE of the pandas bins
ops.conv2d                          torch.nn.functional.conv2d, values + grads    C, A
ops.max_pool2d, ops.avg_pool2d      F.max_pool2d / F.avg_pool2d, values + grads   C, A
ops.conv_output_size                the output size of a torch.nn.Conv2d          C
augment.affine_batch                torchvision.transforms.v2.functional.affine   A, D
gan.discriminator_loss,             sklearn.metrics.log_loss on scipy expit       A
gan.generator_loss,
gan.saturating_generator_loss
gan.classifier_score                exp(mean scipy.stats.entropy(p(y|x), p(y)))   A
gan.frechet_distance                pytorch-fid's formula with scipy sqrtm        A
export.preprocess                   torchvision.transforms.v2.functional          A
                                    .normalize
models.resnet18/34/50               torchvision.models.resnet*: weights, outputs  E
models.alexnet, vgg11, googlenet    torchvision.models: parameters, outputs       F
ops.batch_norm, ops.BatchNorm2d     F.batch_norm / nn.BatchNorm2d: values, grads, G
                                    running statistics, state_dict
ops.layer_norm, ops.group_norm      F.layer_norm / F.group_norm, values + grads   G
ops.dropout                         nn.Dropout with the same seed (bit-identical) G
detection.nms, batched_nms          torchvision.ops.nms / batched_nms             H
detection.mean_average_precision    torchmetrics MeanAveragePrecision (map_50,    H
                                    pycocotools backend)
metrics.mask_iou(per_image=), dice  torchmetrics binary_jaccard_index / f1_score  H
interpret.saliency, occlusion,      captum Saliency, Occlusion, LayerGradCam +    I
interpret.grad_cam                  LayerAttribution.interpolate
interpret.fgsm, pgd                 captum FGSM / PGD                             I
interpret.spearman                  scipy.stats.spearmanr                         I
==================================  ============================================  ====

A: this module; B: tests/test_metrics_extra.py; C: tests/test_ops.py (hypothesis, both
dtypes, values and gradients; this module adds tied and non-contiguous inputs);
D: tests/test_augment.py (fixed cases); E: tests/test_resnet.py;
F: tests/test_models_classic.py; G: tests/test_norm_ops.py; H: tests/test_detection.py;
I: tests/test_interpret.py (hypothesis over random small CNNs, both dtypes).

Regimes drawn: normalised (0..1) and pixel boxes, zero-area boxes, no boxes on one side;
near-chance, perfect, always-wrong and constant classifiers, classes never predicted and
classes absent from the targets, single samples; confidences exactly on a bin edge,
one-hot and uniform probability rows; float32 and float64. A float32 input is widened
exactly to float64 before the reference runs wherever the companion function computes
in float64 (box_iou, the metrics); elsewhere the tolerance follows the dtype.

Two documented conventions differ from a library, and the tests compare around them:
an empty union scores 0 in ``box_iou`` (torchvision: 0/0 = nan) and a calibration bin is
``(lo, hi]`` (torchmetrics: ``[lo, hi)`` with 1.0 in a bin of its own), so the
torchmetrics ECE is compared when no confidence lies on an edge, and the ECE of the
pandas bins is compared always. Where sklearn silently drops a label outside
``labels=``, ``confusion_matrix`` raises a ValueError (it would otherwise count the
label in a wrong cell). Bin edges are checked exhaustively for n_bins = 1..50.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import sqrtm
from scipy.special import expit
from scipy.stats import entropy
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    confusion_matrix as sk_confusion_matrix,
    jaccard_score,
    log_loss,
    precision_recall_fscore_support,
)
from test_ops import TOL, grads, pool_cases
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
)
from torchvision.ops import box_area as tv_box_area
from torchvision.ops import box_iou as tv_box_iou
from torchvision.transforms.v2 import functional as TF

from companion import gan, ops
from companion.augment import affine_batch
from companion.export import preprocess
from companion.metrics import (
    accuracy,
    box_area,
    box_iou,
    calibration_bins,
    confusion_matrix,
    expected_calibration_error,
    mask_iou,
    precision_recall_f1,
)


def cases(n: int) -> settings:
    """Deterministic hypothesis settings with ``n`` examples."""
    return settings(max_examples=n, deadline=None, derandomize=True)


DTYPES = st.sampled_from([torch.float32, torch.float64])


def exact_floats(dtype: torch.dtype, lo: float, hi: float) -> st.SearchStrategy:
    """Floats in [lo, hi] that ``dtype`` represents exactly."""
    return st.floats(lo, hi, width=32 if dtype == torch.float32 else 64)


# --------------------------------------------------------------------------------------
# Classification: logits and targets across the regimes
# --------------------------------------------------------------------------------------
TARGET_REGIMES = ("chance", "perfect", "always_wrong", "classes_absent")


@st.composite
def classified(draw):
    """``(logits (N, K), targets (N,), K)``: ties, constant classifiers, all regimes."""
    k = draw(st.integers(2, 6))
    n = draw(st.integers(1, 40))  # single samples included
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):  # small integers: many ties; argmax takes the first
        logits = torch.randint(-2, 3, (n, k), generator=g).double()
    else:
        logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 10
    if draw(st.booleans()):  # a constant classifier: all other classes never predicted
        logits[:, draw(st.integers(0, k - 1))] += 100
    predicted = logits.argmax(1)
    regime = draw(st.sampled_from(TARGET_REGIMES))
    if regime == "perfect":
        targets = predicted.clone()
    elif regime == "always_wrong":
        targets = (predicted + torch.randint(1, k, (n,), generator=g)) % k
    elif regime == "classes_absent":  # the targets use only some of the classes
        present = torch.randperm(k, generator=g)[:draw(st.integers(1, k - 1))]
        targets = present[torch.randint(0, len(present), (n,), generator=g)]
    else:
        targets = torch.randint(0, k, (n,), generator=g)
    return logits, targets, k


@cases(40)
@given(data=classified(), dtype=DTYPES)
def test_accuracy_matches_torchmetrics(data, dtype):
    logits, targets, k = data
    logits = logits.to(dtype)
    ref = multiclass_accuracy(logits, targets, num_classes=k, average="micro")
    assert float(accuracy(logits, targets)) == pytest.approx(float(ref), abs=1e-6)


@cases(60)
@given(data=classified())
def test_confusion_matrix_matches_sklearn(data):
    logits, targets, k = data
    predicted = logits.argmax(1)
    ours = confusion_matrix(predicted, targets, k)
    ref = sk_confusion_matrix(targets.numpy(), predicted.numpy(), labels=list(range(k)))
    assert ours.tolist() == ref.tolist()


@cases(30)
@given(data=classified(), bad=st.sampled_from([-1, 1]), which=st.booleans())
def test_confusion_matrix_rejects_labels_sklearn_would_drop(data, bad, which):
    """sklearn drops labels outside ``labels=``; counting them would corrupt a cell."""
    logits, targets, k = data
    predicted = logits.argmax(1)
    spoilt = (predicted if which else targets).clone()
    spoilt[0] = -1 if bad < 0 else k
    pair = (spoilt, targets) if which else (predicted, spoilt)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(*pair, k)


@cases(80)
@given(data=classified())
def test_precision_recall_f1_match_sklearn(data):
    logits, targets, k = data
    predicted = logits.argmax(1)
    scores = precision_recall_f1(confusion_matrix(predicted, targets, k))
    ref = precision_recall_fscore_support(targets.numpy(), predicted.numpy(),
                                          labels=list(range(k)), zero_division=0)
    for name, theirs in zip(("precision", "recall", "f1", "support"), ref):
        np.testing.assert_allclose(scores[name].numpy(), theirs, rtol=1e-12, atol=1e-12,
                                   err_msg=name)


def test_f1_of_a_near_chance_classifier_matches_sklearn():
    """The fixed case from the bug report: precision + recall < 1 for most classes."""
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 10, (1000,), generator=g)
    predicted = torch.randint(0, 10, (1000,), generator=g)
    f1 = precision_recall_f1(confusion_matrix(predicted, targets, 10))["f1"]
    ref = precision_recall_fscore_support(targets.numpy(), predicted.numpy(),
                                          labels=list(range(10)), zero_division=0)[2]
    np.testing.assert_allclose(f1.numpy(), ref, rtol=1e-12)
    assert 0.05 < float(f1.mean()) < 0.15  # chance level for 10 classes is 0.1


# --------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------
@st.composite
def box_sets(draw, dtype: torch.dtype, scale: float, max_boxes: int = 4,
             min_boxes: int = 0):
    """(N, 4) boxes ``(x1, y1, x2, y2)`` in [0, scale], some of zero width or height."""
    coord = exact_floats(dtype, 0.0, scale)
    if scale > 1 and draw(st.booleans()):
        coord = st.integers(0, int(scale)).map(float)  # whole pixels
    rows = []
    for _ in range(draw(st.integers(min_boxes, max_boxes))):
        x1, x2 = sorted((draw(coord), draw(coord)))
        y1, y2 = sorted((draw(coord), draw(coord)))
        if draw(st.integers(0, 4)) == 0:  # a degenerate (zero-area) box
            x2 = x1 if draw(st.booleans()) else x2
            y2 = y1 if x2 != x1 else y2
        rows.append([x1, y1, x2, y2])
    return torch.tensor(rows, dtype=dtype).reshape(-1, 4)


@st.composite
def box_pairs(draw):
    dtype = draw(DTYPES)
    scale = draw(st.sampled_from([1.0, 640.0]))  # normalised and pixel coordinates
    a = draw(box_sets(dtype, scale))
    b = draw(box_sets(dtype, scale))
    if len(a) and draw(st.booleans()):  # some boxes of b are copies of boxes of a
        picks = draw(st.lists(st.integers(0, len(a) - 1), min_size=1, max_size=3))
        b = torch.cat([b, a[picks]])
    return a, b


@cases(80)
@given(pair=box_pairs())
def test_box_iou_matches_torchvision(pair):
    a, b = pair
    ours = box_iou(a, b)
    assert ours.shape == (len(a), len(b))
    ref = tv_box_iou(a.double(), b.double())  # box_iou computes in float64
    union = box_area(a.double())[:, None] + box_area(b.double())[None, :]
    empty = union == 0  # two empty boxes: torchvision's 0/0 is nan, ours 0 (documented)
    assert bool((ours[empty] == 0).all())
    torch.testing.assert_close(ours[~empty], ref[~empty], rtol=1e-12, atol=1e-12)
    assert bool(((ours >= 0) & (ours <= 1)).all())


@cases(30)
@given(dtype=DTYPES, scale=st.sampled_from([1.0, 640.0]), data=st.data())
def test_identical_boxes_have_iou_one(dtype, scale, data):
    a = data.draw(box_sets(dtype, scale, min_boxes=1))
    a = a[box_area(a) > 0]
    ones = torch.ones(len(a), dtype=torch.float64)
    torch.testing.assert_close(box_iou(a, a).diag(), ones)


@cases(50)
@given(dtype=DTYPES, scale=st.sampled_from([1.0, 640.0]), data=st.data())
def test_box_area_matches_torchvision(dtype, scale, data):
    boxes = data.draw(box_sets(dtype, scale, max_boxes=6))
    ours, ref = box_area(boxes), tv_box_area(boxes)
    assert ours.dtype == ref.dtype == dtype
    assert torch.equal(ours, ref)


# --------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------
@st.composite
def mask_pairs(draw):
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))

    def mask():  # empty, full or random
        return torch.rand(shape, generator=g) < draw(st.sampled_from([0.0, 0.5, 1.0]))

    pred = mask()
    kind = draw(st.sampled_from(["independent", "identical", "complement"]))
    if kind == "identical":
        target = pred.clone()
    elif kind == "complement":  # disjoint
        target = ~pred
    else:
        target = mask()
    return pred, target


@cases(60)
@given(pair=mask_pairs(), empty=st.sampled_from([0.0, 1.0]))
def test_mask_iou_matches_sklearn_jaccard(pair, empty):
    pred, target = pair
    ref = jaccard_score(target.flatten().numpy(), pred.flatten().numpy(),
                        zero_division=empty)
    assert float(mask_iou(pred, target, empty=empty)) == pytest.approx(ref, abs=1e-12)


# --------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------
@st.composite
def calibration_cases(draw):
    """``(probs (N, K), targets (N,), n_bins)``, some confidences exactly on edges."""
    dtype = draw(DTYPES)
    k, n = draw(st.integers(2, 5)), draw(st.integers(1, 40))
    n_bins = draw(st.integers(1, 20))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    soft = (torch.randn(n, k, generator=g, dtype=torch.float64) * 4).softmax(1)
    one_hot = F.one_hot(torch.randint(0, k, (n,), generator=g), k).double()
    uniform = torch.full((n, k), 1 / k, dtype=torch.float64)  # a tie: class 0 predicted
    # top confidence exactly j / n_bins (as typed), the rest spread evenly
    top = (torch.randint(1, n_bins + 1, (n, 1), generator=g) / n_bins).clamp(min=1 / k)
    edge = ((1 - top) / (k - 1)).expand(n, k).clone()
    edge.scatter_(1, torch.randint(0, k, (n, 1), generator=g), top)
    kinds = draw(st.lists(st.integers(0, 3), min_size=1, max_size=4))  # row kinds used
    pick = torch.tensor(kinds)[torch.randint(0, len(kinds), (n,), generator=g)]
    probs = torch.stack([soft, one_hot, uniform, edge])[pick, torch.arange(n)].to(dtype)
    predicted = probs.argmax(1)
    regime = draw(st.sampled_from(["chance", "perfect", "always_wrong"]))
    if regime == "perfect":
        targets = predicted
    elif regime == "always_wrong":
        targets = (predicted + 1) % k
    else:
        targets = torch.randint(0, k, (n,), generator=g)
    return probs, targets, n_bins


def pandas_bins(confidence: np.ndarray, correct: np.ndarray,
                n_bins: int) -> pd.DataFrame:
    """count, mean confidence, accuracy per ``(k/n, (k+1)/n]`` bin (0 in the first)."""
    edges = np.arange(n_bins + 1) / n_bins  # the edges k / n_bins, correctly rounded
    cut = pd.cut(confidence, bins=edges, right=True, include_lowest=True)
    frame = pd.DataFrame({"bin": cut.codes, "confidence": confidence,
                          "correct": correct})
    grouped = frame.groupby("bin").agg(count=("correct", "size"),
                                       confidence=("confidence", "mean"),
                                       accuracy=("correct", "mean"))
    return grouped.reindex(range(n_bins), fill_value=0)


@cases(40)
@given(case=calibration_cases())
def test_calibration_bins_match_pandas_and_sklearn(case):
    probs, targets, n_bins = case
    bins = calibration_bins(probs, targets, n_bins)
    confidence, predicted = probs.double().max(1)
    correct = (predicted == targets).double().numpy()
    conf = confidence.numpy()
    ref = pandas_bins(conf, correct, n_bins)
    assert bins["count"].tolist() == ref["count"].tolist()
    np.testing.assert_allclose(bins["confidence"].numpy(), ref["confidence"],
                               rtol=1e-12)
    np.testing.assert_allclose(bins["accuracy"].numpy(), ref["accuracy"], rtol=1e-12)
    np.testing.assert_allclose(bins["edges"].numpy(), np.linspace(0, 1, n_bins + 1),
                               rtol=0, atol=1e-15)
    # scikit-learn's reliability curve (non-empty bins only) uses np.linspace edges,
    # which may differ from k / n_bins in the last bit: compare away from the edges
    interior = np.arange(1, n_bins) / n_bins
    if not np.isclose(conf[:, None], interior[None, :], rtol=0, atol=1e-9).any():
        prob_true, prob_pred = calibration_curve(correct, conf, n_bins=n_bins)
        nonempty = bins["count"].numpy() > 0
        np.testing.assert_allclose(bins["accuracy"].numpy()[nonempty], prob_true,
                                   rtol=1e-12)
        np.testing.assert_allclose(bins["confidence"].numpy()[nonempty], prob_pred,
                                   rtol=1e-12)


@cases(40)
@given(case=calibration_cases())
def test_ece_matches_torchmetrics_and_the_pandas_bins(case):
    probs, targets, n_bins = case
    ours = float(expected_calibration_error(probs, targets, n_bins))
    confidence, predicted = probs.double().max(1)
    conf = confidence.numpy()
    ref = pandas_bins(conf, (predicted == targets).double().numpy(), n_bins)
    weight = ref["count"] / len(conf)
    assert ours == pytest.approx(float((weight * (ref["accuracy"] - ref["confidence"])
                                        .abs()).sum()), abs=1e-12)
    # torchmetrics bins [lo, hi) and gives 1.0 a bin of its own: compare off the edges
    edges = np.arange(n_bins + 1) / n_bins
    if not np.isclose(conf[:, None], edges[None, :], rtol=0, atol=1e-6).any():
        tm = multiclass_calibration_error(probs.double(), targets,
                                          num_classes=probs.shape[1], n_bins=n_bins,
                                          norm="l1")
        assert ours == pytest.approx(float(tm), abs=1e-6)  # torchmetrics: float32


@pytest.mark.parametrize("n_bins", range(1, 51))
def test_a_confidence_on_a_bin_edge_goes_to_the_lower_bin_like_pandas(n_bins):
    """``j / n_bins`` as typed lies in ``((j-1)/n_bins, j/n_bins]``: every j and n."""
    j = np.arange((n_bins + 1) // 2, n_bins + 1)  # top class of two: j / n_bins >= 0.5
    j = j[j > 0]
    conf = j / n_bins
    probs = torch.tensor(np.stack([conf, 1 - conf], axis=1), dtype=torch.float64)
    bins = calibration_bins(probs, torch.zeros(len(j), dtype=torch.long), n_bins)
    ref = pandas_bins(conf, np.ones(len(j)), n_bins)
    assert bins["count"].tolist() == ref["count"].tolist()
    assert bins["count"].tolist() == np.bincount(j - 1, minlength=n_bins).tolist()


# --------------------------------------------------------------------------------------
# ops: tied and non-contiguous inputs (tests/test_ops.py covers random configurations)
# --------------------------------------------------------------------------------------
def tied_input(case: dict, dtype: torch.dtype, layout: str) -> torch.Tensor:
    """Small integers (many ties in every window) in a contiguous or strided layout."""
    g = torch.Generator().manual_seed(case["seed"])
    x = torch.randint(-2, 3, case["shape"], generator=g).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":  # a view with swapped strides holding the same values
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    return x.requires_grad_()


@pytest.mark.parametrize("kind", ["max", "avg"])
@cases(20)
@given(case=pool_cases(), dtype=DTYPES,
       layout=st.sampled_from(["contiguous", "channels_last", "transposed"]))
def test_pooling_with_ties_and_strided_inputs_matches_torch(kind, case, dtype, layout):
    x = tied_input(case, dtype, layout)
    args = (case["kernel_size"], case["stride"], case["padding"])
    ours_fn, ref_fn = ((ops.max_pool2d, F.max_pool2d) if kind == "max"
                       else (ops.avg_pool2d, F.avg_pool2d))
    ours, ref = ours_fn(x, *args), ref_fn(x, *args)
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    # with ties, the max-pool gradient must go to the same (first) maximum as PyTorch's
    torch.testing.assert_close(grads(ours, (x,), case["seed"])[0],
                               grads(ref, (x,), case["seed"])[0], **TOL[dtype])


@cases(20)
@given(dtype=DTYPES, layout=st.sampled_from(["channels_last", "transposed"]),
       seed=st.integers(0, 2**16), k=st.integers(1, 3), stride=st.integers(1, 2),
       padding=st.integers(0, 2), size=st.integers(3, 8))
def test_conv2d_on_strided_inputs_matches_torch(dtype, layout, seed, k, stride, padding,
                                                size):
    case = {"shape": (2, 3, size, size + 1), "seed": seed}
    x = tied_input(case, dtype, layout)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 3, k, k, generator=g, dtype=dtype)
    w.requires_grad_()
    ours = ops.conv2d(x, w, stride=stride, padding=padding)
    ref = F.conv2d(x, w, stride=stride, padding=padding)
    torch.testing.assert_close(ours, ref, **TOL[dtype])
    for g_ours, g_ref in zip(grads(ours, (x, w), seed), grads(ref, (x, w), seed)):
        torch.testing.assert_close(g_ours, g_ref, **TOL[dtype])


# --------------------------------------------------------------------------------------
# augment: the batched warp against torchvision, image by image
# --------------------------------------------------------------------------------------
@cases(30)
@given(dtype=DTYPES, data=st.data())
def test_affine_batch_matches_torchvision_affine(dtype, data):
    b = data.draw(st.integers(1, 3))
    c = data.draw(st.integers(1, 3))
    h, w = data.draw(st.integers(2, 12)), data.draw(st.integers(2, 12))
    seed = data.draw(st.integers(0, 2**16))
    images = torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed),
                        dtype=dtype)
    def per_image(values):
        drawn = data.draw(st.lists(values, min_size=b, max_size=b))
        return torch.tensor(drawn, dtype=torch.float64)

    angle = per_image(st.floats(-180, 180))
    translate = per_image(st.tuples(st.integers(-w, w), st.integers(-h, h)))  # whole px
    scale = per_image(st.floats(0.25, 4))
    out = affine_batch(images, angle, translate, scale)
    assert out.dtype == dtype and out.shape == images.shape
    tol = {torch.float64: 1e-10, torch.float32: 1e-5}[dtype]
    for i in range(b):
        ref = TF.affine(images[i], angle=float(angle[i]),
                        translate=[float(t) for t in translate[i]],
                        scale=float(scale[i]), shear=[0.0, 0.0],
                        interpolation=TF.InterpolationMode.BILINEAR)
        torch.testing.assert_close(out[i], ref, rtol=0, atol=tol)


# --------------------------------------------------------------------------------------
# gan: losses, classifier score and Frechet distance
# --------------------------------------------------------------------------------------
@cases(20)
@given(real=st.lists(st.floats(-30, 30), min_size=1, max_size=20),
       fake=st.lists(st.floats(-30, 30), min_size=1, max_size=20))
def test_gan_losses_match_sklearn_log_loss(real, fake):
    r, f = np.array(real), np.array(fake)
    real_t, fake_t = torch.tensor(r), torch.tensor(f)

    def bce(label, logits):  # log loss of one label for probabilities sigmoid(logits)
        # both columns from expit: 1 - expit(a) would lose a tiny probability's digits
        probs = np.stack([expit(-logits), expit(logits)], axis=1)
        return log_loss(np.full(len(logits), label), probs, labels=[0, 1])

    assert float(gan.discriminator_loss(real_t, fake_t)) == pytest.approx(
        bce(1, r) + bce(0, f), rel=1e-9, abs=1e-12)
    assert float(gan.generator_loss(fake_t)) == pytest.approx(bce(1, f), rel=1e-9,
                                                              abs=1e-12)
    assert float(gan.saturating_generator_loss(fake_t)) == pytest.approx(
        -bce(0, f), rel=1e-9, abs=1e-12)


@st.composite
def probability_rows(draw):
    k, n = draw(st.integers(1, 6)), draw(st.integers(1, 30))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    soft = (torch.randn(n, k, generator=g, dtype=torch.float64) * 5).softmax(1)
    hot = F.one_hot(soft.argmax(1), k).double()  # certain; some classes never predicted
    uniform = torch.full((n, k), 1 / k, dtype=torch.float64)
    kinds = draw(st.lists(st.integers(0, 2), min_size=1, max_size=3))  # row kinds used
    pick = torch.tensor(kinds)[torch.randint(0, len(kinds), (n,), generator=g)]
    return torch.stack([soft, hot, uniform])[pick, torch.arange(n)]


@cases(50)
@given(probs=probability_rows())
def test_classifier_score_matches_scipy_entropy(probs):
    p = probs.numpy()
    marginal = p.mean(0)
    ref = math.exp(float(np.mean([entropy(row, marginal) for row in p])))
    assert gan.classifier_score(probs) == pytest.approx(ref, rel=1e-9)


def fid_reference(a: np.ndarray, b: np.ndarray) -> float:
    """The formula of pytorch-fid's ``calculate_frechet_distance`` (scipy's sqrtm)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1 = np.atleast_2d(np.cov(a, rowvar=False))
    s2 = np.atleast_2d(np.cov(b, rowvar=False))
    covmean = sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # singular product: pytorch-fid's offset
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = sqrtm((s1 + offset) @ (s2 + offset))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # scipy's sqrtm, n <= f
@cases(50)
@given(data=st.data())
def test_frechet_distance_matches_the_scipy_formula(data):
    f = data.draw(st.integers(1, 4))
    n, m = data.draw(st.integers(2, 12)), data.draw(st.integers(2, 12))
    seed = data.draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, f, generator=g, dtype=torch.float64)
    kind = data.draw(st.sampled_from(["independent", "same", "shifted", "scaled"]))
    if kind == "same":
        b = a.clone()
    elif kind in ("shifted", "scaled"):
        factor = data.draw(st.floats(0.1, 10))
        b = a + factor if kind == "shifted" else a * factor
    else:
        b = torch.randn(m, f, generator=g, dtype=torch.float64) * 2 + 1
    ours = gan.frechet_distance(a, b)
    ref = fid_reference(a.numpy(), b.numpy())
    # n <= f gives a singular covariance, where a matrix square root loses about half
    # the digits: the tolerance is relative to the size of the covariances
    traces = [np.trace(np.atleast_2d(np.cov(x.numpy(), rowvar=False))) for x in (a, b)]
    scale = sum(traces) + 1.0
    assert ours == pytest.approx(max(ref, 0.0), abs=1e-6 * scale)
    if kind == "same":
        assert ours == pytest.approx(0.0, abs=1e-6 * scale)


# --------------------------------------------------------------------------------------
# export.preprocess
# --------------------------------------------------------------------------------------
@cases(25)
@given(dtype=DTYPES, channels=st.integers(1, 3), seed=st.integers(0, 2**16),
       data=st.data())
def test_preprocess_matches_torchvision_normalize(dtype, channels, seed, data):
    mean = data.draw(st.lists(st.floats(0, 1), min_size=channels, max_size=channels))
    std = data.draw(st.lists(st.floats(0.01, 1), min_size=channels, max_size=channels))
    meta = {"normalization": {"mean": mean, "std": std}, "input_size": [channels, 5, 4]}
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(3, channels, 5, 4, generator=g, dtype=dtype)
    ref = TF.normalize(images, mean=mean, std=std)
    torch.testing.assert_close(preprocess(images, meta), ref, **TOL[dtype])
