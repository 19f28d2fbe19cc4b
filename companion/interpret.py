"""What a trained CNN looks at, and how little it takes to fool it.

Attribution maps say which pixels a class score depends on:

- :func:`saliency`: the absolute input gradient of the class score (Simonyan et al. 2014);
- :func:`occlusion`: how much the score drops when a window of the image is replaced by a
  baseline, averaged over the windows covering each pixel (Zeiler & Fergus 2014);
- :func:`grad_cam`: a layer's activations weighted by the spatial mean of the score's gradient,
  summed over channels, rectified and upsampled to the input (Selvaraju et al. 2017).

:func:`cascading_randomization` and :func:`spearman` implement the sanity check of Adebayo et al.
(2018): a map that survives randomising the weights explains the image, not the model.

Adversarial examples (:func:`fgsm`, Goodfellow et al. 2015; :func:`pgd`, Madry et al. 2018) move
each pixel by at most ``eps`` in the direction that increases the loss, and stay in the valid pixel
range. :func:`adversarial_step` plugs PGD into :class:`companion.train.Trainer` for adversarial
training. The conventions follow captum (``Saliency(abs=True)``, ``Occlusion``, ``LayerGradCam``
+ ``LayerAttribution.interpolate``, ``FGSM``, ``PGD``), against which ``tests/test_interpret.py``
checks every function.

Every function runs the model in eval mode (dropout off, batch-norm statistics fixed) and puts it
back in the mode it was in; none of them changes a parameter or leaves a gradient on one.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .train import eval_mode

__all__ = [
    "class_scores", "saliency", "occlusion", "grad_cam", "spearman", "cascading_randomization",
    "fgsm", "pgd", "adversarial_step",
]

Target = int | Sequence[int] | Tensor


# --------------------------------------------------------------------------------------------
# Small checks shared by every function
# --------------------------------------------------------------------------------------------
def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected a float batch of images (B, C, H, W); got {shape}. "
                         "Add the batch axis with x[None] for a single image.")
    if x.shape[0] == 0:
        raise ValueError("the batch of images is empty (B = 0): nothing to explain or attack")


def _targets(target: Target, x: Tensor) -> Tensor:
    """One class index per image: an int is broadcast, a sequence must have one per image."""
    t = torch.as_tensor(target, dtype=torch.long, device=x.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(x.shape[0])
    if t.numel() != x.shape[0]:
        raise ValueError(f"got {t.numel()} targets for a batch of {x.shape[0]} images; "
                         "pass one class per image or a single int")
    return t


def class_scores(model: nn.Module, x: Tensor, target: Target) -> Tensor:
    """``model(x)[i, target[i]]`` for every image i: the scores the maps explain. Shape (B,)."""
    logits = model(x)  # (B, classes)
    t = _targets(target, x)
    if int(t.min()) < 0 or int(t.max()) >= logits.shape[1]:
        raise ValueError(f"targets must lie in 0..{logits.shape[1] - 1} (the model has "
                         f"{logits.shape[1]} outputs); got {t.tolist()}")
    return logits.gather(1, t[:, None])[:, 0]


# --------------------------------------------------------------------------------------------
# Saliency and occlusion
# --------------------------------------------------------------------------------------------
def saliency(model: nn.Module, x: Tensor, target: Target) -> Tensor:
    """``|d score / d x|``, the same shape as ``x`` (Simonyan et al. 2014; captum's
    ``Saliency(abs=True)``). Images are independent in eval mode, so one backward pass over the
    summed scores gives every image's own gradient."""
    _check_images(x)
    with eval_mode(model), torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(class_scores(model, x, target).sum(), x)
    return grad.abs()


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    """captum's placement: ``ceil((size - window) / stride) + 1`` windows at multiples of
    ``stride``; the last one is cut at the border when the stride does not divide evenly."""
    return [i * stride for i in range(math.ceil((size - window) / stride) + 1)]


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them; got {value!r}")
    return int(pair[0]), int(pair[1])


@torch.no_grad()
def occlusion(
    model: nn.Module,
    x: Tensor,
    target: Target,
    window: int | tuple[int, int] = 4,
    stride: int | tuple[int, int] = 2,
    baseline: float = 0.0,
    batch_size: int = 256,
) -> Tensor:
    """Occlusion sensitivity (Zeiler & Fergus 2014), captum's ``Occlusion`` over (C, H, W).

    A ``window`` (all channels) slides over each image with ``stride``; every position is replaced
    by ``baseline`` and the class score drops by ``score(x) - score(occluded)``. Each pixel gets the
    mean drop over the windows that cover it. Returns a map of ``x``'s shape (equal across
    channels). Positive: hiding the pixel lowers the score.
    """
    _check_images(x)
    (wh, ww), (sh, sw) = _pair(window, "window"), _pair(stride, "stride")
    height, width = x.shape[-2:]
    if wh > height or ww > width:
        raise ValueError(f"window {(wh, ww)} is larger than the images {(height, width)}")
    if sh > wh or sw > ww:
        raise ValueError(f"stride {(sh, sw)} larger than window {(wh, ww)} leaves pixels unoccluded")
    masks = []
    for top in _window_starts(height, wh, sh):
        for left in _window_starts(width, ww, sw):
            mask = torch.zeros(height, width, dtype=x.dtype, device=x.device)
            mask[top:top + wh, left:left + ww] = 1
            masks.append(mask)
    masks_t = torch.stack(masks)  # (P, H, W): one per window position
    t = _targets(target, x)
    total = torch.zeros_like(x[:, :1])  # (B, 1, H, W)
    with eval_mode(model):
        base = class_scores(model, x, t)  # (B,)
        for i in range(x.shape[0]):
            drops = []
            for chunk in masks_t.split(batch_size):
                m = chunk[:, None]  # (p, 1, H, W)
                occluded = x[i] * (1 - m) + baseline * m  # (p, C, H, W)
                drops.append(base[i] - class_scores(model, occluded, t[i]))
            total[i, 0] = (torch.cat(drops)[:, None, None] * masks_t).sum(0)
    return (total / masks_t.sum(0)).expand_as(x).clone()


# --------------------------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------------------------
def grad_cam(
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    target: Target,
    *,
    upsample: bool = True,
    relu: bool = True,
) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at ``layer``, a module of ``model``.

    With ``A`` the layer's output (B, K, h, w) and ``y`` the class score, the weights are
    ``alpha_k = mean_ij dy/dA_kij`` and the map is ``ReLU(sum_k alpha_k A_k)``, shape (B, 1, h, w);
    ``upsample`` resizes it bilinearly to the input's height and width (captum's
    ``LayerGradCam(relu_attributions=True)`` then ``LayerAttribution.interpolate(..., "bilinear")``).
    """
    _check_images(x)
    if not any(m is layer for m in model.modules()):
        raise ValueError(f"layer {type(layer).__name__} is not a module of {type(model).__name__}; "
                         "pass e.g. model.features[-1]")
    saved: list[Tensor] = []
    hook = layer.register_forward_hook(lambda module, args, out: saved.append(out))
    try:
        with eval_mode(model), torch.enable_grad():
            scores = class_scores(model, x.detach(), target)
            if not saved or not isinstance(saved[0], Tensor) or saved[0].ndim != 4:
                raise ValueError("Grad-CAM needs a layer that outputs (B, K, h, w) feature maps; "
                                 f"{type(layer).__name__} gave {[tuple(s.shape) for s in saved]}")
            activations = saved[0]
            (grads,) = torch.autograd.grad(scores.sum(), activations)
    finally:
        hook.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (B, K, 1, 1): alpha_k
    cam = (weights * activations.detach()).sum(dim=1, keepdim=True)  # (B, 1, h, w)
    if relu:
        cam = F.relu(cam)
    if upsample:
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return cam


# --------------------------------------------------------------------------------------------
# The sanity check of Adebayo et al. (2018)
# --------------------------------------------------------------------------------------------
def _ranks(values: Tensor) -> Tensor:
    """Ranks 1..n with ties given their mean rank (as scipy.stats.rankdata)."""
    order = values.argsort(stable=True)
    sorted_v = values[order]
    new = torch.ones_like(sorted_v, dtype=torch.bool)
    new[1:] = sorted_v[1:] != sorted_v[:-1]
    group = new.cumsum(0) - 1  # tie-group of each sorted value
    positions = torch.arange(1, len(values) + 1, dtype=torch.float64, device=values.device)
    first = torch.zeros(int(group[-1]) + 1, dtype=torch.float64, device=values.device)
    count = torch.zeros_like(first)
    first.index_add_(0, group, positions)
    count.index_add_(0, group, torch.ones_like(positions))
    ranks = torch.empty_like(positions)
    ranks[order] = (first / count)[group]
    return ranks


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation of two maps (flattened): Pearson's r of their ranks.

    As ``scipy.stats.spearmanr``: ties get mean ranks, and a constant map has no ranking, so the
    result is ``nan``.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.numel() < 2:
        raise ValueError(f"a rank correlation needs at least 2 values; got {a.numel()}")
    ra, rb = _ranks(a.detach().flatten()), _ranks(b.detach().flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = (ra.square().sum() * rb.square().sum()).sqrt()
    return float("nan") if den == 0 else float((ra * rb).sum() / den)


def cascading_randomization(
    model: nn.Module, layer_names: Sequence[str], seed: int = 0
) -> Iterator[tuple[str, nn.Module]]:
    """Copies of ``model`` with more and more layers re-initialised, top layer first.

    ``layer_names`` lists modules from the output towards the input (e.g. the classifier, then the
    last convolution, ...). The k-th copy has the first k of them reset with their own
    ``reset_parameters`` (PyTorch's default initialisation) from a generator seeded by ``seed``;
    ``model`` itself is never changed. This is the "cascading randomization" of Adebayo et al.
    """
    modules = dict(model.named_modules())
    missing = [n for n in layer_names if n not in modules]
    if missing:
        raise ValueError(f"{missing} are not modules of {type(model).__name__}; "
                         f"it has e.g. {[n for n in modules if n][:6]}")
    randomized = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in layer_names:
            layer = randomized.get_submodule(name)
            if not hasattr(layer, "reset_parameters"):
                raise ValueError(f"{name} ({type(layer).__name__}) has no reset_parameters()")
            layer.reset_parameters()
            yield name, copy.deepcopy(randomized)


# --------------------------------------------------------------------------------------------
# Adversarial examples
# --------------------------------------------------------------------------------------------
def _check_attack(x: Tensor, eps: float, bounds: tuple[float, float]) -> None:
    _check_images(x)
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0 (the largest change per pixel, "
                         f"in the images' units); got {eps!r}")
    lo, hi = bounds
    if not lo < hi:
        raise ValueError(f"bounds must be (low, high) with low < high; got {bounds}")
    if float(x.min()) < lo or float(x.max()) > hi:
        raise ValueError(f"images lie in [{float(x.min()):.4g}, {float(x.max()):.4g}], outside "
                         f"the valid range bounds={bounds}; attack the images before normalising, "
                         "or pass the normalised range")


def _loss_gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Gradient of the summed cross-entropy with respect to the images (each image's own)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float,
         bounds: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): ``clip(x + eps * sign(grad_x loss))``.

    One step to the corner of the L-infinity ball of radius ``eps`` that the loss's linearisation
    favours, then clipped to the valid pixel range ``bounds``.
    """
    _check_attack(x, eps, bounds)
    y = _targets(y, x)
    with eval_mode(model):
        grad = _loss_gradient(model, x, y)
    return (x.detach() + eps * grad.sign()).clamp(*bounds)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    steps: int = 10,
    alpha: float | None = None,
    random_start: bool = False,
    bounds: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient descent on the loss (Madry et al. 2018), L-infinity ball of radius ``eps``.

    ``steps`` signed-gradient steps of size ``alpha`` (default ``2.5 * eps / steps``, Madry et
    al.'s choice), each followed by projection onto the ball around ``x`` and onto ``bounds``. With
    ``random_start`` it starts from a uniform point of the ball (drawn with ``generator``).
    """
    _check_attack(x, eps, bounds)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha (the step size) must be a finite number >= 0; got {alpha!r}")
    y = _targets(y, x)
    x = x.detach()
    adv = x
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        adv = (x + (2 * noise - 1) * eps).clamp(*bounds)
    with eval_mode(model):
        for _ in range(steps):
            adv = (adv + alpha * _loss_gradient(model, adv, y).sign()).clamp(*bounds)
            adv = (x + (adv - x).clamp(-eps, eps)).clamp(*bounds)  # back into the ball
    return adv


def adversarial_step(attack: Callable[[nn.Module, Tensor, Tensor], Tensor]) -> Callable:
    """A ``Trainer`` step that trains on ``attack(model, x, y)`` instead of ``x`` (Madry et al.).

    Use as ``Trainer(model, optimizer, loss_fn, step_fn=adversarial_step(lambda m, x, y:
    pgd(m, x, y, 0.2, steps=3)))``. The attack sees the model in eval mode; the update is a normal
    training-mode step on the perturbed batch.
    """
    def step(trainer, batch) -> dict[str, Tensor]:
        x, y = trainer.to_device(batch)
        x_adv = attack(trainer.model, x, y)
        trainer.model.train()
        logits = trainer.model(x_adv)
        loss = trainer.loss_fn(logits, y)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
        return {"loss": loss, **{k: fn(logits.detach(), y) for k, fn in trainer.metrics.items()}}

    return step
