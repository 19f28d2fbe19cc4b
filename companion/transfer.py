"""Transfer learning helpers: swap the head, freeze the body, load pretrained weights.

The usual recipe (He et al.'s ResNet, Yosinski et al. 2014) in four calls::

    model = pretrained("resnet18", weights="IMAGENET1K_V1")  # or a path to a saved state dict
    replace_head(model, num_classes=5)                        # a new, randomly initialised head
    freeze(model, keep=head_name(model))                      # train only the head ...
    optimizer = torch.optim.SGD(trainable_parameters(model), lr=1e-3, momentum=0.9)

and later ``unfreeze(model)`` for full fine-tuning. ImageNet weights come through torchvision's
``weights=`` API (never the deprecated ``pretrained=True``); without network access, and with no
copy in torch's cache, :func:`pretrained` says so and names the file to fetch instead of failing
deep inside ``urllib``.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from .train import load_checkpoint_file

__all__ = [
    "WeightsUnavailableError", "head_name", "replace_head", "freeze", "unfreeze",
    "trainable_parameters", "count_parameters", "imagenet_state_dict", "load_state_dict_file",
    "pretrained",
]

STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (no network, no cached copy); the message says what to do."""


# --------------------------------------------------------------------------------------------
# Heads, freezing, counting
# --------------------------------------------------------------------------------------------
def head_name(model: nn.Module) -> str:
    """Dotted name of the classifier head: ``fc`` if the model has one, else its last ``nn.Linear``.

    ``fc`` covers ResNet and GoogLeNet, ``classifier.6`` AlexNet and VGG, ``classifier.5`` LeNet-5.
    """
    if isinstance(getattr(model, "fc", None), nn.Linear):
        return "fc"
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to use as a head; pass name= explicitly")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int, name: str | None = None) -> nn.Linear:
    """Replace the head (see :func:`head_name`) by a fresh ``nn.Linear(in_features, num_classes)``.

    Returns the new layer. It is created with PyTorch's default initialisation from the global RNG
    (seed it first) and placed on the old head's device.
    """
    name = name or head_name(model)
    old = model.get_submodule(name)
    if not isinstance(old, nn.Linear):
        raise ValueError(f"{name!r} in {type(model).__name__} is a {type(old).__name__}, not an nn.Linear head")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None).to(old.weight.device)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    return new


def _keep_bn_in_eval(module: nn.Module, args) -> None:
    module.eval()  # frozen: normalise with the stored statistics and never update them


def freeze(model: nn.Module, keep: str | tuple[str, ...] = (), freeze_bn_stats: bool = True) -> nn.Module:
    """Stop gradients for every parameter except those under the module names in ``keep``.

    With ``freeze_bn_stats`` (default) the frozen batch-norm layers also stay in eval mode even when
    the model is in ``train()`` mode: ``requires_grad=False`` alone does **not** stop a BN layer from
    updating its running mean and variance on every training batch, which would silently change the
    "frozen" features.
    """
    keep = (keep,) if isinstance(keep, str) else tuple(keep)
    known = {name for name, _ in model.named_modules()}
    unknown = [k for k in keep if k not in known]
    if unknown:
        raise ValueError(f"keep={unknown} are not modules of {type(model).__name__}; e.g. {head_name(model)!r}")

    def kept(name: str) -> bool:
        return any(name == k or name.startswith(k + ".") for k in keep)

    for name, p in model.named_parameters():
        p.requires_grad_(kept(name))
    if freeze_bn_stats:
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not kept(name):
                _release_bn(m)  # freezing twice must not leave a second hook that unfreeze() misses
                m._companion_freeze_hook = m.register_forward_pre_hook(_keep_bn_in_eval)
    return model


def unfreeze(model: nn.Module) -> nn.Module:
    """Make every parameter trainable again and let batch-norm layers follow ``train()`` / ``eval()``."""
    for p in model.parameters():
        p.requires_grad_(True)
    for m in model.modules():
        _release_bn(m)
    return model


def _release_bn(module: nn.Module) -> None:
    """Remove the hook that :func:`freeze` put on a batch-norm layer, if there is one."""
    hook = getattr(module, "_companion_freeze_hook", None)
    if hook is not None:
        hook.remove()
        del module._companion_freeze_hook


def trainable_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters with ``requires_grad``: what to give the optimizer after :func:`freeze`."""
    return (p for p in model.parameters() if p.requires_grad)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (only the trainable ones with ``trainable_only=True``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------------
# Pretrained weights
# --------------------------------------------------------------------------------------------
def _weights_enum(arch: str, weights: str):
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(arch)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"torchvision has no model called {arch!r} ({exc})") from None
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise ValueError(f"{arch} has no weights {weights!r}; torchvision offers: {names}") from None


def imagenet_state_dict(arch: str, weights: str = "IMAGENET1K_V1") -> dict[str, Tensor]:
    """torchvision's pretrained state dict for ``arch`` (e.g. ``"resnet18"``, ``"IMAGENET1K_V1"``).

    Reads torch's cache (``$TORCH_HOME/hub/checkpoints``) when the file is there, else downloads it
    once. Without network access this raises :class:`WeightsUnavailableError`, naming the URL and
    the offline alternative.
    """
    w = _weights_enum(arch, weights)
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
    try:
        return torch.hub.load_state_dict_from_url(w.url, progress=False, map_location="cpu", weights_only=True)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        raise WeightsUnavailableError(
            f"could not download the {arch} {w.name} weights from {w.url} "
            f"({type(exc).__name__}: {exc}). This machine seems to have no network access and there is no "
            f"cached copy at {cache}. Download that file on a machine with network access and either copy "
            f"it to {cache} or pass its path: pretrained({arch!r}, weights='path/to/{Path(w.url).name}')."
        ) from exc


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """A state dict saved with ``torch.save(model.state_dict(), path)``, read with ``weights_only=True``.

    A full training checkpoint (``companion.train`` format) is accepted too: its ``model`` entry is used.
    """
    state = load_checkpoint_file(path)
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path} is not a state dict: entries {bad[:3]} are not tensors")
    return state


def _looks_like_path(weights: str | os.PathLike) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return weights.endswith(STATE_DICT_SUFFIXES) or os.sep in weights or Path(weights).exists()


def pretrained(
    arch: str,
    weights: str | os.PathLike | None = "IMAGENET1K_V1",
    *,
    num_classes: int | None = None,
    model: nn.Module | None = None,
) -> nn.Module:
    """A torchvision architecture with pretrained weights, optionally with a new head.

    Args:
        arch: torchvision model name, e.g. ``"resnet18"``, ``"alexnet"``, ``"vgg11"``.
        weights: a torchvision weights name (``"IMAGENET1K_V1"``, ``"DEFAULT"``), a path to a saved
            state dict (``.pt`` / ``.pth``), or ``None`` for random initialisation.
        num_classes: if given, the head is replaced by a fresh ``num_classes``-way linear layer.
        model: an already built module with torchvision's keys (e.g. ``companion.models.resnet18()``)
            to load the weights into instead of torchvision's own class.
    """
    if model is None:
        from torchvision.models import get_model

        model = get_model(arch, weights=None)
    if weights is not None:
        state = load_state_dict_file(weights) if _looks_like_path(weights) else imagenet_state_dict(arch, str(weights))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"the weights {weights!r} do not fit this {arch} model "
                             f"({type(model).__name__}):\n{exc}") from None
    if num_classes is not None:
        replace_head(model, num_classes)
    return model
