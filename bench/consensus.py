"""Time the label readers and the consensus relabeling at MSP-Podcast size.

Builds a synthetic corpus of ``--turns`` turns (default 152,000, about
6.5 annotations each, so about a million annotation rows), writes it as
``Labels/labels_consensus.csv`` and ``Labels/labels_detailed.csv`` (v1.11
``EmoDetail`` format, or 2.0's one column per field with ``--release 2.0``) in a
temporary folder, then times reading both files through the corpus reader (as the
stages do) and relabeling. Target on a 2-core machine: under 5 s in total.

Usage::

    python bench/consensus.py [--turns 152000] [--seed 0] [--release v1.11|2.0]

The synthetic annotators: a Zipf-like activity (a few workers annotate
thousands of turns, most a handful); 15 % of them are unreliable (60 %
Neutral, otherwise any class); the others give the turn's hidden emotion
(35 %), a second plausible emotion of the turn (30 %) or any class (35 %),
the hidden emotions following the skewed prior below. The consensus is the
plurality of all annotations (same tie rules as the relabeling), which
leaves about 8 % of the turns as ``X`` (fewer than the real corpus, but
enough to exercise the recovery).
"""

import argparse
import logging
import os
import tempfile
import time

import numpy as np
import pandas as pd

from data_prep.consensus import class_count_table, recompute_consensus, relabel
from data_prep.corpora import open_corpus
from ser.emotions import LETTER_TO_WORD, OTHER

# Rough MSP-Podcast class prior (Train counts of paper Table 2, plus Other).
_PRIOR = {"A": 3053, "C": 2443, "D": 1426, "F": 1139, "H": 13440, "N": 25106, "S": 3882,
          "U": 2897, OTHER: 2500}
# Split shares of the official release (Test3 has no labels, so it is absent).
_SPLITS = {"Train": 84030, "Development": 19815, "Test1": 30647, "Test2": 14815}
_NEUTRAL = list(_PRIOR).index("N")
UNRELIABLE_SHARE = 0.15
_SECONDARY = np.array(["", "Concerned", "Frustrated", "Concerned,Frustrated", "Amused",
                       "Annoyed,Disappointed"], dtype=object)


def synthetic_annotations(n_turns, seed=0):
    """Draw consensus and detailed tables of ``n_turns`` turns.

    Returns
    -------
    tuple of pandas.DataFrame
        ``(consensus, detailed)`` shaped like the readers' outputs, plus an
        ``EmoDetail`` column in ``detailed`` ready to be written.
    """
    rng = np.random.default_rng(seed)
    labels = np.array(list(_PRIOR), dtype=object)
    prior = np.array(list(_PRIOR.values()), dtype=float)
    prior /= prior.sum()

    truth = rng.choice(len(labels), size=n_turns, p=prior)
    per_turn = 5 + rng.poisson(1.5, size=n_turns)
    turn_of = np.repeat(np.arange(n_turns), per_turn)
    n_rows = len(turn_of)

    n_workers = max(50, n_turns // 12)
    activity = 1.0 / np.arange(1, n_workers + 1) ** 0.8
    worker_of = rng.choice(n_workers, size=n_rows, p=activity / activity.sum())
    unreliable = rng.random(n_workers) < UNRELIABLE_SHARE
    # Each turn is ambiguous between its hidden emotion and a second one:
    # this is what produces the no-agreement (X) turns of the real corpus.
    second = rng.choice(len(labels), size=n_turns, p=prior)
    draw = rng.random(n_rows)
    careful_vote = np.where(draw < 0.35, truth[turn_of],
                            np.where(draw < 0.65, second[turn_of],
                                     rng.integers(0, len(labels), size=n_rows)))
    # Unreliable annotators mostly click Neutral, otherwise anything.
    lazy_vote = np.where(rng.random(n_rows) < 0.6, _NEUTRAL,
                         rng.integers(0, len(labels), size=n_rows))
    vote = np.where(unreliable[worker_of], lazy_vote, careful_vote)

    names = np.array([f"MSP-PODCAST_{i // 50:04d}_{i % 50:04d}.wav" for i in range(n_turns)],
                     dtype=object)
    shares = np.array(list(_SPLITS.values()), dtype=float)
    split = rng.choice(np.array(list(_SPLITS), dtype=object), size=n_turns,
                       p=shares / shares.sum())
    workers = np.array([f"WORKER{i:08d}" for i in range(n_workers)], dtype=object)
    detailed = pd.DataFrame({"FileName": names[turn_of], "Worker": workers[worker_of],
                             "Emotion": labels[vote]})

    # Plurality of all annotations: threshold 0 keeps everybody.
    blank = pd.DataFrame({"FileName": names, "EmoClass": "X"})
    emo_class = recompute_consensus(detailed, blank, threshold=0.0).to_numpy()
    attributes = rng.uniform(1, 7, size=(n_turns, 3)).round(1)
    consensus = pd.DataFrame({
        "FileName": names, "EmoClass": emo_class,
        "EmoAct": attributes[:, 0], "EmoVal": attributes[:, 1], "EmoDom": attributes[:, 2],
        "SpkrID": rng.integers(1, 2000, size=n_turns).astype(str),
        "Gender": rng.choice(np.array(["Female", "Male"], dtype=object), size=n_turns),
        "Split_Set": split,
    })

    words = pd.Series(labels).map({**LETTER_TO_WORD, OTHER: "Other-Bored"}).to_numpy()
    scores = pd.Series(rng.integers(1, 8, size=n_rows).astype(float)).astype(str)
    detailed["EmoDetail"] = (
        detailed["Worker"] + "; " + pd.Series(words[vote]) + "; "
        + pd.Series(_SECONDARY[rng.integers(0, len(_SECONDARY), size=n_rows)])
        + "; A:" + scores + "; V:" + scores + "; D:" + scores + ";"
    )
    return consensus, detailed


def _time(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=152_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--release", choices=("v1.11", "2.0"), default="v1.11",
                        help="format of labels_detailed.csv")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    consensus, detailed = synthetic_annotations(args.turns, seed=args.seed)
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "Labels"))
        consensus.to_csv(os.path.join(root, "Labels", "labels_consensus.csv"), index=False)
        if args.release == "2.0":
            ratings = detailed["EmoDetail"].str.extract(r"A:(\S+); V:(\S+); D:(\S+);")
            ratings = ratings.astype(float).astype(int)
            words_2_0 = {"Angry": "Anger", "Happy": "Happiness", "Sad": "Sadness",
                         "Other-Bored": "Other - bored"}
            columns = pd.DataFrame({
                "FileName": detailed["FileName"], "WorkerID": detailed["Worker"],
                "EmoClass_Major": detailed["EmoDetail"].str.split("; ").str[1].replace(words_2_0),
                "EmoClass_Second": "", "EmoAct": ratings[0], "EmoVal": ratings[1], "EmoDom": ratings[2]})
            columns.to_csv(os.path.join(root, "Labels", "labels_detailed.csv"), index=False)
        else:
            detailed[["FileName", "EmoDetail"]].to_csv(
                os.path.join(root, "Labels", "labels_detailed.csv"), index=False)

        corpus = open_corpus(root)
        read_consensus, t_consensus = _time(corpus.consensus)
        read_annotations, t_detailed = _time(corpus.annotations)
        read_detailed = read_annotations.table
    relabeled, t_relabel = _time(relabel, read_detailed, read_consensus, threshold=0.5)

    assert (read_detailed["Emotion"].to_numpy() == detailed["Emotion"].to_numpy()).all()
    n_rows, n_turns = len(read_detailed), len(read_consensus)
    total = t_consensus + t_detailed + t_relabel
    print(f"{corpus.corpus} {corpus.release} label files")
    print(class_count_table(relabeled))
    print(f"\n{n_turns:,} turns, {n_rows:,} annotations "
          f"({n_rows / n_turns:.2f} per turn), "
          f"{int((read_consensus['EmoClass'] == 'X').sum()):,} X turns")
    print(f"{'step':<24}{'seconds':>9}{'rows/s':>14}")
    for step, seconds, rows in (("read consensus CSV", t_consensus, n_turns),
                                ("read detailed CSV", t_detailed, n_rows),
                                ("relabel (K=0.5)", t_relabel, n_rows),
                                ("total", total, n_rows)):
        print(f"{step:<24}{seconds:>9.2f}{rows / seconds:>14,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
