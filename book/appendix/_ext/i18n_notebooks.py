"""The Chinese edition: Sphinx's gettext translation for notebooks, and a language switch.

Sphinx parses a translated message with the parser of its source file's type. For a notebook
that parser expects a whole notebook's JSON and fails on a paragraph (MyST-NB issue 587), so
every translated message is parsed here as MyST Markdown, which is what a markdown cell holds.

Every page gets a link to the same page in the other edition: the English book is built into
``_build/html/`` and the Chinese one into ``_build/html/zh/`` (``make book``).
"""

from __future__ import annotations

import html
from pathlib import Path

from myst_parser.parsers.sphinx_ import MystParser
from sphinx.application import Sphinx
from sphinx.locale import get_translator, is_translator_registered
from sphinx.transforms import i18n

_FILETYPE = "myst-translated-message"
_ZH = "zh_CN"
#: Strings that the book's own extensions write (the "Before this chapter" line, download
#: links, the Performance page's captions) and the concept labels of _concepts.yml: their
#: catalogue is locale/zh_CN/LC_MESSAGES/dlbook.po (scripts/i18n.py extracts and compiles it).
CATALOGUE = "dlbook"
LOCALE_DIR = Path(__file__).resolve().parents[3] / "locale"


def _(message: str) -> str:
    """``message`` in the language being built (the English itself outside a Sphinx build)."""
    if is_translator_registered(CATALOGUE):
        return get_translator(CATALOGUE).gettext(message)
    return message


def _message_filetype(source_suffix, filename: str) -> str:
    """Every translated message of this book is MyST Markdown, whatever its file."""
    return _FILETYPE


def _switch(app: Sphinx, pagename: str, templatename, context: dict, doctree) -> None:
    """Put a link to this page in the other edition above the page's content."""
    if "body" not in context:
        return
    up = "../" * pagename.count("/")
    if app.config.language == _ZH:
        href, label, lang = f"{up}../{pagename}.html", "English", "en"
        title = "Read this page in English"
    else:
        href, label, lang = f"{up}zh/{pagename}.html", "中文", "zh-CN"
        title = "阅读本页的中文版"
    link = (
        f'<p class="lang-switch"><a class="lang-switch-link" href="{html.escape(href)}" '
        f'hreflang="{lang}" lang="{lang}" title="{title}">{label}</a></p>\n'
    )
    context["body"] = link + context["body"]


def setup(app: Sphinx) -> dict:
    app.add_message_catalog(CATALOGUE, str(LOCALE_DIR))
    app.registry.source_parsers[_FILETYPE] = MystParser
    i18n.get_filetype = _message_filetype
    app.connect("html-page-context", _switch)
    app.add_css_file("lang_switch.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
