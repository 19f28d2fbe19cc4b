"""Deep *plain* CNNs: a stack of 3x3 convolutions for studying initialisation and normalization.

Chapter 05 pushes a batch of digits through :func:`plain_cnn` (20 or more convolutions, no
shortcuts, no pooling until the head) and measures how the size of the activations and of the
gradients changes from layer to layer under different weight initialisations:

* ``"normal"`` -- every weight drawn from N(0, std^2) with a fixed ``std`` (0.01 was common before
  2010, e.g. in AlexNet);
* ``"xavier"`` -- Var[w] = 2 / (fan_in + fan_out) (Glorot & Bengio, 2010, "Understanding the
  difficulty of training deep feedforward neural networks"), derived for activations that are
  linear near zero such as tanh;
* ``"kaiming"`` -- Var[w] = 2 / fan_in (He et al., 2015, "Delving Deep into Rectifiers"), which
  keeps the variance of the pre-activations constant through ReLU layers;
* ``"default"`` -- PyTorch's own (Kaiming-uniform with a = sqrt(5), i.e. Var[w] = 1 / (3 fan_in)).

``norm="batch"`` puts a batch normalization (Ioffe & Szegedy, 2015) between every convolution and
its ReLU, the position the paper uses. :func:`layer_statistics` records the root mean square of
every convolution's output and of the loss gradient with respect to it, for one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["INITS", "PlainCNN", "plain_cnn", "init_weights", "weight_variance", "LayerStats",
           "layer_statistics"]

Init = Literal["default", "normal", "xavier", "kaiming"]
INITS: tuple[str, ...] = ("default", "normal", "xavier", "kaiming")
NORMS: tuple[str | None, ...] = (None, "batch")


def _fans(weight: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear or Conv weight: inputs and outputs of one unit times k*k."""
    receptive = math.prod(weight.shape[2:]) if weight.ndim > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def weight_variance(weight: Tensor, scheme: Init, std: float = 0.01) -> float:
    """The variance Var[w] that ``scheme`` draws ``weight`` with (the quantity the variance
    argument needs); ``"default"`` is PyTorch's Kaiming-uniform with a = sqrt(5)."""
    fan_in, fan_out = _fans(weight)
    variances: dict[str, float] = {
        "normal": std**2,
        "xavier": 2.0 / (fan_in + fan_out),
        "kaiming": 2.0 / fan_in,
        "default": 1.0 / (3.0 * fan_in),
    }
    if scheme not in variances:
        raise ValueError(f"init must be one of {INITS}; got {scheme!r}")
    return variances[scheme]


def init_weights(model: nn.Module, scheme: Init, std: float = 0.01) -> nn.Module:
    """Re-draw every Conv2d / Linear weight of ``model`` with ``scheme``; biases become zero.

    Normal distributions throughout (``xavier_normal_``, ``kaiming_normal_`` in fan-in mode), so
    that every scheme differs only in the variance :func:`weight_variance` returns.
    """
    if scheme not in INITS:
        raise ValueError(f"init must be one of {INITS}; got {scheme!r}")
    if scheme == "normal" and not std > 0:
        raise ValueError(f"std must be positive for init='normal'; got {std!r}")
    if scheme == "default":
        return model
    draw: dict[str, Callable[[Tensor], Tensor]] = {
        "normal": lambda w: nn.init.normal_(w, 0.0, std),
        "xavier": nn.init.xavier_normal_,
        "kaiming": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
    }
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            draw[scheme](module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def conv_unit(in_channels: int, out_channels: int, norm: str | None,
              padding_mode: str = "zeros",
              batch_norm: Callable[[int], nn.Module] = nn.BatchNorm2d) -> nn.Sequential:
    """3x3 convolution (padding 1, size kept) [-> batch norm] -> ReLU.

    With batch norm the convolution has no bias: the normalization removes any constant per
    channel, and its own shift beta replaces it. ``batch_norm(channels)`` builds the
    normalization (``nn.BatchNorm2d`` or the book's ``companion.ops.BatchNorm2d``).
    """
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm is None,
                     padding_mode=padding_mode)
    norm_layer = [batch_norm(out_channels)] if norm == "batch" else []
    return nn.Sequential(conv, *norm_layer, nn.ReLU())


class PlainCNN(nn.Module):
    """``depth`` 3x3 conv units of ``width`` channels at the input's resolution, then global
    average pooling and one linear layer: (B, C, H, W) -> (B, num_classes) logits."""

    def __init__(self, depth: int = 20, width: int = 16, *, in_channels: int = 1,
                 num_classes: int = 10, norm: str | None = None, init: Init = "kaiming",
                 std: float = 0.01, padding_mode: str = "zeros",
                 batch_norm: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be >= 1; got depth={depth}, width={width}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")
        channels = [in_channels] + [width] * depth
        self.layers = nn.Sequential(*(conv_unit(c_in, c_out, norm, padding_mode, batch_norm)
                                      for c_in, c_out in zip(channels, channels[1:])))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(width, num_classes))
        self.in_channels, self.init, self.std = in_channels, init, std
        init_weights(self, init, std)

    def convs(self) -> list[nn.Conv2d]:
        """The ``depth`` convolutions, input side first."""
        return [unit[0] for unit in self.layers]

    def forward(self, x: Tensor) -> Tensor:  # (B, in_channels, H, W)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"PlainCNN expects images of shape (B, {self.in_channels}, H, W); "
                             f"got {tuple(x.shape)}")
        return self.head(self.layers(x))  # (B, width, H, W) -> (B, num_classes)


def plain_cnn(depth: int = 20, width: int = 16, norm: str | None = None,
              init: Init = "kaiming", **kwargs) -> PlainCNN:
    """A :class:`PlainCNN`; ``norm=None | "batch"``, ``init`` one of :data:`INITS`; keyword
    arguments (``in_channels``, ``num_classes``, ``std``, ``padding_mode``, ``batch_norm``) pass
    through."""
    return PlainCNN(depth, width, norm=norm, init=init, **kwargs)


@dataclass
class LayerStats:
    """Per convolution (input side first): root mean square of its output and of the loss's
    gradient with respect to that output, over the batch, channels and positions."""

    activation_rms: list[float]
    gradient_rms: list[float]
    loss: float


def layer_statistics(model: PlainCNN, x: Tensor, y: Tensor) -> LayerStats:
    """One forward and backward pass of the mean cross-entropy on ``(x, y)``, in train mode.

    The root mean square sqrt(E[z^2]) rather than the standard deviation: it is what the
    variance argument predicts (E[z^2] = fan_in * Var[w] * E[input^2]).
    """
    outputs: list[Tensor] = []

    def keep(_module: nn.Module, _inputs, out: Tensor) -> None:
        out.retain_grad()
        outputs.append(out)

    handles = [conv.register_forward_hook(keep) for conv in model.convs()]
    try:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    rms = lambda t: t.detach().double().pow(2).mean().sqrt().item()  # noqa: E731
    return LayerStats([rms(o) for o in outputs], [rms(o.grad) for o in outputs], loss.item())
