"""Schematic figures drawn by code: the sliding window, a pooling head, residual blocks, the GAN
game and the Grad-CAM pipeline.

A chapter passes the numbers its own code uses (sizes, kernels, strides, channels), so a picture
cannot drift from the code it explains: the output grid of :func:`sliding_window` has exactly
:func:`companion.ops.conv_output_size` cells, the pooled maps of :func:`pooling_and_head` the size
the same formula gives, and every label prints the arguments. All figures share one look, set
here and in :mod:`companion.plotting` (150 dpi, at most ``MAX_WIDTH_IN`` wide, the book's fonts).

Each drawing works in *inches*: one data unit of the single, axis-free axes is one inch, so text
(sized in points) and shapes keep their proportions. :func:`_finish` then crops the figure to
what was drawn. Every function returns the pyplot figure; in a notebook, assign it
(``fig = figures.sliding_window(...)``) and the inline backend shows it once.

``tests/test_figures.py`` checks that the drawn structure follows the arguments and that no label
overflows its box, overlaps another label or leaves the figure.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.transforms import Bbox

from . import plotting
from .ops import _pair, conv_output_size

IntPair = Union[int, Sequence[int]]

__all__ = ["sliding_window", "pooling_and_head", "residual_vs_plain", "gan_game",
           "gradcam_pipeline"]

#: Width the schematics aim for: narrower than the page's 7.5 in, so that on a phone, where
#: every figure is shrunk to the screen's width, their labels stay legible.
TARGET_WIDTH_IN = 6.0
#: Largest padded input (cells per side) that :func:`sliding_window` draws legibly.
MAX_GRID_CELLS = 24
FONT = 10  # points: labels (titles 11), legible when a phone shrinks the figure to its width
TITLE = 11
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")  # windows / positions, in order
FILL = {"conv": "#dbe9f6", "norm": "#fdebd3", "act": "#e2f2dc", "data": "#f0f0f0",
        "net": "#e8e0f3", "loss": "#fbe0e0"}
EDGE = "#404040"


# ----------------------------------------------------------------------------------------------
# drawing primitives (inches)
# ----------------------------------------------------------------------------------------------
def _canvas(width: float = TARGET_WIDTH_IN, height: float = 3.0) -> tuple[Figure, Axes]:
    """A figure with one axis-free axes covering it, one data unit per inch."""
    # No rc_context here: leaving one would also restore 'interactive', which the inline backend
    # switches on when the first figure is made, and the notebook's later figures would not show.
    fig = plt.figure(figsize=(width, height), dpi=plotting.DPI, facecolor="white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig, ax


def _finish(fig: Figure, ax: Axes, margin: float = 0.06) -> Figure:
    """Crop the figure to everything drawn (plus ``margin`` inches), keeping one unit per inch.

    Artists are drawn with ``clip_on=False``, so the tight box sees all of them; since the scale
    does not change, text (in points) keeps its size relative to the shapes.
    """
    renderer = fig.canvas.get_renderer()
    box = _drawn_bbox(fig, ax, renderer).transformed(fig.dpi_scale_trans.inverted())  # inches
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    left, bottom = x0 + box.x0 - margin, y0 + box.y0 - margin
    width, height = box.width + 2 * margin, box.height + 2 * margin
    fig.set_size_inches(width, height)
    ax.set_xlim(left, left + width)
    ax.set_ylim(bottom, bottom + height)
    return fig


def _drawn_bbox(fig: Figure, ax: Axes, renderer: Any) -> Bbox:
    """Union (in pixels) of everything drawn on ``ax``; empty texts, such as the axes' unused
    title, are left out (``fig.get_tightbbox`` would count them)."""
    artists = [t for t in ax.texts if t.get_text()] + ax.patches + ax.lines + ax.images
    return Bbox.union([a.get_window_extent(renderer) for a in artists])


def _text(ax: Axes, x: float, y: float, s: str, *, size: float = FONT, **kw: Any):
    kw.setdefault("ha", "center")
    kw.setdefault("va", "center")
    return ax.text(x, y, s, fontsize=size, clip_on=False, **kw)


def _text_size(fig: Figure, s: str, size: float = FONT) -> tuple[float, float]:
    """Width and height in inches that ``s`` takes at ``size`` points (to space labels)."""
    t = fig.text(0, 0, s, fontsize=size)
    box = t.get_window_extent(fig.canvas.get_renderer())
    t.remove()
    return box.width / fig.dpi, box.height / fig.dpi


def _box(ax: Axes, x: float, y: float, w: float, h: float, label: str = "", *,
         kind: str = "conv", size: float = FONT, gid: str = "box") -> FancyBboxPatch:
    """A rounded box centred on (x, y) with a centred label."""
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                           facecolor=FILL[kind], edgecolor=EDGE, linewidth=0.9, clip_on=False,
                           gid=gid, zorder=2.5)  # above lines that run behind it
    ax.add_patch(patch)
    if label:
        _text(ax, x, y, label, size=size)
    return patch


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], *,
           color: str = EDGE, dashed: bool = False, rad: float = 0.0) -> FancyArrowPatch:
    arrow = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, linewidth=1.1,
                            color=color, linestyle="--" if dashed else "-", shrinkA=0, shrinkB=0,
                            connectionstyle=f"arc3,rad={rad}", clip_on=False, gid="arrow")
    ax.add_patch(arrow)
    return arrow


def _line(ax: Axes, xs: Sequence[float], ys: Sequence[float], **kw: Any) -> None:
    kw.setdefault("color", EDGE)
    kw.setdefault("linewidth", 1.1)
    ax.plot(xs, ys, clip_on=False, solid_capstyle="butt", **kw)


def _stack(ax: Axes, x: float, y: float, side: float, count: int, *, color: str = "#9ecae1",
           gid: str = "map", colors: Sequence[str] | None = None
           ) -> tuple[float, float, float, float]:
    """``count`` (at most 4 drawn) offset squares of ``side`` inches centred on (x, y): a stack
    of feature maps. Returns the stack's bounding box (x0, y0, x1, y1)."""
    shown = max(1, min(count, 4))
    step = 0.09
    total = side + step * (shown - 1)
    x0, y0 = x - total / 2, y - total / 2
    for k in range(shown):  # the back map first, the first channel in front
        c = colors[(shown - 1 - k) % len(colors)] if colors else color
        ox = x0 + step * (shown - 1 - k)
        oy = y0 + step * (shown - 1 - k)
        ax.add_patch(Rectangle((ox, oy), side, side, facecolor=c, edgecolor=EDGE, linewidth=0.8,
                               clip_on=False, gid=gid))
    return x0, y0, x0 + total, y0 + total


def _image(ax: Axes, image: Any, x: float, y: float, side: float, *, cmap: str = "gray",
           vmin: float | None = 0.0, vmax: float | None = 1.0, alpha: float = 1.0,
           gid: str = "image") -> None:
    """Draw a 2-D array as a square of ``side`` inches centred on (x, y), with a frame."""
    extent = (x - side / 2, x + side / 2, y - side / 2, y + side / 2)
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, extent=extent, alpha=alpha,
              interpolation="bilinear" if alpha < 1 else "nearest", clip_on=False, zorder=2,
              gid=gid)
    ax.add_patch(Rectangle((extent[0], extent[2]), side, side, facecolor="none", edgecolor=EDGE,
                           linewidth=0.8, clip_on=False, zorder=3))


def _as_2d(image: Any, name: str) -> np.ndarray:
    """A tensor or array of shape (H, W), (1, H, W) or (1, 1, H, W) -> float (H, W) array."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    array = np.asarray(image, dtype=float)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{name} must be one grey image of shape (H, W) or (1, H, W); "
                         f"got shape {np.shape(image)}")
    return array


def _shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------
# 1. the sliding window (chapter 02)
# ----------------------------------------------------------------------------------------------
def _window_positions(h_out: int, w_out: int) -> list[tuple[int, int]]:
    """First window, its right neighbour (shows the stride), the first of the next row and the
    last one; duplicates removed, order kept."""
    wanted = [(0, 0), (0, 1), (1, 0), (h_out - 1, w_out - 1)]
    positions: list[tuple[int, int]] = []
    for i, j in wanted:
        if i < h_out and j < w_out and (i, j) not in positions:
            positions.append((i, j))
    return positions


def _formula(axis: str, size: int, kernel: int, stride: int, padding: int, dilation: int,
             out: int) -> str:
    """The book's eq-02-outsize with the numbers filled in, as mathtext."""
    top = rf"{size} + 2\cdot{padding} - {dilation}\cdot({kernel} - 1) - 1"
    fraction = rf"\left\lfloor \dfrac{{{top}}}{{{stride}}} \right\rfloor"
    return rf"${axis}_{{\mathrm{{out}}}} = {fraction} + 1 = {out}$"


def sliding_window(size: IntPair, kernel: IntPair, padding: IntPair = 0, stride: IntPair = 1,
                   dilation: IntPair = 1) -> Figure:
    """The zero-padded input grid, a kernel window at a few positions, and the output grid.

    The output grid has ``ops.conv_output_size(size, kernel, stride, padding, dilation)`` cells
    per axis, the formula of chapter 02 (Dumoulin & Visin 2016), printed under the drawing with
    the numbers filled in; each window and the output cell it produces share a colour. Ints or
    (height, width) pairs; a kernel that does not fit the padded input is a ValueError.
    """
    H, W = _pair(size, "size", minimum=1)
    kh, kw = _pair(kernel, "kernel", minimum=1)
    ph, pw = _pair(padding, "padding", minimum=0)
    sh, sw = _pair(stride, "stride", minimum=1)
    dh, dw = _pair(dilation, "dilation", minimum=1)
    h_out = conv_output_size(H, kh, sh, ph, dh)  # ValueError if the window does not fit
    w_out = conv_output_size(W, kw, sw, pw, dw)
    rows, cols = H + 2 * ph, W + 2 * pw
    if max(rows, cols) > MAX_GRID_CELLS:
        raise ValueError(f"a padded input of {rows}x{cols} cells is too large to draw legibly "
                         f"(at most {MAX_GRID_CELLS} per side): draw a smaller example")

    fig, ax = _canvas()
    gap = 1.3  # inches between the grids, room for the arrow's labels
    cell = min(0.4, (TARGET_WIDTH_IN - 0.2 - gap) / (cols + w_out))
    top = 0.0

    def cell_xy(r: int, c: int, x0: float, y_top: float) -> tuple[float, float]:
        return x0 + c * cell, y_top - (r + 1) * cell

    # input grid: padding cells grey, image cells white
    for r in range(rows):
        for c in range(cols):
            pad = not (ph <= r < ph + H and pw <= c < pw + W)
            ax.add_patch(Rectangle(cell_xy(r, c, 0.0, top), cell, cell, linewidth=0.6,
                                   facecolor="#d9d9d9" if pad else "white", edgecolor="#8c8c8c",
                                   clip_on=False, gid="padding-cell" if pad else "input-cell"))
    # output grid, vertically centred on the input
    out_x0 = cols * cell + gap
    out_top = top - (rows - h_out) * cell / 2
    positions = _window_positions(h_out, w_out)
    colour_of = {p: PALETTE[k % len(PALETTE)] for k, p in enumerate(positions)}
    for r in range(h_out):
        for c in range(w_out):
            colour = colour_of.get((r, c))
            ax.add_patch(Rectangle(cell_xy(r, c, out_x0, out_top), cell, cell, linewidth=0.6,
                                   facecolor=colour or "white", alpha=1.0, edgecolor="#8c8c8c",
                                   clip_on=False, gid="output-cell"))
    # windows: taps filled first, then every span outlined on top (inset a little per window,
    # so that overlapping outlines stay apart)
    for (i, j) in positions:
        for a in range(kh):
            for b in range(kw):
                ax.add_patch(Rectangle(cell_xy(i * sh + a * dh, j * sw + b * dw, 0.0, top), cell,
                                       cell, facecolor=colour_of[(i, j)], alpha=0.28, linewidth=0,
                                       clip_on=False, gid="window-tap"))
    for k, (i, j) in enumerate(positions):
        inset = 0.05 * cell * k
        x, y = cell_xy(i * sh + dh * (kh - 1), j * sw, 0.0, top)
        span_w, span_h = (dw * (kw - 1) + 1) * cell, (dh * (kh - 1) + 1) * cell
        ax.add_patch(Rectangle((x + inset, y + inset), span_w - 2 * inset, span_h - 2 * inset,
                               facecolor="none", edgecolor=colour_of[(i, j)], linewidth=2.0,
                               clip_on=False, gid="window"))
    # labels
    pad_text = f"{ph}" if ph == pw else f"({ph}, {pw})"
    _text(ax, 0.0, top + 0.12, f"input {H}×{W}, zero padding {pad_text} (grey)", ha="left",
          va="bottom", size=TITLE)
    out_bottom = out_top - h_out * cell
    _text(ax, out_x0 + w_out * cell / 2, out_bottom - 0.1, f"output {h_out}×{w_out}", va="top",
          size=TITLE)
    mid_y = top - rows * cell / 2
    _arrow(ax, (cols * cell + 0.12, mid_y), (out_x0 - 0.12, mid_y))
    kernel_text = f"{kh}×{kw} kernel"
    stride_text = f"stride {sh}" if sh == sw else f"stride ({sh}, {sw})"
    if (dh, dw) != (1, 1):
        stride_text += "\n" + (f"dilation {dh}" if dh == dw else f"dilation ({dh}, {dw})")
    _text(ax, cols * cell + gap / 2, mid_y + 0.07, kernel_text, va="bottom")
    _text(ax, cols * cell + gap / 2, mid_y - 0.07, stride_text, va="top")
    formulas = [_formula("H", H, kh, sh, ph, dh, h_out)]
    if (H, kh, sh, ph, dh) != (W, kw, sw, pw, dw):
        formulas.append(_formula("W", W, kw, sw, pw, dw, w_out))
    bottom = min(top - rows * cell, out_bottom - 0.35)
    _text(ax, 0.0, bottom - 0.12, "     ".join(formulas), ha="left", va="top", size=TITLE)
    return _finish(fig, ax)


# ----------------------------------------------------------------------------------------------
# 2. pooling and a fully connected head (chapter 03)
# ----------------------------------------------------------------------------------------------
def _units(ax: Axes, x: float, y: float, count: int, *, height: float = 1.3,
           colour: str = "#c7e9c0", gid: str = "unit") -> list[tuple[float, float]]:
    """A column of neurons: at most 7 circles drawn, with a vertical ellipsis when more."""
    shown = min(count, 7)
    radius = 0.075
    ys = [y] if shown == 1 else list(np.linspace(y + height / 2, y - height / 2, shown))
    if count > shown:  # leave a gap for the ellipsis in the middle
        ys = ys[:3] + ys[-3:]
        _text(ax, x, y, "⋮", size=FONT + 1)
    for yy in ys:
        ax.add_patch(Circle((x, yy), radius, facecolor=colour, edgecolor=EDGE, linewidth=0.8,
                            clip_on=False, gid=gid))
    return [(x, yy) for yy in ys]


def pooling_and_head(channels: int, size: IntPair, pool: IntPair = 2, stride: IntPair | None = None,
                     hidden: Sequence[int] = (50,), classes: int = 10, kind: str = "max") -> Figure:
    """Feature maps -> pooling -> flatten -> fully connected layer(s) -> class scores.

    ``channels`` maps of ``size`` are pooled with window ``pool`` and ``stride`` (default: the
    window, as ``nn.MaxPool2d``), to the size :func:`companion.ops.conv_output_size` gives;
    flattening makes one vector of ``channels * h * w`` numbers (channel after channel, shown by
    colour), which fully connected layers of widths ``hidden`` and ``classes`` turn into scores.
    """
    C = _positive(channels, "channels")
    H, W = _pair(size, "size", minimum=1)
    kh, kw = _pair(pool, "pool", minimum=1)
    sh, sw = _pair(pool if stride is None else stride, "stride", minimum=1)
    widths = [_positive(n, "hidden width") for n in hidden] + [_positive(classes, "classes")]
    if kind not in ("max", "avg"):
        raise ValueError(f"kind must be 'max' or 'avg'; got {kind!r}")
    h, w = conv_output_size(H, kh, sh), conv_output_size(W, kw, sw)
    flat = C * h * w

    fig, ax = _canvas()
    colours = ("#6baed6", "#9ecae1", "#c6dbef", "#deebf7")
    side_in = 0.95
    side_out = max(0.3, side_in * max(h, w) / max(H, W))
    column_h = 1.5  # height of the flattened vector and of the neuron columns
    captions_y = -column_h / 2 - 0.15  # captions under every element, aligned

    def arrow_with(x0: float, label: str) -> float:
        """An arrow from x0, labelled above it; returns where it ends."""
        width = max(0.6, _text_size(fig, label)[0] + 0.2)
        _arrow(ax, (x0 + 0.08, 0.0), (x0 + width - 0.08, 0.0))
        _text(ax, x0 + width / 2, 0.1, label, va="bottom")
        return x0 + width

    def stack_at(left: float, side: float, gid: str) -> tuple[float, tuple[float, float]]:
        """Feature maps whose left edge is at ``left``: their right edge and the front map's
        bottom-left corner."""
        width = side + 0.09 * (min(C, 4) - 1)
        x0, y0, _, _ = _stack(ax, left + width / 2, 0.0, side, C, colors=colours, gid=gid)
        return left + width, (x0, y0)

    def window(front: tuple[float, float], side: float, rows: int, cols: int, kr: int,
               kc: int) -> None:
        """Outline the first kr x kc window on the front map (bottom-left corner ``front``)."""
        top = front[1] + side
        ax.add_patch(Rectangle((front[0], top - side * kr / rows), side * kc / cols,
                               side * kr / rows, facecolor="none", edgecolor=PALETTE[1],
                               linewidth=1.8, clip_on=False, gid="pool-window"))

    def pixel_grid(front: tuple[float, float], side: float, rows: int, cols: int) -> None:
        """The pixel grid on the front map, where it stays legible."""
        if max(rows, cols) > 16:
            return
        x0, y0 = front
        for r in range(1, rows):
            _line(ax, (x0, x0 + side), (y0 + side * r / rows,) * 2, linewidth=0.3,
                  color="#4a6f94")
        for c in range(1, cols):
            _line(ax, (x0 + side * c / cols,) * 2, (y0, y0 + side), linewidth=0.3,
                  color="#4a6f94")

    right, front = stack_at(0.0, side_in, "map-in")
    pixel_grid(front, side_in, H, W)
    window(front, side_in, H, W, kh, kw)
    _text(ax, right / 2, captions_y, f"{C} maps\n{H}×{W}", va="top")
    stride_text = f"stride {sh}" if sh == sw else f"stride ({sh}, {sw})"
    left = arrow_with(right, f"{kind} pool {kh}×{kw}\n{stride_text}")
    right, front = stack_at(left, side_out, "map-pooled")
    pixel_grid(front, side_out, h, w)
    window(front, side_out, h, w, 1, 1)
    _text(ax, (left + right) / 2, captions_y, f"{C} maps\n{h}×{w}", va="top")
    left = arrow_with(right, "flatten")
    # the flattened vector: one coloured segment per channel (at most 4 drawn, then the rest)
    v_w = 0.22
    vx = left + v_w / 2
    segments = min(C, 4)
    seg_h = column_h / (segments + (1 if C > segments else 0))
    for k in range(segments):
        ax.add_patch(Rectangle((left, column_h / 2 - (k + 1) * seg_h), v_w, seg_h,
                               facecolor=colours[k % 4], edgecolor=EDGE, linewidth=0.8,
                               clip_on=False, gid="flat-segment"))
    if C > segments:
        ax.add_patch(Rectangle((left, -column_h / 2), v_w, seg_h, facecolor="white",
                               edgecolor=EDGE, linewidth=0.8, clip_on=False, gid="flat-rest"))
        _text(ax, vx, -column_h / 2 + seg_h / 2, "⋮")
    _text(ax, vx, captions_y, f"{flat:,}\nvalues", va="top")
    sources = [(left + v_w, yy) for yy in np.linspace(column_h / 2 - 0.1, -column_h / 2 + 0.1, 5)]
    x = left + v_w
    for n, width in enumerate(widths):
        last = n == len(widths) - 1
        label = "fc" if last else "fc + ReLU"
        span = max(0.75, _text_size(fig, label)[0] + 0.25)
        cx = x + span
        units = _units(ax, cx, 0.0, width, height=column_h - 0.15,
                       colour="#fdd0a2" if last else "#c7e9c0",
                       gid="class-unit" if last else "hidden-unit")
        for a in sources:  # every input feeds every unit (a few of the lines drawn)
            for b in units:
                _line(ax, (a[0], b[0] - 0.075), (a[1], b[1]), linewidth=0.4, alpha=0.4)
        _text(ax, (x + cx) / 2, column_h / 2 + 0.1, label, va="bottom")
        caption = "class\nscores" if last else "units"
        _text(ax, cx, captions_y, f"{width:,}\n{caption}", va="top")
        sources = [(cx + 0.075, yy) for _, yy in units]
        x = cx + 0.075
    return _finish(fig, ax)


# ----------------------------------------------------------------------------------------------
# 3. a plain block next to a residual block (chapter 09)
# ----------------------------------------------------------------------------------------------
SHORTCUTS = ("auto", "identity", "projection", "pad")


def _block_column(ax: Axes, cx: float, rows: list[float], in_channels: int, channels: int,
                  kernel: int, stride: int, residual: bool) -> dict[str, Any]:
    """The conv-BN-ReLU-conv-BN(-add)-ReLU column of a BasicBlock or its plain twin."""
    stride_text = f", stride {stride}" if stride > 1 else ""
    layers = [(1, f"{kernel}×{kernel} conv, {in_channels}→{channels}{stride_text}", "conv"),
              (2, "BatchNorm", "norm"), (3, "ReLU", "act"),
              (4, f"{kernel}×{kernel} conv, {channels}→{channels}", "conv"),
              (5, "BatchNorm", "norm"), (7, "ReLU", "act")]
    box_w = max(1.3, max(_text_size(ax.figure, label)[0] for _, label, _ in layers) + 0.16)
    box_h = 0.3
    for row, label, kind in layers:
        _box(ax, cx, rows[row], box_w, box_h, label, kind=kind, gid=f"box-{kind}")
    # arrows down the column; the plain column passes straight through the addition's row
    stops = [0, 1, 2, 3, 4, 5] + ([6] if residual else []) + [7, 8]
    for a, b in zip(stops, stops[1:]):
        top = rows[a] - (0.1 if a == 0 else 0.12 if a == 6 else box_h / 2)
        bottom = rows[b] + (0.12 if b == 6 else 0.1 if b == 8 else box_h / 2)
        _arrow(ax, (cx, top), (cx, bottom))
    # the residual function F: a bracket left of the layers it spans
    bx = cx - box_w / 2 - 0.1
    y_top, y_bottom = rows[1] + box_h / 2, rows[5] - box_h / 2
    _line(ax, (bx + 0.05, bx, bx, bx + 0.05), (y_top, y_top, y_bottom, y_bottom), linewidth=0.9)
    _text(ax, bx - 0.06, (y_top + y_bottom) / 2, r"$F(x)$", ha="right")
    return {"box_w": box_w, "box_h": box_h}


def residual_vs_plain(in_channels: int, channels: int, kernel: int = 3, stride: int = 1,
                      size: IntPair | None = None, shortcut: str = "auto") -> Figure:
    """A plain block (conv-BN-ReLU-conv-BN-ReLU) next to the residual ``BasicBlock`` of He et al.
    (2016): the same layers, plus a shortcut added before the last ReLU, y = ReLU(F(x) + x).

    ``shortcut``: "identity" (needs stride 1 and ``in_channels == channels``), "projection" (a
    strided 1x1 convolution and BatchNorm, the paper's option B and torchvision's choice), "pad"
    (subsample and zero-pad the new channels, option A) or "auto" (identity where shapes allow,
    else projection). With ``size`` (the input's height and width), the tensor shapes are shown,
    the output's from :func:`companion.ops.conv_output_size` with padding ``kernel // 2``.
    """
    c_in, c_out = _positive(in_channels, "in_channels"), _positive(channels, "channels")
    k, s = _positive(kernel, "kernel"), _positive(stride, "stride")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}; got {shortcut!r}")
    same_shape = s == 1 and c_in == c_out
    if shortcut == "auto":
        shortcut = "identity" if same_shape else "projection"
    if shortcut == "pad" and c_out < c_in:
        raise ValueError(f"option A ('pad') adds zero channels, so it needs channels >= "
                         f"in_channels; got {c_in} -> {c_out}: use 'projection'")
    if shortcut == "identity" and not same_shape:
        raise ValueError(f"an identity shortcut needs stride 1 and in_channels == channels; got "
                         f"stride {s}, {c_in} -> {c_out} channels: use 'projection' or 'pad'")
    shape_in = shape_out = ""
    if size is not None:
        H, W = _pair(size, "size", minimum=1)
        h, w = conv_output_size(H, k, s, k // 2), conv_output_size(W, k, s, k // 2)
        shape_in, shape_out = f"{c_in}×{H}×{W}", f"{c_out}×{h}×{w}"

    fig, ax = _canvas()
    rows = [-0.46 * i for i in range(9)]  # x, conv, BN, ReLU, conv, BN, add, ReLU, y
    widest = max(_text_size(fig, f"{k}×{k} conv, {c}→{c_out}, stride {s}")[0]
                 for c in (c_in, c_out)) + 0.16
    out_w = _text_size(fig, r"$y = \mathrm{ReLU}(F(x) + x)$")[0]
    gap = max(widest, 1.3, out_w) + 0.85  # room for the bracket and F(x) label
    for cx, residual in ((0.95, False), (0.95 + gap, True)):
        title = "residual block" if residual else "plain block"
        _text(ax, cx, rows[0] + 0.3, title, va="bottom", size=TITLE, weight="bold")
        dims = _block_column(ax, cx, rows, c_in, c_out, k, s, residual)
        _text(ax, cx, rows[0], r"$x$" + (f"  ({shape_in})" if shape_in else ""))
        out = r"$y = \mathrm{ReLU}(F(x) + x)$" if residual else r"$y = \mathrm{ReLU}(F(x))$"
        _text(ax, cx, rows[8], out + (f"\n{shape_out}" if shape_out else ""), va="top")
    # the residual column's addition and shortcut
    cx = 0.95 + gap
    ax.add_patch(Circle((cx, rows[6]), 0.12, facecolor="white", edgecolor=EDGE, linewidth=1.1,
                        clip_on=False, gid="add"))
    _text(ax, cx, rows[6], "+", size=11, weight="bold")
    label = {"identity": "",
             "projection": f"projection:\n1×1 conv\n{c_in}→{c_out}\nstride {s}\nBatchNorm",
             "pad": f"option A:\nsubsample ×{s},\n{c_out - c_in} zero\nchannels"}[shortcut]
    label_w = _text_size(fig, label)[0] + 0.2 if label else 0.0
    xs = cx + dims["box_w"] / 2 + max(0.75, label_w / 2 + 0.15)
    y_split = (rows[0] + rows[1] + dims["box_h"] / 2) / 2
    ax.add_patch(Circle((cx, y_split), 0.03, color=EDGE, clip_on=False))
    _line(ax, (cx, xs, xs), (y_split, y_split, rows[6]))
    _arrow(ax, (xs, rows[6]), (cx + 0.12, rows[6]))
    y_mid = (rows[3] + rows[4]) / 2
    if shortcut == "identity":
        _text(ax, xs + 0.08, y_mid, "identity\nshortcut", ha="left")
    else:
        _box(ax, xs, y_mid, label_w, _text_size(fig, label)[1] + 0.16, label,
             kind="conv" if shortcut == "projection"
             else "data", gid="box-shortcut")
    return _finish(fig, ax)


# ----------------------------------------------------------------------------------------------
# 4. the GAN game (chapter 12)
# ----------------------------------------------------------------------------------------------
def _image_or_placeholder(ax: Axes, image: Any, x: float, y: float, side: float, name: str,
                          *, cmap: str = "gray") -> None:
    if image is None:
        ax.add_patch(Rectangle((x - side / 2, y - side / 2), side, side, facecolor=FILL["data"],
                               edgecolor=EDGE, linewidth=0.8, hatch="///", clip_on=False,
                               gid="placeholder"))
    else:
        _image(ax, _as_2d(image, name), x, y, side, cmap=cmap)


def gan_game(z_dim: int, image_shape: Sequence[int], real: Any = None, fake: Any = None) -> Figure:
    """Noise z -> generator G -> a fake image; a real image; both -> discriminator D -> the
    probability "real"; with the two losses of Goodfellow et al. (2014) as the book trains them
    (D: binary cross-entropy; G: the non-saturating -log D(G(z))).

    ``real`` and ``fake``: optional grey images ((H, W) or (1, H, W), values in [0, 1]) drawn as
    thumbnails, e.g. a training digit and a generated one.
    """
    z = _positive(z_dim, "z_dim")
    shape = tuple(image_shape)
    if not 2 <= len(shape) <= 3 or not all(isinstance(v, (int, np.integer)) and v > 0
                                           for v in shape):
        raise ValueError(f"image_shape must be (C, H, W) or (H, W) positive ints; "
                         f"got {image_shape!r}")
    size_text = _shape_text(shape)

    fig, ax = _canvas()
    top, bottom, thumb = 0.75, -0.75, 0.7
    x_noise, x_g, x_img, x_d, x_p = 0.5, 1.75, 2.95, 4.3, 5.75
    # generator row
    _box(ax, x_noise, top, 1.0, 0.62, f"noise $z$\n{z} numbers\n" + r"$\sim\mathcal{N}(0, I)$",
         kind="data", gid="box-noise")
    _arrow(ax, (x_noise + 0.55, top), (x_g - 0.52, top))
    _box(ax, x_g, top, 0.95, 0.5, "generator\n$G$", kind="net", gid="box-G")
    _arrow(ax, (x_g + 0.52, top), (x_img - thumb / 2 - 0.05, top))
    _image_or_placeholder(ax, fake, x_img, top, thumb, "fake")
    _text(ax, x_img, top - thumb / 2 - 0.05, f"fake $G(z)$, {size_text}", va="top")
    # data row
    _box(ax, x_g, bottom, 0.95, 0.5, "training\nimages", kind="data", gid="box-data")
    _arrow(ax, (x_g + 0.52, bottom), (x_img - thumb / 2 - 0.05, bottom))
    _image_or_placeholder(ax, real, x_img, bottom, thumb, "real")
    _text(ax, x_img, bottom + thumb / 2 + 0.05, f"real $x$, {size_text}", va="bottom")
    # discriminator and its output
    _box(ax, x_d, 0.0, 1.1, 0.5, "discriminator\n$D$", kind="net", gid="box-D")
    _arrow(ax, (x_img + thumb / 2 + 0.05, top), (x_d - 0.4, 0.3))
    _arrow(ax, (x_img + thumb / 2 + 0.05, bottom), (x_d - 0.4, -0.3))
    _arrow(ax, (x_d + 0.6, 0.0), (x_p - 0.65, 0.0))
    _box(ax, x_p, 0.0, 1.2, 0.62, "$D(\\cdot) \\in (0, 1)$:\nprobability\nthat it is real",
         kind="data", gid="box-prob")
    # the two losses, computed from D's outputs; their gradients update D and (through D) G
    x_loss, loss_y = 5.0, 1.5
    _box(ax, x_loss, loss_y, 2.4, 0.5,
         "$G$ minimises (non-saturating)\n" + r"$-\log D(G(z))$", kind="loss", gid="box-lossG")
    _box(ax, x_loss, -loss_y, 2.4, 0.5,
         "$D$ minimises\n" + r"$-\log D(x) - \log(1 - D(G(z)))$", kind="loss", gid="box-lossD")
    _arrow(ax, (x_p, 0.33), (x_p, loss_y - 0.27))
    _arrow(ax, (x_p, -0.33), (x_p, -loss_y + 0.27))
    _line(ax, (x_loss - 1.22, x_g), (loss_y, loss_y), linestyle="--")
    _arrow(ax, (x_g, loss_y), (x_g, top + 0.27), dashed=True)
    _text(ax, (x_loss - 1.2 + x_g) / 2, loss_y + 0.05, "gradient, through $D$", va="bottom",
          size=8, style="italic")
    _arrow(ax, (x_d, -loss_y + 0.27), (x_d, -0.27), dashed=True)
    return _finish(fig, ax)


# ----------------------------------------------------------------------------------------------
# 5. the Grad-CAM pipeline (chapter 11)
# ----------------------------------------------------------------------------------------------
def gradcam_pipeline(image_size: IntPair, layer: str, channels: int, fmap_size: IntPair,
                     class_name: Any, image: Any = None, cam: Any = None) -> Figure:
    """Grad-CAM (Selvaraju et al. 2017) step by step: the input goes forward to the chosen layer's
    maps A^k and on to the class score y^c; the score's gradient with respect to A^k, averaged
    over each map, gives one weight alpha_k per channel; ReLU(sum_k alpha_k A^k) is the map,
    upsampled to the input's size and laid over it.

    ``image`` (the input, (H, W) in [0, 1]) and ``cam`` (the map, >= 0, at the layer's or the
    input's size) are optional; without them placeholders are drawn.
    """
    H, W = _pair(image_size, "image_size", minimum=1)
    h, w = _pair(fmap_size, "fmap_size", minimum=1)
    K = _positive(channels, "channels")
    if not isinstance(layer, str) or not layer:
        raise ValueError(f"layer must be the chosen layer's name (a non-empty str); got {layer!r}")
    if h > H or w > W:
        raise ValueError(f"fmap_size {h}x{w} is larger than image_size {H}x{W}: a conv layer's "
                         "maps are at most as large as its input")
    image_2d = None if image is None else _as_2d(image, "image")
    cam_2d = None if cam is None else _as_2d(cam, "cam")
    if cam_2d is not None and (cam_2d.min() < 0):
        raise ValueError("cam must be >= 0 (Grad-CAM applies a ReLU); got a negative value")

    fig, ax = _canvas()
    top, bottom, thumb = 0.0, -1.75, 0.75
    caption = -0.58  # captions under the row's elements, relative to the row
    xs = (0.4, 1.7, 3.0, 4.45, 5.85)
    # forward row: input -> conv layers -> A^k -> rest -> y^c
    _image_or_placeholder(ax, image_2d, xs[0], top, thumb, "image")
    _text(ax, xs[0], top + caption, f"input\n{H}×{W}", va="top")
    _box(ax, xs[1], top, 0.95, 0.5, f"layers up\nto {layer}", kind="conv", gid="box-convs")
    _stack(ax, xs[2], top, 0.55, K, color="#9ecae1", gid="map-A")
    _text(ax, xs[2], top + caption, f"$A^k$: {K} maps\n{h}×{w}", va="top")
    _box(ax, xs[3], top, 0.95, 0.5, "rest of the\nnetwork", kind="conv", gid="box-rest")
    score_text = f"score $y^c$\nclass {class_name}"
    score_w = max(0.95, _text_size(fig, score_text)[0] + 0.16)
    _box(ax, xs[4], top, score_w, 0.5, score_text, kind="loss", gid="box-score")
    for a, b in ((0, 1), (1, 2), (2, 3), (3, 4)):
        half_a = thumb / 2 if a == 0 else 0.41 if a == 2 else 0.475
        half_b = 0.41 if b == 2 else score_w / 2 if b == 4 else 0.475
        _arrow(ax, (xs[a] + half_a + 0.05, top), (xs[b] - half_b - 0.05, top))
    # backward row, right to left: gradients -> weights -> combination -> upsample -> overlay
    _stack(ax, xs[4], bottom, 0.55, K, color="#fdae6b", gid="map-grad")
    _text(ax, xs[4], bottom + caption,
          r"$\partial y^c / \partial A^k$" + f"\n{K} maps {h}×{w}", va="top")
    _arrow(ax, (xs[4], top - 0.3), (xs[4], bottom + 0.4), dashed=True)
    _text(ax, xs[4] + 0.08, (top + bottom) / 2 + 0.1, "backprop", ha="left", size=8,
          style="italic")
    _box(ax, xs[3], bottom, 1.4, 0.8,
         r"$\alpha_k = \dfrac{1}{%d}\sum_{i,j}\dfrac{\partial y^c}{\partial A^k_{ij}}$" % (h * w)
         + f"\n{K} weights", kind="norm", gid="box-alpha")
    _text(ax, xs[3], bottom + caption, "global average\nof each map", va="top")
    if cam_2d is None:
        ax.add_patch(Rectangle((xs[2] - 0.3, bottom - 0.3), 0.6, 0.6, facecolor="#fdd0a2",
                               edgecolor=EDGE, linewidth=0.8, clip_on=False, gid="placeholder"))
    else:
        _image(ax, cam_2d, xs[2], bottom, 0.6, cmap="inferno", vmin=0.0,
               vmax=float(cam_2d.max()) or 1.0)
    _text(ax, xs[2], bottom + caption,
          r"ReLU$(\Sigma_k\, \alpha_k A^k)$" + f"\n{h}×{w}", va="top")
    # A^k feeds the combination (the arrow starts under A^k's caption)
    _arrow(ax, (xs[2], top + caption - 0.42), (xs[2], bottom + 0.34))
    up_text = f"upsample\n{h}×{w} → {H}×{W}"
    up_w = max(0.95, _text_size(fig, up_text)[0] + 0.16)
    _box(ax, xs[1], bottom, up_w, 0.5, up_text, kind="act", gid="box-upsample")
    if image_2d is None or cam_2d is None:
        _image_or_placeholder(ax, image_2d, xs[0], bottom, thumb, "image")
    else:
        _image(ax, image_2d, xs[0], bottom, thumb)
        _image(ax, cam_2d, xs[0], bottom, thumb, cmap="inferno", vmin=0.0,
               vmax=float(cam_2d.max()) or 1.0, alpha=0.55, gid="overlay")
    _text(ax, xs[0], bottom + caption, f"overlay\n{H}×{W}", va="top")
    _arrow(ax, (xs[0], top + caption - 0.42), (xs[0], bottom + thumb / 2 + 0.05))
    for a, b in ((4, 3), (3, 2), (2, 1), (1, 0)):
        half_a = 0.41 if a == 4 else 0.7 if a == 3 else 0.3 if a == 2 else up_w / 2
        half_b = 0.7 if b == 3 else 0.3 if b == 2 else up_w / 2 if b == 1 else thumb / 2
        _arrow(ax, (xs[a] - half_a - 0.05, bottom), (xs[b] + half_b + 0.05, bottom))
    return _finish(fig, ax)
