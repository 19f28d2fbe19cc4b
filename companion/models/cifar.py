"""Small CNNs for 3x32x32 color images (CIFAR-10's shape).

Two networks from the book's reference material, corrected:

* :class:`CifarConvNet` -- two 3x3 conv / 2x2 max-pool stages and two linear layers (32 -> 16 -> 8
  pixels, so ``fc1`` reads 64 * 8 * 8 features).
* :class:`ThreeConvNet` -- three such stages (32 -> 16 -> 8 -> 4 pixels). The reference sized its
  ``fc1`` for 8 x 8 maps (128 * 8 * 8) although three pools leave 4 x 4, hid the mismatch with
  ``x.view(-1, 128 * 8 * 8)`` (which silently folds four images into one row), and ended
  ``forward`` in a call to a function that does not exist. Here ``fc1`` reads 128 * 4 * 4 and the
  network returns logits for ``nn.CrossEntropyLoss``.

Both are a :class:`StagedConvNet` (conv stages, then two linear layers), and follow the plain
conv -> ReLU -> pool pattern of LeCun et al. (1998) and Krizhevsky et al. (2012).
"""

from __future__ import annotations

from collections.abc import Sequence

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


class StagedConvNet(nn.Module):
    """Conv stages that each halve the side, then ``fc1`` -> ReLU -> ``fc2`` to class logits.

    ``channels`` lists each stage's output channels; ``hidden`` is ``fc1``'s width. ``fc1`` reads
    ``channels[-1] * side * side`` features, with ``side = image_size // 2 ** len(channels)``:
    sized from the stages actually built, which is where the reference went wrong.
    """

    def __init__(self, channels: Sequence[int], hidden: int, num_classes: int = 10,
                 in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        side = image_size // 2 ** len(channels)
        if side < 1:
            raise ValueError(f"{len(channels)} pooling stages need images of at least {2 ** len(channels)} pixels; got {image_size}")
        self.in_channels, self.image_size = in_channels, image_size
        widths = (in_channels, *channels)
        self.features = nn.Sequential(*(ConvStage(a, b) for a, b in zip(widths, widths[1:])))
        self.fc1 = nn.Linear(channels[-1] * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, S, S)
        _check_input(x, self.in_channels, self.image_size, type(self).__name__)
        x = self.features(x)  # (B, channels[-1], side, side)
        x = x.flatten(1)  # (B, channels[-1] * side * side): keeps the batch axis, unlike view(-1, ...)
        x = self.fc1(x).relu()  # (B, hidden)
        return self.fc2(x)  # (B, num_classes) logits


class CifarConvNet(StagedConvNet):
    """The reference's CIFAR-10 ConvNet: stages to 32 and 64 channels (32 -> 16 -> 8 pixels),
    ``fc1`` 64*8*8 -> 128, ``fc2`` 128 -> classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__((32, 64), 128, num_classes, in_channels, image_size)


class ThreeConvNet(StagedConvNet):
    """The reference's classifier, fixed: stages to 32, 64 and 128 channels (32 -> 16 -> 8 -> 4
    pixels), ``fc1`` 128*4*4 -> 512, ``fc2`` 512 -> classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__((32, 64, 128), 512, num_classes, in_channels, image_size)


def cifar_convnet(num_classes: int = 10, **kwargs) -> CifarConvNet:
    """The two-stage CIFAR-10 ConvNet (545,098 parameters for 10 classes)."""
    return CifarConvNet(num_classes, **kwargs)


def three_conv_net(num_classes: int = 10, **kwargs) -> ThreeConvNet:
    """The corrected three-stage classifier (1,147,466 parameters for 10 classes)."""
    return ThreeConvNet(num_classes, **kwargs)
