"""Shared fixtures: one small mini corpus per test session."""

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from recipes.systems import find_systems

# Nothing is ever fetched from a model hub: tests use local models only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Remembered fingerprints (ser.io.fingerprints) go to a file of this run, not the home folder.
os.environ.setdefault(
    "SER_FINGERPRINT_CACHE", os.path.join(tempfile.gettempdir(), f"msp-ser-fingerprints-{os.getpid()}.json")
)


ROOT = Path(__file__).resolve().parents[1]
#: Threads per test process (and the commands it runs): the cores shared among the pytest-xdist
#: workers, so that ``pytest -n 2`` on 2 cores runs two single-threaded workers, not four threads.
THREADS = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
os.environ["OMP_NUM_THREADS"] = THREADS  # read when torch is first imported (after this file)
#: The Task 1 systems' letters and the Task 2 systems' names, from hparams/ (recipes.systems).
SYSTEMS = tuple(name.removeprefix("system_") for name in find_systems("classes"))
PROFILE = ROOT / "hparams" / "profiles" / "demo.yaml"


def _ignore_in_this_process(signum, frame):
    """A SIGINT handler that does nothing (see :func:`pytest_sessionstart`)."""


def pytest_sessionstart(session):
    import torch

    torch.set_num_threads(int(THREADS))  # in case a plugin imported torch before this file ran
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # pytest-xdist workers ignore SIGINT, and an ignored signal stays ignored in the commands
        # a test runs, so their Ctrl-C handling could not be tested. A handler that does nothing
        # keeps the worker deaf to Ctrl-C, and is reset to the default in every command started.
        signal.signal(signal.SIGINT, _ignore_in_this_process)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def _lazy_module_file_never_imports():
    """Make ``__file__`` of a not-yet-imported SpeechBrain ``LazyModule`` an AttributeError.

    Hypothesis's pytest plugin (at collection) and its data provider (before each example)
    run ``getattr(module, "__file__", None)`` on every module in ``sys.modules``. On a
    SpeechBrain ``LazyModule`` that lookup imports the target, and targets whose optional
    dependency is absent (``k2_integration``, ``spacy``, ``flair``) raise ImportError, which
    ``getattr``'s default does not catch: the whole session dies with INTERNALERROR. An
    unimported module has no file yet, so AttributeError is the honest answer; every other
    attribute keeps SpeechBrain's behaviour (``getattr(self.ensure_module(1), attr)``, called
    from here so its frame check for ``inspect.py`` still sees the real caller).
    """
    importutils = sys.modules.get("speechbrain.utils.importutils")
    if importutils is None or getattr(importutils.LazyModule, "_file_never_imports", False):
        return

    def lazy_getattr(self, attr):
        if attr == "__file__" and self.lazy_module is None:
            raise AttributeError(f"{self!r} is not imported yet: no __file__")
        return getattr(self.ensure_module(1), attr)

    importutils.LazyModule.__getattr__ = lazy_getattr
    importutils.LazyModule._file_never_imports = True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    # A test module or fixture may have imported SpeechBrain after collection.
    _lazy_module_file_never_imports()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # Before hypothesis's own hook, which scans sys.modules (see the function above).
    _lazy_module_file_never_imports()
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory):
    """A small mini corpus (MSP-Podcast v1.11 layout), built once per session."""
    from data_prep.mini_corpus import generate_mini_corpus

    out = tmp_path_factory.mktemp("mini_corpus")
    generate_mini_corpus(out, seed=7, n_turns=96)
    return out


def train_command(system, mini_corpus, results, models, *extra):
    return [
        sys.executable,
        str(ROOT / "train.py"),
        str(ROOT / "hparams" / f"system_{system}.yaml"),
        "--profile",
        str(PROFILE),
        f"--data_folder={mini_corpus}",
        f"--results_folder={results}",
        f"--tiny_models_folder={models}",
        *extra,
    ]


def run(command, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from ser.nn.tiny_models import build_tiny_models

    folder = tmp_path_factory.mktemp("tiny_models")
    build_tiny_models(folder)
    return folder


@pytest.fixture(scope="session")
def debug_results(mini_corpus, tiny_models, tmp_path_factory):
    """Each system trained with --debug on the mini corpus (one shared Whisper cache).

    ``--debug_persistently`` keeps the checkpoints, which inference tests load.
    """
    results = tmp_path_factory.mktemp("results")
    for system in SYSTEMS:
        run(train_command(system, mini_corpus, results, tiny_models, "--debug", "--debug_persistently"))
    return results


#: The Task 2 attribute systems (hparams/<name>.yaml).
ATTRIBUTE_SYSTEMS = tuple(find_systems("attributes"))


def yaml_train_command(name, mini_corpus, results, models, *extra):
    """``train.py hparams/<name>.yaml`` with the demo profile on the test corpus."""
    command = train_command("a", mini_corpus, results, models, *extra)
    command[2] = str(ROOT / "hparams" / f"{name}.yaml")
    return command


@pytest.fixture(scope="session")
def task2_results(mini_corpus, tiny_models, tmp_path_factory):
    """Each attribute system trained with --debug (checkpoints kept) on the mini corpus."""
    results = tmp_path_factory.mktemp("task2_results")
    for name in ATTRIBUTE_SYSTEMS:
        # --debug evaluates 2 batches: batches of 24 cover every dev and Test3 turn (X and O included).
        run(yaml_train_command(name, mini_corpus, results, tiny_models, "--debug", "--debug_persistently",
                               "--batch_size=24"))
    return results


@pytest.fixture(scope="session")
def demo_package(debug_results, tmp_path_factory):
    """The five debug systems and their fusion, exported by ``ser.export`` from copies of their folders.

    Returns ``(package, training)``: the package folder and the copied training folders (shared by
    the tests of a worker: a test that needs them gone renames them away and back).
    """
    import shutil

    from fusion.fuse import fuse_systems
    from ser.inference.export import export_package

    training = tmp_path_factory.mktemp("training")
    for system in SYSTEMS:
        shutil.copytree(debug_results / f"system_{system}" / "1993", training / f"system_{system}" / "1993")
    folders = [training / f"system_{system}" / "1993" for system in SYSTEMS]
    fuse_systems(folders, training / "fusion", folds=2)
    package = tmp_path_factory.mktemp("package") / "my_model"
    export_package(folders, package, training / "fusion")
    return package, training
