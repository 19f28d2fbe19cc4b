"""Sphinx directive ``benchmark-results``: the Performance appendix page, built from what exists.

Every ``benchmarks/bench_*.py`` script gets a section: a short heading, the first line of its
docstring and the command that runs it. When ``make benchmarks`` has stored its output
(``benchmarks/results/<script>.txt``), the page shows that output as a reader wants it:

- the header lines (machine, versions, method) as a small note;
- the measurements as tables (docutils table nodes, so they are searchable and print in the PDF),
  parsed from the stored text with every number and unit kept as printed;
- a chart drawn from those tables at build time (matplotlib, the book's style, 150 dpi, at most
  7.5 in wide), with alt text that states the numbers it shows;
- any figure the script saved itself (``benchmarks/results/<script>*.png``).

Each script prints its own format, so each has a parser here (:data:`FORMATS`). A stored result
that no parser reads (a new script, or a script whose output changed) is not dropped: the page shows
it as plain text and Sphinx warns, naming the file and the line that did not parse, which fails the
book's ``-W`` build until this module learns the format. A script without a stored result is listed
as "not measured yet" (no warning): the page is correct whichever benchmarks have been run.

``tests/test_benchmark_results.py`` runs the parsers and charts on every stored result, and
the directive in a small Sphinx project.
"""

from __future__ import annotations

import ast
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

# ----------------------------------------------------------------------------------------------
# Parsed results
# ----------------------------------------------------------------------------------------------
NUMBER = r"\d+(?:\.\d+)?"
#: A summary line after the measurements, "label: value" (e.g. "per image / batched: 12.5x").
NOTE = re.compile(r"(?P<label>[A-Za-z][^:]*?):\s+(?P<value>\S.*)")

Line = tuple[int, str]  # (1-based line number in the file, text without trailing whitespace)


class ResultFormatError(ValueError):
    """A stored result that does not read as its benchmark's format; the message names the line."""


@dataclass
class Table:
    """One table of measurements: cells are the stored text (number and unit), never recomputed."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Result:
    """A stored result, parsed: header lines (without '# '), tables, and 'label: value' notes."""

    header: list[str]
    tables: list[Table]
    notes: list[str] = field(default_factory=list)


def numbered_lines(text: str) -> list[Line]:
    """The file's lines with their line numbers, so that an error can point at one."""
    return [(n, line.rstrip()) for n, line in enumerate(text.splitlines(), start=1)]


def split_header(lines: list[Line]) -> tuple[list[str], list[Line]]:
    """The leading '#' lines (the run's machine, versions and method), and the rest."""
    header: list[str] = []
    for i, (_, line) in enumerate(lines):
        if not line.startswith("#"):
            return header, lines[i:]
        header.append(line.lstrip("#").strip())
    return header, []


def nonblank(lines: list[Line]) -> list[Line]:
    """The lines that hold something (the scripts separate blocks with blank lines)."""
    return [(n, line) for n, line in lines if line.strip()]


def expect(pattern: re.Pattern[str], line: Line, what: str) -> re.Match[str]:
    """The full match of ``pattern`` on the line, or an error saying which line and what was due."""
    n, text = line
    match = pattern.fullmatch(text)
    if match is None:
        raise ResultFormatError(f"line {n}: expected {what}, found {text.strip()!r}")
    return match


def require_rows(tables: list[Table], lines: list[Line]) -> list[Table]:
    """The tables, unless the file holds no measurement at all (a truncated or empty run)."""
    if not tables or any(not t.rows for t in tables):
        last = lines[-1][0] if lines else 0
        raise ResultFormatError(f"line {last}: the file ends before its measurements")
    return tables


def rows_then_notes(
    lines: list[Line], row: re.Pattern[str], what: str
) -> tuple[list[re.Match[str]], list[str]]:
    """Rows matching ``row``, then optional 'label: value' notes; any other line is an error."""
    rows: list[re.Match[str]] = []
    notes: list[str] = []
    for n, text in nonblank(lines):
        match = row.fullmatch(text) if not notes else None
        if match:
            rows.append(match)
        else:
            notes.append(expect(NOTE, (n, text), f"{what} or a 'label: value' line").group(0))
    return rows, notes


# -- bench_conv ---------------------------------------------------------------------------------
CONV_ROW = re.compile(
    rf"\s+(?P<variant>\S.*?)\s+mean\s+(?P<mean>{NUMBER} ms)\s+ratio\s+(?P<ratio>{NUMBER}x)"
)


def parse_conv(text: str) -> Result:
    """A layer name on its own line, then one indented row per variant: mean time and ratio."""
    header, body = split_header(numbered_lines(text))
    tables: list[Table] = []
    for n, line in nonblank(body):
        if not line[0].isspace():
            tables.append(Table(line, ["variant", "mean time per run", "ratio to F.conv2d"]))
            continue
        if not tables:
            raise ResultFormatError(f"line {n}: a timing row before any layer name: {line!r}")
        m = expect(CONV_ROW, (n, line), "'  <variant>  mean <t> ms  ratio <r>x'")
        tables[-1].rows.append([m["variant"], m["mean"], m["ratio"]])
    return Result(header, require_rows(tables, body))


# -- bench_batch_norm ---------------------------------------------------------------------------
MEDIAN_ROW = re.compile(
    rf"\s+(?P<variant>\S.*?)\s+median\s+(?P<median>{NUMBER} ms)\s+ratio\s+(?P<ratio>{NUMBER}x)"
)


def parse_median_ratios(text: str, baseline: str) -> Result:
    """An input name on its own line, then one indented row per variant: median time and ratio
    to ``baseline``; after the tables, 'label: value' notes (the largest ratio)."""
    header, body = split_header(numbered_lines(text))
    tables: list[Table] = []
    notes: list[str] = []
    for n, line in nonblank(body):
        if notes or (not line[0].isspace() and NOTE.fullmatch(line)):
            notes.append(expect(NOTE, (n, line), "a 'label: value' line").group(0))
        elif not line[0].isspace():
            tables.append(Table(line, ["variant", "median time per run", f"ratio to {baseline}"]))
        elif not tables:
            raise ResultFormatError(f"line {n}: a timing row before any input name: {line!r}")
        else:
            m = expect(MEDIAN_ROW, (n, line), "'  <variant>  median <t> ms  ratio <r>x'")
            tables[-1].rows.append([m["variant"], m["median"], m["ratio"]])
    return Result(header, require_rows(tables, body), notes)


# -- bench_trainer, bench_augment ---------------------------------------------------------------
TIMED_ROW = re.compile(
    rf"(?P<name>\S.*?)\s+median\s+(?P<median>{NUMBER} s)\s+mean\s+(?P<mean>{NUMBER} s)"
)


def parse_median_mean(text: str, subject: str, title: str) -> Result:
    """Rows '<name>  median <t> s  mean <t> s', then summary notes (ratios, shares)."""
    header, body = split_header(numbered_lines(text))
    rows, notes = rows_then_notes(body, TIMED_ROW, "'<name>  median <t> s  mean <t> s'")
    table = Table(title, [subject, "median", "mean"],
                  [[m["name"], m["median"], m["mean"]] for m in rows])
    return Result(header, require_rows([table], body), notes)


# -- bench_inference ----------------------------------------------------------------------------
INFERENCE_HEAD = re.compile(r"form\s+batch\s+images/s\s+vs eager")
INFERENCE_ROW = re.compile(
    rf"(?P<form>\S+)\s+(?P<batch>\d+)\s+(?P<mean>{NUMBER})\s+\(\s*(?P<sd>{NUMBER})\)"
    rf"\s+(?P<ratio>{NUMBER}x)"
)


def parse_inference(text: str) -> Result:
    """A column header, then '<form> <batch> <mean> (<sd>) <ratio>x' rows."""
    header, body = split_header(numbered_lines(text))
    lines = nonblank(body)
    if not lines:
        raise ResultFormatError("the file ends before its measurements")
    expect(INFERENCE_HEAD, lines[0], "the column header 'form  batch  images/s  vs eager'")
    rows, notes = rows_then_notes(lines[1:], INFERENCE_ROW, "'<form> <batch> <mean> (<sd>) <r>x'")
    table = Table("Throughput: images per second, mean and standard deviation over the runs",
                  ["form", "batch", "images/s (mean)", "sd", "vs eager"],
                  [[m["form"], m["batch"], m["mean"], m["sd"], m["ratio"]] for m in rows])
    return Result(header, require_rows([table], body), notes)


# -- bench_degradation --------------------------------------------------------------------------
DEGRADATION_HEAD = re.compile(r"epoch((?:\s+\S+ (?:loss|val))+)")
EPOCH_ROW = re.compile(rf"\s*(?P<epoch>\d+)(?P<values>(?:\s+{NUMBER})+)")
CPU_ROW = re.compile(r"CPU s(?P<values>(?:\s+\d+)+)")
EXERCISE_HEAD = re.compile(r"#\s*(?P<title>exercise .+)")
EXERCISE_ROW = re.compile(
    rf"(?P<net>\S+)\s+train loss per epoch:(?P<epochs>(?:\s+{NUMBER} \({NUMBER}\))+)"
    rf"\s+val (?P<val>{NUMBER})\s+CPU s (?P<cpu>\d+)"
)


def degradation_names(line: Line) -> list[str]:
    """Network names from the header 'epoch  <net> loss ...  <net> val ...' (same order twice)."""
    head = expect(DEGRADATION_HEAD, line, "the column header 'epoch  <net> loss ...'")
    columns = re.findall(r"(\S+) (loss|val)", head[1])
    losses = [net for net, kind in columns if kind == "loss"]
    if [net for net, kind in columns if kind == "val"] != losses:
        raise ResultFormatError(f"line {line[0]}: loss and val columns name different networks")
    return losses


def exercise_table(title: str, lines: list[Line]) -> Table:
    """The exercise's rows: per-epoch 'loss (train acc)', then validation accuracy and CPU s."""
    matches = [expect(EXERCISE_ROW, line, "'<net> train loss per epoch: <loss> (<acc>) ... "
                      "val <acc>  CPU s <s>'") for line in lines]
    epochs = [re.findall(rf"{NUMBER} \({NUMBER}\)", m["epochs"]) for m in matches]
    if len({len(e) for e in epochs}) > 1:
        raise ResultFormatError(f"line {lines[0][0]}: rows with different numbers of epochs")
    n_epochs = len(epochs[0]) if epochs else 0
    columns = ["network", *[f"epoch {e + 1} loss (acc)" for e in range(n_epochs)],
               "val acc", "CPU s"]
    return Table(title, columns,
                 [[m["net"], *e, m["val"], m["cpu"]] for m, e in zip(matches, epochs)])


def parse_degradation(text: str) -> Result:
    """Per-epoch loss and accuracy of every network, their CPU s, then the exercise's rows."""
    header, body = split_header(numbered_lines(text))
    lines = nonblank(body)
    if not lines:
        raise ResultFormatError("the file ends before its measurements")
    names = degradation_names(lines[0])
    loss = Table("Mean training loss per epoch", ["epoch", *names])
    val = Table("Validation accuracy after each epoch", ["epoch", *names])
    cpu = Table("CPU seconds for all the epochs", ["network", "CPU s"])
    tables = [loss, val, cpu]
    rest = lines[1:]
    while rest and (m := EPOCH_ROW.fullmatch(rest[0][1])):
        values = m["values"].split()
        if len(values) != 2 * len(names):
            raise ResultFormatError(f"line {rest[0][0]}: {len(values)} values for "
                                    f"{len(names)} networks (a loss and a val each)")
        loss.rows.append([m["epoch"], *values[: len(names)]])
        val.rows.append([m["epoch"], *values[len(names):]])
        rest = rest[1:]
    if rest:
        seconds = expect(CPU_ROW, rest[0], "the 'CPU s' row")["values"].split()
        if len(seconds) != len(names):
            raise ResultFormatError(f"line {rest[0][0]}: {len(seconds)} CPU times for "
                                    f"{len(names)} networks")
        cpu.rows = [[net, s] for net, s in zip(names, seconds)]
        rest = rest[1:]
    if rest:
        title = expect(EXERCISE_HEAD, rest[0], "'# exercise ...'")["title"]
        tables.append(exercise_table(title[0].upper() + title[1:], rest[1:]))
    return Result(header, require_rows(tables, body))


# -- bench_gan_budget, bench_gan_reference_width ------------------------------------------------
GAN_HEAD = re.compile(r"epochs\s+GAN CPU s\s+min class\s+confidence\s+cls score\s+Frechet")
GAN_ROW = re.compile(
    rf"\s*(?P<epochs>\d+|real)(?:\s+(?P<cpu>\d+))?\s+(?P<min>{NUMBER})\s+(?P<conf>{NUMBER})"
    rf"\s+(?P<cls>{NUMBER})\s+(?P<fid>{NUMBER})"
)
GAN_COLUMNS = ["epochs", "GAN CPU s", "min class", "confidence", "cls score", "Fréchet"]


def parse_gan_quality(text: str) -> Result:
    """A column header, the 'real' row, one row per measured epoch, then the targets."""
    header, body = split_header(numbered_lines(text))
    lines = nonblank(body)
    if not lines:
        raise ResultFormatError("the file ends before its measurements")
    expect(GAN_HEAD, lines[0], "the column header 'epochs  GAN CPU s  min class ...'")
    rows, notes = rows_then_notes(lines[1:], GAN_ROW,
                                  "'<epochs> <CPU s> <min> <conf> <cls> <Frechet>'")
    table = Table("Sample quality after each stretch of training (real digits first)",
                  GAN_COLUMNS,
                  [[m["epochs"], m["cpu"] or "", m["min"], m["conf"], m["cls"], m["fid"]]
                   for m in rows])
    return Result(header, require_rows([table], body), notes)


# ----------------------------------------------------------------------------------------------
# Charts (drawn from the parsed tables)
# ----------------------------------------------------------------------------------------------
@dataclass
class Chart:
    """A matplotlib figure with what a reader who cannot see it needs: alt text and a caption."""

    figure: object  # matplotlib.figure.Figure (imported lazily: parsing needs no matplotlib)
    alt: str
    caption: str


def number(cell: str) -> float:
    """The leading number of a cell ('11.994 ms' -> 11.994, '1.03x' -> 1.03)."""
    match = re.match(NUMBER, cell)
    if match is None:
        raise ValueError(f"no number in table cell {cell!r}")
    return float(match.group(0))


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, **kwargs):
    """A pyplot-free figure (no global state) and its ``rows`` x ``cols`` axes, as a flat list."""
    from matplotlib.figure import Figure

    from companion.plotting import MAX_WIDTH_IN

    fig = Figure(figsize=(min(width, MAX_WIDTH_IN), height), layout="constrained")
    return fig, list(fig.subplots(rows, cols, squeeze=False, **kwargs).flat)


def bars(ax, labels: list[str], values: list[float], texts: list[str]) -> None:
    """Horizontal bars, first label on top, each with its value as printed at its end."""
    ys = list(range(len(labels)))
    ax.barh(ys, values, color="C0", height=0.6)
    ax.set_yticks(ys, [textwrap.fill(label, 26) for label in labels])
    ax.invert_yaxis()
    for y, value, text in zip(ys, values, texts):
        ax.text(value, y, f" {text}", va="center", fontsize=9)
    ax.set_xlim(0, max(values) * 1.3)


def listing(labels: list[str], texts: list[str]) -> str:
    """'label value, label value' for alt text: the chart's numbers, as printed."""
    return ", ".join(f"{label} {text}" for label, text in zip(labels, texts))


def chart_ratios(result: Result, baseline: str, caption: str) -> Chart:
    """One panel per table (a layer, an input): each variant's time as a ratio to ``baseline``."""
    fig, axes = new_figure(6.0, 1.0 + 1.1 * len(result.tables), rows=len(result.tables),
                           sharex=True)
    for ax, table in zip(axes, result.tables):
        labels, ratios = [r[0] for r in table.rows], [r[2] for r in table.rows]
        bars(ax, labels, [number(r) for r in ratios], ratios)
        ax.axvline(1.0, color="0.5", linestyle="--", linewidth=1)
        ax.set_title(table.title, loc="left")
    # The panels share one x axis: make it hold the largest ratio of all of them.
    largest = max(number(r[2]) for t in result.tables for r in t.rows)
    axes[-1].set_xlim(0, largest * 1.3)
    axes[-1].set_xlabel(f"time relative to {baseline} (1.00x = as fast)")
    alt = f"Bar charts of forward plus backward time relative to {baseline}. " + " ".join(
        f"{t.title}: {listing([r[0] for r in t.rows], [r[2] for r in t.rows])}."
        for t in result.tables)
    return Chart(fig, alt, caption)


def chart_timed(result: Result) -> Chart:
    """The median time of each side, as bars."""
    table = result.tables[0]
    fig, (ax,) = new_figure(6.0, 0.8 + 0.55 * len(table.rows))
    labels, medians = [r[0] for r in table.rows], [r[1] for r in table.rows]
    bars(ax, labels, [number(m) for m in medians], medians)
    ax.set_xlabel("median time per run (s)")
    alt = f"Bar chart of median time per run: {listing(labels, medians)}."
    return Chart(fig, alt, "Median time per run of each side (the table above).")


def chart_inference(result: Result) -> Chart:
    """One panel per batch size: each form's throughput relative to eager PyTorch."""
    rows = result.tables[0].rows
    batches = list(dict.fromkeys(r[1] for r in rows))
    fig, axes = new_figure(6.5, 2.4, cols=len(batches))
    parts = []
    for ax, batch in zip(axes, batches):
        mine = [r for r in rows if r[1] == batch]
        labels, ratios = [r[0] for r in mine], [r[4] for r in mine]
        bars(ax, labels, [number(r) for r in ratios], ratios)
        ax.axvline(1.0, color="0.5", linestyle="--", linewidth=1)
        ax.set_title(f"batch {batch}", loc="left")
        ax.set_xlabel("images/s relative to eager")
        parts.append(f"batch {batch}: {listing(labels, ratios)}")
    alt = "Bar charts of throughput relative to eager PyTorch. " + "; ".join(parts) + "."
    return Chart(fig, alt, "Throughput of each form relative to eager PyTorch, per batch size.")


def chart_throughput(result: Result) -> Chart:
    """One bar per setting (form and batch): its throughput relative to the first row."""
    rows = result.tables[0].rows
    labels = [f"{r[0]}, batch {r[1]}" for r in rows]
    ratios = [r[4] for r in rows]
    fig, (ax,) = new_figure(6.5, 0.8 + 0.32 * len(rows))
    bars(ax, labels, [number(r) for r in ratios], ratios)
    ax.axvline(1.0, color="0.5", linestyle="--", linewidth=1)
    ax.set_xlabel(f"images/s relative to {labels[0]}")
    alt = (f"Bar chart of training throughput relative to {labels[0]}: "
           f"{listing(labels, ratios)}.")
    return Chart(fig, alt, "Training throughput of each setting relative to the first row "
                           "(the table above).")


def chart_degradation(result: Result) -> Chart:
    """Training loss (log scale) and validation accuracy of every network against epochs."""
    loss, val = result.tables[0], result.tables[1]
    fig, (ax_loss, ax_val) = new_figure(7.5, 3.0, cols=2)
    epochs = [int(r[0]) for r in loss.rows]
    for i, net in enumerate(loss.columns[1:], start=1):
        style = "--" if net.startswith("plain") else "-"
        ax_loss.plot(epochs, [number(r[i]) for r in loss.rows], style, label=net)
        ax_val.plot(epochs, [number(r[i]) for r in val.rows], style, label=net)
    ax_loss.set_yscale("log")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss (log scale)")
    ax_val.set(xlabel="epoch", ylabel="validation accuracy")
    ax_val.legend(loc="lower right")
    last = listing(loss.columns[1:], loss.rows[-1][1:])
    alt = (f"Line charts over {len(epochs)} epochs of the mean training loss (log scale) and the "
           f"validation accuracy of {', '.join(loss.columns[1:])}; plain networks dashed. "
           f"Training loss in the last epoch: {last}.")
    return Chart(fig, alt, "Training loss and validation accuracy per epoch (the tables above).")


def chart_gan_quality(result: Result) -> Chart:
    """Fréchet distance, confidence and rarest-digit share against epochs, real digits dashed."""
    table = result.tables[0]
    real = next((r for r in table.rows if r[0] == "real"), None)
    runs = [r for r in table.rows if r[0] != "real"]
    epochs = [int(r[0]) for r in runs]
    panels = [(5, "Fréchet distance (lower is better)", None),
              (3, "mean confidence", 0.9), (2, "rarest digit's share", 0.05)]
    fig, axes = new_figure(7.5, 2.6, cols=3)
    for ax, (col, label, target) in zip(axes, panels):
        ax.plot(epochs, [number(r[col]) for r in runs], "o-", markersize=3, label="generated")
        if real:
            ax.axhline(number(real[col]), color="C2", linestyle="--", linewidth=1, label="real")
        if target is not None:
            ax.axhline(target, color="C3", linestyle=":", linewidth=1.2, label="target")
        ax.set(xlabel="epochs", title=label)
        ax.set_ylim(bottom=0)
    axes[1].legend(loc="lower right")
    alt = (f"Line charts against training epochs ({epochs[0]} to {epochs[-1]}) of the Fréchet "
           f"distance, the mean confidence and the rarest digit's share of the samples. "
           f"Fréchet distance: {listing([str(e) for e in epochs], [r[5] for r in runs])}"
           + (f"; real digits {real[5]}." if real else "."))
    return Chart(fig, alt, "Sample quality against training epochs, real digits dashed.")


# ----------------------------------------------------------------------------------------------
# Which format each benchmark prints
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Format:
    """How to show one benchmark: its heading, the parser of its output and its chart."""

    heading: str
    parse: Callable[[str], Result]
    chart: Callable[[Result], Chart] | None = None


#: In the order of the chapters that use them; scripts not listed here come after, by name.
FORMATS: dict[str, Format] = {
    "bench_conv": Format("Convolution", parse_conv, partial(
        chart_ratios, baseline="F.conv2d",
        caption="Time of each convolution relative to F.conv2d (the tables above).")),
    "bench_trainer": Format(
        "Trainer overhead",
        partial(parse_median_mean, subject="loop", title="Time of one training run"),
        chart_timed),
    "bench_batch_norm": Format(
        "Batch normalization",
        partial(parse_median_ratios, baseline="F.batch_norm"),
        partial(chart_ratios, baseline="F.batch_norm",
                caption="Median time of each variant relative to F.batch_norm (the tables above).")),
    "bench_augment": Format(
        "Batched augmentation",
        partial(parse_median_mean, subject="what runs", title="CPU time of one epoch"),
        chart_timed),
    "bench_degradation": Format("Plain and residual networks, longer",
                                parse_degradation, chart_degradation),
    "bench_gan_budget": Format("DCGAN quality against training time",
                               parse_gan_quality, chart_gan_quality),
    "bench_gan_conditional": Format("Class-conditional DCGAN at the same budgets",
                                    parse_gan_quality, chart_gan_quality),
    "bench_gan_reference_width": Format("DCGAN at the reference width",
                                        parse_gan_quality, chart_gan_quality),
    "bench_inference": Format("Inference speed",
                              parse_inference, chart_inference),
    "bench_distributed": Format("Training throughput: one machine, and two ranks",
                                parse_inference, chart_throughput),
}


def parse_result(name: str, text: str) -> Result:
    """The parsed result of benchmark ``name``; ResultFormatError when it cannot be read."""
    if name not in FORMATS:
        raise ResultFormatError(f"no parser knows the output of {name}")
    return FORMATS[name].parse(text)


def ordered(names: set[str]) -> list[str]:
    """Known benchmarks in chapter order, then any others by name."""
    known = [n for n in FORMATS if n in names]
    return known + sorted(names - set(known))


# ----------------------------------------------------------------------------------------------
# docutils nodes
# ----------------------------------------------------------------------------------------------
def _summary(script: Path) -> str:
    """First line of the script's module docstring ('' when it has none or does not parse)."""
    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    except (SyntaxError, UnicodeDecodeError):
        return ""
    return (doc or "").strip().splitlines()[0] if doc else ""


# Text this page writes in prose (not the measured record) is a message of the page's
# translation catalogue: such a node carries its MyST source as rawsource and TRANSLATABLE,
# and the directive gives it a source location, which is what Sphinx's gettext extracts and
# its translation step replaces (the Chinese edition, scripts/i18n.py).
TRANSLATABLE = "book_translatable"


def _translatable(node: nodes.Element, source: str) -> nodes.Element:
    node.rawsource = source
    node[TRANSLATABLE] = True
    return node


def _para(*children: nodes.Node, classes: list[str] | None = None,
          source: str | None = None) -> nodes.paragraph:
    para = nodes.paragraph("", "", *children, classes=classes or [])
    return _translatable(para, source) if source else para


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


def _labelled(text: str) -> list[nodes.Node]:
    """'label: value' with the label in bold (when the label is short); other text as is."""
    label, sep, value = text.partition(": ")
    if sep and len(label) <= 60:
        return [nodes.strong(text=label + ":"), nodes.Text(" " + value)]
    return [nodes.Text(text)]


def header_node(header: list[str]) -> nodes.Node:
    """The run's header lines as a small bulleted note."""
    items = nodes.bullet_list(classes=["small", "benchmark-setup"])
    for line in header:
        items += nodes.list_item("", _para(*_labelled(line)))
    return nodes.container("", _para(nodes.emphasis(text="How it was measured:"),
                                     classes=["small"], source="*How it was measured:*"), items, classes=["benchmark-header"])


def _entry(text: str, numeric: bool, head: bool = False) -> nodes.entry:
    """A cell: numbers right-aligned; a number with its unit, or one word, kept on one line."""
    classes = ["text-end"] if numeric else []
    if not head and (numeric or " " not in text):
        classes.append("text-nowrap")
    para = _para(nodes.Text(text), source=text if head else None) if text else _para()
    return nodes.entry("", para, classes=classes)


def table_node(table: Table, ids: list[str]) -> nodes.table:
    """A docutils table (searchable, printable); columns of numbers right-aligned."""
    numeric = [all(re.match(NUMBER, r[i]) or not r[i] for r in table.rows)
               for i in range(len(table.columns))]
    node = nodes.table(ids=ids, classes=["benchmark-table"])
    node += _translatable(nodes.title(text=table.title), table.title)
    group = nodes.tgroup(cols=len(table.columns))
    node += group
    for _ in table.columns:
        group += nodes.colspec(colwidth=1)
    head_row = nodes.row("", *(_entry(c, n, head=True) for c, n in zip(table.columns, numeric)))
    group += nodes.thead("", head_row)
    body = nodes.tbody()
    for row in table.rows:
        body += nodes.row("", *(_entry(c, n) for c, n in zip(row, numeric)))
    group += body
    return node


def figure_node(uri: str, alt: str, caption: str, ids: list[str]) -> nodes.figure:
    figure = nodes.figure(ids=ids, classes=["benchmark-chart"])
    figure += nodes.image(uri=uri, alt=alt)
    figure += _translatable(nodes.caption(caption, caption), caption)
    return figure


def save_chart(chart: Chart, path: Path) -> None:
    """Write the chart as PNG at the book's resolution."""
    from companion.plotting import DPI

    path.parent.mkdir(parents=True, exist_ok=True)
    chart.figure.savefig(path, dpi=DPI, facecolor="white")


def draw_chart(fmt: Format, result: Result, path: Path) -> Chart | None:
    """Draw and save ``fmt``'s chart of ``result`` in the book's style; None without a chart."""
    import matplotlib

    from companion.plotting import BOOK_STYLE

    if fmt.chart is None:
        return None
    with matplotlib.rc_context(BOOK_STYLE):
        chart = fmt.chart(result)
        save_chart(chart, path)
    return chart


# ----------------------------------------------------------------------------------------------
# The directive
# ----------------------------------------------------------------------------------------------
logger = logging.getLogger(__name__)
HOW_TO_FIX = ("teach its format to book/appendix/_ext/benchmark_results.py (FORMATS), or re-run "
              "its script with `make benchmarks` if the file is damaged")


class BenchmarkResults(SphinxDirective):
    """Render one section per benchmark script (or stored result) found under ``benchmarks/``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        root = Path(self.env.srcdir)
        bench_dir = root / "benchmarks"
        results_dir = bench_dir / "results"
        scripts = {p.stem: p for p in bench_dir.glob("bench_*.py")}
        results = {p.stem: p for p in results_dir.glob("bench_*.txt")}
        # Rebuild this page whenever a script or a stored result changes.
        for path in sorted(scripts.values()) + sorted(results_dir.glob("*")):
            self.env.note_dependency(str(path))
        if not scripts and not results:
            return [_para(nodes.Text("No benchmark scripts exist yet (benchmarks/bench_*.py)."))]
        sections = [self.section(name, scripts.get(name), results.get(name), results_dir)
                    for name in ordered(set(scripts) | set(results))]
        for section in sections:
            for node in section.findall(nodes.Element):
                if node.get(TRANSLATABLE):
                    self.set_source_info(node)
        return sections

    def section(self, name: str, script: Path | None, result: Path | None,
                results_dir: Path) -> nodes.section:
        fmt = FORMATS.get(name)
        section = nodes.section(ids=[nodes.make_id(f"bench-{name}")])
        title = nodes.title()
        if fmt:
            title += nodes.Text(f"{fmt.heading} (")
        title += nodes.literal(text=name)
        if fmt:
            title += nodes.Text(")")
        section += title
        section += self.about(name, script)
        if result is None:
            section += _para(
                nodes.emphasis(text="Not measured yet: "),
                nodes.Text("no stored result in "),
                nodes.literal(text=f"benchmarks/results/{name}.txt"),
                nodes.Text("."),
                source=f"*Not measured yet:* no stored result in `benchmarks/results/{name}.txt`.",
            )
        else:
            section += self.measurements(name, result)
        root = Path(self.env.srcdir)
        for png in sorted(results_dir.glob(f"{name}*.png")):
            # A leading slash makes the path relative to the book's source folder.
            uri = "/" + png.relative_to(root).as_posix()
            section += nodes.image(uri=uri, alt=f"{name} result figure")
        return section

    def about(self, name: str, script: Path | None) -> list[nodes.Node]:
        if script is None:
            return [_para(nodes.Text("Its script, "), nodes.literal(text=f"benchmarks/{name}.py"),
                          nodes.Text(", no longer exists; this is its last stored output."),
                          source=f"Its script, `benchmarks/{name}.py`, no longer exists; this "
                                 "is its last stored output.")]
        summary = _summary(script)
        out = [_para(*_inline(summary), source=summary)] if summary else []
        out.append(_para(
            nodes.Text("Run it with "),
            nodes.literal(text=f"python benchmarks/{script.name}"),
            nodes.Text(" (or "),
            nodes.literal(text="make benchmarks"),
            nodes.Text(" for all of them)."),
            source=f"Run it with `python benchmarks/{script.name}` (or `make benchmarks` for "
                   "all of them).",
        ))
        return out

    def measurements(self, name: str, path: Path) -> list[nodes.Node]:
        """The stored result as header note, tables, notes and chart; as text if unreadable."""
        text = path.read_text(encoding="utf-8").rstrip()
        rel = f"benchmarks/results/{path.name}"
        try:
            result = parse_result(name, text)
        except ResultFormatError as err:
            logger.warning(f"{rel}: {err}; the page shows it as plain text. To show it as tables, "
                           f"{HOW_TO_FIX}.", location=self.get_location(),
                           type="benchmark", subtype="format")
            return [_para(nodes.Text("Last stored measurement (as printed):"),
                          source="Last stored measurement (as printed):"),
                    nodes.literal_block(text, text, language="text")]
        out: list[nodes.Node] = [header_node(result.header)] if result.header else []
        for i, table in enumerate(result.tables, start=1):
            out.append(table_node(table, ids=[nodes.make_id(f"bench-{name}-table-{i}")]))
        if result.notes:
            notes = nodes.bullet_list(classes=["benchmark-notes"])
            for note in result.notes:
                notes += nodes.list_item("", _para(*_labelled(note)))
            out.append(notes)
        out += self.chart(name, result)
        return out

    def chart(self, name: str, result: Result) -> list[nodes.Node]:
        """The benchmark's chart, drawn into the build folder next to the doctrees."""
        path = Path(self.env.app.doctreedir) / "benchmark_charts" / f"{name}.png"
        try:
            chart = draw_chart(FORMATS[name], result, path)
        except (ValueError, IndexError, KeyError) as err:
            logger.warning(f"benchmarks/results/{name}.txt: its chart failed ({err})",
                           location=self.get_location(), type="benchmark", subtype="chart")
            return []
        if chart is None:
            return []
        # Relative to this page's folder, as Sphinx resolves image paths (like matplotlib's
        # plot directive); Sphinx copies the file into the HTML build's _images/.
        page_dir = Path(self.env.doc2path(self.env.docname)).parent
        uri = Path(os.path.relpath(path, page_dir)).as_posix()
        return [figure_node(uri, chart.alt, chart.caption,
                            ids=[nodes.make_id(f"bench-{name}-chart")])]


def setup(app: Sphinx) -> dict:
    app.add_directive("benchmark-results", BenchmarkResults)
    return {"version": "0.2", "parallel_read_safe": True, "parallel_write_safe": True}
