"""Re-execute notebooks in place so their stored outputs are what the current code prints.

    python scripts/execute_notebooks.py                 # every notebook under book/
    python scripts/execute_notebooks.py book/01_*.ipynb # some of them

Each notebook runs top to bottom in a fresh kernel from its own folder, in the kernel it asks for
(``dlbook``, whose kernel.json sets ``COMPANION_PROGRESS=line`` and the other settings ``make``
exports), exactly as ``make test`` runs it. Stored tracebacks name files relative to the repository
or to ``site-packages``: no reader's page shows the author's machine paths.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def notebooks(args: list[str]) -> list[Path]:
    paths = [Path(a) for a in args] or [ROOT / "book"]
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        elif p.suffix == ".ipynb" and p.is_file():
            found.append(p)
        else:
            raise SystemExit(f"not a notebook or folder: {p}")
    return found


def clean(nb: nbformat.NotebookNode) -> None:
    """Drop per-run metadata (timings, widget state) so re-executing leaves no noise in git."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "display_data"
                            or "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]


def machine_prefixes() -> list[str]:
    """Absolute folders that would leak the author's machine into a stored traceback, longest first."""
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
            *site.getsitepackages(), sysconfig.get_paths()["stdlib"]}
    return sorted({str(Path(d)) + "/" for d in dirs}, key=len, reverse=True)


def relative_paths(text: str, prefixes: list[str]) -> str:
    """``/home/me/repo/.venv/lib/python3.11/site-packages/torch/x.py`` -> ``site-packages/torch/x.py``."""
    for prefix in prefixes:
        short = "site-packages/" if prefix.rstrip("/").endswith("-packages") else "python/"
        text = text.replace(prefix, short)
    return text.replace(f"{ROOT}/", "")


def strip_machine_paths(nb: nbformat.NotebookNode) -> None:
    prefixes = machine_prefixes()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["traceback"] = [relative_paths(line, prefixes) for line in out["traceback"]]


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, resources={"metadata": {"path": str(path.parent)}}).execute()
    clean(nb)
    strip_machine_paths(nb)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    os.environ.setdefault("COMPANION_PROGRESS", "line")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the kernels inherit it, as under make
    for path in notebooks(argv):
        print(f"executing {path} ...", flush=True)
        print(f"  done in {execute(path):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
