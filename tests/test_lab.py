"""`make lab` works: JupyterLab answers on loopback and lists the book's kernel."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_jupyterlab_serves_lab_and_the_book_kernel(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--notebook-dir={ROOT / 'book'}",
         "--ServerApp.port_retries=0", *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "lab.log").open("w"), cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline:
            try:
                status, page = get(f"{base}/lab?token={token}")
                if status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            time.sleep(0.5)
        assert status == 200, f"/lab answered {status}"
        assert b"JupyterLab" in page or b"jupyter" in page.lower()
        assert get(f"{base}/api/kernelspecs")[0] in (401, 403), "the API must not answer without the token"
        status, body = get(f"{base}/api/kernelspecs?token={token}")
        assert status == 200
        specs = json.loads(body)["kernelspecs"]
        assert "dlbook" in specs, f"the book's kernel is not installed; kernels: {sorted(specs)}"
        argv = specs["dlbook"]["spec"]["argv"]
        assert Path(argv[0]).resolve() == Path(sys.executable).resolve(), argv
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
