"""Per-utterance transcript cache (append-only JSONL) and the transcript CSV files.

Layout under ``<out>/cache/``::

    <backend>-<model>-<hash>/options.json      what produced these transcripts
    <backend>-<model>-<hash>/shard-1of4.jsonl  one line per turn, one file per shard

The folder name hashes the backend, model and decoding options, so a run with
another model or beam size starts a fresh folder and never reuses old lines.
Each line is ``{"FileName": ..., "Transcript": ..., "seconds": ...}``, or
``{"FileName": ..., "skipped": reason}`` for a turn whose audio is bad. Lines
are flushed and fsynced after every batch; a process killed mid-write leaves at
most one cut last line, which :class:`TranscriptCache` truncates on start.
"""

import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import re
from pathlib import Path

from data_prep.corpora.text_files import LabelFileError, read_text
from ser.errors import UserInputError
from ser.io.atomic import atomic_write

logger = logging.getLogger(__name__)

OPTIONS_FILE = "options.json"


class CacheError(UserInputError, RuntimeError):
    """A cache file that is corrupt beyond a cut last line, or already in use."""


def cache_folder_name(key):
    """Folder name of a cache key: readable prefix plus a hash of every option.

    Example
    -------
    >>> name = cache_folder_name({"backend": "faster-whisper", "model": "large-v3", "beam": 5})
    >>> name.startswith("faster-whisper-large-v3-"), len(name.split("-")[-1])
    (True, 10)
    """
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    model = re.sub(r"[^A-Za-z0-9.-]+", "_", str(key.get("model", "model")))[:40]
    return f"{key.get('backend', 'whisper')}-{model}-{digest}"


def _parse_lines(path, data, tolerate_cut_end):
    """Records of JSONL bytes, the byte length of their valid prefix, and whether the end was cut.

    A write cut short leaves a tail without its newline (or, at worst, a last
    line that is not valid JSON); only the end of a file may be damaged so.
    """
    complete, _, tail = data.rpartition(b"\n")
    lines = complete.split(b"\n") if complete or _ else []
    records, valid_length = [], 0
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "FileName" not in record:
                raise ValueError("not an object with a FileName")
        except ValueError as error:
            if number == len(lines) and not tail and tolerate_cut_end:
                return records, valid_length, True
            raise CacheError(f"{path}, line {number}: corrupt cache line ({error})") from error
        records.append(record)
        valid_length += len(line) + 1
    if tail and not tolerate_cut_end:
        raise CacheError(f"{path}, line {len(lines) + 1}: cut line (no newline at end of file)")
    return records, valid_length, bool(tail)


class TranscriptCache:
    """Append-only JSONL cache of one shard, reading every shard of the same key.

    Parameters
    ----------
    root : str or Path
        ``<out>/cache``.
    key : dict
        Backend, model and decoding options (JSON-serialisable).
    shard : str or None
        Shard label used in the file name, e.g. ``"1of2"``; ``None`` opens the
        cache read-only (merging).

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with TranscriptCache(root, {"model": "m"}, "1of1") as cache:
    ...     cache.append([{"FileName": "a.wav", "Transcript": "hi", "seconds": 1.0}])
    >>> with TranscriptCache(root, {"model": "m"}, "1of1") as cache:
    ...     cache.records()["a.wav"]["Transcript"]
    'hi'
    """

    def __init__(self, root, key, shard):
        self.key = key
        self.directory = Path(root) / cache_folder_name(key)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._check_options()
        self.path = self._handle = None
        if shard is None:
            return
        self.path = self.directory / f"shard-{shard}.jsonl"
        self._handle = open(self.path, "ab")
        try:
            # Two processes appending to one shard file would interleave lines.
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            self._handle.close()
            raise CacheError(f"{self.path}: in use by another process (same shard running twice?)") from error
        self._repair_cut_end()

    def _check_options(self):
        options_path = self.directory / OPTIONS_FILE
        if options_path.is_file():
            try:
                saved = json.loads(options_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise CacheError(
                    f"{options_path}: corrupt ({error}), so what produced the transcripts of "
                    f"{self.directory} is unknown; move that folder away to transcribe again"
                ) from None
            if saved != self.key:
                raise CacheError(
                    f"{options_path}: cache options {saved} differ from this run's {self.key}; "
                    "refusing to mix transcripts (move that folder away)"
                )
        else:
            with atomic_write(options_path) as stream:
                stream.write(json.dumps(self.key, indent=2, sort_keys=True) + "\n")

    def _repair_cut_end(self):
        data = self.path.read_bytes()
        _, valid_length, was_cut = _parse_lines(self.path, data, tolerate_cut_end=True)
        if was_cut:
            logger.warning(
                "%s: last line cut mid-write (%d bytes), truncated; that turn will be redone",
                self.path, len(data) - valid_length,
            )
            os.ftruncate(self._handle.fileno(), valid_length)
            os.fsync(self._handle.fileno())

    def records(self):
        """FileName → record over all shard files of this key (transcripts win over skips)."""
        merged = {}
        for path in sorted(self.directory.glob("shard-*.jsonl")):
            # Other shards may be mid-write right now: ignore their cut last line.
            records, _, _ = _parse_lines(path, path.read_bytes(), tolerate_cut_end=True)
            for record in records:
                name = record["FileName"]
                if name not in merged or "Transcript" in record:
                    merged[name] = record
        return merged

    def append(self, records):
        """Append records and make them durable (flush + fsync)."""
        if self._handle is None:
            raise CacheError(f"{self.directory}: cache opened read-only (no shard)")
        if not records:
            return
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        try:
            self._handle.write(payload.encode("utf-8"))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as error:  # write() errors (disk full, file too large) name no file
            raise OSError(error.errno, error.strerror, error.filename or str(self.path)) from error

    def close(self, quiet=False):
        """Release the shard file (``quiet``: a failing flush raises nothing, another error is on its way)."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        try:
            # After a failed append the buffer still holds the batch: closing flushes it again.
            handle.close()
        except OSError as error:
            if not quiet:
                raise OSError(error.errno, error.strerror, error.filename or str(self.path)) from error

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.close(quiet=exc_type is not None)


def write_transcripts_csv(path, transcripts):
    """Write ``FileName,Transcript`` sorted by FileName (atomically).

    Example
    -------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "transcripts.csv"
    >>> write_transcripts_csv(target, {"b.wav": "yes, two", "a.wav": "one"})
    >>> target.read_text().splitlines()
    ['FileName,Transcript', 'a.wav,one', 'b.wav,"yes, two"']
    """
    with atomic_write(path) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["FileName", "Transcript"])
        writer.writerows(sorted(transcripts.items()))


def read_transcripts_csv(path):
    """Read ``FileName,Transcript`` into a dict: the one reader of transcript tables.

    Whisper's ``transcripts.csv`` and any table a user gives in its place
    (``msp_prepare --transcripts FILE``) are read here, in UTF-8, UTF-16 or
    latin-1 (:func:`data_prep.corpora.text_files.read_text`).

    Raises
    ------
    LabelFileError
        Naming the file (and line) for a missing file or column, an empty or
        repeated FileName, or a file that is not text.

    Example
    -------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "transcripts.csv"
    >>> write_transcripts_csv(target, {"a.wav": ""})
    >>> read_transcripts_csv(target)
    {'a.wav': ''}
    """
    transcripts = {}
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    missing = {"FileName", "Transcript"} - set(reader.fieldnames or [])
    if missing:
        raise LabelFileError(path, 1, f"missing column(s) {sorted(missing)} (expected FileName,Transcript)")
    for row in reader:
        name = row["FileName"]
        if not name:
            raise LabelFileError(path, reader.line_num, "empty FileName")
        if name in transcripts:
            raise LabelFileError(path, reader.line_num, f"FileName {name} appears twice")
        transcripts[name] = row["Transcript"] or ""
    return transcripts
