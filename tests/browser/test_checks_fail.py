"""The browser checks can fail: a tiny book with one defect per page, built with Jupyter Book.

Each defect a reader could meet -- a broken image, a broken internal link or anchor, unrendered
math (TeX left as text, or MathJax unable to load), a figure cell without its image, a script
error -- is put on its own page, and the check that should catch it is shown to report it. A
clean page built with the same configuration passes, so the failures are the defects' doing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bookcheck import check_page, notebook_page_problems, serve, toc_pages

REPO = Path(__file__).resolve().parents[2]
EXT_DIR = REPO / "book" / "appendix" / "_ext"

CONFIG = f"""\
title: Tiny broken book
author: tests
only_build_toc_files: true
execute:
  execute_notebooks: "off"
parse:
  myst_enable_extensions: [amsmath, dollarmath, colon_fence]
sphinx:
  extra_extensions: [sphinx-mathjax-offline]
  local_extensions:
    page_assets: {EXT_DIR}
  config:
    html_context:
      default_mode: light
"""

TOC = """\
format: jb-book
root: index
chapters:
  - file: good
  - file: broken_image
  - file: broken_link
  - file: raw_math
  - file: figure_repr
  - file: script_error
"""

PAGES = {
    "index.md": "# Tiny book\n\nA root page.\n",
    "good.md": (
        "# Good page\n\n(good-section)=\n## A section\n\n"
        "Inline math $E = mc^2$ and a numbered equation\n\n"
        "$$\n\\sum_{i=1}^n i = \\frac{n(n+1)}{2}\n$$ (eq-good-sum)\n\n"
        ":::{figure} picture.png\n:name: fig-good-picture\n\nA small picture.\n:::\n\n"
        "Links: [the root](index.md), [a section](#good-section), {numref}`fig-good-picture`, "
        "{eq}`eq-good-sum`.\n"
    ),
    "broken_image.md": '# Broken image\n\n<img src="no-such-picture.png" alt="missing">\n',
    "broken_link.md": (
        "# Broken link\n\n"
        '<a href="no-such-page.html">a missing page</a> and '
        '<a href="good.html#no-such-anchor">a missing anchor</a>\n'
    ),
    # Escaped dollars: the TeX reaches the reader as text, as it does when math is not parsed.
    "raw_math.md": "# Raw math\n\nThe loss is \\$L = -\\log p_y\\$ for each example.\n",
    "script_error.md": '# Script error\n\n<script>throw new Error("boom");</script>\n',
}

FIGURE_NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Figure without image"]},
        {
            "cell_type": "code", "execution_count": 1,
            "metadata": {"mystnb": {"figure": {"caption": "Closed.", "name": "fig-tiny-repr"}}},
            "source": ["fig, ax = plt.subplots()"],
            # What a figure closed before display leaves behind: its repr and no picture.
            "outputs": [{
                "output_type": "execute_result", "execution_count": 1, "metadata": {},
                "data": {"text/plain": ["<Figure size 640x480 with 1 Axes>"]},
            }],
        },
        {   # A figure cell that was never executed: no output, so no figure on the page.
            "cell_type": "code", "execution_count": None, "outputs": [],
            "metadata": {"mystnb": {"figure": {"caption": "Never drawn.", "name": "fig-tiny-missing"}}},
            "source": ["fig"],
        },
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> tuple[Path, Path]:
    """(source root, html dir) of the tiny book, built once for this module."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    root = tmp_path_factory.mktemp("tiny_book")
    (root / "_config.yml").write_text(CONFIG, encoding="utf-8")
    (root / "_toc.yml").write_text(TOC, encoding="utf-8")
    for name, text in PAGES.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "figure_repr.ipynb").write_text(json.dumps(FIGURE_NOTEBOOK), encoding="utf-8")
    plt.imsave(root / "picture.png", np.indices((16, 16)).sum(axis=0) % 2, cmap="gray")

    jb = Path(sys.executable).with_name("jupyter-book")
    done = subprocess.run(
        [str(jb), "build", str(root), "--keep-going", "-q"],
        capture_output=True, text=True, timeout=300,
    )
    html = root / "_build" / "html"
    assert (html / "good.html").is_file(), f"tiny book did not build:\n{done.stdout}\n{done.stderr}"
    return root, html


@pytest.fixture(scope="module")
def tiny_url(tiny_book):
    with serve(tiny_book[1]) as url:
        yield url


@pytest.fixture()
def problems_of(browser, tiny_book, tiny_url):
    """problems_of(page_name, block_mathjax=False) -> the problems check_page reports there

    (the full report of the last call is kept as ``problems_of.last_report``)."""
    contexts = []

    def run(name: str, block_mathjax: bool = False) -> list[str]:
        context = browser.new_context()
        contexts.append(context)

        def route(r):
            url = r.request.url
            if not url.startswith(tiny_url) or (block_mathjax and "/mathjax/" in url):
                return r.abort("internetdisconnected")
            return r.continue_()

        context.route("**/*", route)
        report = check_page(context.new_page(), f"{tiny_url}{name}.html", tiny_url, tiny_book[1])
        run.last_report = report
        return report.problems

    yield run
    for context in contexts:
        context.close()


def _has(problems: list[str], text: str) -> bool:
    return any(text in p for p in problems)


def test_toc_pages_lists_the_tiny_book(tiny_book):
    assert toc_pages(tiny_book[0]) == [
        "index", "good", "broken_image", "broken_link", "raw_math", "figure_repr", "script_error",
    ]


def test_clean_page_passes(problems_of):
    assert problems_of("good") == []
    report = problems_of.last_report
    # ... and it did have something to check: math, an image, internal links.
    assert report.math >= 2 and report.images >= 1 and report.links >= 4, report


def test_broken_image_fails(problems_of):
    problems = problems_of("broken_image")
    assert _has(problems, "image not loaded (naturalWidth 0)"), problems
    assert _has(problems, "no-such-picture.png"), problems


def test_broken_internal_link_and_anchor_fail(problems_of):
    problems = problems_of("broken_link")
    assert _has(problems, "broken internal link: no-such-page.html"), problems
    assert _has(problems, "broken anchor: good.html#no-such-anchor"), problems


def test_tex_left_as_text_fails(problems_of):
    problems = problems_of("raw_math")
    assert _has(problems, "raw TeX left in the text: '$L = -\\\\log p_y$'"), problems


def test_math_without_mathjax_fails(problems_of):
    """The same clean page, with MathJax unreachable (as the default CDN copy is offline)."""
    problems = problems_of("good", block_mathjax=True)
    assert _has(problems, "MathJax did not load") or _has(problems, "math not rendered"), problems
    assert _has(problems, "request failed"), problems


def test_figure_cell_without_image_fails(problems_of, tiny_book):
    problems = problems_of("figure_repr")
    assert _has(problems, "figure cell shows no image, only its repr: <Figure size 640x480"), problems
    assert _has(problems, "figure without an image: #fig-tiny-repr"), problems
    root, html = tiny_book
    problems = notebook_page_problems(
        root / "figure_repr.ipynb", html / "figure_repr.html", problems_of.last_report
    )
    assert _has(problems, "figure cells with no figure on the page (not executed?): ['fig-tiny-missing']"), problems


def test_script_error_fails(problems_of):
    problems = problems_of("script_error")
    assert _has(problems, "console error: uncaught: boom"), problems
