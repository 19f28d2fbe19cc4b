"""The Performance appendix in Chromium: results as tables and charts, not text dumps (issue 16).

Every stored benchmark result (``benchmarks/results/bench_*.txt``) has a section on the page with
at least one table of its measurements and a chart that loaded and has alt text; no result is
shown as a highlighted code block; every number of each stored file is on the page; and the page
does not scroll sideways on a phone (wide tables scroll inside their own box).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bookcheck import sideways_overflow

DOC = "book/appendix/performance"
PHONE, DESKTOP = 390, 1280

# One entry per benchmark section (sections whose id starts with "bench-", not nested).
_SECTIONS_JS = """
() => Array.from(document.querySelectorAll('main section[id^="bench-"]'))
  .filter(s => !s.parentElement.closest('section[id^="bench-"]'))
  .map(s => ({
      id: s.id,
      tables: Array.from(s.querySelectorAll('table'))
          .map(t => t.querySelectorAll('tbody tr').length),
      images: Array.from(s.querySelectorAll('img')).map(i => ({
          alt: (i.getAttribute('alt') || '').trim(), loaded: i.naturalWidth > 0,
          src: i.getAttribute('src')})),
      dumps: Array.from(s.querySelectorAll('div[class*="highlight"], pre'))
          .map(e => (e.className || e.tagName) + ': ' + e.textContent.trim().slice(0, 60)),
      text: s.innerText,
  }))
"""


def _section_id(stem: str) -> str:
    """The id docutils gives the section of benchmark ``bench_x`` ("bench-bench-x")."""
    return "bench-" + stem.replace("_", "-")


@pytest.fixture(scope="module")
def stored(book_root: Path) -> dict[str, str]:
    results = sorted((book_root / "benchmarks" / "results").glob("bench_*.txt"))
    assert results, f"no stored results in {book_root / 'benchmarks' / 'results'}"
    return {p.stem: p.read_text(encoding="utf-8") for p in results}


def _load(page, base_url: str, html_dir: Path) -> dict[str, dict]:
    html_file = html_dir / f"{DOC}.html"
    assert html_file.is_file(), f"{html_file} missing: build the book first (make book-check)"
    page.goto(f"{base_url}{DOC}.html", wait_until="load")
    page.evaluate("() => Promise.all(Array.from(document.images).map(i => i.complete ? null :"
                  " new Promise(r => { i.onload = i.onerror = r; })))")
    return {s["id"]: s for s in page.evaluate(_SECTIONS_JS)}


def test_results_are_tables_and_charts(page, base_url, html_dir, stored, screenshot_dir):
    sections = _load(page, base_url, html_dir)
    page.screenshot(path=str(screenshot_dir / f"book__appendix__performance-{DESKTOP}.png"))
    problems = []
    for stem in stored:
        section = sections.get(_section_id(stem))
        if section is None:
            problems.append(f"{stem}: no section #{_section_id(stem)} on the page")
            continue
        if not section["tables"] or 0 in section["tables"]:
            problems.append(f"{stem}: tables with rows {section['tables']} (want >= 1 table, "
                            "each with rows)")
        charts = [i for i in section["images"] if i["loaded"] and i["alt"]]
        if not charts:
            problems.append(f"{stem}: no chart image that loaded and has alt text "
                            f"({section['images']})")
        if section["dumps"]:
            problems.append(f"{stem}: result shown as a code block: {section['dumps'][:2]}")
    assert not problems, "\n".join(problems)


def test_no_code_block_dumps_on_the_page(page, base_url, html_dir):
    _load(page, base_url, html_dir)
    dumps = page.eval_on_selector_all(
        'main div[class*="highlight-"]', "es => es.map(e => e.className)"
    )
    assert not dumps, f"code blocks on the Performance page: {dumps}"


def test_every_stored_number_is_on_the_page(page, base_url, html_dir, stored):
    """The chapters quote these files: no number of a stored result may be left off."""
    sections = _load(page, base_url, html_dir)
    missing = {}
    for stem, text in stored.items():
        shown = sections.get(_section_id(stem), {}).get("text", "")
        lost = [n for n in re.findall(r"\d+(?:\.\d+)?", text) if n not in shown]
        if lost:
            missing[stem] = lost[:10]
    assert not missing, f"numbers of stored results not on the page: {missing}"


def test_fits_a_phone(page_at, base_url, html_dir, screenshot_dir):
    phone = page_at(PHONE)
    _load(phone, base_url, html_dir)
    problem = sideways_overflow(phone)
    phone.screenshot(path=str(screenshot_dir / f"book__appendix__performance-{PHONE}.png"))
    assert problem is None, f"{DOC} at {PHONE}px: {problem}"
