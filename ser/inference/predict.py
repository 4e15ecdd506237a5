"""Classify new audio files with trained sub-systems (and optionally their fusion).

Usage::

    python -m ser.predict recordings/ call.flac --systems results/demo/system_a/1993 \\
        results/demo/system_d/1993 [--fusion results/demo/fusion] --out preds.csv
    python -m ser.predict --model my_model/ recordings/ --out preds.csv          # an exported package
    python -m ser.predict --model my_model/ long.wav --out preds.csv --timeline --window 3 --hop 1
    python -m ser.predict --model my_model/ recordings/ --out preds.csv --embeddings vectors/

Inputs are files or folders; folders are searched recursively for ``.wav``, ``.flac`` and ``.ogg``
files. (``--systems`` takes several folders, so give the inputs before it, or after ``--``.)
Any sample rate, channel count and length is accepted (see :mod:`ser.inference`).

Writes ``--out`` atomically, one row per input file, sorted as found::

    File,EmoClass,A,C,D,F,H,N,S,U,Error,Flag

``EmoClass`` is the predicted letter and ``A``–``U`` the probabilities (fused when ``--fusion``
is given, else the average of the systems); for a file that cannot be read they are empty and
``Error`` says why. When a loaded system predicts the Task 2 attributes, ``EmoAct,EmoVal,EmoDom``
(1-7, the average of those systems) come before ``Error``; with attribute systems only,
``EmoClass`` and the probabilities are left out. Prints how many files were classified and lists
the failed ones. ``Flag`` (last) marks a file that was classified but cannot carry an
answer (:data:`ser.inference.FLAGS`: ``too_short``, ``silent``; a warning names it too): do
not trust its label.
The libraries' messages (SpeechBrain, transformers, torch warnings) go to ``--log``
(default: ``--out`` with ``.log``).

``--timeline`` also classifies windows of ``--window`` seconds every ``--hop`` seconds: rows
``File,Start,End,EmoClass,A..U`` in ``<out stem>_timeline.csv`` and one PNG per file in
``<out stem>_timeline/``. ``--embeddings DIR`` saves each file's pooled vectors per system
(``(windows, dim)`` float32 ``.npy``) and an ``index.csv`` (``File,System,Embedding,Windows,Dim``).

Exit code (:mod:`ser.cli`): 0 when every file was classified, 1 when at least one failed (or none
was found, or ``--out`` could not be written), 2 for bad arguments (an ``--out`` that is a folder,
a system folder that cannot be loaded, a fusion trained on other systems), checked before any
work, 130 when interrupted.
"""

import csv
import logging
import sys
from pathlib import Path

from ser.cli import ArgumentParser, check_device, check_output_file, positive_float, positive_int, run_command
from ser.console import chatter_to_log
from ser.emotions import EMOTIONS
from ser.errors import UserInputError
from ser.io.atomic import atomic_write
from ser.io.system_folder import HPARAMS_FILE

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
    """Write :class:`ser.inference.Result` rows as ``File,EmoClass,A..U,Error,Flag`` (atomically).

    Parameters
    ----------
    classes : sequence of str
        Probability columns (empty: no ``EmoClass`` either, attribute systems only).
    attributes : sequence of str, optional
        Attribute columns (default: those of the first result that has attributes).

    Example
    -------
    >>> import tempfile, os
    >>> from ser.inference.recognizer import Result
    >>> out = os.path.join(tempfile.mkdtemp(), "preds.csv")
    >>> ok = Result("a.wav", "N", {c: 0.125 for c in EMOTIONS})
    >>> write_predictions(out, [ok, Result("b.wav", error="b.wav: empty audio file")])
    >>> print(open(out).read().strip())
    File,EmoClass,A,C,D,F,H,N,S,U,Error,Flag
    a.wav,N,0.125000,0.125000,0.125000,0.125000,0.125000,0.125000,0.125000,0.125000,,
    b.wav,,,,,,,,,,b.wav: empty audio file,
    >>> write_predictions(out, [Result("a.wav", attributes={"EmoAct": 4.5, "EmoVal": 3.0})], classes=())
    >>> print(open(out).read().strip())
    File,EmoAct,EmoVal,Error,Flag
    a.wav,4.500000,3.000000,,
    """
    classes = tuple(classes)
    if attributes is None:
        attributes = next((tuple(r.attributes) for r in results if r.attributes), ())
    columns = ["File", *(["EmoClass", *classes] if classes else []), *attributes, "Error", "Flag"]
    with atomic_write(path) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for result in results:
            if result.error is None:
                row = [result.file]
                if classes:
                    row += [result.label, *(f"{result.probabilities[c]:.6f}" for c in classes)]
                row += [f"{result.attributes[a]:.6f}" for a in attributes]
                writer.writerow([*row, "", result.flag or ""])
            else:
                writer.writerow([result.file, *[""] * (len(columns) - 3), result.error, ""])


def write_embeddings(folder, results):
    """Save each classified file's pooled vectors per system as ``.npy``, listed in ``index.csv``.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> from ser.inference.recognizer import Result
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_embeddings(folder, [Result("a/x.wav", "N", embeddings={"system_a": np.ones((2, 4))})])
    >>> print((folder / "index.csv").read_text().strip())
    File,System,Embedding,Windows,Dim
    a/x.wav,system_a,system_a/0000_x.npy,2,4
    """
    import numpy as np

    folder = Path(folder)
    rows = []
    for number, result in enumerate(results):
        for system, vectors in result.embeddings.items():
            relative = Path(system.replace("/", "_")) / f"{number:04d}_{Path(result.file).stem}.npy"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(folder / relative, "wb") as stream:
                np.save(stream, np.asarray(vectors, dtype=np.float32))
            rows.append([result.file, system, relative.as_posix(), *np.shape(vectors)])
    with atomic_write(folder / "index.csv") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["File", "System", "Embedding", "Windows", "Dim"])
        writer.writerows(rows)


def write_timelines(recognizer, out, results, window, hop):
    """``<out stem>_timeline.csv`` and ``<out stem>_timeline/<n>_<file>.png`` for the classified files."""
    from ser.inference.timeline import plot_timeline, write_timeline

    if not recognizer.classes:
        logger.warning("--timeline: the loaded systems predict no classes; no timeline written")
        return
    out = Path(out)
    figures = out.with_name(f"{out.stem}_timeline")
    figures.mkdir(parents=True, exist_ok=True)
    timelines = {}
    for number, result in enumerate(r for r in results if r.error is None):
        rows = recognizer.classify_timeline(result.file, window=window, hop=hop)
        timelines[result.file] = rows
        plot_timeline(rows, figures / f"{number:04d}_{Path(result.file).stem}.png",
                      title=f"{Path(result.file).name}: {window:g} s windows every {hop:g} s")
    write_timeline(out.with_name(f"{out.stem}_timeline.csv"), timelines)


def build_parser():
    parser = ArgumentParser(
        prog="ser.predict", description=__doc__.split("\n\n")[0],
        epilog="Exit code 0: all files classified; 1: some failed or none found; 2: bad arguments; "
               "130: interrupted.")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (.wav .flac .ogg)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--systems", nargs="+", metavar="DIR",
                        help="system folders written by train.py (e.g. results/demo/system_d/1993)")
    source.add_argument("--model", metavar="PACKAGE",
                        help="a package written by python -m ser.export (folder or Hugging Face id)")
    parser.add_argument("--fusion", metavar="DIR", help="fusion folder written by python -m fusion.fuse")
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--batch_size", type=positive_int, default=8, help="windows per forward pass")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--log", help="file for the libraries' messages (default: --out with .log)")
    parser.add_argument("--timeline", action="store_true",
                        help="also classify windows over time: <out stem>_timeline.csv and a PNG per file")
    parser.add_argument("--window", type=positive_float, default=3.0, help="timeline window, seconds")
    parser.add_argument("--hop", type=positive_float, default=1.0, help="timeline hop, seconds")
    parser.add_argument("--embeddings", metavar="DIR",
                        help="save each file's pooled vectors per system (.npy) and index.csv in DIR")
    return parser


def main(argv=None):
    """Run the CLI; returns the exit code (bad input raises, for :func:`ser.cli.run_command`)."""
    args = build_parser().parse_args(argv)
    if args.fusion and args.model:
        raise UserInputError("--fusion goes with --systems; a --model package holds its own fusion")
    not_systems = [d for d in args.systems or () if not (Path(d) / HPARAMS_FILE).is_file()]
    if not_systems:
        raise UserInputError(f"--systems {not_systems[0]}: not a system folder (no hyperparams.yaml); "
                             "give the audio inputs before --systems, or after --")
    check_output_file(args.out)
    check_device(args.device)
    log = Path(args.log) if args.log else Path(args.out).with_suffix(".log")
    if log == Path(args.out):
        log = Path(f"{args.out}.log")
    check_output_file(log)
    with chatter_to_log(log):  # loading systems is chatty: keep the console for the results
        code = classify(args)
    print(f"Messages of the libraries: {log}")
    return code


def classify(args):
    """Classify the inputs and write ``--out``; returns the exit code."""
    files = find_audio_files(args.inputs)
    if not files:
        logger.error("no audio files in %s", " ".join(args.inputs))
        return 1
    # Imported here so that --help and argument errors answer without loading torch models.
    from ser.inference.recognizer import EmotionRecognizer

    if args.model:
        recognizer = EmotionRecognizer.from_pretrained(args.model, args.device, args.batch_size)
    else:
        recognizer = EmotionRecognizer.from_folders(args.systems, args.fusion, args.device, args.batch_size)
    results = recognizer.classify_files(files, progress=not args.no_progress,
                                        embeddings=args.embeddings is not None)
    write_predictions(args.out, results, recognizer.classes, recognizer.attributes)
    # After the predictions, which are saved whatever happens here.
    if args.embeddings:
        write_embeddings(args.embeddings, results)
    if args.timeline:
        write_timelines(recognizer, args.out, results, args.window, args.hop)
    failed = [r for r in results if r.error is not None]
    flagged = [r for r in results if r.flag]
    print(f"Classified {len(results) - len(failed)} of {len(results)} files; predictions in {args.out}")
    for result in failed:
        print(f"  failed: {result.error}")
    for result in flagged:
        print(f"  flagged {result.flag}: {result.file} (its label is not meaningful)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_command("ser.predict", main, sys.argv[1:],
                         interrupted="nothing was written (predictions are saved at the end); run it again"))
