"""What each sub-system hands to the fusion: posterior and attribute files.

Posteriors (Task 1): ``FileName`` then one probability per class in the
system's class order (the YAML's ``classes``; the challenge's A C D F H N S
U), one row per turn, sorted by ``FileName``.

Attributes (Task 2): ``FileName`` then the predicted attributes
(``EmoAct,EmoVal,EmoDom``) on the corpus scale (1 to 7), sorted by
``FileName``.
"""

import numpy as np
import pandas as pd

from ser.emotions import EMOTIONS
from ser.errors import UserInputError
from ser.io.atomic import atomic_write

COLUMNS = ("FileName",) + EMOTIONS


class PosteriorsError(UserInputError, ValueError):
    """A posterior (or attribute) file that cannot be read as ``FileName`` + its columns (names it)."""


def write_posteriors(path, file_names, probabilities, classes=EMOTIONS):
    """Write a posterior file atomically (a reader never sees half a file).

    Parameters
    ----------
    path : str or Path
        Destination CSV.
    file_names : sequence of str
        One per row, e.g. ``MSP-PODCAST_0002_0033.wav``.
    probabilities : array-like
        Shape ``(n, len(classes))``, rows in the order of ``file_names``.
    classes : sequence of str
        Column order (the system's class set).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "valid.csv")
    >>> write_posteriors(path, ["b.wav", "a.wav"], np.eye(8)[:2])
    >>> read_posteriors(path).index.tolist()
    ['a.wav', 'b.wav']
    """
    _write_table(path, file_names, probabilities, classes, "probabilities")


def _write_table(path, file_names, values, columns, what):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(columns):
        raise ValueError(f"{path}: expected (n, {len(columns)}) {what}, got {values.shape}")
    table = pd.DataFrame(values, columns=list(columns))
    table.insert(0, "FileName", list(file_names))
    table = table.sort_values("FileName", kind="stable")
    with atomic_write(path) as stream:
        table.to_csv(stream, index=False, float_format="%.6f")


def read_posteriors(path, classes=EMOTIONS):
    """Read a posterior file, checking its columns and class order.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``FileName``, columns ``A C D F H N S U``.

    Raises
    ------
    PosteriorsError
        If the file is empty, not text, has no rows, or its columns are not ``FileName`` + the 8
        classes in order.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "valid.csv")
    >>> _ = open(path, "w").write(",".join(COLUMNS) + "\\n")
    >>> read_posteriors(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.io.posteriors.PosteriorsError: ...valid.csv: header only, no rows
    """
    return _read_table(path, ("FileName", *classes), "class order")


def _read_table(path, columns, what):
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise PosteriorsError(f"{path}: empty file, no posteriors") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        reason = "not a text CSV file" if isinstance(error, UnicodeDecodeError) else "not a CSV table"
        raise PosteriorsError(f"{path}: {reason} ({' '.join(str(error).split())[:120]})") from None
    if tuple(table.columns) != tuple(columns):
        found = list(table.columns)[:12]
        raise PosteriorsError(f"{path}: columns {found}; expected {list(columns)} ({what})")
    if table.empty:
        raise PosteriorsError(f"{path}: header only, no rows")
    return table.set_index("FileName")


def write_attributes(path, file_names, values, attributes, scale=(1.0, 7.0)):
    """Write an attribute file atomically, values clipped to the corpus ``scale``.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "valid.csv")
    >>> write_attributes(path, ["b.wav", "a.wav"], [[4.0, 7.5, 2.0], [1.0, 2.0, 3.0]],
    ...                  ["EmoAct", "EmoVal", "EmoDom"])
    >>> print(open(path).read().strip())
    FileName,EmoAct,EmoVal,EmoDom
    a.wav,1.000000,2.000000,3.000000
    b.wav,4.000000,7.000000,2.000000
    """
    low, high = (float(v) for v in scale)
    _write_table(path, file_names, np.clip(np.asarray(values, dtype=np.float64), low, high), attributes,
                 "attribute values")


def read_attributes(path, attributes=("EmoAct", "EmoVal", "EmoDom")):
    """Read an attribute file, checking its columns.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``FileName``, one column per attribute.
    """
    return _read_table(path, ("FileName", *attributes), "attribute columns")
