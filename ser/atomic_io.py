"""Atomic file writes: a reader (or a re-run after a crash) never sees half a file."""

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode="w", encoding="utf-8"):
    """Open a temporary file beside ``path``; rename it onto ``path`` on success.

    The temporary file is fsynced before the rename, and removed if the
    block raises, so ``path`` is either the old complete file or the new one.

    Parameters
    ----------
    path : str or Path
        Destination; its folder is created if needed.
    mode : {"w", "wb"}
        Text or binary.
    encoding : str
        For text mode.

    Example
    -------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_write(target) as stream:
    ...     _ = stream.write("done")
    >>> open(target).read()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, encoding=None if "b" in mode else encoding) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp makes the file private (0600); give it the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path, data, indent=1):
    """Write ``data`` as JSON with :func:`atomic_write`.

    Example
    -------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "x.json")
    >>> write_json_atomic(target, {"a": 1})
    >>> json.load(open(target))
    {'a': 1}
    """
    with atomic_write(path) as stream:
        json.dump(data, stream, indent=indent)
