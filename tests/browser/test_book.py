"""The rendered book, page by page, in headless Chromium (``make browser-check``).

Every page of the table of contents is checked, so a new chapter is held to the same bar without
editing this file: it loads with no console error or failed request, all its images load, every
figure shows an image, its math is typeset, and every internal link and anchor resolves. Chapters
also get their reader features checked: launch and download buttons, a search that finds them,
and exercises whose solutions stay hidden until asked for.
"""

from __future__ import annotations

import os
import re
from html import unescape
from pathlib import Path

import pytest

from bookcheck import (
    check_page,
    distinctive_word,
    notebook_page_problems,
    search,
    toc_pages,
)

BOOK_ROOT = Path(os.environ.get("BOOK_ROOT", Path(__file__).resolve().parents[2])).resolve()
PAGES = toc_pages(BOOK_ROOT)
CHAPTERS = [d for d in PAGES if re.match(r"book/\d", d)]
NOTEBOOKS = [d for d in PAGES if (BOOK_ROOT / f"{d}.ipynb").is_file()]
# A few pages a human should look at after each CI run (the root, the first and last chapter, the
# glossary); saved under _build/screenshots/.
SCREENSHOTS = {PAGES[0], *CHAPTERS[:1], *CHAPTERS[-1:], "book/appendix/glossary"}
# Papers the book must list (issue 8), by bibtex key and the surname the entry shows.
REQUIRED_PAPERS = {
    "lecun1998gradient": "LeCun",
    "krizhevsky2012imagenet": "Krizhevsky",
    "simonyan2015very": "Simonyan",
    "szegedy2015going": "Szegedy",
    "he2016deep": "He",
    "goodfellow2014generative": "Goodfellow",
    "radford2016unsupervised": "Radford",
    "ganin2016domain": "Ganin",
}
CHINESE_TERMS = ["卷积", "池化", "全连接层", "残差块", "生成对抗网络"]


def _url(base_url: str, docname: str) -> str:
    return f"{base_url}{docname}.html"


def _open(page, base_url: str, html_dir: Path, docname: str) -> None:
    """Open a page of the book, failing with a clear message when the build lacks it."""
    html_file = html_dir / f"{docname}.html"
    assert html_file.is_file(), f"{html_file} missing: is {docname} in the build? (make book-check)"
    page.goto(_url(base_url, docname))


def test_table_of_contents_has_pages():
    assert PAGES, f"no pages found in {BOOK_ROOT / '_toc.yml'}"
    assert PAGES[0] == "book/intro"


@pytest.mark.parametrize("docname", PAGES)
def test_page_renders_cleanly(docname, page, base_url, html_dir, screenshot_dir):
    html_file = html_dir / f"{docname}.html"
    assert html_file.is_file(), f"{html_file} missing: is {docname} in the build? (make book-check)"
    report = check_page(page, _url(base_url, docname), base_url, html_dir)
    if docname in SCREENSHOTS:
        page.screenshot(path=str(screenshot_dir / f"{docname.replace('/', '__')}.png"), full_page=False)
    assert not report.problems, f"{docname}:\n  " + "\n  ".join(report.problems)
    source = BOOK_ROOT / f"{docname}.ipynb"
    if source.is_file():
        problems = notebook_page_problems(source, html_file, report)
        assert not problems, f"{docname}:\n  " + "\n  ".join(problems)


def test_every_page_is_in_the_sidebar(page, base_url):
    page.goto(_url(base_url, PAGES[0]))
    hrefs = page.eval_on_selector_all(".bd-sidebar a.reference.internal", "as => as.map(a => a.href)")
    linked = {h.split("#")[0] for h in hrefs}
    missing = [d for d in PAGES[1:] if _url(base_url, d) not in linked]
    assert not missing, f"pages missing from the navigation sidebar: {missing}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_search_finds_the_chapter(docname, page, base_url, html_dir):
    _open(page, base_url, html_dir, docname)
    title = page.inner_text("main h1")
    term = distinctive_word(title)
    results = search(page, base_url, term)
    assert f"{docname}.html" in results, f"searching {term!r} (from {title!r}) listed {results}"


def test_search_screenshot(page, base_url, screenshot_dir):
    """The search page itself, typed into as a reader would, kept as a screenshot."""
    results = search(page, base_url, "convolution")
    page.screenshot(path=str(screenshot_dir / "search.png"))
    if CHAPTERS:
        assert results, "searching 'convolution' found nothing"


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_launch_and_download_buttons(docname, html_dir):
    """Static check (no browser needed): the page's launch and download links."""
    html_file = html_dir / f"{docname}.html"
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', html_file.read_text(encoding="utf-8"))]
    notebook_path = f"{docname}.ipynb"
    for name, pattern in {
        "Binder": r"^https://mybinder\.org/v2/gh/.+\?urlpath=lab/tree/",
        "Colab": r"^https://colab\.research\.google\.com/github/",
        "JupyterHub": r"/hub/user-redirect/git-pull\?repo=",
    }.items():
        launch = [h for h in hrefs if re.search(pattern, h)]
        assert launch, f"{docname}: no {name} launch button"
        assert all(notebook_path in h for h in launch), f"{docname}: {name} opens {launch}"
    downloads = [h for h in hrefs if h.endswith(f"_sources/{notebook_path}")]
    assert downloads, f"{docname}: no 'download .ipynb' link"
    assert (html_dir / "_sources" / notebook_path).is_file()


@pytest.mark.parametrize("docname", CHAPTERS)
def test_exercises_hide_their_solutions(docname, page, base_url, html_dir):
    _open(page, base_url, html_dir, docname)
    assert page.locator("section#exercises").count() == 1, f"{docname}: no '## Exercises' section"
    dropdowns = page.locator("section#exercises .admonition.dropdown")
    n = dropdowns.count()
    assert n >= 1, f"{docname}: Exercises has no solution in a dropdown admonition"
    for i in range(n):
        body = dropdowns.nth(i).locator("> :not(.admonition-title)").first
        assert not body.is_visible(), f"{docname}: solution {i + 1} is shown before it is asked for"
    dropdowns.first.locator(".admonition-title").click()
    dropdowns.first.locator("> :not(.admonition-title)").first.wait_for(state="visible", timeout=5_000)


def _bib_title(key: str) -> str:
    """The title field of ``key`` in references.bib (braces removed)."""
    bib = (BOOK_ROOT / "references.bib").read_text(encoding="utf-8")
    entry = re.search(r"@\w+\{\s*" + re.escape(key) + r"\s*,(.*?)\n\}", bib, re.S)
    assert entry, f"references.bib has no entry {key!r}"
    title = re.search(r"\btitle\s*=\s*[{\"](.+?)[}\"]\s*,?\s*\n", entry.group(1), re.S)
    assert title, f"references.bib entry {key!r} has no title"
    return re.sub(r"[{}]", "", title.group(1))


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def test_bibliography_lists_the_papers(page, base_url, html_dir):
    _open(page, base_url, html_dir, "book/appendix/bibliography")
    text = _words(page.inner_text("main"))
    missing = [
        key for key, surname in REQUIRED_PAPERS.items()
        if _words(surname) not in text or _words(_bib_title(key)) not in text
    ]
    assert not missing, f"bibliography page lacks {missing}"


def test_glossary_gives_chinese_equivalents(page, base_url, html_dir):
    _open(page, base_url, html_dir, "book/appendix/glossary")
    terms = page.eval_on_selector_all("dl.glossary dt", "ds => ds.map(d => d.innerText)")
    assert len(terms) >= 20, terms
    missing = [t for t in CHINESE_TERMS if not any(t in term for term in terms)]
    assert not missing, f"glossary terms without these Chinese equivalents: {missing}"
