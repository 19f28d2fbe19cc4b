"""companion.figures: the drawings follow their arguments, and every label stays legible.

Structure is checked against independent oracles (PyTorch's own layers give the output sizes),
layout by measuring the drawn text after a render: inside the figure, inside the box it sits in,
clear of every other label and shape, and the figure within the book's width.
"""

from __future__ import annotations

import io
import itertools
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch  # noqa: E402
from PIL import Image  # noqa: E402

from companion import figures, plotting  # noqa: E402

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)
TOLERANCE_PX = 1.0


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------------------------
# what was drawn
# ----------------------------------------------------------------------------------------------
def patches(fig, gid: str) -> list[Patch]:
    return [p for ax in fig.axes for p in ax.patches if p.get_gid() == gid]


def texts(fig) -> list[matplotlib.text.Text]:
    return [t for ax in fig.axes for t in ax.texts if t.get_visible() and t.get_text().strip()]


def label_text(fig) -> str:
    return "\n".join(t.get_text() for t in texts(fig))


def rendered(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def contains(outer, inner, tol: float = TOLERANCE_PX) -> bool:
    return (inner.x0 >= outer.x0 - tol and inner.x1 <= outer.x1 + tol
            and inner.y0 >= outer.y0 - tol and inner.y1 <= outer.y1 + tol)


def overlap(a, b, tol: float = TOLERANCE_PX) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > tol) and (min(a.y1, b.y1) - max(a.y0, b.y0) > tol)


def layout_problems(fig) -> list[str]:
    """Every way a label can be illegible: outside the figure, spilling out of the box it sits
    in, overlapping another label or a shape it does not sit in; and a figure too wide."""
    renderer = rendered(fig)
    problems = []
    width_in = fig.get_size_inches()[0]
    if width_in > plotting.MAX_WIDTH_IN:
        problems.append(f"figure is {width_in:.2f} in wide (max {plotting.MAX_WIDTH_IN})")
    labels = [(t.get_text(), t.get_window_extent(renderer)) for t in texts(fig)]
    shapes = [(p.get_gid(), p.get_window_extent(renderer)) for ax in fig.axes for p in ax.patches
              if not isinstance(p, FancyArrowPatch)]  # an arrow's extent is its bounding box
    for text, box in labels:
        if not contains(fig.bbox, box):
            problems.append(f"{text!r} leaves the figure")
        cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
        for gid, shape in shapes:
            if shape.x0 <= cx <= shape.x1 and shape.y0 <= cy <= shape.y1:
                if not contains(shape, box):
                    problems.append(f"{text!r} overflows its {gid}")
            elif overlap(shape, box):
                problems.append(f"{text!r} overlaps a {gid}")
    for (a, box_a), (b, box_b) in itertools.combinations(labels, 2):
        if overlap(box_a, box_b):
            problems.append(f"{a!r} overlaps {b!r}")
    return problems


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# the sliding window against nn.functional.conv2d
# ----------------------------------------------------------------------------------------------
def conv_shape(size, kernel, padding, stride, dilation) -> tuple[int, int]:
    """The oracle: the output shape PyTorch's own convolution gives."""
    out = F.conv2d(torch.zeros(1, 1, *size), torch.zeros(1, 1, *kernel), stride=stride,
                   padding=padding, dilation=dilation)
    return tuple(out.shape[-2:])


def eval_formula(text: str) -> tuple[int, int]:
    """Read the printed formula back: (the value its numbers give, the value it states)."""
    m = re.search(r"\\d?frac\{(.+?)\}\{(\d+)\} \\right\\rfloor \+ 1 = (\d+)", text)
    assert m, f"no output-size formula in {text!r}"
    numerator = eval(m.group(1).replace(r"\cdot", "*"))  # only digits, + - * ( )
    return numerator // int(m.group(2)) + 1, int(m.group(3))


def pairs(low: int, high: int):
    return st.tuples(st.integers(low, high), st.integers(low, high))


@given(size=pairs(1, 9), kernel=pairs(1, 5), padding=pairs(0, 3), stride=pairs(1, 4),
       dilation=pairs(1, 3))
@SETTINGS
def test_sliding_window_draws_the_grids_pytorch_computes(size, kernel, padding, stride, dilation):
    try:
        expected = conv_shape(size, kernel, padding, stride, dilation)
    except RuntimeError:  # the kernel does not fit: the figure must refuse too
        with pytest.raises(ValueError, match="larger than the padded input"):
            figures.sliding_window(size, kernel, padding, stride, dilation)
        return
    fig = figures.sliding_window(size, kernel, padding, stride, dilation)
    (H, W), (ph, pw) = size, padding
    assert len(patches(fig, "output-cell")) == expected[0] * expected[1]
    assert len(patches(fig, "input-cell")) == H * W
    assert len(patches(fig, "padding-cell")) == (H + 2 * ph) * (W + 2 * pw) - H * W
    # every window lies on the padded grid, and holds kernel-many taps
    renderer = rendered(fig)
    cells = patches(fig, "input-cell") + patches(fig, "padding-cell")
    grid = matplotlib.transforms.Bbox.union([c.get_window_extent(renderer) for c in cells])
    windows = patches(fig, "window")
    assert windows and all(contains(grid, w.get_window_extent(renderer), tol=2) for w in windows)
    assert len(patches(fig, "window-tap")) == len(windows) * kernel[0] * kernel[1]
    # the printed formula is the book's and gives the drawn size
    formulas = [eval_formula(t) for t in re.findall(r"\$[HW]_.*?\$", label_text(fig))]
    assert formulas and all(value == stated for value, stated in formulas)
    assert formulas[0][1] == expected[0] and formulas[-1][1] == (expected[1] if len(formulas) > 1
                                                                 else expected[0])
    assert layout_problems(fig) == []
    plt.close(fig)  # hypothesis runs many examples within one test


def test_sliding_window_moves_by_the_stride():
    """The second window sits exactly `stride` cells right of the first: one cell is the width
    of an input cell."""
    for stride in (1, 2, 3):
        fig = figures.sliding_window(7, 3, padding=1, stride=stride)
        renderer = rendered(fig)
        cell = patches(fig, "input-cell")[0].get_window_extent(renderer).width
        taps = [p.get_window_extent(renderer) for p in patches(fig, "window-tap")]
        first, second = taps[0], taps[9]  # 3x3 taps per window, in drawing order
        assert second.x0 - first.x0 == pytest.approx(stride * cell, abs=0.5)
        assert second.y0 == pytest.approx(first.y0, abs=0.5)
        plt.close(fig)


def test_sliding_window_labels_give_the_numbers():
    text = label_text(figures.sliding_window((6, 5), (3, 2), padding=(1, 0), stride=(2, 1)))
    assert "input 6×5" in text and "zero padding (1, 0)" in text
    assert "3×2 kernel" in text and "stride (2, 1)" in text
    assert f"output {conv_shape((6, 5), (3, 2), (1, 0), (2, 1), 1)[0]}×" in text


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=3, kernel=5), "larger than the padded input"),
    (dict(size=3, kernel=5, padding=0, dilation=1), "pad more or use a smaller kernel"),
    (dict(size=5, kernel=3, stride=0), "stride must be >= 1"),
    (dict(size=5, kernel=0), "kernel must be >= 1"),
    (dict(size=5, kernel=3, padding=-1), "padding must be >= 0"),
    (dict(size=0, kernel=1), "size must be >= 1"),
    (dict(size=True, kernel=1), "size must be an int"),
    (dict(size=(5, 5, 5), kernel=3), "pair of ints"),
    (dict(size=30, kernel=3), "too large to draw legibly"),
])
def test_sliding_window_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        figures.sliding_window(**kwargs)


# ----------------------------------------------------------------------------------------------
# pooling and the fully connected head
# ----------------------------------------------------------------------------------------------
@given(channels=st.integers(1, 64), size=st.integers(2, 32), pool=st.integers(1, 4),
       stride=st.one_of(st.none(), st.integers(1, 4)),
       hidden=st.lists(st.integers(1, 512), max_size=2), classes=st.integers(1, 1000))
@SETTINGS
def test_pooling_and_head_follows_its_arguments(channels, size, pool, stride, hidden, classes):
    if pool > size:
        with pytest.raises(ValueError, match="larger than the padded input"):
            figures.pooling_and_head(channels, size, pool, stride, hidden, classes)
        return
    fig = figures.pooling_and_head(channels, size, pool, stride, hidden, classes)
    x = torch.zeros(1, channels, size, size)
    pooled = F.max_pool2d(x, pool, stride)  # the oracle for the pooled size
    h = pooled.shape[-1]
    text = label_text(fig)
    assert f"{channels} maps\n{size}×{size}" in text and f"{channels} maps\n{h}×{h}" in text
    assert f"{pooled.flatten(1).shape[1]:,}\nvalues" in text
    assert f"{classes:,}\nclass\nscores" in text
    assert all(f"{n:,}\nunits" in text for n in hidden)
    assert f"stride {pool if stride is None else stride}" in text
    assert len(patches(fig, "hidden-unit")) == sum(min(n, 7) - (n > 7) for n in hidden)
    assert len(patches(fig, "class-unit")) == min(classes, 7) - (classes > 7)
    assert len(patches(fig, "flat-segment")) == min(channels, 4)
    assert layout_problems(fig) == []
    plt.close(fig)  # hypothesis runs many examples within one test


def test_pooling_and_head_of_the_mnist_network():
    """The book's MnistCNN: 20 maps of 8x8 -> max-pool 2 -> 320 -> fc 50 -> 10."""
    text = label_text(figures.pooling_and_head(20, 8, 2, hidden=(50,), classes=10))
    for label in ("20 maps\n8×8", "20 maps\n4×4", "max pool 2×2\nstride 2", "320\nvalues",
                  "50\nunits", "10\nclass\nscores", "fc + ReLU"):
        assert label in text, label


@pytest.mark.parametrize("kwargs, message", [
    (dict(channels=0, size=8), "channels must be a positive int"),
    (dict(channels=4, size=8, pool=0), "pool must be >= 1"),
    (dict(channels=4, size=8, stride=0), "stride must be >= 1"),
    (dict(channels=4, size=2, pool=3), "larger than the padded input"),
    (dict(channels=4, size=8, hidden=(0,)), "hidden width must be a positive int"),
    (dict(channels=4, size=8, kind="min"), "kind must be 'max' or 'avg'"),
])
def test_pooling_and_head_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        figures.pooling_and_head(**kwargs)


# ----------------------------------------------------------------------------------------------
# residual and plain blocks
# ----------------------------------------------------------------------------------------------
def test_residual_vs_plain_draws_both_blocks_with_the_given_layers():
    fig = figures.residual_vs_plain(8, 8, size=14)
    text = label_text(fig)
    assert text.count("3×3 conv, 8→8") == 4  # two per block
    assert text.count("BatchNorm") == 4 and text.count("ReLU\n") + text.count("ReLU") >= 4
    assert "plain block" in text and "residual block" in text and "identity" in text
    assert "(8×14×14)" in text
    assert len(patches(fig, "add")) == 1 and not patches(fig, "box-shortcut")


@pytest.mark.parametrize("stride, shortcut", [(2, "auto"), (2, "projection"), (2, "pad")])
def test_residual_vs_plain_shortcut_that_changes_shape(stride, shortcut):
    fig = figures.residual_vs_plain(16, 32, stride=stride, size=28, shortcut=shortcut)
    text = label_text(fig)
    out = F.conv2d(torch.zeros(1, 16, 28, 28), torch.zeros(32, 16, 3, 3), stride=stride, padding=1)
    assert "3×3 conv, 16→32, stride 2" in text and "3×3 conv, 32→32" in text
    assert f"\n{'×'.join(map(str, out.shape[1:]))}" in text  # 32×14×14
    assert len(patches(fig, "box-shortcut")) == 1
    expected = "16 zero\nchannels" if shortcut == "pad" else "1×1 conv\n16→32\nstride 2"
    assert expected in text
    assert layout_problems(fig) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_channels=8, channels=16, shortcut="identity"), "identity shortcut needs"),
    (dict(in_channels=8, channels=8, stride=2, shortcut="identity"), "identity shortcut needs"),
    (dict(in_channels=8, channels=8, shortcut="option C"), "shortcut must be one of"),
    (dict(in_channels=32, channels=16, stride=2, shortcut="pad"), "needs channels >= in_channels"),
    (dict(in_channels=0, channels=8), "in_channels must be a positive int"),
    (dict(in_channels=8, channels=8, stride=0), "stride must be a positive int"),
])
def test_residual_vs_plain_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        figures.residual_vs_plain(**kwargs)


# ----------------------------------------------------------------------------------------------
# the GAN game and the Grad-CAM pipeline
# ----------------------------------------------------------------------------------------------
def digit() -> torch.Tensor:
    """A real grey photograph (scikit-image's camera) at a digit's size, (1, 28, 28) in [0, 1]."""
    import skimage.data

    camera = torch.from_numpy(skimage.data.camera()).float()[None, None] / 255
    return F.interpolate(camera, size=(28, 28), mode="area")[0]


def test_gan_game_labels_and_images():
    real = digit()
    fig = figures.gan_game(64, (1, 28, 28), real=real, fake=real.flip(-1))
    text = label_text(fig)
    assert "64 numbers" in text and text.count("1×28×28") == 2
    assert r"-\log D(G(z))" in text and r"-\log D(x) - \log(1 - D(G(z)))" in text
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 2 and not patches(fig, "placeholder")
    assert np.array_equal(images[1].get_array(), real[0].numpy())  # the real digit, unchanged
    assert len(patches(figures.gan_game(100, (3, 32, 32)), "placeholder")) == 2


def test_gradcam_pipeline_labels_and_images():
    image = digit()[0]
    cam = F.avg_pool2d(image[None, None], 4)[0, 0]  # any map >= 0 at the layer's 7x7
    fig = figures.gradcam_pipeline(28, "conv2", 20, 7, "4", image=image, cam=cam)
    text = label_text(fig)
    for label in ("to conv2", "20 maps\n7×7", "class 4", r"\dfrac{1}{49}", "20 weights",
                  "7×7 → 28×28", "overlay\n28×28"):
        assert label in text, label
    assert [im.get_gid() for ax in fig.axes for im in ax.images] == ["image", "image", "image",
                                                                      "overlay"]


@pytest.mark.parametrize("call, message", [
    (lambda: figures.gan_game(0, (1, 28, 28)), "z_dim must be a positive int"),
    (lambda: figures.gan_game(100, (28,)), "image_shape must be"),
    (lambda: figures.gan_game(100, (1, 28, 28), real=torch.zeros(3, 28, 28)), "one grey image"),
    (lambda: figures.gradcam_pipeline(28, "conv2", 20, 32, "7"), "larger than image_size"),
    (lambda: figures.gradcam_pipeline(28, "", 20, 8, "7"), "layer must be"),
    (lambda: figures.gradcam_pipeline(28, "conv2", 20, 8, "7", cam=-torch.ones(8, 8)), ">= 0"),
])
def test_gan_and_gradcam_refuse_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------------------------
# layout of every figure, with the chapters' numbers and with awkward ones
# ----------------------------------------------------------------------------------------------
CASES = {
    "sliding window, chapter 02": lambda: figures.sliding_window(5, 3, padding=1, stride=2),
    "sliding window, dilated": lambda: figures.sliding_window((7, 9), 3, padding=(0, 2),
                                                              stride=(1, 3), dilation=2),
    "sliding window, largest": lambda: figures.sliding_window(20, 5, padding=2, stride=1),
    "sliding window, 1x1": lambda: figures.sliding_window(1, 1),
    "pooling head, chapter 03": lambda: figures.pooling_and_head(20, 8, 2, hidden=(50,)),
    "pooling head, wide": lambda: figures.pooling_and_head(512, 224, 3, 2, (4096, 4096), 1000,
                                                            kind="avg"),
    "residual, chapter 09": lambda: figures.residual_vs_plain(8, 8),
    "residual, projection": lambda: figures.residual_vs_plain(256, 512, stride=2, size=56),
    "residual, option A": lambda: figures.residual_vs_plain(16, 32, stride=2, size=(28, 28),
                                                            shortcut="pad"),
    "gan, placeholders": lambda: figures.gan_game(100, (1, 28, 28)),
    "gan, images": lambda: figures.gan_game(128, (3, 64, 64), real=digit(), fake=digit()),
    "gradcam, placeholders": lambda: figures.gradcam_pipeline(224, "layer4", 512, 7, "tabby cat"),
    "gradcam, images": lambda: figures.gradcam_pipeline((28, 28), "features.3", 24, (14, 14), 9,
                                                        image=digit(), cam=torch.rand(14, 14)),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_layout_is_legible(case):
    fig = CASES[case]()
    assert layout_problems(fig) == []
    assert fig.dpi == plotting.DPI
    data = png(fig)
    image = Image.open(io.BytesIO(data))
    assert image.width / plotting.DPI <= plotting.MAX_WIDTH_IN
    assert len(data) <= 300 * 1024


def test_the_layout_check_catches_overflow_overlap_and_width():
    """The checker itself must be able to fail: a label too long for its box, two labels on
    top of each other, a label off the page and a figure too wide are all reported."""
    fig = figures.residual_vs_plain(8, 8)
    ax = fig.axes[0]
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    box = patches(fig, "box-conv")[0]
    bx, by = box.get_x() + box.get_width() / 2, box.get_y() + box.get_height() / 2
    assert layout_problems(fig) == []
    ax.text(bx, by, "a label much too long for this box", ha="center", va="center")
    ax.text(x0 + 0.5, y1 - 0.05, "first", va="top")
    ax.text(x0 + 0.55, y1 - 0.05, "second", va="top")
    ax.text(x1 - 0.05, (y0 + y1) / 2, "off the page", ha="left")
    fig.set_size_inches(plotting.MAX_WIDTH_IN + 1, 4)
    problems = "\n".join(layout_problems(fig))
    assert "much too long for this box' overflows its box-conv" in problems
    assert "'first' overlaps 'second'" in problems
    assert "'off the page' leaves the figure" in problems
    assert "in wide (max 7.5)" in problems
