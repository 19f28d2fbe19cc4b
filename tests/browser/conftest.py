"""Fixtures for the browser checks of the rendered book (run by ``make browser-check``).

These tests need the built book (``_build/html``, made by ``make book-check``) and Debian's
Chromium, so ``make unit`` (``pytest tests``) does not collect them: they run only when
``BOOK_BROWSER_CHECK=1``, which the ``browser-check`` target sets after building the book.

Environment:
  BOOK_ROOT   the book's source root (default: this repository)
  BOOK_HTML   the built HTML to check (default: BOOK_ROOT/_build/html)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("BOOK_BROWSER_CHECK") != "1":
    # Collected only on purpose: `make browser-check` (or BOOK_BROWSER_CHECK=1 pytest tests/browser).
    collect_ignore_glob = ["test_*.py"]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def book_root() -> Path:
    return Path(os.environ.get("BOOK_ROOT", REPO)).resolve()


@pytest.fixture(scope="session")
def html_dir(book_root: Path) -> Path:
    path = Path(os.environ.get("BOOK_HTML", book_root / "_build" / "html")).resolve()
    if not (path / "index.html").is_file():
        pytest.fail(f"{path}/index.html not found: build the book first (make book-check)")
    return path


@pytest.fixture(scope="session")
def screenshot_dir(book_root: Path) -> Path:
    """Screenshots for a human to look at; CI keeps _build/ as its artifact."""
    path = book_root / "_build" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    from bookcheck import launch_browser

    with sync_playwright() as p:
        b = launch_browser(p)
        yield b
        b.close()


@pytest.fixture(scope="session")
def base_url(html_dir: Path):
    from bookcheck import serve

    with serve(html_dir) as url:
        yield url


def _offline_context(browser, base_url: str, **options):
    """A browser context that may only talk to the local server: the book must work
    offline."""
    context = browser.new_context(**options)
    context.route(
        "**/*",
        lambda route: route.continue_()
        if route.request.url.startswith((base_url, "data:", "blob:"))
        else route.abort("internetdisconnected"),
    )
    return context


@pytest.fixture()
def page(browser, base_url):
    """A fresh desktop-sized (1280 x 900) browser page, offline."""
    viewport = {"width": 1280, "height": 900}
    context = _offline_context(browser, base_url, viewport=viewport)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture()
def page_at(browser, base_url):
    """page_at(width, height=900) -> a fresh offline page that width wide, with a touch
    screen (phones: 390, tablets: 800, desktops: 1280)."""
    contexts = []

    def make(width: int, height: int = 900):
        viewport = {"width": width, "height": height}
        context = _offline_context(browser, base_url, viewport=viewport, has_touch=True)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
