"""Serving a built book on localhost and opening it in Debian's Chromium: shared by the PDF build
(scripts/build_pdf.py) and the browser tests (tests/browser/bookcheck.py)."""
from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 at a free port; yields the base URL (ending in '/')."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def chromium_missing() -> str | None:
    """Why Chromium cannot be launched (an instruction for the reader), or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found: install Debian's Chromium with `apt-get install -y chromium`"
    return None


def launch_browser(playwright):  # -> playwright Browser
    """Debian's Chromium, headless; a clear error when it is not installed."""
    problem = chromium_missing()
    if problem:
        raise FileNotFoundError(problem)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
