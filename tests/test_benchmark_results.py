"""The Performance appendix reads every stored benchmark result as tables (issue 16).

``book/appendix/_ext/benchmark_results.py`` parses each ``benchmarks/results/bench_*.txt`` into
tables, notes and a chart. These tests hold that on the files as stored: each parses into the
tables it should, with the number of rows the script printed, cells copied verbatim from the text
and no number of the file left out; the numbers the chapters quote are where the chapters say; a
chart is drawn in the book's style. A malformed or unknown result raises an error that names its
line, and in a Sphinx build it is shown as text with a warning naming the file (the book builds
with -W, so that warning stops the build).
"""

from __future__ import annotations

import io
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXT = REPO / "book" / "appendix" / "_ext"
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(EXT))

import benchmark_results as br  # noqa: E402  (a Sphinx extension, imported from its folder)

#: Rows of each table, as the scripts print them. A new benchmark's result fails
#: test_stored_result_parses until its counts are added here.
EXPECTED_ROWS = {
    "bench_augment": [3],
    "bench_batch_norm": [3, 3, 3],
    "bench_conv": [3, 3],
    "bench_degradation": [20, 20, 4, 2],
    "bench_distributed": [11],
    "bench_gan_budget": [9],
    "bench_gan_conditional": [3],
    "bench_gan_reference_width": [5],
    "bench_inference": [6],
    "bench_trainer": [2],
}
STORED = sorted(RESULTS.glob("bench_*.txt"))
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parsed(name: str) -> br.Result:
    return br.parse_result(name, (RESULTS / f"{name}.txt").read_text(encoding="utf-8"))


def shown_text(result: br.Result) -> str:
    """Everything the page prints of a parsed result, as one string."""
    parts = [*result.header, *result.notes]
    for table in result.tables:
        parts += [table.title, *table.columns, *(cell for row in table.rows for cell in row)]
    return "\n".join(parts)


def column(table: br.Table, name: str) -> list[str]:
    return [row[table.columns.index(name)] for row in table.rows]


def test_results_exist():
    assert STORED, f"no stored results in {RESULTS}"


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.stem)
def test_stored_result_parses(path):
    assert path.stem in EXPECTED_ROWS, (
        f"{path.name} has no expected row counts here: add them to EXPECTED_ROWS "
        f"(and a parser to FORMATS in {EXT / 'benchmark_results.py'} if it is a new format)"
    )
    result = br.parse_result(path.stem, path.read_text(encoding="utf-8"))
    assert [len(t.rows) for t in result.tables] == EXPECTED_ROWS[path.stem]
    assert result.header and all(result.header), "the header (machine, versions) is shown"
    for table in result.tables:
        assert table.title
        assert all(len(row) == len(table.columns) for row in table.rows), table.title


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.stem)
def test_cells_are_copied_from_the_text(path):
    """Numbers and units as printed, never recomputed or reformatted."""
    text = path.read_text(encoding="utf-8")
    for table in br.parse_result(path.stem, text).tables:
        for row in table.rows:
            for cell in row:
                assert cell in text, f"{path.name}, {table.title!r}: cell {cell!r} not in the file"


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.stem)
def test_no_number_is_left_out(path):
    text = path.read_text(encoding="utf-8")
    missing = Counter(NUMBER.findall(text)) - Counter(
        NUMBER.findall(shown_text(br.parse_result(path.stem, text)))
    )
    assert not missing, f"{path.name}: numbers the page would not show: {dict(missing)}"


def test_numbers_the_chapters_quote():
    """Chapters 2, 5, 9 and 11 quote these files; the page shows the quoted numbers."""
    conv = parsed("bench_conv").tables
    assert column(conv[0], "ratio to F.conv2d") == ["1.00x", "1.03x", "1.33x"]
    assert column(conv[1], "ratio to F.conv2d") == ["1.00x", "2.23x", "2.63x"]

    augment = parsed("bench_augment").tables[0]
    assert column(augment, "median")[:2] == ["2.041 s", "0.163 s"]

    loss, val, cpu, exercise = parsed("bench_degradation").tables
    # "Over the last seven of the 20 epochs" (chapter 9): the quoted ranges, rounded as quoted.
    def last7(net: str, digits: int) -> tuple[float, float]:
        values = [float(v) for v in column(loss, net)[-7:]]
        return round(min(values), digits), round(max(values), digits)

    assert last7("plain-32", 2) == (0.10, 0.14)
    assert last7("plain-8", 3) == (0.005, 0.021)
    assert last7("residual-32", 3) == (0.015, 0.034)
    assert column(val, "plain-32")[2] == "0.750"
    assert (column(loss, "residual-8")[2], column(loss, "residual-32")[2]) == ("0.1759", "0.2003")
    assert exercise.rows[0] == ["plain-56", "2.2988 (0.113)", "1.9973 (0.210)", "1.7756 (0.265)",
                                "0.140", "35"]
    assert exercise.rows[1][3:5] == ["0.3553 (0.893)", "0.902"]

    budget = parsed("bench_gan_budget").tables[0]
    frechet = dict(zip(column(budget, "epochs"), column(budget, "Fréchet")))
    assert [frechet[e] for e in ("10", "15", "20", "25", "40")] == [
        "72.9", "56.2", "45.4", "59.0", "38.1"]
    later = [r for r in budget.rows if r[0] not in ("real", "5", "10")]
    assert {r[2] for r in later} <= {"0.050", "0.052", "0.054", "0.062"}
    assert all(0.79 <= float(r[3]) <= 0.815 for r in later)

    reference = parsed("bench_gan_reference_width").tables[0]
    assert reference.rows[-1][2:] == ["0.044", "0.798", "5.35", "39.0"]


def test_batch_norm_within_the_issue_bar():
    """Issue 17: companion.ops.batch_norm fwd+bwd no slower than 3x F.batch_norm on every shape
    the stored run measured; the summary line states the largest of the printed ratios."""
    result = parsed("bench_batch_norm")
    ratios = []
    for table in result.tables:
        rows = {row[0]: row for row in table.rows}
        assert rows["F.batch_norm"][2] == "1.00x", table.title
        ratios.append(float(rows["companion.ops.batch_norm"][2].rstrip("x")))
    assert len(ratios) == 3 and max(ratios) <= 3.0, ratios
    (note,) = result.notes
    assert note.startswith("largest ratio of companion.ops.batch_norm to F.batch_norm: "
                           f"{max(ratios):.2f}x"), note


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.stem)
def test_chart_in_the_book_style(path, tmp_path):
    from PIL import Image

    result = br.parse_result(path.stem, path.read_text(encoding="utf-8"))
    png = tmp_path / f"{path.stem}.png"
    chart = br.draw_chart(br.FORMATS[path.stem], result, png)
    assert chart is not None and png.is_file()
    with Image.open(png) as image:
        assert round(image.info["dpi"][0]) == 150
        assert image.width <= 7.5 * 150
    assert png.stat().st_size < 300_000
    assert chart.caption
    # The alt text states the numbers the chart shows.
    assert len(chart.alt) > 40 and NUMBER.search(chart.alt), chart.alt


# ----------------------------------------------------------------------------------------------
# Malformed input
# ----------------------------------------------------------------------------------------------
def _stored(name: str) -> str:
    return (RESULTS / f"{name}.txt").read_text(encoding="utf-8")


def _insert_after(text: str, marker: str, line: str) -> str:
    return text.replace(marker, marker + line, 1)


MALFORMED = {
    # a stray line in the middle of a table
    "bench_conv": (lambda t: _insert_after(t, "ratio  1.00x\n", "  F.conv2d  took a while\n"),
                   r"line 6: expected '  <variant>  mean"),
    # a row that lost its unit
    "bench_trainer": (lambda t: t.replace("median 0.998 s", "median 0.998"), r"line 4: expected"),
    # the column header changed
    "bench_inference": (lambda t: t.replace("vs eager\n", "speed-up\n", 1),
                        r"line 6: expected the column header"),
    # a row with a value missing
    "bench_degradation": (lambda t: t.replace("0.1865          0.7499", "0.1865", 1),
                          r"line 8: 7 values for 4 networks"),
    # a row that lost its unit
    "bench_batch_norm": (lambda t: t.replace(" ms   ratio  1.00x", "   ratio  1.00x", 1),
                         r"line 6: expected '  <variant>  median"),
    # the header only: the run was cut short
    "bench_gan_budget": (lambda t: "\n".join(t.splitlines()[:4]),
                         r"ends before its measurements"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_result_names_its_line(name):
    broken, message = MALFORMED[name]
    with pytest.raises(br.ResultFormatError, match=message):
        br.parse_result(name, broken(_stored(name)))


def test_unknown_benchmark_has_no_parser():
    with pytest.raises(br.ResultFormatError, match="no parser knows the output of bench_new"):
        br.parse_result("bench_new", "# machine: x\nsomething 1.0\n")


# ----------------------------------------------------------------------------------------------
# The directive in a small Sphinx build
# ----------------------------------------------------------------------------------------------
def _build(src: Path) -> tuple[str, str, Path]:
    """Build ``src`` to HTML; returns (index.html text, warnings, output folder)."""
    from sphinx.application import Sphinx

    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXT)!r})\nextensions = ['benchmark_results']\n"
        "exclude_patterns = ['benchmarks', '_build']\n"
    )
    (src / "index.rst").write_text("Performance\n===========\n\n.. benchmark-results::\n")
    out, warnings = src / "_build" / "html", io.StringIO()
    app = Sphinx(str(src), str(src), str(out), str(src / "_build" / "doctrees"), "html",
                 status=None, warning=warnings, freshenv=True)
    app.build()
    return (out / "index.html").read_text(encoding="utf-8"), warnings.getvalue(), out


def _project(tmp_path: Path, names: list[str]) -> Path:
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    for name in names:
        shutil.copy(REPO / "benchmarks" / f"{name}.py", tmp_path / "benchmarks")
        shutil.copy(RESULTS / f"{name}.txt", results)
    return tmp_path


def test_directive_shows_tables_and_a_chart(tmp_path):
    html, warnings, out = _build(_project(tmp_path, ["bench_conv"]))
    assert warnings == ""
    assert html.count("<table") == 2 and "2.23x" in html and "11.994 ms" in html
    assert (out / "_images" / "bench_conv.png").is_file()
    assert 'alt="Bar charts of forward plus backward time' in html
    assert "# machine" not in html and "<pre" not in html


def test_directive_shows_an_unknown_result_as_text_and_warns(tmp_path):
    src = _project(tmp_path, ["bench_conv"])
    (src / "benchmarks" / "bench_new.py").write_text('"""A new benchmark."""\n')
    (src / "benchmarks" / "results" / "bench_new.txt").write_text(
        "# machine: x86_64\nnew thing   1.234 s\n"
    )
    html, warnings, _ = _build(src)
    assert "benchmarks/results/bench_new.txt: no parser knows the output of bench_new" in warnings
    assert "FORMATS" in warnings
    assert "new thing   1.234 s" in html  # shown, as text, not dropped
    assert html.count("<table") == 2  # bench_conv still as tables
