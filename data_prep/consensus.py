"""Consensus relabeling by annotator reliability (paper §5.4, system E).

1. Score each annotator: the share of their annotations whose primary
   emotion equals the turn's consensus ``EmoClass``.
2. Drop every annotation of annotators scoring below ``threshold`` (K).
3. Recompute every turn's label from its remaining annotations: the most
   frequent label; a tie of exactly N and one other label goes to the other
   label; any other tie, or no annotation left, gives ``X``.
4. Train and Development turns that were ``X`` and now carry one of the
   ``addable`` classes are added to training (paper Table 2: only
   A C D F S U grew).

Everything runs on integer codes with ``numpy.bincount`` over a
turns x labels count matrix, so a million annotations take well under a
second.

Command line::

    python -m data_prep.consensus --data_folder DIR --threshold 0.5 --out relabeled.csv [--strict]

The corpus is read through its reader (:func:`data_prep.corpora.open_corpus`, any
MSP-Podcast release whose per-annotator labels are released). An odd annotation
row (a word that names no emotion, a row that does not parse, a rating that is
not a number) is left out and listed in ``skipped_annotations.csv`` beside the
output (``File,Line,Reason``), with a count; ``--strict`` stops at it instead.

The output CSV has the columns ``FileName, Split_Set, EmoClass_Original,
EmoClass_Recomputed, AddedToTrain``; the training manifest of system E is the
usual Train turns plus the rows with ``AddedToTrain == True``, labelled with
``EmoClass_Recomputed``.
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.corpora import open_corpus
from ser.cli import ArgumentParser, check_output_file, exit_with, unit_interval
from ser.emotions import EMOTIONS, NO_AGREEMENT, OTHER
from ser.io.atomic import atomic_write

logger = logging.getLogger(__name__)

#: Classes that grew in paper Table 2; N and H did not.
DEFAULT_ADDABLE = ("A", "C", "D", "F", "S", "U")
#: Splits whose recovered turns may join training.
ADDABLE_SPLITS = ("Train", "Development")
#: Row order of paper Table 2.
TABLE_ORDER = ("N", "H", "S", "A", "U", "C", "D", "F")
RELABELED_COLUMNS = (
    "FileName", "Split_Set", "EmoClass_Original", "EmoClass_Recomputed", "AddedToTrain",
)
#: Where the annotation rows left out are listed, beside the relabeling.
SKIPPED_ANNOTATIONS_CSV = "skipped_annotations.csv"

# Labels an annotator can give: the eight classes and Other. NEUTRAL is
# looked up once because N loses two-way ties.
_VOTE_LABELS = np.array(EMOTIONS + (OTHER,), dtype=object)
_NEUTRAL = _VOTE_LABELS.tolist().index("N")


def _encode(detailed, consensus):
    """Integer codes of the annotations that belong to a consensus turn.

    Annotations of turns absent from ``consensus`` (e.g. Test3, whose labels
    are hidden) have no consensus to agree with, so they are left out of
    both scoring and recomputation.
    """
    turns = pd.Index(consensus["FileName"])
    if not turns.is_unique:
        duplicate = turns[turns.duplicated()][0]
        raise ValueError(f"consensus table lists FileName {duplicate!r} more than once")
    turn_code = turns.get_indexer(detailed["FileName"])
    vote_code = pd.Index(_VOTE_LABELS).get_indexer(detailed["Emotion"])
    if (vote_code < 0).any():
        bad = detailed["Emotion"].to_numpy()[np.flatnonzero(vote_code < 0)[0]]
        raise ValueError(f"annotation label {bad!r} is not one of {' '.join(_VOTE_LABELS)}")
    known = turn_code >= 0
    if not known.all():
        logger.info("%d annotations belong to turns without a consensus label; ignored",
                    int((~known).sum()))
    worker_code, worker_names = pd.factorize(detailed["Worker"].to_numpy()[known])
    return turn_code[known], vote_code[known], worker_code, worker_names


def _scores_from_codes(turn_code, vote_code, worker_code, n_workers, consensus_labels):
    # A consensus of X never matches a primary emotion, so X turns only
    # count in the denominator, as the paper's definition implies.
    consensus_code = pd.Index(_VOTE_LABELS).get_indexer(consensus_labels)
    agrees = vote_code == consensus_code[turn_code]
    hits = np.bincount(worker_code, weights=agrees, minlength=n_workers)
    totals = np.bincount(worker_code, minlength=n_workers)
    return hits / totals


def annotator_scores(detailed, consensus):
    """Share of each annotator's annotations that agree with the consensus.

    Parameters
    ----------
    detailed : pandas.DataFrame
        One row per annotation with ``FileName, Worker, Emotion`` (the table of
        annotations of a corpus reader, :mod:`data_prep.corpora.base`).
    consensus : pandas.DataFrame
        ``FileName, EmoClass`` (one row per turn).

    Returns
    -------
    pandas.Series
        Score in [0, 1] indexed by worker id (name ``score``), in order of
        first appearance. Annotations of turns missing from ``consensus`` are
        ignored.

    Example
    -------
    >>> consensus = pd.DataFrame({"FileName": ["a", "b"], "EmoClass": ["N", "X"]})
    >>> detailed = pd.DataFrame({"FileName": ["a", "a", "b", "b"],
    ...                          "Worker": ["w1", "w2", "w1", "w2"],
    ...                          "Emotion": ["N", "S", "H", "S"]})
    >>> annotator_scores(detailed, consensus).to_dict()
    {'w1': 0.5, 'w2': 0.0}
    """
    turn_code, vote_code, worker_code, workers = _encode(detailed, consensus)
    scores = _scores_from_codes(turn_code, vote_code, worker_code, len(workers),
                                consensus["EmoClass"].to_numpy())
    return pd.Series(scores, index=pd.Index(workers, name="Worker"), name="score")


def _majority_labels(vote_counts):
    """Apply the paper's tie rules to a turns x labels count matrix."""
    top = vote_counts.max(axis=1)
    is_top = (vote_counts == top[:, None]) & (top[:, None] > 0)
    n_top = is_top.sum(axis=1)
    # With one top label argmax finds it; with an N tie of two, masking N
    # out leaves the other label as the only top one.
    without_neutral = is_top.copy()
    without_neutral[:, _NEUTRAL] = False
    winner = np.where(n_top == 1, is_top.argmax(axis=1), without_neutral.argmax(axis=1))
    resolved = (n_top == 1) | ((n_top == 2) & is_top[:, _NEUTRAL])
    return np.where(resolved, _VOTE_LABELS[winner], NO_AGREEMENT)


def _kept_vote_counts(detailed, consensus, threshold):
    """Turns x labels (8 classes + O) counts of the annotations of workers scoring >= threshold."""
    turn_code, vote_code, worker_code, workers = _encode(detailed, consensus)
    scores = _scores_from_codes(turn_code, vote_code, worker_code, len(workers),
                                consensus["EmoClass"].to_numpy())
    kept = scores[worker_code] >= threshold
    n_turns, n_labels = len(consensus), len(_VOTE_LABELS)
    flat = turn_code[kept] * n_labels + vote_code[kept]
    vote_counts = np.bincount(flat, minlength=n_turns * n_labels).reshape(n_turns, n_labels)
    logger.info("threshold %.2f keeps %d of %d annotators (%d of %d annotations)",
                threshold, int((scores >= threshold).sum()), len(workers),
                int(kept.sum()), len(kept))
    return vote_counts


def vote_table(detailed, consensus, threshold=None):
    """Each turn's primary votes per label (8 classes and O), optionally after the §5.4 filter.

    The soft labels of the best later systems: the distribution of these
    votes over the classes is a training target (``soft_labels`` in the YAML).

    Parameters
    ----------
    detailed : pandas.DataFrame
        ``FileName, Worker, Emotion`` one row per annotation.
    consensus : pandas.DataFrame
        ``FileName, EmoClass`` one row per turn.
    threshold : float, optional
        K: drop every annotation of annotators scoring below it first
        (None keeps every annotator).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``FileName`` (in the order of ``consensus``), one integer
        column per label ``A C D F H N S U O``.

    Example
    -------
    >>> consensus = pd.DataFrame({"FileName": ["a", "b"], "EmoClass": ["S", "X"]})
    >>> detailed = pd.DataFrame({
    ...     "FileName": ["a", "a", "a", "b", "b", "b"],
    ...     "Worker": ["w1", "w2", "w3", "w1", "w2", "w3"],
    ...     "Emotion": ["S", "S", "N", "S", "N", "O"]})
    >>> vote_table(detailed, consensus).loc["b", ["S", "N", "O"]].tolist()
    [1, 1, 1]
    >>> vote_table(detailed, consensus, threshold=0.5).loc["b", ["S", "N", "O"]].tolist()  # w3 dropped
    [1, 1, 0]
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    counts = _kept_vote_counts(detailed, consensus, 0.0 if threshold is None else float(threshold))
    return pd.DataFrame(counts, index=pd.Index(consensus["FileName"], name="FileName"),
                        columns=list(_VOTE_LABELS))


def recompute_consensus(detailed, consensus, threshold=0.5):
    """Relabel every turn from the annotations of reliable annotators only.

    Parameters
    ----------
    detailed : pandas.DataFrame
        ``FileName, Worker, Emotion`` one row per annotation.
    consensus : pandas.DataFrame
        ``FileName, EmoClass`` one row per turn; scores are computed against it.
    threshold : float
        K: annotators whose score is below it lose all their annotations.

    Returns
    -------
    pandas.Series
        Recomputed label (``A..U``, ``O`` or ``X``) indexed by ``FileName``,
        in the order of ``consensus``.

    Example
    -------
    >>> consensus = pd.DataFrame({"FileName": ["a", "b"], "EmoClass": ["S", "X"]})
    >>> detailed = pd.DataFrame({
    ...     "FileName": ["a", "a", "a", "b", "b", "b"],
    ...     "Worker": ["w1", "w2", "w3", "w1", "w2", "w3"],
    ...     "Emotion": ["S", "S", "N", "S", "N", "H"]})
    >>> recompute_consensus(detailed, consensus, threshold=0.5).to_dict()
    {'a': 'S', 'b': 'S'}
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    vote_counts = _kept_vote_counts(detailed, consensus, threshold)
    return pd.Series(_majority_labels(vote_counts), index=pd.Index(consensus["FileName"]),
                     name="EmoClass_Recomputed")


def relabel(detailed, consensus, threshold=0.5, addable=DEFAULT_ADDABLE):
    """Recompute all labels and mark the no-agreement turns that join training.

    Parameters
    ----------
    detailed : pandas.DataFrame
        ``FileName, Worker, Emotion`` one row per annotation.
    consensus : pandas.DataFrame
        ``FileName, EmoClass, Split_Set`` one row per turn.
    threshold : float
        K of the paper (system E: 0.5).
    addable : iterable of str
        Recomputed classes that may join training.

    Returns
    -------
    pandas.DataFrame
        Columns ``FileName, Split_Set, EmoClass_Original, EmoClass_Recomputed,
        AddedToTrain``; ``AddedToTrain`` is True for Train and Development
        turns that were ``X`` and are now one of ``addable``.

    Example
    -------
    >>> consensus = pd.DataFrame({"FileName": ["a", "b"], "EmoClass": ["S", "X"],
    ...                           "Split_Set": ["Train", "Development"]})
    >>> detailed = pd.DataFrame({
    ...     "FileName": ["a", "a", "a", "b", "b", "b"],
    ...     "Worker": ["w1", "w2", "w3", "w1", "w2", "w3"],
    ...     "Emotion": ["S", "S", "N", "S", "N", "H"]})
    >>> relabel(detailed, consensus)["AddedToTrain"].tolist()
    [False, True]
    """
    addable = tuple(addable)
    unknown = sorted(set(addable) - set(EMOTIONS))
    if unknown:
        raise ValueError(f"addable classes {unknown} are not among {' '.join(EMOTIONS)}")
    recomputed = recompute_consensus(detailed, consensus, threshold=threshold).to_numpy()
    original = consensus["EmoClass"].to_numpy()
    added = (
        consensus["Split_Set"].isin(ADDABLE_SPLITS).to_numpy()
        & (original == NO_AGREEMENT)
        & np.isin(recomputed, addable)
    )
    return pd.DataFrame({
        "FileName": consensus["FileName"].to_numpy(),
        "Split_Set": consensus["Split_Set"].to_numpy(),
        "EmoClass_Original": original,
        "EmoClass_Recomputed": recomputed,
        "AddedToTrain": added,
    })


def relabel_corpus(corpus, threshold=0.5, addable=DEFAULT_ADDABLE, strict=False):
    """Relabel a corpus read by its reader: :func:`relabel` on its two tables.

    Parameters
    ----------
    corpus : data_prep.corpora.CorpusReader
        From :func:`data_prep.corpora.open_corpus`.
    threshold, addable
        As for :func:`relabel`.
    strict : bool
        Stop at the first odd annotation row instead of leaving it out.

    Returns
    -------
    (pandas.DataFrame, list of SkippedRow)
        The relabeling (one row per labelled turn) and the annotation rows left out.
    """
    annotations = corpus.annotations(strict=strict)
    turns = corpus.turns()
    labelled = turns[turns["EmoClass"].notna()].reset_index(drop=True)
    return relabel(annotations.table, labelled, threshold=threshold, addable=addable), annotations.skipped


def write_relabeling(relabeled, skipped, out_path):
    """Write the relabeling and, beside it, the list of annotation rows left out.

    ``skipped_annotations.csv`` (columns ``File,Line,Reason``) is written even when
    empty, so that a fixed file leaves no stale list behind. Returns its path.

    Example
    -------
    >>> import pathlib, tempfile
    >>> from data_prep.corpora import SkippedRow
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "relabeled.csv"
    >>> listed = write_relabeling(pd.DataFrame({"FileName": ["a.wav"]}),
    ...                           [SkippedRow("Labels/d.csv", 9, "unknown primary emotion 'Joy'")], out)
    >>> print(listed.read_text().strip())
    File,Line,Reason
    Labels/d.csv,9,unknown primary emotion 'Joy'
    """
    out_path = Path(out_path)
    listed = out_path.with_name(SKIPPED_ANNOTATIONS_CSV)
    rows = pd.DataFrame([(row.path, row.line, row.reason) for row in skipped],
                        columns=["File", "Line", "Reason"])
    for frame, path in ((rows, listed), (relabeled, out_path)):
        with atomic_write(path) as stream:
            frame.to_csv(stream, index=False)
    if skipped:
        for row in skipped[:10]:
            logger.warning("%s (left out)", row)
        logger.warning("%d annotation row(s) left out, listed in %s", len(skipped), listed)
    return listed


def class_count_table(relabeled):
    """Render Train class counts before and after relabeling (paper Table 2).

    Parameters
    ----------
    relabeled : pandas.DataFrame
        The output of :func:`relabel`.

    Returns
    -------
    str
        A fixed-width table: rows ``N H S A U C D F Total``; columns
        ``Train`` (Train turns with one of the eight classes),
        ``Train Augmented`` (``Train`` plus ``Added``) and ``Added`` (turns
        with ``AddedToTrain``, by recomputed class).

    Example
    -------
    >>> relabeled = pd.DataFrame({"Split_Set": ["Train", "Train", "Development"],
    ...     "EmoClass_Original": ["N", "X", "X"], "EmoClass_Recomputed": ["N", "S", "S"],
    ...     "AddedToTrain": [False, True, True]})
    >>> print(class_count_table(relabeled).splitlines()[3])
    S              0                2       2
    """
    is_train_class = relabeled["Split_Set"].eq("Train") & relabeled["EmoClass_Original"].isin(
        EMOTIONS)
    train = relabeled.loc[is_train_class, "EmoClass_Original"].value_counts()
    added = relabeled.loc[relabeled["AddedToTrain"].astype(bool),
                          "EmoClass_Recomputed"].value_counts()
    counts = pd.DataFrame({
        "Train": train.reindex(TABLE_ORDER, fill_value=0),
        "Added": added.reindex(TABLE_ORDER, fill_value=0),
    })
    counts["Train Augmented"] = counts["Train"] + counts["Added"]
    counts.loc["Total"] = counts.sum()
    header = f"{'Class':<6}{'Train':>10}{'Train Augmented':>17}{'Added':>8}"
    lines = [header] + [
        f"{label:<6}{row['Train']:>10,}{row['Train Augmented']:>17,}{row['Added']:>8,}"
        for label, row in counts.iterrows()
    ]
    return "\n".join(lines)




def _parse_addable(text):
    letters = tuple(ch for ch in text.upper() if ch.isalpha())
    unknown = sorted(set(letters) - set(EMOTIONS))
    if unknown or not letters:
        raise argparse.ArgumentTypeError(
            f"--addable takes letters among {''.join(EMOTIONS)}, got {text!r}")
    return letters


def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    parser = ArgumentParser(prog="data_prep.consensus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True, help="MSP-Podcast root (holds Labels/)")
    parser.add_argument("--threshold", type=unit_interval, default=0.5,
                        help="K: drop annotators agreeing with the consensus less than this")
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--addable", type=_parse_addable, default=DEFAULT_ADDABLE,
                        help="classes that may join training, e.g. ACDFSU (default)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first odd annotation row instead of leaving it out")
    args = parser.parse_args(argv)
    check_output_file(args.out)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    start = time.perf_counter()
    corpus = open_corpus(args.data_folder)  # bad input ends at the edge (ser.cli): one line, exit 2
    print(f"corpus: {corpus.describe()}")
    relabeled, skipped = relabel_corpus(corpus, threshold=args.threshold, addable=args.addable,
                                        strict=args.strict)
    listed = write_relabeling(relabeled, skipped, args.out)
    elapsed = time.perf_counter() - start

    print(class_count_table(relabeled))
    if skipped:
        print(f"{len(skipped)} annotation row(s) left out (listed in {listed})")
    print(f"{int(relabeled['AddedToTrain'].sum())} turns added to training; "
          f"wrote {args.out} in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    exit_with("data_prep.consensus", main, interrupted="--out was not replaced (written whole at the end); "
              "run the same command again")
