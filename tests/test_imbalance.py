"""Class weights, the class-balanced sampler (uniform, resumable) and soft targets."""

import numpy as np
import pytest
import speechbrain as sb
import torch

from ser.nn.imbalance import ClassBalancedSampler, class_counts, inverse_frequency_weights, soft_target


def test_inverse_frequency_weights_are_the_official_baselines():
    counts = [25106, 13440, 3882, 3053, 2897, 2443, 1426, 1139]  # paper Table 2 (N H S A U C D F)
    weights = inverse_frequency_weights(counts)
    total = sum(counts)
    assert weights == pytest.approx([total / (8 * n) for n in counts])
    # Weighted, every class carries the same total weight N / 8.
    assert [w * n for w, n in zip(weights, counts, strict=True)] == pytest.approx([total / 8] * 8)


def test_class_counts_skip_labels_outside_the_classes():
    manifest = {f"u{i}": {"emotion": e} for i, e in enumerate("NNNAXOS")}
    assert class_counts(manifest, "ACDFHNSU") == [1, 0, 0, 0, 0, 3, 1, 0]


def test_balanced_sampler_draws_classes_uniformly_within_sampling_error():
    # Skewed like MSP-Podcast: 70 % of one class, 1 % of another.
    labels = np.repeat(np.arange(8), [700, 120, 60, 40, 30, 25, 15, 10])
    labels = np.concatenate([labels, [-1] * 50])  # unlabelled turns are never drawn
    sampler = ClassBalancedSampler(labels, seed=0)
    draws = np.array([labels[i] for epoch in range(5) for i in (sampler.set_epoch(epoch) or list(sampler))])
    assert (draws >= 0).all()
    frequencies = np.bincount(draws, minlength=8) / len(draws)
    # Binomial standard error of 1/8 over 5000 draws is 0.0047: 4 sigma.
    assert np.abs(frequencies - 1 / 8).max() < 4 * np.sqrt(1 / 8 * 7 / 8 / len(draws))


def test_balanced_sampler_resumes_mid_epoch_with_the_same_batches(tmp_path):
    labels = [0] * 30 + [1] * 6 + [2] * 4
    data = [torch.tensor(i) for i in range(len(labels))]

    def loader():
        sampler = ClassBalancedSampler(labels, seed=5)
        sampler.set_epoch(2)
        return sb.dataio.dataloader.SaveableDataLoader(data, batch_size=4, sampler=sampler)

    uninterrupted = [batch.tolist() for batch in loader()]
    first = loader()
    iterator = iter(first)
    seen = [next(iterator).tolist() for _ in range(3)]
    first._speechbrain_save(tmp_path / "loader.ckpt")
    resumed = loader()
    resumed._speechbrain_load(tmp_path / "loader.ckpt", end_of_epoch=False)
    assert seen + [batch.tolist() for batch in resumed] == uninterrupted


def test_soft_targets_sum_to_one_and_ignore_other():
    target = soft_target({"N": 3, "H": 1, "O": 2}, "ACDFHNSU")
    assert sum(target) == pytest.approx(1.0)
    assert target == pytest.approx([0, 0, 0, 0, 0.25, 0.75, 0, 0])
    assert soft_target({"O": 5}, "ACDFHNSU") is None


def test_soft_targets_match_a_hand_computed_vote_table():
    import pandas as pd

    from data_prep.consensus import vote_table

    consensus = pd.DataFrame({"FileName": ["t1", "t2", "t3"], "EmoClass": ["H", "X", "N"]})
    votes = {  # worker -> votes on t1, t2, t3
        "w1": ["H", "S", "N"], "w2": ["H", "A", "N"], "w3": ["N", "S", "O"], "w4": ["A", "H", "S"],
    }
    detailed = pd.DataFrame([(turn, worker, label) for worker, labels in votes.items()
                             for turn, label in zip(["t1", "t2", "t3"], labels, strict=True)],
                            columns=["FileName", "Worker", "Emotion"])
    classes = "ACDFHNSU"
    table = vote_table(detailed, consensus)
    # By hand: t1 H H N A; t2 S A S H; t3 N N O S (O is not a class).
    expected = {"t1": {"H": 2 / 4, "N": 1 / 4, "A": 1 / 4}, "t2": {"S": 2 / 4, "A": 1 / 4, "H": 1 / 4},
                "t3": {"N": 2 / 3, "S": 1 / 3}}
    for turn, shares in expected.items():
        target = soft_target(table.loc[turn].to_dict(), classes)
        assert sum(target) == pytest.approx(1.0)
        assert target == pytest.approx([shares.get(c, 0.0) for c in classes])
    # The §5.4 filter first: scores w1 3/3, w2 2/3 (t2's X matches no one), w3 1/3, w4 0 -> K = 0.5
    # keeps w1 and w2.
    filtered = vote_table(detailed, consensus, threshold=0.5)
    assert soft_target(filtered.loc["t2"].to_dict(), classes) == pytest.approx(
        [0.5 if c in "AS" else 0.0 for c in classes])
