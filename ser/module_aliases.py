"""Old module paths of the library, kept importable: one table, one import hook.

YAML files (``!new:ser.encoders.SpeechEncoder``) and exported packages written before the library
had sub-packages name modules such as ``ser.encoders``; users type ``python -m ser.predict``. Each
old path in :data:`MODULE_ALIASES` is the same module object as its new path (not a copy), so classes
built from an old YAML are the library's own classes.

Example
-------
>>> import ser.encoders, ser.nn.encoders
>>> ser.encoders is ser.nn.encoders
True
"""

import importlib
import importlib.abc
import importlib.util
import sys

#: Old path -> the module that holds it now.
MODULE_ALIASES = {
    "ser.encoders": "ser.nn.encoders",
    "ser.cnn_layout": "ser.nn.cnn_layout",
    "ser.pooling": "ser.nn.pooling",
    "ser.model": "ser.nn.model",
    "ser.losses": "ser.nn.losses",
    "ser.tiny_models": "ser.nn.tiny_models",
    "ser.imbalance": "ser.nn.imbalance",
    "ser.audio": "ser.io.audio",
    "ser.atomic_io": "ser.io.atomic",
    "ser.derived": "ser.io.derived_files",
    "ser.skipped": "ser.io.skipped",
    "ser.checkpoints": "ser.io.checkpoints",
    "ser.identity": "ser.io.system_folder",
    "ser.posteriors": "ser.io.posteriors",
    "ser.model_source": "ser.io.model_source",
    "ser.brain": "ser.training.brain",
    "ser.batching": "ser.training.batching",
    "ser.data": "ser.training.datasets",
    "ser.experiment": "ser.training.overrides",
    "ser.optimizer_groups": "ser.training.optimizer_groups",
    "ser.preemption": "ser.training.preemption",
    "ser.run_summary": "ser.training.run_summary",
    "ser.training_curves": "ser.training.curves",
    "ser.evaluation": "ser.training.evaluation_files",
    "ser.timeline": "ser.inference.timeline",
    "ser.export": "ser.inference.export",
    "ser.package": "ser.inference.package",
    "ser.model_card": "ser.inference.model_card",
    "ser.predict": "ser.inference.predict",
    "ser.app": "ser.inference.app",
}


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the module of its new path; ``python -m`` runs the new module's code."""

    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module):
        # The import system has set the alias spec on the shared module: give it its own back.
        module.__spec__ = self.own_spec

    def get_code(self, fullname):
        # ``python -m ser.predict`` (runpy) asks for the code to run as ``__main__``.
        return importlib.util.find_spec(self.target).loader.get_code(self.target)


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in MODULE_ALIASES:
            return None
        return importlib.util.spec_from_loader(name, _AliasLoader(MODULE_ALIASES[name]))


def install():
    """Put the alias finder on ``sys.meta_path`` once (importing :mod:`ser` does it)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
