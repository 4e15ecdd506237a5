"""Readers for the MSP-Podcast label files (consensus and per-annotator).

Both readers take the corpus root (the folder holding ``Labels/``) and an
optional ``path=`` for a label file kept elsewhere. Every problem in a file
is reported as a :class:`LabelFileError` whose message starts with
``<path>:<line>:`` (1-based line, header included) or ``<path>:<key>:`` for
JSON, so a user can open the file at the faulty row.

Column contracts (strings unless said otherwise):

* :func:`read_consensus_labels`: ``FileName`` (``MSP-PODCAST_0002_0033.wav``),
  ``EmoClass`` (``A C D F H N S U``, ``X`` no agreement, ``O`` other),
  ``EmoAct EmoVal EmoDom`` (floats, 1-7 scale, NaN when empty), ``SpkrID``
  (may be ``Unknown``), ``Gender``, ``Split_Set`` (``Train Development
  Test1 Test2 Test3``).
* :func:`read_detailed_labels`, one row per annotation: ``FileName``,
  ``Worker``, ``Emotion`` (``A..U`` or ``O``), ``Secondary`` (raw string).
"""

import csv
import io
import json
import logging
import os

import numpy as np
import pandas as pd

from ser.emotions import EMOTIONS, NO_AGREEMENT, OTHER, emotion_letter
from ser.errors import UserInputError

logger = logging.getLogger(__name__)

CONSENSUS_COLUMNS = (
    "FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set",
)
ATTRIBUTE_COLUMNS = ("EmoAct", "EmoVal", "EmoDom")
CONSENSUS_CLASSES = EMOTIONS + (NO_AGREEMENT, OTHER)
SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")
DETAILED_COLUMNS = ("FileName", "Worker", "Emotion", "Secondary")

# v1.11 EmoDetail: "WORKER00014325; Neutral; Concerned,Frustrated; A:3.0; V:4.0; D:4.0;".
# The secondary field is matched lazily up to "; A:" so that stray semicolons
# in free text stay in it instead of breaking the row.
_EMO_DETAIL = (
    r"^\s*(?P<Worker>[^;\s][^;]*?)\s*;\s*(?P<Primary>[^;]*?)\s*;\s*(?P<Secondary>.*?)\s*;"
    r"\s*A:[^;]*;\s*V:[^;]*;\s*D:[^;]*;?\s*$"
)


class LabelFileError(UserInputError, ValueError):
    """A label file is missing or holds a row that cannot be used.

    The message reads ``"<path>:<line>: <problem>"`` (``<key>`` instead of
    ``<line>`` for JSON files, nothing for file-level problems).

    Example
    -------
    >>> str(LabelFileError("Labels/x.csv", 3, "unknown class 'Q'"))
    "Labels/x.csv:3: unknown class 'Q'"
    """

    def __init__(self, path, where, problem):
        self.path, self.where, self.problem = str(path), where, problem
        location = self.path if where is None else f"{self.path}:{where}"
        super().__init__(f"{location}: {problem}")


def _csv_lines(frame):
    """File line of each row: 1-based, after the header line."""
    return np.arange(len(frame)) + 2


def _read_csv_strings(path):
    """Read a CSV as strings, turning pandas' errors into LabelFileError."""
    if not os.path.isfile(path):
        raise LabelFileError(path, None, "file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise LabelFileError(path, 1, "empty file") from None
    except pd.errors.ParserError as error:
        raise LabelFileError(path, None, f"not a valid CSV file ({error})") from None
    frame.columns = [str(name).strip() for name in frame.columns]
    if len(frame) == 0:
        raise LabelFileError(path, 2, "empty file: a header but no label rows")
    return frame


def _require_columns(frame, columns, path, where):
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise LabelFileError(path, where, f"missing column(s) {', '.join(missing)}")


def _first_bad(mask, locations, values, path, problem):
    """Raise for the first True in ``mask`` with its location and value."""
    bad = np.flatnonzero(np.asarray(mask))
    if bad.size:
        first = bad[0]
        more = f" (and {bad.size - 1} more row(s))" if bad.size > 1 else ""
        raise LabelFileError(path, locations[first], f"{problem} {values[first]!r}{more}")


def _read_consensus_json(path):
    """Read ``{FileName: {fields}}`` (or ``{FileName: [{fields}]}``) into a frame."""
    def reject_duplicates(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise LabelFileError(path, key, "duplicate FileName")
            seen.add(key)
        return dict(pairs)

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if not text.strip():
            raise LabelFileError(path, 1, "empty file")
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
    return frame, list(table)


def _locate_consensus_file(data_folder, path):
    if path is not None:
        return str(path)
    labels = os.path.join(str(data_folder), "Labels")
    csv_path = os.path.join(labels, "labels_consensus.csv")
    json_path = os.path.join(labels, "labels_consensus.json")
    if os.path.isfile(csv_path) or not os.path.isfile(json_path):
        return csv_path
    return json_path


def read_consensus_labels(data_folder, path=None):
    """Read the consensus labels of MSP-Podcast into a validated DataFrame.

    Parameters
    ----------
    data_folder : str or os.PathLike
        The corpus root. ``Labels/labels_consensus.csv`` is read, or
        ``Labels/labels_consensus.json`` when there is no CSV.
    path : str or os.PathLike, optional
        A consensus file elsewhere (``.json`` or CSV); overrides the lookup.

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
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "Labels").mkdir()
    >>> _ = (root / "Labels" / "labels_consensus.csv").write_text(
    ...     "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\\n"
    ...     "MSP-PODCAST_0001_0001.wav,N,4.0,4.2,4.0,12,Female,Train\\n")
    >>> labels = read_consensus_labels(root)
    >>> labels.loc[0, "EmoClass"], float(labels.loc[0, "EmoVal"])
    ('N', 4.2)
    """
    path = _locate_consensus_file(data_folder, path)
    if str(path).lower().endswith(".json"):
        if not os.path.isfile(path):
            raise LabelFileError(path, None, "file not found")
        frame, locations = _read_consensus_json(path)
    else:
        frame = _read_csv_strings(path)
        _require_columns(frame, CONSENSUS_COLUMNS, path, 1)
        locations = _csv_lines(frame)
    frame = frame.loc[:, list(CONSENSUS_COLUMNS)].reset_index(drop=True)
    for name in ("FileName", "EmoClass", "Split_Set"):
        frame[name] = frame[name].str.strip()

    _first_bad(frame["FileName"].eq(""), locations, frame["FileName"].to_numpy(), path,
               "empty FileName")
    _first_bad(~frame["EmoClass"].isin(CONSENSUS_CLASSES), locations,
               frame["EmoClass"].to_numpy(), path,
               f"EmoClass not one of {' '.join(CONSENSUS_CLASSES)}:")
    _first_bad(~frame["Split_Set"].isin(SPLITS), locations, frame["Split_Set"].to_numpy(), path,
               f"Split_Set not one of {' '.join(SPLITS)}:")
    duplicated = frame["FileName"].duplicated(keep="first")
    _first_bad(duplicated, locations, frame["FileName"].to_numpy(), path, "duplicate FileName")
    for name in ATTRIBUTE_COLUMNS:
        raw = frame[name].str.strip()
        numbers = pd.to_numeric(raw.where(raw.ne("")), errors="coerce")
        _first_bad(numbers.isna() & raw.ne("") & raw.str.lower().ne("nan"), locations,
                   raw.to_numpy(), path, f"{name} is not a number:")
        frame[name] = numbers.astype(float)
    logger.info("read %d consensus labels from %s", len(frame), path)
    return frame


def _strip_by_uniques(values):
    """``str.strip`` done once per distinct value: a million-row column of
    worker ids or file names holds far fewer distinct strings.
    """
    codes, uniques = pd.factorize(pd.Series(values), use_na_sentinel=False)
    stripped = np.array([str(u).strip() for u in uniques], dtype=object)
    return stripped[codes]


def _primary_letters(primary, locations, path):
    """Map primary-emotion words (or v1.6 letters) to class letters.

    ``emotion_letter`` runs once per distinct spelling, not once per row, so
    a million annotations cost one hash pass.
    """
    codes, spellings = pd.factorize(pd.Series(primary), use_na_sentinel=False)
    letters = np.empty(len(spellings), dtype=object)
    for i, spelling in enumerate(spellings):
        spelling = str(spelling).strip()
        if spelling.upper() in EMOTIONS + (OTHER,) and len(spelling) == 1:
            letters[i] = spelling.upper()
            continue
        try:
            letters[i] = emotion_letter(spelling) if spelling else None
        except ValueError:
            letters[i] = None
    mapped = letters[codes]
    _first_bad(pd.isna(mapped), locations, np.asarray(primary), path,
               "unknown primary emotion")
    return mapped


def _split_emo_detail_fast(details):
    """Split EmoDetail strings with pandas' C CSV parser (``;`` separated).

    Returns ``(worker, primary, secondary)`` arrays, or None when a row does
    not have the expected shape; the caller then falls back to the exact
    regular expression, which also finds the faulty line.
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
    for column, prefix in ((3, "A:"), (4, "V:"), (5, "D:")):
        if not all(str(u).startswith(prefix) for u in pd.unique(fields[column])):
            return None
    if fields.shape[1] == 7 and set(pd.unique(fields[6])) - {""}:
        return None
    worker = _strip_by_uniques(fields[0])
    if (worker == "").any():
        return None
    return worker, fields[1].to_numpy(), _strip_by_uniques(fields[2])


def _parse_emo_detail(frame, locations, path):
    """Split v1.11 ``EmoDetail`` strings into worker, primary and secondary."""
    fast = _split_emo_detail_fast(frame["EmoDetail"])
    if fast is not None:
        return fast
    logger.info("%s: EmoDetail needs the exact (slower) parser", path)
    parts = frame["EmoDetail"].str.extract(_EMO_DETAIL)
    _first_bad(parts["Worker"].isna(), locations, frame["EmoDetail"].to_numpy(), path,
               "cannot parse EmoDetail (expected 'WORKER; Primary; Secondary; A:x; V:y; D:z;'):")
    return parts["Worker"].to_numpy(), parts["Primary"].to_numpy(), parts["Secondary"].to_numpy()


def read_detailed_labels(data_folder, path=None):
    """Read every individual annotation of MSP-Podcast, one row each.

    Two layouts are understood:

    * v1.11: ``FileName,EmoDetail`` with EmoDetail like
      ``WORKER00014325; Neutral; Concerned,Frustrated; A:3.0; V:4.0; D:4.0;``.
    * v1.6: separate columns ``FileName,Workers,EmoClass_Major`` and
      optionally ``EmoClass_Second`` (``Worker`` is also accepted). The
      primary emotion may be a word (``Neutral``, ``Other-Bored``) or a
      letter (``N``, ``O``); other columns (attributes) are ignored.

    Parameters
    ----------
    data_folder : str or os.PathLike
        The corpus root; ``Labels/labels_detailed.csv`` is read.
    path : str or os.PathLike, optional
        A detailed-labels CSV elsewhere; overrides the lookup.

    Returns
    -------
    pandas.DataFrame
        Columns ``FileName Worker Emotion Secondary``; ``Emotion`` is one of
        ``A C D F H N S U O``.

    Raises
    ------
    LabelFileError
        Missing or empty file, missing columns, a row that does not parse or
        names an unknown primary emotion.

    Example
    -------
    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "Labels").mkdir()
    >>> _ = (root / "Labels" / "labels_detailed.csv").write_text(
    ...     'FileName,EmoDetail\\n'
    ...     'a.wav,"WORKER01; Neutral; Concerned,Frustrated; A:3.0; V:4.0; D:4.0;"\\n'
    ...     'a.wav,"WORKER02; Other-Bored; ; A:2.0; V:3.0; D:4.0;"\\n')
    >>> read_detailed_labels(root)[["Worker", "Emotion", "Secondary"]].values.tolist()
    [['WORKER01', 'N', 'Concerned,Frustrated'], ['WORKER02', 'O', '']]
    """
    if path is None:
        path = os.path.join(str(data_folder), "Labels", "labels_detailed.csv")
    frame = _read_csv_strings(path)
    locations = _csv_lines(frame)
    if "EmoDetail" in frame.columns:
        _require_columns(frame, ("FileName",), path, 1)
        worker, primary, secondary = _parse_emo_detail(frame, locations, path)
    else:
        worker_column = "Workers" if "Workers" in frame.columns else "Worker"
        if worker_column not in frame.columns or "EmoClass_Major" not in frame.columns:
            raise LabelFileError(
                path, 1, "missing column(s): expected FileName,EmoDetail (v1.11) or "
                "FileName,Workers,EmoClass_Major[,EmoClass_Second] (v1.6)")
        _require_columns(frame, ("FileName",), path, 1)
        worker = _strip_by_uniques(frame[worker_column])
        primary = frame["EmoClass_Major"].to_numpy()
        no_secondary = pd.Series("", index=frame.index)
        secondary = _strip_by_uniques(frame.get("EmoClass_Second", no_secondary))
        _first_bad(worker == "", locations, worker, path, "empty worker id")
    file_names = _strip_by_uniques(frame["FileName"])
    _first_bad(file_names == "", locations, file_names, path, "empty FileName")
    emotion = _primary_letters(primary, locations, path)
    detailed = pd.DataFrame(dict(zip(DETAILED_COLUMNS, (file_names, worker, emotion, secondary),
                                     strict=True)))
    logger.info("read %d annotations of %d turns from %s", len(detailed),
                detailed["FileName"].nunique(), path)
    return detailed
