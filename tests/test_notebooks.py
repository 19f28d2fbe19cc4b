"""The notebooks are honest regression tests: stored executed, in the book, and checked by nbval."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9]*.ipynb"))
ALL_NOTEBOOKS = sorted(p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def execution_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Why nbval would check less than the whole notebook: unexecuted or out-of-order code cells."""
    problems = []
    expected = 1
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if cell.execution_count is None:
            problems.append(f"code cell {i} was never executed (nbval would skip it)")
        elif cell.execution_count != expected:
            problems.append(f"code cell {i} has execution count {cell.execution_count}, expected {expected}")
        expected += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and "raises-exception" not in cell.metadata.get("tags", []):
                problems.append(f"code cell {i} stored an error without the raises-exception tag")
    return problems


def test_there_are_chapters():
    assert CHAPTERS, "no chapter notebooks under book/"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_executed_in_order(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "dlbook", "select the book's kernel (make install)"
    assert execution_problems(nb) == []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert sum(bool(c.outputs) for c in code_cells) >= len(code_cells) // 2, "most code cells have no output"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_parameters_cell_and_a_check(path):
    nb = nbformat.read(path, as_version=4)
    tags = [t for c in nb.cells for t in c.metadata.get("tags", [])]
    assert "parameters" in tags, "a chapter starts with a cell tagged 'parameters'"
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "assert " in sources, "a chapter holds its key results as explicit checks"


def test_a_stripped_notebook_is_detected():
    nb = nbformat.read(CHAPTERS[0], as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.execution_count, cell.outputs = None, []
    assert execution_problems(nb) and "never executed" in execution_problems(nb)[0]


def test_every_chapter_is_in_the_table_of_contents():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [c for part in toc["parts"] for c in part["chapters"]]
    globs = [e["glob"] for e in entries if "glob" in e]
    files = {e["file"] for e in entries if "file" in e}
    for path in CHAPTERS:
        rel = path.relative_to(ROOT).with_suffix("").as_posix()
        assert rel in files or any(Path(rel).match(g) for g in globs), f"{rel} is not in _toc.yml"


# --------------------------------------------------------------------------------------------
# nbval really compares: an edited output fails, the untouched notebook passes.
# --------------------------------------------------------------------------------------------
def run_nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", str(ROOT / "nbval_sanitize.cfg"), str(path)],
        cwd=path.parent, capture_output=True, text=True, timeout=300,
    )


def tiny_notebook(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("import companion.data as d\nprint(len(d.mnist('test')), d.mnist('test').labels[:5].tolist())")]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, path)
    return path


def test_nbval_fails_on_a_hand_edited_output(tmp_path):
    path = tiny_notebook(tmp_path)
    ok = run_nbval(path)
    assert ok.returncode == 0, ok.stdout[-2000:]
    nb = json.loads(path.read_text())
    text = "".join(nb["cells"][0]["outputs"][0]["text"])
    assert text.startswith("1000 ")
    nb["cells"][0]["outputs"][0]["text"] = [text.replace("1000 ", "999 ")]
    path.write_text(json.dumps(nb))
    bad = run_nbval(path)
    assert bad.returncode != 0 and "999" in bad.stdout


def test_sanitize_file_is_small():
    # The sanitize file is for genuinely volatile text only; widening it would hide regressions.
    sections = [l for l in (ROOT / "nbval_sanitize.cfg").read_text().splitlines() if l.startswith("[")]
    assert len(sections) <= 4


def test_ignore_output_tags_are_used_sparingly():
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        ignored = [c for c in code if "nbval-ignore-output" in c.metadata.get("tags", [])]
        assert len(ignored) <= max(2, len(code) // 3), f"{path.name}: {len(ignored)} of {len(code)} cells ignore their output"


# --------------------------------------------------------------------------------------------
# Results of training are never compared as printed digits (they depend on the CPU).
# --------------------------------------------------------------------------------------------
#: A cell that trains: from here on, a printed number may come from a trained model.
TRAINS = re.compile(r"\.fit\(|\.backward\(|\.step\(|train_few\(|train_epoch")
#: A printed decimal with two or more places: the kind of number training moves.
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d{2,}")
#: Tag by which an author states that a compared cell after training prints only numbers that do
#: not come from a trained model (formulas, parameter counts, data statistics, exact arithmetic).
#: `make nbval-isa` then checks that claim on another instruction set.
EXACT = "exact-output"


def unchecked_lines(text: str) -> list[str]:
    """Printed lines that are not part of a check's message ("check passed: ..." and the
    indented lines that continue it)."""
    lines, in_check = [], False
    for line in text.splitlines():
        in_check = line.startswith("check passed") or (in_check and line[:1].isspace())
        if not in_check:
            lines.append(line)
    return lines


def unheld_training_numbers(nb: nbformat.NotebookNode) -> list[str]:
    """Compared cells after the first training cell that print decimals and are not checks.

    Such a cell is either a result of training (tag it ``nbval-ignore-output`` and hold the result
    with a check cell that prints "check passed: ...") or a number that training cannot move
    (tag it ``exact-output``). Check cells are exempt: their printed line is what is compared.
    """
    problems, trained = [], False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        if trained and not tags & {"nbval-ignore-output", "raises-exception", EXACT}:
            text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                           for o in cell.outputs if o.get("output_type") != "error")
            lines = [l for l in unchecked_lines(text) if DECIMAL.search(l)]
            if lines:
                problems.append(f"cell {i} prints {lines[0].strip()[:70]!r} after training")
        trained = trained or bool(TRAINS.search(cell.source))
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_compared_output_prints_an_unheld_training_result(path):
    assert unheld_training_numbers(nbformat.read(path, as_version=4)) == []


def test_an_unheld_training_result_is_detected():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("history = trainer.fit(train_loader, val_loader)"),
                nbformat.v4.new_code_cell('print(f"accuracy {acc:.3f}")'),
                nbformat.v4.new_code_cell('assert acc > 0.9\nprint("check passed: accuracy > 0.90")')]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="accuracy 0.946\n")]
    nb.cells[2].outputs = [nbformat.v4.new_output(
        "stream", text="check passed: accuracy > 0.90\n              and loss < 0.25\n")]
    assert len(unheld_training_numbers(nb)) == 1
    nb.cells[1].metadata["tags"] = ["nbval-ignore-output"]
    assert unheld_training_numbers(nb) == []
    nb.cells[0].source = "x = 1"  # nothing trains: the number cannot come from training
    nb.cells[1].metadata["tags"] = []
    assert unheld_training_numbers(nb) == []
