"""Sphinx extension (set up by ``page_assets``): cell outputs and figures as a reader meets them.

At build time, on myst-nb's output nodes (a post-transform, HTML only), so every page reads the
same with or without JavaScript and on paper:

1. Tracebacks. A stored IPython traceback is up to 60 lines of torch internals; the reader
   needs the line of their own cell that failed, the innermost frame of the book's own code
   (their cell or ``companion/``) and the error line. Those are shown; the full traceback
   follows in a ``<details>`` element, closed until asked for.
2. Long outputs. A text output longer than ``LONG_OUTPUT`` lines shows its first ``HEAD`` and
   last ``TAIL`` lines; the lines between sit in a ``<details>`` whose summary ("17 more
   lines") expands them in place. Lines that report a check ("check passed: ...") stay
   visible wherever they are.
3. Machine paths. Absolute paths into a virtual environment, the book's checkout or a home
   folder are shortened in every output (``make execute`` already strips them from stored
   notebooks; this keeps a page clean when a notebook was executed some other way).
4. Alt text. myst-nb gives an output image no ``alt``, so Sphinx writes the hashed file name.
   An image in a captioned figure gets the caption's plain text; any other output image is
   described by its cell and page ("Figure output of cell 7 in Convolution").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.writers.html5 import HTML5Translator

#: Text outputs longer than this many lines are clipped; shorter ones are left alone.
LONG_OUTPUT = 20
#: Lines shown above and below the clipped part of a long output.
HEAD, TAIL = 10, 4
#: A run of hidden lines shorter than this is shown instead: a button for two lines saves nothing.
MIN_HIDDEN = 4
#: A line reporting a check's verdict: never hidden.
CHECK_LINE = re.compile(r"\bcheck(?:s)? (?:passed|failed)\b|^\s*(?:PASS|FAIL)\b|[✓✔✗]", re.I)

#: The header IPython prints above the frames; group 1 is the exception's name.
TRACEBACK_HEADER = re.compile(r"^(\S+)\s+Traceback \(most recent call last\)")
#: The first line of a frame: the reader's cell (IPython 8+) or a file.
FRAME_START = re.compile(r"^(?:Cell In\s*\[|Input In\s*\[|File\s)")
#: A frame in the reader's own code: a notebook cell.
CELL_FRAME = re.compile(r"^(?:Cell In\s*\[|Input In\s*\[)")
#: A frame in an installed library or the standard library (not the book's own code).
LIBRARY_FRAME = re.compile(
    r"^File\s+(?:<frozen|(?:site|dist)-packages/|python/|.*[/\\](?:site|dist)-packages[/\\]"
    r"|.*[/\\]lib[/\\]python\d)"
)
#: An absolute path into a virtual environment or Python installation, up to its packages folder.
PACKAGES_PATH = re.compile(r"(?:[A-Za-z]:)?[/\\][^\s\"'():,]*?[/\\](site|dist)-packages[/\\]")
#: Home folders on Linux, macOS and Windows, and root's.
HOME_PATH = re.compile(r"(?:/home/[^/\s]+|/Users/[^/\s]+|/root|[A-Za-z]:\\Users\\[^\\\s]+)(?=[/\\])")


# --------------------------------------------------------------------------------------------
# Text: machine paths, tracebacks, long outputs
# --------------------------------------------------------------------------------------------
def scrub_machine_paths(text: str, roots: list[str]) -> str:
    """Shorten absolute paths a reader has no use for (and that name the author's machine).

    ``/home/ann/book/.venv/lib/python3.11/site-packages/torch/x.py`` -> ``site-packages/torch/x.py``;
    ``<root>/companion/ops.py`` -> ``companion/ops.py`` for each of ``roots`` (the book's source
    folder); any other home folder -> ``~``.
    """
    text = PACKAGES_PATH.sub(lambda m: f"{m.group(1)}-packages/", text)
    for root in sorted({r.rstrip("/\\") for r in roots if len(r) > 1}, key=len, reverse=True):
        text = text.replace(root + "/", "").replace(root + "\\", "")
    return HOME_PATH.sub("~", text)


@dataclass
class Traceback:
    """An IPython traceback split into what a reader needs and the rest."""

    header: list[str]  # the dashes and "XError   Traceback (most recent call last)"
    frames: list[list[str]]  # each frame's lines, blank lines trimmed
    error: list[str]  # "XError: message" (and the message's further lines)

    def frame_is_own(self, frame: list[str]) -> bool:
        """The reader's cell, or the book's own package: not a library's internals."""
        return not LIBRARY_FRAME.match(frame[0])


def _trim(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def parse_traceback(text: str) -> Traceback | None:
    """Split IPython's traceback text (ANSI codes already stripped); None if it is not one.

    With chained exceptions ("During handling of the above exception ...") the last traceback
    is the one parsed; the earlier ones count as its header.
    """
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if TRACEBACK_HEADER.match(line)]
    if not headers:
        return None
    h = headers[-1]
    ename = TRACEBACK_HEADER.match(lines[h]).group(1)
    starts = [i for i in range(h + 1, len(lines)) if FRAME_START.match(lines[i])]
    if not starts:
        return None
    named = [
        i for i in range(starts[-1] + 1, len(lines))
        if lines[i].startswith(ename) and lines[i][len(ename):len(ename) + 1] in (":", "")
    ]
    if named:
        error_at = named[-1]
    else:  # the error is what follows the last frame's blank line
        blanks = [i for i in range(starts[-1] + 1, len(lines)) if not lines[i].strip()]
        error_at = blanks[0] + 1 if blanks else len(lines) - 1
    ends = starts[1:] + [error_at]
    frames = [_trim(lines[s:e]) for s, e in zip(starts, ends)]
    error = _trim(lines[error_at:])
    if not error:
        return None
    return Traceback(header=lines[: starts[0]], frames=frames, error=error)


def _elided(count: int) -> str:
    return f"   [... {count} more frame{'s' if count != 1 else ''} in the full traceback]"


def short_traceback(tb: Traceback) -> tuple[str, int]:
    """The frames that matter and the error line, and how many frames that leaves out.

    Kept: the reader's first cell frame (the line they ran) and the innermost frame of their
    own code (a cell or the book's ``companion`` package), where the mistake usually shows.
    Without any such frame, the innermost frame. Left-out runs are marked in place.
    """
    own = [k for k, f in enumerate(tb.frames) if tb.frame_is_own(f)]
    cells = [k for k in own if CELL_FRAME.match(tb.frames[k][0])]
    if own:
        kept = sorted({(cells or own)[0], own[-1]})
    else:
        kept = [len(tb.frames) - 1]
    blocks: list[str] = []
    previous = -1
    for k in kept:
        if k - previous > 1:
            blocks.append(_elided(k - previous - 1))
        blocks.append("\n".join(tb.frames[k]))
        previous = k
    if previous < len(tb.frames) - 1:
        blocks.append(_elided(len(tb.frames) - 1 - previous))
    blocks.append("\n".join(tb.error))
    return "\n\n".join(blocks), len(tb.frames) - len(kept)


def visible_runs(lines: list[str]) -> list[tuple[bool, list[str]]]:
    """Split a text output into runs of (shown, lines); one shown run if it is short.

    Shown: the first ``HEAD`` and last ``TAIL`` lines and every check verdict; hidden: the runs
    between them that are at least ``MIN_HIDDEN`` lines long.
    """
    n = len(lines)
    if n <= LONG_OUTPUT:
        return [(True, lines)]
    shown = [
        i < HEAD or i >= n - TAIL or bool(CHECK_LINE.search(line)) for i, line in enumerate(lines)
    ]
    runs: list[tuple[bool, list[str]]] = []
    for flag, line in zip(shown, lines):
        if runs and runs[-1][0] == flag:
            runs[-1][1].append(line)
        else:
            runs.append((flag, [line]))
    # Short hidden runs are shown; then neighbouring shown runs merge.
    merged: list[tuple[bool, list[str]]] = []
    for flag, chunk in runs:
        flag = flag or len(chunk) < MIN_HIDDEN
        if merged and merged[-1][0] == flag:
            merged[-1][1].extend(chunk)
        else:
            merged.append((flag, list(chunk)))
    return merged


# --------------------------------------------------------------------------------------------
# Nodes: <details><summary>...</summary>...</details> in HTML
# --------------------------------------------------------------------------------------------
class book_details(nodes.General, nodes.Element):  # noqa: N801 - docutils node naming
    """A collapsible block: ``summary`` is always shown, the children when opened."""


def visit_book_details(self: HTML5Translator, node: book_details) -> None:
    classes = " ".join(node["classes"])
    self.body.append(f'<details class="{classes}">\n')
    summary = self.encode(node["summary"])
    hide = self.encode(node.get("summary_open", "")) or summary
    self.body.append(
        f'<summary><span class="book-when-closed">{summary}</span>'
        f'<span class="book-when-open">{hide}</span></summary>\n'
    )


def depart_book_details(self: HTML5Translator, node: book_details) -> None:
    self.body.append("</details>\n")


def _literal_like(node: nodes.literal_block, text: str, *classes: str) -> nodes.literal_block:
    """A literal block highlighted like ``node`` (same lexer and classes) holding ``text``."""
    new = node.copy()
    new["ids"] = []
    new["classes"] = list(node["classes"]) + list(classes)
    new.rawsource = text
    new += nodes.Text(text)
    return new


# --------------------------------------------------------------------------------------------
# The post-transform
# --------------------------------------------------------------------------------------------
def _output_kind(node: nodes.Node) -> str | None:
    """'traceback', 'text' (stream, stderr, text/plain) or None for other literal blocks."""
    if not isinstance(node, nodes.literal_block) or "output" not in node["classes"]:
        return None
    if "traceback" in node["classes"]:
        return "traceback"
    if {"stream", "stderr", "text_plain"} & set(node["classes"]):
        return "text"
    return None


def traceback_nodes(node: nodes.literal_block) -> nodes.Element | None:
    """The short view of a traceback and the full one, collapsed; None if it cannot be parsed."""
    tb = parse_traceback(node.astext())
    if tb is None:
        return None
    short, left_out = short_traceback(tb)
    box = nodes.container(classes=["book-traceback"])
    box += _literal_like(node, short, "book-traceback-short")
    if left_out:
        frames = len(tb.frames)
        details = book_details(
            classes=["book-traceback-full"],
            summary=f"Full traceback ({frames} frames)",
            summary_open=f"Hide the full traceback ({frames} frames)",
        )
        details += _literal_like(node, node.astext())
        box += details
    return box


def long_output_nodes(node: nodes.literal_block) -> nodes.Element | None:
    """The output with its long middle collapsed; None when it is short enough to show whole."""
    runs = visible_runs(node.astext().splitlines())
    if len(runs) == 1:
        return None
    box = nodes.container(classes=["book-long-output"])
    for shown, lines in runs:
        text = "\n".join(lines)
        if shown:
            box += _literal_like(node, text, "book-output-part")
            continue
        n = len(lines)
        details = book_details(
            classes=["book-output-more"],
            summary=f"… {n} more lines (show)",
            summary_open=f"Hide these {n} lines",
        )
        details += _literal_like(node, text, "book-output-part")
        box += details
    return box


def _cell_of(node: nodes.Node) -> nodes.Element | None:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, nodes.container) and parent.get("nb_element") == "cell_code":
            return parent
        parent = parent.parent
    return None


def _caption_text(node: nodes.image) -> str:
    parent = node.parent
    while parent is not None and not isinstance(parent, nodes.figure):
        parent = parent.parent
    if parent is None:
        return ""
    captions = [c for c in parent.children if isinstance(c, nodes.caption)]
    return " ".join(captions[0].astext().split()) if captions else ""


def _looks_like_a_file(alt: str) -> bool:
    return bool(re.search(r"\.(?:png|jpe?g|gif|svg|pdf)$|[0-9a-f]{16,}", alt.strip(), re.I))


def alt_text(node: nodes.image, page_title: str) -> str | None:
    """The alt text an image should have, or None to keep its own.

    An author's own alt (not a file name) is kept; otherwise the figure's caption; an output
    image without one is described by its cell and page.
    """
    own = node.get("alt", "")
    if own and not _looks_like_a_file(own):
        return None
    caption = _caption_text(node)
    if caption:
        return caption
    cell = _cell_of(node)
    if cell is None:
        return None
    number = cell.get("exec_count") or (cell.get("cell_index", 0) + 1)
    where = f" in {page_title}" if page_title else ""
    return f"Figure output of cell {number}{where}"


class ReaderOutputs(SphinxPostTransform):
    """Short tracebacks, collapsible long outputs, no machine paths, alt text (see module)."""

    default_priority = 250  # after myst-nb chose each output's mime type (priority 4)
    formats = ("html",)

    def run(self, **kwargs: object) -> None:
        self.scrub_paths()
        self.reshape_outputs()
        self.describe_images()

    def scrub_paths(self) -> None:
        srcdir = str(self.env.srcdir)
        roots = [srcdir, str(Path(srcdir).resolve())]
        for node in list(self.document.findall(nodes.literal_block)):
            if _output_kind(node) is None:
                continue
            text = node.astext()
            clean = scrub_machine_paths(text, roots)
            if clean != text:
                node.replace_self(_literal_like(node, clean))

    def reshape_outputs(self) -> None:
        for node in list(self.document.findall(nodes.literal_block)):
            kind = _output_kind(node)
            if kind is None:
                continue
            new = traceback_nodes(node) if kind == "traceback" else long_output_nodes(node)
            if new is not None:
                node.parent.replace(node, new)  # not replace_self: it copies the classes

    def describe_images(self) -> None:
        title_node = self.env.titles.get(self.env.docname)
        title = title_node.astext() if title_node is not None else ""
        for image in self.document.findall(nodes.image):
            alt = alt_text(image, title)
            if alt:
                image["alt"] = alt


def setup(app: Sphinx) -> dict:
    app.add_node(book_details, html=(visit_book_details, depart_book_details))
    app.add_post_transform(ReaderOutputs)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
