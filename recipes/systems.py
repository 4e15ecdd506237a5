"""Which systems there are: one YAML each in ``hparams/``, found by name, never listed by hand.

``hparams/system_<letter>.yaml`` are the Task 1 systems the SVM fuses (A-E today);
``hparams/task2_<name>.yaml`` the Task 2 attribute systems. Adding a system F is adding
``hparams/system_f.yaml`` (and a profile key when it needs a new model): the demo, the real
recipe (``recipes/msp_podcast.sh``, the same globs), the SLURM jobs and the tests pick it up.
Extra folders (``recipes.demo --extra_hparams DIR``) are searched after ``hparams/``.
"""

from pathlib import Path

from ser.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
HPARAMS = ROOT / "hparams"
#: The file-name prefix of each kind of system.
KINDS = {"classes": "system_", "attributes": "task2_"}


class DuplicateSystemError(UserInputError, ValueError):
    """Two hparams folders define a system of the same name."""


def find_systems(kind="classes", extra_folders=()):
    """``{name: yaml path}`` of the systems of ``kind`` (name: the file's stem), sorted by name.

    Parameters
    ----------
    kind : str
        ``classes`` (``system_*.yaml``, Task 1) or ``attributes`` (``task2_*.yaml``, Task 2).
    extra_folders : sequence of path
        Searched after ``hparams/``; a name found twice is an error.

    Example
    -------
    >>> list(find_systems())
    ['system_a', 'system_b', 'system_c', 'system_d', 'system_e']
    >>> list(find_systems("attributes"))
    ['task2_d', 'task2_wavlm']
    """
    prefix = KINDS[kind]
    found = {}
    for folder in (HPARAMS, *map(Path, extra_folders)):
        for path in sorted(folder.glob(f"{prefix}*.yaml")):
            known = found.get(path.stem)
            if known is not None and known.resolve() != path.resolve():
                raise DuplicateSystemError(f"{path}: system {path.stem} is already defined by {known}")
            found[path.stem] = path
    return dict(sorted(found.items()))
