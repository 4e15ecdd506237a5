"""The saved options that make the manifest preparation idempotent.

``prepare_options.json`` is written last, once every manifest and ``skipped.csv``
are complete, and removed before any of them changes. A preparation is skipped
only when that file exists, every output exists, the options match (the input
files by path, size and modification time) and no audio file left out last time
(``skipped_audio``) has changed since: a fixed file is taken in by the next run.
"""

import json
import logging
from pathlib import Path

from data_prep.audio_check import file_stamp
from ser.atomic_io import write_json_atomic

logger = logging.getLogger(__name__)

OPTIONS_FILE = "prepare_options.json"
SKIPPED_AUDIO = "skipped_audio"


def input_stamp(path):
    """Resolved path, size and modification time of an input file.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "labels.csv"
    >>> _ = path.write_text("FileName\\n")
    >>> sorted(input_stamp(path)), input_stamp(path)["size"]
    (['mtime', 'path', 'size'], 9)
    """
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime": stat.st_mtime}


def preparation_options(root, labels_file, splits, transcripts, relabeled_csv, keep_all, missing, strict):
    """The record of everything a preparation's outputs depend on (JSON-ready).

    Parameters
    ----------
    root : Path
        Corpus root.
    labels_file : Path
        The consensus labels file read (CSV or JSON).
    splits, transcripts, relabeled_csv, keep_all, missing, strict
        The arguments of :func:`data_prep.msp_prepare.prepare_msp_podcast`;
        a transcripts or relabeling *file* is recorded by its stamp, so a
        changed file re-runs the preparation.

    Example
    -------
    >>> options = preparation_options(Path("/c"), Path("/c/none.csv"), {"dev": "Development"},
    ...                               None, None, ("test",), "error", False)
    >>> options["labels"], options["strict"]
    (None, False)
    """
    return {
        "data_folder": str(root),
        "labels": input_stamp(labels_file) if Path(labels_file).is_file() else None,
        "splits": dict(splits),
        "transcripts": transcripts if transcripts in (None, "human") else input_stamp(transcripts),
        "relabeled_csv": input_stamp(relabeled_csv) if relabeled_csv else None,
        "keep_all_labels": sorted(keep_all),
        "missing_transcript": missing,
        "strict": bool(strict),
    }


def is_done(save_folder, outputs, options):
    """Whether a complete preparation with these options is in ``save_folder``.

    Parameters
    ----------
    save_folder : Path
        Where the outputs and ``prepare_options.json`` are.
    outputs : iterable of Path
        Files that must all exist.
    options : dict
        From :func:`preparation_options`.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> is_done(folder, [], {"strict": False})
    False
    >>> mark_done(folder, {"strict": False}, skipped_stamps={})
    >>> is_done(folder, [], {"strict": False}), is_done(folder, [], {"strict": True})
    (True, False)
    """
    options_path = Path(save_folder) / OPTIONS_FILE
    if not options_path.is_file() or not all(Path(path).is_file() for path in outputs):
        return False
    try:
        saved = json.loads(options_path.read_text())
    except json.JSONDecodeError:
        return False
    skipped = saved.pop(SKIPPED_AUDIO, None) if isinstance(saved, dict) else None
    if saved != json.loads(json.dumps(options)) or not isinstance(skipped, dict):
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
    """Remove the options file before outputs change (a half-done run never looks done)."""
    (Path(save_folder) / OPTIONS_FILE).unlink(missing_ok=True)


def mark_done(save_folder, options, skipped_stamps):
    """Write the options file (atomically), with the stamps of the skipped audio files."""
    write_json_atomic(Path(save_folder) / OPTIONS_FILE, {**options, SKIPPED_AUDIO: skipped_stamps})
