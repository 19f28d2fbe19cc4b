"""Drive JupyterLab the way a reader does: `make lab`, a chapter, "Run All Cells", read the page.

The functions here know nothing about pytest; ``test_lab.py`` strings them together, and a
one-off script can reuse them against a deliberately broken setup (a ``python3`` kernelspec, a
kernel without its ``env``, jupyterlab-myst disabled) to watch the checks fail.

- :func:`lab_command` is the command line of the Makefile's ``lab`` target, read with ``make -n``
  so the test starts exactly what the README tells readers to run.
- :func:`running_lab` starts it with a plain shell's environment: without the variables the
  Makefile exports, so the kernel must carry them itself (its ``kernel.json``), as in a plain
  ``jupyter lab``. JupyterLab's user state (settings, workspaces, runtime files) lives in a
  temporary folder.
- :func:`notebook_copy` copies a chapter without its outputs and execution counts, so every
  output the checks see was produced by this run.
- The page functions (:func:`open_notebook`, :func:`run_all_cells`, :func:`code_cell_states`,
  :func:`markdown_problems`, ...) work on a Playwright page showing that notebook.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from localsite import CHROMIUM, launch_browser  # noqa: E402,F401 - Debian's Chromium, shared
# What the Makefile exports to everything it runs. A reader's plain `jupyter lab` has none of
# them, so the lab is started without them and the kernel has to bring its own.
MAKE_EXPORTS = ("OMP_WAIT_POLICY", "COMPANION_PROGRESS", "PYTHONHASHSEED")
# JupyterLab user settings for the test's private settings folder: attach every cell to the page
# (the default windowing leaves off-screen cells out of the DOM) and never fetch news.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}
# MyST markup that must never reach the reader as text once jupyterlab-myst has rendered a cell.
RAW_MYST = re.compile(
    r"\{(?:cite(?::[pt])?|numref|eq|ref|doc|admonition)\}|^:::|:class:|\$\$|\\\(|\\\[", re.M
)
# Any URL but this machine's (and the page's own data: and blob: URLs).
REMOTE_URL = re.compile(r"^(?!(?:https?|wss?)://(?:127\.0\.0\.1|localhost)(?:[:/]|$)|data:|blob:)")
# Inline TeX that KaTeX left alone: $x$ with no space inside the dollars.
RAW_INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)[^$\n]{1,200}?(?<=\S)\$(?![\w$])")


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------
@dataclass
class Lab:
    base_url: str
    token: str
    notebook_dir: Path
    log: Path
    process: subprocess.Popen

    def api(self, path: str, method: str = "GET") -> tuple[int, object]:
        """Call the server's REST API with the token; returns (status, decoded JSON or None)."""
        req = urllib.request.Request(f"{self.base_url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body = r.read()
                return r.status, (json.loads(body) if body else None)
        except urllib.error.HTTPError as e:
            return e.code, None

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(notebook_dir: Path, port: int, token: str) -> list[str]:
    """The recipe of `make lab` (as `make -n` prints it), aimed at notebook_dir on a fixed port.

    ``-o`` keeps make from rebuilding the virtual environment just to print the command.
    """
    extra = (f"--no-browser --port={port} --ServerApp.port_retries=0 "
             f"--IdentityProvider.token={token}")
    out = subprocess.run(
        ["make", "-s", "-n", "-o", ".venv/.installed", "lab", f"LAB_DIR={notebook_dir}",
         f"LAB_ARGS={extra}"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()
    if len(out) != 1 or " lab " not in f"{out[0]} ":
        raise RuntimeError(f"`make -n lab` should print one `jupyter lab` command, got: {out}")
    return shlex.split(out[0])


def lab_environment(home: Path) -> dict[str, str]:
    """A plain shell's environment (no make exports) with JupyterLab's user state under home."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_EXPORTS}
    dirs = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_RUNTIME_DIR": "runtime",
            "JUPYTERLAB_SETTINGS_DIR": "settings", "JUPYTERLAB_WORKSPACES_DIR": "workspaces"}
    for var, sub in dirs.items():
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    for rel, values in LAB_SETTINGS.items():
        path = home / "settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return env


@contextmanager
def running_lab(notebook_dir: Path, home: Path, timeout: float = 60) -> Iterator[Lab]:
    """`make lab`'s JupyterLab on a free loopback port with a random token; stopped afterwards."""
    port, token = free_port(), secrets.token_hex(16)
    log = home / "lab.log"
    process = subprocess.Popen(
        lab_command(notebook_dir, port, token), cwd=ROOT, env=lab_environment(home),
        stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True,
    )
    lab = Lab(f"http://127.0.0.1:{port}", token, notebook_dir, log, process)
    try:
        deadline = time.monotonic() + timeout
        while not (_listening(port) and lab.api("/api/status")[0] == 200):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start:\n{lab.log_tail()}")
            time.sleep(0.3)
        yield lab
    finally:
        _stop(lab)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(lab: Lab) -> None:
    """Shut the kernels down through the API (they run in their own sessions), then the server."""
    if lab.process.poll() is None:
        status, sessions = lab.api("/api/sessions")
        for session in sessions if status == 200 else []:
            lab.api(f"/api/sessions/{session['id']}", method="DELETE")
        os.killpg(lab.process.pid, signal.SIGTERM)
    try:
        lab.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(lab.process.pid, signal.SIGKILL)
        lab.process.wait()


# --------------------------------------------------------------------------------------------------
# The notebook on disk
# --------------------------------------------------------------------------------------------------
def notebook_copy(source: Path, folder: Path) -> Path:
    """Copy a chapter into folder without outputs or execution counts (metadata kept as is)."""
    nb = json.loads(source.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    target = folder / source.name
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")
    return target


def code_cells(nb_path: Path) -> list[dict]:
    return [c for c in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "code"]


def markdown_sources(nb_path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "markdown"]


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


# --------------------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------------------
def block_remote_requests(page) -> list[str]:
    """Abort every request that leaves the machine; returns the (growing) list of blocked URLs.

    The pattern is matched inside the browser driver, so local requests never wait for Python
    (with the sync API a Python route handler runs only while Python calls into Playwright).
    """
    blocked: list[str] = []

    def handle(route) -> None:
        blocked.append(route.request.url)
        route.abort()

    page.route(REMOTE_URL, handle)
    return blocked


def open_notebook(page, lab: Lab, name: str, timeout_ms: int = 60_000) -> None:
    """Open a notebook as a reader following the server's URL would, then wait for its kernel."""
    page.goto(f"{lab.base_url}/lab/tree/{name}?reset&token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-MarkdownCell", timeout=timeout_ms)
    wait_for_kernel_connected(page, lab, name, timeout_ms)


def wait_for_kernel_connected(page, lab: Lab, name: str, timeout_ms: float) -> None:
    """The notebook's kernel has started, this page is connected to it, and it is idle.

    The toolbar's indicator reads "idle" before the kernel exists, so the server is asked
    (its sessions list the kernel's state and connections) and the status bar must agree.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        status, sessions = lab.api("/api/sessions")
        kernels = [s["kernel"] for s in sessions or [] if s["path"] == name and s.get("kernel")]
        if any(k["execution_state"] == "idle" and k["connections"] > 0 for k in kernels):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"no connected idle kernel for {name}: {sessions}")
        page.wait_for_timeout(300)
    page.wait_for_function(
        """() => [...document.querySelectorAll('#jp-main-statusbar .jp-StatusBar-TextItem')]
                 .some(e => /\\| Idle$/.test(e.innerText.trim()))""",
        timeout=max(1, deadline - time.monotonic()) * 1000,
    )


def wait_for_kernel_idle(page, timeout_ms: float) -> None:
    """The toolbar's execution indicator reads idle (not busy, starting or disconnected)."""
    page.wait_for_selector(
        ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout_ms
    )


def kernel_display_name(page) -> str:
    return page.locator(".jp-NotebookPanel .jp-Toolbar-kernelName").first.inner_text().strip()


def visible_dialogs(page) -> list[str]:
    return [d.inner_text()[:200] for d in page.locator(".jp-Dialog").all() if d.is_visible()]


def run_all_cells(page) -> None:
    """Run > Run All Cells, from the menu bar."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def wait_until_all_executed(page, n_cells: int, timeout_ms: float) -> None:
    """Every code cell shows an execution count ([n]:, not [*]: or blank) and the kernel is idle."""
    page.wait_for_function(
        """(n) => {
            const prompts = [...document.querySelectorAll(
                '.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')];
            return prompts.length === n
                && prompts.every(p => /^\\[\\d+\\]:$/.test(p.innerText.trim()));
        }""",
        arg=n_cells, timeout=timeout_ms,
    )
    wait_for_kernel_idle(page, timeout_ms)


@dataclass
class CodeCellState:
    prompt: str
    n_outputs: int
    n_images: int
    text: str


def code_cell_states(page) -> list[CodeCellState]:
    """What each code cell shows: its prompt, how many outputs and images, the outputs' text."""
    rows = page.evaluate(
        """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')].map(c => {
            const outs = [...c.querySelectorAll('.jp-OutputArea-output')];
            return [c.querySelector('.jp-InputArea-prompt').innerText.trim(), outs.length,
                    c.querySelectorAll('.jp-OutputArea-output img').length,
                    outs.map(o => o.innerText).join('\\n')];
        })"""
    )
    return [CodeCellState(*row) for row in rows]


def run_in_new_cell(page, code: str, timeout_ms: float = 30_000) -> str:
    """Add a cell below the last one, type code into it and run it (Shift+Enter); its output text.

    The code is inserted as one paste, so the editor's auto-closing brackets do not double them.
    """
    cells = page.locator(".jp-NotebookPanel .jp-Cell")
    before = page.locator(".jp-NotebookPanel .jp-CodeCell").count()
    cells.last.locator(".jp-InputPrompt").click()  # select the cell (command mode)
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # new code cell below, in edit mode
    page.wait_for_function(
        "(n) => document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell').length === n + 1",
        arg=before, timeout=timeout_ms,
    )
    # by position: Shift+Enter on the last cell adds yet another (empty) cell below it
    new = page.locator(".jp-NotebookPanel .jp-CodeCell").nth(before)
    new.locator(".cm-content").click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    new.locator(".jp-OutputArea-output").first.wait_for(timeout=timeout_ms)
    return new.locator(".jp-OutputArea-output").first.inner_text()


def save_notebook(page, nb_path: Path, timeout: float = 30) -> None:
    """The toolbar's Save button; then wait until the file on disk has every execution count."""
    page.locator(".jp-NotebookPanel-toolbar [data-jp-item-name='save'] jp-button").click()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if all(c["execution_count"] for c in code_cells(nb_path)):
                return
        except (json.JSONDecodeError, OSError):
            pass  # caught mid-write
        page.wait_for_timeout(300)
    raise TimeoutError(f"{nb_path.name} was not saved with execution counts within {timeout} s")


# --------------------------------------------------------------------------------------------------
# The markdown, as rendered by jupyterlab-myst
# --------------------------------------------------------------------------------------------------
def rendered_markdown(page) -> list[dict]:
    """Per markdown cell: the jupyterlab-myst rendering's prose text (code and math left out),
    its KaTeX and KaTeX-error counts, admonitions and resolved links to equations."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-MarkdownCell')].map(c => {
            const myst = c.querySelector('.jp-Cell-inputWrapper .myst');
            if (!myst) return {myst: false, text: c.innerText};
            const copy = myst.cloneNode(true);
            copy.querySelectorAll('pre, code, .katex, .katex-display').forEach(e => e.remove());
            return {
                myst: true,
                text: copy.textContent,
                katex: myst.querySelectorAll('.katex').length,
                katex_errors: myst.querySelectorAll('.katex-error').length,
                admonitions: myst.querySelectorAll('.myst-admonition').length,
                dropdowns: [...myst.querySelectorAll('details.myst-admonition')].map(d => ({
                    open: d.open, title: d.querySelector('summary').innerText.trim()})),
                eq_links: [...myst.querySelectorAll('a[href^="#eq-"]')].map(
                    a => [a.getAttribute('href').slice(1), a.textContent.trim()]),
            };
        })"""
    )


def markdown_problems(page, sources: list[str]) -> list[str]:
    """What a reader of the notebook would see wrongly rendered, one line per problem.

    sources are the notebook's markdown cells in order: they say what each cell should show
    (math, admonitions, dropdown solutions, equation references).
    """
    cells = rendered_markdown(page)
    if len(cells) != len(sources):
        return [f"{len(cells)} markdown cells on the page, {len(sources)} in the notebook"]
    problems: list[str] = []
    for i, (cell, src) in enumerate(zip(cells, sources)):
        where = f"markdown cell {i} ({src.strip().splitlines()[0][:40]!r})"
        if not cell["myst"]:
            problems.append(f"{where}: not rendered by jupyterlab-myst")
            continue
        raw = RAW_MYST.findall(cell["text"]) + RAW_INLINE_MATH.findall(cell["text"])
        if raw:
            problems.append(f"{where}: raw markup in the rendered text: {sorted(set(raw))}")
        if "$" in src and not cell["katex"]:
            problems.append(f"{where}: has math but nothing typeset")
        if cell["katex_errors"]:
            problems.append(f"{where}: {cell['katex_errors']} KaTeX errors")
        n_adm = src.count(":::{admonition}")
        if cell["admonitions"] != n_adm:
            problems.append(f"{where}: {cell['admonitions']} admonition boxes, {n_adm} in source")
        n_drop = len(re.findall(r"^:class: dropdown", src, re.M))
        closed = [d for d in cell["dropdowns"] if not d["open"]]
        if len(closed) != n_drop:
            problems.append(f"{where}: {len(closed)} closed dropdowns, {n_drop} in source")
        for label in re.findall(r"\{eq\}`([^`]+)`", src):
            texts = [t for href, t in cell["eq_links"] if href == label]
            if not texts or not all(re.fullmatch(r"\(\d+\)", t) for t in texts):
                problems.append(f"{where}: {{eq}}`{label}` is not a numbered link: {texts}")
    return problems


def open_first_dropdown(page) -> tuple[bool, bool, str] | None:
    """Click the first exercise solution: (body visible before, visible after, its text);
    None when the page shows no dropdown at all."""
    found = page.locator(".jp-NotebookPanel .jp-MarkdownCell details.myst-admonition")
    if not found.count():
        return None
    details = found.first
    details.scroll_into_view_if_needed()
    body = details.locator(".myst-admonition-body")
    before = body.is_visible()
    details.locator("summary").click()
    body.wait_for(state="visible", timeout=5_000)
    return before, body.is_visible(), body.inner_text()
