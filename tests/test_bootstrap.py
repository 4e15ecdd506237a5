"""Speaker-clustered bootstrap (ser.bootstrap) against a plain loop over the same draws.

The reference builds each resampled dev set turn by turn (every turn of every drawn speaker,
a speaker drawn twice listed twice) and scores it with scikit-learn's ``f1_score`` and
``ser.metrics.concordance_cc``; the library's matrix products must give the same numbers.
"""

import time

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ser.bootstrap import SpeakerBootstrap
from ser.emotions import EMOTIONS
from ser.metrics import concordance_cc


def _dev_set(n_turns=60, n_speakers=9, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(list("AHNSU"), n_turns, p=[0.1, 0.3, 0.4, 0.1, 0.1])
    speakers = np.array([f"spk{i}" for i in rng.integers(0, n_speakers, n_turns)], dtype="<U16")
    speakers[:4] = "Unknown"  # each its own cluster
    noisy = labels.copy()
    flip = rng.random(n_turns) < 0.4
    noisy[flip] = rng.choice(list(EMOTIONS), flip.sum())
    worse = labels.copy()
    flip = rng.random(n_turns) < 0.6
    worse[flip] = rng.choice(list(EMOTIONS), flip.sum())
    return labels, speakers, noisy, worse


def _resampled_turns(boot, speakers):
    """Turn indices of each resample, built from the same draws as the library's."""
    clusters = {}
    for turn, cluster in enumerate(boot.clusters):
        clusters.setdefault(int(cluster), []).append(turn)
    for draws in boot.draws():
        for row in draws:
            yield [turn for cluster in row for turn in clusters[int(cluster)]]


def test_clusters_are_speakers_and_unknown_turns_stand_alone():
    _, speakers, _, _ = _dev_set()
    boot = SpeakerBootstrap(speakers, n_resamples=5)
    known = speakers[speakers != "Unknown"]
    assert boot.n_clusters == len(set(known)) + 4
    for a in range(len(speakers)):
        for b in range(len(speakers)):
            same = boot.clusters[a] == boot.clusters[b]
            assert same == (a == b or (speakers[a] == speakers[b] != "Unknown"))


def test_macro_f1_replicates_match_a_plain_loop():
    labels, speakers, noisy, _ = _dev_set()
    boot = SpeakerBootstrap(speakers, n_resamples=200, seed=3)
    replicates, full = boot.macro_f1_replicates(labels, noisy)
    reference = [f1_score(labels[turns], noisy[turns], labels=list(EMOTIONS), average="macro",
                          zero_division=0) for turns in _resampled_turns(boot, speakers)]
    np.testing.assert_allclose(replicates, reference, atol=1e-12)
    assert full == pytest.approx(f1_score(labels, noisy, labels=list(EMOTIONS), average="macro",
                                          zero_division=0))
    # The resamples differ (the interval has width) and bracket the full score.
    interval = boot.macro_f1_interval(labels, noisy)
    assert interval.low < interval.estimate < interval.high


def test_paired_test_matches_a_plain_loop():
    labels, speakers, noisy, worse = _dev_set()
    boot = SpeakerBootstrap(speakers, n_resamples=200, seed=1)
    test = boot.paired_macro_f1_test(labels, noisy, worse, names=("noisy", "worse"))
    differences = []
    for turns in _resampled_turns(boot, speakers):
        score = [f1_score(labels[turns], p[turns], labels=list(EMOTIONS), average="macro", zero_division=0)
                 for p in (noisy, worse)]
        differences.append(score[0] - score[1])
    differences = np.array(differences)
    assert test.p_value == pytest.approx((1 + (differences <= 0).sum()) / 201)
    assert test.difference.low == pytest.approx(np.percentile(differences, 2.5))
    assert test.difference.high == pytest.approx(np.percentile(differences, 97.5))
    assert test.difference.estimate > 0 and test.p_value < 0.05


def test_ccc_replicates_match_a_plain_loop():
    rng = np.random.default_rng(2)
    _, speakers, _, _ = _dev_set()
    truth = rng.uniform(1, 7, (len(speakers), 3))
    predicted = truth + rng.normal(0, 1.5, truth.shape)
    boot = SpeakerBootstrap(speakers, n_resamples=200, seed=5)
    replicates, full = boot.ccc_replicates(predicted, truth)
    reference = [[concordance_cc(predicted[turns, i], truth[turns, i]) for i in range(3)]
                 for turns in _resampled_turns(boot, speakers)]
    np.testing.assert_allclose(replicates, reference, atol=1e-10)
    np.testing.assert_allclose(full, [concordance_cc(predicted[:, i], truth[:, i]) for i in range(3)])
    *per_attribute, mean = boot.ccc_intervals(predicted, truth)
    assert len(per_attribute) == 3 and mean.estimate == pytest.approx(np.mean(full))


def test_equal_systems_are_not_called_different():
    labels, speakers, noisy, _ = _dev_set()
    test = SpeakerBootstrap(speakers, n_resamples=200).paired_macro_f1_test(labels, noisy, noisy)
    assert test.difference.estimate == test.difference.low == test.difference.high == 0
    assert test.p_value == 1.0


def test_speaker_clusters_widen_the_interval_when_speakers_drive_the_errors():
    # Each speaker is either always right or always wrong: turn-level resampling would treat
    # their 20 turns as 20 independent facts and give a far too narrow interval.
    rng = np.random.default_rng(0)
    speakers = np.repeat(np.arange(30), 20)
    labels = rng.choice(list("AHNS"), len(speakers))
    right = np.repeat(rng.random(30) < 0.5, 20)
    predictions = np.where(right, labels, "U")
    by_speaker = SpeakerBootstrap(speakers, n_resamples=500).macro_f1_interval(labels, predictions)
    by_turn = SpeakerBootstrap(None, n_resamples=500, n_turns=len(labels))
    by_turn = by_turn.macro_f1_interval(labels, predictions)
    assert by_speaker.high - by_speaker.low > 2 * (by_turn.high - by_turn.low)


def test_fast_at_msp_podcast_size():
    rng = np.random.default_rng(0)
    n = 20000
    labels = rng.choice(list(EMOTIONS), n)
    predictions = np.where(rng.random(n) < 0.4, labels, rng.choice(list(EMOTIONS), n))
    speakers = rng.integers(0, 454, n).astype(str)
    start = time.process_time()
    boot = SpeakerBootstrap(speakers, n_resamples=2000)
    boot.paired_macro_f1_test(labels, predictions, labels)
    # 5 intervals and 1 paired test of 19,815 turns took 0.63 CPU s here (2 cores, AVX-512).
    assert time.process_time() - start < 10


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="3 speaker ids for 2 turns"):
        SpeakerBootstrap(["a", "b", "c"], n_turns=2)
    with pytest.raises(ValueError, match="n_resamples=0"):
        SpeakerBootstrap(["a"], n_resamples=0)
    with pytest.raises(ValueError, match=r"labels \['Z'\] are not among the classes"):
        SpeakerBootstrap(["a", "b"]).macro_f1_interval(["A", "Z"], ["A", "N"])
    with pytest.raises(ValueError, match="2 labels and 1 predictions for 2 turns"):
        SpeakerBootstrap(["a", "b"]).macro_f1_interval(["A", "N"], ["A"])
