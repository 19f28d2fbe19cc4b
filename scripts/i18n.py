"""The Chinese edition's catalogues: extract, update, check and build.

    python scripts/i18n.py update   # regenerate the .pot files, merge them into locale/zh_CN
    python scripts/i18n.py check    # fail on a stale, untranslated or fuzzy message, or on a
                                    # translation whose markup differs from its English
    python scripts/i18n.py build    # the Chinese HTML book into _build/html/zh/ (after the
                                    # English one in _build/html/)

The notebooks and pages stay in English; every paragraph, heading, caption and glossary entry
is a message in locale/zh_CN/LC_MESSAGES/book/<page>.po (Sphinx's gettext, sphinx-intl). Code,
outputs and figures are shared, so nbval checks both editions at once.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po as write_pot

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "locale"
LANG = "zh_CN"
PO_DIR = LOCALE / LANG / "LC_MESSAGES"
BIN = Path(sys.executable).parent
ZH_TITLE = "图像识别的深度学习：可运行、可验证"
CATALOGUE = "dlbook"  # the extensions' strings (book/appendix/_ext/i18n_notebooks.py)

# Markup a translation must keep exactly (Sphinx warns, and -W fails, on a changed reference).
MARKUP = [
    ("role", re.compile(r"\{[a-z:]+\}`[^`]*`")),
    ("code", re.compile(r"(?<![`}])`[^`]+`")),
    ("math", re.compile(r"\$[^$]+\$")),
    ("link target", re.compile(r"\]\(([^)]*)\)")),
]
# In a role, the text before <target> may be translated; the role and its target may not.
ROLE_TARGET = re.compile(r"(\{[a-z:]+\})`(?:[^`<]*<([^>`]*)>|([^`]*))`")


def gettext(out: Path) -> Path:
    """Extract every page's messages into ``out``; return the folder of .pot files."""
    subprocess.run(
        [str(BIN / "jupyter-book"), "build", str(ROOT), "--builder", "custom",
         "--custom-builder", "gettext", "--path-output", str(out), "-q"],
        check=True, stdout=subprocess.DEVNULL,
    )
    pot_dir = out / "_build" / "gettext"
    write_extension_pot(pot_dir / f"{CATALOGUE}.pot")
    return pot_dir


def extension_messages() -> list[str]:
    """What the book's Sphinx extensions write through ``_()`` (book/appendix/_ext), and the
    concept labels of _concepts.yml that the "Before this chapter" line shows."""
    from babel.messages.extract import extract_from_dir

    found = extract_from_dir(str(ROOT / "book" / "appendix" / "_ext"),
                             method_map=[("**.py", "python")], keywords={"_": None})
    messages = [message for _, _, message, _, _ in found if isinstance(message, str)]
    concepts = yaml.safe_load((ROOT / "_concepts.yml").read_text(encoding="utf-8"))
    messages += [c["label"] for c in concepts.values()]
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    messages += [part["caption"] for part in toc.get("parts", []) if part.get("caption")]
    return list(dict.fromkeys(m for m in messages if m))


def write_extension_pot(path: Path) -> None:
    catalog = Catalog(project="dlbook", fuzzy=False)
    for message in extension_messages():
        catalog.add(message)
    with open(path, "wb") as f:
        write_pot(f, catalog, width=-1, omit_header=False)


def compile_extension_catalogue() -> None:
    """Sphinx compiles the pages' catalogues itself, not an extension's: write dlbook.mo."""
    po = PO_DIR / f"{CATALOGUE}.po"
    with open(po, "rb") as f:
        catalog = read_po(f)
    with open(po.with_suffix(".mo"), "wb") as f:
        write_mo(f, catalog)


def role_keys(text: str) -> Counter:
    keys = Counter()
    for m in ROLE_TARGET.finditer(text):
        role, target, plain = m.group(1), m.group(2), m.group(3)
        if role == "{term}" and plain is not None:
            continue  # a bare {term} names its target by its text, which is translated
        keys[(role, target if target is not None else plain)] += 1
    return keys


def markup_problems(msgid: str, msgstr: str) -> list[str]:
    """What markup of ``msgid`` the translation ``msgstr`` lost or changed."""
    problems = []
    if role_keys(msgid) != role_keys(msgstr):
        problems.append(f"roles differ: {sorted(role_keys(msgid))} vs {sorted(role_keys(msgstr))}")
    no_roles = [ROLE_TARGET.sub("", t) for t in (msgid, msgstr)]
    for name, rx in MARKUP[1:]:
        a, b = (Counter(rx.findall(t)) for t in no_roles)
        if a != b:
            problems.append(f"{name} differs: {sorted((a - b).elements())} missing, "
                            f"{sorted((b - a).elements())} added")
    if msgid.count("**") != msgstr.count("**"):
        problems.append("bold markers (**) differ in number")
    # A translation is parsed on its own: one that starts like a list item or a heading is
    # parsed as one, and Sphinx then drops it silently (a heading "1. Errors" stays English).
    if re.match(r"(\d+[.)]|[-*+]|#+)\s", msgstr):
        problems.append("starts like a list item or heading: escape it (1\\. or \\-)")
    # str.format placeholders of the extensions' strings ("chapter {number}"), roles aside.
    fields = [Counter(re.findall(r"\{[a-z_]*\}(?!`)", t)) for t in no_roles]
    if fields[0] != fields[1]:
        problems.append(f"format placeholders differ: {sorted(fields[0])} vs {sorted(fields[1])}")
    return problems


def catalogue_problems(pot_dir: Path, po_dir: Path = PO_DIR) -> list[str]:
    """Every way the catalogues fall short of the current sources."""
    problems = []
    pots = {p.relative_to(pot_dir).with_suffix(""): p for p in pot_dir.rglob("*.pot")}
    pos = {p.relative_to(po_dir).with_suffix(""): p for p in po_dir.rglob("*.po")}
    for page in sorted(set(pos) - set(pots)):
        problems.append(f"{po_dir / page}.po: no page {page} any more; delete the catalogue")
    for page in sorted(pots):
        if page not in pos:
            problems.append(f"{po_dir / page}.po: missing; run python scripts/i18n.py update")
            continue
        with open(pots[page], "rb") as f:
            wanted = [m.id for m in read_po(f) if m.id]
        with open(pos[page], "rb") as f:
            catalog = read_po(f)
        have = {m.id: m for m in catalog if m.id}
        where = f"{po_dir / page}.po"
        stale = [i for i in wanted if i not in have]
        if stale:
            problems.append(f"{where}: {len(stale)} message(s) of the current page are not in "
                            f"the catalogue (first: {stale[0][:70]!r}); run "
                            "python scripts/i18n.py update and translate them")
        if catalog.obsolete:
            problems.append(f"{where}: {len(catalog.obsolete)} obsolete message(s) (#~); "
                            "delete them")
        for msgid in wanted:
            m = have.get(msgid)
            if m is None:
                continue
            if not m.string:
                problems.append(f"{where}: untranslated: {msgid[:70]!r}")
            elif m.fuzzy:
                problems.append(f"{where}: fuzzy (check and remove the flag): {msgid[:70]!r}")
            else:
                for p in markup_problems(msgid, m.string):
                    problems.append(f"{where}: {msgid[:50]!r}: {p}")
        extra = [i for i in have if i not in set(wanted)]
        if extra:
            problems.append(f"{where}: {len(extra)} message(s) no longer in the page "
                            f"(first: {extra[0][:70]!r}); run python scripts/i18n.py update")
    return problems


def update() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pot_dir = gettext(Path(tmp))
        subprocess.run(
            [str(BIN / "sphinx-intl"), "update", "-p", str(pot_dir), "-d", str(LOCALE),
             "-l", LANG, "-w", "-1"],
            check=True, stdout=subprocess.DEVNULL,
        )
    for po in PO_DIR.rglob("*.po"):
        with open(po, "rb") as f:
            catalog = read_po(f)
        if catalog.obsolete:  # sphinx-intl keeps removed messages as #~; we do not
            text = po.read_text(encoding="utf-8")
            text = re.sub(r"(?m)^#~.*\n?", "", text).rstrip("\n") + "\n"
            po.write_text(text, encoding="utf-8")


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        problems = catalogue_problems(gettext(Path(tmp)))
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in the Chinese catalogues (README: The Chinese edition)")
    else:
        print("the Chinese catalogues are complete and current")
    return 1 if problems else 0


def zh_config(path: Path) -> None:
    """The English _config.yml with the Chinese language, title and search."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config["title"] = ZH_TITLE
    sphinx_config = config["sphinx"]["config"]
    sphinx_config["language"] = LANG
    sphinx_config["html_search_language"] = "zh"
    # MyST-NB's buttons on hidden code cells ("Show code cell source").
    sphinx_config["nb_code_prompt_show"] = "显示代码单元格"
    sphinx_config["nb_code_prompt_hide"] = "隐藏代码单元格"
    # Jupyter Book resolves local extensions against the config file's folder.
    local = config["sphinx"].get("local_extensions") or {}
    config["sphinx"]["local_extensions"] = {k: str(ROOT / v) for k, v in local.items()}
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")


def zh_toc(path: Path) -> None:
    """The table of contents with its part captions ("Chapters") in Chinese: Sphinx does not
    translate the captions of the toctrees that Jupyter Book makes from _toc.yml."""
    with open(PO_DIR / f"{CATALOGUE}.po", "rb") as f:
        catalog = read_po(f)
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    for part in toc.get("parts", []):
        if part.get("caption"):
            message = catalog.get(part["caption"])
            part["caption"] = message.string if message and message.string else part["caption"]
    path.write_text(yaml.safe_dump(toc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def build(extra: list[str]) -> int:
    compile_extension_catalogue()
    out = ROOT / "_build" / "zh"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    zh_config(out / "_config.yml")
    zh_toc(out / "_toc.yml")
    run = subprocess.run(
        [str(BIN / "jupyter-book"), "build", str(ROOT), "--config", str(out / "_config.yml"),
         "--toc", str(out / "_toc.yml"), "--path-output", str(out), *extra]
    )
    if run.returncode:
        return run.returncode
    target = ROOT / "_build" / "html" / "zh"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(out / "_build" / "html", target)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["update", "check", "build"])
    args, extra = ap.parse_known_args()
    if args.command == "update":
        update()
        return 0
    if args.command == "check":
        return check()
    return build(extra)


if __name__ == "__main__":
    sys.exit(main())
