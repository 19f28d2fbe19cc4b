"""`make lab` as a reader uses it, in headless Chromium; and Binder's postBuild.

One JupyterLab is started with the Makefile's own `lab` command line (loopback, a random token, a
free port) on copies of two chapters, in a plain shell's environment: none of the variables the
Makefile exports, so the `dlbook` kernel must carry them itself. Chapter 01 (the shortest with
citations, equations, admonitions and dropdown solutions) is opened and run with Run > Run All
Cells in the kernel the notebook asks for; chapter 02 (figure references, nine equation references,
a cell that raises on purpose) is opened for its markdown. The copies have no stored outputs, so
every output checked was produced by this run; the repository's notebooks are never touched.

The tests skip only when Debian's Chromium (/usr/bin/chromium) is missing; everything else that
goes wrong fails them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lab_driver as lab

ROOT = lab.ROOT
RUN_CHAPTER = ROOT / os.environ.get("LAB_TEST_NOTEBOOK", "book/01_images_as_tensors.ipynb")
READ_CHAPTER = ROOT / "book/02_convolution.ipynb"
RUN_TIMEOUT_MS = 400_000  # generous: a shared CI machine may be loaded
OPEN_TIMEOUT_MS = 300_000
ENV_PROBE = ("import json, os, sys; print(json.dumps({'executable': sys.executable, "
             "**{k: os.environ.get(k) for k in %r}}))" % (lab.MAKE_EXPORTS,))

needs_chromium = pytest.mark.skipif(
    not Path(lab.CHROMIUM).exists(),
    reason=f"{lab.CHROMIUM} not found: install Debian's Chromium (`apt-get install -y chromium`)",
)


def makefile_kernel_env() -> dict[str, str]:
    """The Makefile's KERNEL_ENV (`--env NAME VALUE ...`) as a dict, read through make itself."""
    out = subprocess.run(
        ["make", "-s", "--eval", "__kernel_env: ; @echo $(KERNEL_ENV)", "__kernel_env"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out and len(out) % 3 == 0 and set(out[::3]) == {"--env"}, out
    return dict(zip(out[1::3], out[2::3]))


# --------------------------------------------------------------------------------------------------
# One lab session, shared by the browser tests below
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Run chapter 01 and open chapter 02 in `make lab`'s JupyterLab; return what was seen."""
    from playwright.sync_api import sync_playwright

    notebooks = tmp_path_factory.mktemp("notebooks")
    home = tmp_path_factory.mktemp("lab-home")
    stored = {p.name: lab.code_cells(p) for p in (RUN_CHAPTER, READ_CHAPTER)}
    run_copy = lab.notebook_copy(RUN_CHAPTER, notebooks)
    read_copy = lab.notebook_copy(READ_CHAPTER, notebooks)
    seen: dict = {"stored": stored[RUN_CHAPTER.name], "read_stored": stored[READ_CHAPTER.name]}
    t0 = time.monotonic()
    steps: list[str] = []

    def mark(step: str) -> None:
        steps.append(f"{step} {time.monotonic() - t0:.0f} s")

    with lab.running_lab(notebooks, home) as server, sync_playwright() as pw:
        seen["command"] = server.process.args
        seen["api_without_token"] = lab.Lab(server.base_url, "", notebooks, server.log,
                                            server.process).api("/api/sessions")[0]
        mark("server up")
        browser = lab.launch_browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            seen["blocked"] = lab.block_remote_requests(page)
            lab.open_notebook(page, server, run_copy.name, OPEN_TIMEOUT_MS)
            mark("chapter open, kernel idle")
            seen["kernel_name"] = lab.kernel_display_name(page)
            seen["dialogs"] = lab.visible_dialogs(page)
            seen["sessions"] = server.api("/api/sessions")[1]
            markdown = lab.markdown_sources(run_copy)
            seen["markdown_before_run"] = lab.markdown_problems(page, markdown)
            t_run = time.monotonic()
            lab.run_all_cells(page)
            lab.wait_until_all_executed(page, len(stored[RUN_CHAPTER.name]), RUN_TIMEOUT_MS)
            seen["run_seconds"] = time.monotonic() - t_run
            mark("run all done")
            seen["cells"] = lab.code_cell_states(page)
            seen["markdown"] = lab.markdown_problems(page, markdown)
            seen["dropdown"] = lab.open_first_dropdown(page)
            lab.save_notebook(page, run_copy)
            seen["saved"] = lab.code_cells(run_copy)
            seen["kernel_env"] = json.loads(lab.run_in_new_cell(page, ENV_PROBE))
            page.screenshot(path=str(home / "run_chapter.png"))
            mark("saved, kernel env read")

            lab.open_notebook(page, server, read_copy.name, OPEN_TIMEOUT_MS)
            seen["read_kernel_name"] = lab.kernel_display_name(page)
            seen["read_markdown"] = lab.markdown_problems(page, lab.markdown_sources(read_copy))
            seen["read_text"] = page.locator(".jp-NotebookPanel .jp-MarkdownCell").all_inner_texts()
            mark("second chapter read")
        except Exception:
            print("\nsteps: " + ", ".join(steps))
            page.screenshot(path=str(home / "failure.png"))
            print(f"\nJupyterLab's log:\n{server.log_tail()}\nscreenshot: {home / 'failure.png'}")
            raise
        finally:
            browser.close()
    seen["seconds"] = time.monotonic() - t0
    print(f"\nlab session: {seen['seconds']:.0f} s (run all: {seen['run_seconds']:.0f} s; "
          f"{', '.join(steps)}); screenshot and log in {home}")
    return seen


@needs_chromium
def test_lab_is_started_by_the_makefile_command_on_loopback_with_a_token(session):
    cmd = session["command"]
    assert Path(cmd[0]).resolve() == (ROOT / ".venv/bin/jupyter").resolve() and cmd[1] == "lab", cmd
    assert "--ServerApp.ip=127.0.0.1" in cmd, f"`make lab` must listen on loopback only: {cmd}"
    assert session["api_without_token"] in (401, 403), "the API answered without the token"


@needs_chromium
def test_the_chapter_opens_in_the_book_kernel_without_asking(session):
    assert session["dialogs"] == [], f"a dialog opened with the notebook: {session['dialogs']}"
    assert session["kernel_name"] == "Python (dlbook)", session["kernel_name"]
    kernels = {s["path"]: s["kernel"]["name"] for s in session["sessions"]}
    assert kernels == {RUN_CHAPTER.name: "dlbook"}, kernels
    assert session["read_kernel_name"] == "Python (dlbook)", session["read_kernel_name"]


@needs_chromium
def test_the_kernel_carries_the_makefile_settings(session):
    env = session["kernel_env"]
    assert Path(env.pop("executable")).resolve() == (ROOT / ".venv/bin/python").resolve()
    assert env == makefile_kernel_env(), (
        "the kernel does not set what `make` exports; a plain `jupyter lab` loses it: "
        f"{env} != {makefile_kernel_env()}"
    )


@needs_chromium
def test_run_all_cells_gives_every_cell_its_count_and_its_outputs(session):
    cells, stored = session["cells"], session["stored"]
    assert len(cells) == len(stored), (len(cells), len(stored))
    prompts = [c.prompt for c in cells]
    assert prompts == [f"[{i}]:" for i in range(1, len(stored) + 1)], prompts
    for i, (cell, old) in enumerate(zip(cells, stored)):
        where = f"code cell {i}: {''.join(old['source'])[:60]!r}"
        if old["outputs"]:
            assert cell.n_outputs, f"{where}: the stored notebook shows output, the lab none"
        if any("image/png" in o.get("data", {}) for o in old["outputs"]):
            assert cell.n_images, f"{where}: the stored notebook shows a figure, the lab none"
        for line in stored_text(old).splitlines():
            if line.startswith("check passed"):
                assert line in cell.text, f"{where}: {line!r} missing from the lab's output"


@needs_chromium
def test_no_error_output_except_where_the_chapter_raises_on_purpose(session):
    saved = session["saved"]
    assert [c["execution_count"] for c in saved] == list(range(1, len(saved) + 1))
    for i, cell in enumerate(saved):
        errors = [f"{o['ename']}: {o['evalue']}" for o in cell["outputs"]
                  if o["output_type"] == "error"]
        expected = "raises-exception" in lab.tags(cell)
        assert bool(errors) == expected, (
            f"code cell {i} ({''.join(cell['source'])[:60]!r}): errors {errors}, "
            f"tagged raises-exception: {expected}"
        )


@needs_chromium
def test_markdown_is_rendered_by_jupyterlab_myst(session):
    assert session["markdown_before_run"] == [], "\n".join(session["markdown_before_run"])
    assert session["markdown"] == [], "\n".join(session["markdown"])
    assert session["read_markdown"] == [], "\n".join(session["read_markdown"])
    text = "\n".join(session["read_text"])
    for raw in ("{numref}", "{cite", "{eq}", ":::", "$$"):
        assert raw not in text, f"{READ_CHAPTER.name} shows {raw!r} as text"


@needs_chromium
def test_solutions_stay_hidden_until_clicked(session):
    assert session["dropdown"], "no solution dropdown on the page"
    hidden_before, shown_after, text = session["dropdown"]
    assert not hidden_before, "the first solution is visible before it is asked for"
    assert shown_after and text.strip(), "clicking 'Solution' did not show it"


@needs_chromium
def test_the_lab_asks_nothing_of_the_internet(session):
    # JupyterLab itself asks nothing of the internet with news and update checks off; a chapter
    # that loads a remote script or image would show up here
    assert session["blocked"] == [], session["blocked"]


def stored_text(cell: dict) -> str:
    streams = [o for o in cell["outputs"] if o["output_type"] == "stream"]
    return "".join("".join(o["text"]) for o in streams)


# --------------------------------------------------------------------------------------------------
# Binder
# --------------------------------------------------------------------------------------------------
def test_binder_postbuild_installs_the_kernel_make_installs(tmp_path):
    """postBuild, run with `python` shimmed to install into a temporary prefix, gives the same
    kernel (name, display name, env) as `make install`'s; the .venv's kernel.json has that env."""
    prefix, shims = tmp_path / "prefix", tmp_path / "bin"
    shims.mkdir()
    shim = shims / "python"
    shim.write_text(
        "#!/usr/bin/env bash\n"
        'args=(); for a in "$@"; do\n'
        f'  if [ "$a" = --sys-prefix ]; then args+=(--prefix {shlex.quote(str(prefix))});\n'
        '  else args+=("$a"); fi; done\n'
        f'exec {shlex.quote(sys.executable)} "${{args[@]}}"\n'
    )
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(ROOT / "postBuild")], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    spec = json.loads((prefix / "share/jupyter/kernels/dlbook/kernel.json").read_text())
    assert spec["display_name"] == "Python (dlbook)", spec
    assert spec.get("env") == makefile_kernel_env(), (spec.get("env"), makefile_kernel_env())
    installed = json.loads((ROOT / ".venv/share/jupyter/kernels/dlbook/kernel.json").read_text())
    assert installed.get("env") == makefile_kernel_env(), "make install's kernel lacks KERNEL_ENV"
    assert re.search(r"^#!/usr/bin/env bash", (ROOT / "postBuild").read_text()), "no shebang"
    assert os.access(ROOT / "postBuild", os.X_OK), "repo2docker runs postBuild only if executable"
