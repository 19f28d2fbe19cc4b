"""companion.interpret against captum (and scipy), over random models, inputs and targets.

==================================  ==================================================
companion function                  reference
==================================  ==================================================
interpret.saliency                  captum.attr.Saliency(abs=True)
interpret.occlusion                 captum.attr.Occlusion, window (C, h, w), stride (1, s, t)
interpret.grad_cam                  captum.attr.LayerGradCam(relu_attributions=True), then
                                    LayerAttribution.interpolate(..., "bilinear")
interpret.fgsm                      captum.robust.FGSM(CrossEntropyLoss(reduction="none"))
interpret.pgd                       captum.robust.PGD (no random start), the same loss
interpret.spearman                  scipy.stats.spearmanr (ties, constant maps -> nan)
==================================  ==================================================

Hypothesis draws small CNNs (1 or 3 input channels, optional batch norm with random running
statistics, max-pooling or not, ReLU or tanh), batches of 1 to 4 images of 6 to 14 pixels with
pixels exactly on the bounds 0 and 1, per-image targets, windows and strides (uneven ones that
cut the last window at the border), in float32 and float64 (captum's occlusion returns float32
for float64 inputs, so there float64 is compared at float32's precision). captum leaves a pixel unperturbed
where its gradient is below 1e-6 (``zero_thresh``); the tests set that threshold to 0, which is
the companion's convention (``sign(0) = 0``). The attacks are also checked on their own: inside
the eps ball and the pixel range, raising the loss of a trained digit classifier, PGD at least
as strong as FGSM, and clear errors for a bad eps, images outside the range or a bad target.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam, Occlusion, Saliency
from captum.robust import FGSM, PGD
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from torch import nn

from companion import interpret
from companion.data import mnist


def cases(n: int) -> settings:
    """Deterministic hypothesis settings with ``n`` examples."""
    return settings(max_examples=n, deadline=None, derandomize=True)


TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}


class TinyCNN(nn.Module):
    """conv -> [BN] -> act -> [max-pool] -> conv (the Grad-CAM layer) -> act -> mean -> linear."""

    def __init__(self, channels: int, width: int, classes: int, bn: bool, pool: bool,
                 act: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width) if bn else nn.Identity()
        self.act = nn.ReLU() if act == "relu" else nn.Tanh()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.bn(self.conv1(x))))
        x = self.act(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


@st.composite
def problems(draw):
    """``(model in eval mode, images in [0, 1] (B, C, H, W), targets (B,))`` in one dtype."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    channels, classes = draw(st.sampled_from([1, 3])), draw(st.integers(2, 5))
    bn = draw(st.booleans())
    torch.manual_seed(draw(st.integers(0, 2**31 - 1)))
    model = TinyCNN(channels, draw(st.integers(1, 6)), classes, bn, draw(st.booleans()),
                    draw(st.sampled_from(["relu", "tanh"]))).to(dtype)
    if bn:  # random running statistics, so that eval mode matters
        model.bn.running_mean.normal_(0, 0.5, generator=g)
        model.bn.running_var.uniform_(0.5, 2, generator=g)
    batch, h, w = draw(st.integers(1, 4)), draw(st.integers(6, 14)), draw(st.integers(6, 14))
    x = torch.rand(batch, channels, h, w, generator=g, dtype=dtype)
    x = torch.where(x < 0.2, 0.0, torch.where(x > 0.9, 1.0, x))  # pixels on both bounds
    y = torch.randint(0, classes, (batch,), generator=g)
    return model.eval(), x, y


def assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs.detach(), **TOL[ours.dtype])


# --------------------------------------------------------------------------------------------
# Attribution maps against captum
# --------------------------------------------------------------------------------------------
@cases(40)
@given(problems())
def test_saliency_is_captums(problem):
    model, x, y = problem
    assert_close(interpret.saliency(model, x, y), Saliency(model).attribute(x, target=y, abs=True))


@cases(40)
@given(problems(), st.data())
def test_occlusion_is_captums(problem, data):
    model, x, y = problem
    h, w = x.shape[-2:]
    window = (data.draw(st.integers(1, h)), data.draw(st.integers(1, w)))
    stride = (data.draw(st.integers(1, window[0])), data.draw(st.integers(1, window[1])))
    baseline = data.draw(st.sampled_from([0.0, 0.5, 1.0]))
    ours = interpret.occlusion(model, x, y, window=window, stride=stride, baseline=baseline)
    theirs = Occlusion(model).attribute(x, target=y, baselines=baseline,
                                        sliding_window_shapes=(x.shape[1], *window),
                                        strides=(1, *stride))
    # captum accumulates occlusion in float32 (its window masks are float32) even for float64
    # inputs, so float64 is compared at float32's precision
    assert ours.shape == theirs.shape and ours.dtype == x.dtype
    torch.testing.assert_close(ours.to(theirs.dtype), theirs, **TOL[torch.float32])


@cases(40)
@given(problems(), st.booleans())
def test_grad_cam_is_captums(problem, upsample):
    model, x, y = problem
    ours = interpret.grad_cam(model, model.conv2, x, y, upsample=upsample)
    theirs = LayerGradCam(model, model.conv2).attribute(x, target=y, relu_attributions=True)
    if upsample:
        theirs = LayerAttribution.interpolate(theirs, tuple(x.shape[-2:]), "bilinear")
    assert_close(ours, theirs)
    assert (ours >= 0).all()


def test_grad_cam_without_relu_is_captums_default():
    model, x, y = _fixed_problem()
    ours = interpret.grad_cam(model, model.conv2, x, y, upsample=False, relu=False)
    theirs = LayerGradCam(model, model.conv2).attribute(x, target=y)
    assert_close(ours, theirs)
    assert (ours < 0).any()  # the ReLU is what keeps only the evidence for the class


def _fixed_problem():
    torch.manual_seed(0)
    model = TinyCNN(1, 4, 3, bn=False, pool=False, act="tanh").double().eval()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    return model, x, torch.tensor([0, 1, 2])


# --------------------------------------------------------------------------------------------
# Attacks against captum
# --------------------------------------------------------------------------------------------
EPS = st.sampled_from([0.0, 1 / 255, 0.05, 0.1, 0.3, 1.0])


def loss_none() -> nn.Module:
    return nn.CrossEntropyLoss(reduction="none")


@cases(40)
@given(problems(), EPS)
def test_fgsm_is_captums(problem, eps):
    model, x, y = problem
    attack = FGSM(model, loss_none(), lower_bound=0.0, upper_bound=1.0)
    attack.zero_thresh = 0.0  # captum skips |grad| <= 1e-6; the companion moves unless grad == 0
    assert_close(interpret.fgsm(model, x, y, eps), attack.perturb(x, eps, y))


@cases(30)
@given(problems(), EPS, st.integers(1, 5))
def test_pgd_is_captums(problem, eps, steps):
    model, x, y = problem
    attack = PGD(model, loss_none(), lower_bound=0.0, upper_bound=1.0)
    attack.fgsm.zero_thresh = 0.0
    alpha = 2.5 * eps / steps
    assert_close(interpret.pgd(model, x, y, eps, steps=steps),
                 attack.perturb(x, eps, alpha, steps, y))


@cases(30)
@given(problems(), EPS, st.integers(1, 4), st.booleans())
def test_attacks_stay_in_the_ball_and_the_pixel_range(problem, eps, steps, random_start):
    model, x, y = problem
    for adv in (interpret.fgsm(model, x, y, eps),
                interpret.pgd(model, x, y, eps, steps=steps, random_start=random_start,
                              generator=torch.Generator().manual_seed(0))):
        assert adv.shape == x.shape and adv.dtype == x.dtype
        assert (adv - x).abs().max() <= eps * (1 + 1e-6)
        assert adv.min() >= 0 and adv.max() <= 1


@cases(20)
@given(problems(), st.sampled_from([0.05, 0.3]))
def test_one_pgd_step_of_size_eps_is_fgsm(problem, eps):
    model, x, y = problem
    assert torch.equal(interpret.pgd(model, x, y, eps, steps=1, alpha=eps),
                       interpret.fgsm(model, x, y, eps))


# --------------------------------------------------------------------------------------------
# Attacks on a trained digit classifier
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_model():
    """A small CNN trained for one pass over 1,000 real digits, and 200 other real digits."""
    torch.manual_seed(0)
    x, y = mnist("train").tensors()
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for i in range(0, 1000, 32):
        loss = F.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), x[1000:1200], y[1000:1200]


def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2])
def test_attacks_raise_the_loss_and_pgd_is_at_least_as_strong(digits_model, eps):
    model, x, y = digits_model
    clean = mean_loss(model, x, y)
    x_fgsm, x_pgd = interpret.fgsm(model, x, y, eps), interpret.pgd(model, x, y, eps, steps=10)
    assert clean < mean_loss(model, x_fgsm, y) <= mean_loss(model, x_pgd, y)
    assert accuracy(model, x_pgd, y) <= accuracy(model, x_fgsm, y) < accuracy(model, x, y)


def test_attacks_leave_the_model_as_they_found_it(digits_model):
    model, x, y = digits_model
    model.train()
    for p in model.parameters():
        p.grad = None
    before = [p.detach().clone() for p in model.parameters()]
    interpret.pgd(model, x[:8], y[:8], 0.1, steps=2)
    interpret.grad_cam(model, model[3], x[:8], y[:8])
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()


def test_adversarial_step_trains_on_attacked_images(digits_model):
    model, x, y = digits_model
    seen = []

    def attack(m, xb, yb):
        seen.append(xb)
        return interpret.fgsm(m, xb, yb, 0.1)

    from companion.train import Trainer

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), nn.CrossEntropyLoss(),
                      step_fn=interpret.adversarial_step(attack), progress="off")
    out = trainer.step_fn(trainer, (x[:16], y[:16]))
    assert len(seen) == 1 and trainer.model.training
    expected = F.cross_entropy(model(interpret.fgsm(model, x[:16], y[:16], 0.1)), y[:16])
    assert abs(out["loss"].item() - expected.item()) < 1e-5
    model.eval()


# --------------------------------------------------------------------------------------------
# Errors that say what to do
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), "0.1", None])
def test_a_bad_eps_is_a_clear_error(eps):
    model, x, y = _fixed_problem()
    for attack in (interpret.fgsm, interpret.pgd):
        with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
            attack(model, x, y, eps)


def test_bad_inputs_are_clear_errors():
    model, x, y = _fixed_problem()
    with pytest.raises(ValueError, match=r"outside the valid range"):
        interpret.fgsm(model, x * 255, y, 0.1)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*x\[None\]"):
        interpret.saliency(model, x[0], y[0])
    with pytest.raises(ValueError, match="empty"):
        interpret.pgd(model, x[:0], y[:0], 0.1)
    with pytest.raises(ValueError, match="got 2 targets for a batch of 3"):
        interpret.grad_cam(model, model.conv2, x, [0, 1])
    with pytest.raises(ValueError, match=r"targets must lie in 0\.\.2"):
        interpret.saliency(model, x, 3)
    with pytest.raises(ValueError, match="not a module of TinyCNN"):
        interpret.grad_cam(model, nn.Conv2d(4, 4, 3), x, y)
    with pytest.raises(ValueError, match="needs a layer that outputs"):
        interpret.grad_cam(model, model.fc, x, y)
    with pytest.raises(ValueError, match="larger than the images"):
        interpret.occlusion(model, x, y, window=9)
    with pytest.raises(ValueError, match="leaves pixels unoccluded"):
        interpret.occlusion(model, x, y, window=2, stride=3)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        interpret.pgd(model, x, y, 0.1, steps=0)


# --------------------------------------------------------------------------------------------
# The sanity check: rank correlation and cascading randomization
# --------------------------------------------------------------------------------------------
@cases(60)
@given(st.integers(2, 60), st.integers(0, 2**31 - 1), st.sampled_from(["ties", "free", "const"]),
       st.sampled_from([torch.float32, torch.float64]))
def test_spearman_is_scipys(n, seed, regime, dtype):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, generator=g, dtype=dtype)
    b = a + torch.randn(n, generator=g, dtype=dtype)
    if regime == "ties":
        a, b = a.round(), (2 * b).round()
    if regime == "const":
        b = torch.full_like(b, 0.25)
    expected = spearmanr(a.numpy(), b.numpy()).statistic
    ours = interpret.spearman(a, b)
    if math.isnan(expected):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(expected, abs=1e-9)
    if n % 2 == 0:  # maps are flattened: a 2-D map gives the same number
        shape = (2, n // 2)
        assert interpret.spearman(a.reshape(shape), b.reshape(shape)) == pytest.approx(
            ours, nan_ok=True)


def test_spearman_errors():
    with pytest.raises(ValueError, match="same shape"):
        interpret.spearman(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="at least 2 values"):
        interpret.spearman(torch.zeros(1), torch.zeros(1))


def test_cascading_randomization_resets_top_layers_first_and_spares_the_model():
    model, _, _ = _fixed_problem()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = ["fc", "conv2", "conv1"]
    copies = list(interpret.cascading_randomization(model, names, seed=1))
    assert [n for n, _ in copies] == names
    for k, (_, copy) in enumerate(copies):
        for name in names:
            same = torch.equal(copy.get_submodule(name).weight, model.get_submodule(name).weight)
            assert same == (name not in names[:k + 1]), (k, name)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = list(interpret.cascading_randomization(model, names, seed=1))
    assert torch.equal(again[-1][1].conv1.weight, copies[-1][1].conv1.weight)
    with pytest.raises(ValueError, match=r"\['head'\] are not modules"):
        list(interpret.cascading_randomization(model, ["head"]))


def test_randomizing_the_model_changes_grad_cam_but_not_by_chance(digits_model):
    model, x, y = digits_model
    layers = ["7", "3"]
    cams = [interpret.grad_cam(model, model[3], x[:16], y[:16])]
    for _, randomized in interpret.cascading_randomization(model, layers, seed=0):
        cams.append(interpret.grad_cam(randomized, randomized[3], x[:16], y[:16]))
    same = np.mean([interpret.spearman(a, a) for a in cams[0]])
    after = np.mean([interpret.spearman(a, b) for a, b in zip(cams[0], cams[-1])])
    assert same == pytest.approx(1.0) and after < 0.9
