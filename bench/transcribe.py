"""Turns per second of Whisper tiny.en (faster-whisper, int8): one turn per call vs batched turns.

MSP-Podcast turns (2-12 s) are shorter than Whisper's 30 s window, and faster-whisper's own batched
pipeline batches the segments of one long file, not several files. The project's backend
(:mod:`ser.asr`) batches *across files*: each turn's 30 s window is encoded, then
one ``generate`` call decodes the whole batch. This script times both paths on the same generated
espeak turns (whose spoken text is known), at equal beam size, and prints:

- turns/s and the speed-up of the batched path over one turn per call;
- word agreement between the two paths (fraction of the per-call words matched in order);
- word accuracy of each path against the spoken text;
- then the batched path at each ``--windows`` encoder window (``DecodeOptions.window_seconds``,
  30 s being Whisper's own): turns/s, speed-up over 30 s, word agreement with the 30 s window's
  transcripts and word accuracy.

Usage::

    python bench/transcribe.py [--turns 120] [--batch_size 8] [--beams 5 1] [--windows 30 10] \\
        [--seed 0] [--corpus DIR] [--device cuda --compute_type float16]

``--corpus`` reads the turns of an existing mini corpus (e.g. ``data/mini_corpus``) instead of
generating one in a temporary folder. Target on the 2-core CPU: at least 1.3x at beam 5. Time it inside
``flock /tmp/cpu.lock`` on a shared machine.
"""

import argparse
import difflib
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from data_prep.corpora import open_corpus
from data_prep.mini_corpus import generate_mini_corpus
from data_prep.mini_corpus.plan import MIN_TURNS
from data_prep.transcribe import read_audio_16k
from ser.asr import SAMPLE_RATE, DecodeOptions, bundled_tiny_en_path, load_backend

# Train/Development turns have a spoken-text file, Test3 turns (about a fifth) do not.
CORPUS_TURNS_PER_SPOKEN_TURN = 1.3


def words(text):
    """Lower-case words of a text (punctuation dropped).

    Example
    -------
    >>> words("Well, I don't know!")
    ['well', 'i', "don't", 'know']
    """
    return re.findall(r"[a-z0-9']+", text.lower())


def word_match(hypothesis, reference):
    """Fraction of the reference words found, in order, in the hypothesis (1 - WER without insertions).

    Example
    -------
    >>> word_match("the cat sat", "the cat sat down"), word_match("", "")
    (0.75, 1.0)
    """
    ref = words(reference)
    if not ref:
        return 1.0 if not words(hypothesis) else 0.0
    matcher = difflib.SequenceMatcher(a=ref, b=words(hypothesis), autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(ref)


def spoken_turns(corpus, count):
    """The first ``count`` turns (sorted) with a known spoken text: (audio arrays, texts)."""
    names = sorted(p.stem for p in (Path(corpus) / "Transcripts").glob("*.txt"))
    if len(names) < count:
        raise SystemExit(f"{corpus}: only {len(names)} turns with a spoken text, --turns asks for {count}")
    names = [f"{stem}.wav" for stem in names[:count]]
    reader = open_corpus(corpus)
    audios = [read_audio_16k(reader.audio_path(name)) for name in names]
    texts = [reader.transcript(name) for name in names]
    return audios, texts


def timed_transcripts(backend, audios, batch_size):
    """Transcripts of ``audios`` and the seconds they took."""
    began = time.perf_counter()
    texts = backend.transcribe_many(audios, batch_size)
    return texts, time.perf_counter() - began


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=120, help="turns to transcribe")
    parser.add_argument("--batch_size", type=int, default=8, help="turns per call of the batched path")
    parser.add_argument("--beams", type=int, nargs="+", default=[5, 1], help="beam sizes to compare at")
    parser.add_argument("--windows", type=float, nargs="+", default=[30.0, 10.0],
                        help="encoder windows (s) of the batched path, compared at the first beam")
    parser.add_argument("--seed", type=int, default=0, help="mini corpus seed")
    parser.add_argument("--corpus", help="existing mini corpus to read (default: generate one)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CTranslate2 device)")
    parser.add_argument("--compute_type", default="int8", help="CTranslate2 type (GPU: float16)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.turns < 1 or args.batch_size < 2:
        raise SystemExit("--turns must be at least 1 and --batch_size at least 2")
    logging.basicConfig(level=logging.WARNING)
    n_corpus = max(MIN_TURNS, int(args.turns * CORPUS_TURNS_PER_SPOKEN_TURN) + 8)
    with tempfile.TemporaryDirectory() as scratch:
        corpus = args.corpus or generate_mini_corpus(scratch, seed=args.seed, n_turns=n_corpus)
        audios, spoken = spoken_turns(corpus, args.turns)
    seconds = sum(len(a) for a in audios) / SAMPLE_RATE
    print(
        f"{len(audios)} turns, {seconds:.0f} s of audio (mean {seconds / len(audios):.1f} s); "
        f"Whisper tiny.en, faster-whisper {args.compute_type} on {args.device}; "
        f"batched path: {args.batch_size} turns per call"
    )
    header = (
        f"{'beam':>4}{'per call t/s':>14}{'batched t/s':>13}{'speed-up':>10}"
        f"{'agreement':>11}{'acc per call':>14}{'acc batched':>13}"
    )
    rows = []
    for beam in args.beams:
        backend = load_backend(
            "faster-whisper",
            bundled_tiny_en_path(),
            DecodeOptions(beam_size=beam),
            device=args.device,
            compute_type=args.compute_type,
        )
        backend.transcribe_many(audios[:2], 2)  # first-call set-up is not throughput
        single, single_seconds = timed_transcripts(backend, audios, 1)
        batched, batched_seconds = timed_transcripts(backend, audios, args.batch_size)
        agreement = np.mean([word_match(b, s) for b, s in zip(batched, single, strict=True)])
        identical = sum(b == s for b, s in zip(batched, single, strict=True))
        accuracy_single = np.mean([word_match(t, r) for t, r in zip(single, spoken, strict=True)])
        accuracy_batched = np.mean([word_match(t, r) for t, r in zip(batched, spoken, strict=True)])
        rows.append(
            f"{beam:>4}{len(audios) / single_seconds:>14.2f}{len(audios) / batched_seconds:>13.2f}"
            f"{single_seconds / batched_seconds:>9.2f}x{agreement:>11.3f}{accuracy_single:>14.3f}"
            f"{accuracy_batched:>13.3f}   ({identical}/{len(audios)} identical)"
        )
    print(header)
    print("\n".join(rows))
    print(window_table(audios, spoken, args))
    return 0


def window_table(audios, spoken, args):
    """The batched path at each of ``args.windows`` (beam ``args.beams[0]``), as printed lines."""
    lines = [f"batched path, beam {args.beams[0]}, by encoder window:",
             f"{'window':>7}{'turns/s':>9}{'speed-up':>10}{'agreement':>11}{'accuracy':>10}"]
    first = None
    for window in args.windows:
        backend = load_backend("faster-whisper", bundled_tiny_en_path(),
                               DecodeOptions(beam_size=args.beams[0], window_seconds=window),
                               device=args.device, compute_type=args.compute_type)
        backend.transcribe_many(audios[:2], 2)
        texts, seconds = timed_transcripts(backend, audios, args.batch_size)
        first = first or (texts, seconds)
        agreement = np.mean([word_match(t, f) for t, f in zip(texts, first[0], strict=True)])
        accuracy = np.mean([word_match(t, r) for t, r in zip(texts, spoken, strict=True)])
        lines.append(f"{window:>6g}s{len(audios) / seconds:>9.2f}{first[1] / seconds:>9.2f}x"
                     f"{agreement:>11.3f}{accuracy:>10.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
