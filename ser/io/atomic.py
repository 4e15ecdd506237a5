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
import re
import shutil
import tempfile
from pathlib import Path

from ser.errors import UserInputError

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


#: An OS error code quoted in the message of a library's own exception: Rust's
#: ``std::io::Error`` (safetensors) writes ``(os error 28)``, Python ``[Errno 28]``.
_QUOTED_ERRNO = re.compile(r"\(os error (\d+)\)|\[Errno (\d+)\]")


def write_error_code(error, path):
    """The OS error code behind a failed write to ``path``, or None when it is not a write failure.

    An ``OSError`` gives its own ``errno``. Libraries that write files themselves wrap the OS
    error in an exception of their own: safetensors quotes it (``os error 28``), while
    ``torch.save``'s zip writer (``unexpected pos``) and soundfile (a failed ``assert``) lose it.
    For those, a file system with no space left under ``path`` means ENOSPC.

    Parameters
    ----------
    error : BaseException
    path : str or Path
        The file or folder being written.

    Returns
    -------
    int or None

    Example
    -------
    >>> write_error_code(RuntimeError("I/O error: No space left on device (os error 28)"), ".")
    28
    >>> write_error_code(ValueError("not a write failure"), ".") is None
    True
    """
    if isinstance(error, UserInputError):  # some are OSErrors too (a system folder not found)
        return None
    if isinstance(error, OSError):
        return error.errno
    quoted = _QUOTED_ERRNO.search(str(error))
    if quoted:
        return int(quoted.group(1) or quoted.group(2))
    return errno.ENOSPC if no_space_left(path) else None


def no_space_left(path):
    """Whether the file system holding ``path`` (or its nearest existing folder) has no free block.

    Example
    -------
    >>> no_space_left(tempfile.gettempdir())
    False
    """
    for part in (Path(path), *Path(path).parents):
        try:
            stats = os.statvfs(part)
        except OSError:
            continue
        return stats.f_bavail == 0
    return False


@contextlib.contextmanager
def naming_output(path, staging=None):
    """Name ``path`` in a write failure inside the block that names no file, or a wrong one.

    Python's ``write``, ``flush`` and ``close`` raise an ``OSError`` without a file name, and
    libraries that write files (safetensors, ``torch.save``, soundfile, SpeechBrain's train
    logger) lose the name or the ``OSError`` itself (:func:`write_error_code`). Such a failure
    leaves the block as ``OSError(errno, strerror, path)``, which :func:`describe_os_error` turns
    into one line naming ``path`` (:func:`named_write_failure`).

    Parameters
    ----------
    path : str or Path
        The file or folder being written, as the user knows it.
    staging : str or Path, optional
        The temporary folder the block writes in place of ``path``.

    Example
    -------
    >>> with naming_output("out/model.safetensors"):  # doctest: +ELLIPSIS
    ...     raise OSError(errno.ENOSPC, "No space left on device")
    Traceback (most recent call last):
    ...
    OSError: [Errno 28] No space left on device: 'out/model.safetensors'
    """
    try:
        yield
    except Exception as raised:  # noqa: BLE001 - libraries wrap a failed write in their own types
        named = named_write_failure(raised, path, staging)
        if named is None:
            raise
        raise named from raised


def named_write_failure(error, path, staging=None):
    """``error`` as an ``OSError`` naming the file it failed to write, or None if it needs no change.

    A write failure that names no file is named ``path``; one that names a file under ``staging``
    (a temporary folder renamed onto ``path`` when complete) is named by where that file would
    have landed under ``path``. Call it before removing what was written: with the space it
    frees, a full disk no longer shows (:func:`write_error_code`).

    Parameters
    ----------
    error : Exception
    path : str or Path
    staging : str or Path, optional

    Returns
    -------
    OSError or None
        None for an error that is no write failure, or that names its file already (as an
        ``OSError``; :func:`describe_os_error` picks the destination of a copy).

    Example
    -------
    >>> error = OSError(errno.ENOSPC, "No space left on device", "pkg.partial/x.json")
    >>> named_write_failure(error, "pkg", staging="pkg.partial").filename
    'pkg/x.json'
    >>> named_write_failure(OSError(errno.ENOSPC, "No space left on device"), "pkg/x.bin").filename
    'pkg/x.bin'
    >>> named_write_failure(ValueError("not a write"), "pkg") is None
    True
    """
    converted = _first_copy_error(error)
    code = write_error_code(converted, staging if staging is not None else path)
    if code is None:
        return None
    written = _written_file(converted) if isinstance(converted, OSError) else None
    if written is None:
        written = Path(path)
    elif staging is not None and Path(written).is_relative_to(staging):
        written = Path(path) / Path(written).relative_to(staging)
    else:
        return None if converted is error else converted
    return OSError(code, os.strerror(code), str(written))


def _first_copy_error(error):
    """The first failure of a ``shutil.copytree`` as an ``OSError``; any other error as it is.

    ``copytree`` goes on past a file it cannot copy and raises at the end one ``shutil.Error``
    listing ``(source, destination, message)`` per failure, with no error code of its own.
    """
    if not (isinstance(error, shutil.Error) and error.args and isinstance(error.args[0], list)
            and error.args[0]):
        return error
    source, destination, message = error.args[0][0]
    quoted = _QUOTED_ERRNO.search(str(message))
    if quoted is None:
        return error
    code = int(quoted.group(1) or quoted.group(2))
    return OSError(code, os.strerror(code), str(source), None, str(destination))


def _written_file(error):
    """The file an ``OSError`` names as written: the destination of a copy, else its one file."""
    if error.errno in _ADVICE and error.filename2 is not None:
        return error.filename2
    return error.filename


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
    >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device", "model/x.bin", None, "pkg/x.bin"))
    'pkg/x.bin: cannot write (no space left on the device: free some space or write elsewhere)'
    >>> describe_os_error(OSError(errno.EFBIG, "File too large"), path="cache/")
    "cache/: cannot write (file too large for this file system or the process's file size limit)"
    >>> describe_os_error(FileNotFoundError("model folder x does not exist"))
    'model folder x does not exist'
    """
    error = _first_copy_error(error)
    # A failed copy (shutil's sendfile) names the source first and the destination second.
    where = _written_file(error)
    where = where if where is not None else path
    if error.errno in _ADVICE:
        return f"{where if where is not None else 'an output file'}: cannot write ({_ADVICE[error.errno]})"
    if error.errno is None or where is None:
        return str(error)
    return f"{where}: {error.strerror or error}"
