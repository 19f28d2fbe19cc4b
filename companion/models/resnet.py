"""Residual networks written from scratch (He et al., 2016, "Deep Residual Learning").

Two families share the same two blocks:

* ImageNet ResNets -- :func:`resnet18`, :func:`resnet34`, :func:`resnet50`. Module names and
  parameter shapes follow ``torchvision.models.resnet`` exactly (``conv1``, ``bn1``, ``layer1.0
  .conv1``, ``layer2.0.downsample.0``, ``fc``...), so a torchvision ``state_dict`` loads with
  ``strict=True`` and both networks then compute the same function. Like torchvision (the
  "ResNet v1.5" variant), a :class:`Bottleneck` strides in its 3x3 convolution, not its first 1x1.
* CIFAR ResNets -- :func:`resnet20`, :func:`resnet32`, :func:`resnet44`, :func:`resnet56`,
  :func:`resnet110`: the paper's Section 4.2 networks, 6n+2 weighted layers, widths 16/32/64 on
  32x32 (or 28x28) inputs. Shortcuts use **option A** by default (identity; where the shape
  changes, subsample by 2 and pad the new channels with zeros: no extra parameters), which is what
  the paper uses on CIFAR-10 and what its parameter counts (0.27M / 0.46M / 0.85M) refer to.
  ``shortcut="B"`` uses 1x1 projections instead. :func:`plain_cifar` builds the same stacks with no
  shortcuts at all, for the degradation experiment of the paper's Figure 1.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "conv3x3", "conv1x1", "BasicBlock", "Bottleneck", "PlainBlock", "PadShortcut", "ResNet", "CifarResNet",
    "resnet18", "resnet34", "resnet50", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "cifar_resnet", "plain_cifar",
]

Shortcut = Literal["A", "B"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows and has its own shift)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias: mixes channels, optionally subsamples."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------
class TwoConvBranch(nn.Module):
    """The branch ``F(x)`` of a basic block: 3x3 conv -> BN -> ReLU -> 3x3 conv -> BN (paper Fig. 2).

    :class:`BasicBlock` adds a shortcut to it; :class:`PlainBlock` does not. Both inherit the
    layers from here, so their parameter names (``conv1``, ``bn1``, ``conv2``, ``bn2``) match.
    """

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)

    def branch(self, x: Tensor) -> Tensor:  # (B, inplanes, H, W)
        out = self.relu(self.bn1(self.conv1(x)))  # (B, planes, H/s, W/s)
        return self.bn2(self.conv2(out))  # F(x)


class BasicBlock(TwoConvBranch):
    """Two 3x3 convolutions plus a shortcut: ``y = relu(F(x) + shortcut(x))`` (paper Fig. 2).

    ``downsample`` maps ``x`` to the shape of ``F(x)`` when they differ (a projection, option B,
    or :class:`PadShortcut`, option A); ``None`` means the identity.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__(inplanes, planes, stride)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:  # (B, inplanes, H, W)
        identity = x if self.downsample is None else self.downsample(x)  # (B, planes, H/s, W/s)
        return self.relu(self.branch(x) + identity)  # F(x) + x, then the nonlinearity


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4), plus a shortcut (paper Fig. 5, right).

    The stride sits on the 3x3 convolution, as in torchvision ("ResNet v1.5").
    """

    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:  # (B, inplanes, H, W)
        identity = x if self.downsample is None else self.downsample(x)  # (B, 4*planes, H/s, W/s)
        out = self.relu(self.bn1(self.conv1(x)))  # (B, planes, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, planes, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, 4*planes, H/s, W/s) = F(x)
        return self.relu(out + identity)


class PlainBlock(TwoConvBranch):
    """:class:`BasicBlock` without its shortcut: ``y = relu(F(x))``. For the degradation experiment.

    Deliberately a sibling, not a subclass, of :class:`BasicBlock`: ``zero_init_residual`` and
    other code that treats residual blocks specially (``isinstance(m, BasicBlock)``) must not touch it.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__(inplanes, planes, stride)  # downsample: accepted for the builder's signature, unused

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.branch(x))  # no "+ x"


class PadShortcut(nn.Module):
    """Option-A shortcut: keep every ``stride``-th pixel and zero-pad the extra channels. No parameters."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        if planes < inplanes:
            raise ValueError(f"PadShortcut can only add channels ({inplanes} -> {planes} requested); use shortcut='B'")
        self.extra = planes - inplanes
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C, ceil(H/s), ceil(W/s))
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # (B, C + extra, ...), new channels are 0


def _init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """He (fan-out) init for convolutions, BatchNorm as the identity (torchvision's choice)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    if zero_init_residual:  # each residual branch starts as 0, i.e. each block as the identity
        for m in model.modules():
            if isinstance(m, Bottleneck):
                nn.init.constant_(m.bn3.weight, 0)
            elif isinstance(m, BasicBlock):
                nn.init.constant_(m.bn2.weight, 0)


# --------------------------------------------------------------------------------------------
# ImageNet ResNets (torchvision-compatible)
# --------------------------------------------------------------------------------------------
class ResNet(nn.Module):
    """The ImageNet ResNet of the paper's Table 1: a 7x7 stem, four stages, global pooling, ``fc``.

    Args:
        block: :class:`BasicBlock` (ResNet-18/34) or :class:`Bottleneck` (ResNet-50/101/152).
        layers: blocks per stage, e.g. ``[2, 2, 2, 2]`` for ResNet-18.
        num_classes: outputs of the final ``fc`` layer.
        in_channels: input channels (3 for RGB; torchvision only has 3).
        zero_init_residual: start every residual branch at zero (Goyal et al. 2017's trick).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give the number of blocks of 4 stages, got {list(layers)}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_weights(self, zero_init_residual)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        """A stage: the first block may subsample / widen (projection shortcut), the rest keep shape."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:  # option B: project only when needed
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, 224, 224)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, 56, 56)
        x = self.layer1(x)  # (B, 64e, 56, 56)   e = block.expansion
        x = self.layer2(x)  # (B, 128e, 28, 28)
        x = self.layer3(x)  # (B, 256e, 14, 14)
        x = self.layer4(x)  # (B, 512e, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 512e)
        return self.fc(x)  # (B, num_classes) logits


def resnet18(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-18 (He et al. 2016, Table 1): BasicBlocks [2, 2, 2, 2]; 11.7M parameters."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, **kwargs)


def resnet34(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-34 (He et al. 2016, Table 1): BasicBlocks [3, 4, 6, 3]; 21.8M parameters."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


def resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 (He et al. 2016, Table 1): Bottlenecks [3, 4, 6, 3]; 25.6M parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


# --------------------------------------------------------------------------------------------
# CIFAR ResNets (paper Section 4.2) and their plain counterparts
# --------------------------------------------------------------------------------------------
class CifarResNet(nn.Module):
    """6n+2 layers: a 3x3 stem, three stages of n blocks (widths w, 2w, 4w), global pooling, ``fc``.

    Args:
        depth: 6n+2 weighted layers (20, 32, 44, 56, 110, ... ; 8 is the smallest, n = 1).
        num_classes: outputs of ``fc``.
        in_channels: 1 for MNIST, 3 for CIFAR.
        block: :class:`BasicBlock` (residual) or :class:`PlainBlock` (no shortcuts).
        shortcut: ``"A"`` (zero-padding identity, parameter-free; the paper's CIFAR choice) or
            ``"B"`` (1x1 projection + BatchNorm where the shape changes). Ignored for plain nets.
        width: channels of the first stage (16 in the paper).
        zero_init_residual: start every residual branch at zero.
    """

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        in_channels: int = 3,
        block: type[BasicBlock] | type[PlainBlock] = BasicBlock,
        shortcut: Shortcut = "A",
        width: int = 16,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has 6n+2 layers (8, 14, 20, 32, 44, 56, 110, ...); got depth={depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (zero padding) or 'B' (projection), not {shortcut!r}")
        n = (depth - 2) // 6
        self.shortcut = shortcut
        self.inplanes = width
        self.conv1 = conv3x3(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, n)
        self.layer2 = self._make_layer(block, 2 * width, n, stride=2)
        self.layer3 = self._make_layer(block, 4 * width, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(4 * width, num_classes)
        _init_weights(self, zero_init_residual)

    def _make_layer(self, block: type[BasicBlock] | type[PlainBlock], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if block is not PlainBlock and (stride != 1 or self.inplanes != planes):
            if self.shortcut == "A":
                downsample = PadShortcut(self.inplanes, planes, stride)
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        stage += [block(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, 32, 32)
        x = self.relu(self.bn1(self.conv1(x)))  # (B, w, 32, 32)
        x = self.layer1(x)  # (B, w, 32, 32)
        x = self.layer2(x)  # (B, 2w, 16, 16)
        x = self.layer3(x)  # (B, 4w, 8, 8)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 4w)
        return self.fc(x)  # (B, num_classes) logits


def cifar_resnet(depth: int, num_classes: int = 10, in_channels: int = 3, **kwargs) -> CifarResNet:
    """A residual CIFAR network of any depth 6n+2 (see :class:`CifarResNet` for the options)."""
    return CifarResNet(depth, num_classes, in_channels, block=BasicBlock, **kwargs)


def plain_cifar(depth: int, num_classes: int = 10, in_channels: int = 3, **kwargs) -> CifarResNet:
    """The same stack as :func:`cifar_resnet` with every shortcut removed (the paper's "plain" nets)."""
    kwargs.pop("shortcut", None)
    return CifarResNet(depth, num_classes, in_channels, block=PlainBlock, **kwargs)


def resnet20(num_classes: int = 10, in_channels: int = 3, **kwargs) -> CifarResNet:
    """ResNet-20 (He et al. 2016, Table 6): n = 3; 0.27M parameters with option-A shortcuts."""
    return cifar_resnet(20, num_classes, in_channels, **kwargs)


def resnet32(num_classes: int = 10, in_channels: int = 3, **kwargs) -> CifarResNet:
    """ResNet-32 (He et al. 2016, Table 6): n = 5; 0.46M parameters."""
    return cifar_resnet(32, num_classes, in_channels, **kwargs)


def resnet44(num_classes: int = 10, in_channels: int = 3, **kwargs) -> CifarResNet:
    """ResNet-44 (He et al. 2016, Table 6): n = 7; 0.66M parameters."""
    return cifar_resnet(44, num_classes, in_channels, **kwargs)


def resnet56(num_classes: int = 10, in_channels: int = 3, **kwargs) -> CifarResNet:
    """ResNet-56 (He et al. 2016, Table 6): n = 9; 0.85M parameters."""
    return cifar_resnet(56, num_classes, in_channels, **kwargs)


def resnet110(num_classes: int = 10, in_channels: int = 3, **kwargs) -> CifarResNet:
    """ResNet-110 (He et al. 2016, Table 6): n = 18; 1.7M parameters."""
    return cifar_resnet(110, num_classes, in_channels, **kwargs)
