"""Dense predictors for the digit scenes: a single-stage grid detector and a small U-Net.

Both answer "where", not only "what", with one prediction per place in the image:

- :class:`GridDetector` predicts, for every cell of a coarse grid, whether an object lies at the
  cell, where exactly its centre is, how large the object is and which class it is -- the single-stage
  design of YOLO (Redmon et al., "You Only Look Once", CVPR 2016), with the focal loss of
  RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017) for the objectness.
  :func:`encode_targets` turns boxes into the grid's targets, :func:`detection_loss` is the loss
  written out, and :func:`decode` turns the grid back into scored boxes.
- :class:`UNet` predicts a class for every pixel: an encoder-decoder with skip connections
  (Ronneberger et al., "U-Net", MICCAI 2015) in the fully convolutional tradition of Long et al.
  ("Fully Convolutional Networks for Semantic Segmentation", CVPR 2015).

Boxes are ``(x1, y1, x2, y2)`` in pixels, the convention of ``torchvision.ops``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

#: Channels of the detector's output before the class logits: objectness, x, y, w, h.
BOX_CHANNELS = 5


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padding 1, no bias: batch norm has one) -> BatchNorm2d -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _check_images(x: Tensor, multiple: int, who: str) -> None:
    """Clear error for input that is not (B, 3, H, W) with H and W divisible by ``multiple``."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{who} expects RGB images of shape (B, 3, H, W); got {tuple(x.shape)}")
    if x.shape[-2] % multiple or x.shape[-1] % multiple:
        raise ValueError(f"{who} needs height and width divisible by {multiple}; "
                         f"got {tuple(x.shape[-2:])} (crop or pad the images)")


def _levels(stride: int) -> int:
    """Number of stride-2 stages for a power-of-two ``stride`` >= 2."""
    if stride < 2 or stride & (stride - 1):
        raise ValueError(f"stride must be a power of two >= 2 (2, 4, 8, ...); got {stride}")
    return int(math.log2(stride))


# --------------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------------
class GridDetector(nn.Module):
    """A YOLO-style single-stage detector: one prediction per cell of a grid (Redmon et al. 2016).

    The backbone halves the image ``log2(stride)`` times (a stride-2 conv-BN-ReLU followed by a
    3x3 conv-BN-ReLU each time, doubling the width up to ``4 * width``), so each cell of the output
    grid sees a ``stride x stride`` patch of the image and, through its receptive field, more.
    A 1x1 convolution then predicts ``5 + num_classes`` numbers per cell:

    - channel 0: objectness logit -- does an object's centre lie in this cell?
    - channels 1-2: logits of the centre's position relative to the cell,
      :func:`centre_offset` ``= 2 sigmoid - 0.5 -> (-0.5, 1.5)`` cell widths;
    - channels 3-4: log of the box's width and height in units of ``stride``;
    - channels 5...: class logits.

    (B, 3, H, W) -> (B, 5 + num_classes, H / stride, W / stride). The objectness bias starts at
    ``-log((1 - p) / p)`` with ``p = 0.01``, the prior of Lin et al. (2017): almost every cell is
    background, and starting there keeps the first steps of the focal loss from being swamped.
    """

    def __init__(self, num_classes: int = 10, width: int = 16, stride: int = 8,
                 prior: float = 0.01) -> None:
        super().__init__()
        if num_classes < 1 or width < 1:
            raise ValueError(f"num_classes and width must be positive; got {num_classes}, {width}")
        self.num_classes, self.stride = num_classes, stride
        layers: list[nn.Module] = []
        channels = 3
        for level in range(_levels(stride)):
            out = width * 2 ** min(level, 2)
            layers += [conv_bn_relu(channels, out, stride=2), conv_bn_relu(out, out)]
            channels = out
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Sequential(conv_bn_relu(channels, channels),
                                  nn.Conv2d(channels, BOX_CHANNELS + num_classes, 1))
        with torch.no_grad():
            self.head[-1].bias[0] = -math.log((1 - prior) / prior)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, H, W)
        _check_images(x, self.stride, "GridDetector")
        return self.head(self.backbone(x))  # (B, 5 + C, H / stride, W / stride)


def cell_centres(grid_h: int, grid_w: int, device: torch.device | None = None) -> Tensor:
    """Top-left corner of every cell in grid units, ``(grid_h, grid_w, 2)`` as ``(x, y)``."""
    ys, xs = torch.meshgrid(torch.arange(grid_h, device=device),
                            torch.arange(grid_w, device=device), indexing="ij")
    return torch.stack([xs, ys], dim=-1).float()


def boxes_to_offsets(boxes: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """Each box as its cell and the cell's regression targets; the inverse of
    :func:`offsets_to_boxes`.

    ``boxes`` (N, 4) -> ``cells`` (N, 2) integer ``(column, row)`` of the cell that holds the box's
    centre, and ``offsets`` (N, 4): the centre's position in the cell in ``[0, 1)`` and
    ``log(w / stride)``, ``log(h / stride)``.
    """
    _check_boxes(boxes)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / stride  # (N, 2) in grid units
    cells = centre.floor()
    size = (boxes[:, 2:] - boxes[:, :2]) / stride  # (N, 2) in grid units
    return cells.long(), torch.cat([centre - cells, size.log()], dim=1)


def offsets_to_boxes(offsets: Tensor, cells: Tensor, stride: int) -> Tensor:
    """Boxes (N, 4) from per-cell ``offsets`` (N, 4) as made by :func:`boxes_to_offsets` and the
    cells' ``(column, row)`` (N, 2)."""
    centre = (cells.to(offsets.dtype) + offsets[:, :2]) * stride  # (N, 2) pixels
    half = offsets[:, 2:].exp() * stride / 2  # (N, 2)
    return torch.cat([centre - half, centre + half], dim=1)


def _check_boxes(boxes: Tensor) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as (x1, y1, x2, y2); got {tuple(boxes.shape)}")
    if bool(((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any()):
        raise ValueError("every box needs x2 > x1 and y2 > y1 (pixels, (x1, y1, x2, y2))")


def _positive_cells(cells: Tensor, offsets: Tensor, grid_size: tuple[int, int],
                    keep_index: bool = False) -> list[tuple[Tensor, ...]]:
    """For N boxes, the cells responsible for them: their centres' cells and, across the nearer
    vertical and the nearer horizontal cell edge, the two neighbouring cells nearest to each
    centre (where they lie in the grid). Three entries ``(cells (M, 2), offsets (M, 4),
    box index (M,))``, the offsets of the same centre measured from each cell."""
    grid_h, grid_w = grid_size
    index = torch.arange(len(cells))
    out = [(cells, offsets, index)]
    for axis, limit in ((0, grid_w), (1, grid_h)):
        step = torch.where(offsets[:, axis] < 0.5, -1, 1)  # towards the nearer edge
        moved, shifted = cells.clone(), offsets.clone()
        moved[:, axis] += step
        shifted[:, axis] -= step  # the same centre seen from the neighbour: in [-0.5, 1.5)
        inside = (moved[:, axis] >= 0) & (moved[:, axis] < limit)
        out.append((moved[inside], shifted[inside], index[inside]))
    return out


def encode_targets(boxes: Tensor, labels: Tensor, grid_size: tuple[int, int],
                   stride: int) -> dict[str, Tensor]:
    """The grid's targets for one image's boxes (N, 4) and labels (N,).

    Returns ``objectness`` (H, W) in {0, 1}, ``offsets`` (4, H, W) and ``labels`` (H, W) with -1
    where no object is assigned. Three cells are responsible for a box: the one that holds its
    centre, as in YOLO, and the two neighbours nearest to the centre, so that each object gives
    three positive examples instead of one (the assignment of YOLOv5). The offsets of the centre
    then lie in ``[-0.5, 1.5)`` cell widths. Where two boxes claim a cell, a box's centre cell
    beats a neighbour and among equals the larger box wins; a box that loses its centre cell
    (:func:`collisions` counts them) can still be found from its neighbours.
    """
    if labels.shape != boxes.shape[:1]:
        raise ValueError(f"labels must have shape ({len(boxes)},) to match the boxes; "
                         f"got {tuple(labels.shape)}")
    grid_h, grid_w = grid_size
    objectness = torch.zeros(grid_h, grid_w)
    offsets = torch.zeros(4, grid_h, grid_w)
    grid_labels = torch.full((grid_h, grid_w), -1, dtype=torch.long)
    if len(boxes) == 0:
        return {"objectness": objectness, "offsets": offsets, "labels": grid_labels}
    cells, box_offsets = boxes_to_offsets(boxes.float(), stride)
    cells[:, 0].clamp_(0, grid_w - 1)
    cells[:, 1].clamp_(0, grid_h - 1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = area.argsort().tolist()  # small to large: a larger box overwrites a smaller one
    centre, *neighbours = _positive_cells(cells, box_offsets, grid_size, keep_index=True)
    for where, offs, index in [*neighbours, centre]:  # centre cells last: they win
        for k in sorted(range(len(index)), key=lambda k: order.index(int(index[k]))):
            col, row = where[k].tolist()
            objectness[row, col] = 1.0
            offsets[:, row, col] = offs[k]
            grid_labels[row, col] = labels[index[k]]
    return {"objectness": objectness, "offsets": offsets, "labels": grid_labels}


def collisions(boxes: Tensor, stride: int) -> int:
    """How many boxes share their centre's cell with a larger box (and so cannot be detected)."""
    if len(boxes) == 0:
        return 0
    cells, _ = boxes_to_offsets(boxes.float(), stride)
    return len(boxes) - len(torch.unique(cells, dim=0))


def encode_batch(targets: Sequence[dict[str, Tensor]], grid_size: tuple[int, int],
                 stride: int) -> dict[str, Tensor]:
    """:func:`encode_targets` for every image's ``{"boxes", "labels"}``, stacked on a batch axis."""
    encoded = [encode_targets(t["boxes"], t["labels"], grid_size, stride) for t in targets]
    return {k: torch.stack([e[k] for e in encoded]) for k in encoded[0]}


def focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss, summed (Lin et al. 2017, eq. 5; ``torchvision.ops.sigmoid_focal_loss``).

    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)``: the cross-entropy of each cell, scaled down by
    ``(1 - p_t)^gamma`` where the cell is already classified well -- the thousands of easy
    background cells then no longer drown the few cells that hold an object.
    """
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * ce).sum()


def detection_loss(pred: Tensor, target: dict[str, Tensor], box_weight: float = 5.0,
                   class_weight: float = 1.0) -> dict[str, Tensor]:
    """The detector's loss, written out, for a grid ``pred`` (B, 5 + C, H, W) and
    :func:`encode_batch`'s ``target``.

    ``loss = (focal(objectness) + box_weight * L1(box) + class_weight * CE(class)) / N_pos``:
    the focal loss over every cell, and over the N_pos cells assigned to an object the L1
    distance between ``(centre_offset(x, y), log w, log h)`` and the targets and the
    cross-entropy of the class. Dividing by N_pos (at least 1) as RetinaNet does keeps the scale
    independent of how many objects a batch holds. Returns the total and its three parts.
    """
    if pred.ndim != 4 or pred.shape[1] <= BOX_CHANNELS:
        raise ValueError(f"pred must have shape (B, 5 + classes, H, W); got {tuple(pred.shape)}")
    if target["objectness"].shape != pred.shape[:1] + pred.shape[2:]:
        raise ValueError(f"targets for a grid {tuple(target['objectness'].shape)} do not match "
                         f"predictions {tuple(pred.shape)}: encode them with the model's stride")
    positive = target["objectness"] > 0  # (B, H, W)
    n_pos = positive.sum().clamp(min=1)
    objectness = focal_loss(pred[:, 0], target["objectness"])
    cells = pred.permute(0, 2, 3, 1)[positive]  # (N_pos, 5 + C)
    boxes = torch.cat([centre_offset(cells[:, 1:3]), cells[:, 3:5]], dim=1)  # (N_pos, 4)
    box = F.l1_loss(boxes, target["offsets"].permute(0, 2, 3, 1)[positive], reduction="sum")
    cls = F.cross_entropy(cells[:, BOX_CHANNELS:], target["labels"][positive], reduction="sum")
    parts = {"objectness": objectness / n_pos, "box": box / n_pos, "class": cls / n_pos}
    parts["loss"] = parts["objectness"] + box_weight * parts["box"] + class_weight * parts["class"]
    return parts


def centre_offset(logits: Tensor) -> Tensor:
    """A centre's position relative to its cell from two logits: ``2 sigmoid - 0.5`` lies in
    ``(-0.5, 1.5)``, wide enough for a neighbour cell's view of the centre (YOLOv5)."""
    return 2 * logits.sigmoid() - 0.5


Nms = Callable[[Tensor, Tensor, Tensor, float], Tensor]


@torch.no_grad()
def decode(pred: Tensor, stride: int, score_threshold: float = 0.05, iou_threshold: float = 0.5,
           max_detections: int = 100, nms: Nms = batched_nms) -> list[dict[str, Tensor]]:
    """Scored boxes from a grid ``pred`` (B, 5 + C, H, W): one dict per image with ``boxes``
    (K, 4), ``scores`` (K,) and ``labels`` (K,), highest score first.

    A cell's score is ``sigmoid(objectness) * max softmax(class)``, its label the arg-max class.
    Cells scoring at least ``score_threshold`` survive, then per-class non-maximum suppression
    (``nms(boxes, scores, labels, iou_threshold)``, torchvision's ``batched_nms`` by default)
    removes neighbours that found the same object; at most ``max_detections`` remain. Boxes are
    clipped to the image.
    """
    if pred.ndim != 4 or pred.shape[1] <= BOX_CHANNELS:
        raise ValueError(f"pred must have shape (B, 5 + classes, H, W); got {tuple(pred.shape)}")
    batch, _, grid_h, grid_w = pred.shape
    cells = cell_centres(grid_h, grid_w, pred.device).reshape(-1, 2)  # (H*W, 2)
    results = []
    for p in pred.permute(0, 2, 3, 1).reshape(batch, grid_h * grid_w, -1):  # (H*W, 5 + C)
        class_prob, labels = p[:, BOX_CHANNELS:].softmax(dim=1).max(dim=1)
        scores = p[:, 0].sigmoid() * class_prob
        offsets = torch.cat([centre_offset(p[:, 1:3]), p[:, 3:5].clamp(max=10)], dim=1)
        boxes = offsets_to_boxes(offsets, cells, stride)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, grid_w * stride)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, grid_h * stride)
        keep = scores >= score_threshold
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = nms(boxes, scores, labels, iou_threshold)[:max_detections]
        results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return results


def perfect_logits(target: dict[str, Tensor], num_classes: int, confidence: float = 30.0) -> Tensor:
    """The grid a perfect detector would output for :func:`encode_batch`'s ``target``
    (B, 5 + C, H, W): objectness and class logits of +-``confidence``, offsets exactly right.

    Useful to test the loss (near zero) and :func:`decode` (it gives the boxes back).
    """
    obj = target["objectness"]  # (B, H, W)
    xy = ((target["offsets"][:, :2] + 0.5) / 2).clamp(1e-6, 1 - 1e-6)  # centre_offset^-1
    pred = torch.zeros(obj.shape[0], BOX_CHANNELS + num_classes, *obj.shape[1:])
    pred[:, 0] = confidence * (2 * obj - 1)
    pred[:, 1:3] = torch.log(xy / (1 - xy))  # the inverse of the sigmoid
    pred[:, 3:5] = target["offsets"][:, 2:]
    onehot = F.one_hot(target["labels"].clamp(min=0), num_classes).permute(0, 3, 1, 2)
    pred[:, BOX_CHANNELS:] = confidence * (2 * onehot - 1)
    return pred


# --------------------------------------------------------------------------------------------
# The segmenter
# --------------------------------------------------------------------------------------------
class DoubleConv(nn.Sequential):
    """Two 3x3 conv-BN-ReLU layers: U-Net's unit at every resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(conv_bn_relu(in_channels, out_channels),
                         conv_bn_relu(out_channels, out_channels))


class Up(nn.Module):
    """Double the resolution with a 2x2 stride-2 transposed convolution, concatenate the
    encoder's features of that resolution (the skip connection), then :class:`DoubleConv`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:  # (B, C_in, h, w), (B, C_out, 2h, 2w)
        x = self.up(x)  # (B, C_out, 2h, 2w): (h - 1) * 2 + 2 = 2h
        return self.conv(torch.cat([skip, x], dim=1))  # (B, C_out, 2h, 2w)


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al. 2015): per-pixel class logits for an image.

    Encoder: :class:`DoubleConv` at full resolution, then ``depth`` times a 2x2 max-pool and a
    :class:`DoubleConv` that doubles the width. Decoder: ``depth`` :class:`Up` steps back to full
    resolution, each joined by a skip connection to the encoder's features of the same size, so
    the fine detail lost by pooling is available again; a 1x1 convolution gives the logits.

    (B, 3, H, W) -> (B, num_classes, H, W); H and W must be divisible by ``2 ** depth``.
    The original has four levels of 64 to 1024 channels on 572x572 images; this one is narrow.
    """

    def __init__(self, num_classes: int = 2, width: int = 8, depth: int = 2) -> None:
        super().__init__()
        if num_classes < 2 or width < 1 or depth < 1:
            raise ValueError("UNet needs num_classes >= 2 (background is a class), width >= 1 "
                             f"and depth >= 1; got {num_classes}, {width}, {depth}")
        self.depth = depth
        widths = [width * 2**i for i in range(depth + 1)]  # e.g. 8, 16, 32
        self.inc = DoubleConv(3, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[i], widths[i + 1])) for i in range(depth))
        self.up = nn.ModuleList(Up(widths[i + 1], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, H, W)
        _check_images(x, 2**self.depth, "UNet")
        skips = [self.inc(x)]  # (B, w, H, W)
        for down in self.down:
            skips.append(down(skips[-1]))  # (B, 2w, H/2, W/2), (B, 4w, H/4, W/4), ...
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())  # back up one level
        return self.out(x)  # (B, num_classes, H, W)
