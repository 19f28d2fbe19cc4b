"""Small CNNs for 1x28x28 digits."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MnistCNN(nn.Module):
    """The two-convolution MNIST network of the book's reference material (after LeCun et al. 1998).

    conv 1->10 (5x5) -> max-pool 2 -> ReLU -> conv 10->20 (5x5) -> Dropout2d -> max-pool 2 -> ReLU
    -> fc 320->50 -> ReLU -> dropout -> fc 50->10. Returns **logits**: pair it with
    ``nn.CrossEntropyLoss`` (the reference returned ``log_softmax`` without ``dim``).
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(dropout)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, num_classes)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:  # (B, 1, 28, 28)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (B, 10, 12, 12)
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))  # (B, 20, 4, 4)
        x = x.flatten(1)  # (B, 320)
        x = F.relu(self.fc1(x))  # (B, 50)
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.fc2(x)  # (B, 10) logits


# --------------------------------------------------------------------------------------------
# The book's best MNIST model: small VGG-style blocks with batch normalization
# --------------------------------------------------------------------------------------------
def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (padding 1, no bias: batch norm has one) -> BatchNorm2d -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvBlock(nn.Sequential):
    """Two 3x3 conv-BN-ReLU layers, then a 2x2 max-pool that halves height and width."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            conv_bn_relu(in_channels, out_channels),
            conv_bn_relu(out_channels, out_channels),
            nn.MaxPool2d(2),
        )


class MnistBNNet(nn.Module):
    """The book's best MNIST classifier: two VGG-style blocks with batch normalization.

    Stacks of 3x3 convolutions as in Simonyan & Zisserman (2015), each followed by batch
    normalization (Ioffe & Szegedy 2015); dropout (Srivastava et al. 2014) before the classifier.

    (B, 1, 28, 28) -> block 1->w -> (B, w, 14, 14) -> block w->2w -> (B, 2w, 7, 7)
    -> flatten -> dropout -> fc 2w*7*7 -> num_classes. Returns logits.

    With the default ``width=12`` it has 21,094 parameters. The chapter "Generalization and data
    augmentation" trains it for 12 epochs on the 4,000 offline training digits (random affine
    augmentation, AdamW, one-cycle schedule) to 98.7% on the 1,000 held-out digits.
    """

    def __init__(self, num_classes: int = 10, width: int = 12, dropout: float = 0.3) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive number of channels, got {width}")
        self.features = nn.Sequential(ConvBlock(1, width), ConvBlock(width, 2 * width))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * width * 7 * 7, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, 1, 28, 28)
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"MnistBNNet expects images of shape (B, 1, 28, 28); got {tuple(x.shape)}")
        x = self.features(x)  # (B, 2w, 7, 7)
        return self.classifier(x)  # (B, classes) logits
