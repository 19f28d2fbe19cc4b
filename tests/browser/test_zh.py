"""The Chinese edition (``_build/html/zh/``), built by ``make book`` from the same notebooks with
the catalogues of ``locale/zh_CN/`` (issue 22).

Every page of the table of contents exists in both editions and each links to the same page in
the other; a Chinese page loads cleanly (no console error, broken link or untypeset maths), fits
a phone, renders its Chinese with a CJK font, and has no English paragraph left -- code, maths,
citations, cell outputs and measured records aside. Chinese search finds a Chinese term.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest

from bookcheck import check_page, search, sideways_overflow, toc_pages

BOOK_ROOT = Path(os.environ.get("BOOK_ROOT", Path(__file__).resolve().parents[2])).resolve()
PAGES = toc_pages(BOOK_ROOT)
PHONE, DESKTOP = 390, 1280
SCREENSHOTS = {"book/intro", "book/04_training_loop", "book/appendix/from_references"}
CJK = re.compile(r"[\u3400-\u9fff]")

# Text elements that must not be English on a Chinese page. Left out: cell outputs and code,
# the bibliography's entries (paper titles), the Performance page's measured record (its setup
# lines and table bodies, printed by the scripts), the navigation and the language switch.
_ENGLISH_PARAGRAPHS_JS = r"""
() => {
  const main = document.querySelector('main') || document.body;
  const skip = ['.cell_output', '.highlight', 'pre', '.output', '.citation', '.bibliography',
                '#id1 + dl', '.benchmark-header', '.benchmark-notes', '.lang-switch', 'nav',
                '.bd-toc', '.prev-next-area', 'table.benchmark-table tbody', '.header-article'];
  const out = [];
  for (const el of main.querySelectorAll(
           'p, li, dd, figcaption, caption, h1, h2, h3, h4, th, td, .admonition-title')) {
    if (skip.some(s => el.closest(s))) continue;
    if (el.querySelector('p, li, dd')) continue;  // judged by its own paragraphs
    const clone = el.cloneNode(true);
    clone.querySelectorAll('code, .math, mjx-container, script, .headerlink, span.pre')
         .forEach(n => n.remove());
    const text = clone.textContent.replace(/\s+/g, ' ').trim();
    if (/[\u3400-\u9fff]/.test(text)) continue;
    const words = text.match(/[A-Za-z]{2,}/g) || [];
    if (words.length >= 4) out.push(text.slice(0, 120));
  }
  return out;
}
"""


class _SwitchLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if tag == "a" and "lang-switch-link" in (a.get("class") or "").split():
            self.hrefs.append(a.get("href") or "")


def _switch_target(html_file: Path, html_dir: Path) -> Path:
    parser = _SwitchLinks()
    parser.feed(html_file.read_text(encoding="utf-8"))
    assert len(parser.hrefs) == 1, f"{html_file}: {len(parser.hrefs)} language switches"
    rel = html_file.relative_to(html_dir).as_posix()
    target = urljoin(f"http://book/{rel}", parser.hrefs[0])
    return html_dir / target[len("http://book/"):]


@pytest.mark.parametrize("docname", PAGES)
def test_every_page_links_to_itself_in_the_other_edition(docname, html_dir):
    english, chinese = html_dir / f"{docname}.html", html_dir / "zh" / f"{docname}.html"
    assert chinese.is_file(), f"{chinese} missing: the Chinese edition lacks {docname}"
    assert _switch_target(english, html_dir).resolve() == chinese.resolve()
    assert _switch_target(chinese, html_dir).resolve() == english.resolve()


@pytest.mark.parametrize("docname", PAGES)
def test_chinese_page_is_chinese_and_fits(docname, page, page_at, base_url, html_dir,
                                         screenshot_dir):
    report = check_page(page, f"{base_url}zh/{docname}.html", base_url, html_dir)
    assert not report.problems, f"zh/{docname}:\n  " + "\n  ".join(report.problems)
    assert page.evaluate("document.documentElement.lang").startswith("zh")
    english = page.evaluate(_ENGLISH_PARAGRAPHS_JS)
    assert not english, f"zh/{docname}: English paragraphs left:\n  " + "\n  ".join(english)
    captions = page.eval_on_selector_all(".bd-sidebar-primary p.caption",
                                         "ps => ps.map(p => p.textContent.trim())")
    assert captions and all(CJK.search(c) for c in captions), captions
    name = f"zh__{docname.replace('/', '__')}"
    if docname in SCREENSHOTS:
        page.screenshot(path=str(screenshot_dir / f"{name}-{DESKTOP}.png"))
    phone = page_at(PHONE)
    phone.goto(f"{base_url}zh/{docname}.html")
    problem = sideways_overflow(phone)
    if docname in SCREENSHOTS:
        phone.screenshot(path=str(screenshot_dir / f"{name}-{PHONE}.png"))
    assert problem is None, f"zh/{docname} at {PHONE}px: {problem}"


def test_the_switch_lands_on_the_same_page(page, base_url):
    page.goto(f"{base_url}book/04_training_loop.html")
    page.click("a.lang-switch-link")
    page.wait_for_load_state()
    assert page.url.endswith("/zh/book/04_training_loop.html"), page.url
    assert CJK.search(page.inner_text("h1")), page.inner_text("h1")
    page.click("a.lang-switch-link")
    page.wait_for_load_state()
    assert page.url == f"{base_url}book/04_training_loop.html", page.url


def test_chinese_text_is_drawn_with_a_cjk_font(page, base_url):
    """Chromium names the fonts it really used for a node's text: Chinese drawn with a Latin
    font's missing-glyph boxes would show up here as no CJK font."""
    page.goto(f"{base_url}zh/book/02_convolution.html")
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    # The chapter's visible title (the first h1 of <main> is the print header, not shown).
    selector = "main section h1"
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    cjk = [f for f in fonts if re.search(r"CJK|Hei|Song|Ming|WenQuanYi|SC\b", f["familyName"])]
    chars = len(CJK.findall(page.inner_text(selector)))
    assert chars and sum(f["glyphCount"] for f in cjk) >= chars, fonts


def test_chinese_search_finds_a_chinese_term(page, base_url):
    found = search(page, f"{base_url}zh/", "卷积")
    assert "book/02_convolution.html" in found, found
