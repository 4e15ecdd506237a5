"""The library depends on nothing above it: no ``ser`` module imports data_prep, fusion or recipes.

Two checks, so the direction cannot silently come back: every ``ser`` module is imported in a fresh
interpreter with the upper packages blocked (a meta-path finder that refuses them), and the source of
every module — its imports at any depth, inside functions too, and the examples of its docstrings,
which only run under pytest — is read for an import of them.
"""

import ast
import doctest
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UPPER = ("data_prep", "fusion", "recipes")
DYNAMIC_IMPORTS = ("import_module", "__import__")
SER_MODULES = sorted(
    "ser." + path.stem if path.stem != "__init__" else "ser" for path in (ROOT / "ser").glob("*.py")
)


def upper_imports(source):
    """``(line, module)`` of every import of an upper package in ``source``, doctests included.

    Example
    -------
    >>> upper_imports("import os\\nfrom fusion.fuse import x\\n")
    [(2, 'fusion.fuse')]
    """
    found = []

    def visit(tree, offset):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                  and getattr(node.func, "attr", getattr(node.func, "id", "")) in DYNAMIC_IMPORTS):
                names = [str(node.args[0].value)]
            else:
                continue
            found.extend((offset + node.lineno, n) for n in names if n.split(".")[0] in UPPER)

    visit(ast.parse(source), 0)
    for example in doctest.DocTestParser().get_examples(source):
        try:
            tree = ast.parse(example.source)
        except SyntaxError:  # an example shown, not run: still read its words
            tree = ast.parse("\n".join(f"import {m}" for m in UPPER if f"{m}." in example.source or
                                       f"import {m}" in example.source))
        visit(tree, example.lineno)
    return sorted(set(found))


def test_the_static_check_finds_imports_inside_functions_and_doctests():
    source = '''
def f():
    """Example
    -------
    >>> from recipes.tiny_models import build
    """
    from fusion.fuse import load_fusion
    return __import__("data_prep.consensus")
'''
    assert {module for _, module in upper_imports(source)} == {
        "data_prep.consensus", "fusion.fuse", "recipes.tiny_models"}


@pytest.mark.parametrize("module", SER_MODULES)
def test_no_ser_module_names_an_upper_package_in_an_import(module):
    path = ROOT / (module.replace(".", "/") + ".py" if module != "ser" else "ser/__init__.py")
    assert upper_imports(path.read_text(encoding="utf-8")) == [], f"{path} imports above the library"


BLOCKED = '''
import importlib, importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {upper}:
            raise ImportError(f"the library imported {{name}}")

sys.meta_path.insert(0, Blocker())
failed = []
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except ImportError as error:
        if "the library imported" in str(error):
            failed.append(f"{{module}}: {{error}}")
        # an optional extra that is not installed (gradio ...) is no layering problem
print("\\n".join(failed))
sys.exit(1 if failed else 0)
'''


def test_every_ser_module_imports_with_the_upper_packages_blocked():
    done = subprocess.run([sys.executable, "-c", BLOCKED.format(upper=UPPER), *SER_MODULES], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_the_blocker_refuses_an_upper_package():
    done = subprocess.run([sys.executable, "-c", BLOCKED.format(upper=UPPER), "fusion.svm"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "fusion.svm: the library imported fusion" in done.stdout
