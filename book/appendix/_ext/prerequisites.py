"""Sphinx extension: a "Before this chapter -- ..." line under every chapter's title.

Every chapter notebook states in its notebook metadata what it needs and what it teaches,

    "book": {"requires": ["trainer", "adam"], "introduces": ["batch-norm"]}

with concept names from ``_concepts.yml`` (next to ``_toc.yml``; ``tests/test_book_order.py``
explains the scheme and checks the book's order against it). While the build reads a chapter,
this extension turns its ``requires`` into one line for the reader, grouped by the chapter that
teaches each concept and linking it::

    Before this chapter -- chapter 2: the convolution layer, gradients with autograd;
    chapter 4: the companion Trainer, the Adam optimizer.

A concept introduced by several earlier chapters (dropout: met in chapter 4, taught in full in
chapter 5) links the latest of them, the fullest treatment. The line is made from the metadata
at build time, so it cannot drift from what the test checks.

A required name that ``_concepts.yml`` does not hold stops the build with an error naming the
notebook and the concept. A required concept that no earlier chapter introduces, and a chapter
without the metadata, are build warnings (errors under ``-W``).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

# This folder is on sys.path (jupyter-book's local_extensions): reuse the landing page's view
# of the chapters (book/[0-9]*.ipynb, numbered by their prefix, as _toc.yml numbers them).
from i18n_notebooks import _
from landing import Chapter, find_chapters, read_notebook

logger = logging.getLogger(__name__)

VOCABULARY = "_concepts.yml"
CSS_CLASS = "book-prerequisites"


def load_vocabulary(srcdir: Path) -> dict[str, dict[str, str]]:
    path = Path(srcdir) / VOCABULARY
    if not path.is_file():
        raise ExtensionError(f"prerequisites: {path} is missing; it holds the concept names that "
                             "the chapters' 'book' metadata uses (see tests/test_book_order.py)")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def book_metadata(chapter: Chapter) -> dict[str, list[str]] | None:
    """The chapter's ``{"requires": [...], "introduces": [...]}``, or None without one."""
    book = read_notebook(chapter.path).get("metadata", {}).get("book")
    if not isinstance(book, dict):
        return None
    return {key: list(book.get(key, [])) for key in ("requires", "introduces")}


def prerequisite_groups(
    chapter: Chapter, chapters: list[Chapter], vocabulary: dict[str, dict[str, str]]
) -> list[tuple[Chapter, list[str]]]:
    """(teaching chapter, concept labels) pairs for ``chapter``'s requires, in book order.

    A name that is not in the vocabulary raises ExtensionError: the line cannot name it. A name
    that no earlier chapter introduces is a warning (an error under ``-W``; ``--keep-going``
    still builds the other pages) and is left off the line.
    """
    meta = book_metadata(chapter) or {"requires": []}
    teacher: dict[str, Chapter] = {}  # concept -> latest earlier chapter introducing it
    for earlier in chapters:
        if earlier.number >= chapter.number:
            break
        for name in (book_metadata(earlier) or {}).get("introduces", []):
            teacher[name] = earlier
    groups: dict[int, tuple[Chapter, list[str]]] = {}
    for name in meta["requires"]:
        if name not in vocabulary:
            raise ExtensionError(
                f"prerequisites: {chapter.path.name} requires '{name}', which is not a concept "
                f"of {VOCABULARY}; use one of its names or add the concept there")
        if name not in teacher:
            logger.warning(f"prerequisites: {chapter.path.name} requires '{name}', but no "
                           "earlier chapter lists it under 'introduces' in its notebook metadata",
                           location=chapter.docname)
            continue
        source = teacher[name]
        groups.setdefault(source.number, (source, []))[1].append(vocabulary[name]["label"])
    return [groups[number] for number in sorted(groups)]


def chapter_link(chapter: Chapter) -> addnodes.pending_xref:
    """A link to the chapter's page, worded "chapter N" (resolved like {doc}`...`)."""
    ref = addnodes.pending_xref("", refdomain="std", reftype="doc",
                                reftarget="/" + chapter.docname, refexplicit=True,
                                refwarn=True)
    ref += nodes.inline("", _("chapter {number}").format(number=chapter.number))
    return ref


def prerequisites_line(groups: list[tuple[Chapter, list[str]]]) -> nodes.paragraph:
    para = nodes.paragraph(classes=[CSS_CLASS])
    para += nodes.strong("", _("Before this chapter"))
    para += nodes.Text(" \u2014 ")
    if not groups:
        para += nodes.Text(_("nothing from earlier chapters."))
        return para
    for i, (source, labels) in enumerate(groups):
        if i:
            para += nodes.Text(_("; "))
        para += chapter_link(source)
        # The labels come from _concepts.yml; scripts/i18n.py puts them in the dlbook catalogue.
        para += nodes.Text(_(": ") + _(", ").join(_(label) for label in labels))
    para += nodes.Text(_("."))
    return para


def add_prerequisites(app: Sphinx, doctree: nodes.document) -> None:
    """doctree-read: put the line right under the chapter's title."""
    docname = app.env.docname
    chapters = find_chapters(Path(app.srcdir))
    chapter = next((c for c in chapters if c.docname == docname), None)
    if chapter is None:
        return
    if book_metadata(chapter) is None:
        logger.warning(f"prerequisites: {chapter.path.name} has no 'book' notebook metadata "
                       "with 'requires' and 'introduces' (see tests/test_book_order.py)",
                       location=docname)
        return
    groups = prerequisite_groups(chapter, chapters, load_vocabulary(Path(app.srcdir)))
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None or not isinstance(section[0], nodes.title):
        logger.warning(f"prerequisites: {chapter.path.name} has no title to put the line under",
                       location=docname)
        return
    section.insert(1, prerequisites_line(groups))


def outdate_all_chapters(app: Sphinx, env, added: set, changed: set, removed: set) -> list[str]:
    """One chapter's metadata feeds every later chapter's line: re-read them all together."""
    chapters = {c.docname for c in find_chapters(Path(app.srcdir))}
    touched = (set(added) | set(changed) | set(removed)) & chapters
    return sorted(chapters - touched) if touched else []


def setup(app: Sphinx) -> dict:
    app.connect("doctree-read", add_prerequisites)
    app.connect("env-get-outdated", outdate_all_chapters)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
