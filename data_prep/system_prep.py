"""The data stages one sub-system needs, driven by its hparams.

``train.py`` calls :func:`prepare_system_data` (on the main process). In order:

1. Whisper transcription of every turn — only for systems that read
   transcripts (``transcripts: whisper``); cached per utterance and shared
   by all systems through ``whisper_folder``, so D and E transcribe once;
2. consensus relabeling — only when ``relabel_threshold`` is set (system E);
   (``relabeled_csv`` names one computed beforehand, e.g. by
   ``recipes/msp_podcast.sh``: it is used instead);
3. the vote table — only for soft labels (``soft_labels``; the annotators
   scoring under ``soft_label_threshold`` dropped first when it is set);
4. the manifests (``data_prep.msp_prepare``), skipped when done with the
   same options. Turns labelled X or O stay in the train and dev manifests
   of a system with attributes (they have attributes: Task 2 trains and
   scores on them) and in the train manifest of a soft-label system.
   Besides those of ``splits`` (train, valid, test), one manifest per
   labelled split of ``eval_splits`` that the corpus holds (``Test1`` ->
   ``test1``).

Steps 2 to 4 reuse their outputs only while every input and option they were
made from is unchanged (:mod:`ser.io.derived_files`): editing ``labels_detailed.csv``
redoes the relabeling, which redoes the manifests.
"""

import logging
from pathlib import Path

import pandas as pd

from data_prep.consensus import (
    class_count_table,
    relabel_corpus,
    vote_table,
    write_relabeling,
)
from data_prep.corpora import open_corpus
from data_prep.corpora.base import SPLITS
from data_prep.msp_prepare import PreparationError, prepare_msp_podcast
from ser.io.atomic import atomic_write
from ser.io.derived_files import derivation, is_current, mark_current, mark_stale

logger = logging.getLogger(__name__)


def prepare_system_data(hparams):
    """Run the data stages a system's hparams ask for; return manifest paths.

    Parameters
    ----------
    hparams : dict
        Loaded system YAML. Keys read: ``data_folder``, ``manifest_folder``,
        ``splits``, ``eval_splits`` (optional), ``skip_prep``, ``strict_prep``
        (stop at a bad audio file, in transcription too, instead of listing it
        in ``skipped.csv``); for text systems ``transcripts``,
        ``whisper_model``, ``whisper_backend``, ``whisper_folder``; for
        relabeling ``relabel_threshold`` and ``relabel_classes``.

    Returns
    -------
    dict
        Manifest name (train/valid/test, then one lowercase name per
        evaluation split, e.g. ``test1``) → JSON path.
    """
    splits = dict(hparams["splits"])
    extra = eval_split_manifests(hparams.get("eval_splits"), splits)
    if hparams["skip_prep"]:
        manifests = prepare_msp_podcast(
            None, hparams["manifest_folder"], splits={**splits, **extra}, skip_prep=True
        )
        # Prepared before (by the main process, or an earlier run): those that exist.
        absent = [split for name, split in extra.items() if not manifests[name].is_file()]
        _warn_absent(absent, f"no manifest in {hparams['manifest_folder']}")
        return {name: path for name, path in manifests.items() if name not in extra or path.is_file()}
    data_folder = hparams["data_folder"]
    if extra:
        held = set(open_corpus(data_folder).turns(splits=list(extra.values()))["Split_Set"])
        _warn_absent([split for split in extra.values() if split not in held], f"not in {data_folder}")
        extra = {name: split for name, split in extra.items() if split in held}
    splits.update(extra)
    transcripts = _transcripts_source(hparams, splits)
    relabeled_csv = None
    if hparams.get("relabel_threshold") is not None:
        relabeled_csv = _given_relabeling(hparams) if hparams.get("relabeled_csv") else _relabel(hparams)
    soft = bool(hparams.get("soft_labels", False))
    keep_all = {"test"}
    if hparams.get("attributes"):
        keep_all |= {"train", "valid", *extra}  # evaluation splits are scored as dev is
    if soft:
        keep_all.add("train")
    return prepare_msp_podcast(
        data_folder,
        hparams["manifest_folder"],
        splits=splits,
        transcripts=transcripts,
        relabeled_csv=relabeled_csv,
        keep_all_labels=tuple(sorted(keep_all & set(splits))),
        strict=bool(hparams.get("strict_prep", False)),
        votes_csv=_votes(hparams) if soft else None,
    )


def _votes(hparams):
    threshold = hparams.get("soft_label_threshold")
    name = "votes_all.csv" if threshold is None else f"votes_K{float(threshold):g}.csv"
    out = Path(hparams["manifest_folder"]) / name
    if out.is_file():
        return out
    corpus = open_corpus(hparams["data_folder"])
    annotations = corpus.annotations(strict=bool(hparams.get("strict_prep", False)))
    turns = corpus.turns()
    labelled = turns[turns["EmoClass"].notna()].reset_index(drop=True)
    table = vote_table(annotations.table, labelled, threshold=None if threshold is None else float(threshold))
    with atomic_write(out) as stream:
        table.reset_index().to_csv(stream, index=False)
    logger.info("Vote table of %d turns (soft labels) -> %s", len(table), out)
    return out


def eval_split_manifests(eval_splits, splits):
    """Manifest name → ``Split_Set`` of the evaluation splits (the lowercase split name).

    A split that ``splits`` already maps (``Development`` is the ``valid``
    manifest) is not repeated.

    Parameters
    ----------
    eval_splits : list of str or None
        ``Split_Set`` names from the YAML (``[Test1, Test2]``).
    splits : dict
        The YAML's ``splits`` (manifest name → ``Split_Set``).

    Raises
    ------
    PreparationError
        For a name that is not a split of the release, or whose manifest
        name is already taken by ``splits``.

    Example
    -------
    >>> eval_split_manifests(["Development", "Test1", "Test2"],
    ...                      {"train": "Train", "valid": "Development", "test": "Test3"})
    {'test1': 'Test1', 'test2': 'Test2'}
    """
    if eval_splits is None:
        return {}
    if isinstance(eval_splits, str) or not isinstance(eval_splits, (list, tuple)):
        raise PreparationError(
            f"eval_splits must be a list of split names (e.g. [Test1, Test2]), got {eval_splits!r}"
        )
    manifests = {}
    for split in eval_splits:
        if split not in SPLITS:
            raise PreparationError(
                f"eval_splits: unknown Split_Set {split!r}; expected one of {list(SPLITS)}"
            )
        if split in splits.values():
            continue
        name = split.lower()
        if name in splits:
            raise PreparationError(
                f"eval_splits: {split!r} would be manifest {name!r}, which splits maps to {splits[name]!r}"
            )
        manifests[name] = split
    return manifests


def _warn_absent(absent, why):
    if absent:
        logger.warning("eval_splits: %s %s: not scored", ", ".join(absent), why)


def _transcripts_source(hparams, splits):
    choice = hparams.get("transcripts")
    if choice in (None, "human"):
        return choice
    if choice != "whisper":
        raise PreparationError(f"transcripts: must be null, 'human' or 'whisper', not {choice!r}")
    from data_prep.transcribe import transcribe_corpus
    from ser.asr import WhisperSettings

    try:
        whisper = WhisperSettings.from_hparams(hparams)
    except ValueError as error:
        raise PreparationError(f"Whisper options of the YAML: {error}") from None
    # Paper §5.4: Whisper transcripts for the whole corpus, so training and
    # test text come from the same (automatic) source.
    csv, _ = transcribe_corpus(
        data_folder=hparams["data_folder"],
        splits=sorted(set(splits.values())),
        model=hparams["whisper_model"],
        out=hparams["whisper_folder"],
        backend=whisper.backend,
        options=whisper.options,
        strict=bool(hparams.get("strict_prep", False)),
    )
    if csv is None:
        raise RuntimeError(f"transcription of {hparams['data_folder']} is incomplete: see the log")
    return csv


def _given_relabeling(hparams):
    """The relabeling CSV the YAML names, copied beside the manifests (the report reads it there)."""
    given = Path(hparams["relabeled_csv"])
    if not given.is_file():
        raise PreparationError(f"relabeled_csv: {given} does not exist (run python -m data_prep.consensus "
                                "first, or set relabeled_csv: null to compute it here)")
    # Its columns are checked where the manifests read it (data_prep.msp_prepare).
    threshold, classes = float(hparams["relabel_threshold"]), "".join(hparams["relabel_classes"])
    out = Path(hparams["manifest_folder"]) / f"relabeled_K{threshold:g}_{classes}.csv"
    if not out.is_file() or out.read_bytes() != given.read_bytes():
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(out, "wb") as stream:
            stream.write(given.read_bytes())
    logger.info("Consensus relabeling read from %s:\n%s", given, class_count_table(pd.read_csv(given)))
    return out


def _relabel(hparams):
    threshold = float(hparams["relabel_threshold"])
    classes = "".join(hparams["relabel_classes"])
    # The options are in the name (K, classes), so systems with other options keep their own.
    out = Path(hparams["manifest_folder"]) / f"relabeled_K{threshold:g}_{classes}.csv"
    record = out.with_name(out.name + ".made_from.json")
    corpus = open_corpus(hparams["data_folder"])
    strict = bool(hparams.get("strict_prep", False))
    made_from = derivation(
        {path.name: path for path in corpus.label_files()},
        {"threshold": threshold, "addable": list(hparams["relabel_classes"]), "strict": strict},
    )
    if is_current(record, [out], made_from):
        logger.info("Consensus relabeling: %s is up to date with its labels and options", out)
        return out
    mark_stale(record)
    relabeled, skipped = relabel_corpus(
        corpus,
        threshold=threshold,
        addable=tuple(hparams["relabel_classes"]),
        strict=strict,
    )
    write_relabeling(relabeled, skipped, out)
    mark_current(record, made_from)
    logger.info("Consensus relabeling (K = %g):\n%s", threshold, class_count_table(relabeled))
    return out
