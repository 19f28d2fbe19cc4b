"""Command-line predictor: ``python -m companion.predict IMAGE... --weights PATH [--top K]``.

It loads a weights file written by :func:`companion.export.save_weights`, rebuilds the model named
in its metadata, turns each image file (any size, color or grayscale, PNG/JPEG/...) into the input
the model was trained on, and prints the top classes with their probabilities, one line per image::

    digit.png: 7 (0.981)  9 (0.012)  1 (0.004)

Preprocessing follows the metadata record, so it matches training:

1. decode the file and convert it to the model's channels (``L`` gray for 1 channel, ``RGB`` for 3);
2. if the metadata says the training images were light strokes on a dark background (MNIST) and
   the picture has a light background (ink on paper), invert it;
3. pad to a square with the background value (no stretching), resize to the input size;
4. scale to [0, 1] and normalise with the training mean and std.

Image files are decoded first (without importing torch, so a wrong path fails in a fraction of a
second), then the weights are loaded. Bad input never produces a traceback: the message says which file and what to do, on stderr, and
the exit code is non-zero (1 for a bad image or weights file, 2 for bad command-line usage).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported only once an image has been read: bad files fail fast
    from PIL import Image
    from torch import Tensor, nn


class ImageError(ValueError):
    """An image file could not be used; the message names the file and the reason."""


# --------------------------------------------------------------------------------------------
# Image file -> model input
# --------------------------------------------------------------------------------------------
def open_image(path: str | os.PathLike) -> "Image.Image":
    """Decode an image file completely (no torch needed), with clear errors for bad files."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: is not a file (a folder?); pass image files")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            img.load()
            image = img.copy()
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file that Pillow can read (PNG, JPEG, BMP, TIFF, ...)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: the image is damaged or truncated ({exc})") from None
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{path}: the image has no pixels ({image.width}x{image.height})")
    return image


def to_array(image: "Image.Image", channels: int) -> np.ndarray:
    """A decoded picture as ``uint8`` (H, W, channels): gray ``L`` for 1 channel, ``RGB`` for 3."""
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise ImageError(f"the model expects {channels} channels; only 1 (gray) and 3 (RGB) are supported")
    array = np.array(image.convert(mode))  # a writable copy
    return array[:, :, None] if array.ndim == 2 else array


def read_image(path: str | os.PathLike, channels: int) -> np.ndarray:
    """Decode an image file to ``uint8`` (H, W, channels) with clear errors for bad files."""
    return to_array(open_image(path), channels)


def _border_mean(image: "Tensor") -> float:
    """Mean brightness of the outermost rows and columns of a (C, H, W) image in [0, 1]."""
    import torch

    edge = torch.cat([image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], dim=1)
    return float(edge.mean())


def to_model_input(array: np.ndarray, metadata: Mapping[str, Any]) -> Tensor:
    """uint8 (H, W, C) picture -> float (C, H', W') in [0, 1] at the model's input size."""
    import torch
    import torch.nn.functional as F

    channels, height, width = metadata["input_size"]
    pixels = np.require(array, np.uint8, ["W"])  # copies only a read-only or non-uint8 array
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255  # (C, H, W), a new tensor
    if metadata.get("light_on_dark", False) and _border_mean(image) > 0.5:
        image = 1.0 - image  # ink on paper -> light strokes on black, as in MNIST
    background = _border_mean(image)
    _, h, w = image.shape
    side = max(h, w)  # pad to a square so the content keeps its aspect ratio
    top, left = (side - h) // 2, (side - w) // 2
    square = torch.full((channels, side, side), background)
    square[:, top:top + h, left:left + w] = image
    resized = F.interpolate(square[None], size=(height, width), mode="bilinear", antialias=True,
                            align_corners=False)[0]
    return resized.clamp_(0, 1)


def load_images(paths: Sequence[str | os.PathLike], metadata: Mapping[str, Any]) -> Tensor:
    """Several files -> one normalised batch ``(N, C, H, W)`` ready for the model."""
    return images_to_batch([open_image(p) for p in paths], metadata)


def images_to_batch(images: Sequence["Image.Image"], metadata: Mapping[str, Any]) -> "Tensor":
    """Decoded pictures -> one normalised batch ``(N, C, H, W)`` ready for the model."""
    import torch

    from .export import preprocess

    channels = metadata["input_size"][0]
    batch = torch.stack([to_model_input(to_array(image, channels), metadata) for image in images])
    return preprocess(batch, metadata)


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------
def top_k(model: "nn.Module", batch: "Tensor", classes: Sequence[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """For each image, the ``k`` most probable classes as ``(name, probability)``."""
    import torch

    model.eval()
    with torch.no_grad():
        probs = model(batch).softmax(dim=1)  # (N, classes)
    k = min(k, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    return [[(classes[i], float(p)) for p, i in zip(row_p, row_i)] for row_p, row_i in zip(values, indices)]


def format_line(path: str | os.PathLike, ranked: Sequence[tuple[str, float]]) -> str:
    return f"{path}: " + "  ".join(f"{name} ({p:.3f})" for name, p in ranked)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m companion.predict",
                                description="Classify image files with a model saved by companion.export.save_weights.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...; any size, color or gray)")
    p.add_argument("--weights", required=True, metavar="PATH", help="a .safetensors or .pt file with metadata")
    p.add_argument("--top", type=int, default=3, metavar="K", help="how many classes to print per image (default 3)")
    return p


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 bad image/weights, 2 usage)."""
    parser = _parser()
    args = parser.parse_args(argv)  # exits with code 2 and a usage message on bad arguments
    if args.top < 1:
        parser.error(f"--top must be at least 1, got {args.top}")
    status = 0
    good: list[tuple[str, Image.Image]] = []
    for path in args.images:  # report every bad file, predict every good one
        try:
            good.append((path, open_image(path)))
        except ImageError as exc:
            _fail(str(exc))
            status = 1
    if not good:
        return status
    from .export import ExportError, load_model  # imports torch

    try:
        model, meta = load_model(args.weights)
        batch = images_to_batch([image for _, image in good], meta)
    except (ExportError, ImageError) as exc:
        _fail(str(exc))
        return 1
    for (path, _), row in zip(good, top_k(model, batch, meta["classes"], args.top)):
        print(format_line(path, row))
    return status


def _entry() -> int:
    try:
        return main()
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except Exception as exc:  # last resort: a message, not a traceback
        if os.environ.get("COMPANION_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (set COMPANION_DEBUG=1 to see the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(_entry())
