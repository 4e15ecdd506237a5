"""A trained system's folder: its layout (the one place that knows it) and who the system is.

``train.py`` writes one folder per run, ``<results>/<system>/<seed>/``::

    hyperparams.yaml             the YAML with every override (rebuilds the network)
    system.json                  who the system is (below)
    save/CKPT+*/                 checkpoints
    posteriors/<split>.csv       Task 1 posteriors (:func:`posteriors_file`)
    attributes/<split>.csv       Task 2 predictions (:func:`attributes_file`)
    metrics.json                 dev results; metrics_<split>.json for other labelled splits
    manifests/<split>.json       the turns (and labels) it was evaluated on

A command may be given the run folder or the system folder above it when that holds one seed
folder (:func:`run_folder`); a system's short name is its folder's, the seed folder skipped
(:func:`short_names`).

A folder name says where a system is, not what it is: two runs of system A may sit in folders
of the same name, and the same run may be copied anywhere. ``train.py`` therefore writes, next
to the posteriors it evaluated::

    {"name": "system_a",                      # the hparams file's stem
     "targets": {"classes": ["A", ..., "U"],   # the class order of posteriors/*.csv
                 "attributes": []},           # Task 2: the column order of attributes/*.csv
     "checkpoint": "CKPT+2026-11-30+10-00-00+00",
     "fingerprint": "sha256:…",               # of the kept checkpoint's model.ckpt
     "hparams": "hyperparams.yaml"}

The fusion records the identities of the systems it was trained on, and inference accepts
exactly those (:func:`match_identities`): same name, targets and fingerprint, wherever the
folder is. ``targets`` maps each kind of target to its order (``classes``, ``attributes``), so
another kind of target fits beside them.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ser.errors import UserInputError
from ser.io.atomic import write_json_atomic
from ser.io.fingerprints import fingerprint_file

IDENTITY_FILE = "system.json"
HPARAMS_FILE = "hyperparams.yaml"
CHECKPOINTS_DIR = "save"
POSTERIORS_DIR = "posteriors"
ATTRIBUTES_DIR = "attributes"
MANIFESTS_DIR = "manifests"
#: The recoverable of a checkpoint that holds the network's weights.
MODEL_FILE = "model.ckpt"


class SystemFolderError(UserInputError, FileNotFoundError):
    """A folder given as a trained system that is not one (no hyperparams.yaml, no checkpoint)."""


def posteriors_file(folder, split):
    """``<folder>/posteriors/<split>.csv``: the Task 1 posteriors of one evaluated split."""
    return Path(folder) / POSTERIORS_DIR / f"{split}.csv"


def attributes_file(folder, split):
    """``<folder>/attributes/<split>.csv``: the Task 2 predictions of one evaluated split."""
    return Path(folder) / ATTRIBUTES_DIR / f"{split}.csv"


def metrics_file(folder, split):
    """The metrics of one evaluated split: ``metrics.json`` for dev, ``metrics_<split>.json`` for another
    labelled split, None for the challenge test set (its labels are hidden).

    Example
    -------
    >>> str(metrics_file("out", "valid")), str(metrics_file("out", "test1")), metrics_file("out", "test")
    ('out/metrics.json', 'out/metrics_test1.json', None)
    """
    name = {"valid": "metrics.json", "test": None}.get(split, f"metrics_{split}.json")
    return Path(folder) / name if name else None


def manifest_file(folder, split):
    """``<folder>/manifests/<split>.json``: the turns one split was evaluated on, with their labels."""
    return Path(folder) / MANIFESTS_DIR / f"{split}.json"


def run_folder(path, marker=HPARAMS_FILE):
    """The run folder holding ``marker``: ``path`` itself, or its only seed sub-folder that holds it.

    Raises
    ------
    SystemFolderError
        If ``path`` is no folder, neither it nor a sub-folder holds ``marker``, or several do.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()) / "system_a"
    >>> (root / "1993" / "posteriors").mkdir(parents=True)
    >>> run_folder(root, "posteriors").name
    '1993'
    """
    path = Path(path)
    if not path.is_dir():
        raise SystemFolderError(f"{path}: no such system folder")
    if (path / marker).exists():
        return path
    candidates = sorted(p.parent for p in path.glob(f"*/{marker}"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise SystemFolderError(f"{path}: not a system folder written by train.py (no {marker} in it "
                                "or in a seed sub-folder)")
    raise SystemFolderError(f"{path}: several runs hold {marker} ({', '.join(p.name for p in candidates)}); "
                            "pass the one to use")


def folder_system_name(folder):
    """The system a run folder belongs to, by its path: the seed folder is skipped.

    Example
    -------
    >>> folder_system_name("results/system_d/1993"), folder_system_name("runs/wavlm")
    ('system_d', 'wavlm')
    """
    folder = Path(folder)
    return folder.parent.name if folder.name.isdigit() else folder.name


def short_names(folders):
    """Short unique names for run folders (``results/system_d/1993`` -> ``system_d``).

    Two seeds of one system keep their seed (``system_d/1993``).

    Example
    -------
    >>> short_names(["r/system_a/1993", "r/system_d/1993"])
    ['system_a', 'system_d']
    >>> short_names(["r/system_a/1", "r/system_a/2"])
    ['system_a/1', 'system_a/2']
    """
    paths = [Path(folder) for folder in folders]
    short = [folder_system_name(p) for p in paths]
    if len(set(short)) == len(short):
        return short
    return [f"{p.parent.name}/{p.name}" for p in paths]


class SystemIdentityError(UserInputError, ValueError):
    """A system folder whose identity is missing, unreadable, or not the one expected."""


@dataclass(frozen=True)
class SystemIdentity:
    """What makes a trained system itself (see the module docstring)."""

    name: str
    targets: dict = field(default_factory=dict)
    checkpoint: str | None = None
    fingerprint: str | None = None
    hparams: str = HPARAMS_FILE

    def short(self):
        """``system_a (sha256:0123456789ab)``: for messages."""
        return f"{self.name} ({(self.fingerprint or 'no fingerprint')[:19]})"

    def as_dict(self):
        return asdict(self)


def display_name(name):
    """How reports and the fusion name a system: ``system_e`` -> ``Sub-System E``; others as they are.

    Example
    -------
    >>> display_name("system_e"), display_name("task2_wavlm")
    ('Sub-System E', 'task2_wavlm')
    """
    prefix = "system_"
    return f"Sub-System {name[len(prefix):].upper()}" if name.startswith(prefix) and name != prefix else name


def write_identity(folder, name, targets, checkpoint_dir, hparams=HPARAMS_FILE):
    """Write ``<folder>/system.json`` for the checkpoint ``checkpoint_dir`` (atomically).

    Parameters
    ----------
    folder : str or Path
        The system's output folder.
    name : str
        The system's name (``train.py``: the hparams file's stem).
    targets : dict
        Target name → list of its classes in posterior column order.
    checkpoint_dir : str or Path
        The checkpoint the posteriors come from (holds ``model.ckpt``).
    hparams : str
        The hparams file in ``folder``.

    Returns
    -------
    SystemIdentity

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "save" / "CKPT+1").mkdir(parents=True)
    >>> _ = (folder / "save" / "CKPT+1" / "model.ckpt").write_bytes(b"weights")
    >>> targets = {"classes": list("ACDFHNSU"), "attributes": []}
    >>> written = write_identity(folder, "system_a", targets, folder / "save" / "CKPT+1")
    >>> read_identity(folder) == written, written.checkpoint
    (True, 'CKPT+1')
    """
    checkpoint_dir = Path(checkpoint_dir)
    identity = SystemIdentity(
        name=str(name),
        targets={key: list(value) for key, value in targets.items()},
        checkpoint=checkpoint_dir.name,
        fingerprint=fingerprint_file(checkpoint_dir / MODEL_FILE),
        hparams=hparams,
    )
    write_json_atomic(Path(folder) / IDENTITY_FILE, identity.as_dict(), indent=2)
    return identity


def read_identity(folder, required=True):
    """The :class:`SystemIdentity` in ``<folder>/system.json``.

    Parameters
    ----------
    folder : str or Path
    required : bool
        When False, a folder without ``system.json`` gives None.

    Raises
    ------
    SystemIdentityError
        Naming the file: absent (when required), not JSON, or without a ``name``.

    Example
    -------
    >>> import tempfile
    >>> read_identity(tempfile.mkdtemp(), required=False) is None
    True
    """
    path = Path(folder) / IDENTITY_FILE
    if not path.is_file():
        if not required:
            return None
        raise SystemIdentityError(
            f"{path}: missing; train.py writes it beside the posteriors (re-run the same train.py "
            "command on this folder: it resumes, evaluates and writes it)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fields = SystemIdentity.__dataclass_fields__
        return SystemIdentity(**{key: value for key, value in data.items() if key in fields})
    except (ValueError, TypeError) as error:  # JSONDecodeError, UnicodeDecodeError, no "name"
        raise SystemIdentityError(f"{path}: not a system identity written by train.py ({error})") from None


def match_identities(expected, given, where):
    """Order of ``given`` that feeds a model trained on the systems ``expected``.

    Parameters
    ----------
    expected : list of SystemIdentity
        What the model (the fusion) was trained on, in its order.
    given : list of (str, SystemIdentity)
        Folder and identity of each system the user gave.
    where : str
        The model's folder, for messages.

    Returns
    -------
    list of int
        For each expected system, its index in ``given``.

    Raises
    ------
    SystemIdentityError
        Naming the system that differs (another run of the same system, other targets), the
        one missing, or the one the model was not trained on.

    Example
    -------
    >>> a = SystemIdentity("system_a", fingerprint="sha256:aa")
    >>> b = SystemIdentity("system_b", fingerprint="sha256:bb")
    >>> match_identities([a, b], [("copy/b", b), ("copy/a", a)], "fusion/")
    [1, 0]
    >>> other_a = SystemIdentity("system_a", fingerprint="sha256:cc")
    >>> match_identities([a, b], [("runs/a2", other_a), ("copy/b", b)], "fusion/")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.io.system_folder.SystemIdentityError: fusion/: runs/a2 is another run of system_a ...
    """
    order = []
    for identity in expected:
        same = [i for i, (_, other) in enumerate(given) if other == identity]
        if same:
            order.append(same[0])
            continue
        namesakes = [(folder, other) for folder, other in given if other.name == identity.name]
        if namesakes:
            folder, other = namesakes[0]
            same_targets = other.targets == identity.targets
            what = "another run of" if same_targets else "a version with other targets of"
            raise SystemIdentityError(
                f"{where}: {folder} is {what} {identity.name} (checkpoint {other.checkpoint}, "
                f"{other.fingerprint}) than the fusion was trained on (checkpoint {identity.checkpoint}, "
                f"{identity.fingerprint}): pass the fused run's folder, or fuse again"
            )
        raise SystemIdentityError(
            f"{where}: the fusion was trained on {', '.join(e.name for e in expected)}; "
            f"{identity.short()} is not among the systems given: pass exactly the fused systems"
        )
    extra = [(folder, identity) for i, (folder, identity) in enumerate(given) if i not in order]
    if extra:
        folder, identity = extra[0]
        raise SystemIdentityError(
            f"{where}: the fusion was not trained on {folder} ({identity.short()}); "
            "pass exactly the fused systems"
        )
    return order
