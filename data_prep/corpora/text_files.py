"""Reading a corpus's text files whatever their encoding, with true line numbers.

Label and transcript files come from many hands: UTF-8 (with or without a byte
order mark), UTF-16 from a spreadsheet's "Unicode text" export, latin-1 from an
old editor. :func:`read_text` decodes all of them (and names the file when it
holds no text at all); :func:`read_csv_strings` reads a CSV table as strings and
can tell the line of the file each row starts on, counting blank lines and
newlines inside quoted fields, so that an error message points at the right row.
"""

import codecs
import csv
import io
import logging
import os
import re

import numpy as np
import pandas as pd

from ser.errors import UserInputError

logger = logging.getLogger(__name__)

# A line holding nothing but spaces and separators, after the header.
_BLANK_LINE = re.compile(r"\n[ \t,]*(\r?\n|[ \t,]$)")
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class LabelFileError(UserInputError, ValueError):
    """A corpus file (labels, transcripts) that is missing, not text, or holds a bad row.

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


def _utf16_without_bom(data):
    """``"utf-16-le"``/``"utf-16-be"`` when every other byte of ASCII-heavy text is NUL."""
    sample = data[:4096]
    if len(sample) < 4 or len(sample) % 2:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) == 0:
        return "utf-16-be"
    return None


def decode_text(data, path):
    """Decode a text file's bytes: UTF-8, UTF-16 (with or without BOM) or latin-1.

    Parameters
    ----------
    data : bytes
        The file's content.
    path : str or os.PathLike
        Named in the warning and the error.

    Returns
    -------
    str
        The text, without a byte order mark.

    Raises
    ------
    LabelFileError
        When the bytes are no text in any of these encodings (NUL bytes).

    Example
    -------
    >>> decode_text("Angry, café".encode("utf-16"), "a.txt")
    'Angry, café'
    >>> decode_text("café".encode("latin-1"), "b.txt")
    'café'
    """
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    encoding = encoding or _utf16_without_bom(data)
    if encoding:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as error:
            raise LabelFileError(path, None, f"not valid {encoding.upper()} text ({error.reason})") from None
    if b"\0" in data:
        raise LabelFileError(path, None, "binary data, not a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Every byte is a latin-1 character: the text is readable, possibly with a few
        # accented letters wrong if the file was cp1252. Say so once, naming the file.
        logger.warning("%s: not UTF-8; read as latin-1", path)
        return data.decode("latin-1")


def read_text(path):
    """The text of a file, decoded by :func:`decode_text`.

    Raises
    ------
    LabelFileError
        Missing or unreadable file, or not text.

    Example
    -------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
    >>> _ = path.write_bytes(b"\\xef\\xbb\\xbfhello")
    >>> read_text(path)
    'hello'
    """
    if not os.path.isfile(path):
        raise LabelFileError(path, None, "file not found")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise LabelFileError(path, None, f"cannot be read ({error.strerror or error})") from None
    return decode_text(data, path)


def read_header(path, limit=65536):
    """The first line of a text file (any encoding of :func:`decode_text`), or ``""``.

    Only the first ``limit`` bytes are read: enough to tell a file's format
    from its header without reading a million rows.

    Example
    -------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = path.write_text("FileName,EmoDetail\\na,b\\n", encoding="utf-16")
    >>> read_header(path)
    'FileName,EmoDetail'
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit)
    except OSError:
        return ""
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    encoding = encoding or _utf16_without_bom(data) or "utf-8"
    if encoding.startswith("utf-16") and len(data) % 2:
        data = data[:-1]
    text = data.decode(encoding, errors="replace")
    return text.splitlines()[0].strip() if text.strip() else ""


class CsvTable:
    """A CSV file read as strings, and where each of its rows is in the file.

    Attributes
    ----------
    path : str
        The file.
    frame : pandas.DataFrame
        Every non-blank row below the header, as stripped-header string columns.
    """

    def __init__(self, path, frame, text):
        self.path, self.frame, self._text = str(path), frame, text
        self._lines = None

    def lines(self):
        """The 1-based file line each row of :attr:`frame` starts on (header: line 1).

        Blank lines and newlines inside quoted fields are counted, so the number
        is the one an editor shows. Computed on first use only (an error or a
        skipped row), with Python's csv module, which counts physical lines.
        """
        if self._lines is None:
            self._lines = _record_lines(self._text)[1:]
        return self._lines

    def line(self, row):
        """File line of row ``row`` (0-based position in :attr:`frame`)."""
        return int(self.lines()[row])


def _record_lines(text):
    """Start line of every non-blank record of ``text``, the header first."""
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    starts = []
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        if any(field.strip() for field in record):
            starts.append(start)
    return np.asarray(starts)


def read_csv_strings(path, text=None):
    """Read a CSV file as strings (any encoding of :func:`decode_text`).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    text : str, optional
        Its decoded content, when already read.

    Returns
    -------
    CsvTable
        Columns with stripped header names; blank lines dropped; no value is
        turned into NaN (empty cells are ``""``).

    Raises
    ------
    LabelFileError
        Missing, empty or header-only file, or not a CSV table.

    Example
    -------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = path.write_text('a,b\\n\\n1,"two\\nlines"\\n3,x\\n')
    >>> table = read_csv_strings(path)
    >>> table.frame["a"].tolist(), table.line(1)
    (['1', '3'], 5)
    """
    text = read_text(path) if text is None else text
    if not text.strip():
        raise LabelFileError(path, 1, "empty file")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True,
                            skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise LabelFileError(path, 1, "empty file") from None
    except pd.errors.ParserError as error:
        raise LabelFileError(path, None, f"not a valid CSV file ({error})") from None
    frame.columns = [str(name).strip() for name in frame.columns]
    # Blank lines (and lines of separators only) are no rows; the csv-module line count
    # of CsvTable.lines skips exactly the same records.
    if _BLANK_LINE.search(text):  # rare: look for blank rows only then (a million-row check costs)
        blank = (frame == "").all(axis=1)
        frame = frame.loc[~blank]
    frame = frame.reset_index(drop=True)
    if len(frame) == 0:
        raise LabelFileError(path, 2, "empty file: a header but no rows")
    return CsvTable(path, frame, text)
