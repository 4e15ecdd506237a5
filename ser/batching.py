"""Length-bucketed dynamic batching for training and evaluation.

Turns of MSP-Podcast last 2 to 12 s and more. Random batches of 16 pad every
turn to the longest of its batch, so about a third of the frames WavLM
computes are padding (``bench/padding.py``). With ``dynamic_batching: True``
the turns are sorted into ``num_buckets`` buckets of similar *effective*
length — the length after cropping, ``min(duration, max_duration)`` in
training and ``min(duration, eval_max_duration)`` in evaluation — and a batch
holds as many turns of one bucket as fit in ``max_batch_duration`` seconds of
padded audio. Memory is bounded by that duration instead of by a turn count.

The batches come from SpeechBrain's ``DynamicBatchSampler``: bucket
boundaries are quantiles of the effective lengths (equal-count buckets; the
sampler's own log-normal warping would put every 2–12 s turn in its first
buckets), the order of an epoch depends only on ``seed + epoch``, so
``set_epoch`` (called by ``Brain.fit``; ``EmotionBrain`` registers the sampler)
reshuffles each epoch and an interrupted epoch resumes with the very batches
it was running (``SaveableDataLoader`` skips the batches already done).
``dynamic_batching: False`` gives the fixed-size random batches of
``train_dataloader_opts`` / ``test_dataloader_opts`` (ablations).
"""

import logging

import numpy as np
from speechbrain.dataio.sampler import DynamicBatchSampler

logger = logging.getLogger(__name__)

# DataLoader options that a batch sampler replaces (PyTorch refuses both).
_BATCH_OPTIONS = ("batch_size", "shuffle", "sampler", "drop_last")


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
    """A ``DynamicBatchSampler`` over the effective lengths of ``dataset``.

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
            "Dynamic batching: %d buckets instead of %d for %.0f s of audio",
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
        "Dynamic batching: %d turns in %d batches (%d buckets, at most %.1f s of audio per batch)",
        len(lengths),
        len(sampler),
        len(boundaries),
        max_batch_duration,
    )
    return sampler


def loader_options(dataset, hparams, train):
    """DataLoader options for one split, from the system YAML.

    With ``hparams["dynamic_batching"]`` the options of
    ``train_dataloader_opts`` (``train=True``) or ``test_dataloader_opts``
    lose their batch size and shuffle and gain a ``batch_sampler`` (see
    :func:`bucketed_batch_sampler`, keys ``max_batch_duration``,
    ``num_buckets``, ``max_batch_size``, ``seed``); without it they are
    returned as they are (fixed-size random batches).

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

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> durations = [1.0 + i % 4 for i in range(20)]
    >>> data = DynamicItemDataset({f"u{i}": {"duration": d} for i, d in enumerate(durations)})
    >>> hparams = {"dynamic_batching": True, "max_batch_duration": 8.0, "num_buckets": 3,
    ...            "seed": 1, "max_duration": 4.0, "eval_max_duration": 30.0,
    ...            "test_dataloader_opts": {"batch_size": 4, "num_workers": 0}}
    >>> options = loader_options(data, hparams, train=False)
    >>> batches = list(options["batch_sampler"])
    >>> sorted(options), [len(batch) * max(durations[i] for i in batch) for batch in batches]
    (['batch_sampler', 'num_workers'], [8.0, 8.0, 4.0, 6.0, 6.0, 3.0, 8.0, 8.0, 4.0])
    """
    options = dict(hparams["train_dataloader_opts"] if train else hparams["test_dataloader_opts"])
    if not hparams.get("dynamic_batching", False):
        return options
    for name in _BATCH_OPTIONS:
        options.pop(name, None)
    options["batch_sampler"] = bucketed_batch_sampler(
        dataset,
        limit=hparams["max_duration"] if train else hparams["eval_max_duration"],
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
