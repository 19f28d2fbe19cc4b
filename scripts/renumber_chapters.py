"""Renumber chapters: rename book/NN_topic.ipynb files and rewrite every reference to them.

A chapter's number is its file-name prefix (the table of contents globs ``book/[0-9]*``), and
its figure, equation and section labels carry the same number (``fig-05-augment``). Inserting
or moving a chapter therefore means renaming files and labels together:

    python scripts/renumber_chapters.py 05_generalization:06_generalization 07_keras:13_keras

For each ``OLD:NEW`` pair this renames ``book/OLD.ipynb`` with ``git mv`` and, in every tracked
text file, replaces the document name ``OLD`` with ``NEW``, the label prefixes
``fig-/eq-/sec-/tab-NN-`` with the new number, and ``[chapter N](OLD.ipynb)`` link texts.
All pairs are applied at once (through placeholders), so ``05->06`` and ``06->07`` do not chain.
Prose that names a chapter by number without a link ("as in chapter 4") is listed at the end
for a human to check; it is not rewritten.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".yml", ".yaml", ".cfg", ".txt", ".css", ".sh",
                 ".toml", ".bib", ".html", ".js", ""}
NAME = re.compile(r"^(\d\d)_[a-z0-9_]+$")


def parse(pairs: list[str]) -> dict[str, str]:
    """``["05_a:06_a", ...]`` -> ``{"05_a": "06_a"}``, checking names and that sources exist."""
    mapping = {}
    for pair in pairs:
        old, sep, new = pair.partition(":")
        if not sep or not NAME.match(old) or not NAME.match(new):
            sys.exit(f"renumber_chapters: expected OLD:NEW like 05_topic:06_topic, got {pair!r}")
        if not (ROOT / "book" / f"{old}.ipynb").exists():
            sys.exit(f"renumber_chapters: book/{old}.ipynb does not exist")
        mapping[old] = new
    targets = [n for n in mapping.values()]
    clash = [n for n in targets if (ROOT / "book" / f"{n}.ipynb").exists() and n not in mapping]
    if clash or len(set(t[:2] for t in targets)) != len(targets):
        sys.exit(f"renumber_chapters: target names collide: {clash or targets}")
    return mapping


def rewrite(text: str, mapping: dict[str, str]) -> str:
    """Apply every renaming to one file's text, all pairs at once."""
    subs: list[tuple[re.Pattern, str]] = []
    for i, (old, new) in enumerate(mapping.items()):
        on = old[:2]
        subs.append((re.compile(rf"\[chapter {int(on)}\]\({old}\.ipynb"),
                     lambda m, i=i: f"[chapter \0N{i}\0](\0{i}\0.ipynb"))
        subs.append((re.compile(rf"\b{old}\b"), lambda m, i=i: f"\0{i}\0"))
        subs.append((re.compile(rf"\b(fig|eq|sec|tab)-{on}-"),
                     lambda m, i=i: f"{m.group(1)}-\0L{i}\0-"))
    for pattern, repl in subs:
        text = pattern.sub(repl, text)
    for i, (_, new) in enumerate(mapping.items()):
        text = text.replace(f"\0{i}\0", new).replace(f"\0L{i}\0", new[:2])
        text = text.replace(f"\0N{i}\0", str(int(new[:2])))
    return text


def main(argv: list[str]) -> None:
    mapping = parse(argv)
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    changed = []
    for name in files:
        path = ROOT / name
        if path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = rewrite(text, mapping)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(name)
    # Rename in two steps through temporary names so that swaps and shifts cannot collide.
    for old in mapping:
        subprocess.run(["git", "mv", f"book/{old}.ipynb", f"book/_renumber_{old}.ipynb"],
                       cwd=ROOT, check=True)
    for old, new in mapping.items():
        subprocess.run(["git", "mv", f"book/_renumber_{old}.ipynb", f"book/{new}.ipynb"],
                       cwd=ROOT, check=True)
    print(f"renamed {len(mapping)} chapters; rewrote {len(changed)} files:")
    for name in changed:
        print("  ", name)
    numbers = "|".join(str(int(o[:2])) for o in mapping)
    prose = re.compile(rf"[Cc]hapters? 0?({numbers})\b(?!\]\()")
    print("prose that names a renumbered chapter without a link (check by hand):")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        path = ROOT / name
        if path.suffix in {".ipynb", ".md", ".py", ".txt"} and path.is_file():
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if prose.search(line):
                    print(f"  {name}:{n}: {line.strip()[:100]}")


if __name__ == "__main__":
    main(sys.argv[1:])
