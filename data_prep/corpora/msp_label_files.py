"""Parsers of the MSP-Podcast label files, one function per file format.

Each takes the file's path (which file of which folder is the reader's business:
:mod:`data_prep.corpora.msp_podcast`). A problem that makes a file unusable is a
:class:`LabelFileError` whose message starts with ``<path>:<line>:`` (the line an
editor shows: header = 1, blank lines and quoted newlines counted) or
``<path>:<key>:`` for JSON. In the per-annotator file one odd row is not such a
problem: it is left out and listed (:class:`~data_prep.corpora.base.SkippedRow`)
unless ``strict``.

Formats:

* consensus, CSV or JSON (every release): ``FileName,EmoClass,EmoAct,EmoVal,
  EmoDom,SpkrID,Gender,Split_Set`` — :func:`read_consensus_file`;
* per-annotator, v1.11 and v1.12: ``FileName,EmoDetail`` with EmoDetail like
  ``WORKER00014325; Neutral; Concerned,Frustrated; A:3.0; V:4.0; D:4.0;``;
  2.0: ``FileName,WorkerID,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom``
  (integer ratings); older releases: the same columns with ``Workers`` (or
  ``Worker``), attributes optional — :func:`read_detailed_file`;
* per-turn vote counts, 2.0: ``FileName,count::Anger,...,num_other_annotations``
  — :func:`read_vote_counts_file`.
"""

import csv
import io
import json
import logging

import numpy as np
import pandas as pd

from data_prep.corpora.base import (
    ANNOTATION_COLUMNS,
    ATTRIBUTE_COLUMNS,
    ATTRIBUTE_SCALE,
    SPLITS,
    Annotations,
    SkippedRow,
)
from data_prep.corpora.text_files import LabelFileError, read_csv_strings, read_text
from ser.emotions import EMOTIONS, NO_AGREEMENT, OTHER, emotion_letter

logger = logging.getLogger(__name__)

__all__ = ["LabelFileError", "read_consensus_file", "read_detailed_file", "read_vote_counts_file",
           "CONSENSUS_COLUMNS", "CONSENSUS_CLASSES", "VOTE_LABELS"]

CONSENSUS_COLUMNS = (
    "FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set",
)
CONSENSUS_CLASSES = EMOTIONS + (NO_AGREEMENT, OTHER)
#: Labels an annotator can give, in the column order of :func:`read_vote_counts_file`.
VOTE_LABELS = EMOTIONS + (OTHER,)

# v1.11 EmoDetail: "WORKER00014325; Neutral; Concerned,Frustrated; A:3.0; V:4.0; D:4.0;".
# The secondary field is matched lazily up to "; A:" so that stray semicolons
# in free text stay in it instead of breaking the row.
_EMO_DETAIL = (
    r"^\s*(?P<Worker>[^;\s][^;]*?)\s*;\s*(?P<Primary>[^;]*?)\s*;\s*(?P<Secondary>.*?)\s*;"
    r"\s*A:(?P<EmoAct>[^;]*);\s*V:(?P<EmoVal>[^;]*);\s*D:(?P<EmoDom>[^;]*?);?\s*$"
)
_EMO_DETAIL_SHAPE = "expected 'WORKER; Primary; Secondary; A:x; V:y; D:z;'"


def _require_columns(frame, columns, path, where):
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise LabelFileError(path, where, f"missing column(s) {', '.join(missing)}")


def _first_bad(mask, locate, values, path, problem):
    """Raise for the first True in ``mask``, at ``locate(row)``, with its value."""
    bad = np.flatnonzero(np.asarray(mask))
    if bad.size:
        first = bad[0]
        more = f" (and {bad.size - 1} more row(s))" if bad.size > 1 else ""
        raise LabelFileError(path, locate(first), f"{problem} {values[first]!r}{more}")


def _read_consensus_json(path):
    """Read ``{FileName: {fields}}`` (or ``{FileName: [{fields}]}``) into a frame."""
    def reject_duplicates(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise LabelFileError(path, key, "duplicate FileName")
            seen.add(key)
        return dict(pairs)

    text = read_text(path)
    if not text.strip():
        raise LabelFileError(path, 1, "empty file")
    try:
        table = json.loads(text, object_pairs_hook=reject_duplicates)
    except json.JSONDecodeError as error:
        raise LabelFileError(path, error.lineno, f"not valid JSON ({error.msg})") from None
    if not isinstance(table, dict) or not table:
        raise LabelFileError(path, None, "expected a non-empty object keyed by FileName")
    records = []
    for key, fields in table.items():
        # Some releases wrap each turn's fields in a one-element list.
        if isinstance(fields, list) and len(fields) == 1:
            fields = fields[0]
        if not isinstance(fields, dict):
            raise LabelFileError(path, key, "expected an object of label fields")
        text_fields = {k: "" if v is None else str(v) for k, v in fields.items()}
        records.append({**text_fields, "FileName": key})
    frame = pd.DataFrame.from_records(records)
    _require_columns(frame, CONSENSUS_COLUMNS[1:], path, list(table)[0])
    keys = list(table)
    return frame, keys.__getitem__


def read_consensus_file(path, split_names=None):
    """Read a consensus label file (CSV or ``.json``) into a validated DataFrame.

    Parameters
    ----------
    path : str or os.PathLike
        ``labels_consensus.csv`` or ``labels_consensus.json`` (any text encoding).
    split_names : dict, optional
        The release's own ``Split_Set`` names mapped to :data:`~data_prep.corpora.base.SPLITS`
        (older releases call Development ``Validation``).

    Returns
    -------
    pandas.DataFrame
        Columns ``FileName EmoClass EmoAct EmoVal EmoDom SpkrID Gender
        Split_Set`` in that order, file order kept; the three attributes are
        floats, the rest strings.

    Raises
    ------
    LabelFileError
        Missing file, empty file, missing column, unknown class or split,
        non-numeric attribute, empty or duplicate FileName.

    Example
    -------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels_consensus.csv"
    >>> _ = path.write_text(
    ...     "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\\n"
    ...     "MSP-PODCAST_0001_0001.wav,N,4.0,4.2,4.0,12,Female,Validation\\n")
    >>> labels = read_consensus_file(path, split_names={"Validation": "Development"})
    >>> labels.loc[0, "EmoClass"], float(labels.loc[0, "EmoVal"]), labels.loc[0, "Split_Set"]
    ('N', 4.2, 'Development')
    """
    path = str(path)
    if path.lower().endswith(".json"):
        frame, locate = _read_consensus_json(path)
    else:
        table = read_csv_strings(path)
        frame = table.frame
        _require_columns(frame, CONSENSUS_COLUMNS, path, 1)
        locate = table.line
    frame = frame.loc[:, list(CONSENSUS_COLUMNS)].reset_index(drop=True)
    for name in ("FileName", "EmoClass", "Split_Set", "SpkrID", "Gender"):
        frame[name] = frame[name].str.strip()
    if split_names:
        frame["Split_Set"] = frame["Split_Set"].replace(split_names)
    _first_bad(frame["FileName"].eq(""), locate, frame["FileName"].to_numpy(), path, "empty FileName")
    _first_bad(~frame["EmoClass"].isin(CONSENSUS_CLASSES), locate, frame["EmoClass"].to_numpy(), path,
               f"EmoClass not one of {' '.join(CONSENSUS_CLASSES)}:")
    known_splits = SPLITS + tuple(split_names or ())
    _first_bad(~frame["Split_Set"].isin(SPLITS), locate, frame["Split_Set"].to_numpy(), path,
               f"Split_Set not one of {' '.join(dict.fromkeys(known_splits))}:")
    duplicated = frame["FileName"].duplicated(keep="first")
    _first_bad(duplicated, locate, frame["FileName"].to_numpy(), path, "duplicate FileName")
    for name in ATTRIBUTE_COLUMNS:
        raw = frame[name].str.strip()
        numbers = pd.to_numeric(raw.where(raw.ne("")), errors="coerce")
        _first_bad(numbers.isna() & raw.ne("") & raw.str.lower().ne("nan"), locate,
                   raw.to_numpy(), path, f"{name} is not a number:")
        frame[name] = numbers.astype(float)
    logger.info("read %d consensus labels from %s", len(frame), path)
    return frame


def _strip_by_uniques(values):
    """``str.strip`` done once per distinct value: a million-row column of
    worker ids or file names holds far fewer distinct strings.
    """
    codes, uniques = pd.factorize(pd.Series(values), use_na_sentinel=False)
    uniques = np.asarray(uniques, dtype=object)
    stripped = np.array([u.strip() if isinstance(u, str) else "" for u in uniques], dtype=object)
    return stripped[codes]


def _primary_letters(primary):
    """Class letters of primary-emotion words (or letters); None where unknown.

    ``emotion_letter`` runs once per distinct spelling, not once per row, so
    a million annotations cost one hash pass.
    """
    codes, spellings = pd.factorize(pd.Series(primary), use_na_sentinel=False)
    letters = np.empty(len(spellings), dtype=object)
    for i, spelling in enumerate(spellings):
        spelling = "" if pd.isna(spelling) else str(spelling).strip()
        if len(spelling) == 1 and spelling.upper() in VOTE_LABELS:
            letters[i] = spelling.upper()
            continue
        try:
            letters[i] = emotion_letter(spelling) if spelling else None
        except ValueError:
            letters[i] = None
    return letters[codes]


def _ratings(values, prefix=""):
    """Floats of rating strings (``"3"``, ``"3.0"``; ``"A:3.0"`` with ``prefix="A:"``); NaN if none.

    Parsed once per distinct string: a million ratings hold a few dozen.
    """
    codes, uniques = pd.factorize(pd.Series(values), use_na_sentinel=False)
    uniques = np.asarray(uniques, dtype=object)
    texts = [u.strip()[len(prefix):] if isinstance(u, str) else "" for u in uniques]
    numbers = pd.to_numeric(pd.Series(texts, dtype=object), errors="coerce").to_numpy(dtype=float)
    return numbers[codes]


def _split_emo_detail_fast(details):
    """Split EmoDetail strings with pandas' C CSV parser (``;`` separated).

    Returns a dict of columns, or None when a row does not have the expected
    shape; the caller then falls back to the exact regular expression, which
    also tells which rows are bad.
    """
    text = "\n".join(details.tolist())
    try:
        fields = pd.read_csv(
            io.StringIO(text), sep=";", header=None, dtype=str, keep_default_na=False,
            skipinitialspace=True, quoting=csv.QUOTE_NONE, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if len(fields) != len(details) or fields.shape[1] not in (6, 7):
        return None
    # Attribute fields repeat a few values (A:1.0 ... A:7.0): check the
    # distinct ones only.
    ratings = {}
    for column, prefix, name in ((3, "A:", "EmoAct"), (4, "V:", "EmoVal"), (5, "D:", "EmoDom")):
        if not all(str(u).startswith(prefix) for u in pd.unique(fields[column])):
            return None
        ratings[name] = fields[column].to_numpy()
    if fields.shape[1] == 7 and set(pd.unique(fields[6])) - {""}:
        return None
    worker = _strip_by_uniques(fields[0])
    if (worker == "").any():
        return None
    return {"Worker": worker, "Primary": fields[1].to_numpy(), "Secondary": _strip_by_uniques(fields[2]),
            **ratings, "rating_prefixes": ("A:", "V:", "D:")}


def _parse_emo_detail(details, path):
    """Columns of v1.11 ``EmoDetail`` strings; a row that does not parse has Worker NaN."""
    fast = _split_emo_detail_fast(details)
    if fast is not None:
        return fast
    logger.info("%s: EmoDetail needs the exact (slower) parser", path)
    parts = details.str.extract(_EMO_DETAIL)
    return {name: parts[name].to_numpy() for name in parts.columns}


def _detailed_columns(frame, path):
    """Worker, Primary, Secondary and the three ratings, whichever layout the file has."""
    if "EmoDetail" in frame.columns:
        _require_columns(frame, ("FileName",), path, 1)
        return _parse_emo_detail(frame["EmoDetail"], path)
    worker_column = next((name for name in ("WorkerID", "Workers", "Worker") if name in frame.columns), None)
    if worker_column is None or "EmoClass_Major" not in frame.columns:
        raise LabelFileError(
            path, 1, "missing column(s): expected FileName,EmoDetail (v1.11, v1.12) or "
            "FileName,WorkerID,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom (2.0; Workers in "
            "older releases)")
    _require_columns(frame, ("FileName",), path, 1)
    no_values = pd.Series("", index=frame.index)
    columns = {
        "Worker": _strip_by_uniques(frame[worker_column]),
        "Primary": frame["EmoClass_Major"].to_numpy(),
        "Secondary": _strip_by_uniques(frame.get("EmoClass_Second", no_values)),
    }
    for name in ATTRIBUTE_COLUMNS:
        # Older releases may have no ratings here: absent columns are no error, empty cells are.
        columns[name] = frame[name].to_numpy() if name in frame.columns else None
    return columns


def _bad_row_reasons(file_names, columns):
    """A reason (str) per row that cannot be used, None for good rows."""
    n_rows = len(file_names)
    reasons = np.full(n_rows, None, dtype=object)

    def flag(mask, make_reason):
        new = np.flatnonzero(np.asarray(mask) & pd.isna(reasons))
        for row in new:
            reasons[row] = make_reason(row)

    worker = columns["Worker"]
    flag(pd.isna(worker),
         lambda row: f"cannot parse EmoDetail ({_EMO_DETAIL_SHAPE}): {columns['raw'][row]!r}")
    flag(pd.Series(worker).fillna("x").eq("").to_numpy(), lambda row: "empty worker id")
    flag(file_names == "", lambda row: "empty FileName")
    letters = _primary_letters(columns["Primary"])
    flag(pd.isna(letters), lambda row: f"unknown primary emotion {columns['Primary'][row]!r}")
    ratings = {}
    prefixes = columns.get("rating_prefixes", ("", "", ""))
    for name, prefix in zip(ATTRIBUTE_COLUMNS, prefixes, strict=True):
        raw = columns[name]
        if raw is None:
            ratings[name] = np.full(n_rows, np.nan)
            continue
        ratings[name] = _ratings(raw, prefix)
        flag(np.isnan(ratings[name]),
             lambda row, name=name, raw=raw: f"{name} rating is not a number: {raw[row]!r}")
        flag((ratings[name] < ATTRIBUTE_SCALE[0]) | (ratings[name] > ATTRIBUTE_SCALE[1]),
             lambda row, name=name, values=ratings[name]: (
                 f"{name} rating {values[row]:g} outside the "
                 f"{ATTRIBUTE_SCALE[0]:g}-{ATTRIBUTE_SCALE[1]:g} scale"))
    return reasons, letters, ratings


def read_detailed_file(path, strict=False):
    """Read every individual annotation, one row each, leaving odd rows out.

    Parameters
    ----------
    path : str or os.PathLike
        ``labels_detailed.csv`` of any release (see the module docstring), any
        text encoding.
    strict : bool
        Stop at the first odd row instead of leaving it out.

    Returns
    -------
    Annotations
        ``table``: columns ``FileName Worker Emotion Secondary EmoAct EmoVal
        EmoDom`` (``Emotion`` one of ``A C D F H N S U O``; ratings NaN when
        the release gives none); ``skipped``: one
        :class:`~data_prep.corpora.base.SkippedRow` per row left out.

    Raises
    ------
    LabelFileError
        Missing or empty file, missing columns; with ``strict``, the first
        odd row (its line and why).

    Example
    -------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels_detailed.csv"
    >>> _ = path.write_text(
    ...     'FileName,EmoDetail\\n'
    ...     'a.wav,"WORKER01; Neutral; Concerned,Frustrated; A:3.0; V:4.0; D:4.0;"\\n'
    ...     'a.wav,"WORKER02; Other-Bored; ; A:2.0; V:3.0; D:4.0;"\\n'
    ...     'a.wav,"WORKER03; Joyful; ; A:2.0; V:3.0; D:4.0;"\\n')
    >>> annotations = read_detailed_file(path)
    >>> annotations.table[["Worker", "Emotion", "Secondary", "EmoAct"]].values.tolist()
    [['WORKER01', 'N', 'Concerned,Frustrated', 3.0], ['WORKER02', 'O', '', 2.0]]
    >>> print(annotations.skipped[0].line, annotations.skipped[0].reason)
    4 unknown primary emotion 'Joyful'
    """
    path = str(path)
    table = read_csv_strings(path)
    frame = table.frame
    columns = _detailed_columns(frame, path)
    columns["raw"] = frame["EmoDetail"].to_numpy() if "EmoDetail" in frame.columns else None
    file_names = _strip_by_uniques(frame["FileName"])
    reasons, letters, ratings = _bad_row_reasons(file_names, columns)
    bad = np.flatnonzero(pd.notna(reasons))
    if strict and bad.size:
        more = f" (and {bad.size - 1} more row(s))" if bad.size > 1 else ""
        raise LabelFileError(path, table.line(bad[0]), f"{reasons[bad[0]]}{more}")
    skipped = [SkippedRow(path, table.line(row), reasons[row]) for row in bad]
    values = (file_names, columns["Worker"], letters, columns["Secondary"],
              *(ratings[name] for name in ATTRIBUTE_COLUMNS))
    if bad.size:  # only then copy a million rows to drop a few
        good = pd.isna(reasons)
        values = [np.asarray(column)[good] for column in values]
    detailed = pd.DataFrame(dict(zip(ANNOTATION_COLUMNS, values, strict=True)))
    detailed["Secondary"] = detailed["Secondary"].fillna("").astype(str)
    logger.info("read %d annotations of %d turns from %s (%d odd row(s) left out)", len(detailed),
                detailed["FileName"].nunique(), path, len(skipped))
    return Annotations(detailed, skipped)


def read_vote_counts_file(path):
    """Read per-turn vote counts (2.0's ``labels_detailed_aggregated.csv``).

    Columns ``count::<Emotion>`` (``Anger``, ``Happiness``, ... in any of the
    spellings :func:`ser.emotions.emotion_letter` knows) and
    ``num_other_annotations``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``FileName``; integer columns :data:`VOTE_LABELS`
        (``A C D F H N S U O``).

    Raises
    ------
    LabelFileError
        An unknown emotion in a column name, or a count that is not a
        non-negative integer (its line).

    Example
    -------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "agg.csv"
    >>> _ = path.write_text("FileName,count::Anger,count::Neutral,num_other_annotations\\n"
    ...                     "a.wav,2,3,1\\n")
    >>> read_vote_counts_file(path).loc["a.wav"].to_dict()
    {'A': 2, 'C': 0, 'D': 0, 'F': 0, 'H': 0, 'N': 3, 'S': 0, 'U': 0, 'O': 1}
    """
    path = str(path)
    table = read_csv_strings(path)
    frame = table.frame
    _require_columns(frame, ("FileName",), path, 1)
    counts = pd.DataFrame(0, index=pd.Index(frame["FileName"].str.strip(), name="FileName"),
                          columns=list(VOTE_LABELS))
    for column in frame.columns:
        if column == "num_other_annotations":
            letter = OTHER
        elif column.startswith("count::"):
            try:
                letter = emotion_letter(column[len("count::"):])
            except ValueError:
                raise LabelFileError(path, 1, f"column {column!r} names no known emotion") from None
        else:
            continue
        raw = frame[column].str.strip()
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() | (numbers < 0) | (numbers != numbers.round())
        _first_bad(bad, table.line, raw.to_numpy(), path, f"{column} is not a vote count:")
        counts[letter] += numbers.astype(int).to_numpy()
    return counts
