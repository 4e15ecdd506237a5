"""Generate a small synthetic corpus in the exact MSP-Podcast layout (any release).

MSP-Podcast is licensed and cannot ship with this repository, so the tests and the
demo run on a mini corpus spoken by espeak-ng voices and labelled by simulated
crowd workers. It is a fixture and a demo data source, not a corpus reader: the
readers are in :mod:`data_prep.corpora`. Usage::

    python -m data_prep.mini_corpus --out data/mini_corpus --seed 0 --turns 768 [--release v1.11]

``--release`` (``v1.11`` by default, ``v1.12``, ``2.0``, ``v1.6``) writes that
release's file names and label files (:mod:`data_prep.mini_corpus.releases`); the
same seed gives the same turns, audio and votes in every release.

Layout written under ``--out`` for v1.11 (as the real corpus, plus one answer key)::

    Audios/MSP-PODCAST_<podcast>_<turn>.wav   16 kHz mono PCM-16, Train/Development
    Audios/MSP-PODCAST_test3_<5 digits>.wav   Test3: audio only, like the challenge
    Labels/labels_consensus.csv               FileName,EmoClass,EmoAct,EmoVal,EmoDom,
                                              SpkrID,Gender,Split_Set (Train/Dev only)
    Labels/labels_detailed.csv                FileName,EmoDetail, one row per annotation
    Transcripts/<stem>.txt                    the sentence spoken (Train/Dev only)
    true_labels.csv                           FileName,EmoClass,Split_Set,SpkrID,Gender,Hard
                                              for every turn (the answer key)
    mini_corpus_options.json                  seed, size and "complete"; a rerun
                                              with the same options reuses the corpus

Splits are speaker-disjoint (about 37.5/42.5/20 % of turns for Train,
Development and Test3: the default 768 turns give 290, 326 and 152, so dev
macro-F1 is measured on ~260 turns with a class, see :data:`SPLIT_SHARES`);
Train and Development classes are skewed like MSP-Podcast Train, Test3 is
class-balanced (:mod:`data_prep.mini_corpus.plan`). Sentences and prosody come from
:mod:`data_prep.mini_corpus.speech`, annotations from
:mod:`data_prep.mini_corpus.annotators`. The same seed always gives byte-identical
files.
"""

import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from data_prep.mini_corpus.annotators import format_emo_detail, plurality_label, rate_attributes
from data_prep.mini_corpus.espeak import TARGET_RATE, EspeakSynthesizer
from data_prep.mini_corpus.plan import MIN_TURNS, SPLIT_SHARES, SPLITS, plan_corpus, turn_count
from data_prep.mini_corpus.releases import (
    DEFAULT_RELEASE,
    RELEASES,
    V112_FOLDERS,
    check_release,
    label_files,
    release_file_names,
)
from data_prep.mini_corpus.speech import compose_sentence, perceived_attributes, turn_prosody
from ser.io.atomic import atomic_write

logger = logging.getLogger(__name__)

DEFAULT_TURNS = 768
TRUE_LABEL_COLUMNS = "FileName,EmoClass,Split_Set,SpkrID,Gender,Hard"
OPTIONS_FILE = "mini_corpus_options.json"
# Bump when the generator changes what a seed produces, so old corpora are rebuilt.
FORMAT_VERSION = 3  # 3: Development is the largest split (SPLIT_SHARES)
MIN_SECONDS, MAX_SECONDS = 1.5, 5.0
# Faint background noise, so silences are not digital zeros (podcasts never are).
NOISE_STD = 0.002
PEAK_LIMIT = 0.95

__all__ = ["DEFAULT_TURNS", "MIN_TURNS", "RELEASES", "SPLIT_SHARES", "generate_mini_corpus", "summarize",
           "main"]


def _speak(rng, synthesizer, turn):
    """Compose and synthesise the turn, retrying until it lasts 1.5-5 s."""
    for _ in range(8):
        prosody = turn_prosody(rng, turn.speaker, turn.emotion,
                               rng.uniform(0.25, 0.5) if turn.kind == "hard"
                               else rng.uniform(0.55, 1.0))
        # Slow speech gets fewer words (espeak pauses at commas, hence the margin).
        max_words = max(5, int(MAX_SECONDS * 0.95 * prosody["rate"] / 60))
        text = compose_sentence(rng, turn.emotion, hard=turn.kind == "hard", max_words=max_words)
        wav = synthesizer.synthesize(text, **prosody)
        if MIN_SECONDS <= len(wav) / TARGET_RATE <= MAX_SECONDS:
            break
    else:
        raise RuntimeError(f"could not fit {turn.file_name} into {MIN_SECONDS}-{MAX_SECONDS} s")
    wav = wav + rng.normal(0, NOISE_STD, len(wav)).astype(np.float32)
    peak = float(np.abs(wav).max())
    if peak > PEAK_LIMIT:  # rare: loud voice at high pitch; keep a margin below clipping
        wav *= PEAK_LIMIT / peak
    turn.text = text
    # The annotators rate what they hear and read: the attributes follow the prosody and words.
    turn.annotations = rate_attributes(turn.annotations, perceived_attributes(prosody, turn.speaker, text))
    return wav


def _write_text(path, text):
    with atomic_write(path) as stream:
        stream.write(text)


def _mean(values):
    return str(round(float(np.mean(values)), 4))


def _write_tables(out, turns, release):
    labelled = sorted((t for t in turns if t.split != "Test3"), key=lambda t: t.file_name)
    consensus_label = lambda turn: plurality_label([a.label for a in turn.annotations])  # noqa: E731
    for relative, text in label_files(labelled, release, format_emo_detail, consensus_label).items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        _write_text(out / relative, text)
    truth = [TRUE_LABEL_COLUMNS] + [
        f"{t.file_name},{t.emotion},{t.split},{t.speaker.spkr_id},{t.speaker.gender},"
        f"{int(t.kind == 'hard')}" for t in sorted(turns, key=lambda t: t.file_name)]
    _write_text(out / "true_labels.csv", "\n".join(truth) + "\n")


def _options(seed, n_turns, release):
    return {"seed": int(seed), "n_turns": int(n_turns), "release": release, "format_version": FORMAT_VERSION}


def is_up_to_date(out, seed, n_turns, release=DEFAULT_RELEASE):
    """Whether ``out`` holds a complete mini corpus made with this seed, size and release.

    Example
    -------
    >>> import tempfile
    >>> is_up_to_date(tempfile.mkdtemp(), seed=0, n_turns=24)
    False
    """
    return _is_up_to_date(Path(out), _options(seed, n_turns, release))


def _is_up_to_date(out, options):
    options_path, truth_path = out / OPTIONS_FILE, out / "true_labels.csv"
    if not options_path.exists() or not truth_path.exists():
        return False
    try:
        if json.loads(options_path.read_text()) != {**options, "complete": True}:
            return False
    except ValueError:  # a damaged options file: rebuild
        return False
    names = [line.split(",")[0] for line in truth_path.read_text().splitlines()[1:]]
    return all((out / "Audios" / name).exists() for name in names)


def _claim_folder(out, options):
    """Make ``out`` ready for a new corpus, deleting only what a mini corpus wrote."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file, not a folder for the mini corpus")
    if out.exists() and any(out.iterdir()) and not (out / OPTIONS_FILE).exists():
        raise FileExistsError(f"{out} is not empty and holds no mini corpus; refusing to write")
    # Also the temporary files an interrupted run may have left.
    for pattern in ("Audios/*.wav", "Transcripts/*.txt", "Labels/*.csv", "true_labels.csv",
                    "*/.*.tmp", ".*.tmp", *(f"{folder}/README.txt" for folder in V112_FOLDERS)):
        for path in out.glob(pattern):
            path.unlink()
    # The folders that mark v1.12: another release written here must not look like it.
    for folder in V112_FOLDERS:
        if (out / folder).is_dir() and not any((out / folder).iterdir()):
            (out / folder).rmdir()
    for sub in ("Audios", "Labels", "Transcripts"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    # Marks the folder as a mini corpus at once, so an interrupted run can be redone.
    _write_text(out / OPTIONS_FILE, json.dumps({**options, "complete": False}, indent=2) + "\n")


def generate_mini_corpus(out, seed=0, n_turns=DEFAULT_TURNS, release=DEFAULT_RELEASE):
    """Write a mini corpus in the MSP-Podcast layout of ``release`` (see the module docstring).

    Parameters
    ----------
    out : str or pathlib.Path
        Output folder; created if needed. It must be empty or hold a mini corpus
        written before. When that corpus has the same seed and size it is reused.
    seed : int
        Random seed; the same seed gives byte-identical files.
    n_turns : int
        Number of turns, from :data:`MIN_TURNS` (24) to 40000.
    release : str
        The MSP-Podcast release whose names and label files are written, one of
        :data:`RELEASES`.

    Returns
    -------
    pathlib.Path
        The corpus root ``out``.

    Raises
    ------
    FileExistsError
        If ``out`` holds other files than a mini corpus.
    ValueError
        If ``n_turns`` is out of range.

    Example
    -------
    >>> import tempfile
    >>> root = generate_mini_corpus(tempfile.mkdtemp(), seed=1, n_turns=24)
    >>> sorted(p.name for p in root.iterdir())  # doctest: +NORMALIZE_WHITESPACE
    ['Audios', 'Labels', 'Transcripts', 'mini_corpus_options.json', 'true_labels.csv']
    """
    out = Path(out)
    check_release(release)
    options = _options(seed, n_turns, release)
    if _is_up_to_date(out, options):
        logger.info("mini corpus in %s is up to date (seed %d, %d turns, %s)", out, seed, n_turns, release)
        return out
    rng, turns, _ = plan_corpus(seed, n_turns)
    for turn, name in zip(turns, release_file_names(turns, release).values(), strict=True):
        turn.file_name = name
    _claim_folder(out, options)
    synthesizer = EspeakSynthesizer(TARGET_RATE)
    for turn in tqdm(turns, desc="mini corpus", unit="turn", disable=None):
        wav = _speak(rng, synthesizer, turn)
        # Encoded in memory first: soundfile writing to the file itself swallows a failed write (a
        # full disk) in its callbacks and fails later on an assert, with tracebacks but no file name.
        encoded = io.BytesIO()
        sf.write(encoded, wav, TARGET_RATE, subtype="PCM_16", format="WAV")
        with atomic_write(out / "Audios" / turn.file_name, "wb") as stream:
            stream.write(encoded.getvalue())
        if turn.split != "Test3":
            _write_text(out / "Transcripts" / f"{Path(turn.file_name).stem}.txt", turn.text + "\n")
    _write_tables(out, turns, release)
    # Rewritten last: "complete" means every file is in place.
    _write_text(out / OPTIONS_FILE, json.dumps({**options, "complete": True}, indent=2) + "\n")
    return out


def summarize(out):
    """One-line description of the mini corpus in ``out``.

    Example
    -------
    >>> import tempfile
    >>> summarize(generate_mini_corpus(tempfile.mkdtemp(), seed=1, n_turns=24))[:45]
    'MSP-Podcast v1.11 layout, 24 turns (Train 6, '
    """
    import pandas as pd

    from data_prep.corpora import open_corpus

    # Read back through the corpus reader: what the stages will see, in any release.
    corpus = open_corpus(out)
    truth = pd.read_csv(Path(out) / "true_labels.csv")
    consensus = corpus.consensus()
    detailed = corpus.annotations().table
    splits = truth["Split_Set"].value_counts()
    seconds = [sf.info(Path(out) / "Audios" / name).duration for name in truth["FileName"]]
    share = consensus["EmoClass"].value_counts(normalize=True)
    return (f"{corpus.corpus} {corpus.release} layout, {len(truth)} turns ("
            + ", ".join(f"{s} {splits.get(s, 0)}" for s in SPLITS)
            + f"), {truth['SpkrID'].nunique()} speakers, {len(detailed)} annotations, "
            f"consensus X {share.get('X', 0):.0%} O {share.get('O', 0):.0%}, "
            f"{min(seconds):.1f}-{max(seconds):.1f} s per turn")


def main(argv=None):
    """Command line: ``python -m data_prep.mini_corpus --out DIR [--seed S] [--turns N] [--release R]``."""
    from ser.cli import ArgumentParser, non_negative_int

    parser = ArgumentParser(prog="data_prep.mini_corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--turns", type=turn_count, default=DEFAULT_TURNS,
                        help=f"number of turns (default {DEFAULT_TURNS})")
    parser.add_argument("--release", choices=RELEASES, default=DEFAULT_RELEASE,
                        help=f"MSP-Podcast release whose layout is written (default {DEFAULT_RELEASE})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    root = generate_mini_corpus(args.out, seed=args.seed, n_turns=args.turns, release=args.release)
    print(f"mini corpus in {root}: {summarize(root)}; {time.perf_counter() - start:.1f} s")

