"""One place for each fact: the facts that once lived in several modules are defined once.

Each check reads the code (not docstrings or comments), so a second definition fails here with
the file and line that made it.
"""

import ast
from pathlib import Path

import pytest

from ser.inference.timeline import timeline_starts, window_starts

ROOT = Path(__file__).resolve().parents[1]
CODE = sorted(path for folder in ("ser", "data_prep", "fusion", "recipes")
              for path in (ROOT / folder).rglob("*.py"))
CODE.append(ROOT / "train.py")


def _constants(path):
    """``(line, value)`` of the constants in code, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and id(node) not in docstrings]


def _where(value, predicate=None):
    found = []
    for path in CODE:
        for line, constant in _constants(path):
            if constant == value and type(constant) is type(value) and (predicate is None or predicate(path)):
                found.append(f"{path.relative_to(ROOT)}:{line}")
    return found


def test_the_sample_rate_is_one_constant():
    assert [place.split(":")[0] for place in _where(16000)] == ["ser/io/__init__.py"], _where(16000)


@pytest.mark.parametrize("name", ["posteriors", "manifests", "system.json", "hyperparams.yaml"])
def test_a_run_folders_layout_is_named_in_one_module(name):
    # Other places name a run folder's parts through ser.io.system_folder; the training YAMLs (which
    # write them) and the package layout (which is not a run folder) are outside this check.
    places = {p.split(":")[0] for p in _where(name)}
    allowed = {"ser/io/system_folder.py", "ser/inference/package.py"}
    assert places <= allowed, sorted(places - allowed)


def test_the_seed_folder_rule_is_in_one_place():
    hits = []
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr == "isdigit"
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "name"):
                hits.append(str(path.relative_to(ROOT)))
    assert hits == ["ser/io/system_folder.py"], hits


def test_back_to_back_windows_are_the_timeline_with_the_hop_equal_to_the_window():
    for n in range(1, 120, 7):
        for window in (1, 5, 10, 30):
            assert window_starts(n, window) == timeline_starts(n, window, window)
