"""Classify new audio files with trained sub-systems (and optionally their fusion).

Usage::

    python -m ser.predict --model my_model/ call.mp3                               # a table on the console
    python -m ser.predict --model my_model/ call.mp3 --top_k 3                     # the 3 likeliest classes
    python -m ser.predict recordings/ call.flac --systems results/demo/system_a/1993 \\
        results/demo/system_d/1993 [--fusion results/demo/fusion] --out preds.csv
    python -m ser.predict --model my_model/ recordings/ --out preds.csv          # an exported package
    python -m ser.predict --model my_model/ long.wav --out preds.csv --timeline --window 3 --hop 1
    python -m ser.predict --model my_model/ episode.wav --out preds.csv --segment vad  # speech segments
    python -m ser.predict --model my_model/ recordings/ --out preds.csv --embeddings vectors/

Inputs are files or folders; folders are searched recursively for the audio formats a single file
may have (:func:`ser.io.audio.readable_suffixes`: ``.wav``, ``.flac``, ``.ogg``, ``.mp3`` ...).
(``--systems`` takes several folders, so give the inputs before it, or after ``--``.)
Any sample rate, channel count and length is accepted (see :mod:`ser.inference`); the files that
were resampled or down-mixed are summed up in one line at the end.

Without ``--out``, prints one row per file: its label with the full name and probability (the
``--top_k`` likeliest classes), its attributes and its transcript. With ``--out``, writes it
atomically, one row per input file, sorted as found::

    File,EmoClass,A,C,D,F,H,N,S,U,Error,Flag

``EmoClass`` is the predicted letter and ``A``–``U`` the probabilities (fused when ``--fusion``
is given, else the average of the systems); for a file that cannot be read they are empty and
``Error`` says why. When a loaded system predicts the Task 2 attributes, ``EmoAct,EmoVal,EmoDom``
(1-7, the average of those systems) come before ``Error``; with attribute systems only,
``EmoClass`` and the probabilities are left out. When a text system ran, ``Transcript`` (its
Whisper transcript) comes before ``Error``; with ``--top_k K``, ``Top`` lists the K likeliest classes
(``N 0.458; D 0.210``). Prints how many files were classified and lists the failed ones.
``Flag`` (last) marks a file that was classified but cannot carry an
answer (:data:`ser.inference.FLAGS`: ``too_short``, ``silent``; a warning names it too): do
not trust its label.
The libraries' messages (SpeechBrain, transformers, torch warnings) go to ``--log``
(default: ``--out`` with ``.log``, or ``ser_predict.log`` in the temporary folder without ``--out``).
A progress bar shows on a terminal only (not when the output is piped or redirected).

``--timeline`` also classifies windows of ``--window`` seconds every ``--hop`` seconds: rows
``File,Start,End,EmoClass,A..U`` in ``<out stem>_timeline.csv`` and one PNG per file in
``<out stem>_timeline/``. ``--segment vad`` (which implies ``--timeline``) classifies the speech
segments Silero VAD finds instead (:mod:`ser.inference.vad`, the ``vad`` extra): same rows, one per
segment, none for silence; ``--vad_threshold``, ``--min_speech``, ``--max_segment`` (longer speech
is split) and ``--speech_padding`` tune it. ``--segment fixed`` is ``--timeline``.
``--embeddings DIR`` saves each file's pooled vectors per system
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
from ser.console import chatter_to_log, progress_wanted
from ser.emotions import EMOTIONS
from ser.errors import UserInputError
from ser.io.atomic import atomic_write
from ser.io.system_folder import HPARAMS_FILE, SystemFolderError, run_folder

logger = logging.getLogger(__name__)

#: Audio (seconds, all inputs together) from which ``--pack_weights auto`` repacks ONNX weights: the
#: second it costs at start-up is won back by clips a few percent faster (ONNX int8 WavLM-large
#: classifies 2 min of audio in about 12 s on a 2-core CPU).
PACK_FROM_SECONDS = 120.0



def __getattr__(name):
    # AUDIO_SUFFIXES reads libsndfile's formats (ser.io.audio loads torch): only when asked for.
    if name == "AUDIO_SUFFIXES":
        from ser.io.audio import readable_suffixes

        return readable_suffixes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def find_audio_files(inputs):
    """Expand files and folders into a list of audio files.

    A folder contributes its audio files (:func:`ser.io.audio.readable_suffixes`, any case,
    recursively, sorted); a file is kept as given, whatever its name, so that a bad file is reported
    rather than skipped.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("b.WAV", "a.flac", "c.mp3", "notes.txt"):
    ...     (root / name).touch()
    >>> [p.name for p in find_audio_files([root])]
    ['a.flac', 'b.WAV', 'c.mp3']
    """
    from ser.io.audio import readable_suffixes

    suffixes = readable_suffixes()
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                logger.warning("%s: no audio files in this folder (%s)", item, " ".join(suffixes))
            files.extend(found)
        else:
            files.append(item)
    return files


def write_predictions(path, results, classes=EMOTIONS, attributes=None, top_k=None):
    """Write :class:`ser.inference.Result` rows as ``File,EmoClass,A..U,Error,Flag`` (atomically).

    Parameters
    ----------
    classes : sequence of str
        Probability columns (empty: no ``EmoClass`` either, attribute systems only).
    attributes : sequence of str, optional
        Attribute columns (default: those of the first result that has attributes).
    top_k : int, optional
        Add a ``Top`` column: the ``top_k`` likeliest classes with their probabilities.

    A ``Transcript`` column comes before ``Error`` when a result has a transcript (a text system ran).

    Example
    -------
    >>> import tempfile, os
    >>> from ser.inference.results import Result
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
    transcripts = any(r.transcript is not None for r in results)
    extra = [*(["Top"] if top_k and classes else []), *(["Transcript"] if transcripts else [])]
    columns = ["File", *(["EmoClass", *classes] if classes else []), *attributes, *extra, "Error", "Flag"]
    with atomic_write(path) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for result in results:
            if result.error is None:
                row = [result.file]
                if classes:
                    row += [result.label, *(f"{result.probabilities[c]:.6f}" for c in classes)]
                row += [f"{result.attributes[a]:.6f}" for a in attributes]
                if "Top" in extra:
                    row.append("; ".join(f"{c} {p:.3f}" for c, _, p in result.top_k(top_k)))
                if transcripts:
                    row.append(result.transcript or "")
                writer.writerow([*row, "", result.flag or ""])
            else:
                writer.writerow([result.file, *[""] * (len(columns) - 3), result.error, ""])


def format_results_table(results, classes=EMOTIONS, attributes=(), top_k=1):
    """The console table of :class:`ser.inference.Result` rows: label (full name, probability),
    attributes, transcript; an error or flag instead when there is one.

    Example
    -------
    >>> from ser.inference.results import Result
    >>> ok = Result("a.wav", "N", {"A": 0.2, "H": 0.1, "N": 0.7}, transcript="hello there")
    >>> print(format_results_table([ok, Result("b.wav", error="b.wav: empty audio file")], "AHN", top_k=2))
    File   Emotion                       Transcript
    a.wav  N Neutral 0.70, A Anger 0.20  hello there
    b.wav  error: b.wav: empty audio file
    """
    header = ["File", *(["Emotion"] if classes else []), *attributes]
    transcripts = any(r.transcript is not None for r in results)
    header += ["Transcript"] if transcripts else []
    rows = []
    for result in results:
        if result.error is not None:
            rows.append([result.file, f"error: {result.error}"])
            continue
        row = [result.file]
        if classes:
            row.append(", ".join(f"{c} {name} {p:.2f}" for c, name, p in result.top_k(top_k)))
        row += [f"{result.attributes[a]:.2f}" for a in attributes]
        if transcripts:
            row.append(result.transcript or "")
        if result.flag:
            row[-1] += f"  (flagged {result.flag}: not meaningful)"
        rows.append(row)
    # The last cell of a row is not padded (a transcript or an error runs to the end of the line).
    widths = {}
    for row in [header, *rows]:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    lines = ["  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])), row[-1]]).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def write_embeddings(folder, results):
    """Save each classified file's pooled vectors per system as ``.npy``, listed in ``index.csv``.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> from ser.inference.results import Result
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


def write_timelines(recognizer, out, results, window, hop, segment="fixed", vad=None):
    """``<out stem>_timeline.csv`` and ``<out stem>_timeline/<n>_<file>.png`` for the classified files.

    ``segment="vad"``: one row per speech segment (``vad``: :class:`ser.inference.vad.VadOptions`);
    a file without speech gets no row, an empty figure and a line on the console.
    """
    from ser.inference.timeline import plot_timeline, write_timeline

    if not recognizer.classes:
        logger.warning("--timeline: the loaded systems predict no classes; no timeline written")
        return
    out = Path(out)
    figures = out.with_name(f"{out.stem}_timeline")
    figures.mkdir(parents=True, exist_ok=True)
    timelines = {}
    for number, result in enumerate(r for r in results if r.error is None):
        rows = recognizer.classify_timeline(result.file, window=window, hop=hop, segment=segment, vad=vad)
        timelines[result.file] = rows
        how = (f"{len(rows)} speech segments (Silero VAD)" if segment == "vad"
               else f"{window:g} s windows every {hop:g} s")
        if segment == "vad" and not rows:
            print(f"  no speech found: {result.file}; no timeline rows")
        plot_timeline(rows, figures / f"{number:04d}_{Path(result.file).stem}.png",
                      title=f"{Path(result.file).name}: {how}")
    write_timeline(out.with_name(f"{out.stem}_timeline.csv"), timelines)


def build_parser():
    parser = ArgumentParser(
        prog="ser.predict", description=__doc__.split("\n\n")[0],
        epilog="Exit code 0: all files classified; 1: some failed or none found; 2: bad arguments; "
               "130: interrupted.")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (.wav .flac .ogg)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--systems", nargs="+", metavar="DIR",
                        help="system folders written by train.py (e.g. results/demo/system_d/1993, or "
                             "results/demo/system_d when it holds one seed folder)")
    source.add_argument("--model", metavar="PACKAGE",
                        help="a package written by python -m ser.export (folder or Hugging Face id)")
    parser.add_argument("--fusion", metavar="DIR", action="append",
                        help="fusion folder of python -m fusion.fuse (Task 1) or python -m fusion.attributes "
                             "(Task 2); give --fusion twice for both")
    parser.add_argument("--out", help="output CSV (without it, a table of labels is printed)")
    parser.add_argument("--top_k", type=positive_int, default=None, metavar="K",
                        help="show the K likeliest classes of each file (and a Top column in --out)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--batch_size", type=positive_int, default=8, help="windows per forward pass")
    parser.add_argument("--no_progress", action="store_true",
                        help="no progress bar (there is none anyway when the output is not a terminal)")
    parser.add_argument("--log", help="file for the libraries' messages (default: --out with .log; "
                                      "without --out, ser_predict.log in the temporary folder)")
    parser.add_argument("--timeline", action="store_true",
                        help="also classify windows over time: <out stem>_timeline.csv and a PNG per file")
    parser.add_argument("--window", type=positive_float, default=3.0, help="timeline window, seconds")
    parser.add_argument("--hop", type=positive_float, default=1.0, help="timeline hop, seconds")
    parser.add_argument("--segment", choices=("fixed", "vad"),
                        help="timeline rows: fixed windows (--window, --hop; as --timeline) or the speech "
                             "segments Silero VAD finds (silence gets no row); implies --timeline")
    parser.add_argument("--vad_threshold", type=positive_float, default=0.5,
                        help="--segment vad: speech probability above which a frame is speech (0-1)")
    parser.add_argument("--min_speech", type=positive_float, default=0.25,
                        help="--segment vad: drop speech shorter than this, seconds")
    parser.add_argument("--max_segment", type=positive_float, default=10.0,
                        help="--segment vad: split longer speech into equal parts, seconds")
    parser.add_argument("--speech_padding", type=float, default=0.1,
                        help="--segment vad: seconds added before and after each segment")
    parser.add_argument("--embeddings", metavar="DIR",
                        help="save each file's pooled vectors per system (.npy) and index.csv in DIR")
    parser.add_argument("--pack_weights", choices=("auto", "yes", "no"), default="auto",
                        help="--model with ONNX systems: repack the graphs' weights for this CPU at start-up "
                             "(about 1 s more for WavLM-large fp32, up to 12%% less per clip); auto: from "
                             f"{PACK_FROM_SECONDS:g} s of audio on")
    return parser


def main(argv=None):
    """Run the CLI; returns the exit code (bad input raises, for :func:`ser.cli.run_command`)."""
    args = build_parser().parse_args(argv)
    args.timeline = args.timeline or args.segment is not None
    args.vad = None
    if args.segment == "vad":
        from ser.inference.vad import VadOptions, VadUnavailableError, vad_available

        if not vad_available():
            raise VadUnavailableError("--segment vad needs silero-vad: pip install -e '.[vad]'")
        args.vad = VadOptions(threshold=args.vad_threshold, min_speech=args.min_speech,
                              max_segment=args.max_segment, padding=args.speech_padding)
    if args.fusion and args.model:
        raise UserInputError("--fusion goes with --systems; a --model package holds its own fusion")
    if args.systems:
        args.systems = [str(_run_folder(given)) for given in args.systems]
    if args.out is None and args.timeline:
        raise UserInputError("--timeline writes <out stem>_timeline.csv beside the predictions: give --out")
    if args.out is not None:
        check_output_file(args.out)
    check_device(args.device)
    if args.log:
        log = Path(args.log)
    elif args.out is not None:
        log = Path(args.out).with_suffix(".log")
    else:
        import tempfile

        log = Path(tempfile.gettempdir()) / "ser_predict.log"
    if args.out is not None and log == Path(args.out):
        log = Path(f"{args.out}.log")
    check_output_file(log, "--log", "ser_predict.log")
    with chatter_to_log(log):  # loading systems is chatty: keep the console for the results
        code = classify(args)
    print(f"Messages of the libraries: {log}")
    return code


def _run_folder(given):
    """The train.py folder ``given`` names: itself, or its one seed folder (as ``ser.export`` reads it)."""
    try:
        return run_folder(given)
    except SystemFolderError as error:
        if Path(given).is_dir() and len(list(Path(given).glob(f"*/{HPARAMS_FILE}"))) > 1:
            raise UserInputError(f"--systems {error}") from None  # several seeds: which one
        raise UserInputError(f"--systems {given}: not a system folder (no hyperparams.yaml); "
                             "give the audio inputs before --systems, or after --") from None


def _audio_reaches(files, seconds, duration):
    """Whether ``files`` last ``seconds`` in all (headers read only until they do).

    Example
    -------
    >>> lengths = {"a.wav": 50.0, "b.wav": 80.0, "c.wav": 1.0}
    >>> _audio_reaches(["a.wav", "b.wav", "c.wav"], 120.0, lengths.get)
    True
    >>> _audio_reaches(["a.wav"], 120.0, lengths.get)
    False
    """
    total = 0.0
    for path in files:
        total += duration(path)
        if total >= seconds:
            return True
    return False


def classify(args):
    """Classify the inputs and write ``--out``; returns the exit code."""
    files = find_audio_files(args.inputs)
    if not files:
        logger.error("no audio files in %s", " ".join(args.inputs))
        return 1
    # Imported here so that --help and argument errors answer without loading torch models.
    from ser.inference.recognizer import EmotionRecognizer
    from ser.io.audio import duration_seconds

    if args.model:
        pack = args.pack_weights == "yes" or (
            args.pack_weights == "auto" and _audio_reaches(files, PACK_FROM_SECONDS, duration_seconds))
        recognizer = EmotionRecognizer.from_pretrained(args.model, args.device, args.batch_size,
                                                       pack_weights=pack)
    else:
        from ser.fusion_model import split_fusion_dirs

        fusion, attribute_fusion = split_fusion_dirs(args.fusion)
        recognizer = EmotionRecognizer.from_folders(args.systems, fusion, args.device, args.batch_size,
                                                    attribute_fusion_dir=attribute_fusion)
    results = recognizer.classify_files(files, progress=progress_wanted(not args.no_progress),
                                        embeddings=args.embeddings is not None)
    if args.out is not None:
        write_predictions(args.out, results, recognizer.classes, recognizer.attributes, args.top_k)
    else:
        print(format_results_table(results, recognizer.classes, recognizer.attributes, args.top_k or 1))
    # After the predictions, which are saved whatever happens here.
    if args.embeddings:
        write_embeddings(args.embeddings, results)
    if args.timeline:
        write_timelines(recognizer, args.out, results, args.window, args.hop,
                        args.segment or "fixed", args.vad)
    failed = [r for r in results if r.error is not None]
    flagged = [r for r in results if r.flag]
    where = f"; predictions in {args.out}" if args.out is not None else ""
    print(f"Classified {len(results) - len(failed)} of {len(results)} files{where}")
    for result in failed:
        print(f"  failed: {result.error}")
    for result in flagged:
        print(f"  flagged {result.flag}: {result.file} (its label is not meaningful)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_command("ser.predict", main, sys.argv[1:],
                         interrupted="nothing was written (predictions are saved at the end); run it again"))
