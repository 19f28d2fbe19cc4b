"""A slim DCGAN for 1x28x28 digits (Radford, Metz & Chintala 2016).

DCGAN conventions kept here: no pooling (strided convolutions down, strided transposed
convolutions up), batch norm in both nets except the generator's output and the discriminator's
input layer, ReLU in the generator with ``tanh`` on its output, LeakyReLU(0.2) in the
discriminator, and weights drawn from N(0, 0.02).

Two stride-2 steps link 7x7 and 28x28 (7 -> 14 -> 28) in both nets, so the generator's images
have exactly the size the discriminator reads. At ``width=64`` both nets have the reference
article's layer sizes. The discriminator returns a **logit**: pair it with
``nn.BCEWithLogitsLoss`` (see :mod:`companion.gan`), never with ``log(sigmoid(.))``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

IMAGE_SHAPE = (1, 28, 28)


def dcgan_init_(module: nn.Module) -> None:
    """DCGAN initialisation: conv / linear / embedding weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02).

    For the conditional nets' label embeddings this scale matters: at N(0, 1) the generator's label
    code outweighs the noise from the first step and each digit collapses to one image.
    """
    if isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Double the spatial size: 4x4 transposed convolution, stride 2, padding 1 -> BN -> ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def down_block(in_channels: int, out_channels: int, norm: bool = True) -> nn.Sequential:
    """Halve the spatial size: 4x4 convolution, stride 2, padding 1 -> (BN) -> LeakyReLU(0.2)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class DCGANGenerator(nn.Module):
    """Noise ``z`` (B, z_dim) -> images (B, 1, 28, 28) in [-1, 1].

    The reference article's generator with its size defect fixed: project z to (4w, 7, 7) -> BN
    -> ReLU -> up to (2w, 14, 14) -> up to (w, 28, 28) -> 3x3 convolution to (1, 28, 28) -> tanh,
    with ``w = width``. Width 64 gives the reference's layer sizes (256, 128 and 64 channels); its
    third stride-2 transposed convolution (28 -> 56) is replaced by a stride-1 convolution that only
    maps channels to a pixel. Width 16 costs about 1/16 of that and trains on a CPU in seconds per
    epoch.
    """

    def __init__(self, z_dim: int = 100, width: int = 64) -> None:
        super().__init__()
        if z_dim < 1 or width < 1:
            raise ValueError(f"z_dim and width must be positive; got z_dim={z_dim}, width={width}")
        self.z_dim = z_dim
        self.width = width
        self.project = nn.Sequential(
            nn.Linear(z_dim, 4 * width * 7 * 7, bias=False),
            nn.Unflatten(1, (4 * width, 7, 7)),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(inplace=True),
        )
        self.up1 = up_block(4 * width, 2 * width)
        self.up2 = up_block(2 * width, width)
        self.to_image = nn.Conv2d(width, IMAGE_SHAPE[0], 3, padding=1)
        self.apply(dcgan_init_)

    def forward(self, z: Tensor) -> Tensor:  # (B, z_dim)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"DCGANGenerator expects noise of shape (B, {self.z_dim}); got {tuple(z.shape)}")
        return self.decode(z)

    def decode(self, code: Tensor) -> Tensor:  # (B, length the projection reads)
        """The layers after the input check: code -> image (the conditional generator reuses them)."""
        x = self.project(code)  # (B, 4w, 7, 7)
        x = self.up1(x)  # (B, 2w, 14, 14)
        x = self.up2(x)  # (B, w, 28, 28)
        return torch.tanh(self.to_image(x))  # (B, 1, 28, 28) in [-1, 1]

    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` standard-normal noise vectors on the generator's device."""
        device = next(self.parameters()).device
        return torch.randn(n, self.z_dim, generator=generator).to(device)


class DCGANDiscriminator(nn.Module):
    """Images (B, 1, 28, 28) in [-1, 1] -> one logit per image (B,): positive means "real".

    conv down to (w, 14, 14) -> LeakyReLU (no BN on the input layer) -> down to (2w, 7, 7) -> BN
    -> LeakyReLU -> linear to a logit. No sigmoid: the loss applies it, stably.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be positive; got {width}")
        self.width = width
        self.down1 = down_block(IMAGE_SHAPE[0], width, norm=False)
        self.down2 = down_block(width, 2 * width)
        self.classify = nn.Linear(2 * width * 7 * 7, 1)
        self.apply(dcgan_init_)

    def forward(self, x: Tensor) -> Tensor:  # (B, 1, 28, 28)
        if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(
                f"DCGANDiscriminator expects images of shape (B, 1, 28, 28); got {tuple(x.shape)}. "
                "A generator making other sizes must be fixed, not reshaped to fit."
            )
        x = self.down1(x)  # (B, w, 14, 14)
        x = self.down2(x)  # (B, 2w, 7, 7)
        return self.classify(x.flatten(1)).squeeze(1)  # (B,) logits


def dcgan(z_dim: int = 100, width: int = 64, d_width: int | None = None) -> nn.ModuleDict:
    """Generator and discriminator in one ``nn.ModuleDict`` (keys ``"G"``, ``"D"``) for the Trainer.

    ``d_width`` (default: ``width``) sets the discriminator's width separately.
    """
    return nn.ModuleDict({"G": DCGANGenerator(z_dim, width), "D": DCGANDiscriminator(d_width or width)})


# --------------------------------------------------------------------------------------------
# Class-conditional DCGAN: both nets see the digit label
# --------------------------------------------------------------------------------------------
def check_labels(labels: Tensor, batch: int, num_classes: int, who: str) -> None:
    """Refuse labels that an ``nn.Embedding`` would reject with an opaque index error (or, for
    floats, accept silently): they must be integers of shape (B,) in ``[0, num_classes - 1]``."""
    integer = isinstance(labels, Tensor) and not (
        labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool)
    if not integer:
        kind = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"{who} expects integer class labels (torch.long) in [0, {num_classes - 1}]; "
                         f"got {kind}. Pass the dataset's digit labels, e.g. torch.tensor([3, 7]), "
                         "not one-hot or float labels.")
    if labels.shape != (batch,):
        raise ValueError(f"{who} expects one label per image, shape ({batch},); "
                         f"got labels of shape {tuple(labels.shape)}")
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        shown = sorted(set(labels[bad].tolist()))[:10]
        raise ValueError(f"{who} has {num_classes} classes, so labels must lie in [0, {num_classes - 1}]; "
                         f"got label(s) {shown}")


class ConditionalDCGANGenerator(DCGANGenerator):
    """Noise ``z`` (B, z_dim) and digit labels ``y`` (B,) -> images (B, 1, 28, 28) in [-1, 1].

    The conditional GAN of Mirza & Osindero (2014) on the DCGAN above: a learned embedding of the
    label (``embed_dim`` numbers per class) is concatenated to ``z`` before the projection, so the
    same ``z`` under another label gives another digit. Everything after the projection is
    :class:`DCGANGenerator`'s.
    """

    def __init__(self, z_dim: int = 100, width: int = 64, num_classes: int = 10, embed_dim: int = 50) -> None:
        if num_classes < 2 or embed_dim < 1:
            raise ValueError(f"num_classes must be >= 2 and embed_dim >= 1; got {num_classes}, {embed_dim}")
        super().__init__(z_dim + embed_dim, width)
        self.z_dim = z_dim  # the noise length callers draw; the projection reads z_dim + embed_dim
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, embed_dim)
        dcgan_init_(self.embed)  # N(0, 0.02): the label starts quiet next to z, see dcgan_init_

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:  # (B, z_dim), (B,)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"ConditionalDCGANGenerator expects noise of shape (B, {self.z_dim}); "
                             f"got {tuple(z.shape)}")
        check_labels(labels, z.shape[0], self.num_classes, "ConditionalDCGANGenerator")
        return self.decode(torch.cat([z, self.embed(labels)], dim=1))  # (B, 1, 28, 28)


class ProjectionDiscriminator(DCGANDiscriminator):
    """Images (B, 1, 28, 28) and labels (B,) -> one logit per image (B,): "real *and* of this class".

    The projection discriminator of Miyato & Koyama (2018): with the features ``phi(x)`` that
    :class:`DCGANDiscriminator` feeds its linear layer, the logit is ``psi(phi(x)) + <e_y, phi(x)>``,
    where ``e_y`` is a learned embedding of the label. An image that looks real but does not match
    its label loses the second term, so the generator is pushed towards the requested digit.
    """

    def __init__(self, width: int = 64, num_classes: int = 10) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}")
        super().__init__(width)
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, 2 * width * 7 * 7)
        dcgan_init_(self.embed)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:  # (B, 1, 28, 28), (B,)
        if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"ProjectionDiscriminator expects images of shape (B, 1, 28, 28); "
                             f"got {tuple(x.shape)}")
        check_labels(labels, x.shape[0], self.num_classes, "ProjectionDiscriminator")
        phi = self.down2(self.down1(x)).flatten(1)  # (B, 2w * 7 * 7)
        return self.classify(phi).squeeze(1) + (self.embed(labels) * phi).sum(1)  # (B,) logits


def conditional_dcgan(z_dim: int = 100, width: int = 64, d_width: int | None = None, num_classes: int = 10,
                      embed_dim: int = 50) -> nn.ModuleDict:
    """Conditional generator and projection discriminator in one ``nn.ModuleDict`` ("G", "D")."""
    return nn.ModuleDict({"G": ConditionalDCGANGenerator(z_dim, width, num_classes, embed_dim),
                          "D": ProjectionDiscriminator(d_width or width, num_classes)})
