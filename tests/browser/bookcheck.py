"""Check a built Jupyter Book the way a reader meets it: in a real (headless) Chromium.

The functions here know nothing about pytest; ``test_book.py`` runs them on ``_build/html`` and
``test_checks_fail.py`` runs them on a tiny, deliberately broken book to show that each one fails.

- :func:`toc_pages` lists the pages of the table of contents from the book's source (``_toc.yml``,
  globs resolved against the source folder), so a new chapter is checked without editing the tests.
- :func:`serve` serves the HTML folder on 127.0.0.1 (the search page and MathJax load scripts and
  data files, which browsers restrict on ``file://``).
- :func:`check_page` opens one page and returns a list of problems (an empty list means it passed):
  console errors, failed requests, images that did not load, figure cells without an image, math
  that MathJax did not typeset, raw ``$...$`` left in the text, and internal links or anchors that do
  not resolve.
- :func:`search` runs the book's search page and returns the pages it lists.
- :func:`sideways_overflow` and :func:`overflowing_outputs` measure a loaded page's
  layout: a page wider than the screen (the reader must scroll sideways), and cell
  outputs whose lines are cut off behind a horizontal scrollbar.
"""

from __future__ import annotations

import functools
import html.parser
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from localsite import CHROMIUM, launch_browser, serve  # noqa: E402,F401 - shared with build_pdf

SOURCE_SUFFIXES = (".md", ".ipynb")

# The text of a matplotlib figure's repr: a cell output showing it without an image is a figure that
# was never drawn (e.g. closed before display, or saved only as text).
FIGURE_REPR = re.compile(r"<Figure size \d+(?:\.\d+)?x\d+(?:\.\d+)? with \d+ Axes>")
# Raw TeX left in the reader-visible text: $...$ / $$...$$ or the \( \) \[ \] delimiters Sphinx
# emits for MathJax. Code blocks and cell outputs (pre, code) are excluded before matching.
RAW_MATH = re.compile(r"\$\$.+?\$\$|(?<![\\$\w])\$(?=\S)[^$\n]{1,200}?(?<=\S)\$(?![\w$])|\\\(|\\\[", re.S)


# --------------------------------------------------------------------------------------------------
# Which pages the table of contents holds
# --------------------------------------------------------------------------------------------------
def toc_pages(book_root: Path) -> list[str]:
    """Docnames of every page in ``_toc.yml`` (root first), with globs resolved like Sphinx does.

    Raises ``FileNotFoundError`` naming the path when ``_toc.yml`` is missing.
    """
    from sphinx_external_toc.api import GlobItem
    from sphinx_external_toc.parsing import parse_toc_yaml

    toc_file = Path(book_root) / "_toc.yml"
    if not toc_file.is_file():
        raise FileNotFoundError(f"{toc_file}: no table of contents; is {book_root} a book's root?")
    site_map = parse_toc_yaml(toc_file)
    docnames: list[str] = [site_map.root.docname]
    for name in list(site_map):
        for subtree in site_map[name].subtrees:
            for item in subtree.items:
                if isinstance(item, GlobItem):
                    docnames += _glob_docnames(Path(book_root), str(item))
                elif isinstance(item, str):
                    docnames.append(str(item))
    seen: set[str] = set()
    return [d for d in docnames if not (d in seen or seen.add(d))]


def _glob_docnames(root: Path, pattern: str) -> list[str]:
    found = []
    for path in sorted(root.glob(pattern)):
        if path.suffix in SOURCE_SUFFIXES and ".ipynb_checkpoints" not in path.parts:
            found.append(path.relative_to(root).with_suffix("").as_posix())
    return found


# --------------------------------------------------------------------------------------------------
# Serving the HTML folder on the loopback interface
# --------------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------------
# Anchors defined by a page (parsed from the HTML files, cached per file)
# --------------------------------------------------------------------------------------------------
class _IdCollector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key == "id" or (tag == "a" and key == "name"):
                if value:
                    self.ids.add(value)


@functools.lru_cache(maxsize=None)
def page_ids(path: Path) -> frozenset[str]:
    collector = _IdCollector()
    collector.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(collector.ids)


def resolve_internal(url: str, base_url: str, html_dir: Path) -> tuple[Path, str] | None:
    """(file, fragment) for a URL served from ``html_dir``; None for an external URL."""
    if not url.startswith(base_url):
        return None
    parts = urlsplit(url)
    rel = unquote(url[len(base_url):].split("#", 1)[0].split("?", 1)[0])
    target = html_dir / rel
    if rel == "" or rel.endswith("/"):
        target = target / "index.html"
    return target, unquote(parts.fragment)


# --------------------------------------------------------------------------------------------------
# Checking one page
# --------------------------------------------------------------------------------------------------
@dataclass
class PageReport:
    """What :func:`check_page` found on one page; ``problems`` empty means the page passed."""

    url: str
    problems: list[str] = field(default_factory=list)
    images: int = 0
    output_images: int = 0  # loaded images inside notebook cell outputs
    math: int = 0
    links: int = 0


_PAGE_FACTS_JS = """
async () => {
  const main = document.querySelector('main') || document.body;
  // Images: make lazy ones load now, then wait for every one to settle.
  const imgs = Array.from(document.images);
  imgs.forEach(img => { img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.complete ? null :
      new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r); })));
  const images = imgs.filter(img => img.getAttribute('src')).map(img => ({
      src: img.currentSrc || img.src, natural: img.naturalWidth,
      visible: !!(img.offsetWidth || img.offsetHeight || img.getClientRects().length)}));
  // Figures: every <figure> and every cell output that prints a figure repr must hold an image.
  const figures = Array.from(main.querySelectorAll('figure')).map(f => ({
      id: f.id || (f.querySelector('[id]') || {}).id || '',
      images: Array.from(f.querySelectorAll('img')).filter(i => i.naturalWidth > 0).length
            + Array.from(f.querySelectorAll('svg')).filter(s => !s.closest('button')).length}));
  // Numbering: captioned figures show "Fig. N", labelled equations show "(N)".
  const unnumberedFigures = Array.from(main.querySelectorAll('figure'))
      .filter(f => f.querySelector('figcaption') && !f.querySelector('.caption-number'))
      .map(f => f.id || '?');
  const unnumberedEquations = Array.from(main.querySelectorAll('div.math[id], div.math:has(> span.eqno)'))
      .filter(d => !d.querySelector('span.eqno')).map(d => d.id || '?');
  const outputImages = Array.from(main.querySelectorAll('.cell_output img'))
      .filter(i => i.naturalWidth > 0).length;
  const reprOutputs = Array.from(main.querySelectorAll('.cell_output')).map(o => ({
      text: o.innerText, images: Array.from(o.querySelectorAll('img')).filter(i => i.naturalWidth > 0).length}));
  // Math: Sphinx marks math with class "math"; MathJax 3 replaces it with <mjx-container>.
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await MathJax.startup.promise;
  }
  const mathNodes = main.querySelectorAll('span.math, div.math').length;
  const typeset = main.querySelectorAll('mjx-container').length;
  const mathErrors = Array.from(main.querySelectorAll('mjx-merror, .MathJax_Error'))
      .map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 5);
  // Reader-visible prose, without code and outputs (they may legitimately hold '$').
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, mjx-container, script, style, .cell_output, kbd')
       .forEach(e => e.remove());
  const links = Array.from(document.querySelectorAll('a[href]'))
      .map(a => ({href: a.href, raw: a.getAttribute('href')}));
  return {images, figures, unnumberedFigures, unnumberedEquations, outputImages, reprOutputs, mathNodes, typeset, mathErrors,
          text: clone.textContent, links, hasMathJax: !!window.MathJax};
}
"""


def check_page(page, url: str, base_url: str, html_dir: Path) -> PageReport:
    """Load ``url`` in the Playwright ``page`` and return every problem a reader would meet."""
    report = PageReport(url)
    console: list[str] = []
    failed: list[str] = []

    def on_console(msg) -> None:
        if msg.type == "error":
            console.append(msg.text)

    def on_response(response) -> None:
        if response.status >= 400:
            failed.append(f"HTTP {response.status} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: console.append(f"uncaught: {exc}"))
    page.on("requestfailed", lambda req: failed.append(f"{req.failure} {req.url}"))
    page.on("response", on_response)
    try:
        response = page.goto(url, wait_until="load")
        if response is None or not response.ok:
            report.problems.append(f"page did not load: {response.status if response else 'no response'}")
            return report
        facts = page.evaluate(_PAGE_FACTS_JS)
        page.wait_for_timeout(50)  # let late console messages arrive
    finally:
        page.remove_listener("console", on_console)
        page.remove_listener("response", on_response)

    report.problems += [f"console error: {m}" for m in console]
    report.problems += [f"request failed: {m}" for m in failed]

    # Images -------------------------------------------------------------------------------------
    report.images = len(facts["images"])
    report.output_images = facts["outputImages"]
    for img in facts["images"]:
        if img["natural"] == 0:
            report.problems.append(f"image not loaded (naturalWidth 0): {img['src']}")
    for fig in facts["figures"]:
        if fig["images"] == 0:
            report.problems.append(f"figure without an image: #{fig['id'] or '?'}")
    for out in facts["reprOutputs"]:
        if FIGURE_REPR.search(out["text"]) and out["images"] == 0:
            shown = FIGURE_REPR.search(out["text"]).group(0)
            report.problems.append(f"figure cell shows no image, only its repr: {shown}")

    for fid in facts["unnumberedFigures"]:
        report.problems.append(f"captioned figure without a number: #{fid}")
    for eid in facts["unnumberedEquations"]:
        report.problems.append(f"labelled equation without a number: #{eid}")

    # Math ---------------------------------------------------------------------------------------
    report.math = facts["mathNodes"]
    if facts["mathNodes"]:
        if not facts["hasMathJax"]:
            report.problems.append(f"{facts['mathNodes']} math elements but MathJax did not load")
        elif facts["typeset"] < facts["mathNodes"]:
            report.problems.append(
                f"math not rendered: {facts['typeset']} of {facts['mathNodes']} elements typeset"
            )
    for err in facts["mathErrors"]:
        report.problems.append(f"MathJax error: {err}")
    for raw in RAW_MATH.findall(facts["text"])[:5]:
        report.problems.append(f"raw TeX left in the text: {raw[:60]!r}")

    # Internal links and anchors -----------------------------------------------------------------
    for link in facts["links"]:
        if link["raw"].startswith(("javascript:", "mailto:")):
            continue
        target = resolve_internal(link["href"], base_url, html_dir)
        if target is None:
            continue
        report.links += 1
        path, fragment = target
        if not path.is_file():
            report.problems.append(f"broken internal link: {link['raw']} -> {path.relative_to(html_dir)} missing")
        elif fragment and path.suffix == ".html" and fragment not in page_ids(path):
            report.problems.append(f"broken anchor: {link['raw']} (no id {fragment!r} in {path.relative_to(html_dir)})")
    return report


# --------------------------------------------------------------------------------------
# Layout: does the page fit the screen, are cell outputs shown whole?
# --------------------------------------------------------------------------------------
_SIDEWAYS_JS = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await MathJax.startup.promise;
  }
  const W = Math.min(window.innerWidth,
                     document.documentElement.clientWidth || window.innerWidth);
  const scrollWidth = document.documentElement.scrollWidth;
  if (scrollWidth <= W + 1) return null;
  // Name the culprits: the innermost elements reaching past the screen's right edge
  // that are not inside a box that scrolls (or clips) on its own.
  const own = e => {
      for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
          if (getComputedStyle(a).overflowX !== 'visible') return false;
      }
      return true;
  };
  const wide = Array.from(document.body.querySelectorAll('*')).filter(e => {
      const r = e.getBoundingClientRect();
      return r.width > 0 && r.right > W + 1;
  });
  const leaves = wide.filter(e => !wide.some(o => o !== e && e.contains(o)) && own(e));
  return {scrollWidth, width: W, culprits: leaves.slice(0, 5).map(e =>
      `<${e.tagName.toLowerCase()} class="${e.className}"> ` +
      `right edge ${Math.round(e.getBoundingClientRect().right)}px: ` +
      JSON.stringify((e.textContent || '').trim().slice(0, 70)))};
}
"""

_OVERFLOWING_OUTPUTS_JS = """
() => Array.from(document.querySelectorAll(
          'main .cell_output .output, main .cell_output pre'))
  .filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
  .map(e => {
      const lines = (e.innerText || '').split('\\n');
      const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
      return {kind: e.className || e.tagName.toLowerCase(), width: e.clientWidth,
              scrollWidth: e.scrollWidth, line: longest.slice(0, 90)};
  })
"""


def sideways_overflow(page) -> str | None:
    """None if the loaded page fits its window's width; else what sticks out.

    A page fits when ``document.documentElement.scrollWidth <= window.innerWidth + 1``:
    wide code blocks and tables may scroll inside their own box, but the page itself
    must not scroll sideways. Waits for MathJax first (typeset equations have their
    final width only then).
    """
    found = page.evaluate(_SIDEWAYS_JS)
    if found is None:
        return None
    culprits = "\n    ".join(found["culprits"]) or "(no single element found)"
    return (
        f"the page is {found['scrollWidth']}px wide on a {found['width']}px screen "
        f"(it scrolls sideways); sticking out:\n    {culprits}"
    )


def overflowing_outputs(page) -> list[str]:
    """Cell outputs of the loaded page whose text is wider than their box (so a line is
    cut off behind a horizontal scrollbar); one message per output, naming its longest
    line."""
    return [
        f"output cut off ({o['scrollWidth']}px of text in a {o['width']}px box, "
        f"{o['kind']}): {o['line']!r}"
        for o in page.evaluate(_OVERFLOWING_OUTPUTS_JS)
    ]


# --------------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------------
def notebook_image_outputs(nb: dict) -> int:
    """How many image outputs (PNG, JPEG, SVG) a stored notebook (parsed JSON) holds: the page must
    show them all.

    Cells tagged ``remove-output`` / ``remove-cell`` are skipped: the book hides them on purpose.
    """
    kinds = ("image/png", "image/jpeg", "image/svg+xml")
    return sum(
        1
        for cell in nb.get("cells", [])
        if cell.get("cell_type") == "code"
        and not {"remove-output", "remove-cell"} & set(cell.get("metadata", {}).get("tags", []))
        for out in cell.get("outputs", [])
        if any(k in out.get("data", {}) for k in kinds)
    )


def notebook_figure_names(nb: dict) -> list[str]:
    """Names of the figures a notebook's (parsed JSON) code cells declare (``mystnb.figure.name``)."""
    names = []
    for cell in nb.get("cells", []):
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        if cell.get("cell_type") == "code" and figure.get("name"):
            names.append(figure["name"])
    return names


def notebook_page_problems(source: Path, html_file: Path, report: PageReport) -> list[str]:
    """Compare a stored notebook with its checked page: every image output and figure cell shows.

    A figure cell (``mystnb.figure`` metadata) renders as ``<figure id=name>`` only if it has an image
    output, so a missing id means the cell was never executed or lost its picture.
    """
    nb = json.loads(source.read_text(encoding="utf-8"))
    problems = []
    stored = notebook_image_outputs(nb)
    if report.output_images < stored:
        problems.append(
            f"the notebook stores {stored} image outputs, the page shows {report.output_images}"
        )
    missing = [n for n in notebook_figure_names(nb) if n not in page_ids(html_file)]
    if missing:
        problems.append(f"figure cells with no figure on the page (not executed?): {missing}")
    return problems


def search(page, base_url: str, term: str, timeout_ms: int = 15_000) -> list[str]:
    """Run the book's search page for ``term``; returns the result links (relative to the site)."""
    from urllib.parse import quote

    page.goto(f"{base_url}search.html?q={quote(term)}", wait_until="load")
    # Sphinx writes a summary paragraph when the search has finished, with or without results.
    page.wait_for_selector("#search-results .search-summary", timeout=timeout_ms)
    hrefs = page.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.href)")
    return [h[len(base_url):].split("?")[0].split("#")[0] for h in hrefs if h.startswith(base_url)]


def distinctive_word(title: str) -> str:
    """The longest alphabetic word of a page title (4+ letters): something search must find."""
    words = re.findall(r"[A-Za-z]{4,}", title)
    if not words:
        raise ValueError(f"title {title!r} has no word of 4+ letters to search for")
    return max(words, key=len)
