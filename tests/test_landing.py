"""The landing page's data and the Running appendix, checked without building the book.

- Every chapter notebook has a card on the landing page (a one-line summary and a figure that
  the notebook stores), and the grid's check fires when one is missing.
- Thumbnails fit in 60 KB; the notebooks' zip holds every chapter and a README.
- ``book/appendix/running.md`` shows no placeholder (``<URL>``, a JupyterHub setting), names
  only notebooks that exist and only ``make`` targets the Makefile has, and tells the reader
  about the setup cell, the ``dlbook`` kernel, ``make pdf`` and jupyterlab-myst.
"""

from __future__ import annotations

import io
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "appendix" / "_ext"))
import landing  # noqa: E402  (the book's local Sphinx extension)

RUNNING = ROOT / "book" / "appendix" / "running.md"
INTRO = ROOT / "book" / "intro.md"
CHAPTERS = landing.find_chapters(ROOT)
MAX_SUMMARY = 140  # characters: one line of a card


def grid_cards() -> dict[str, dict]:
    """The chapter-grid directive's body in the landing page, parsed."""
    text = INTRO.read_text(encoding="utf-8")
    body = re.search(r"^```\{chapter-grid\}[^\n]*\n(.*?)^```", text, re.S | re.M)
    assert body, f"{INTRO} has no chapter-grid directive"
    return landing.parse_cards(body.group(1))


# ------------------------------------------------------------------------------------------
# The chapter grid
# ------------------------------------------------------------------------------------------
def test_chapters_are_found():
    assert len(CHAPTERS) >= 14
    assert [c.number for c in CHAPTERS] == list(range(1, len(CHAPTERS) + 1))


def test_every_chapter_has_a_card():
    assert landing.card_problems(CHAPTERS, grid_cards()) == []


def test_a_missing_card_is_reported():
    cards = grid_cards()
    dropped = CHAPTERS[3].stem
    del cards[dropped]
    cards["99_unknown"] = {"summary": "x", "figure": "fig-x"}
    cards[CHAPTERS[0].stem] = {"figure": cards[CHAPTERS[0].stem]["figure"]}
    problems = landing.card_problems(CHAPTERS, cards)
    assert any(dropped in p for p in problems), problems
    assert any("99_unknown" in p for p in problems), problems
    assert any(CHAPTERS[0].stem in p and "summary" in p for p in problems), problems


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.stem)
def test_card_summary_and_figure(chapter):
    entry = grid_cards()[chapter.stem]
    summary = " ".join(str(entry["summary"]).split())
    assert len(summary) <= MAX_SUMMARY, f"{len(summary)} characters: {summary}"
    figures = landing.notebook_figures(landing.read_notebook(chapter.path))
    names = [f.name for f in figures]
    assert entry["figure"] in names, f"{entry['figure']!r} is not a stored figure of {names}"
    chosen = next(f for f in figures if f.name == entry["figure"])
    data, suffix = landing.make_thumbnail(chosen.png)
    assert len(data) <= landing.THUMB_MAX_BYTES and suffix in (".png", ".jpg")
    assert Image.open(io.BytesIO(data)).width <= landing.THUMB_WIDTH
    assert landing.plain_text(chosen.caption), "the figure has no caption for its alt text"


def test_a_noisy_figure_still_fits():
    """A figure that compresses badly (noise) is shrunk until it fits."""
    noise = np.random.default_rng(0).integers(0, 256, (900, 1800, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    data, _ = landing.make_thumbnail(buffer.getvalue())
    assert len(data) <= landing.THUMB_MAX_BYTES
    assert len(buffer.getvalue()) > 10 * landing.THUMB_MAX_BYTES


def test_notebook_titles():
    for chapter in CHAPTERS:
        title = landing.notebook_title(landing.read_notebook(chapter.path))
        assert title and not title.startswith("#")
    with pytest.raises(ValueError):
        landing.notebook_title({"cells": [{"cell_type": "markdown", "source": ["no title"]}]})


def test_notebooks_zip(tmp_path):
    target = landing.write_notebooks_zip(CHAPTERS, tmp_path / "d" / "notebooks.zip",
                                         landing.zip_readme("https://x.test/r", CHAPTERS))
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        assert {f"notebooks/{c.path.name}" for c in CHAPTERS} <= set(names)
        assert "notebooks/README.txt" in names
        assert archive.read(f"notebooks/{CHAPTERS[0].path.name}") == CHAPTERS[0].path.read_bytes()
        readme = archive.read("notebooks/README.txt").decode()
    assert "pip install git+https://x.test/r" in readme and "Colab" in readme
    again = landing.write_notebooks_zip(CHAPTERS, tmp_path / "e.zip", readme)
    assert again.read_bytes() == target.read_bytes(), "the same notebooks give another zip"


# ------------------------------------------------------------------------------------------
# The Running appendix
# ------------------------------------------------------------------------------------------
def running_text() -> str:
    return RUNNING.read_text(encoding="utf-8")


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):", makefile, re.M))


def test_running_has_no_placeholders():
    text = running_text()
    # The page holds no HTML, so any <...> that is not an autolink stands in for something.
    placeholders = [m for m in re.findall(r"<[^<>\n]+>", text) if not m.startswith("<http")]
    assert not placeholders, f"placeholders in {RUNNING.name}: {placeholders}"
    assert "jupyterhub_url" not in text


def test_running_names_only_existing_notebooks():
    named = set(re.findall(r"\bbook/[\w./-]+\.ipynb\b", running_text()))
    assert named, "the page names no chapter file"
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, f"{RUNNING.name} names notebooks that do not exist: {missing}"


def test_running_commands_are_make_targets():
    used = set(re.findall(r"\bmake ([a-z][\w-]*)", running_text()))
    assert used, "the page shows no make command"
    unknown = sorted(used - make_targets())
    assert not unknown, f"{RUNNING.name} shows make targets the Makefile lacks: {unknown}"


@pytest.mark.parametrize("term", [
    "setup cell", "Colab", "dlbook", "OMP_WAIT_POLICY=PASSIVE", "COMPANION_PROGRESS=line",
    "PYTHONHASHSEED=0", "make pdf", "jupyterlab-myst", "notebooks.zip",
])
def test_running_explains(term):
    assert term in running_text(), f"{RUNNING.name} does not mention {term!r}"
