"""The library's layers, checked: what each part of ``ser`` may import.

The rule, bottom to top (a part may import itself and the parts on its line's right, nothing else):

=============== =========================================================================
``ser.io``       the shared top-level modules (errors, emotions ...)
top-level        ``ser.io`` (``ser.errors``, ``ser.asr``, ``ser.cli`` ... read and write files)
``ser.nn``       ``ser.io``, the top-level modules
``ser.training`` ``ser.nn``, ``ser.io``, the top-level modules — never ``ser.inference``
``ser.inference````ser.nn``, ``ser.io``, the top-level modules — never ``ser.training``
=============== =========================================================================

and no part of ``ser`` imports the packages above the library (``data_prep``, ``fusion``,
``recipes``). Imports are read at any depth (inside functions too) and in the examples of
docstrings, which only run under pytest. A second check imports every module in a fresh
interpreter with the upper packages blocked. :mod:`ser.module_aliases` maps old module paths onto
the new ones at run time (by name, not by import), so it is the one module outside the rule.
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
SUBPACKAGES = ("io", "nn", "training", "inference")
#: Part -> the parts it may import (besides itself); "top" is the shared top-level modules.
ALLOWED = {
    "top": {"io"},
    "io": {"top"},
    "nn": {"io", "top"},
    "training": {"nn", "io", "top"},
    "inference": {"nn", "io", "top"},
}
EXEMPT = {"ser.module_aliases"}


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SER_FILES = sorted((ROOT / "ser").rglob("*.py"))
SER_MODULES = [_module_name(path) for path in SER_FILES]


def part_of(module):
    """The layer a ``ser`` module belongs to.

    Example
    -------
    >>> part_of("ser.nn.pooling"), part_of("ser.metrics"), part_of("ser"), part_of("ser.inference")
    ('nn', 'top', 'top', 'inference')
    """
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "top"


def imported_modules(source):
    """``(line, module)`` of every import in ``source``: statements at any depth, dynamic imports of
    a constant name, and the examples of its docstrings.

    Example
    -------
    >>> imported_modules("import os\\nfrom fusion.fuse import x\\n")
    [(1, 'os'), (2, 'fusion.fuse')]
    """
    found = []

    def visit(tree, offset):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # ``from ser import targets`` imports the module ser.targets
                names = [node.module] + [f"ser.{a.name}" for a in node.names if node.module == "ser"]
            elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                  and getattr(node.func, "attr", getattr(node.func, "id", "")) in DYNAMIC_IMPORTS):
                names = [str(node.args[0].value)]
            else:
                continue
            found.extend((offset + node.lineno, n) for n in names)

    visit(ast.parse(source), 0)
    for example in doctest.DocTestParser().get_examples(source):
        try:
            tree = ast.parse(example.source)
        except SyntaxError:  # an example shown, not run: still read its words
            words = example.source.replace("(", " ").split()
            tree = ast.parse("\n".join(f"import {w}" for w in words if w.split(".")[0] in UPPER + ("ser",)
                                       and w.replace(".", "").replace("_", "").isalnum()))
        visit(tree, example.lineno)
    return sorted(set(found))


def violations(module, source):
    """The imports of ``module`` (its ``source``) that break the layering rule, as messages.

    Example
    -------
    >>> violations("ser.nn.model", "from ser.training.brain import EmotionBrain\\n")
    ['line 1: ser.nn.model (nn) imports ser.training.brain (training); nn may import io, top']
    >>> violations("ser.inference.app", "import fusion.fuse\\n")
    ['line 1: ser.inference.app imports fusion.fuse, above the library']
    >>> violations("ser.training.brain", "from ser.nn.model import EmotionClassifier\\n")
    []
    """
    part, found = part_of(module), []
    for line, name in imported_modules(source):
        top = name.split(".")[0]
        if top in UPPER:
            found.append(f"line {line}: {module} imports {name}, above the library")
        elif top == "ser" and name != "ser":
            other = part_of(name)
            if other != part and other not in ALLOWED[part]:
                found.append(f"line {line}: {module} ({part}) imports {name} ({other}); "
                             f"{part} may import {', '.join(sorted(ALLOWED[part]))}")
    return found


def test_the_check_reads_imports_inside_functions_and_doctests():
    source = '''
def f():
    """Example
    -------
    >>> from ser.training.brain import EmotionBrain
    """
    from fusion.fuse import load_fusion
    return __import__("ser.inference.recognizer")
'''
    assert violations("ser.nn.pooling", source) == [
        "line 5: ser.nn.pooling (nn) imports ser.training.brain (training); nn may import io, top",
        "line 7: ser.nn.pooling imports fusion.fuse, above the library",
        "line 8: ser.nn.pooling (nn) imports ser.inference.recognizer (inference); nn may import io, top",
    ]


def test_every_module_of_the_library_is_covered_sub_packages_included():
    assert {part_of(m) for m in SER_MODULES} == {"top", *SUBPACKAGES}
    assert "ser.inference.recognizer" in SER_MODULES and "ser.io.system_folder" in SER_MODULES


@pytest.mark.parametrize("path", SER_FILES, ids=SER_MODULES)
def test_each_module_imports_only_what_its_layer_may(path):
    module = _module_name(path)
    if module in EXEMPT:
        pytest.skip(f"{module} maps old module paths to new ones by name (the compatibility table)")
    assert violations(module, path.read_text(encoding="utf-8")) == [], (
        "layering rule: io <- top-level <- nn <- {training | inference}, nothing above the library")


def test_each_sub_package_says_what_it_is_and_what_it_may_import():
    for name in SUBPACKAGES:
        doc = ast.get_docstring(ast.parse((ROOT / "ser" / name / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"ser/{name}/__init__.py: no docstring saying what it may import"


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
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_the_blocker_refuses_an_upper_package():
    done = subprocess.run([sys.executable, "-c", BLOCKED.format(upper=UPPER), "fusion.svm"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "fusion.svm: the library imported fusion" in done.stdout
