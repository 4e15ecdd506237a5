"""Consensus relabeling (paper §5.4): hand-derived cases, CLI, reference check."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_prep.consensus import (
    annotator_scores,
    class_count_table,
    recompute_consensus,
    relabel,
)
from ser.emotions import LETTER_TO_WORD

REPO = Path(__file__).resolve().parents[1]

# Hand-built corpus. Reliable workers w1..w4, unreliable b1, b2.
# Eight calibration turns c1..c8 (Test1, consensus H): w1..w4 say H, b1 and b2
# say S. They give every reliable worker 8 agreements.
CALIBRATION = [(f"c{i}", "Test1", "H", {"w1": "H", "w2": "H", "w3": "H", "w4": "H",
                                        "b1": "S", "b2": "S"}) for i in range(1, 9)]
# (turn, split, consensus, {worker: primary emotion}) and, in the comment,
# the label after dropping b1 and b2.
TURNS = [
    # S 2, N 2 (b1's N dropped; with it N would win 3-2): N loses the tie -> S.
    ("t1", "Train", "X", {"w1": "S", "w2": "S", "w3": "N", "w4": "N", "b1": "N"}),
    # A 2, H 2: a tie without N -> X.
    ("t2", "Development", "X", {"w1": "A", "w2": "H", "w3": "A", "w4": "H"}),
    # Only unreliable annotators: nothing left -> X.
    ("t3", "Train", "X", {"b1": "A", "b2": "A"}),
    # Other wins 2-1 -> O (never added to training).
    ("t4", "Train", "X", {"w1": "O", "w2": "O", "w3": "N"}),
    # F wins, but Test1 turns never join training.
    ("t5", "Test1", "X", {"w1": "F", "w2": "F", "w3": "N"}),
    # H wins, but H is not addable by default.
    ("t6", "Train", "X", {"w1": "H", "w2": "H", "w3": "N"}),
    # Already labelled N; stays N; not added since it was not X.
    ("t7", "Train", "N", {"w1": "N", "w2": "N", "w3": "N", "b1": "S"}),
    # N 3, U 2 with everybody; after dropping b1, b2: U 2, N 1 -> U (added).
    ("t8", "Development", "X", {"w2": "U", "w4": "U", "w3": "N", "b1": "N", "b2": "N"}),
    # N, A, S once each: a three-way tie, even with N in it -> X.
    ("t9", "Train", "X", {"w1": "N", "w2": "A", "w3": "S"}),
    # Labelled S; b2 agrees here (its only agreement); w4 keeps it S.
    ("t10", "Train", "S", {"w4": "S", "b2": "S", "b1": "N"}),
]
# Scores = agreements / annotations, counting the 8 calibration turns:
#   w1: t7 agrees; 7 annotations on t-turns -> (8 + 1) / (8 + 7) = 0.6
#   w2: t7 agrees; 8 annotations            -> 9 / 16 = 0.5625
#   w3: t7 agrees; 8 annotations            -> 9 / 16 = 0.5625
#   w4: t10 agrees; 4 annotations           -> 9 / 12 = 0.75
#   b1: never agrees; 8 + 5 annotations     -> 0 / 13 = 0
#   b2: t10 agrees; 8 + 3 annotations       -> 1 / 11
EXPECTED_SCORES = {"w1": 0.6, "w2": 0.5625, "w3": 0.5625, "w4": 0.75, "b1": 0.0, "b2": 1 / 11}
EXPECTED_LABELS = {"t1": "S", "t2": "X", "t3": "X", "t4": "O", "t5": "F", "t6": "H",
                   "t7": "N", "t8": "U", "t9": "X", "t10": "S"}


def hand_tables():
    consensus = pd.DataFrame(
        [(name, label, split) for name, split, label, _ in CALIBRATION + TURNS],
        columns=["FileName", "EmoClass", "Split_Set"])
    detailed = pd.DataFrame(
        [(name, worker, emotion) for name, _, _, votes in CALIBRATION + TURNS
         for worker, emotion in votes.items()],
        columns=["FileName", "Worker", "Emotion"])
    return detailed, consensus


def test_annotator_scores_match_hand_count():
    detailed, consensus = hand_tables()
    scores = annotator_scores(detailed, consensus)
    assert scores.to_dict() == pytest.approx(EXPECTED_SCORES)


def test_recompute_consensus_applies_tie_rules_and_drops():
    detailed, consensus = hand_tables()
    recomputed = recompute_consensus(detailed, consensus, threshold=0.5)
    assert {name: recomputed[name] for name in EXPECTED_LABELS} == EXPECTED_LABELS
    assert (recomputed[[f"c{i}" for i in range(1, 9)]] == "H").all()


def test_threshold_zero_keeps_everybody():
    # With K = 0 nobody is dropped: t1 is N 3 - S 2 -> N, t3 is A, t8 is N 3 - U 2 -> N.
    detailed, consensus = hand_tables()
    recomputed = recompute_consensus(detailed, consensus, threshold=0.0)
    assert (recomputed["t1"], recomputed["t3"], recomputed["t8"]) == ("N", "A", "N")


def test_threshold_above_some_reliable_workers():
    # K = 0.58 also drops w2 and w3 (0.5625): t1 keeps w1:S, w4:N -> tie with N -> S;
    # t6 keeps only w1:H -> H; t9 keeps only w1:N -> N.
    detailed, consensus = hand_tables()
    recomputed = recompute_consensus(detailed, consensus, threshold=0.58)
    assert (recomputed["t1"], recomputed["t6"], recomputed["t9"]) == ("S", "H", "N")


def test_relabel_marks_only_recovered_train_and_dev_turns():
    detailed, consensus = hand_tables()
    relabeled = relabel(detailed, consensus)
    assert list(relabeled.columns) == [
        "FileName", "Split_Set", "EmoClass_Original", "EmoClass_Recomputed", "AddedToTrain"]
    added = relabeled.loc[relabeled["AddedToTrain"], "FileName"].tolist()
    assert added == ["t1", "t8"]  # S from Train, U from Development
    with_happy = relabel(detailed, consensus, addable=("S", "U", "H"))
    assert with_happy.loc[with_happy["AddedToTrain"], "FileName"].tolist() == ["t1", "t6", "t8"]
    with pytest.raises(ValueError, match="addable"):
        relabel(detailed, consensus, addable=("X",))


def test_class_count_table_counts_train_and_added():
    detailed, consensus = hand_tables()
    table = class_count_table(relabel(detailed, consensus)).splitlines()
    rows = {line.split()[0]: [int(v.replace(",", "")) for v in line.split()[1:]]
            for line in table[1:]}
    assert table[0].split() == ["Class", "Train", "Train", "Augmented", "Added"]
    assert list(rows) == ["N", "H", "S", "A", "U", "C", "D", "F", "Total"]
    # Train turns with a class: t7 N, t10 S. Added: t1 S, t8 U.
    assert rows["N"] == [1, 1, 0]
    assert rows["S"] == [1, 2, 1]
    assert rows["U"] == [0, 1, 1]
    assert rows["Total"] == [2, 4, 2]


def test_unknown_turns_are_ignored_and_bad_labels_rejected():
    detailed, consensus = hand_tables()
    extra = pd.DataFrame({"FileName": ["test3.wav"], "Worker": ["w1"], "Emotion": ["A"]})
    with_extra = pd.concat([detailed, extra], ignore_index=True)
    assert annotator_scores(with_extra, consensus).to_dict() == pytest.approx(EXPECTED_SCORES)
    bad = detailed.assign(Emotion=detailed["Emotion"].replace({"F": "Fear"}))
    with pytest.raises(ValueError, match="'Fear'"):
        recompute_consensus(bad, consensus)
    with pytest.raises(ValueError, match="threshold"):
        recompute_consensus(detailed, consensus, threshold=1.5)


def write_corpus(root, detailed, consensus):
    labels = root / "Labels"
    labels.mkdir(parents=True)
    full = consensus.assign(EmoAct=4.0, EmoVal=4.0, EmoDom=4.0, SpkrID="1", Gender="Female")
    full[["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender",
          "Split_Set"]].to_csv(labels / "labels_consensus.csv", index=False)
    words = detailed["Emotion"].map(LETTER_TO_WORD)
    emo_detail = detailed["Worker"] + "; " + words + "; ; A:4.0; V:4.0; D:4.0;"
    pd.DataFrame({"FileName": detailed["FileName"], "EmoDetail": emo_detail}).to_csv(
        labels / "labels_detailed.csv", index=False)


def test_cli_end_to_end(tmp_path):
    detailed, consensus = hand_tables()
    write_corpus(tmp_path / "corpus", detailed, consensus)
    out = tmp_path / "out" / "relabeled.csv"
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.consensus", "--data_folder", str(tmp_path / "corpus"),
         "--threshold", "0.5", "--out", str(out), "--addable", "ACDFSU"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert dict(zip(written["FileName"], written["EmoClass_Recomputed"], strict=True)) == {
        **{f"c{i}": "H" for i in range(1, 9)}, **EXPECTED_LABELS}
    assert written.loc[written["AddedToTrain"] == "True", "FileName"].tolist() == ["t1", "t8"]
    # No temp file left; the list of odd annotation rows is there, empty.
    assert sorted(p.name for p in out.parent.iterdir()) == ["relabeled.csv", "skipped_annotations.csv"]
    assert (out.parent / "skipped_annotations.csv").read_text() == "File,Line,Reason\n"
    release, *lines = result.stdout.splitlines()
    assert release.startswith(f"corpus: MSP-Podcast v1.11 in {tmp_path / 'corpus'}"), release
    assert lines[0].split() == ["Class", "Train", "Train", "Augmented", "Added"]
    assert lines[9].split() == ["Total", "2", "4", "2"]
    assert "2 turns added to training" in result.stdout and " s" in lines[-1]


def test_cli_rejects_bad_addable(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.consensus", "--data_folder", str(tmp_path),
         "--out", str(tmp_path / "o.csv"), "--addable", "AXZ"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0 and "--addable" in result.stderr


def reference_relabel(detailed, consensus, threshold, addable):
    """Straightforward loop version of paper §5.4, written independently."""
    truth = dict(zip(consensus["FileName"], consensus["EmoClass"], strict=True))
    hits, totals = Counter(), Counter()
    for name, worker, emotion in detailed.itertuples(index=False):
        if name in truth:
            totals[worker] += 1
            hits[worker] += emotion == truth[name]
    votes = {name: Counter() for name in truth}
    for name, worker, emotion in detailed.itertuples(index=False):
        if name in truth and hits[worker] / totals[worker] >= threshold:
            votes[name][emotion] += 1
    rows = []
    for name, split, original in zip(consensus["FileName"], consensus["Split_Set"],
                                     consensus["EmoClass"], strict=True):
        counts = votes[name]
        label = "X"
        if counts:
            best = max(counts.values())
            leaders = sorted(k for k, v in counts.items() if v == best)
            if len(leaders) == 1:
                label = leaders[0]
            elif len(leaders) == 2 and "N" in leaders:
                label = leaders[0] if leaders[1] == "N" else leaders[1]
        added = split in ("Train", "Development") and original == "X" and label in addable
        rows.append((name, split, original, label, added))
    return pd.DataFrame(rows, columns=["FileName", "Split_Set", "EmoClass_Original",
                                       "EmoClass_Recomputed", "AddedToTrain"])


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7])
def test_vectorized_equals_reference_on_random_table(threshold):
    rng = np.random.default_rng(int(threshold * 10) + 3)
    n_turns, n_workers = 600, 40
    labels = np.array(list("ACDFHNSUO"))
    prior = np.array([3, 2, 1, 1, 8, 14, 3, 2, 2], dtype=float)
    truth = rng.choice(len(labels), size=n_turns, p=prior / prior.sum())
    per_turn = rng.integers(1, 8, size=n_turns)  # few votes -> many ties
    turn_of = np.repeat(np.arange(n_turns), per_turn)
    worker_of = rng.integers(0, n_workers, size=len(turn_of))
    careful = rng.random(n_workers)  # each worker follows the truth this often
    follows = rng.random(len(turn_of)) < careful[worker_of]
    vote = np.where(follows, truth[turn_of], rng.integers(0, len(labels), size=len(turn_of)))
    names = np.array([f"turn{i:04d}" for i in range(n_turns)])
    consensus = pd.DataFrame({
        "FileName": names,
        "EmoClass": np.where(rng.random(n_turns) < 0.3, "X", labels[truth]),
        "Split_Set": rng.choice(["Train", "Development", "Test1", "Test2"], size=n_turns),
    })
    detailed = pd.DataFrame({"FileName": names[turn_of],
                             "Worker": [f"W{w}" for w in worker_of],
                             "Emotion": labels[vote]})
    assert len(detailed) > 2000
    expected = reference_relabel(detailed, consensus, threshold, ("A", "C", "D", "F", "S", "U"))
    got = relabel(detailed, consensus, threshold=threshold)
    pd.testing.assert_frame_equal(got.astype(str), expected.astype(str))
    # The table must exercise every rule, or the comparison proves little.
    assert {"X", "O", "N"} <= set(got["EmoClass_Recomputed"])
    assert got["AddedToTrain"].any() or threshold == 0.7


def test_benchmark_script_runs_small():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "consensus.py"), "--turns", "3000"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "3,000 turns" in result.stdout and "total" in result.stdout
