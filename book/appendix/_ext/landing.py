"""Sphinx extension: the landing page's chapter grid and the book's downloads.

``chapter-grid`` (a directive for MyST pages) shows every chapter as a sphinx-design card:
its number and title, a one-line summary and a small figure. The chapters are the notebooks
``book/[0-9]*.ipynb`` (the glob of ``_toc.yml``), so a new chapter cannot be left off; the
directive's body is the one place that holds each chapter's summary and figure, as YAML::

    04_training_loop:
      figure: fig-04-optimizers      # a figure name (mystnb.figure.name) in the notebook
      summary: One line on what the chapter does.

A chapter without a summary or figure, an entry without a chapter, a figure the notebook
does not hold, or a card number that differs from the chapter's number in the sidebar is a
build warning (an error under ``-W``).

The thumbnails are made while the page is written, from the figure outputs stored in each
notebook (the outputs CI checks), downscaled with Pillow to at most ``THUMB_MAX_BYTES`` and
written into the HTML output (``_images/chapters/``): they cannot go stale, and the source
tree holds no copy of them.

``book-downloads`` links the whole book as a PDF (``downloads/book.pdf``, written by
``make pdf`` after the HTML build) and all chapter notebooks as a zip
(``downloads/notebooks.zip``, written here when the HTML build finishes, with a README that
says how to run them).
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from docutils import nodes
from PIL import Image
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.osutil import relative_uri

from i18n_notebooks import _

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
CHAPTER_GLOB = "book/[0-9]*.ipynb"
THUMB_DIR = "_images/chapters"
THUMB_WIDTH = 640  # pixels: sharp on a 2x screen in a card about 320 CSS pixels wide
THUMB_MAX_BYTES = 60_000
PDF_TARGET = "downloads/book.pdf"
ZIP_TARGET = "downloads/notebooks.zip"
ZIP_FOLDER = "notebooks"
#: A fixed time stamp for the zip's members: the same notebooks give the same zip.
ZIP_DATE = (2026, 1, 1, 0, 0, 0)
DEFAULT_REPOSITORY = "https://github.com/dlbook/image-recognition-verified"


# ------------------------------------------------------------------------------------------
# Chapters and their notebooks
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chapter:
    """One chapter notebook: ``book/04_training_loop.ipynb`` is number 4."""

    path: Path
    docname: str
    number: int

    @property
    def stem(self) -> str:
        return self.path.stem


def find_chapters(srcdir: Path) -> list[Chapter]:
    """The chapter notebooks, in table-of-contents order (the glob of ``_toc.yml``)."""
    chapters = []
    for path in sorted(Path(srcdir).glob(CHAPTER_GLOB)):
        if ".ipynb_checkpoints" in path.parts:
            continue
        number = int(re.match(r"\d+", path.name).group(0))
        docname = path.relative_to(srcdir).with_suffix("").as_posix()
        chapters.append(Chapter(path, docname, number))
    return chapters


def read_notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def notebook_title(nb: dict) -> str:
    """The ``# Title`` that opens the notebook's first markdown cell (its page title)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", []))
            heading = re.search(r"^#\s+(.+?)\s*$", source, re.M)
            if heading:
                return heading.group(1)
            break
    raise ValueError("the notebook does not open with a '# Title' markdown cell")


@dataclass(frozen=True)
class Figure:
    """A figure output stored in a notebook: its PNG bytes and its caption."""

    name: str
    png: bytes
    caption: str


def notebook_figures(nb: dict) -> list[Figure]:
    """Every PNG output of the notebook's code cells, in order, with the cell's figure name
    and caption (``mystnb.figure``; empty for an unnamed figure)."""
    found = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                data = base64.b64decode("".join(png) if isinstance(png, list) else png)
                found.append(Figure(figure.get("name", ""), data, figure.get("caption", "")))
    return found


def plain_text(markup: str) -> str:
    """A caption's MyST markup as plain text, for alt text: roles and backticks removed."""
    text = re.sub(r"\{[\w:-]+\}`([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", markup)
    text = text.replace("`", "").replace("$", "")
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------
# Thumbnails
# ------------------------------------------------------------------------------------------
def make_thumbnail(png: bytes, width: int = THUMB_WIDTH,
                   max_bytes: int = THUMB_MAX_BYTES) -> tuple[bytes, str]:
    """(image bytes, file suffix): ``png`` downscaled to ``width`` pixels at most and
    encoded in at most ``max_bytes``.

    Plots compress best as a 256-colour PNG; photographs and image grids, as a JPEG. Each
    is tried, the smallest that fits wins, and the image shrinks until one fits.
    """
    image = Image.open(io.BytesIO(png))
    image.load()
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, "white")
        image.paste(rgba, mask=rgba.getchannel("A"))
    image = image.convert("RGB")
    while True:
        small = image.copy()
        small.thumbnail((width, width * 4), Image.Resampling.LANCZOS)
        candidates = [_encode_png(small), _encode_jpeg(small)]
        fitting = [c for c in candidates if len(c[0]) <= max_bytes]
        if fitting:
            return min(fitting, key=lambda c: len(c[0]))
        if width <= 160:
            raise ValueError(f"no thumbnail of this figure fits {max_bytes} bytes")
        width = int(width * 0.8)


def _encode_png(image: Image.Image) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
    return buffer.getvalue(), ".png"


def _encode_jpeg(image: Image.Image) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=82, optimize=True, progressive=True)
    return buffer.getvalue(), ".jpg"


# ------------------------------------------------------------------------------------------
# The chapter grid
# ------------------------------------------------------------------------------------------
class chapter_thumb(nodes.General, nodes.Element):
    """Where a card's figure goes: replaced by an image when the page is written."""


def parse_cards(text: str) -> dict[str, dict]:
    """The directive's YAML body: {chapter stem: {"summary": ..., "figure": ...}}."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError("the body must map chapter file names to {summary, figure}")
    return {str(k): (v if isinstance(v, dict) else {}) for k, v in data.items()}


def card_problems(chapters: list[Chapter], cards: dict[str, dict]) -> list[str]:
    """What the grid's data lacks: every chapter needs a summary and a figure, every entry
    a chapter."""
    problems = []
    stems = {c.stem for c in chapters}
    for chapter in chapters:
        entry = cards.get(chapter.stem)
        if entry is None:
            problems.append(f"chapter {chapter.stem} has no card (no summary, no figure)")
            continue
        for key in ("summary", "figure"):
            if not str(entry.get(key) or "").strip():
                problems.append(f"chapter {chapter.stem} has no {key}")
    problems += [f"card {stem} names no chapter (no book/{stem}.ipynb)"
                 for stem in cards if stem not in stems]
    return problems


def card_class(chapter: Chapter) -> str:
    """The class that marks a chapter's card (a valid docutils class name)."""
    return f"chapter-card-{chapter.number:02d}"


def card_markup(chapter: Chapter, title: str, summary: str) -> str:
    """One sphinx-design card, as MyST."""
    label = f"{chapter.number}. {title}"
    # Read out with the card's title next to it, so the chapter's number is enough.
    link_alt = _("Chapter {number}").format(number=chapter.number)
    return "\n".join([
        f":::{{grid-item-card}} {label}",
        f":link: /{chapter.docname}",
        ":link-type: doc",
        f":link-alt: {link_alt}",
        f":class-card: chapter-card {card_class(chapter)}",
        "",
        " ".join(summary.split()),
        ":::",
    ])


class ChapterGrid(SphinxDirective):
    """``chapter-grid``: a card per chapter notebook; the body holds summaries and figures."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        srcdir = Path(self.env.srcdir)
        chapters = find_chapters(srcdir)
        try:
            cards = parse_cards("\n".join(self.content))
        except (yaml.YAMLError, ValueError) as err:
            return [self.state.document.reporter.warning(f"chapter-grid: {err}", line=self.lineno)]
        for problem in card_problems(chapters, cards):
            logger.warning(f"chapter-grid: {problem}", location=self.get_location())
        blocks = []
        for chapter in chapters:
            self.env.note_dependency(str(chapter.path))
            entry = cards.get(chapter.stem, {})
            title = notebook_title(read_notebook(chapter.path))
            blocks.append(card_markup(chapter, title, str(entry.get("summary") or "")))
        text = "\n".join(["::::{grid} 1 2 2 3", ":gutter: 3", ":class-container: chapter-grid",
                          "", *blocks, "::::"])
        grid = self.parse_text_to_nodes(text)
        self._add_thumb_placeholders(grid, chapters, cards)
        return grid

    def _add_thumb_placeholders(self, grid: list[nodes.Node], chapters: list[Chapter],
                                cards: dict[str, dict]) -> None:
        """Put a ``chapter_thumb`` at the top of each card, naming the figure to show."""
        by_class = {card_class(c): c for c in chapters}
        for root in grid:
            for card in root.findall(nodes.container):
                chapter = next((by_class[c] for c in card["classes"] if c in by_class), None)
                if chapter is None:
                    continue
                figure = str(cards.get(chapter.stem, {}).get("figure") or "")
                thumb = chapter_thumb(chapter=chapter.docname, number=chapter.number,
                                      figure=figure)
                self.set_source_info(thumb)
                card.insert(0, thumb)
                del by_class[card_class(chapter)]
        if by_class:
            raise self.error(f"chapter-grid: no card made for {sorted(by_class)}")


def page_path(app: Sphinx, docname: str) -> str:
    """The file, relative to the output folder, that holds ``docname``'s page: the root
    document's for the single-page builder, the page's own for the others."""
    if app.builder.name == "singlehtml":
        return app.config.root_doc + app.builder.out_suffix
    return app.builder.get_target_uri(docname).split("#")[0]


def _thumb_image(app: Sphinx, docname: str, node: chapter_thumb) -> nodes.Node | None:
    """The card's image: the named figure of the chapter's stored outputs, downscaled and
    written into the output folder."""
    source = Path(app.srcdir) / f"{node['chapter']}.ipynb"
    figures = notebook_figures(read_notebook(source))
    chosen = next((f for f in figures if f.name == node["figure"]), None)
    if chosen is None and node["figure"]:  # (no figure named at all: reported already)
        logger.warning(f"chapter-grid: {node['chapter']} has no figure named {node['figure']!r}"
                       f" with a stored image (has: {[f.name for f in figures if f.name]})",
                       location=node)
    if chosen is None:
        if not figures:
            return None
        chosen = figures[0]
    data, suffix = make_thumbnail(chosen.png)
    name = f"{Path(node['chapter']).name}{suffix}"
    target = Path(app.outdir) / THUMB_DIR / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    uri = relative_uri(page_path(app, docname), f"{THUMB_DIR}/{name}")
    # The caption's first sentence: alt text says what the picture shows, briefly.
    caption = re.split(r"(?<=[.!?])\s+(?=[A-Z])", plain_text(chosen.caption))[0]
    caption = caption or _("a figure of chapter {number}").format(number=node["number"])
    alt = _("Figure from chapter {number}: {caption}").format(number=node["number"],
                                                              caption=caption)
    image = nodes.image(uri=uri, alt=alt,
                        classes=["sd-card-img-top", "chapter-thumb"])
    # Not a source file: Sphinx must neither look for it in the source tree nor copy it.
    image["candidates"] = {"?": uri}
    # The picture links to its chapter too (as the card does); a linked image is also left
    # alone by reader.js's tap-to-enlarge.
    chapter_uri = app.builder.get_relative_uri(docname, node["chapter"])
    return nodes.reference("", "", image, refuri=chapter_uri, classes=["chapter-thumb-link"])


def _check_number(app: Sphinx, node: chapter_thumb) -> None:
    """The card's number must be the one the sidebar gives the chapter."""
    numbers = app.env.toc_secnumbers.get(node["chapter"], {})
    shown = numbers.get("")
    if shown != (node["number"],):
        logger.warning(f"chapter-grid: the card says chapter {node['number']} for "
                       f"{node['chapter']}, the table of contents numbers it {shown}: number "
                       "the Chapters part (numbered in _toc.yml) in file-name order",
                       location=node)


def resolve_thumbs(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Replace each ``chapter_thumb`` with its image (HTML builders) or nothing (others)."""
    for node in list(doctree.findall(chapter_thumb)):
        if app.builder.format != "html":
            node.parent.remove(node)
            continue
        _check_number(app, node)
        image = _thumb_image(app, docname, node)
        if image is None:
            node.parent.remove(node)
        else:
            node.replace_self(image)


# ------------------------------------------------------------------------------------------
# Downloads
# ------------------------------------------------------------------------------------------
class BookDownloads(SphinxDirective):
    """``book-downloads``: "Download the whole book as PDF, or all notebooks (zip)"."""

    def run(self) -> list[nodes.Node]:
        para = nodes.paragraph(classes=["book-downloads"])
        # The PDF is printed from the English book (make pdf); another edition, built into a
        # subfolder of the English one (_build/html/zh/), links to that file.
        english = (self.env.config.language or "en").startswith("en")
        para += _download(_("Download the whole book as PDF"),
                          PDF_TARGET if english else "../" + PDF_TARGET)
        para += nodes.Text(_(", or "))
        para += _download(_("all notebooks (zip)"), ZIP_TARGET)
        para += nodes.Text(_(" to run them yourself."))
        return [para]


def _download(text: str, target: str) -> nodes.reference:
    """A link to a file the build writes next to the HTML (not a source file)."""
    return nodes.reference("", text, refuri=target, book_download=target,
                           classes=["book-download"])


def resolve_downloads(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Point each download link at its file, relative to this page in this builder."""
    for node in doctree.findall(nodes.reference):
        if node.get("book_download"):
            node["refuri"] = relative_uri(page_path(app, docname), node["book_download"])


def zip_readme(repository: str, chapters: list[Chapter]) -> str:
    """How to run the notebooks of the zip, on Colab or on one's own machine."""
    names = "\n".join(f"  {c.path.name}" for c in chapters)
    return f"""\
Deep learning for image recognition, run and verified: the chapter notebooks

Each notebook is one chapter of the book, stored with the outputs the book shows:
{names}

On Google Colab: File > Upload notebook, then Runtime > Run all. The first code cell of
every chapter installs the book's companion package when it is missing:
  pip install git+{repository}

On your own machine (Python 3.11 or newer):
  python -m venv .venv && . .venv/bin/activate
  pip install "companion[book,keras,deploy] @ git+{repository}"
  python -m ipykernel install --user --name dlbook --display-name "Python (dlbook)" \\
      --env OMP_WAIT_POLICY PASSIVE --env COMPANION_PROGRESS line --env PYTHONHASHSEED 0
  jupyter lab
The notebooks ask for the "dlbook" kernel; the command above creates it with the settings
the book's runs use.

With the repository cloned, `make lab` does all of this with the pinned versions that CI
tests (requirements/lock.txt): {repository}
"""


def write_notebooks_zip(chapters: list[Chapter], target: Path, readme: str) -> Path:
    """Zip the chapter notebooks (as stored: outputs included) and a README into ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in [*((c.path.name, c.path.read_bytes()) for c in chapters),
                           ("README.txt", readme.encode("utf-8"))]:
            info = zipfile.ZipInfo(f"{ZIP_FOLDER}/{name}", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    partial.replace(target)
    return target


def build_notebooks_zip(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    chapters = find_chapters(Path(app.srcdir))
    options = app.config.html_theme_options or {}
    repository = str(options.get("repository_url") or DEFAULT_REPOSITORY).rstrip("/")
    write_notebooks_zip(chapters, Path(app.outdir) / ZIP_TARGET, zip_readme(repository, chapters))


# ------------------------------------------------------------------------------------------
def add_static_path(app: Sphinx, config: Config) -> None:
    """Serve ``static/`` (landing.css) from the build's ``_static`` folder."""
    if not (STATIC / "landing.css").is_file():
        raise FileNotFoundError(f"{STATIC}/landing.css missing; restore it from the repository")
    if str(STATIC) not in config.html_static_path:
        config.html_static_path.append(str(STATIC))


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx_design")
    app.add_node(chapter_thumb)
    app.add_directive("chapter-grid", ChapterGrid)
    app.add_directive("book-downloads", BookDownloads)
    app.connect("config-inited", add_static_path)
    app.connect("doctree-resolved", resolve_thumbs)
    app.connect("doctree-resolved", resolve_downloads)
    app.connect("build-finished", build_notebooks_zip)
    app.add_css_file("landing.css", priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
