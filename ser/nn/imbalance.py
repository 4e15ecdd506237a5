"""Tools against MSP-Podcast's class imbalance (each a YAML option, off by default).

Train has 25,106 Neutral turns and 1,139 Fear turns (paper Table 2). The best
systems of the challenge fought that explicitly:

- class weights ``w_c = N / (K * N_c)`` in the loss (the official baseline),
  from the training manifest (:func:`inverse_frequency_weights`);
- a class-balanced sampler (:class:`ClassBalancedSampler`): every draw picks a
  class with equal probability, then a turn of it;
- soft labels: the distribution of the annotators' primary votes as target
  (:func:`soft_target`).
"""

import json
import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["class_counts", "inverse_frequency_weights", "soft_target", "ClassBalancedSampler"]


def class_counts(manifest, classes):
    """Turns per class in a manifest (labels outside ``classes`` not counted).

    Parameters
    ----------
    manifest : str, Path or dict
        A JSON manifest (``emotion`` per entry) or its loaded content.
    classes : sequence of str

    Example
    -------
    >>> class_counts({"a": {"emotion": "N"}, "b": {"emotion": "N"}, "c": {"emotion": "X"}}, "AN")
    [0, 2]
    """
    entries = manifest if isinstance(manifest, dict) else json.loads(open(manifest).read())
    index = {c: i for i, c in enumerate(classes)}
    counts = [0] * len(index)
    for entry in entries.values():
        if entry.get("emotion") in index:
            counts[index[entry["emotion"]]] += 1
    return counts


def inverse_frequency_weights(counts):
    """The official baseline's class weights ``w_c = N / (K * N_c)``.

    A class absent from training gets weight 0 (no turn would use it), with
    a warning.

    Example
    -------
    >>> inverse_frequency_weights([6, 2, 0, 0])  # N = 8, K = 4
    [0.3333333333333333, 1.0, 0.0, 0.0]
    """
    total, n_classes = sum(counts), len(counts)
    if total == 0:
        raise ValueError("no training turn has one of the classes: cannot weight them")
    absent = [i for i, n in enumerate(counts) if n == 0]
    if absent:
        logger.warning("classes %s have no training turn: weight 0", absent)
    return [total / (n_classes * n) if n else 0.0 for n in counts]


def soft_target(votes, classes):
    """The distribution of a turn's primary votes over ``classes``, or None.

    Parameters
    ----------
    votes : dict or None
        Class letter -> number of (kept) annotators who chose it; letters
        outside ``classes`` (``O``) are not counted.
    classes : sequence of str

    Returns
    -------
    list of float or None
        Sums to 1; None when no vote is for one of the classes.

    Example
    -------
    >>> soft_target({"A": 2, "N": 1, "O": 1}, "ACN")
    [0.6666666666666666, 0.0, 0.3333333333333333]
    >>> soft_target({"O": 3}, "ACN") is None
    True
    """
    if not votes:
        return None
    counts = [float(votes.get(c, 0)) for c in classes]
    total = sum(counts)
    return [n / total for n in counts] if total > 0 else None


class ClassBalancedSampler(torch.utils.data.Sampler):
    """Draws training turns so that every class is equally likely.

    Each epoch has as many draws as the dataset has labelled turns; a draw
    picks one of the present classes uniformly, then one of its turns
    uniformly (with replacement, so rare classes repeat). The order depends
    only on ``seed + epoch`` (``set_epoch``, called by ``Brain.fit``), so a
    run resumed mid-epoch sees the very order it was running (SpeechBrain's
    loader skips the batches already done), and under DDP
    (``DistributedSamplerWrapper``) every process draws the same list and
    takes its share.

    Parameters
    ----------
    labels : sequence of int
        Class index of each dataset item (negative: no class, never drawn).
    seed : int
    num_samples : int, optional
        Draws per epoch (default: the number of labelled items).

    Example
    -------
    >>> sampler = ClassBalancedSampler([0, 0, 0, 0, 0, 0, 1, 1], seed=3)
    >>> draws = list(sampler)
    >>> len(draws), sorted(set(draws)) == list(range(8))
    (8, False)
    >>> sampler.set_epoch(1); list(sampler) != draws
    True
    """

    def __init__(self, labels, seed=0, num_samples=None):
        labels = np.asarray(labels, dtype=np.int64)
        self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels[labels >= 0])]
        if not self.by_class:
            raise ValueError("the class-balanced sampler needs labelled turns")
        self.num_samples = int(num_samples or int((labels >= 0).sum()))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_samples

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        classes = rng.integers(len(self.by_class), size=self.num_samples)
        picks = rng.random(self.num_samples)
        sizes = np.array([len(members) for members in self.by_class])
        positions = np.floor(picks * sizes[classes]).astype(np.int64)
        return iter([int(self.by_class[c][p]) for c, p in zip(classes, positions, strict=True)])


def balanced_sampler_for(dataset, classes, seed):
    """A :class:`ClassBalancedSampler` over a manifest-backed dataset (items in dataset order).

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = DynamicItemDataset({"a": {"emotion": "N"}, "b": {"emotion": "A"}, "c": {"emotion": "X"}})
    >>> sampler = balanced_sampler_for(data, "AN", seed=0)
    >>> len(sampler), set(sampler) <= {0, 1}
    (2, True)
    """
    index = {c: i for i, c in enumerate(classes)}
    labels = [index.get(dataset.data[uid].get("emotion"), -1) for uid in dataset.data_ids]
    if not any(label >= 0 for label in labels):
        raise ValueError("balanced_sampler: no training turn has one of the classes")
    return ClassBalancedSampler(labels, seed=seed)
