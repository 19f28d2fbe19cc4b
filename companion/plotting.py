"""The book's one matplotlib style: sharp figures whose labels stay legible at page width.

Every chapter calls :func:`use_book_style` once, after importing pyplot, so that all figures
share a resolution, font sizes and colours. The numbers follow from where figures are read:

- **150 dpi** -- a figure stays sharp on a phone or a high-density laptop screen, and when it is
  enlarged in the book's lightbox or printed in the PDF;
- **at most 7.5 inches wide** (``MAX_WIDTH_IN``) -- the book's text column is about 750 CSS px
  wide, so a wider figure is shrunk and its 9-10 pt labels would print smaller than the text;
- **PNG, no transparency** -- the same picture in the HTML book, the PDF and JupyterLab's dark
  theme.

``tests/test_reader_notebooks.py`` checks every stored figure against these numbers (resolution, width
and file size), so a chapter cannot silently drift from the style.
"""

from __future__ import annotations

from typing import Any

import matplotlib

DPI = 150
MAX_WIDTH_IN = 7.5

BOOK_STYLE: dict[str, Any] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.figsize": (6.4, 3.6),
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "image.cmap": "viridis",
    "lines.linewidth": 1.6,
}


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` to matplotlib (call it after ``import matplotlib.pyplot``).

    IPython's inline backend resets ``figure.dpi`` and ``figure.figsize`` when pyplot is first
    imported in a kernel, which is why the call must come after that import.
    """
    matplotlib.rcParams.update(BOOK_STYLE)
