"""Outputs kept apart from inputs: no command deletes or overwrites what it reads.

A command that writes a folder or a file first checks that its output is not one of its inputs,
does not contain one, and does not lie inside one (:func:`refuse_output_over_inputs`); paths are
compared after resolving links, so ``--out ./run`` and ``--out run/../run`` are the same folder.
"""

from pathlib import Path

from ser.errors import UserInputError

__all__ = ["OutputOverInputError", "clashing_input", "refuse_output_over_inputs"]


class OutputOverInputError(UserInputError, ValueError):
    """An output path that is, contains or lies inside one of the command's inputs."""


def clashing_input(out, inputs):
    """The first of ``inputs`` that ``out`` is, contains or lies inside, and how; None when apart.

    Parameters
    ----------
    out : str or Path
        The output file or folder (it need not exist).
    inputs : iterable of str or Path
        The files and folders the command reads; None entries are skipped.

    Returns
    -------
    (Path, str) or None
        The input and ``"is"``, ``"contains"`` or ``"lies inside"``.

    Example
    -------
    >>> clashing_input("runs/a/1993", ["runs/b", "runs/a/1993"])
    (PosixPath('runs/a/1993'), 'is')
    >>> clashing_input("runs", ["runs/a/1993"])
    (PosixPath('runs/a/1993'), 'contains')
    >>> clashing_input("runs/a/1993/pkg", ["runs/a/1993"])
    (PosixPath('runs/a/1993'), 'lies inside')
    >>> clashing_input("packages/pkg", ["runs/a/1993"]) is None
    True
    """
    target = Path(out).resolve()
    for given in inputs:
        if given is None:
            continue
        path = Path(given).resolve()
        if target == path:
            return Path(given), "is"
        if path.is_relative_to(target):
            return Path(given), "contains"
        if target.is_relative_to(path):
            return Path(given), "lies inside"
    return None


def refuse_output_over_inputs(out, inputs, option="--out"):
    """Raise :class:`OutputOverInputError` when ``out`` is, contains or lies inside an input.

    Example
    -------
    >>> refuse_output_over_inputs("results", ["results/system_a/1993"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ser.io.safe_paths.OutputOverInputError: --out results: contains the input results/system_a/1993; ...
    """
    clash = clashing_input(out, inputs)
    if clash is not None:
        path, relation = clash
        raise OutputOverInputError(
            f"{option} {out}: {relation} the input {path}; writing there could destroy it: "
            f"choose an {option} apart from the inputs"
        )
