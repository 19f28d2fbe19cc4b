"""What a reader meets in a stored notebook: short code lines, no machine paths, sharp and
legible figures, the book's kernel, and a setup cell that makes the chapter run on Colab."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from PIL import Image

from companion import plotting

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9]*.ipynb"))
MAX_COLUMNS = 88  # the book's code column: wider lines scroll sideways on every screen
MAX_PNG_KB = 300
#: Absolute paths that would show the author's machine (or a virtual environment) to readers.
MACHINE_PATH = re.compile(r"(/home/|/Users/|/root/|/work/|[A-Za-z]:\\Users\\|\.venv/|/usr/lib/python)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def long_lines(nb: nbformat.NotebookNode) -> list[str]:
    return [f"cell {i}: {len(line)} columns: {line[:60]}..."
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > MAX_COLUMNS]


def output_texts(nb: nbformat.NotebookNode) -> list[str]:
    texts = []
    for cell in code_cells(nb):
        for out in cell.outputs:
            texts.append(out.get("text", ""))
            texts += [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
            texts += [ANSI.sub("", line) for line in out.get("traceback", [])]
            texts.append(out.get("evalue", ""))
    return texts


def pngs(nb: nbformat.NotebookNode) -> list[bytes]:
    return [base64.b64decode(out["data"]["image/png"]) for cell in code_cells(nb)
            for out in cell.outputs if "image/png" in out.get("data", {})]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_code_fits_the_column(path):
    assert long_lines(read(path)) == []


def test_a_long_line_is_detected():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1\n" + "y = " + "1 + " * 25 + "1")]
    assert len(long_lines(nb)) == 1


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_machine_path_in_any_output(path):
    found = [m.group(0) + "..." for t in output_texts(read(path)) for m in [MACHINE_PATH.search(t)] if m]
    assert found == [], "stored outputs name the author's machine (make execute strips tracebacks)"


def test_a_machine_path_is_detected():
    line = "File \x1b[32m/home/ann/book/.venv/lib/python3.11/site-packages/torch/nn/modules/module.py:17"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("f()")
    cell.outputs = [nbformat.v4.new_output("error", ename="E", evalue="", traceback=[line])]
    nb.cells = [cell]
    assert any(MACHINE_PATH.search(t) for t in output_texts(nb))


def test_execute_strips_machine_paths_from_tracebacks():
    import importlib.util
    import sysconfig

    spec = importlib.util.spec_from_file_location("ex", ROOT / "scripts" / "execute_notebooks.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    purelib = sysconfig.get_paths()["purelib"]
    line = f"File \x1b[32m{purelib}/torch/nn/modules/module.py:1775\x1b[39m, in f\n{ROOT}/companion/ops.py:3"
    short = ex.relative_paths(line, ex.machine_prefixes())
    assert "site-packages/torch/nn/modules/module.py:1775" in short
    assert "companion/ops.py:3" in short and str(ROOT) not in short and purelib not in short


@pytest.mark.parametrize("path", [p for p in CHAPTERS if pngs(read(p))], ids=lambda p: p.name)
def test_figures_are_sharp_legible_and_small(path):
    nb = read(path)
    sources = "\n".join(c.source for c in code_cells(nb))
    assert "use_book_style()" in sources, "call companion.plotting.use_book_style() after importing pyplot"
    for k, data in enumerate(pngs(nb)):
        image = Image.open(io.BytesIO(data))
        dpi = image.info.get("dpi", (72, 72))[0]
        assert dpi >= plotting.DPI - 1, f"figure {k + 1}: {dpi:.0f} dpi, the book's style is {plotting.DPI}"
        width_in = image.width / dpi
        assert width_in <= plotting.MAX_WIDTH_IN + 0.3, (
            f"figure {k + 1} is {width_in:.1f} in wide: its labels shrink below the text's size")
        assert len(data) <= MAX_PNG_KB * 1024, f"figure {k + 1} is {len(data) // 1024} KB"


def test_book_style_is_sharp():
    import matplotlib

    with matplotlib.rc_context():
        plotting.use_book_style()
        assert matplotlib.rcParams["figure.dpi"] == plotting.DPI >= 150
        w, _ = matplotlib.rcParams["figure.figsize"]
        assert w <= plotting.MAX_WIDTH_IN and matplotlib.rcParams["font.size"] >= 9


# --------------------------------------------------------------------------------------------
# The setup cell: installs the companion package outside the repository, a no-op inside it.
# --------------------------------------------------------------------------------------------
def setup_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return code_cells(nb)[0]


def test_every_chapter_starts_with_the_same_setup_cell():
    first = {setup_cell(read(p)).source for p in CHAPTERS}
    assert len(first) == 1, "the chapters' first code cells differ"
    source = first.pop()
    assert 'find_spec("companion") is None' in source
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert f'"git+{url}"' in source, "the setup cell installs from the repository _config.yml names"


def run_setup(source: str, installed: bool) -> list[list[str]]:
    import importlib.util
    import subprocess

    calls: list[list[str]] = []
    real_find, real_run = importlib.util.find_spec, subprocess.run
    importlib.util.find_spec = lambda name, *a: object() if installed or name != "companion" else None
    subprocess.run = lambda cmd, **kw: calls.append(cmd)
    try:
        exec(compile(source, "setup", "exec"), {})
    finally:
        importlib.util.find_spec, subprocess.run = real_find, real_run
    return calls


def test_setup_cell_installs_only_outside_the_repository():
    source = setup_cell(read(CHAPTERS[0])).source
    assert run_setup(source, installed=True) == []
    (cmd,) = run_setup(source, installed=False)
    assert cmd[1:4] == ["-m", "pip", "install"] and cmd[-1].startswith("git+https://")
