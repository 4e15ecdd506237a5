"""Derived files: kept only while every input and option they were made from is unchanged.

One mechanism for every stage that reuses an earlier output (the consensus relabeling, the
manifests, the merged transcripts): the stage lists the files it reads and the options it
applies, and a *record* beside its outputs (JSON) keeps their stamps. The outputs are reused
only when the record exists, every output exists and the stamps and options are the same;
otherwise the stage runs again. The record is removed before outputs change and written
last, so a run stopped half-way never looks done.

An input file is stamped by its size and the SHA-256 of its content (label and transcript
tables: megabytes, hashed in well under a second), so touching or rewriting a file with the
same bytes keeps the outputs, and any edit redoes them; a folder by its entry names; a path
that cannot be read (a symlink loop, no permission) by the reason, so it is a changed input,
not a crash.
"""

import errno
import hashlib
import json
import os
from pathlib import Path

from ser.io.atomic import write_json_atomic


def file_stamp(path):
    """Size and modification time of a file (cheap: a million audio files), None when absent.

    A path that cannot be examined (a symlink loop, no permission) gets ``{"error": reason}``:
    still a stamp, which changes when the path is fixed.

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> file_stamp(folder / "a.wav") is None
    True
    >>> _ = (folder / "a.wav").write_bytes(b"RIFF")
    >>> file_stamp(folder / "a.wav")["size"]
    4
    >>> (folder / "loop.wav").symlink_to(folder / "loop.wav")
    >>> file_stamp(folder / "loop.wav")
    {'error': 'Too many levels of symbolic links'}
    """
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return {"error": error.strerror or errno.errorcode.get(error.errno, str(error))}
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def content_stamp(path):
    """What a derived file depends on in ``path``: its content (file), entry names (folder).

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "labels.csv").write_text("FileName\\n")
    >>> stamp = content_stamp(folder / "labels.csv")
    >>> sorted(stamp), stamp["size"]
    (['path', 'sha256', 'size'], 9)
    >>> content_stamp(folder / "missing.csv")["error"]
    'missing'
    """
    path = Path(path).absolute()
    stamp = {"path": str(path)}
    try:
        if path.is_dir():
            names = sorted(os.listdir(path))
            return {**stamp, "entries": len(names), "sha256": _sha256("\n".join(names).encode())}
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            while block := stream.read(1 << 22):
                digest.update(block)
        return {**stamp, "size": path.stat().st_size, "sha256": digest.hexdigest()}
    except FileNotFoundError:
        return {**stamp, "error": "missing"}
    except OSError as error:
        return {**stamp, "error": error.strerror or str(error)}


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def derivation(inputs, options):
    """The record of what outputs are made from: stamped inputs (name → path) and options.

    Example
    -------
    >>> derivation({}, {"threshold": 0.5})
    {'inputs': {}, 'options': {'threshold': 0.5}}
    """
    stamps = {name: content_stamp(path) if path is not None else None for name, path in inputs.items()}
    # Through JSON, so that a record read back compares equal (tuples become lists, ...).
    return json.loads(json.dumps({"inputs": stamps, "options": options}))


def is_current(record_file, outputs, made_from):
    """Whether ``outputs`` were made from exactly ``made_from`` (see :func:`derivation`).

    Parameters
    ----------
    record_file : str or Path
        The record written by :func:`mark_current`.
    outputs : iterable of path
        Files that must all exist.
    made_from : dict
        :func:`derivation` of this run's inputs and options.

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> labels, out = folder / "labels.csv", folder / "out.csv"
    >>> _ = labels.write_text("a\\n"); _ = out.write_text("derived\\n")
    >>> made_from = derivation({"labels": labels}, {"k": 0.5})
    >>> is_current(folder / "out.json", [out], made_from)
    False
    >>> mark_current(folder / "out.json", made_from)
    >>> is_current(folder / "out.json", [out], made_from)
    True
    >>> _ = labels.write_text("b\\n")  # an input changed: the output is stale
    >>> is_current(folder / "out.json", [out], derivation({"labels": labels}, {"k": 0.5}))
    False
    """
    return read_record(record_file) == made_from and all(Path(path).is_file() for path in outputs)


def read_record(record_file):
    """The record in ``record_file`` without extras (None when absent or unreadable)."""
    try:
        saved = json.loads(Path(record_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict):
        return None
    return {"inputs": saved.get("inputs"), "options": saved.get("options")}


def read_extra(record_file, key, default=None):
    """An extra value saved with the record (``mark_current(..., extra={key: ...})``)."""
    try:
        saved = json.loads(Path(record_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
    return saved.get("extra", {}).get(key, default) if isinstance(saved, dict) else default


def mark_stale(record_file):
    """Remove the record before outputs change: a run stopped half-way never looks done."""
    Path(record_file).unlink(missing_ok=True)


def mark_current(record_file, made_from, extra=None):
    """Write the record (atomically), last, once every output is complete."""
    record = dict(made_from)
    if extra:
        record["extra"] = extra
    write_json_atomic(record_file, record)
