"""The test split is touched once, at the end: no chapter validates on it while training.

Chapter 06 states the rule: per-epoch curves, early stopping and model choice use a validation
split of the training data (``companion.data.train_val_split``), and the test digits are read
once. This module follows the test split through every chapter's code, from the call that loads
it (``mnist("test")``, ``photo_digits("test")``, ``cifar10("test")``) through every assignment that
uses it, and fails where it reaches the validation argument of a ``fit`` call
(``Trainer.fit(train, val)``, ``fit(..., val_loader=)``, Keras's ``validation_data=``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9]*.ipynb"))
LOADERS = {"mnist", "photo_digits", "cifar10"}
#: Calls whose results pair up with their first arguments: ``a, b = loaders(x, y)``.
PAIRWISE = {"loaders"}


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _loads_test(node: ast.Call) -> bool:
    if _name(node.func) not in LOADERS:
        return False
    split = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "split"), None)
    return isinstance(split, ast.Constant) and split.value == "test"


def _taints(recorded: bool | list[bool] | None) -> list[bool]:
    return recorded if isinstance(recorded, list) else [bool(recorded)]


class SplitFlow(ast.NodeVisitor):
    """Which names hold the test split (or something made from it), statement by statement."""

    def __init__(self) -> None:
        self.tainted: set[str] = set()
        self.problems: list[str] = []
        self.functions: list[str] = []  # the notebook functions being read, innermost last
        self.returns: dict[str, bool | list[bool]] = {}  # what each one returns of the test split

    def uses_test(self, node: ast.AST | None) -> bool:
        if node is None:
            return False
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and _loads_test(sub):
                return True
            if isinstance(sub, ast.Name) and sub.id in self.tainted:
                return True
            if isinstance(sub, ast.Call) and any(_taints(self.returns.get(_name(sub.func)))):
                return True
        return False

    def _bind(self, target: ast.AST, tainted: bool) -> None:
        for sub in ast.walk(target):
            if isinstance(sub, ast.Name):
                (self.tainted.add if tainted else self.tainted.discard)(sub.id)

    def _element_taints(self, value: ast.AST) -> list[bool] | None:
        """Whether each value that a tuple assignment unpacks holds the test split, where the
        code says which is which: ``a, b = x, y``; ``a, b = loaders(x, y)``;
        ``a, b = map(f, (x, y))``; ``a, b = (f(d) for d in (x, y))``; ``a, b = run()`` for a
        function of the notebook that returns a tuple."""
        parts = None
        if isinstance(value, ast.Tuple):
            parts = value.elts
        elif isinstance(value, ast.Call) and _name(value.func) in PAIRWISE:
            parts = value.args
        elif isinstance(value, ast.Call) and _name(value.func) == "map" \
                and len(value.args) == 2 and isinstance(value.args[1], (ast.Tuple, ast.List)):
            parts = value.args[1].elts
        elif isinstance(value, (ast.GeneratorExp, ast.ListComp)) and len(value.generators) == 1 \
                and isinstance(value.generators[0].iter, (ast.Tuple, ast.List)):
            parts = value.generators[0].iter.elts
        elif isinstance(value, ast.Call) and isinstance(self.returns.get(_name(value.func)), list):
            return self.returns[_name(value.func)]
        return None if parts is None else [self.uses_test(p) for p in parts]

    def _assign(self, targets: list[ast.AST], value: ast.AST) -> None:
        for target in targets:
            taints = self._element_taints(value) if isinstance(target, ast.Tuple) else None
            if taints is None:
                self._bind(target, self.uses_test(value))
                continue
            for i, t in enumerate(target.elts):
                self._bind(t, i < len(taints) and taints[i])

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    def visit_Return(self, node: ast.Return) -> None:
        self.generic_visit(node)
        if not self.functions or node.value is None:
            return
        name = self.functions[-1]
        if isinstance(node.value, ast.Tuple):
            now = [self.uses_test(e) for e in node.value.elts]
            before = self.returns.get(name)
            if isinstance(before, list) and len(before) == len(now):
                now = [a or b for a, b in zip(before, now)]
            self.returns[name] = now
        else:
            self.returns[name] = bool(self.returns.get(name)) or self.uses_test(node.value)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        self._assign(node.targets, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        if node.value is not None:
            self._assign([node.target], node.value)

    def visit_For(self, node: ast.For) -> None:
        self._bind(node.target, self.uses_test(node.iter))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute) and node.func.attr == "fit":
            val = node.args[1] if len(node.args) > 1 else None
            for k in node.keywords:
                if k.arg in ("val_loader", "validation_data"):
                    val = k.value
            if self.uses_test(val):
                self.problems.append(f"line {node.lineno}: {ast.unparse(node)[:90]}")
        self.generic_visit(node)


def test_split_problems(sources: list[str]) -> list[str]:
    flow = SplitFlow()
    for i, source in enumerate(sources):
        lines = [l for l in source.splitlines() if not l.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue  # a cell that demonstrates a syntax error
        before = len(flow.problems)
        flow.visit(tree)
        flow.problems[before:] = [f"cell {i}, {p}" for p in flow.problems[before:]]
    return flow.problems


test_split_problems.__test__ = False  # a helper, not a test


def code_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source if c.cell_type == "code" else "" for c in nb.cells]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_chapter_validates_on_the_test_split(path):
    assert test_split_problems(code_cells(path)) == []


@pytest.mark.parametrize("cells", [
    ['train_loader, test_loader = loaders(mnist("train"), mnist("test"))',
     "trainer.fit(train_loader, test_loader, epochs=3)"],
    ['test_set = mnist("test", root=DATA_ROOT)\n_, loader = loaders(train_set, test_set)',
     "history = trainer.fit(train_loader, val_loader=loader)"],
    ['x_test, y_test = photo_digits("test").tensors()',
     "kmodel.fit(x, y, validation_data=(x_test, y_test))"],
    ['train_ds, test_ds = map(as_dataset, (train_set, mnist("test")))',
     "def run(model):\n    return Trainer(model).fit(loaders(train_ds)[0], test_ds)"],
    ['def fresh_run():\n    a, b = loaders(train_set, mnist("test"))\n    return Trainer(m), a, b',
     "trainer, train_loader, test_loader = fresh_run()\ntrainer.fit(train_loader, test_loader)"],
    ['train_set, test_set = (norm(d) for d in (train_raw, cifar10("test", root=R)))',
     "_, val = loaders(train_set, test_set)\ntrainer.fit(train, val)"],
])
def test_validating_on_the_test_split_is_caught(cells):
    assert test_split_problems(cells), cells


def test_validating_on_a_validation_split_passes():
    code = ('train_set, val_set = train_val_split(mnist("train"))\n'
            'test_set = mnist("test")\n'
            "train_loader, val_loader = loaders(train_set, val_set)\n"
            "_, test_loader = loaders(train_set, test_set)\n"
            "trainer.fit(train_loader, val_loader, epochs=3)\n"
            "trainer.evaluate(test_loader)")
    assert test_split_problems([code]) == []
