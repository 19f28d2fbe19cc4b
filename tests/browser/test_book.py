"""The rendered book, page by page, in headless Chromium (``make browser-check``).

Every page of the table of contents is checked, so a new chapter is held to the same bar without
editing this file: it loads with no console error or failed request, all its images load, every
figure shows an image, its math is typeset, every internal link and anchor resolves, and
no cell output has a line cut off behind a scrollbar. Every page must also fit a phone's
screen (390 px) without scrolling sideways. Chapters also get their reader features
checked: launch and download buttons, a search that finds them, exercises whose
solutions stay hidden until asked for, sidebar buttons that open the navigation on
phones and tablets and hide it on a desktop, and figures that enlarge when tapped.
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
    overflowing_outputs,
    search,
    sideways_overflow,
    toc_pages,
)

BOOK_ROOT = Path(os.environ.get("BOOK_ROOT", Path(__file__).resolve().parents[2])).resolve()
PAGES = toc_pages(BOOK_ROOT)
CHAPTERS = [d for d in PAGES if re.match(r"book/\d", d)]
NOTEBOOKS = [d for d in PAGES if (BOOK_ROOT / f"{d}.ipynb").is_file()]
# Reader screens: phones, tablets, desktops (the `page` fixture is a desktop).
PHONE, TABLET, DESKTOP = 390, 800, 1280
# Pages a human should look at after each CI run, saved under _build/screenshots/ as
# <page>-<width>.png: the landing page and two chapters at all three widths (and the
# glossary on a desktop). Chapters that no longer exist give way to the first and last.
_WANTED = [d for d in ("book/04_training_loop", "book/15_metrics") if d in CHAPTERS]
_SHOWN = _WANTED or CHAPTERS[:1] + CHAPTERS[-1:]
SCREENSHOT_PAGES = list(dict.fromkeys([PAGES[0], *_SHOWN]))
SCREENSHOTS_DESKTOP = {*SCREENSHOT_PAGES, "book/appendix/glossary"}
# The chapter whose sidebar buttons and figures are tried by hand (it has figures).
READER_CHAPTER = _WANTED[0] if _WANTED else CHAPTERS[0]
# Hosts that only stand in for a real one (RFC 2606): no button or link may use them.
PLACEHOLDER_HOST = re.compile(
    r"^https?://(?:[\w-]+\.)*example\.(?:org|com|net)(?:[:/?#]|$)"
)
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


def _shot(screenshot_dir: Path, docname: str, width: int, suffix: str = "") -> str:
    return str(screenshot_dir / f"{docname.replace('/', '__')}{suffix}-{width}.png")


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
    # Outputs wrap: no line of a printed result or error is hidden behind a scrollbar.
    report.problems += overflowing_outputs(page)
    if docname in SCREENSHOTS_DESKTOP:
        page.screenshot(path=_shot(screenshot_dir, docname, DESKTOP), full_page=False)
    assert not report.problems, f"{docname}:\n  " + "\n  ".join(report.problems)
    source = BOOK_ROOT / f"{docname}.ipynb"
    if source.is_file():
        problems = notebook_page_problems(source, html_file, report)
        assert not problems, f"{docname}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("docname", PAGES)
def test_page_fits_a_phone(docname, page_at, base_url, html_dir, screenshot_dir):
    """At 390 px the page does not scroll sideways: long code and words wrap, wide
    blocks scroll inside their own box."""
    phone = page_at(PHONE)
    _open(phone, base_url, html_dir, docname)
    problem = sideways_overflow(phone)
    if docname in SCREENSHOT_PAGES:
        phone.screenshot(path=_shot(screenshot_dir, docname, PHONE))
    assert problem is None, f"{docname} at {PHONE}px: {problem}"


def test_pages_fit_a_tablet(page_at, base_url, html_dir, screenshot_dir):
    """The screenshot pages at 800 px (a tablet): saved for a human; they fit the
    screen."""
    tablet = page_at(TABLET)
    problems = []
    for docname in SCREENSHOT_PAGES:
        _open(tablet, base_url, html_dir, docname)
        problem = sideways_overflow(tablet)
        tablet.screenshot(path=_shot(screenshot_dir, docname, TABLET))
        if problem:
            problems.append(f"{docname}: {problem}")
    assert not problems, "\n".join(problems)


def _on_screen(locator, width: int) -> bool:
    """Visible, and at least partly inside the window's width (not off-canvas)."""
    if not locator.is_visible():
        return False
    box = locator.bounding_box()
    if not box or box["width"] <= 0:
        return False
    return box["x"] + box["width"] > 0 and box["x"] < width


def _wait_on_screen(page, locator, width: int, what: str, shown: bool = True) -> None:
    """Wait up to 5 s for ``locator`` to be on screen (or, ``shown=False``, off it)."""
    for _ in range(50):
        if _on_screen(locator, width) == shown:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{what} {'did not appear' if shown else 'stayed'} on screen")


@pytest.mark.parametrize("width", [PHONE, TABLET])
def test_sidebar_buttons_open_the_navigation(
    width, page_at, base_url, html_dir, screenshot_dir
):
    """On a phone or tablet, tapping the menu button shows the chapter list and tapping
    the contents button shows the page's sections (the buttons readers see, in the
    article header)."""
    pg = page_at(width)
    _open(pg, base_url, html_dir, READER_CHAPTER)
    chapters = pg.locator("nav.bd-docs-nav a.reference.internal")
    sections = pg.locator("#pst-page-toc-nav a")
    assert chapters.count() >= len(PAGES) - 1 and sections.count() >= 1
    assert not _on_screen(chapters.last, width), "the chapter list shows before any tap"

    menu = pg.locator("button.primary-toggle").locator("visible=true")
    assert menu.count() == 1, f"{menu.count()} visible menu buttons at {width}px"
    menu.tap()
    _wait_on_screen(pg, chapters.last, width, f"at {width}px, after ☰, the chapters")
    pg.screenshot(path=_shot(screenshot_dir, READER_CHAPTER, width, "_menu"))
    pg.keyboard.press("Escape")
    _wait_on_screen(pg, chapters.last, width, "after Escape, the chapters", shown=False)

    assert not _on_screen(sections.first, width), "the contents show before any tap"
    contents = pg.locator("button.secondary-toggle").locator("visible=true")
    n = contents.count()
    assert n == 1, f"{n} visible contents buttons at {width}px"
    contents.tap()
    _wait_on_screen(pg, sections.first, width, f"at {width}px, after Contents, the TOC")


def test_menu_button_hides_the_sidebar_on_a_desktop(page, base_url, html_dir):
    """At 1280 px the chapter list is shown beside the text; ☰ hides and shows it."""
    _open(page, base_url, html_dir, READER_CHAPTER)
    sidebar = page.locator("#pst-primary-sidebar")
    article = page.locator("main")
    assert sidebar.is_visible(), "no sidebar on a desktop"
    narrow = article.bounding_box()["width"]
    menu = page.locator("button.primary-toggle").locator("visible=true")
    assert menu.count() == 1, f"{menu.count()} visible menu buttons at {DESKTOP}px"
    menu.click()
    sidebar.wait_for(state="hidden", timeout=5_000)
    assert article.bounding_box()["width"] > narrow, "no wider text without the sidebar"
    assert page.locator("dialog[open]").count() == 0, "☰ opened a dialog instead"
    menu.click()
    sidebar.wait_for(state="visible", timeout=5_000)


def test_figures_enlarge_when_tapped(page_at, base_url, html_dir, screenshot_dir):
    """On a phone, tapping a figure shows it larger in an overlay; Escape closes it."""
    pg = page_at(PHONE)
    _open(pg, base_url, html_dir, READER_CHAPTER)
    figure = pg.locator(".bd-article figure img").first
    assert figure.count() == 1, f"{READER_CHAPTER} has no figure to tap"
    figure.scroll_into_view_if_needed()
    before = figure.bounding_box()["width"]
    figure.tap()
    overlay = pg.locator(".book-lightbox")
    overlay.wait_for(state="visible", timeout=5_000)
    big = overlay.locator("img")
    big.wait_for(state="visible", timeout=5_000)
    pg.wait_for_function(
        "() => { const i = document.querySelector('.book-lightbox img'); "
        "return i && i.complete && i.naturalWidth > 0; }",
        timeout=5_000,
    )
    after = big.bounding_box()["width"]
    pg.screenshot(path=_shot(screenshot_dir, READER_CHAPTER, PHONE, "_figure"))
    assert after > before * 1.2, f"enlarged {after:.0f}px wide, inline {before:.0f}px"
    pg.keyboard.press("Escape")
    overlay.wait_for(state="hidden", timeout=5_000)


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
    # Each result quotes the page's prose, not its toolbar (.ipynb, .pdf) or print TOC.
    page.wait_for_function(  # each summary arrives with its own fetch of the page
        "() => Array.from(document.querySelectorAll('#search-results ul.search li'))"
        ".every(li => li.querySelector('p.context'))",
        timeout=15_000,
    )
    summaries = page.eval_on_selector_all(
        "#search-results ul.search li p.context", "ps => ps.map(p => p.textContent)"
    )
    page.screenshot(path=str(screenshot_dir / "search.png"))
    if CHAPTERS:
        assert results, "searching 'convolution' found nothing"
        assert summaries, "search results without a quoted summary"
    toolbar = [t for t in summaries if re.search(r"\.pdf\b|\bContents\b", t)]
    assert not toolbar, f"search summaries quote the page toolbar: {toolbar[:3]}"


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_launch_and_download_buttons(docname, html_dir):
    """Static check (no browser needed): the page's launch and download links."""
    html_file = html_dir / f"{docname}.html"
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]+)"', html_file.read_text(encoding="utf-8"))]
    notebook_path = f"{docname}.ipynb"
    for name, pattern in {
        "Binder": r"^https://mybinder\.org/v2/gh/.+\?urlpath=lab/tree/",
        "Colab": r"^https://colab\.research\.google\.com/github/",
    }.items():
        launch = [h for h in hrefs if re.search(pattern, h)]
        assert launch, f"{docname}: no {name} launch button"
        assert all(notebook_path in h for h in launch), f"{docname}: {name} opens {launch}"
    # A launch button to a stand-in host (a JupyterHub at jupyterhub.example.org, say)
    # cannot work.
    placeholders = [h for h in hrefs if PLACEHOLDER_HOST.search(h)]
    assert not placeholders, f"{docname}: links to a placeholder host: {placeholders}"
    downloads = [h for h in hrefs if h.endswith(f"_sources/{notebook_path}")]
    assert downloads, f"{docname}: no 'download .ipynb' link"
    assert (html_dir / "_sources" / notebook_path).is_file()


@pytest.mark.parametrize("docname", PAGES)
def test_no_placeholder_text(docname, html_dir):
    """Static check: no link to a stand-in host, no stand-in author line."""
    text = unescape((html_dir / f"{docname}.html").read_text(encoding="utf-8"))
    hrefs = re.findall(r'href="([^"]+)"', text)
    placeholders = [h for h in hrefs if PLACEHOLDER_HOST.search(h)]
    assert not placeholders, f"{docname}: links to a placeholder host: {placeholders}"
    author = re.search(r'<p class="component-author">\s*(.*?)\s*</p>', text, re.S)
    stand_in = re.compile(r"\bbook's authors?\b|\bauthor name\b", re.I)
    assert not (author and stand_in.search(author.group(1))), (
        f"{docname}: placeholder author line {author.group(1)!r}"
    )


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
