"""Classify new audio files with trained sub-systems (and optionally their fusion).

Usage::

    python -m ser.predict recordings/ call.flac --systems results/demo/system_a/1993 \\
        results/demo/system_d/1993 [--fusion results/demo/fusion] --out preds.csv

Inputs are files or folders; folders are searched recursively for ``.wav``, ``.flac`` and ``.ogg``
files. (``--systems`` takes several folders, so give the inputs before it, or after ``--``.)
Any sample rate, channel count and length is accepted (see :mod:`ser.inference`).

Writes ``--out`` atomically, one row per input file, sorted as found::

    File,EmoClass,A,C,D,F,H,N,S,U,Error

``EmoClass`` is the predicted letter and ``A``–``U`` the probabilities (fused when ``--fusion``
is given, else the average of the systems); for a file that cannot be read they are empty and
``Error`` says why. When a loaded system predicts the Task 2 attributes, ``EmoAct,EmoVal,EmoDom``
(1-7, the average of those systems) come before ``Error``; with attribute systems only,
``EmoClass`` and the probabilities are left out. Prints how many files were classified and lists
the failed ones.

Exit code: 0 when every file was classified, 1 when at least one failed (or none was found, or
``--out`` could not be written), 2 for bad arguments (including an output folder that cannot be
written and a system folder that cannot be loaded).
"""

import argparse
import csv
import logging
import sys
from pathlib import Path

from ser.atomic_io import atomic_write, describe_os_error, ensure_writable_folder
from ser.emotions import EMOTIONS

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def find_audio_files(inputs):
    """Expand files and folders into a list of audio files.

    A folder contributes its ``.wav``/``.flac``/``.ogg`` files (any case, recursively, sorted);
    a file is kept as given, whatever its name, so that a bad file is reported rather than
    skipped.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("b.WAV", "a.flac", "notes.txt"):
    ...     (root / name).touch()
    >>> [p.name for p in find_audio_files([root])]
    ['a.flac', 'b.WAV']
    """
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                logger.warning("%s: no %s files in this folder", item, "/".join(AUDIO_SUFFIXES))
            files.extend(found)
        else:
            files.append(item)
    return files


def write_predictions(path, results, classes=EMOTIONS, attributes=None):
    """Write :class:`ser.inference.Result` rows as ``File,EmoClass,A..U,Error`` (atomically).

    Parameters
    ----------
    classes : sequence of str
        Probability columns (empty: no ``EmoClass`` either, attribute systems only).
    attributes : sequence of str, optional
        Attribute columns (default: those of the first result that has attributes).

    Example
    -------
    >>> import tempfile, os
    >>> from ser.inference import Result
    >>> out = os.path.join(tempfile.mkdtemp(), "preds.csv")
    >>> ok = Result("a.wav", "N", {c: 0.125 for c in EMOTIONS})
    >>> write_predictions(out, [ok, Result("b.wav", error="b.wav: empty audio file")])
    >>> print(open(out).read().strip())
    File,EmoClass,A,C,D,F,H,N,S,U,Error
    a.wav,N,0.125000,0.125000,0.125000,0.125000,0.125000,0.125000,0.125000,0.125000,
    b.wav,,,,,,,,,,b.wav: empty audio file
    >>> write_predictions(out, [Result("a.wav", attributes={"EmoAct": 4.5, "EmoVal": 3.0})], classes=())
    >>> print(open(out).read().strip())
    File,EmoAct,EmoVal,Error
    a.wav,4.500000,3.000000,
    """
    classes = tuple(classes)
    if attributes is None:
        attributes = next((tuple(r.attributes) for r in results if r.attributes), ())
    columns = ["File", *(["EmoClass", *classes] if classes else []), *attributes, "Error"]
    with atomic_write(path) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for result in results:
            if result.error is None:
                row = [result.file]
                if classes:
                    row += [result.label, *(f"{result.probabilities[c]:.6f}" for c in classes)]
                row += [f"{result.attributes[a]:.6f}" for a in attributes]
                writer.writerow([*row, ""])
            else:
                writer.writerow([result.file, *[""] * (len(columns) - 2), result.error])


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m ser.predict", description=__doc__.split("\n\n")[0],
        epilog="Exit code 0: all files classified; 1: some failed or none found; 2: bad arguments.")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (.wav .flac .ogg)")
    parser.add_argument("--systems", nargs="+", required=True, metavar="DIR",
                        help="system folders written by train.py (e.g. results/demo/system_d/1993)")
    parser.add_argument("--fusion", metavar="DIR", help="fusion folder written by python -m fusion.fuse")
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--batch_size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None):
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    not_systems = [d for d in args.systems if not (Path(d) / "hyperparams.yaml").is_file()]
    if not_systems:
        parser.error(f"--systems {not_systems[0]}: not a system folder (no hyperparams.yaml); "
                     "give the audio inputs before --systems, or after --")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}")
    try:  # a read-only or missing output folder is reported now, not after classifying every file
        ensure_writable_folder(Path(args.out).absolute().parent)
    except OSError as error:
        parser.error(f"--out {args.out}: {describe_os_error(error)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    files = find_audio_files(args.inputs)
    if not files:
        logger.error("no audio files in %s", " ".join(args.inputs))
        return 1
    # Imported here so that --help and argument errors answer without loading torch models.
    from ser.inference import EmotionRecognizer

    try:
        recognizer = EmotionRecognizer.from_folders(args.systems, args.fusion, args.device, args.batch_size)
    except OSError as error:  # no checkpoint, a model that is not available offline
        parser.error(describe_os_error(error))
    results = recognizer.classify_files(files, progress=not args.no_progress)
    try:
        write_predictions(args.out, results, recognizer.classes, recognizer.attributes)
    except OSError as error:  # e.g. the disk filled up while classifying
        print(f"error: predictions not saved: {describe_os_error(error, args.out)}", file=sys.stderr)
        return 1
    failed = [r for r in results if r.error is not None]
    print(f"Classified {len(results) - len(failed)} of {len(results)} files; predictions in {args.out}")
    for result in failed:
        print(f"  failed: {result.error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
