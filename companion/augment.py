"""Data augmentation on whole batches: one random affine warp per image, in one ``grid_sample``.

``torchvision.transforms.v2.RandomAffine`` inside a ``Dataset`` draws and applies one warp per
image in Python; on a 2-core CPU that costs as much as training the small MNIST networks
themselves (``benchmarks/bench_augment.py``). Called on a batch tensor it would apply the *same*
warp to every image. :class:`RandomAffineBatch` draws independent parameters per image, like
``RandomAffine``, and warps the whole batch at once. :func:`affine_batch` is the deterministic
warp; it follows ``torchvision.transforms.v2.functional.affine``'s conventions (rotation about
the image centre, counter-clockwise for positive angles, translation in pixels, zero fill) and
the tests check it against that function image by image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .train import StepFn, supervised_step

INTERPOLATIONS = ("bilinear", "nearest")


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        dtype = images.dtype if isinstance(images, Tensor) else ""
        raise ValueError(f"expected a float batch of images (B, C, H, W); got {shape} {dtype}. "
                         "Apply per-image transforms in the Dataset, batch transforms to loader batches.")


def affine_theta(angle: Tensor, translate: Tensor, scale: Tensor, height: int, width: int) -> Tensor:
    """The (B, 2, 3) matrices for ``F.affine_grid`` that rotate by ``angle`` degrees, shift by
    ``translate`` (B, 2) pixels and zoom by ``scale`` about the image centre.

    ``affine_grid`` maps *output* positions to *input* positions, so this is the inverse warp:
    shift back, then undo the rotation and zoom. Normalised coordinates run over [-1, 1] in each
    direction, hence the ``width / height`` factors for non-square images.
    """
    rad = torch.deg2rad(angle)  # (B,)
    cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale  # inverse rotation and zoom
    tx, ty = translate[:, 0], translate[:, 1]  # (B,) pixels
    row_x = torch.stack([cos, sin * height / width, -(cos * tx + sin * ty) * 2 / width], dim=1)
    row_y = torch.stack([-sin * width / height, cos, (sin * tx - cos * ty) * 2 / height], dim=1)
    return torch.stack([row_x, row_y], dim=1)  # (B, 2, 3)


def affine_batch(images: Tensor, angle: Tensor, translate: Tensor, scale: Tensor,
                 interpolation: str = "bilinear") -> Tensor:
    """Warp each image of a batch (B, C, H, W) with its own rotation, translation and zoom.

    ``angle`` (B,) in degrees, ``translate`` (B, 2) in pixels as (x, y), ``scale`` (B,).
    Pixels that come from outside the image are 0.
    """
    _check_images(images)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}; got {interpolation!r}")
    b, _, h, w = images.shape
    if angle.shape != (b,) or scale.shape != (b,) or translate.shape != (b, 2):
        raise ValueError(f"for a batch of {b} images expected angle ({b},), translate ({b}, 2) and scale ({b},); "
                         f"got {tuple(angle.shape)}, {tuple(translate.shape)} and {tuple(scale.shape)}")
    theta = affine_theta(angle, translate, scale, h, w).to(images)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(images, grid, mode=interpolation, padding_mode="zeros", align_corners=False)


@dataclass
class RandomAffineBatch:
    """Random rotation, shift and zoom, drawn independently for every image of a batch.

    The same parameters as ``v2.RandomAffine(degrees, translate=(t, t), scale=scale)``: an angle
    uniform in [-degrees, degrees], a shift uniform in +-translate of the width and height,
    rounded to whole pixels, and a zoom uniform in ``scale``. Random numbers come from the global
    torch RNG (which the ``Trainer`` checkpoints), or from ``generator`` when given.
    """

    degrees: float = 10.0  # rotation range; digits rotated by much more start to change class (6 / 9)
    translate: float = 0.1  # fraction of the image size; 0.1 of 28 px is up to 3 px
    scale: tuple[float, float] = (0.9, 1.1)  # zoom range
    interpolation: str = "bilinear"  # "nearest" keeps pixel values exactly, "bilinear" looks smoother

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if self.degrees < 0 or not 0 <= self.translate <= 1 or not 0 < lo <= hi:
            raise ValueError(f"need degrees >= 0, 0 <= translate <= 1 and 0 < scale[0] <= scale[1]; got "
                             f"degrees={self.degrees}, translate={self.translate}, scale={self.scale}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}; got {self.interpolation!r}")

    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Draw ``n`` angles (n,), pixel shifts (n, 2) and zooms (n,)."""
        u = torch.rand(n, 4, generator=generator, dtype=torch.float64)  # (n, 4) uniform in [0, 1)
        angle = (2 * u[:, 0] - 1) * self.degrees
        limits = torch.tensor([self.translate * width, self.translate * height], dtype=torch.float64)
        translate = torch.round((2 * u[:, 1:3] - 1) * limits)
        lo, hi = self.scale
        scale = lo + (hi - lo) * u[:, 3]
        return angle, translate, scale

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_images(images)
        angle, translate, scale = self.sample(images.shape[0], images.shape[2], images.shape[3], generator)
        return affine_batch(images, angle, translate, scale, self.interpolation)


def augmented_step(transform: Callable[[Tensor], Tensor], step_fn: StepFn = supervised_step) -> StepFn:
    """A ``Trainer`` step that applies ``transform`` to each training batch's images, then runs
    ``step_fn`` (the supervised step by default). Evaluation batches are never augmented."""

    def step(trainer, batch):
        images, *rest = trainer.to_device(batch)
        return step_fn(trainer, (transform(images), *rest))

    return step

