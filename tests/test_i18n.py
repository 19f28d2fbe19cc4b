"""The Chinese edition's checks can fail: scripts/i18n.py on catalogues made to be wrong, and
scripts/link_terms.py on a chapter whose glossary term is left unlinked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import write_po

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import i18n  # noqa: E402
import link_terms  # noqa: E402

TERM = "{term}`channels <Channel · 通道>`"


@pytest.mark.parametrize("msgstr", [
    "通道",                                        # the link is gone
    "{term}`通道 <Channel · 频道>`",               # its target changed
    "{term}`通道`",                                # a bare term names another target
])
def test_a_lost_or_changed_term_link_is_a_problem(msgstr):
    assert i18n.markup_problems(f"the {TERM}", msgstr)


def test_a_translated_term_text_is_fine():
    assert i18n.markup_problems(f"the {TERM} and $x$ with `f(x)`",
                                "{term}`通道 <Channel · 通道>`、$x$ 与 `f(x)`") == []


@pytest.mark.parametrize("msgid, msgstr", [
    ("see {numref}`fig-02-a`", "见图"),                   # a reference dropped
    ("with $x_i$", "用 $x_j$"),                           # maths changed
    ("call `f(x)`", "调用 `g(x)`"),                        # code changed
    ("see [this](running.md)", "见[此处](other.md)"),     # link target changed
    ("**bold** text", "粗体文本"),                         # bold lost
    ("chapter {number}", "第 {n} 章"),                     # a format placeholder renamed
    ("1. Errors", "1. 错误"),                               # parsed as a list, then dropped
])
def test_changed_markup_is_a_problem(msgid, msgstr):
    assert i18n.markup_problems(msgid, msgstr)


def _write(path: Path, messages: dict[str, str], fuzzy: tuple[str, ...] = (),
           obsolete: dict[str, str] | None = None) -> None:
    catalog = Catalog(locale="zh_CN")
    for msgid, msgstr in messages.items():
        catalog.add(msgid, msgstr, flags=("fuzzy",) if msgid in fuzzy else ())
    for msgid, msgstr in (obsolete or {}).items():
        catalog.obsolete[msgid] = Message(msgid, msgstr)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        write_po(f, catalog, width=-1)


@pytest.fixture()
def dirs(tmp_path):
    pot, po = tmp_path / "pot", tmp_path / "po"
    _write(pot / "book" / "p.pot", {"One.": "", "Two `x`.": ""})
    return pot, po


def test_complete_catalogues_pass(dirs):
    pot, po = dirs
    _write(po / "book" / "p.po", {"One.": "一。", "Two `x`.": "二 `x`。"})
    assert i18n.catalogue_problems(pot, po) == []


@pytest.mark.parametrize("case, messages, fuzzy, obsolete, expected", [
    ("untranslated", {"One.": "一。", "Two `x`.": ""}, (), None, "untranslated"),
    ("fuzzy", {"One.": "一。", "Two `x`.": "二 `x`。"}, ("One.",), None, "fuzzy"),
    ("stale", {"One.": "一。"}, (), None, "not in the catalogue"),
    ("extra", {"One.": "一。", "Two `x`.": "二 `x`。", "Gone.": "无。"}, (), None,
     "no longer in the page"),
    ("obsolete", {"One.": "一。", "Two `x`.": "二 `x`。"}, (), {"Old.": "旧。"}, "obsolete"),
    ("markup", {"One.": "一。", "Two `x`.": "二。"}, (), None, "code differs"),
])
def test_each_shortfall_is_reported(dirs, case, messages, fuzzy, obsolete, expected):
    pot, po = dirs
    _write(po / "book" / "p.po", messages, fuzzy, obsolete)
    problems = i18n.catalogue_problems(pot, po)
    assert any(expected in p for p in problems), (case, problems)


def test_a_missing_catalogue_is_reported(dirs):
    pot, po = dirs
    (po / "book").mkdir(parents=True)
    assert any("missing" in p for p in i18n.catalogue_problems(pot, po))


def test_extension_messages_include_the_concept_labels_and_the_prerequisites_line():
    messages = i18n.extension_messages()
    assert "Before this chapter" in messages
    assert "chapter {number}" in messages
    assert "the convolution layer" in messages


def test_the_chapters_link_their_glossary_terms():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "link_terms.py"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


def test_link_terms_links_the_first_use_only_outside_code_and_maths():
    todo = dict(link_terms.patterns())
    line = "A `kernel` and $kernel$ then a kernel slides; another kernel."
    out = link_terms.link_line(line, todo)
    assert out.count("{term}`kernel <Kernel · 卷积核 / 滤波器>`") == 1
    assert out.startswith("A `kernel` and $kernel$ then a {term}`kernel <")
    assert "Kernel · 卷积核 / 滤波器" not in todo


def test_link_terms_check_fails_on_an_unlinked_chapter(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "metadata": {},
                     "source": ["Every convolution has a kernel.\n"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "99_x.ipynb"
    path.write_text(json.dumps(nb))
    assert link_terms.link_notebook(path)
    text = json.loads(path.read_text())["cells"][0]["source"]
    assert "{term}`convolution <Convolution · 卷积>`" in "".join(text)
