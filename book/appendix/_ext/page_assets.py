"""Sphinx extension: each script tag once per page, so the book loads without console errors.

With Jupyter Book 1 (Sphinx 7.4, sphinx-thebe 0.3) the inline configuration scripts of sphinx-thebe
and sphinx-togglebutton are emitted twice on every page. The thebe one declares ``const``
variables, so the second copy throws "Identifier 'THEBE_JS_URL' has already been declared" in the
reader's console. This keeps the first copy of each script (same file and same inline body).
"""

from __future__ import annotations

from sphinx.application import Sphinx


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


def setup(app: Sphinx) -> dict:
    # Late priority: after the theme and the other extensions have added their scripts.
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
