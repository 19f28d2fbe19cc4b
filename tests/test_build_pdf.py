"""scripts/build_pdf.py's bookkeeping, without a browser: which page the contents name for each
chapter, how the outline nests, where the single page is found, and how the PDF is published.

The print itself (Chromium) is checked on the real book by tests/browser/test_pdf.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_pdf", ROOT / "scripts" / "build_pdf.py")
build_pdf = importlib.util.module_from_spec(_spec)
sys.modules["build_pdf"] = build_pdf  # dataclasses look their module up there
_spec.loader.exec_module(build_pdf)

Heading = build_pdf.Heading


def test_contents_get_the_page_of_each_target():
    dests = {"ch1": (3, 800.0), "ch2": (11, 800.0)}
    entries = [{"title": "1. A", "dest": "ch1"}, {"title": "2. B", "dest": "ch2"},
               {"title": "Lost", "dest": "nowhere"}]
    assert build_pdf.toc_page_numbers(entries, dests) == [4, 12, None]


def test_front_pages_end_before_the_first_heading_of_the_book():
    headings = [Heading("Title", 0, "book-front-0"), Heading("Contents", 0, "book-front-1"),
                Heading("Intro", 0, "book-h-0"), Heading("1. A", 0, "book-h-5")]
    dests = {"book-front-0": (0, 800.0), "book-front-1": (1, 800.0), "book-h-0": (2, 800.0),
             "book-h-5": (3, 800.0)}
    assert build_pdf.front_page_count(headings, dests) == 2
    with pytest.raises(build_pdf.PdfBuildError, match="no heading"):
        build_pdf.front_page_count(headings[:2], dests)


def _outline(writer) -> list[tuple[int, str, int]]:
    """(depth, title, 0-based page) of a writer's outline, read back through pypdf."""
    import io

    from pypdf import PdfReader

    buffer = io.BytesIO()
    writer.write(buffer)
    reader = PdfReader(buffer)
    found = []

    def walk(items, depth):
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            else:
                found.append((depth, item.title, reader.get_destination_page_number(item)))

    walk(reader.outline, 0)
    return found


def test_outline_nests_by_level_and_skips_unprinted_headings():
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(5):
        writer.add_blank_page(595, 842)
    headings = [Heading("1. A", 0, "a"), Heading("1.1. A one", 1, "a1"),
                Heading("1.1.1. Deep", 2, "a11"), Heading("Hidden", 1, "gone"),
                Heading("2. B", 0, "b"), Heading("2.1.1. Jumps a level", 2, "b11")]
    dests = {"a": (0, 800.0), "a1": (1, 700.0), "a11": (1, 300.0), "b": (3, 800.0),
             "b11": (4, 800.0)}
    assert build_pdf.add_outline(writer, headings, dests) == 5
    assert _outline(writer) == [(0, "1. A", 0), (1, "1.1. A one", 1), (2, "1.1.1. Deep", 1),
                                (0, "2. B", 3), (1, "2.1.1. Jumps a level", 4)]


def test_print_page_is_the_root_document_at_the_top_with_the_css(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "index.html").write_text(
        '<meta http-equiv="Refresh" content="0; url=book/intro.html" />', encoding="utf-8")
    (tmp_path / "book" / "intro.html").write_text(
        '<html><head><link href="_static/x.css"></head><body>Book</body></html>', encoding="utf-8")
    page = build_pdf.print_page(tmp_path, "pre { white-space: pre-wrap; }")
    assert page.parent == tmp_path  # where its relative links resolve
    text = page.read_text(encoding="utf-8")
    assert "<style>\npre { white-space: pre-wrap; }\n</style>\n</head>" in text
    assert "<body>Book</body>" in text


def test_print_page_reports_a_missing_build(tmp_path):
    with pytest.raises(build_pdf.PdfBuildError, match="index.html not found"):
        build_pdf.print_page(tmp_path, "")


def test_publish_moves_the_pdf_and_copies_it_next_to_the_html_book(tmp_path):
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text("<html></html>", encoding="utf-8")
    out = tmp_path / "pdf" / "book.pdf"
    out.parent.mkdir()
    tmp = out.with_name(".book.pdf.tmp")
    tmp.write_bytes(b"%PDF-1.4 tiny")
    written = build_pdf.publish(tmp, out, html)
    assert written == [out, html / "downloads" / "book.pdf"]
    assert not tmp.exists() and out.read_bytes() == b"%PDF-1.4 tiny"
    assert (html / "downloads" / "book.pdf").read_bytes() == b"%PDF-1.4 tiny"
    assert not list((html / "downloads").glob("*.tmp"))


def test_publish_without_an_html_book_writes_only_the_pdf(tmp_path):
    out = tmp_path / "book.pdf"
    tmp = tmp_path / "x.tmp"
    tmp.write_bytes(b"%PDF")
    assert build_pdf.publish(tmp, out, tmp_path / "no-html") == [out]
    assert not (tmp_path / "no-html").exists()


def test_missing_chromium_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules["localsite"], "CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(build_pdf.PdfBuildError, match="no-chromium not found: install Debian"):
        build_pdf.render(tmp_path, tmp_path / "p.html", tmp_path / "b.pdf", 1.0, print)


def test_defaults_build_into_the_repository():
    args = build_pdf.parse_args([])
    assert args.out == ROOT and args.html_dir is None and not args.skip_build
    args = build_pdf.parse_args(["--out", "/tmp/x", "--html-dir", "/tmp/h", "--skip-build"])
    assert args.out == Path("/tmp/x") and args.html_dir == Path("/tmp/h") and args.skip_build
