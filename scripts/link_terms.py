"""Link each chapter's first use of a glossary term to the glossary ({term} role).

    python scripts/link_terms.py            # rewrite the chapters' markdown cells in place
    python scripts/link_terms.py --check    # exit 1 if a chapter would change

Only prose outside fences, headings, code, maths, links and existing roles is touched, and only
the first occurrence of each term in a chapter. The glossary's headwords are bilingual
("Convolution · 卷积"), so the same {term} target works in both editions.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "book" / "appendix" / "glossary.md"

# English surface forms (regexes, matched case-insensitively at word boundaries) per headword
# prefix; a headword not listed here is matched by its English part.
SURFACES = {
    "Batch normalisation": [r"batch[ -]norm(?:ali[sz]ation)?"],
    "Batch": [r"mini-?batch(?:es)?", r"batch(?:es)?(?= of)"],
    "Convolution": [r"convolutions?"],
    "Cross-entropy loss": [r"cross-entropy"],
    "Data augmentation": [r"(?:data )?augmentation"],
    "Dropout": [r"dropout"],
    "Epoch": [r"epochs?"],
    "Feature map": [r"feature maps?"],
    "Fully connected layer": [r"fully[ -]connected layers?"],
    "Generative adversarial network": [r"generative adversarial networks?", r"GANs?"],
    "Kernel": [r"kernels?"],
    "Logits": [r"logits"],
    "Padding": [r"padding"],
    "Pooling": [r"(?:max[ -])?pooling"],
    "Receptive field": [r"receptive fields?"],
    "Residual block": [r"residual blocks?"],
    "Stride": [r"strides?"],
    "Tensor": [r"tensors?"],
    "Transposed convolution": [r"transposed convolutions?"],
    "Intersection over union": [r"IoU", r"intersection over union"],
    "Precision and recall": [r"precision"],
    "Validation set": [r"validation (?:split|set)s?"],
    "Weight decay": [r"weight decay"],
    "Momentum": [r"momentum"],
    "Initialisation": [r"initiali[sz]ation"],
    "Learning-rate schedule": [r"learning-rate schedules?", r"schedules?"],
    "Saliency map": [r"saliency maps?"],
    "Shortcut connection": [r"shortcut connections?", r"skip connections?"],
    "Bottleneck": [r"bottleneck(?: block)?s?"],
    "Calibration": [r"calibrat(?:ion|ed)"],
    "Data parallelism": [r"data[ -]parallel(?:ism)?"],
    "Degradation problem": [r"degradation(?: problem)?"],
    "Dilated convolution": [r"dilat(?:ed|ion)"],
    "Fine-tuning": [r"fine-tun(?:ing|e|ed)"],
    "Mode collapse": [r"mode collapse"],
    "Non-maximum suppression": [r"non-maximum suppression", r"NMS"],
    "Semantic segmentation": [r"(?:semantic )?segmentation"],
    "Translation equivariance": [r"(?:translation )?equivarian(?:ce|t)"],
    "Weight sharing": [r"weight[ -]sharing", r"shares? (?:its |the )?weights"],
    "Local connectivity": [r"local(?:ly)? connect(?:ivity|ed)"],
    "Normalisation": [r"standardi[sz](?:ation|es?|ed)"],
    "Adversarial example": [r"adversarial examples?"],
    "Bounding box": [r"bounding box(?:es)?"],
    "Transfer learning": [r"transfer learning"],
    "Overfitting": [r"overfit(?:ting|s)?"],
    "Softmax": [r"softmax"],
    "Backpropagation": [r"backpropagation", r"backward pass"],
    "Accuracy": [r"accuracy"],
    "Activation function": [r"activation functions?"],
    "Channel": [r"channels?"],
    "Checkpoint": [r"checkpoints?"],
    "Confusion matrix": [r"confusion matri(?:x|ces)"],
    "Discriminator": [r"discriminator"],
    "Generator": [r"generator"],
    "Global average pooling": [r"global average pooling"],
    "Gradient descent": [r"(?:stochastic )?gradient descent"],
    "Learning rate": [r"learning rates?(?![ -]schedule)"],
}

# Terms a chapter uses only in another sense (chapter 17's "kernel" is Jupyter's and its
# "precision" is floating-point precision).
EXCLUDE = {("17_distributed", "Kernel"), ("17_distributed", "Precision and recall")}

# Spans no link may enter: code, maths, links, roles, bold/italic markers are fine.
PROTECTED = re.compile(
    r"(`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\[[^\]]*\]\([^)]*\)|\{[a-z:]+\}`[^`]*`|<[^>]+>)", re.S
)


def headwords() -> list[str]:
    text = GLOSSARY.read_text(encoding="utf-8")
    body = text.split("```{glossary}", 1)[1].split("```", 1)[0]
    return [line.strip() for line in body.splitlines() if line and not line[0].isspace()
            and not line.startswith(":")]


def patterns() -> list[tuple[str, re.Pattern]]:
    out = []
    for head in headwords():
        english = head.split(" · ")[0].strip()
        forms = SURFACES.get(english, [re.escape(english)])
        rx = re.compile(r"(?<![\w-])(" + "|".join(forms) + r")(?![\w-])", re.I)
        out.append((head, rx))
    # Longer headwords first, so "Batch normalisation" wins over "Batch".
    return sorted(out, key=lambda hr: -len(hr[0]))


def link_line(line: str, todo: dict) -> str:
    """Link the first use of each pending term in one line's unprotected text."""
    parts = PROTECTED.split(line)
    links: list[str] = []
    for j in range(0, len(parts), 2):
        for head in list(todo):
            m = todo[head].search(parts[j])
            if not m:
                continue
            links.append("{term}`" + m.group(1) + " <" + head + ">`")
            parts[j] = parts[j][: m.start(1)] + f"\0{len(links) - 1}\0" + parts[j][m.end(1):]
            del todo[head]
    joined = "".join(parts)
    return re.sub(r"\0(\d+)\0", lambda mm: links[int(mm.group(1))], joined)


def link_cell(source: str, todo: dict) -> str:
    lines = source.split("\n")
    fence = None
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence) and not stripped[len(fence):].strip():
                fence = None
            continue
        m = re.match(r"(`{3,}|:{3,})", stripped)
        if m:
            fence = m.group(1)
            continue
        if not stripped or stripped.startswith(("#", "|", ">", "$$", "\\", ":", "(")):
            continue
        lines[i] = link_line(line, todo)
    return "\n".join(lines)


def link_cells(nb: dict, stem: str) -> bool:
    """Link the pending terms in the notebook ``nb`` (chapter ``stem``); True if it changed."""
    todo = {h: rx for h, rx in patterns() if (stem, h.split(" · ")[0]) not in EXCLUDE}
    markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for head in list(todo):
        if f"<{head}>`" in markdown:
            del todo[head]
    changed = False
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        src = "".join(cell["source"])
        new = link_cell(src, todo)
        if new != src:
            cell["source"] = new.splitlines(keepends=True)
            changed = True
    return changed


def link_notebook(path: Path) -> bool:
    """Link the chapter at ``path`` in place; True if it changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = link_cells(nb, path.stem)
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    chapters = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    if args.check:
        bad = [p.name for p in chapters
               if link_cells(json.loads(p.read_text(encoding="utf-8")), p.stem)]
        for name in bad:
            print(f"{name}: a glossary term's first use is not linked; run scripts/link_terms.py")
        return 1 if bad else 0
    for p in chapters:
        if link_notebook(p):
            print("linked", p.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
