"""Batches for training and evaluation: the ``batching`` option of the system YAML.

Turns of MSP-Podcast last 2 to 12 s and more. Random batches of 16 pad every
turn to the longest of its batch, so about 43 % of the frames WavLM computes
are padding (``bench/padding.py``). Three ways to batch, named in the YAML:

``bucketed`` (the default of the five systems)
    Batches of exactly ``batch_size`` turns of similar *effective* length —
    the length after cropping, ``min(duration, max_duration)`` in training
    and ``min(duration, eval_max_duration)`` in evaluation. The turns are
    split into ``num_buckets`` equal-count length buckets, shuffled within
    each bucket, laid end to end from the shortest bucket to the longest and
    cut into batches of ``batch_size``, whose order is then shuffled. An
    epoch therefore has ``ceil(turns / batch_size)`` batches, as the paper's
    random batches of 16 (A) or the authors' batches of 8 (D): the same
    number of optimizer steps at the same learning rates, with little padding.
``duration``
    Batches of as many turns of one bucket as fit in ``max_batch_duration``
    seconds of padded audio (SpeechBrain's ``DynamicBatchSampler``): memory is
    bounded by a duration instead of a turn count, but short turns make big
    batches, so an epoch has 2-4x fewer optimizer steps than ``bucketed``.
``random``
    Fixed-size random batches of ``train_dataloader_opts`` /
    ``test_dataloader_opts`` (the authors' recipe; padding as above).

Evaluation batches of ``bucketed`` and ``duration`` are fixed, longest first
(an out-of-memory shows at once). Training orders depend only on
``seed + epoch``: ``set_epoch`` (called by ``Brain.fit``; ``EmotionBrain``
registers the sampler) reshuffles each epoch and an interrupted epoch resumes
with the very batches it was running (``SaveableDataLoader`` skips the
batches already done). Under DDP each process takes its share of the batches
(:class:`ProcessShare`, SpeechBrain's ``DistributedSamplerWrapper`` made safe for
a share of one batch).
"""

import logging
import math

import numpy as np
from speechbrain.dataio.sampler import DistributedSamplerWrapper, DynamicBatchSampler
from torch.utils.data import DistributedSampler

from ser.errors import UserInputError

logger = logging.getLogger(__name__)

# DataLoader options that a batch sampler replaces (PyTorch refuses both).
_BATCH_OPTIONS = ("batch_size", "shuffle", "sampler", "drop_last")

#: Values of the YAML's ``batching`` option (see the module docstring).
BATCHING_MODES = ("bucketed", "duration", "random")


def effective_lengths(dataset, limit):
    """Seconds of each turn a batch will hold: ``min(duration, limit)``.

    Parameters
    ----------
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        Built from a manifest with a ``duration`` (seconds) per turn.
    limit : float or None
        Crop length (``max_duration`` or ``eval_max_duration``); ``None``: whole turns.

    Returns
    -------
    numpy.ndarray
        One length per turn, in dataset order.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = DynamicItemDataset({"a": {"duration": 3.0}, "b": {"duration": 20.0}})
    >>> effective_lengths(data, 12.0).tolist()
    [3.0, 12.0]
    """
    lengths = []
    for uid in dataset.data_ids:
        duration = dataset.data[uid].get("duration")
        if not isinstance(duration, (int, float)) or not duration > 0:
            raise ValueError(
                f"manifest entry {uid!r}: 'duration' must be a positive number of seconds "
                f"for dynamic batching, got {duration!r}"
            )
        lengths.append(min(float(duration), limit) if limit else float(duration))
    return np.asarray(lengths, dtype=np.float64)


def quantile_boundaries(lengths, num_buckets):
    """Right edges of ``num_buckets`` buckets holding equally many turns.

    The last edge is the longest length, so no turn falls outside the buckets
    (``DynamicBatchSampler`` would put it alone in a batch). Equal edges, as
    when many turns are cropped to the same length, are merged.

    Example
    -------
    >>> quantile_boundaries([1.0, 2.0, 3.0, 4.0, 12.0, 12.0, 12.0, 12.0], 4)
    [2.0, 4.0, 12.0]
    """
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be at least 1, got {num_buckets}")
    levels = np.arange(1, num_buckets + 1) / num_buckets
    edges = np.quantile(np.asarray(lengths, dtype=np.float64), levels, method="inverted_cdf")
    return sorted({float(edge) for edge in edges})


def bucketed_batch_sampler(dataset, limit, max_batch_duration, num_buckets, train, seed, max_batch_size=None):
    """A ``DynamicBatchSampler`` over the effective lengths of ``dataset`` (``batching: duration``).

    Parameters
    ----------
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        The split (manifest entries need ``duration``).
    limit : float or None
        Crop length of this stage (see :func:`effective_lengths`).
    max_batch_duration : float
        Seconds of padded audio per batch (batch size x longest turn); a single
        turn longer than this gets a batch of its own.
    num_buckets : int
        Number of length buckets (more: less padding, less mixing of lengths);
        fewer when the split holds less than two full batches per bucket.
    train : bool
        Shuffle (turns and batch order, by ``seed + epoch``) when True;
        evaluation batches are fixed, longest first (an out-of-memory shows
        at once).
    seed : int
        Base seed of the shuffles.
    max_batch_size : int, optional
        Cap on the number of turns per batch (many short turns).

    Returns
    -------
    speechbrain.dataio.sampler.DynamicBatchSampler

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = DynamicItemDataset({f"u{i}": {"duration": 2.0 + i % 9} for i in range(90)})
    >>> sampler = bucketed_batch_sampler(data, 12.0, 40.0, 4, train=True, seed=3)
    >>> sorted(i for batch in sampler for i in batch) == list(range(90))
    True
    """
    if not max_batch_duration > 0:
        raise ValueError(f"max_batch_duration must be positive (seconds), got {max_batch_duration!r}")
    lengths = effective_lengths(dataset, limit)
    if len(lengths) == 0:
        raise ValueError("dynamic batching: the dataset is empty")
    # Each bucket ends the epoch with one partial batch: keep at least two full batches of audio
    # per bucket, or a small split (the demo's, a debug run) would get mostly partial batches.
    affordable = max(1, int(lengths.sum() // (2 * max_batch_duration)))
    if affordable < num_buckets:
        logger.info(
            "Duration batching: %d buckets instead of %d for %.0f s of audio",
            affordable,
            num_buckets,
            lengths.sum(),
        )
        num_buckets = affordable
    boundaries = quantile_boundaries(lengths, num_buckets)
    sampler = DynamicBatchSampler(
        dataset,
        max_batch_length=max_batch_duration,
        bucket_boundaries=boundaries,
        lengths_list=lengths.tolist(),
        shuffle=train,
        batch_ordering="random" if train else "descending",
        max_batch_ex=max_batch_size,
        seed=seed,
    )
    logger.info(
        "Duration batching: %d turns in %d batches (%d buckets, at most %.1f s of audio per batch)",
        len(lengths),
        len(sampler),
        len(boundaries),
        max_batch_duration,
    )
    return sampler


class BatchingError(UserInputError, ValueError):
    """A ``batching`` option of the system YAML that cannot be used (names the key)."""


class BucketedBatchSampler:
    """Batches of exactly ``batch_size`` turns of similar length.

    The turns are sorted by effective length (equal lengths in a random
    order) and split into ``num_buckets`` buckets of (nearly) equal counts.
    In training, each epoch (seeded by ``seed + epoch``) shuffles the turns
    within each bucket, lays the buckets end to end, shortest first, cuts
    the sequence into batches of ``batch_size`` and shuffles the batches:
    ``ceil(turns / batch_size)`` batches, one of them partial, each mixing
    turns of neighbouring lengths only. In evaluation the batches are fixed:
    turns longest first, cut in order.

    Parameters
    ----------
    lengths : sequence of float
        Effective length of each turn (see :func:`effective_lengths`).
    batch_size : int
        Turns per batch.
    num_buckets : int
        Number of length buckets (fewer: more mixing of lengths, more padding).
    train : bool
        Shuffle by ``seed + epoch`` (training) or fixed, longest first.
    seed : int
        Base seed of the shuffles.

    Example
    -------
    >>> lengths = [2.0 + (i * 7) % 10 for i in range(50)]
    >>> sampler = BucketedBatchSampler(lengths, batch_size=8, num_buckets=5, train=True, seed=3)
    >>> sampler.set_epoch(1)
    >>> batches = list(sampler)
    >>> len(sampler), [len(b) for b in batches].count(8)
    (7, 6)
    >>> sorted(i for b in batches for i in b) == list(range(50))
    True
    """

    def __init__(self, lengths, batch_size, num_buckets, train, seed):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise BatchingError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(num_buckets, int) or isinstance(num_buckets, bool) or num_buckets < 1:
            raise BatchingError(f"num_buckets must be a positive integer, got {num_buckets!r}")
        self.lengths = np.asarray(lengths, dtype=np.float64)
        if len(self.lengths) == 0:
            raise BatchingError("bucketed batching: the dataset is empty")
        self.batch_size = batch_size
        self.num_buckets = min(num_buckets, len(self.lengths))
        self.train = bool(train)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch):
        """Shuffle for ``epoch`` (``Brain.fit`` calls it before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self):
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        if not self.train:
            order = np.argsort(-self.lengths, kind="stable")
            batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            return iter([batch.tolist() for batch in batches])
        rng = np.random.default_rng(self.seed + self.epoch)
        # Sorted by length, equal lengths (turns cropped to max_duration) in a random order,
        # so that the turns a bucket holds among equals change from epoch to epoch.
        by_length = np.lexsort((rng.random(len(self.lengths)), self.lengths))
        buckets = np.array_split(by_length, self.num_buckets)
        order = np.concatenate([rng.permutation(bucket) for bucket in buckets])
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        return iter([batches[i] for i in rng.permutation(len(batches))])


class ProcessShare(DistributedSamplerWrapper):
    """One process's share of a (batch) sampler's items under DDP.

    SpeechBrain's wrapper picks the share with ``itemgetter``, which returns the
    item itself, not a one-item tuple, when the share is one item: a process
    given one batch would then iterate over the turn indices of that batch.
    Small splits on many processes hit that (two batches on two processes).

    Example
    -------
    >>> batches = [[0, 1], [2, 3]]
    >>> [list(ProcessShare(batches, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    [[[0, 1]], [[2, 3]]]
    """

    @classmethod
    def replacing(cls, wrapper):
        """The same share as SpeechBrain's ``wrapper`` (same processes, seed, epoch)."""
        share = cls(wrapper.sampler, num_replicas=wrapper.num_replicas, rank=wrapper.rank,
                    shuffle=wrapper.shuffle, seed=wrapper.seed, drop_last=wrapper.drop_last)
        share.set_epoch(wrapper.epoch)
        return share

    def __iter__(self):
        items = list(self.sampler)
        return iter([items[i] for i in DistributedSampler.__iter__(self)])


def loader_options(dataset, hparams, train):
    """DataLoader options for one split, from the system YAML.

    ``hparams["batching"]`` (see the module docstring) chooses the batches:
    ``random`` returns ``train_dataloader_opts`` (``train=True``) or
    ``test_dataloader_opts`` as they are; ``bucketed`` and ``duration`` take
    their batch size and shuffle away and add a ``batch_sampler``
    (:class:`BucketedBatchSampler` with their ``batch_size`` and ``num_buckets``;
    :func:`bucketed_batch_sampler` with ``max_batch_duration``,
    ``num_buckets`` and ``max_batch_size``), seeded by ``seed``.

    Parameters
    ----------
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        The split these options will load.
    hparams : dict
        The loaded system YAML.
    train : bool
        Training split (crop ``max_duration``, shuffled) or evaluation
        (``eval_max_duration``, fixed order).

    Returns
    -------
    dict
        Keyword arguments for ``Brain.fit`` / ``Brain.evaluate`` loaders.

    Raises
    ------
    BatchingError
        If ``batching`` is not one of :data:`BATCHING_MODES`.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> durations = [1.0 + i % 4 for i in range(20)]
    >>> data = DynamicItemDataset({f"u{i}": {"duration": d} for i, d in enumerate(durations)})
    >>> hparams = {"batching": "duration", "max_batch_duration": 8.0, "num_buckets": 3,
    ...            "seed": 1, "max_duration": 4.0, "eval_max_duration": 30.0,
    ...            "test_dataloader_opts": {"batch_size": 4, "num_workers": 0}}
    >>> options = loader_options(data, hparams, train=False)
    >>> batches = list(options["batch_sampler"])
    >>> sorted(options), [len(batch) * max(durations[i] for i in batch) for batch in batches]
    (['batch_sampler', 'num_workers'], [8.0, 8.0, 4.0, 6.0, 6.0, 3.0, 8.0, 8.0, 4.0])
    >>> options = loader_options(data, {**hparams, "batching": "bucketed"}, train=False)
    >>> [len(batch) for batch in options["batch_sampler"]]
    [4, 4, 4, 4, 4]
    """
    options = dict(hparams["train_dataloader_opts"] if train else hparams["test_dataloader_opts"])
    batching = hparams.get("batching", "random")
    if batching not in BATCHING_MODES:
        raise BatchingError(f"batching: {batching!r} is not one of {', '.join(BATCHING_MODES)}")
    if batching == "random":
        return options
    batch_size = options.get("batch_size", hparams.get("batch_size"))
    for name in _BATCH_OPTIONS:
        options.pop(name, None)
    limit = hparams["max_duration"] if train else hparams["eval_max_duration"]
    if batching == "bucketed":
        options["batch_sampler"] = BucketedBatchSampler(
            effective_lengths(dataset, limit),
            batch_size=batch_size,
            num_buckets=hparams["num_buckets"],
            train=train,
            seed=int(hparams["seed"]),
        )
        return options
    options["batch_sampler"] = bucketed_batch_sampler(
        dataset,
        limit=limit,
        max_batch_duration=float(hparams["max_batch_duration"]),
        num_buckets=int(hparams["num_buckets"]),
        train=train,
        seed=int(hparams["seed"]),
        max_batch_size=hparams.get("max_batch_size"),
    )
    return options


def padded_fraction(batches, lengths):
    """Fraction of the frames of padded batches that are padding.

    Each batch is padded to its longest turn: padding is
    ``sum(longest * size - sum(lengths))`` over the batches, divided by
    ``sum(longest * size)``.

    Example
    -------
    >>> round(padded_fraction([[0, 1], [2]], [2.0, 4.0, 3.0]), 4)  # (8 + 3 - 9) / (8 + 3)
    0.1818
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    padded = real = 0.0
    for batch in batches:
        members = lengths[list(batch)]
        padded += members.max() * len(members)
        real += members.sum()
    return float((padded - real) / padded) if padded else 0.0
