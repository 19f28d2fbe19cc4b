"""The landing page, the book's numbering and its downloads, as a reader meets them.

- Chapters are numbered in the sidebar (1, 2, ..., as their file prefixes 01, 02, ...; the
  appendix is not numbered), and figures and equations are numbered per chapter:
  "Fig. 4.2", "(2.3)", in captions and in every reference to them.
- The landing page shows every chapter as a card (number, title, one-line summary and a
  small figure with alt text), in 1, 2 and 3 columns on a phone, a tablet and a desktop,
  without sideways scrolling.
- It links the whole book as a PDF and all notebooks as a zip; the zip holds every chapter
  notebook as stored in the repository.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from html import unescape
from pathlib import Path

import pytest

from bookcheck import sideways_overflow, toc_pages

BOOK_ROOT = Path(os.environ.get("BOOK_ROOT", Path(__file__).resolve().parents[2])).resolve()
PAGES = toc_pages(BOOK_ROOT)
CHAPTERS = [d for d in PAGES if re.match(r"book/\d", d)]
APPENDIX = [d for d in PAGES if d.startswith("book/appendix/")]
LANDING = PAGES[0]
#: Reader screens and the number of card columns each should show.
COLUMNS = {390: 1, 800: 2, 1280: 3}
MAX_THUMB_BYTES = 60_000
PDF_LINK = ("Download the whole book as PDF", "downloads/book.pdf")
ZIP_LINK = ("all notebooks (zip)", "downloads/notebooks.zip")


def chapter_number(docname: str) -> int:
    """The number a chapter's file name gives it: book/04_training_loop -> 4."""
    return int(re.match(r"book/(\d+)_", docname).group(1))


def _html(html_dir: Path, docname: str) -> str:
    path = html_dir / f"{docname}.html"
    assert path.is_file(), f"{path} missing: build the book first"
    return path.read_text(encoding="utf-8")


def _text(fragment: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _sidebar_links(html: str, docname: str) -> dict[str, str]:
    """Page name (``04_training_loop``) -> link text of the primary sidebar's entries, on
    the page ``docname`` (whose own entry links to "#")."""
    nav = re.search(r'<nav class="[^"]*bd-docs-nav[^"]*".*?</nav>', html, re.S)
    assert nav, "no primary sidebar navigation"
    links = re.findall(r'<a class="[^"]*reference internal[^"]*" href="([^"#]*)[^"]*">(.*?)</a>',
                       nav.group(0), re.S)
    return {Path(href or docname).with_suffix("").name: _text(text) for href, text in links}


# ----------------------------------------------------------------------------------------
# Numbering
# ----------------------------------------------------------------------------------------
def test_chapters_are_numbered_in_the_sidebar(html_dir):
    by_doc = _sidebar_links(_html(html_dir, CHAPTERS[0]), CHAPTERS[0])
    wrong = []
    for docname in CHAPTERS:
        text = by_doc.get(Path(docname).name, "(missing)")
        if not text.startswith(f"{chapter_number(docname)}. "):
            wrong.append(f"{docname}: {text!r}")
    for docname in APPENDIX:
        text = by_doc.get(Path(docname).name, "(missing)")
        if text == "(missing)" or re.match(r"\d", text):
            wrong.append(f"{docname} (appendix, unnumbered): {text!r}")
    assert not wrong, "sidebar entries:\n  " + "\n  ".join(wrong)


def _numbered(html: str) -> tuple[list[str], list[str]]:
    """The figure numbers of a page's captions and the numbers of its equations, in order."""
    figures = re.findall(r'<span class="caption-number">Fig\. ([\d.]+)', html)
    equations = re.findall(r'<span class="eqno">\(([\d.]+)\)', html)
    return figures, equations


def _references(html: str) -> list[tuple[str, str, str]]:
    """Every {numref} and {eq} reference on a page as (kind, linked page, number shown); the
    linked page is "" for a reference to the same page."""
    figs = re.findall(r'<a class="reference internal" href="([^"#]*)#[^"]*">'
                      r'<span class="std std-numref">Fig\. ([\d.]+)</span>', html)
    eqs = re.findall(r'<a class="reference internal" href="([^"#]*)#equation-[^"]*">'
                     r'\(([\d.]+)\)</a>', html)
    return [("figure", page, num) for page, num in figs] + [
        ("equation", page, num) for page, num in eqs]


@pytest.mark.parametrize("docname", CHAPTERS)
def test_figures_and_equations_are_numbered_per_chapter(docname, html_dir):
    """Captions say "Fig. N.k" and equations "(N.k)", k = 1, 2, ... in order; every
    {numref} and {eq} reference on the page shows a number that its target chapter's page
    has, and links to that chapter (a reference to chapter 4's figure says "Fig. 4.1")."""
    html = _html(html_dir, docname)
    n = chapter_number(docname)
    figures, equations = _numbered(html)
    assert figures or equations, f"{docname}: no numbered figure or equation"
    for kind, found in (("figure", figures), ("equation", equations)):
        expected = [f"{n}.{k}" for k in range(1, len(found) + 1)]
        assert found == expected, f"{docname}: {kind} numbers {found}, expected {expected}"
    by_number = {chapter_number(d): d for d in CHAPTERS}
    ref_count = html.count('class="std std-numref"') + len(
        re.findall(r'class="reference internal" href="[^"]*#equation-', html))
    refs = _references(html)
    assert len(refs) == ref_count, f"{docname}: a reference the patterns do not parse"
    wrong = []
    for kind, page, number in refs:
        target = by_number.get(int(number.split(".")[0]))
        if target is None:
            wrong.append(f"{kind} {number}: no chapter {number.split('.')[0]}")
            continue
        want_page = "" if target == docname else f"{Path(target).name}.html"
        shown = dict(zip(("figure", "equation"), _numbered(_html(html_dir, target))))[kind]
        if page != want_page or number not in shown:
            wrong.append(f"{kind} {number} links to {page or 'this page'!r}; "
                         f"{target} has {kind}s {shown}")
    assert not wrong, f"{docname}: references that no caption or equation matches:\n  " + (
        "\n  ".join(wrong))


def test_numref_shows_the_chapter_number(html_dir):
    """The example from the issue: chapter 4's reference to its optimizer figure."""
    docname = next((d for d in CHAPTERS if d.endswith("04_training_loop")), None)
    if docname is None:
        pytest.skip("chapter 04_training_loop is not in this book")
    html = _html(html_dir, docname)
    ref = re.search(r'href="#fig-04-optimizers"[^>]*><span class="std std-numref">([^<]+)</span>',
                    html)
    assert ref, "no {numref} link to fig-04-optimizers"
    assert re.fullmatch(r"Fig\. 4\.\d+", ref.group(1)), ref.group(1)


# ----------------------------------------------------------------------------------------
# The landing page's chapter grid
# ----------------------------------------------------------------------------------------
_CARDS_JS = """
async () => {
  const cards = Array.from(document.querySelectorAll('main .chapter-grid .sd-card'));
  const imgs = cards.map(c => c.querySelector('img'));
  await Promise.all(imgs.filter(i => i && !i.complete).map(i => new Promise(r => {
      i.addEventListener('load', r); i.addEventListener('error', r); })));
  return cards.map(c => {
      const img = c.querySelector('img');
      const link = c.querySelector('a.sd-stretched-link');
      const box = c.getBoundingClientRect();
      return {
          title: (c.querySelector('.sd-card-title') || {}).innerText || '',
          summary: (c.querySelector('.sd-card-body p:not(.sd-card-title)') || {}).innerText || '',
          href: link ? link.href : '',
          img: img ? {src: img.currentSrc, natural: img.naturalWidth, alt: img.alt,
                      width: img.getBoundingClientRect().width} : null,
          left: Math.round(box.left), width: box.width};
  });
}
"""


def _chapter_titles(html_dir: Path) -> dict[str, str]:
    """docname -> the chapter's own heading text, without its number."""
    titles = {}
    for docname in CHAPTERS:
        h1 = re.search(r"<h1[^>]*>(.*?)</h1>", _html(html_dir, docname), re.S)
        titles[docname] = re.sub(r"^\d+\.\s*", "", _text(h1.group(1)).rstrip("#").strip())
    return titles


@pytest.mark.parametrize("width", sorted(COLUMNS))
def test_landing_page_shows_every_chapter(width, page_at, base_url, html_dir, screenshot_dir):
    pg = page_at(width)
    pg.goto(f"{base_url}{LANDING}.html")
    cards = pg.evaluate(_CARDS_JS)
    pg.screenshot(path=str(screenshot_dir / f"landing_grid-{width}.png"), full_page=True)
    titles = _chapter_titles(html_dir)
    assert len(cards) == len(CHAPTERS), f"{len(cards)} cards for {len(CHAPTERS)} chapters"
    problems = []
    for docname, card in zip(CHAPTERS, cards):
        want = f"{chapter_number(docname)}. {titles[docname]}"
        if card["title"].strip() != want:
            problems.append(f"card title {card['title']!r}, expected {want!r}")
        if len(card["summary"].split()) < 6:
            problems.append(f"{docname}: no one-line summary ({card['summary']!r})")
        if not card["href"].split("#")[0].endswith(f"{docname}.html"):
            problems.append(f"{docname}: card links to {card['href']!r}")
        img = card["img"]
        if not img or img["natural"] == 0:
            problems.append(f"{docname}: card without a loaded figure ({img})")
        elif len(img["alt"].split()) < 3:
            problems.append(f"{docname}: figure without alt text ({img['alt']!r})")
    columns = len({c["left"] for c in cards})
    if columns != COLUMNS[width]:
        problems.append(f"{columns} columns of cards at {width}px, expected {COLUMNS[width]}")
    overflow = sideways_overflow(pg)
    if overflow:
        problems.append(overflow)
    assert not problems, f"landing page at {width}px:\n  " + "\n  ".join(problems)


def test_thumbnails_are_small(html_dir):
    """Each card's figure is a downscaled file of at most 60 KB, not the full figure."""
    html = _html(html_dir, LANDING)
    grid = html[html.index("chapter-grid"):]
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', grid)[: len(CHAPTERS)]
    assert len(srcs) == len(CHAPTERS), srcs
    base = (html_dir / LANDING).parent
    sizes = {src: (base / unescape(src)).resolve().stat().st_size for src in srcs}
    big = {s: n for s, n in sizes.items() if n > MAX_THUMB_BYTES}
    assert not big, f"thumbnails over {MAX_THUMB_BYTES} bytes: {big}"


# ----------------------------------------------------------------------------------------
# Downloads
# ----------------------------------------------------------------------------------------
def _link(html: str, text: str) -> str:
    """The href of the landing page's link whose text is ``text``."""
    for href, inner in re.findall(r'<a [^>]*href="([^"]+)"[^>]*>(.*?)</a>', html, re.S):
        if _text(inner) == text:
            return unescape(href)
    raise AssertionError(f"the landing page has no link {text!r}")


def test_landing_page_links_the_pdf(html_dir):
    """The link is there and points at downloads/book.pdf (``make pdf`` writes the file;
    its own test checks it)."""
    text, target = PDF_LINK
    href = _link(_html(html_dir, LANDING), text)
    resolved = ((html_dir / LANDING).parent / href).resolve()
    assert resolved == (html_dir / target).resolve(), f"{text!r} links to {href!r}"


def test_notebooks_zip_holds_every_chapter(html_dir):
    text, target = ZIP_LINK
    href = _link(_html(html_dir, LANDING), text)
    path = ((html_dir / LANDING).parent / href).resolve()
    assert path == (html_dir / target).resolve(), f"{text!r} links to {href!r}"
    assert path.is_file(), f"{path} missing"
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
        assert archive.testzip() is None
        members = {Path(name).name: name for name in archive.namelist()}
        missing = [d for d in CHAPTERS if f"{Path(d).name}.ipynb" not in members]
        assert not missing, f"notebooks.zip lacks {missing}"
        stale = [d for d in CHAPTERS
                 if archive.read(members[f"{Path(d).name}.ipynb"])
                 != (BOOK_ROOT / f"{d}.ipynb").read_bytes()]
        assert not stale, f"notebooks.zip holds other versions of {stale}"
        assert "README.txt" in members, "notebooks.zip has no README.txt"
        readme = archive.read(members["README.txt"]).decode("utf-8")
        assert "pip install" in readme and "Colab" in readme, readme
