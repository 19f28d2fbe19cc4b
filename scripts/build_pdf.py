"""Print the whole book as one PDF, offline: ``make pdf``.

    python scripts/build_pdf.py                    # _build/pdf/book.pdf (+ _build/html/downloads/)
    python scripts/build_pdf.py --out /tmp/me/book # /tmp/me/book/_build/{singlehtml,pdf}
    python scripts/build_pdf.py --skip-build       # print the existing single-page build again

Jupyter Book builds the book as a single HTML page (``--builder singlehtml``: the same sources and
configuration as the HTML book, so numbering, citations and cross-references agree with it).
Debian's Chromium, driven by Playwright and allowed to fetch only that local copy, opens the page in
print media with ``scripts/print.css``, waits until MathJax has typeset every equation, opens the
exercise solutions (collapsed ``dropdown`` admonitions on the web: paper cannot be clicked) and
gathers them under a "Solutions" heading at the end of their chapter, then prints A4 pages with
page numbers.

Chromium can print an outline itself, but only into a tagged PDF, which takes 1.6 times as long and
is 2.4 times the size; and it cannot print page numbers into a table of contents. So the page links
every heading (hidden links, so the PDF gets a named destination for each), and pypdf then reads
from the print on which page each heading landed: it writes the outline (PDF bookmarks: chapters,
sections, subsections) and swaps in the first pages printed again with the chapters' page numbers
in the contents (their layout is reserved in the first print, so nothing moves).

The PDF is written atomically to ``<out>/_build/pdf/book.pdf`` and copied to
``<html-dir>/downloads/book.pdf`` when the HTML book exists there, for its download link.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from localsite import chromium_missing, launch_browser, serve  # noqa: E402 - after the path
PRINT_CSS = Path(__file__).with_name("print.css")
PRINT_PAGE = "book-print.html"
PAGE_FORMAT = "A4"
MARGINS = {"top": "17mm", "bottom": "17mm", "left": "16mm", "right": "16mm"}
# The printable width of an A4 page in CSS px (96 per inch): the page is laid out at this width
# before printing, so what is measured on screen (block heights) is what is printed.
TEXT_WIDTH_PX = round((210 - 16 - 16) / 25.4 * 96)
# Blocks up to this height (CSS px; an A4 page's text area is about 990) are never split.
KEEP_MAX_PX = 420
# Code is set at 10.6 px (print.css: 88 columns fit); a wider block is set smaller, down to this.
MIN_CODE_PX = 8.2
OUTLINE_DEPTH = 3  # chapter, section, subsection
# Chromium's header and footer are tiny documents of their own; it fills in these class names.
HEADER = ('<div style="font: 7.5px sans-serif; color: #777; width: 100%; margin: 0 16mm; '
          'text-align: right;"><span class="title"></span></div>')
FOOTER = ('<div style="font: 9px serif; color: #333; width: 100%; text-align: center;">'
          '<span class="pageNumber"></span></div>')


class PdfBuildError(RuntimeError):
    """A step of the build failed; the message says which and what to do."""


@dataclass(frozen=True)
class Heading:
    """A heading of the printed page: its outline title and depth, and the named destination
    (an element id) the print gives its position under."""

    title: str
    level: int
    dest: str


# --------------------------------------------------------------------------------------------------
# The single-page HTML build
# --------------------------------------------------------------------------------------------------
def build_singlehtml(source: Path, out: Path) -> Path:
    """Build the book as one HTML page under ``out/_build/singlehtml``; returns that folder.

    ``-W`` as in ``make book-check``: a warning in this build is a defect of the printed book too.
    """
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jupyter_book if jupyter_book.exists() else "jupyter-book"), "build", str(source),
           "--path-output", str(out), "--builder", "singlehtml", "-W", "--keep-going", "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise PdfBuildError(f"the single-page build failed ({' '.join(cmd)}):\n{tail}")
    return out / "_build" / "singlehtml"


def print_page(singlehtml: Path, css: str) -> Path:
    """Write the page Chromium prints: the whole book, at the top of ``singlehtml``, with ``css``.

    ``index.html`` only redirects to the root document (``book/intro.html``), and Sphinx writes
    that page's links (``_static/``, ``_images/``) relative to the top folder, not to its own:
    opened where it is, it loads no style, script or image. A copy at the top reads correctly. The
    print CSS goes in before the first layout, so the page is laid out once, as printed.
    """
    index = singlehtml / "index.html"
    if not index.is_file():
        raise PdfBuildError(f"{index} not found: the single-page build wrote nothing")
    redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"',
                         index.read_text(encoding="utf-8"))
    source = singlehtml / redirect.group(1) if redirect else index
    html = source.read_text(encoding="utf-8")
    if "</head>" not in html:
        raise PdfBuildError(f"{source} has no </head>: not a page of the book")
    page = singlehtml / PRINT_PAGE
    page.write_text(html.replace("</head>", f"<style>\n{css}\n</style>\n</head>", 1),
                    encoding="utf-8")
    return page


# --------------------------------------------------------------------------------------------------
# Serving the build on the loopback interface (MathJax loads its fonts and components by URL)
# --------------------------------------------------------------------------------------------------
def offline_context(browser, base_url: str, blocked: list[str]):
    """A context that may fetch only the local build (the printed book must need no network),
    laid out at the printed text width, in print media."""
    context = browser.new_context(viewport={"width": TEXT_WIDTH_PX, "height": 1000})

    def route(r) -> None:
        if r.request.url.startswith((base_url, "data:", "blob:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort("internetdisconnected")

    context.route("**/*", route)
    return context


# --------------------------------------------------------------------------------------------------
# Preparing the page for paper (runs in the browser)
# --------------------------------------------------------------------------------------------------
_IMAGES_JS = """
async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(img => { img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.complete ? null :
      new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r); })));
  return imgs.filter(img => img.getAttribute('src') && img.naturalWidth === 0)
             .map(img => img.getAttribute('src'));
}
"""

_MATH_START_JS = """
() => {
  window.__bookMath = 'pending';
  if (!document.querySelector('.math')) { window.__bookMath = 'none'; return; }
  const started = () => window.MathJax && MathJax.startup && MathJax.startup.promise;
  const wait = () => started()
      ? MathJax.startup.promise.then(() => { window.__bookMath = 'done'; },
                                     e => { window.__bookMath = 'error: ' + e; })
      : setTimeout(wait, 50);
  wait();
}
"""

# Math that MathJax left as TeX: a Sphinx math element with no typeset <mjx-container> in it.
_MATH_LEFT_JS = """
() => ({
  raw: Array.from(document.querySelectorAll('span.math, div.math'))
      .filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.trim().slice(0, 60)),
  errors: Array.from(document.querySelectorAll('mjx-merror'))
      .map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 5),
})
"""

# Everything the web page does that paper cannot, in one pass (one layout):
# - solutions: sphinx-togglebutton's collapsed boxes are opened and moved, in exercise order, under
#   a "Solutions" section at the end of their chapter, each titled after its exercise (the last
#   item of the numbered list just before it); every other <details> is opened (print.css keeps
#   the inputs of hide-input cells hidden);
# - headings: each gets a unique id and a hidden link to it, so the print has a named destination
#   per heading (the outline); the single page repeats ids ("exercises", citation ids) chapter
#   after chapter;
# - links: a citation links to "book/intro.html#id7", another file on the web, and to one of six
#   elements with that id here: it is pointed at the bibliography's entry; the contents link to
#   each chapter's heading (not to the marker before its page break); other links into the site
#   (search, index) lead nowhere on paper and become text;
# - contents: a dotted leader and a reserved page-number slot per entry;
# - short blocks are marked .book-keep (print.css keeps them on one page); heights are read in
#   one go, then written, so the page is laid out once.
_PREPARE_JS = """
([keepMaxPx, depth, minCodePx]) => {
  const article = document.querySelector('.bd-article') || document.body;
  const front = document.querySelector('#jb-print-docs-body');
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const chapters = Array.from(article.querySelectorAll('span[id^="document-"] + section'));
  const solutions = chapters.reduce((n, chapter) => n + gatherSolutions(chapter), 0);
  fixLinks();
  const destBox = document.createElement('div');
  destBox.style.display = 'none';
  document.body.appendChild(destBox);
  const headings = outlineHeadings(destBox);
  const toc = tocEntries(destBox);
  const shrunk = fitWideCode();
  const kept = keepShortBlocks();
  return {chapters: chapters.length, solutions, headings, toc, shrunk, kept};

  // A code block or output a little wider than the page is set smaller until its longest line
  // fits, down to minCodePx; past that it wraps (print.css), so no line is ever cut.
  function fitWideCode() {
    const pres = Array.from(article.querySelectorAll('pre')).filter(p => p.offsetWidth > 0);
    if (!pres.length) return 0;
    const probe = document.createElement('span');
    probe.style.cssText = 'position: absolute; visibility: hidden; white-space: pre;';
    probe.textContent = 'x'.repeat(100);
    pres[0].appendChild(probe);
    const ratio = probe.getBoundingClientRect().width / 100
        / parseFloat(getComputedStyle(pres[0]).fontSize);
    probe.remove();
    const sizes = pres.map(p => {
      const style = getComputedStyle(p);
      const room = p.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      const longest = Math.max(...p.textContent.split('\\n').map(l => l.length));
      const size = parseFloat(style.fontSize);
      const needed = longest * ratio * size;
      return needed > room ? Math.max(minCodePx, size * room / needed * 0.98) : 0;
    });
    let n = 0;
    pres.forEach((p, i) => {
      if (!sizes[i]) return;
      p.style.setProperty('font-size', sizes[i].toFixed(2) + 'px', 'important');
      n++;
    });
    return n;
  }

  function gatherSolutions(chapter) {
    const boxes = Array.from(chapter.querySelectorAll('.admonition.dropdown'));
    if (!boxes.length) return 0;
    const heading = chapter.querySelector(':scope > :is(h1, h2, h3)');
    const level = heading ? Math.min(Number(heading.tagName[1]) + 1, 6) : 3;
    const section = document.createElement('section');
    section.className = 'book-solutions';
    const title = document.createElement('h' + level);
    title.textContent = nextSectionNumber(chapter) + 'Solutions';
    section.appendChild(title);
    let counter = 0;
    for (const box of boxes) {
      counter = exerciseNumber(box) || counter + 1;
      const label = box.querySelector(':scope > .admonition-title');
      if (label) {
        label.querySelectorAll('button').forEach(b => b.remove());
        if (/^\\s*solution\\s*$/i.test(label.textContent)) {
          label.textContent = 'Solution to exercise ' + counter;
        }
      }
      box.classList.add('book-solution');
      section.appendChild(box);
    }
    chapter.appendChild(section);
    return boxes.length;
  }

  // "1.8. " after a last section numbered "1.7. "; "" when sections are not numbered.
  function nextSectionNumber(chapter) {
    const numbers = chapter.querySelectorAll(':scope > section > :is(h2, h3, h4) .section-number');
    if (!numbers.length) return '';
    const parts = numbers[numbers.length - 1].textContent.trim().replace(/\\.$/, '').split('.');
    parts[parts.length - 1] = String(Number(parts[parts.length - 1]) + 1);
    return parts.join('.') + '. ';
  }

  function exerciseNumber(box) {
    let prev = box.previousElementSibling;
    while (prev && prev.tagName !== 'OL' && !prev.matches('.admonition, h1, h2, h3, h4, h5')) {
      prev = prev.previousElementSibling;
    }
    if (!prev || prev.tagName !== 'OL') return 0;
    return (Number(prev.getAttribute('start')) || 1) + prev.children.length - 1;
  }

  function fixLinks() {
    const here = location.href.split('#')[0];
    let n = 0;
    document.querySelectorAll('a[href]').forEach(a => {
      const url = new URL(a.getAttribute('href'), location.href);
      if (url.origin !== location.origin || url.href.split('#')[0] === here) return;
      const frag = decodeURIComponent(url.hash.slice(1));
      const target = frag && (document.querySelector('.citation[id="' + CSS.escape(frag) + '"]')
                              || document.getElementById(frag));
      if (target) {
        a.setAttribute('href', '#' + uniqueId(target, 'book-ref-' + (n++)));
      } else {
        a.removeAttribute('href');
      }
    });
  }

  function uniqueId(el, fallback) {
    if (!el.id || document.querySelectorAll('[id="' + CSS.escape(el.id) + '"]').length > 1) {
      el.id = fallback;
    }
    return el.id;
  }

  function link(box, id) {
    const a = document.createElement('a');
    a.href = '#' + id;
    box.appendChild(a);
  }

  // Chapters (and the landing page) are level 0; their sections 1, subsections 2.
  function outlineHeadings(box) {
    const found = [];
    if (front) {
      const title = front.querySelector('h1');
      const contents = front.querySelector('#jb-print-toc h2');
      [title, contents].forEach((h, i) => {
        if (!h) return;
        h.id = 'book-front-' + i;
        link(box, h.id);
        found.push({title: text(h), level: 0, dest: h.id});
      });
    }
    // Read every style first, then write ids: a write between reads would restyle the page.
    const all = Array.from(article.querySelectorAll('h1, h2, h3, h4, h5, h6'))
      .map(h => ({h, hidden: getComputedStyle(h).display === 'none'}));
    all.forEach(({h, hidden}, i) => {
      const unit = h.closest('span[id^="document-"] + section');
      const level = Number(h.tagName[1]) - (unit ? 2 : 1);
      if (level < 0 || level >= depth || (hidden && level > 0)) return;
      // A page title the theme hides on paper (the landing page's) marks its section.
      const target = hidden ? h.parentElement : h;
      target.id = 'book-h-' + i;
      link(box, target.id);
      found.push({title: text(h), level, dest: target.id});
    });
    return found;
  }

  function tocEntries(box) {
    return Array.from(document.querySelectorAll('#jb-print-toc nav a[href]')).map((a, i) => {
      const frag = decodeURIComponent(a.getAttribute('href').replace(/^[^#]*#/, ''));
      const marker = document.getElementById(frag);
      const chapter = marker && marker.nextElementSibling;
      const heading = chapter && chapter.querySelector(':scope > :is(h1, h2, h3)');
      const target = heading || marker;
      const entry = {title: text(a), dest: target ? uniqueId(target, 'book-toc-' + i) : ''};
      if (target) { a.setAttribute('href', '#' + target.id); link(box, target.id); }
      // "10. Transfer learning": the number in a column of its own.
      const first = a.firstChild;
      const number = first && first.nodeType === Node.TEXT_NODE
          && first.textContent.match(/^\\s*\\d+\\.\\s+/);
      if (number) {
        const span = document.createElement('span');
        span.className = 'toc-number';
        span.textContent = number[0].trim();
        first.textContent = first.textContent.slice(number[0].length);
        a.insertBefore(span, first);
      }
      const leader = document.createElement('span');
      leader.className = 'toc-leader';
      const slot = document.createElement('span');
      slot.className = 'toc-page';
      slot.textContent = '000';
      a.append(leader, slot);
      return entry;
    });
  }

  function keepShortBlocks() {
    const blocks = Array.from(article.querySelectorAll(
        ':is(.cell, .cell_input, .cell_output, div.highlight, .admonition, figure, table, dl)'));
    const heights = blocks.map(b => b.offsetHeight);
    const short = blocks.filter((b, i) => heights[i] > 0 && heights[i] <= keepMaxPx);
    short.forEach(b => b.classList.add('book-keep'));
    return short.length;
  }

  function text(el) {
    const copy = el.cloneNode(true);
    copy.querySelectorAll('.headerlink, .toc-page, .toc-leader, button').forEach(e => e.remove());
    return copy.textContent.replace(/\\s+/g, ' ').trim();
  }
}
"""

_TOC_NUMBERS_JS = """
(pages) => {
  document.querySelectorAll('#jb-print-toc nav a[href] .toc-page').forEach((slot, i) => {
    slot.textContent = pages[i] ? String(pages[i]) : '';
    slot.classList.add('toc-page-filled');
  });
}
"""


def wait_for_math(page, timeout_s: float) -> None:
    """Wait until MathJax has typeset the page; raise if it did not, or left TeX behind."""
    page.evaluate(_MATH_START_JS)
    try:
        page.wait_for_function("() => window.__bookMath !== 'pending'",
                               timeout=timeout_s * 1000, polling=200)
    except Exception as exc:  # playwright's TimeoutError
        raise PdfBuildError(
            f"MathJax did not finish typesetting within {timeout_s:.0f} s "
            "(raise --math-timeout on a slow machine, or check that _static/mathjax loads)"
        ) from exc
    state = page.evaluate("() => window.__bookMath")
    if state.startswith("error"):
        raise PdfBuildError(f"MathJax failed: {state}")
    left = page.evaluate(_MATH_LEFT_JS)
    if left["raw"] or left["errors"]:
        raise PdfBuildError(
            f"{len(left['raw'])} equations were not typeset (e.g. {left['raw'][:3]}); "
            f"MathJax errors: {left['errors']}"
        )


def prepare_page(page, math_timeout_s: float) -> dict:
    """Loaded page -> paper: images loaded, math typeset, solutions open, links and outline set."""
    missing = page.evaluate(_IMAGES_JS)
    if missing:
        raise PdfBuildError(f"{len(missing)} images did not load, e.g. {missing[:3]}")
    wait_for_math(page, math_timeout_s)
    return page.evaluate(_PREPARE_JS, [KEEP_MAX_PX, OUTLINE_DEPTH, MIN_CODE_PX])


def print_pdf(page, path: Path, page_ranges: str = "") -> None:
    """Chromium's print to PDF: A4, the book's title in the header, the page number in the
    footer."""
    page.pdf(path=str(path), format=PAGE_FORMAT, margin=MARGINS, print_background=True,
             display_header_footer=True, header_template=HEADER, footer_template=FOOTER,
             page_ranges=page_ranges)


# --------------------------------------------------------------------------------------------------
# After the print: where did each heading land? (pypdf)
# --------------------------------------------------------------------------------------------------
def destination_pages(reader) -> dict[str, tuple[int, float]]:
    """Named destination -> (0-based page, top in PDF points) of a PDF Chromium printed."""
    found = {}
    for name, dest in reader.named_destinations.items():
        top = dest.get("/Top")
        found[name.lstrip("/")] = (reader.get_destination_page_number(dest),
                                   float(top) if top is not None else 0.0)
    return found


def toc_page_numbers(entries: list[dict], dests: dict[str, tuple[int, float]]) -> list[int | None]:
    """The printed (1-based) page of each contents entry's target; None when it was not printed."""
    return [dests[e["dest"]][0] + 1 if e["dest"] in dests else None for e in entries]


def front_page_count(headings: list[Heading], dests: dict[str, tuple[int, float]]) -> int:
    """How many pages come before the first heading of the article (title page and contents)."""
    pages = [dests[h.dest][0] for h in headings
             if h.dest in dests and not h.dest.startswith("book-front-")]
    if not pages:
        raise PdfBuildError("no heading of the book was found in the print")
    return min(pages)


def add_outline(writer, headings: list[Heading], dests: dict[str, tuple[int, float]]) -> int:
    """Bookmarks for the headings, nested by level; returns how many were written.

    A heading whose level jumps (a subsection right under a chapter) hangs under the nearest
    shallower one. Headings that did not print (no destination) are left out.
    """
    from pypdf.generic import Fit

    parents: list = []  # parents[k]: the last bookmark written at level k
    written = 0
    for h in headings:
        if h.dest not in dests:
            continue
        page, top = dests[h.dest]
        level = min(h.level, len(parents))
        parent = parents[level - 1] if level > 0 else None
        item = writer.add_outline_item(title=h.title, page_number=page, parent=parent,
                                       fit=Fit.xyz(0, top, None))
        del parents[level:]
        parents.append(item)
        written += 1
    writer.page_mode = "/UseOutlines"
    return written


def swap_front_pages(writer, front_pdf: Path, count: int) -> None:
    """Put the reprinted first pages' drawing into the book's first pages.

    The pages' own objects (and so their link annotations, which name their targets) stay; only
    what is drawn changes, and the reprint has the same layout, with the page numbers filled in.
    """
    from pypdf import PdfReader
    from pypdf.generic import NameObject

    front = PdfReader(str(front_pdf))
    if len(front.pages) != count:
        raise PdfBuildError(f"the contents were reprinted on {len(front.pages)} pages, not {count}")
    for i in range(count):
        target, source = writer.pages[i], front.pages[i]
        target.replace_contents(source.get_contents())
        target[NameObject("/Resources")] = source["/Resources"].clone(writer)


# --------------------------------------------------------------------------------------------------
# The whole print
# --------------------------------------------------------------------------------------------------
def render(site: Path, page_file: Path, pdf: Path, math_timeout_s: float, log: Callable) -> dict:
    """Print ``page_file`` (in the ``site`` folder) to ``pdf``: the book, then its first pages again
    with the contents' page numbers; pypdf joins them and adds the outline."""
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader, PdfWriter

    if chromium_missing():
        raise PdfBuildError(chromium_missing() + "; no browser is downloaded")
    blocked: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="book-pdf-", dir=pdf.parent))
    try:
        with serve(site) as base_url, sync_playwright() as p:
            browser = launch_browser(p)
            try:
                page = offline_context(browser, base_url, blocked).new_page()
                page.emulate_media(media="print")
                t0 = time.monotonic()
                url = base_url + page_file.relative_to(site).as_posix()
                response = page.goto(url, wait_until="load", timeout=300_000)
                if response is None or not response.ok:
                    status = response.status if response else "no response"
                    raise PdfBuildError(f"{url} did not load: {status}")
                facts = prepare_page(page, math_timeout_s)
                log(f"loaded and typeset in {time.monotonic() - t0:.0f} s: {facts['chapters']} "
                    f"chapters, {facts['solutions']} solutions, {len(facts['headings'])} headings, "
                    f"{facts['shrunk']} wide code blocks set smaller")
                t0 = time.monotonic()
                print_pdf(page, work / "book.pdf")
                log(f"printed in {time.monotonic() - t0:.0f} s")
                headings = [Heading(**h) for h in facts["headings"]]
                reader = PdfReader(str(work / "book.pdf"))
                dests = destination_pages(reader)
                front = front_page_count(headings, dests)
                facts["toc_pages"] = toc_page_numbers(facts["toc"], dests)
                page.evaluate(_TOC_NUMBERS_JS, facts["toc_pages"])
                t0 = time.monotonic()
                print_pdf(page, work / "front.pdf", page_ranges=f"1-{front}")
                log(f"reprinted the first {front} pages in {time.monotonic() - t0:.0f} s")
            finally:
                browser.close()
        t0 = time.monotonic()
        writer = PdfWriter(clone_from=reader)
        swap_front_pages(writer, work / "front.pdf", front)
        facts["outline"] = add_outline(writer, headings, dests)
        writer.add_metadata({"/Title": headings[0].title if headings else "Book"})
        with open(pdf, "wb") as f:
            writer.write(f)
        log(f"outline and contents' page numbers added in {time.monotonic() - t0:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if blocked:
        log(f"note: {len(blocked)} requests outside the book were refused, e.g. {blocked[:2]}")
    return facts


def publish(pdf_tmp: Path, pdf: Path, html_dir: Path | None) -> list[Path]:
    """Move the finished print into place atomically, and copy it next to the HTML book."""
    os.replace(pdf_tmp, pdf)
    written = [pdf]
    if html_dir is not None and (html_dir / "index.html").is_file():
        target = html_dir / "downloads" / "book.pdf"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".pdf.tmp")
        shutil.copyfile(pdf, tmp)
        os.replace(tmp, target)
        written.append(target)
    return written


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="the book's root (_config.yml)")
    parser.add_argument("--out", type=Path, default=ROOT,
                        help="output root, as jupyter-book's --path-output: writes <out>/_build/"
                             "singlehtml and <out>/_build/pdf/book.pdf (default: the repository)")
    parser.add_argument("--html-dir", type=Path, default=None,
                        help="the HTML book that gets downloads/book.pdf "
                             "(default: <out>/_build/html, if it exists)")
    parser.add_argument("--skip-build", action="store_true",
                        help="print the existing <out>/_build/singlehtml without rebuilding it")
    parser.add_argument("--math-timeout", type=float, default=120.0,
                        help="seconds MathJax may take to typeset the whole book (default 120)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # pypdf notes harmless quirks of Chromium's PDFs ("Object count ... exceeds trailer size").
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    out = args.out.resolve()
    html_dir = (args.html_dir or out / "_build" / "html").resolve()
    pdf = out / "_build" / "pdf" / "book.pdf"
    log = functools.partial(print, "build_pdf:", flush=True)
    started = time.monotonic()
    try:
        singlehtml = out / "_build" / "singlehtml"
        if not args.skip_build:
            t0 = time.monotonic()
            singlehtml = build_singlehtml(args.source.resolve(), out)
            log(f"single-page build in {time.monotonic() - t0:.0f} s")
        page_file = print_page(singlehtml, PRINT_CSS.read_text(encoding="utf-8"))
        pdf.parent.mkdir(parents=True, exist_ok=True)
        tmp = pdf.with_name(f".{pdf.name}.{os.getpid()}.tmp")
        try:
            facts = render(singlehtml, page_file, tmp, args.math_timeout, log)
            written = publish(tmp, pdf, html_dir)
        finally:
            tmp.unlink(missing_ok=True)
    except PdfBuildError as exc:
        print(f"build_pdf: error: {exc}", file=sys.stderr)
        return 1
    from pypdf import PdfReader

    pages = len(PdfReader(str(pdf)).pages)
    log(f"{pages} pages, {facts['outline']} bookmarks, {pdf.stat().st_size / 1e6:.1f} MB "
        f"in {time.monotonic() - started:.0f} s: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
