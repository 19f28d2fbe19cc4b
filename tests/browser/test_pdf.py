"""The whole book on paper: the PDF ``make pdf`` prints (``<BOOK_HTML>/downloads/book.pdf``).

Read with pypdf, the PDF must be the book: a sane number of pages, an outline (bookmarks) with every
chapter of ``_toc.yml`` in order, no page showing TeX or MyST markup that was never rendered, the
text of every exercise solution (on the web they are collapsed; paper cannot be clicked), and each
chapter's longest code line and longest printed output line whole (Chromium prints only the
visible part of a line its box cuts off, so a cut line's end is missing from the text). The last
tests print a tiny defective page with Chromium and show that each check reports its defect.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import pytest

from bookcheck import toc_pages

BOOK_ROOT = Path(os.environ.get("BOOK_ROOT", Path(__file__).resolve().parents[2])).resolve()
PAGES = toc_pages(BOOK_ROOT)
DOCS = PAGES[1:]  # the root page is the title page and contents
NOTEBOOKS = [d for d in DOCS if (BOOK_ROOT / f"{d}.ipynb").is_file()]
# Markup a reader must never see: display math, TeX commands the book's equations use, MyST roles
# and fences. None of them occurs in the book's code or outputs (which the PDF also shows).
RAW_MARKUP = re.compile(
    r"\$\$|\\begin\{|\\end\{|\\\(|\\\["
    r"|\\(?:frac|sum|cdot|lfloor|rfloor|mathrm|mathbb|mathcal|operatorname|approx|partial"
    r"|infty|qquad|lambda|sigma|theta|tilde|times|left|right)(?![a-zA-Z])"
    r"|\{(?:cite|cite:[pt]|numref|eq|ref|doc|term|glue)\}|^:::|:::\{"
    r"|\{admonition\}|\{figure\}|\{math\}",
    re.M,
)
# Pages per chapter-sized document: fewer means chapters are missing or cut short, more means
# the layout blew up (e.g. a word per line).
MIN_PAGES_PER_DOC, MAX_PAGES_PER_DOC = 4, 40
HIDDEN_INPUT = {"remove-cell", "remove-input", "hide-input"}
SOLUTION = re.compile(r"^:::+\{admonition\} Solution[^\n]*\n(.*?)^:::+\s*$", re.M | re.S)


# --------------------------------------------------------------------------------------------------
# Reading the PDF and the sources
# --------------------------------------------------------------------------------------------------
def squash(text: str) -> str:
    """Text as compared: compatibility forms (ligatures), straight quotes, no whitespace at all
    (the PDF breaks lines where the page ends, the source where the author did)."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-",
                                         "—": "-", "\u00ad": ""}))
    return re.sub(r"\s+", "", text)


@lru_cache(maxsize=4)
def pdf_texts(pdf: Path) -> tuple[str, ...]:
    """The extracted text of every page (pypdf parses a page of this book in about a quarter of a
    second, so each PDF is read once)."""
    from pypdf import PdfReader

    return tuple(page.extract_text() or "" for page in PdfReader(str(pdf)).pages)


def outline_titles(pdf: Path) -> list[tuple[int, str]]:
    """(depth, title) of every outline entry, in reading order."""
    from pypdf import PdfReader

    found: list[tuple[int, str]] = []

    def walk(items, depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            else:
                found.append((depth, re.sub(r"\s+", " ", item.title).strip()))

    walk(PdfReader(str(pdf)).outline, 0)
    return found


def doc_title(docname: str) -> str:
    """A page's title: the first "# " heading of its notebook or Markdown file."""
    for suffix in (".ipynb", ".md"):
        path = BOOK_ROOT / f"{docname}{suffix}"
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            if suffix == ".ipynb":
                text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"]
                                 if c["cell_type"] == "markdown")
            heading = re.search(r"^# +(.+?)\s*$", text, re.M)
            if heading:
                return heading.group(1).strip()
    raise AssertionError(f"{docname}: no '# ' title found in its source")


def notebook_cells(docname: str) -> list[dict]:
    return json.loads((BOOK_ROOT / f"{docname}.ipynb").read_text(encoding="utf-8"))["cells"]


def plain_sentence(block: str) -> str | None:
    """The longest stretch of a solution that the PDF prints as written: a code line, or prose
    between markup (math, roles and links break it; code literals and emphasis keep their text).
    None when nothing of 20 characters is left."""
    candidates = []
    in_code = False
    for line in block.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            candidates.append(line.strip())
            continue
        if line.startswith(":"):
            continue
        line = re.sub(r"\{[^}]+\}`[^`]*`|\$[^$]*\$", "\0", line)
        line = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line)
        line = re.sub(r"\*\*(.+?)\*\*", r"\1", line)
        line = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", line)
        line = line.replace("`", "")
        candidates += [f.strip() for f in line.split("\0") if not re.search(r"[$\\{}<>|]", f)]
    candidates = [c for c in candidates if len(c) >= 20]
    return max(candidates, key=len) if candidates else None


def solution_snippets(docname: str) -> list[str]:
    """One line of every exercise solution of a notebook (see :func:`plain_sentence`)."""
    markdown = "\n".join("".join(c["source"]) for c in notebook_cells(docname)
                         if c["cell_type"] == "markdown")
    return [s for s in (plain_sentence(b) for b in SOLUTION.findall(markdown)) if s]


def longest_code_line(docname: str) -> str:
    """The longest line of a notebook's shown code cells: the one most likely to be cut."""
    lines = [line.rstrip() for c in notebook_cells(docname) if c["cell_type"] == "code"
             and not HIDDEN_INPUT & set(c["metadata"].get("tags", []))
             for line in "".join(c["source"]).splitlines()]
    return max(lines, key=len)


def longest_output_line(docname: str) -> str | None:
    """The longest line a notebook prints (stdout/stderr streams): cut off, its end would be
    missing from the page. Chromium prints only the visible part of a clipped line."""
    lines = [line.rstrip() for c in notebook_cells(docname) if c["cell_type"] == "code"
             and not {"remove-cell", "remove-output"} & set(c["metadata"].get("tags", []))
             for out in c.get("outputs", []) if out.get("output_type") == "stream"
             for line in "".join(out.get("text", "")).splitlines()]
    return max(lines, key=len) if lines else None


# --------------------------------------------------------------------------------------------------
# The checks (each returns what is wrong; empty means it passed)
# --------------------------------------------------------------------------------------------------
def raw_markup(texts: tuple[str, ...]) -> list[str]:
    """Unrendered TeX or MyST on any page, as "page N: '...'"."""
    found = []
    for number, text in enumerate(texts, 1):
        for m in RAW_MARKUP.finditer(text):
            context = text[max(0, m.start() - 30):m.end() + 30].replace("\n", " ")
            found.append(f"page {number}: {m.group(0)!r} in {context!r}")
    return found


def missing_from_outline(outline: list[tuple[int, str]], titles: list[str]) -> list[str]:
    """Titles with no top-level outline entry after the previous title's (a chapter's entry may
    carry its number: "3. Pooling ...")."""
    top = [squash(title) for depth, title in outline if depth == 0]
    missing, start = [], 0
    for title in titles:
        want = squash(title)
        hit = next((i for i in range(start, len(top))
                    if top[i] == want or re.fullmatch(r"[\d.]+" + re.escape(want), top[i])), None)
        if hit is None:
            missing.append(title)
        else:
            start = hit + 1
    return missing


def missing_text(texts: tuple[str, ...], snippets: list[str]) -> list[str]:
    """Snippets that appear on no page (compared without whitespace: lines wrap differently)."""
    whole = squash("".join(texts))
    return [s for s in snippets if squash(s) not in whole]


# --------------------------------------------------------------------------------------------------
# The book's PDF
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pdf(html_dir: Path) -> Path:
    path = html_dir / "downloads" / "book.pdf"
    if not path.is_file():
        pytest.fail(f"{path} not found: print the book first (make pdf)")
    return path


def test_page_count_is_a_books(pdf):
    pages = len(pdf_texts(pdf))
    low, high = MIN_PAGES_PER_DOC * len(DOCS), MAX_PAGES_PER_DOC * len(DOCS)
    assert low <= pages <= high, f"{pages} pages for {len(DOCS)} chapters and appendices"


def test_outline_lists_every_chapter_in_order(pdf):
    titles = [doc_title(d) for d in DOCS]
    outline = outline_titles(pdf)
    assert not missing_from_outline(outline, titles), (
        f"not in the outline (in _toc.yml order): {missing_from_outline(outline, titles)}; "
        f"top level: {[t for d, t in outline if d == 0]}"
    )


def test_outline_has_sections(pdf):
    """Chapters open onto their sections (the outline is more than a list of chapters)."""
    depths = [depth for depth, _ in outline_titles(pdf)]
    assert depths.count(1) >= 3 * len(NOTEBOOKS), depths


def test_no_page_shows_raw_markup(pdf):
    found = raw_markup(pdf_texts(pdf))
    assert not found, "\n".join(found[:20])


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_solutions_are_printed(pdf, docname):
    snippets = solution_snippets(docname)
    if not snippets:
        pytest.skip(f"{docname} has no exercise solutions")
    assert not missing_text(pdf_texts(pdf), snippets), missing_text(pdf_texts(pdf), snippets)


def test_every_solution_is_titled_after_its_exercise(pdf):
    markdown = "\n".join("".join(c["source"]) for d in NOTEBOOKS for c in notebook_cells(d)
                         if c["cell_type"] == "markdown")
    expected = len(SOLUTION.findall(markdown))
    printed = "\n".join(pdf_texts(pdf)).count("Solution to exercise")
    assert printed == expected, f"{printed} solutions printed, the notebooks have {expected}"


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_longest_code_line_is_whole(pdf, docname):
    line = longest_code_line(docname)
    assert not missing_text(pdf_texts(pdf), [line]), f"not in the PDF: {line!r}"


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_longest_output_line_is_whole(pdf, docname):
    line = longest_output_line(docname)
    if not line:
        pytest.skip(f"{docname} prints no text output")
    assert not missing_text(pdf_texts(pdf), [line]), f"not in the PDF: {line!r}"


# --------------------------------------------------------------------------------------------------
# The checks fail on a defective print
# --------------------------------------------------------------------------------------------------
LONG_LINE = ("result = " + " + ".join(f"weight_{i} * feature_{i}" for i in range(9))
             + "  # END-OF-LINE")
BAD_PAGE = f"""<!doctype html><html><head><title>Tiny</title><style>
body {{ font-family: 'Liberation Serif', serif; }}
pre {{ font-family: 'DejaVu Sans Mono', monospace; white-space: pre; overflow: hidden; }}
</style></head><body>
<h1>Tiny chapter</h1>
<p>The loss is $$\\frac{{a}}{{b}}$$ and see {{numref}}`fig-x`.</p>
<pre>{LONG_LINE}</pre>
</body></html>"""
GOOD_PAGE = (BAD_PAGE.replace("white-space: pre; overflow: hidden", "white-space: pre-wrap")
             .replace("$$\\frac{a}{b}$$ and see {numref}`fig-x`", "a / b and see Fig. 1"))


@pytest.fixture(scope="module")
def tiny_pdfs(browser, tmp_path_factory) -> dict[str, Path]:
    """The tiny page printed as the book would be without print.css and MathJax ("bad", no
    outline), and fixed ("good", with Chromium's own outline)."""
    folder = tmp_path_factory.mktemp("tiny_pdf")
    paths = {}
    context = browser.new_context()
    try:
        for name, html, options in (("bad", BAD_PAGE, {}),
                                    ("good", GOOD_PAGE, {"outline": True, "tagged": True})):
            page = context.new_page()
            page.set_content(html)
            paths[name] = folder / f"{name}.pdf"
            page.pdf(path=str(paths[name]), format="A4", **options)
    finally:
        context.close()
    return paths


def test_checks_report_the_defects_of_a_bad_print(tiny_pdfs):
    bad = tiny_pdfs["bad"]
    texts = pdf_texts(bad)
    markup = raw_markup(texts)
    assert any("'$$'" in m for m in markup) and any("\\\\frac" in m for m in markup), markup
    assert any("{numref}" in m for m in markup), markup
    assert missing_from_outline(outline_titles(bad), ["Tiny chapter"]) == ["Tiny chapter"]
    assert missing_text(texts, ["The solution is forty-two."]) == ["The solution is forty-two."]
    # Chromium prints only the visible part of a line cut off by its box: its end is missing.
    assert missing_text(texts, [LONG_LINE]) == [LONG_LINE]


def test_checks_pass_a_good_print(tiny_pdfs):
    good = tiny_pdfs["good"]
    texts = pdf_texts(good)
    assert raw_markup(texts) == []
    assert missing_from_outline(outline_titles(good), ["Tiny chapter"]) == []
    assert missing_text(texts, [LONG_LINE]) == []
