"""The record that makes the manifest preparation idempotent (:mod:`ser.io.derived_files`).

``prepare_options.json`` is written last, once every manifest and ``skipped.csv``
are complete, and removed before any of them changes. A preparation is skipped
only when that file exists, every output exists, the inputs (labels file,
transcripts, relabeled labels, the audio folder's entries) have the same content,
the options match, and no audio file left out last time (``skipped_audio``) has
changed since: a fixed file is taken in by the next run.
"""

import logging
from pathlib import Path

from ser.io.derived_files import derivation, file_stamp, is_current, mark_current, mark_stale, read_extra

logger = logging.getLogger(__name__)

OPTIONS_FILE = "prepare_options.json"
SKIPPED_AUDIO = "skipped_audio"


def preparation_options(root, labels_file, splits, transcripts, relabeled_csv, keep_all, missing, strict,
                        audio_dir=None, transcripts_dir=None):
    """What a preparation's outputs are made from: its inputs and options.

    The record :func:`ser.io.derived_files.derivation` keys the outputs by.

    Parameters
    ----------
    root : Path
        Corpus root.
    labels_file : Path
        The consensus labels file read (CSV or JSON).
    splits, transcripts, relabeled_csv, keep_all, missing, strict
        The arguments of :func:`data_prep.msp_prepare.prepare_msp_podcast`;
        a transcripts or relabeling *file* is an input (its content is stamped), so a
        changed file re-runs the preparation; human transcripts stamp ``Transcripts/``.
    audio_dir, transcripts_dir : Path, optional
        The corpus reader's audio and human-transcript folders (default ``Audios/``,
        ``Transcripts/`` under ``root``): their entry names are stamped.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> made_from = preparation_options(root, root / "none.csv", {"dev": "Development"},
    ...                                 None, None, ("test",), "error", False)
    >>> made_from["inputs"]["labels"]["error"], made_from["options"]["strict"]
    ('missing', False)
    """
    if transcripts in (None, "human"):
        transcripts_dir = Path(transcripts_dir) if transcripts_dir else Path(root) / "Transcripts"
        transcripts_input = transcripts_dir if transcripts == "human" else None
    else:
        transcripts_input = transcripts
    inputs = {
        "labels": labels_file,
        "audio_folder": Path(audio_dir) if audio_dir else Path(root) / "Audios",
        "transcripts": transcripts_input,
        "relabeled_csv": relabeled_csv,
    }
    options = {
        "data_folder": str(root),
        "splits": dict(splits),
        "transcripts": transcripts if transcripts in (None, "human") else "file",
        "keep_all_labels": sorted(keep_all),
        "missing_transcript": missing,
        "strict": bool(strict),
    }
    return derivation(inputs, options)


def is_done(save_folder, outputs, made_from):
    """Whether a complete preparation made from ``made_from`` is in ``save_folder``.

    Parameters
    ----------
    save_folder : Path
        Where the outputs and ``prepare_options.json`` are.
    outputs : iterable of Path
        Files that must all exist.
    made_from : dict
        From :func:`preparation_options`.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> is_done(folder, [], {"inputs": {}, "options": {"strict": False}})
    False
    >>> mark_done(folder, {"inputs": {}, "options": {"strict": False}}, skipped_stamps={})
    >>> is_done(folder, [], {"inputs": {}, "options": {"strict": False}})
    True
    >>> is_done(folder, [], {"inputs": {}, "options": {"strict": True}})
    False
    """
    record = Path(save_folder) / OPTIONS_FILE
    if not is_current(record, outputs, made_from):
        return False
    skipped = read_extra(record, SKIPPED_AUDIO)
    if not isinstance(skipped, dict):
        return False
    changed = [path for path, stamp in skipped.items() if file_stamp(path) != stamp]
    if changed:
        logger.info(
            "%d audio file(s) left out last time have changed (e.g. %s): preparing again",
            len(changed),
            changed[0],
        )
        return False
    return True


def mark_undone(save_folder):
    """Remove the record before outputs change (a half-done run never looks done)."""
    mark_stale(Path(save_folder) / OPTIONS_FILE)


def mark_done(save_folder, made_from, skipped_stamps):
    """Write the record (atomically), with the stamps of the skipped audio files."""
    mark_current(Path(save_folder) / OPTIONS_FILE, made_from, extra={SKIPPED_AUDIO: skipped_stamps})
