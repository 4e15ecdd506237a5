"""Read and check what the sub-systems hand to the fusion.

A system folder (written by ``train.py``) holds ``posteriors/valid.csv``,
``posteriors/test.csv`` and ``manifests/valid.json``. The fusion needs all
systems to cover the same turns, every row to be a probability vector, and
the systems to agree on the dev labels and speakers: anything else is an
error naming the system, the file and the turn. Extra labelled splits
(``posteriors/test1.csv`` + ``manifests/test1.json``, ...) that every system
holds are scored too (:func:`load_labelled_splits`).
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ser.emotions import EMOTIONS
from ser.errors import UserInputError
from ser.io.posteriors import read_posteriors
from ser.io.system_folder import (
    MANIFESTS_DIR,
    POSTERIORS_DIR,
    SystemIdentity,
    display_name,
    folder_system_name,
    manifest_file,
    posteriors_file,
    read_identity,
    run_folder,
)

logger = logging.getLogger(__name__)

__all__ = ["FusionInputError", "SystemOutputs", "resolve_system_dir", "system_name", "load_systems",
           "read_dev_labels", "stack_features", "load_labelled_splits"]

#: The output splits every system writes (dev, Test3), whichever corpus splits they come from.
SPLITS = ("valid", "test")
# Files are written with 6 decimals: 8 rounded values sum to 1 within 4e-6.
SUM_TOLERANCE = 1e-3


class FusionInputError(UserInputError, ValueError):
    """What the systems hand to the fusion is missing or inconsistent (names system, file, turn)."""


@dataclass
class SystemOutputs:
    """One sub-system: display name, folder, posteriors per split (DataFrames by FileName), identity.

    ``identity`` is the folder's ``system.json`` (:mod:`ser.io.system_folder`), None for posteriors that
    were not written by ``train.py``.
    """

    name: str
    folder: Path
    posteriors: dict
    identity: SystemIdentity | None = None

    @property
    def classes(self):
        """The class order of its posteriors: its identity's ``targets``, else the 8 emotions."""
        declared = self.identity.targets.get("classes") if self.identity else None
        return tuple(declared) if declared else EMOTIONS


def resolve_system_dir(path):
    """The run folder holding ``posteriors/``: ``path`` itself or its only seed sub-folder."""
    return run_folder(path, POSTERIORS_DIR)


def system_name(folder, identity=None):
    """Display name of a system: from its ``system.json`` (``system_e`` -> ``Sub-System E``).

    Only posteriors that ``train.py`` did not write (no ``system.json``) are named after their
    folder (its seed sub-folder's parent).

    Example
    -------
    >>> system_name("anywhere/1993", SystemIdentity("system_e", {})), system_name("runs/wavlm/1993")
    ('Sub-System E', 'wavlm')
    """
    if identity is not None:
        return display_name(identity.name)
    return display_name(folder_system_name(folder))


def _check_probabilities(table, path):
    values = table.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = (~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1)
           | (np.abs(values.sum(axis=1) - 1.0) > SUM_TOLERANCE))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise FusionInputError(
            f"{path}: line {row + 2} (file {table.index[row]}) is not a probability row "
            f"({table.iloc[row].tolist()}): values must be non-negative and sum to 1; "
            f"{int(bad.sum())} such row(s)"
        )
    duplicated = table.index[table.index.duplicated()]
    if len(duplicated):
        raise FusionInputError(f"{path}: file {duplicated[0]} appears more than once")
    return pd.DataFrame(values, index=table.index, columns=table.columns)


def _load_system(path):
    folder = resolve_system_dir(path)
    # Who the system is, and its class order, come from train.py's system.json.
    identity = read_identity(folder, required=False)
    system = SystemOutputs(system_name(folder, identity), folder, {}, identity)
    for split in SPLITS:
        csv = posteriors_file(folder, split)
        if not csv.is_file():
            raise FusionInputError(f"{csv}: missing; every system must give valid and test posteriors")
        system.posteriors[split] = _check_probabilities(read_posteriors(csv, system.classes), csv)
    return system


def _sample(names, limit=5):
    names = sorted(names)
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def check_same_files(systems, split):
    """Every system's ``split`` posteriors cover the first system's files, no more, no fewer.

    Raises
    ------
    FusionInputError
        Naming the system and some of the files that differ.
    """
    first = systems[0]
    expected = first.posteriors[split].index
    for other in systems[1:]:
        names = other.posteriors[split].index
        missing, extra = expected.difference(names), names.difference(expected)
        if len(missing) or len(extra):
            raise FusionInputError(
                f"{other.name} ({other.folder}): its {split} posteriors lack {len(missing)} file(s) of "
                f"{first.name}: {_sample(missing)}; and have {len(extra)} it lacks: {_sample(extra)}"
            )


def load_systems(system_dirs):
    """Load the systems and check they cover the same turns (rows sorted by FileName).

    Raises
    ------
    FusionInputError
        Naming the system and some of the files that differ from the first
        system's, or a bad posterior row (file, line).

    Example
    -------
    >>> import tempfile
    >>> from ser.io.posteriors import write_posteriors
    >>> root = Path(tempfile.mkdtemp())
    >>> for system, files in (("system_a", ["x.wav"]), ("system_b", ["y.wav"])):
    ...     for split in SPLITS:
    ...         write_posteriors(root / system / "posteriors" / f"{split}.csv", files, np.full((1, 8), .125))
    >>> load_systems([root / "system_a", root / "system_b"])
    Traceback (most recent call last):
    ...
    fusion.inputs.FusionInputError: Sub-System B (...system_b): its valid posteriors lack 1 file(s) of \
Sub-System A: x.wav; and have 1 it lacks: y.wav
    """
    if not system_dirs:
        raise FusionInputError("no system to fuse")
    systems = [_load_system(path) for path in system_dirs]
    for other in systems[1:]:
        if other.classes != systems[0].classes:
            raise FusionInputError(
                f"{other.name} ({other.folder}): classes {' '.join(other.classes)}; {systems[0].name} has "
                f"{' '.join(systems[0].classes)}: the fused systems must share one class order"
            )
    seen = {}
    for system in systems:  # two runs of one system would otherwise share a column name
        count = seen[system.name] = seen.get(system.name, 0) + 1
        if count > 1:
            system.name = f"{system.name} ({count})"
    for split in SPLITS:
        check_same_files(systems, split)
    for system in systems:
        for split in SPLITS:
            system.posteriors[split] = system.posteriors[split].sort_index()
    return systems


def read_dev_labels(systems, file_names):
    """Dev labels and speakers of ``file_names`` from each system's ``manifests/valid.json``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Class letters and speaker ids (str), in the order of ``file_names``.

    Raises
    ------
    FusionInputError
        If a manifest lacks a turn, holds a label outside the 8 classes, or
        disagrees with the first system's manifest (names the turns).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "manifests").mkdir()
    >>> _ = (folder / "manifests" / "valid.json").write_text(
    ...     json.dumps({"t1": {"emotion": "S", "speaker": 12}}))
    >>> read_dev_labels([SystemOutputs("A", folder, {})], ["t1.wav"])
    (array(['S'], dtype='<U1'), array(['12'], dtype='<U2'))
    """
    reference, classes = None, systems[0].classes if systems else EMOTIONS
    for system in systems:
        path = manifest_file(system.folder, "valid")
        if not path.is_file():
            raise FusionInputError(f"{path}: missing; the fusion reads dev labels and speakers from it")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise FusionInputError(f"{path}: not valid JSON ({error})") from None
        rows = []
        for name in file_names:
            entry = manifest.get(Path(name).stem)
            if entry is None:
                raise FusionInputError(
                    f"{path}: no entry {Path(name).stem!r} for dev turn {name} (in posteriors)"
                )
            if entry.get("emotion") not in classes or "speaker" not in entry:
                raise FusionInputError(f"{path}: entry {Path(name).stem!r} needs 'emotion' in "
                                 f"{' '.join(classes)} and a 'speaker'; has {entry}")
            rows.append((entry["emotion"], str(entry["speaker"])))
        if reference is None:
            reference = (path, rows)
        elif rows != reference[1]:
            differ = [n for n, a, b in zip(file_names, rows, reference[1], strict=True) if a != b]
            raise FusionInputError(f"{path}: label or speaker of {len(differ)} dev turn(s) differ from "
                             f"{reference[0]}: {_sample(differ)}")
    labels, speakers = zip(*reference[1], strict=True) if reference[1] else ((), ())
    if not labels:
        raise FusionInputError(f"{reference[0]}: no dev turn to train the fusion on")
    return np.asarray(labels), np.asarray(speakers)


def stack_features(systems, split, file_names):
    """Concatenate the systems' posteriors of ``split`` into ``(n, 8 * n_systems)``, in system order.

    Example
    -------
    >>> table = pd.DataFrame(np.eye(8)[:2], index=["a.wav", "b.wav"], columns=list(EMOTIONS))
    >>> two = [SystemOutputs(n, Path(n), {"valid": table}) for n in "xy"]
    >>> stack_features(two, "valid", ["b.wav"])[0, [1, 9]].tolist()
    [1.0, 1.0]
    """
    return np.hstack([s.posteriors[split].loc[list(file_names)].to_numpy() for s in systems])


def _labelled_split_names(folder):
    posteriors = {p.stem for p in (folder / POSTERIORS_DIR).glob("*.csv")}
    manifests = {p.stem for p in (folder / MANIFESTS_DIR).glob("*.json")}
    return (posteriors & manifests) - set(SPLITS)


def load_labelled_splits(systems):
    """The extra labelled splits that every system scored, e.g. Test1 and Test2 (key ``test1``).

    ``train.py`` writes, for each labelled split of its YAML besides dev,
    ``posteriors/<key>.csv`` and ``manifests/<key>.json`` (labels as in ``valid.json``).
    A split counts when every system has both files; the posteriors are loaded into
    ``system.posteriors[key]`` with the checks of :func:`load_systems`. A split only
    some systems have is left out (and logged).

    Returns
    -------
    dict
        Split key -> ``(file names, class letters)``, both sorted by file name; ``{}`` when
        the systems share no such split.

    Raises
    ------
    FusionInputError
        If the systems' posteriors of a shared split cover different turns, a turn lacks a
        label in 8 classes, or the systems' labels disagree (names the file and turns).

    Example
    -------
    >>> import tempfile
    >>> from ser.io.posteriors import write_posteriors
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_posteriors(folder / "posteriors" / "test1.csv", ["t.wav"], np.full((1, 8), .125))
    >>> (folder / "manifests").mkdir()
    >>> _ = (folder / "manifests" / "test1.json").write_text(json.dumps({"t": {"emotion": "S"}}))
    >>> load_labelled_splits([SystemOutputs("A", folder, {})])
    {'test1': (['t.wav'], array(['S'], dtype='<U1'))}
    """
    shared = set.intersection(*(_labelled_split_names(s.folder) for s in systems)) if systems else set()
    partial = set.union(set(), *(_labelled_split_names(s.folder) for s in systems)) - shared
    if partial:
        logger.warning("split(s) %s scored by only some of the systems: not fused",
                       ", ".join(sorted(partial)))
    splits = {}
    for split in sorted(shared):
        for system in systems:
            csv = posteriors_file(system.folder, split)
            table = read_posteriors(csv, system.classes)
            system.posteriors[split] = _check_probabilities(table, csv).sort_index()
        check_same_files(systems, split)
        names = systems[0].posteriors[split].index
        splits[split] = (names.tolist(), _read_split_labels(systems, split, names.tolist()))
    return splits


def _read_split_labels(systems, split, file_names):
    reference, classes = None, systems[0].classes
    for system in systems:
        path = manifest_file(system.folder, split)
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise FusionInputError(f"{path}: not valid JSON ({error})") from None
        labels = []
        for name in file_names:
            emotion = (manifest.get(Path(name).stem) or {}).get("emotion")
            if emotion not in classes:
                raise FusionInputError(f"{path}: turn {name} (in posteriors/{split}.csv) needs an 'emotion' "
                                       f"in {' '.join(classes)}; has {manifest.get(Path(name).stem)}")
            labels.append(emotion)
        if reference is None:
            reference = (path, labels)
        elif labels != reference[1]:
            differ = [n for n, a, b in zip(file_names, labels, reference[1], strict=True) if a != b]
            raise FusionInputError(f"{path}: label of {len(differ)} turn(s) differ from {reference[0]}: "
                             f"{_sample(differ)}")
    return np.asarray(reference[1])
