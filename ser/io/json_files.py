"""Reading the JSON files that runs, fusions and packages write.

A file cut short, edited by hand or filled with other bytes is a :class:`JsonFileError` that names
it, so a command ends in one line saying which file to restore, not in a decoder's traceback.
"""

import json
from pathlib import Path

from ser.errors import UserInputError

__all__ = ["JsonFileError", "read_json"]


class JsonFileError(UserInputError, ValueError):
    """A JSON file that cannot be read, or does not hold what it should."""


def read_json(path, expected=dict):
    """The content of the JSON file ``path``, which must be of type ``expected``.

    Parameters
    ----------
    path : str or Path
    expected : type or tuple of types
        ``dict`` by default (every file the project writes holds an object).

    Raises
    ------
    JsonFileError
        Naming ``path`` when it is unreadable, not JSON or not an ``expected``.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.json")
    >>> _ = open(path, "w").write('{"macro_f1": 0.3')
    >>> read_json(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.io.json_files.JsonFileError: .../metrics.json: not valid JSON (Expecting ',' delimiter: ...
    >>> _ = open(path, "w").write('{"macro_f1": 0.3}')
    >>> read_json(path)
    {'macro_f1': 0.3}
    """
    path = Path(path)
    advice = "restore it or run the command that writes it again"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise JsonFileError(f"{path}: not a text file; {advice}") from None
    except json.JSONDecodeError as error:
        reason = f"{error.msg}: line {error.lineno} column {error.colno}"
        raise JsonFileError(f"{path}: not valid JSON ({reason}); {advice}") from None
    if not isinstance(data, expected):
        raise JsonFileError(f"{path}: holds a {type(data).__name__}, not what it should; {advice}")
    return data
