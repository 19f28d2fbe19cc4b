"""Sphinx extension: the book's page assets, for readers on any screen.

1. ``static/reader.css`` and ``static/reader.js`` on every page: the sidebar buttons
   work on phones, tablets and desktops; inline code, long words and cell outputs wrap
   instead of widening the page or hiding the end of a line; article images open in a
   lightbox (see those files).
2. Each script tag once per page, so the book loads without console errors. With Jupyter
   Book 1 (Sphinx 7.4, sphinx-thebe 0.3) the inline configuration scripts of
   sphinx-thebe and sphinx-togglebutton are emitted twice on every page. The thebe one
   declares ``const`` variables, so the second copy throws "Identifier 'THEBE_JS_URL'
   has already been declared" in the reader's console. This keeps the first copy of each
   script (same file and same inline body).
3. Cell outputs and figures at build time (``book_outputs.py``, next to this file): short
   tracebacks with the full one collapsed, long outputs clipped with a control to expand
   them, no machine paths in outputs, and alt text from each figure's caption.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config

STATIC = Path(__file__).resolve().parent / "static"


def _script_key(script: object) -> tuple:
    # The same inline script is registered once with filename None and once with '' (Sphinx adds
    # registry scripts with `filename or ''`), so both count as "no file".
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return (filename, tuple(sorted((k, str(v)) for k, v in attributes.items())))


def dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def add_static_path(app: Sphinx, config: Config) -> None:
    """Serve ``static/`` (reader.css, reader.js) from the build's ``_static`` folder."""
    missing = [n for n in ("reader.css", "reader.js") if not (STATIC / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{STATIC}: {', '.join(missing)} missing; restore them from the repository"
        )
    if str(STATIC) not in config.html_static_path:
        config.html_static_path.append(str(STATIC))


def setup(app: Sphinx) -> dict:
    # This folder is on sys.path (jupyter-book's local_extensions), so the module next to this
    # file loads by name.
    app.setup_extension("book_outputs")
    app.connect("config-inited", add_static_path)
    # After the theme's stylesheets (default priority 500), so these rules win ties.
    app.add_css_file("reader.css", priority=900)
    app.add_js_file("reader.js", priority=900, defer="defer")
    # Late priority: after the theme and the other extensions have added their scripts.
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
