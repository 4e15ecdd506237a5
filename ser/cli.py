"""The edge of every command: one line for the user's errors, documented exit codes.

Every command of the project (``train.py``, ``python -m data_prep.*``, ``python -m fusion.fuse``,
``python -m ser.predict``, ``python -m recipes.demo``) runs its ``main`` through
:func:`run_command`, which turns what the user can fix into one line
``<command>: error: <what, where>`` on stderr and an exit code:

====  ===========================================================================================
code  meaning
====  ===========================================================================================
0     done
1     done in part: some items failed (listed), or a file or folder could not be read or written
      (``OSError``: read-only, disk full, ...; the line names the path)
2     bad input: a :class:`ser.errors.UserInputError` (corpus, labels, audio, overrides, models,
      system folders) or a bad command-line option (:class:`ArgumentParser`)
130   interrupted (Ctrl-C): the line says what was kept and how to resume
====  ===========================================================================================

Anything else is a bug and keeps its traceback. The option types below (:func:`positive_int`,
:func:`unit_interval` ...) check ranges as well as types, so ``--batch_size 0`` is refused
before any work.
"""

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from ser.errors import UserInputError
from ser.io.atomic import describe_os_error, ensure_writable_folder

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

#: What a command keeps when interrupted, unless it says better (``interrupted=`` below).
DEFAULT_INTERRUPTED = "finished outputs are kept (each file is written whole or not at all); " \
    "run the same command again to redo the rest"


def run_command(prog, main, argv=None, interrupted=DEFAULT_INTERRUPTED):
    """Run ``main(argv)`` as the command ``prog``; return the exit code.

    Parameters
    ----------
    prog : str
        How the user called it (``train.py``, ``data_prep.consensus``): the first word of the line.
    main : callable
        Takes ``argv``; returns an exit code (None means 0).
    argv : list of str, optional
    interrupted : str
        What was kept and how to resume, printed after Ctrl-C.

    Example
    -------
    >>> def main(argv):
    ...     raise UserInputError(f"{argv[0]}: no such corpus folder")
    >>> import contextlib, io
    >>> stderr = io.StringIO()
    >>> with contextlib.redirect_stderr(stderr):
    ...     code = run_command("demo", main, ["data/x"])
    >>> code, stderr.getvalue()
    (2, 'demo: error: data/x: no such corpus folder\\n')
    """
    log_failures = []
    try:
        with _log_files_that_fail(log_failures):
            code = main(argv)
    except UserInputError as error:
        return _fail(prog, str(error), EXIT_BAD_INPUT)
    except OSError as error:
        return _fail(prog, describe_os_error(error), EXIT_PARTIAL)
    except KeyboardInterrupt:
        return _fail(prog, f"interrupted: {interrupted}", EXIT_INTERRUPTED)
    if log_failures:  # the work is done, but its log file is not whole
        return _fail(prog, describe_os_error(log_failures[0]), EXIT_PARTIAL)
    return EXIT_OK if code is None else int(code)


@contextlib.contextmanager
def _log_files_that_fail(failures):
    """Collect the failed writes of ``logging`` file handlers (e.g. SpeechBrain's ``log.txt``).

    ``logging`` prints a traceback per record it cannot write (a full disk fails every one). The
    first failure is kept instead, with the handler's file named (a failed ``write`` names none),
    and the command goes on: its own next write on that disk fails and says so, or the command
    ends in that one line. A handler that handles its own errors keeps doing so.
    """
    original = logging.FileHandler.handleError

    def handle_error(handler, record):
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            original(handler, record)
        elif not failures:
            filename = error.filename if error.filename is not None else handler.baseFilename
            failures.append(OSError(error.errno, error.strerror, filename) if error.errno else error)

    logging.FileHandler.handleError = handle_error
    try:
        yield
    finally:
        logging.FileHandler.handleError = original


def _fail(prog, message, code):
    logging.shutdown()  # let log lines already queued come out before the error line
    # One line: a message that spans lines (e.g. quoting a file) is joined.
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    return code


def exit_with(prog, main, interrupted=DEFAULT_INTERRUPTED):
    """``sys.exit(run_command(prog, main, sys.argv[1:], interrupted))``: the ``__main__`` line."""
    sys.exit(run_command(prog, main, sys.argv[1:], interrupted))


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line ``<prog>: error: ...`` and exit 2.

    The usage text is left out of errors (``--help`` still prints it).

    Example
    -------
    >>> import contextlib, io
    >>> parser = ArgumentParser(prog="tool")
    >>> _ = parser.add_argument("--batch_size", type=positive_int, default=8)
    >>> stderr = io.StringIO()
    >>> with contextlib.redirect_stderr(stderr):
    ...     try:
    ...         parser.parse_args(["--batch_size", "0"])
    ...     except SystemExit as stop:
    ...         print(stop.code)
    2
    >>> stderr.getvalue()
    'tool: error: argument --batch_size: must be at least 1, got 0\\n'
    """

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {' '.join(message.split())}\n")


def check_device(device, option="--device"):
    """Refuse a CUDA device that is not there (one line, not a CUDA traceback mid-run).

    Example
    -------
    >>> check_device("cpu")
    """
    device = str(device)
    if not device.startswith("cuda"):
        return
    import torch  # only here: --help and argument errors answer without loading torch

    if not torch.cuda.is_available():
        raise UserInputError(f"{option} {device}: no CUDA GPU is visible here; use {option} cpu")
    index = device.split(":", 1)[1] if ":" in device else "0"
    if not index.isdigit():
        raise UserInputError(f"{option} {device}: expected cuda or cuda:N")
    if int(index) >= torch.cuda.device_count():
        raise UserInputError(
            f"{option} {device}: only {torch.cuda.device_count()} CUDA GPU(s) visible (cuda:0 ...)"
        )


def check_output_file(out, option="--out", example="predictions.csv"):
    """Refuse an output file that cannot be written, before any work (naming it, not a temp file).

    Example
    -------
    >>> import tempfile
    >>> check_output_file(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.errors.UserInputError: --out ...: is a folder; give the file to write, e.g. .../predictions.csv
    """
    out = Path(out)
    if out.is_dir():
        example = out / example
        raise UserInputError(f"{option} {out}: is a folder; give the file to write, e.g. {example}")
    # A read-only or missing output folder is reported now, not after hours of work.
    ensure_writable_folder(out.absolute().parent)


def _number(text, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None


def positive_int(text):
    """An integer ≥ 1 (batch sizes, folds, epochs).

    Example
    -------
    >>> positive_int("3")
    3
    """
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text):
    """An integer ≥ 0 (worker counts, seeds).

    Example
    -------
    >>> non_negative_int("0")
    0
    """
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text):
    """A finite number > 0 (durations, learning rates, SVM C values).

    Example
    -------
    >>> positive_float("1e-3")
    0.001
    """
    value = _number(text, float)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def unit_interval(text):
    """A number in [0, 1] (thresholds, proportions).

    Example
    -------
    >>> unit_interval("0.5")
    0.5
    """
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value
