"""Small CNNs for 3x32x32 color images (CIFAR-10's shape).

Two networks from the book's reference material, corrected:

* :class:`CifarConvNet` -- two 3x3 conv / 2x2 max-pool stages and two linear layers (32 -> 16 -> 8
  pixels, so ``fc1`` reads 64 * 8 * 8 features).
* :class:`ThreeConvNet` -- three such stages (32 -> 16 -> 8 -> 4 pixels). The reference sized its
  ``fc1`` for 8 x 8 maps (128 * 8 * 8) although three pools leave 4 x 4, hid the mismatch with
  ``x.view(-1, 128 * 8 * 8)`` (which silently folds four images into one row), and ended
  ``forward`` in a call to a function that does not exist. Here ``fc1`` reads 128 * 4 * 4 and the
  network returns logits for ``nn.CrossEntropyLoss``.

Both follow the plain conv -> ReLU -> pool pattern of LeCun et al. (1998) and Krizhevsky et al. (2012).
"""

from __future__ import annotations

from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 convolution with padding 1: keeps the height and width."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class ConvStage(nn.Sequential):
    """conv 3x3 -> ReLU -> max-pool 2x2: ``(B, C_in, H, W)`` -> ``(B, C_out, H/2, W/2)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(conv3x3(in_channels, out_channels), nn.ReLU(inplace=True), nn.MaxPool2d(2))


def _check_input(x: Tensor, in_channels: int, size: int, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != in_channels or x.shape[-2:] != (size, size):
        raise ValueError(
            f"{name} expects images of shape (B, {in_channels}, {size}, {size}); got {tuple(x.shape)}. "
            "Add the batch axis with x.unsqueeze(0), and resize or pad other image sizes."
        )


class CifarConvNet(nn.Module):
    """Two conv stages and two linear layers for 3x32x32 images (the reference's CIFAR-10 ConvNet)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        self.features = nn.Sequential(ConvStage(in_channels, 32), ConvStage(32, 64))
        side = image_size // 4  # two 2x2 pools
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, 32, 32)
        _check_input(x, self.in_channels, self.image_size, type(self).__name__)
        x = self.features(x)  # (B, 64, 8, 8)
        x = x.flatten(1)  # (B, 4096): flatten(1) keeps the batch axis, unlike view(-1, ...)
        x = self.fc1(x).relu()  # (B, 128)
        return self.fc2(x)  # (B, 10) logits


class ThreeConvNet(nn.Module):
    """Three conv stages, ``fc1`` 128*4*4 -> 512, ``fc2`` 512 -> classes (the reference's classifier, fixed)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        self.features = nn.Sequential(ConvStage(in_channels, 32), ConvStage(32, 64), ConvStage(64, 128))
        side = image_size // 8  # three 2x2 pools: 32 -> 16 -> 8 -> 4
        self.fc1 = nn.Linear(128 * side * side, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, 32, 32)
        _check_input(x, self.in_channels, self.image_size, type(self).__name__)
        x = self.features(x)  # (B, 128, 4, 4)
        x = x.flatten(1)  # (B, 2048)
        x = self.fc1(x).relu()  # (B, 512)
        return self.fc2(x)  # (B, 10) logits


def cifar_convnet(num_classes: int = 10, **kwargs) -> CifarConvNet:
    """The two-stage CIFAR-10 ConvNet (545,098 parameters for 10 classes)."""
    return CifarConvNet(num_classes, **kwargs)


def three_conv_net(num_classes: int = 10, **kwargs) -> ThreeConvNet:
    """The corrected three-stage classifier (1,147,466 parameters for 10 classes)."""
    return ThreeConvNet(num_classes, **kwargs)
