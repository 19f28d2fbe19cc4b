"""Cell outputs, code and figures as a reader meets them (issue 16), in headless Chromium.

- Tracebacks: the error line and the reader's own frame are visible without a click; the
  torch/keras internals and the "Traceback (most recent call last)" header only after
  opening the full traceback; on a phone, opening it does not widen the page.
- No page of the built book shows a machine path (``/home/...``, ``.venv/``) or a raw ANSI
  colour code.
- Long outputs show their first lines and a control that expands the rest; short outputs
  are left whole; "check passed" lines are never hidden.
- Every image in a chapter has an alt text: its figure's caption, never a file name.
- Code: an 88-column line fits a code block at 1280 px, and no code cell scrolls sideways
  there (the notebooks keep their code within 88 columns).

The expected values come from the stored notebooks, so a new chapter is checked without
editing this file. The static scans (machine paths, ANSI) read every HTML file of the build.
"""

from __future__ import annotations

import json
import os
import re
from html import unescape
from pathlib import Path

import pytest

from bookcheck import sideways_overflow, toc_pages

BOOK_ROOT = Path(os.environ.get("BOOK_ROOT", Path(__file__).resolve().parents[2])).resolve()
PAGES = toc_pages(BOOK_ROOT)
CHAPTERS = [d for d in PAGES if re.match(r"book/\d", d)]
NOTEBOOKS = [d for d in PAGES if (BOOK_ROOT / f"{d}.ipynb").is_file()]
PHONE, DESKTOP = 390, 1280
COLUMNS = 88  # the book's code width (tests/test_reader_notebooks.py holds the notebooks to it)

#: More lines than this and a text output must be clipped (book_outputs.LONG_OUTPUT).
LONG_OUTPUT = 20
ANSI_CODE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: What a raw ANSI code looks like once its ESC byte is lost: "[0;31m", "[39m".
ANSI_GARBAGE = re.compile(r"\x1b|(?<![\w\[])\[(?:\d{1,3};)*\d{1,3}m(?!\])")
#: Absolute paths that would show the author's machine or virtual environment to readers.
MACHINE_PATH = re.compile(r"/home/|/Users/|/root/|/work/|\.venv/|[A-Za-z]:\\Users\\")
CHECK_LINE = re.compile(r"\bcheck passed\b", re.I)
#: A frame printed by IPython: a notebook cell or a file.
FRAME_HEADER = re.compile(r"^(?:Cell In\s*\[|Input In\s*\[|File\s)")
LIBRARY_FRAME = re.compile(r"^File\s+(?:<frozen|\S*(?:site|dist)-packages/|python/)")
TRACEBACK_HEADER = "Traceback (most recent call last)"
IMAGE_FILE = re.compile(r"\.(?:png|jpe?g|gif|svg|webp)\b|[0-9a-f]{16,}|^\.\./|_images/", re.I)


# --------------------------------------------------------------------------------------------
# What the stored notebooks hold
# --------------------------------------------------------------------------------------------
def _notebook(docname: str) -> dict:
    return json.loads((BOOK_ROOT / f"{docname}.ipynb").read_text(encoding="utf-8"))


def _shown_code_cells(nb: dict) -> list[dict]:
    hidden = {"remove-output", "remove-cell"}
    return [
        c for c in nb.get("cells", [])
        if c.get("cell_type") == "code" and not hidden & set(c.get("metadata", {}).get("tags", []))
    ]


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def stored_errors(nb: dict) -> list[dict]:
    """Each error output: its error line and the header line of each frame (ANSI stripped)."""
    errors = []
    for cell in _shown_code_cells(nb):
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            parts = [ANSI_CODE.sub("", p) for p in out.get("traceback", [])]
            last = [line for line in parts[-1].splitlines() if line.strip()] if parts else []
            headers = [
                p.strip("\n").splitlines()[0] for p in parts[:-1]
                if p.strip() and FRAME_HEADER.match(p.strip("\n"))
            ]
            errors.append({"error": last[0] if last else out.get("ename", ""), "frames": headers})
    return errors


def stored_check_lines(nb: dict) -> list[str]:
    """The "check passed: ..." lines the notebook prints."""
    lines = []
    for cell in _shown_code_cells(nb):
        for out in cell.get("outputs", []):
            text = _text(out.get("text", "")) + _text(out.get("data", {}).get("text/plain", ""))
            text = ANSI_CODE.sub("", text)
            lines += [ln.strip() for ln in text.splitlines() if CHECK_LINE.search(ln)]
    return lines


def _url(base_url: str, docname: str) -> str:
    return f"{base_url}{docname}.html"


def _open(page, base_url: str, html_dir: Path, docname: str) -> None:
    html_file = html_dir / f"{docname}.html"
    assert html_file.is_file(), f"{html_file} missing: is {docname} in the build?"
    page.goto(_url(base_url, docname))


def _shot(screenshot_dir: Path, docname: str, what: str, width: int) -> str:
    return str(screenshot_dir / f"{docname.replace('/', '__')}_{what}-{width}.png")


# --------------------------------------------------------------------------------------------
# Tracebacks
# --------------------------------------------------------------------------------------------
ERROR_PAGES = [d for d in NOTEBOOKS if stored_errors(_notebook(d))]
#: The output blocks of cells (children of .cell_output), in page order.
_UNITS_JS = """
() => Array.from(document.querySelectorAll('.bd-article .cell_output > *')).map((u, i) => ({
    index: i,
    text: u.textContent,
    visible: u.innerText,
    hiddenByAuthor: !!(u.parentElement.closest('details:not([open])')),
    pres: Array.from(u.querySelectorAll('pre')).map(p => p.textContent),
    traceback: !!u.querySelector('.traceback') || u.matches('.traceback'),
    summaries: u.querySelectorAll('details > summary').length,
}))
"""


def _units(page) -> list[dict]:
    return page.evaluate(_UNITS_JS)


def _unit(page, index: int):
    return page.locator(".bd-article .cell_output > *").nth(index)


def _open_all(unit) -> None:
    """Click every closed summary inside ``unit``, as a reader would."""
    summaries = unit.locator("details:not([open]) > summary")
    while summaries.count():
        summaries.first.click()


def _traceback_units(page, errors: list[dict]) -> list[tuple[dict, dict]]:
    """Pair each stored error with the page's output block that holds its error line."""
    units = [u for u in _units(page) if TRACEBACK_HEADER in u["text"] or u["traceback"]]
    pairs, start = [], 0
    for err in errors:
        found = next((k for k in range(start, len(units)) if err["error"] in units[k]["text"]), None)
        assert found is not None, f"no traceback on the page shows {err['error']!r}"
        pairs.append((err, units[found]))
        start = found + 1
    return pairs


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
@pytest.mark.parametrize("docname", ERROR_PAGES)
def test_tracebacks_show_the_error_and_fold_the_rest(
    docname, width, page_at, base_url, html_dir, screenshot_dir
):
    pg = page_at(width)
    _open(pg, base_url, html_dir, docname)
    problems = []
    pairs = _traceback_units(pg, stored_errors(_notebook(docname)))
    for k, (err, unit) in enumerate(pairs):
        name = f"traceback {k + 1} ({err['error'][:50]!r})"
        if unit["hiddenByAuthor"]:
            continue
        shown = unit["visible"]
        if err["error"] not in shown:
            problems.append(f"{name}: the error line is not visible")
        if any(f.startswith("Cell In") for f in err["frames"]) and "Cell In" not in shown:
            problems.append(f"{name}: the reader's cell frame is not visible")
        if TRACEBACK_HEADER in shown:
            problems.append(f"{name}: the full traceback shows before it is asked for")
        internals = [f for f in err["frames"] if LIBRARY_FRAME.match(f) and f in shown]
        if internals:
            problems.append(f"{name}: library frames show before asked for: {internals[0]!r}")
        folded = [f for f in err["frames"] if f not in shown]
        if folded:
            locator = _unit(pg, unit["index"])
            if k == 0:
                locator.screenshot(path=_shot(screenshot_dir, docname, "traceback", width))
            _open_all(locator)
            opened = locator.inner_text()
            missing = [f for f in folded if f not in opened]
            if missing or TRACEBACK_HEADER not in opened:
                problems.append(f"{name}: opening it does not show the full traceback {missing[:1]}")
            if k == 0:
                locator.screenshot(path=_shot(screenshot_dir, docname, "traceback_open", width))
    if width == PHONE:
        overflow = sideways_overflow(pg)
        if overflow:
            problems.append(f"with the tracebacks opened: {overflow}")
    assert not problems, f"{docname} at {width}px:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------------------------
# Machine paths and ANSI codes, in every HTML file of the build
# --------------------------------------------------------------------------------------------
def _page_text(path: Path) -> str:
    """The page's text (tags removed, entities decoded), scripts and styles included."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    return unescape(re.sub(r"<[^>]+>", "", raw))


def leaks_in(html_dir: Path) -> list[str]:
    """Machine paths and ANSI codes in any HTML page under ``html_dir``, one message each."""
    found = []
    for path in sorted(Path(html_dir).rglob("*.html")):
        raw = unescape(path.read_text(encoding="utf-8", errors="replace"))
        text = _page_text(path)
        rel = path.relative_to(html_dir)
        for m in MACHINE_PATH.finditer(raw):
            found.append(f"{rel}: machine path {raw[max(0, m.start() - 30):m.end() + 40]!r}")
        for m in ANSI_GARBAGE.finditer(text):
            found.append(f"{rel}: ANSI code {text[max(0, m.start() - 20):m.end() + 20]!r}")
    return found


def test_no_page_shows_a_machine_path_or_ansi_code(html_dir):
    pages = list(Path(html_dir).rglob("*.html"))
    assert len(pages) >= len(PAGES), f"only {len(pages)} HTML files under {html_dir}"
    leaks = leaks_in(html_dir)
    assert not leaks, f"{len(leaks)} leaks:\n  " + "\n  ".join(leaks[:20])


def test_the_scan_finds_a_machine_path_and_an_ansi_code(tmp_path):
    """The scan above can fail: a page with a site-packages path and a stray colour code."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "clean.html").write_text("<p>File site-packages/torch/x.py:3 [1, 2] [3m]</p>")
    (tmp_path / "sub" / "leak.html").write_text(
        "<pre>File <span>/home/ann/book/.venv/lib/python3.11/site-packages/torch/x.py</span>\n"
        "[0;31mRuntimeError[0m: boom</pre>"
    )
    leaks = leaks_in(tmp_path)
    assert any("machine path" in m and "leak.html" in m for m in leaks), leaks
    assert any("ANSI code" in m and "leak.html" in m for m in leaks), leaks
    assert not [m for m in leaks if "clean.html" in m], leaks


# --------------------------------------------------------------------------------------------
# Long outputs
# --------------------------------------------------------------------------------------------
def _lines(text: str) -> int:
    return len(text.rstrip("\n").splitlines())


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_long_outputs_are_clipped_with_a_control(docname, page, base_url, html_dir, screenshot_dir):
    """At 1280 px a text output of more than 20 lines shows its first lines and a control
    that expands it; shorter outputs show whole; "check passed" lines always show."""
    _open(page, base_url, html_dir, docname)
    problems = []
    shots = 0
    for unit in _units(page):
        if unit["traceback"] or not unit["pres"] or unit["hiddenByAuthor"]:
            continue
        total = sum(_lines(p) for p in unit["pres"])
        shown = _lines(unit["visible"]) - unit["summaries"]
        checks = sum(1 for line in unit["text"].splitlines() if CHECK_LINE.search(line))
        head = unit["pres"][0].splitlines()[0][:60] if unit["pres"][0] else ""
        if total <= LONG_OUTPUT:
            if unit["summaries"] or shown < total:
                problems.append(f"a {total}-line output is folded: {head!r}")
            continue
        locator = _unit(page, unit["index"])
        control = locator.locator("details > summary")
        if shown > LONG_OUTPUT + checks or not control.count() or not control.first.is_visible():
            problems.append(f"a {total}-line output shows {shown} lines and no control: {head!r}")
            continue
        first_line = unit["pres"][0].splitlines()[0].strip()
        if first_line and first_line not in unit["visible"]:
            problems.append(f"a clipped output hides its first line {first_line!r}")
        if shots < 1:
            locator.screenshot(path=_shot(screenshot_dir, docname, "long_output", DESKTOP))
        _open_all(locator)
        if _lines(locator.inner_text()) - unit["summaries"] < total:
            problems.append(f"expanding a {total}-line output does not show it all: {head!r}")
        if shots < 1:
            locator.screenshot(path=_shot(screenshot_dir, docname, "long_output_open", DESKTOP))
            shots += 1
    page.reload()
    article = page.inner_text(".bd-article")
    hidden_checks = [c for c in stored_check_lines(_notebook(docname)) if c not in article]
    if hidden_checks:
        problems.append(f"'check passed' lines not visible: {hidden_checks[:3]}")
    assert not problems, f"{docname}:\n  " + "\n  ".join(problems)


def test_a_long_output_shows_its_start_and_check_lines_on_a_phone(
    page_at, base_url, html_dir, screenshot_dir
):
    """The clipped output of the first chapter that has one, at 390 px: it fits the screen,
    folded and opened."""
    pg = page_at(PHONE)
    for docname in NOTEBOOKS:
        _open(pg, base_url, html_dir, docname)
        clipped = [u for u in _units(pg) if not u["traceback"] and u["summaries"]]
        if clipped:
            break
    else:
        lengths = [sum(_lines(p) for p in u["pres"]) for u in _units(pg)]
        pytest.fail(f"no chapter has a clipped long output (last page's outputs: {lengths})")
    locator = _unit(pg, clipped[0]["index"])
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=_shot(screenshot_dir, docname, "long_output", PHONE))
    _open_all(locator)
    assert sideways_overflow(pg) is None, sideways_overflow(pg)


# --------------------------------------------------------------------------------------------
# Alt text
# --------------------------------------------------------------------------------------------
_IMAGES_JS = """
() => Array.from(document.querySelectorAll('.bd-article img')).map(img => {
    const figure = img.closest('figure');
    const caption = figure && figure.querySelector('figcaption .caption-text');
    return {src: img.getAttribute('src'), alt: img.getAttribute('alt'),
            caption: caption ? caption.textContent.replace(/\\s+/g, ' ').trim() : null};
})
"""


@pytest.mark.parametrize("docname", CHAPTERS)
def test_images_are_described_by_their_captions(docname, page, base_url, html_dir):
    _open(page, base_url, html_dir, docname)
    images = page.evaluate(_IMAGES_JS)
    problems = []
    for img in images:
        alt = (img["alt"] or "").strip()
        if not alt or IMAGE_FILE.search(alt):
            problems.append(f"{img['src']}: alt is {img['alt']!r}, not a description")
        elif img["caption"] is not None and " ".join(alt.split()) != img["caption"]:
            problems.append(
                f"{img['src']}: alt {alt[:60]!r} is not the caption {img['caption'][:60]!r}"
            )
    assert not problems, f"{docname}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------------------------
# Code blocks
# --------------------------------------------------------------------------------------------
_WIDE_LINE_JS = """
(columns) => {
  document.querySelectorAll('.bd-article details').forEach(d => { d.open = true; });
  return Array.from(document.querySelectorAll('.bd-article .cell_input pre'))
    .filter(pre => pre.clientWidth > 0)
    .map(pre => {
      pre.textContent = 'm'.repeat(columns);
      return {width: pre.clientWidth, scrollWidth: pre.scrollWidth};
    });
}
"""

_SCROLLING_CODE_JS = """
() => {
  document.querySelectorAll('.bd-article details').forEach(d => { d.open = true; });
  return Array.from(document.querySelectorAll('.bd-article .cell_input pre'))
    .filter(pre => pre.clientWidth > 0 && pre.scrollWidth > pre.clientWidth + 1)
    .map(pre => {
      const lines = pre.textContent.split('\\n');
      const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
      return {width: pre.clientWidth, scrollWidth: pre.scrollWidth,
              columns: longest.length, line: longest.slice(0, 70)};
    });
}
"""


@pytest.mark.parametrize("docname", NOTEBOOKS[:1] + [d for d in NOTEBOOKS[1:] if "04_" in d])
def test_an_88_column_line_fits_a_code_cell(docname, page, base_url, html_dir):
    """The book's CSS, not the notebooks: every code cell of the page, folded ones opened,
    filled with an 88-column line, shows it without a scrollbar at 1280 px."""
    _open(page, base_url, html_dir, docname)
    blocks = page.evaluate(_WIDE_LINE_JS, COLUMNS)
    assert blocks, f"{docname} has no code cell"
    wide = [b for b in blocks if b["scrollWidth"] > b["width"] + 1]
    assert not wide, (
        f"{len(wide)} of {len(blocks)} code cells scroll an {COLUMNS}-column line at {DESKTOP}px: "
        f"{wide[0]['scrollWidth']}px of text in a {wide[0]['width']}px box"
    )


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_no_code_cell_scrolls_sideways_on_a_desktop(docname, page, base_url, html_dir):
    """At 1280 px every code cell shows its lines whole (needs code within 88 columns)."""
    _open(page, base_url, html_dir, docname)
    wide = page.evaluate(_SCROLLING_CODE_JS)
    assert not wide, f"{docname}: {len(wide)} code cells scroll sideways at {DESKTOP}px:\n  " + (
        "\n  ".join(f"{w['columns']} columns, {w['scrollWidth']}px in {w['width']}px: {w['line']!r}"
                    for w in wide[:5])
    )


# --------------------------------------------------------------------------------------------
# The build-time rules on inputs the book does not hold today (book_outputs.py)
# --------------------------------------------------------------------------------------------
def _book_outputs():
    import importlib
    import sys

    ext = str(BOOK_ROOT / "book" / "appendix" / "_ext")
    if ext not in sys.path:
        sys.path.insert(0, ext)
    return importlib.import_module("book_outputs")


def test_a_check_line_inside_a_long_output_stays_visible():
    bo = _book_outputs()
    lines = [f"epoch {i}" for i in range(40)]
    lines[20] = "check passed: the loss fell"
    runs = bo.visible_runs(lines)
    shown = [line for visible, chunk in runs if visible for line in chunk]
    hidden = [line for visible, chunk in runs if not visible for line in chunk]
    assert "check passed: the loss fell" in shown and lines[0] in shown and lines[-1] in shown
    assert len(hidden) >= 20 and len(runs) == 5, runs
    assert bo.visible_runs(lines[:20]) == [(True, lines[:20])]


def test_a_chained_traceback_keeps_the_cell_and_the_last_error():
    bo = _book_outputs()
    text = "\n".join([
        "-" * 75,
        "KeyError                                  Traceback (most recent call last)",
        "File site-packages/pkg/a.py:3, in get(k)",
        "----> 3 return d[k]",
        "",
        "KeyError: 'x'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "-" * 75,
        "ValueError                                Traceback (most recent call last)",
        "Cell In[4], line 2",
        "      1 import pkg",
        "----> 2 pkg.load('x')",
        "",
        "File site-packages/pkg/a.py:9, in load(name)",
        "----> 9 raise ValueError(f'no {name}')",
        "",
        "ValueError: no x",
        "  second line of the message",
    ])
    short, left_out = bo.short_traceback(bo.parse_traceback(text))
    assert "Cell In[4], line 2" in short
    assert short.endswith("ValueError: no x\n  second line of the message")
    assert "File site-packages" not in short and left_out == 1
    assert bo.parse_traceback("just some text\nno frames") is None


def test_machine_paths_are_shortened():
    bo = _book_outputs()
    text = ("File /home/ann/book/.venv/lib/python3.11/site-packages/torch/x.py:3\n"
            "C:\\Users\\ann\\env\\Lib\\site-packages\\torch\\y.py\n/srv/book/companion/ops.py:7\n"
            "saved to /Users/ann/data/model.pt")
    clean = bo.scrub_machine_paths(text, ["/srv/book"])
    assert "site-packages/torch/x.py:3" in clean and "site-packages/torch\\y.py" in clean
    assert "\ncompanion/ops.py:7" in clean and "~/data/model.pt" in clean
    assert not MACHINE_PATH.search(clean), clean


def test_an_output_image_without_a_caption_is_described_by_its_cell():
    from docutils import nodes

    bo = _book_outputs()
    cell = nodes.container(nb_element="cell_code", exec_count=7)
    output = nodes.container(nb_element="cell_code_output")
    loose = nodes.image(uri="../_images/" + "ab" * 32 + ".png")
    figure = nodes.figure("", nodes.image(uri="x.png"), nodes.caption("", "", nodes.Text("A "),
                                                                      nodes.literal("", "plot")))
    output += [loose, figure]
    cell += output
    assert bo.alt_text(loose, "Convolution") == "Figure output of cell 7 in Convolution"
    assert bo.alt_text(figure[0], "Convolution") == "A plot"
    assert bo.alt_text(nodes.image(uri="y.png", alt="A photograph"), "T") is None
