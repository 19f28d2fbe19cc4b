"""Sphinx directive ``benchmark-results``: the Performance appendix page, built from what exists.

Every ``benchmarks/bench_*.py`` script gets a section: the first line of its docstring, the command
that runs it and, when ``make benchmarks`` has stored one, its last measured output
(``benchmarks/results/<script>.txt``, which starts with the header recording machine, versions and
number of runs) plus any figure it saved (``benchmarks/results/<script>*.png``). A script without
stored results is listed as "not measured yet" instead of failing the book build, so the page is
correct whichever benchmarks exist when the book is built.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def _summary(script: Path) -> str:
    """First line of the script's module docstring ('' when it has none or does not parse)."""
    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    except (SyntaxError, UnicodeDecodeError):
        return ""
    return (doc or "").strip().splitlines()[0] if doc else ""


def _para(*children: nodes.Node) -> nodes.paragraph:
    return nodes.paragraph("", "", *children)


def _inline(text: str) -> list[nodes.Node]:
    """Plain text with ``double-backtick`` (or `single`) spans as inline code."""
    out: list[nodes.Node] = []
    pieces = re.split(r"``(.+?)``|`([^`]+)`", text)
    # re.split with two groups yields: text, group1, group2, text, group1, group2, ...
    for i in range(0, len(pieces), 3):
        if pieces[i]:
            out.append(nodes.Text(pieces[i]))
        if i + 2 < len(pieces):
            code = pieces[i + 1] or pieces[i + 2]
            if code:
                out.append(nodes.literal(text=code))
    return out


class BenchmarkResults(SphinxDirective):
    """Render one section per benchmark script found under ``benchmarks/``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        root = Path(self.env.srcdir)
        bench_dir = root / "benchmarks"
        results_dir = bench_dir / "results"
        scripts = sorted(bench_dir.glob("bench_*.py"))
        # Rebuild this page whenever a script or a stored result changes.
        for path in scripts + sorted(results_dir.glob("*")):
            self.env.note_dependency(str(path))
        if not scripts:
            return [_para(nodes.Text("No benchmark scripts exist yet (benchmarks/bench_*.py)."))]

        out: list[nodes.Node] = []
        for script in scripts:
            name = script.stem
            section = nodes.section(ids=[nodes.make_id(f"bench-{name}")])
            section += nodes.title(text=name)
            summary = _summary(script)
            if summary:
                section += _para(*_inline(summary))
            section += _para(
                nodes.Text("Run it with "),
                nodes.literal(text=f"python benchmarks/{script.name}"),
                nodes.Text(" (or "),
                nodes.literal(text="make benchmarks"),
                nodes.Text(" for all of them)."),
            )
            result = results_dir / f"{name}.txt"
            if result.is_file():
                text = result.read_text(encoding="utf-8").rstrip()
                section += _para(nodes.Text("Last stored measurement:"))
                section += nodes.literal_block(text, text)
            else:
                section += _para(
                    nodes.emphasis(text="Not measured yet: "),
                    nodes.Text("no stored result in "),
                    nodes.literal(text=f"benchmarks/results/{name}.txt"),
                    nodes.Text("."),
                )
            for png in sorted(results_dir.glob(f"{name}*.png")):
                # A leading slash makes the path relative to the book's source folder.
                uri = "/" + png.relative_to(root).as_posix()
                section += nodes.image(uri=uri, alt=f"{name} result figure")
            out.append(section)
        return out


def setup(app: Sphinx) -> dict:
    app.add_directive("benchmark-results", BenchmarkResults)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
