"""Atomic file writes: a reader (or a re-run after a crash) never sees half a file.

Also the output side of bad input: :func:`ensure_writable_folder` checks an output folder before
hours of work go into it, and :func:`describe_os_error` turns a failed write (read-only folder,
disk full) into one line naming the path, for the command-line entry points to print.
"""

import contextlib
import errno
import glob
import json
import os
import tempfile
from pathlib import Path

# What a user can do about the usual write failures (the C library's wording is terse).
_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere",
    errno.EFBIG: "file too large for this file system or the process's file size limit",
    errno.EROFS: "read-only file system: choose a writable output folder",
}


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
    if path.is_dir():  # os.replace would fail only at the end, naming the temporary file
        raise IsADirectoryError(errno.EISDIR, "is a folder; give the file to write", str(path))
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
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        if error.errno is not None and error.filename in (None, tmp):
            # write() and fsync() errors (disk full) name no file, os.replace names the temporary
            # one: name the destination, the path the user gave.
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _remove_leftovers(path)


def _remove_leftovers(path):
    # A process killed mid-write (SIGKILL skips the cleanup above) leaves its temporary
    # file: the next complete write of the same path removes it.
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        leftover.unlink(missing_ok=True)


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


def ensure_writable_folder(folder):
    """Create ``folder`` if needed and check that a file can be written in it.

    Called by the command-line tools before their work, so that a read-only or missing output
    folder is reported at once rather than after hours of computation.

    Parameters
    ----------
    folder : str or Path

    Raises
    ------
    OSError
        With ``filename`` set to the folder (or to the part of its path that could not be made).

    Example
    -------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "new" / "out"
    >>> ensure_writable_folder(target)
    >>> target.is_dir(), list(target.iterdir())
    (True, [])
    """
    folder = Path(folder)
    for part in (folder, *folder.parents):  # a file where a folder must be: say so, and which
        if part.exists() and not part.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(part))
        if part.exists():
            break
    folder.mkdir(parents=True, exist_ok=True)
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.", suffix=".tmp")
    except OSError as error:  # name the folder, not the random probe file
        raise OSError(error.errno, error.strerror, str(folder)) from error
    os.close(handle)
    os.unlink(probe)


def describe_os_error(error, path=None):
    """One line saying which path failed and why, for a command-line tool to print.

    Parameters
    ----------
    error : OSError
    path : str or Path, optional
        Named when the error names no file (e.g. a failed ``write``).

    Returns
    -------
    str

    Example
    -------
    >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device", "out/preds.csv"))
    'out/preds.csv: cannot write (no space left on the device: free some space or write elsewhere)'
    >>> describe_os_error(OSError(errno.EFBIG, "File too large"), path="cache/")
    "cache/: cannot write (file too large for this file system or the process's file size limit)"
    >>> describe_os_error(FileNotFoundError("model folder x does not exist"))
    'model folder x does not exist'
    """
    where = error.filename if error.filename is not None else path
    if error.errno in _ADVICE:
        return f"{where if where is not None else 'an output file'}: cannot write ({_ADVICE[error.errno]})"
    if error.errno is None or where is None:
        return str(error)
    return f"{where}: {error.strerror or error}"
