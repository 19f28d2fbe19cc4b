"""The book's order: no chapter uses a tool before a chapter has taught it.

Every chapter notebook states what it needs and what it teaches, in its *notebook* metadata
(Jupyter: Edit > Notebook metadata; or `nb.metadata` in nbformat):

    "book": {"requires": ["trainer", "adam"], "introduces": ["batch-norm", "lr-schedule"]}

The names come from one vocabulary, `_concepts.yml` next to `_toc.yml`. Each concept there has a
`label` (how readers see it), a `prose` pattern and optionally a `code` pattern. In table-of-contents
order (`book/[0-9]*.ipynb`, sorted by number, as `_toc.yml` globs them) this file checks that

1. every chapter carries the metadata and uses only names from the vocabulary;
2. every concept a chapter requires is introduced by an *earlier* chapter;
3. every concept a chapter introduces is talked about in its prose (the `prose` pattern matches
   one of its markdown cells): listing a concept is not teaching it. A concept used lightly before
   its own chapter (the reference MNIST network's dropout in chapter 4) may be introduced on the
   spot with a sentence or two and a pointer to the chapter that teaches it in full; that chapter
   lists it under `introduces` again;
4. the code scan: a chapter whose code cells match a concept's `code` pattern (`Trainer(`,
   `optim.Adam(`, `BatchNorm`, `lr_scheduler`, ...) uses that concept, so it must list it under
   `requires` or `introduces` -- a chapter cannot use the Trainer, say, before the chapter that
   introduces it, however its metadata is written.

To add a concept: add it to `_concepts.yml` with a label, a prose pattern and, if code reveals its
use, a code pattern; list it under `introduces` in the chapter that teaches it and under
`requires` where it is needed. `book/appendix/_ext/prerequisites.py` renders each chapter's
`requires` as a "Before this chapter: ..." line linking the chapters that introduce them, and
stops the build on a name that is not in the vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9]*.ipynb"))
VOCABULARY_FILE = ROOT / "_concepts.yml"


@dataclass
class Chapter:
    """What the order checks need from one notebook."""

    name: str
    requires: list[str] | None  # None: the notebook has no "book" metadata
    introduces: list[str] | None
    prose: str = ""
    code: str = ""
    problems: list[str] = field(default_factory=list)


def load_vocabulary(path: Path = VOCABULARY_FILE) -> dict[str, dict[str, str]]:
    """`_concepts.yml` as {name: {"label", "prose", "code"?}}."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def read_chapter(path: Path) -> Chapter:
    nb = nbformat.read(path, as_version=4)
    book = nb.metadata.get("book")
    cells = {kind: "\n".join(c.source for c in nb.cells if c.cell_type == kind)
             for kind in ("markdown", "code")}
    if not isinstance(book, dict):
        return Chapter(path.name, None, None, cells["markdown"], cells["code"])
    return Chapter(path.name, list(book.get("requires", [])), list(book.get("introduces", [])),
                   cells["markdown"], cells["code"])


def used_concepts(code: str, vocabulary: dict[str, dict[str, str]]) -> list[str]:
    """Concepts whose `code` pattern matches the chapter's code cells."""
    return [name for name, c in vocabulary.items() if c.get("code") and re.search(c["code"], code)]


def order_problems(chapters: list[Chapter], vocabulary: dict[str, dict[str, str]]) -> list[str]:
    """Every way the chapters, in this order, break the rules of the module docstring."""
    problems: list[str] = []
    introduced: dict[str, str] = {}  # concept -> first chapter that introduces it
    for ch in chapters:
        if ch.requires is None or ch.introduces is None:
            problems.append(f"{ch.name}: no 'book' notebook metadata with 'requires' and "
                            "'introduces' lists (see tests/test_book_order.py)")
            continue
        for name in ch.requires + ch.introduces:
            if name not in vocabulary:
                problems.append(f"{ch.name}: '{name}' is not a concept of _concepts.yml")
        for name in ch.requires:
            if name in vocabulary and name not in introduced:
                problems.append(f"{ch.name} requires '{name}', which no earlier chapter introduces")
        for name in ch.introduces:
            pattern = vocabulary.get(name, {}).get("prose")
            if pattern and not re.search(pattern, ch.prose, re.IGNORECASE):
                problems.append(f"{ch.name} introduces '{name}' but its prose never mentions it "
                                f"(pattern {pattern!r})")
        for name in used_concepts(ch.code, vocabulary):
            if name not in ch.requires and name not in ch.introduces:
                where = introduced.get(name, "no earlier chapter")
                problems.append(f"{ch.name}: its code uses '{name}' (pattern "
                                f"{vocabulary[name]['code']!r}) but lists it neither under "
                                f"requires nor introduces (introduced by: {where})")
        for name in ch.introduces:
            introduced.setdefault(name, ch.name)
    return problems


# ------------------------------------------------------------------------------------------------
# The book as it is


def test_vocabulary_is_well_formed():
    vocabulary = load_vocabulary()
    assert vocabulary, "_concepts.yml is empty"
    for name, concept in vocabulary.items():
        assert re.fullmatch(r"[a-z][a-z0-9-]*", name), f"concept names are kebab-case: {name!r}"
        assert set(concept) <= {"label", "prose", "code"}, (name, concept)
        assert concept.get("label") and concept.get("prose"), f"{name}: needs a label and prose"
        for key in ("prose", "code"):
            if key in concept:
                re.compile(concept[key])


def test_the_chapters_are_in_an_order_that_teaches_before_it_uses():
    problems = order_problems([read_chapter(p) for p in CHAPTERS], load_vocabulary())
    assert not problems, "\n".join(problems)


def test_every_concept_is_introduced_by_some_chapter():
    chapters = [read_chapter(p) for p in CHAPTERS]
    introduced = {name for ch in chapters for name in (ch.introduces or [])}
    missing = sorted(set(load_vocabulary()) - introduced)
    assert not missing, f"concepts of _concepts.yml that no chapter introduces: {missing}"


# ------------------------------------------------------------------------------------------------
# The checks themselves can fail


VOCAB = {
    "trainer": {"label": "the Trainer", "prose": "Trainer", "code": r"\bTrainer\("},
    "adam": {"label": "Adam", "prose": r"\bAdam\b", "code": r"\bAdam\("},
    "pooling": {"label": "pooling", "prose": "pooling"},
}


def chapter(name, requires=(), introduces=(), prose="", code="") -> Chapter:
    return Chapter(name, list(requires), list(introduces), prose, code)


def test_a_well_ordered_pair_passes():
    book = [chapter("03", introduces=["trainer"], prose="The Trainer runs the loop.",
                    code="t = Trainer(net)"),
            chapter("04", requires=["trainer"], code="Trainer(net).fit()")]
    assert order_problems(book, VOCAB) == []


def test_a_tool_used_before_its_chapter_is_caught_by_the_code_scan():
    # chapter 03 trains with Adam and the Trainer; chapter 04 explains them only afterwards
    book = [chapter("03", introduces=["pooling"], prose="pooling",
                    code="Trainer(net, torch.optim.Adam(params))"),
            chapter("04", introduces=["trainer", "adam"], prose="the Trainer and Adam")]
    problems = order_problems(book, VOCAB)
    assert len(problems) == 2 and all(p.startswith("03: its code uses") for p in problems)


def test_a_requirement_met_only_later_is_caught():
    book = [chapter("03", requires=["adam"]),
            chapter("04", introduces=["adam"], prose="Adam")]
    assert order_problems(book, VOCAB) == [
        "03 requires 'adam', which no earlier chapter introduces"]


def test_a_requirement_met_by_the_same_chapter_is_not_enough():
    book = [chapter("04", requires=["adam"], introduces=["adam"], prose="Adam")]
    assert "no earlier chapter" in order_problems(book, VOCAB)[0]


def test_listing_a_concept_is_not_introducing_it():
    book = [chapter("04", introduces=["adam"], prose="We train with a better optimizer.")]
    assert "prose never mentions it" in order_problems(book, VOCAB)[0]


def test_unknown_names_and_missing_metadata_are_caught():
    book = [Chapter("01", None, None), chapter("02", requires=["atom"], introduces=["molecule"])]
    problems = order_problems(book, VOCAB)
    assert "01: no 'book' notebook metadata" in problems[0]
    assert sum("not a concept of _concepts.yml" in p for p in problems) == 2


@pytest.mark.parametrize("name", [p.name for p in CHAPTERS])
def test_the_code_scan_sees_each_chapters_tools(name):
    """The scan is not vacuous: every chapter after the first uses some concept it can see."""
    if name.startswith("01"):
        pytest.skip("chapter 1 starts from nothing")
    used = used_concepts(read_chapter(ROOT / "book" / name).code, load_vocabulary())
    assert used, f"{name}: the code scan finds no concept at all; are the code patterns right?"
