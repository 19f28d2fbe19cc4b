"""The classic line of image classifiers: LeNet-5, AlexNet, VGG and GoogLeNet.

Each model is a small class plus a builder, written so that reading ``forward`` follows the paper's
figure. AlexNet, VGG and GoogLeNet use torchvision's module names and layer sizes, so their
``state_dict`` keys and parameter counts equal torchvision's (``alexnet``, ``vgg11``/``vgg16``,
``googlenet(aux_logits=False)``): torchvision's weights load into them with ``strict=True``.
Only LeNet-5 is small enough to train on a CPU in this book; the others are built, counted and run
on a small batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "LeNet5", "lenet5",
    "AlexNet", "alexnet",
    "VGG", "VGG_CONFIGS", "make_vgg_layers", "vgg11", "vgg16",
    "BasicConv2d", "Inception", "GoogLeNet", "googlenet",
]


# --------------------------------------------------------------------------------------------
# LeNet-5 (LeCun et al. 1998)
# --------------------------------------------------------------------------------------------
class LeNet5(nn.Module):
    """LeNet-5 from "Gradient-based learning applied to document recognition" (LeCun et al. 1998).

    C1 conv 6@5x5 -> S2 subsample -> C3 conv 16@5x5 -> S4 subsample -> C5 120 -> F6 84 -> output.
    The paper feeds 32x32 images; MNIST's 28x28 digits are padded by 2 in C1, which is the same
    thing. Two simplifications, both usual: C3 connects every input map to every output map (the
    paper used a hand-made sparse table), and the output is a plain linear layer returning
    **logits** (the paper used Euclidean RBF units). Subsampling is average pooling, the
    activation ``tanh`` as in the paper; pass ``activation=nn.ReLU`` for the modern variant.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, activation: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),  # C1
            activation(),
            nn.AvgPool2d(2),  # S2
            nn.Conv2d(6, 16, kernel_size=5),  # C3
            activation(),
            nn.AvgPool2d(2),  # S4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),  # C5: a 5x5 "convolution" over a 5x5 map is a full connection
            activation(),
            nn.Linear(120, 84),  # F6
            activation(),
            nn.Linear(84, num_classes),  # output layer (logits)
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, 1, 28, 28)
        x = self.features(x)  # (B, 16, 5, 5)
        return self.classifier(x)  # (B, num_classes)


def lenet5(num_classes: int = 10, in_channels: int = 1, activation: type[nn.Module] = nn.Tanh) -> LeNet5:
    """LeNet-5 for 28x28 images; 61,706 parameters with 10 classes and one input channel."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, activation=activation)


# --------------------------------------------------------------------------------------------
# AlexNet (Krizhevsky et al. 2012)
# --------------------------------------------------------------------------------------------
class AlexNet(nn.Module):
    """AlexNet from "ImageNet classification with deep convolutional neural networks" (2012).

    Five convolutions with ReLU and overlapping max-pooling, then three fully connected layers with
    dropout. This is the single-GPU variant torchvision ships (64-192-384-256-256 filters, from
    Krizhevsky's 2014 "one weird trick" paper): the 2012 network split its 96-256-384-384-256
    filters across two GPUs and used local response normalisation, both omitted here.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # (B, 64, 55, 55)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 64, 27, 27)
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # (B, 192, 27, 27)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 192, 13, 13)
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # (B, 384, 13, 13)
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # (B, 256, 13, 13)
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # (B, 256, 13, 13)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 256, 6, 6)
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))  # any input size >= 63 px -> 6x6
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, 224, 224)
        x = self.avgpool(self.features(x))  # (B, 256, 6, 6)
        return self.classifier(torch.flatten(x, 1))  # (B, num_classes)


def alexnet(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """AlexNet (torchvision layout); 61,100,840 parameters with 1000 classes."""
    return AlexNet(num_classes=num_classes, dropout=dropout)


# --------------------------------------------------------------------------------------------
# VGG (Simonyan & Zisserman 2015)
# --------------------------------------------------------------------------------------------
#: Output channels of each 3x3 convolution, "M" for a 2x2 max-pool (the paper's Table 1).
VGG_CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # VGG-11
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],  # VGG-16
}


def make_vgg_layers(config: Sequence[int | str], in_channels: int = 3, batch_norm: bool = False) -> nn.Sequential:
    """Stack 3x3 convolutions (padding 1, so they keep the size) and 2x2 max-pools (halve it)."""
    layers: list[nn.Module] = []
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        in_channels = int(v)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG from "Very deep convolutional networks for large-scale image recognition" (2015).

    One idea, repeated: only 3x3 convolutions. Two stacked 3x3 layers see a 5x5 window and three see
    7x7, with fewer weights and more non-linearities than one large kernel. Five stages, each ending
    in a max-pool that halves the size, then the same three fully connected layers as AlexNet.
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, 224, 224)
        x = self.avgpool(self.features(x))  # (B, 512, 7, 7)
        return self.classifier(torch.flatten(x, 1))  # (B, num_classes)


def vgg11(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    """VGG-11 (configuration A); 132,863,336 parameters with 1000 classes."""
    return VGG(make_vgg_layers(VGG_CONFIGS["A"], batch_norm=batch_norm), num_classes=num_classes)


def vgg16(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    """VGG-16 (configuration D); 138,357,544 parameters with 1000 classes."""
    return VGG(make_vgg_layers(VGG_CONFIGS["D"], batch_norm=batch_norm), num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# GoogLeNet (Szegedy et al. 2015)
# --------------------------------------------------------------------------------------------
class BasicConv2d(nn.Module):
    """Convolution (no bias) -> batch norm -> ReLU: the unit every GoogLeNet layer is made of."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """The Inception block (Szegedy et al. 2015, Figure 2b): four branches side by side.

    1x1 | 1x1 -> 3x3 | 1x1 -> "5x5" | 3x3 max-pool -> 1x1, concatenated along channels. The 1x1
    convolutions before the large kernels reduce the channel count first, which is what keeps the
    block cheap. ``wide_kernel`` is the size of the "5x5" branch: torchvision's GoogLeNet (and so its
    ImageNet weights) uses 3, the paper 5; the default follows torchvision so the weights load.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        wide_kernel: int = 3,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=wide_kernel, padding=wide_kernel // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W)
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, dim=1)  # (B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)


class GoogLeNet(nn.Module):
    """GoogLeNet from "Going deeper with convolutions" (Szegedy et al. 2015), without auxiliary heads.

    A stem of ordinary convolutions, nine Inception blocks in three stages, then global average
    pooling and a single linear layer (Network-in-Network's idea) instead of AlexNet's 4096-wide
    fully connected layers. Like torchvision's version it adds batch norm to every convolution
    (the 2014 network predates batch norm) and uses 3x3 kernels in the "5x5" branch.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, wide_kernel: int = 3) -> None:
        super().__init__()
        k = wide_kernel
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj: the paper's Table 1
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32, k)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64, k)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64, k)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64, k)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64, k)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64, k)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128, k)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128, k)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128, k)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, 224, 224)
        x = self.maxpool1(self.conv1(x))  # (B, 64, 56, 56)
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (B, 192, 28, 28)
        x = self.inception3b(self.inception3a(x))  # (B, 480, 28, 28)
        x = self.maxpool3(x)  # (B, 480, 14, 14)
        x = self.inception4a(x)
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        x = self.inception4e(x)  # (B, 832, 14, 14)
        x = self.maxpool4(x)  # (B, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))  # (B, 1024, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1024)
        return self.fc(self.dropout(x))  # (B, num_classes)


def googlenet(num_classes: int = 1000, wide_kernel: int = 3) -> GoogLeNet:
    """GoogLeNet (torchvision layout, no auxiliary heads); 6,624,904 parameters with 1000 classes.

    ``wide_kernel=5`` gives the paper's 5x5 kernels instead (and weights torchvision cannot load).
    """
    return GoogLeNet(num_classes=num_classes, wide_kernel=wide_kernel)
