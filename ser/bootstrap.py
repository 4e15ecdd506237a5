"""Bootstrap confidence intervals and paired tests for dev scores (macro-F1, CCC).

A dev macro-F1 is one number from a few hundred (demo) to 20,000 (MSP-Podcast) turns; whether a
0.01 or 0.05 difference between two systems is real depends on how much it moves when the turns
change. The bootstrap answers by rescoring resampled dev sets.

**Speaker-clustered resampling.** Turns of one speaker are not independent (same voice, same
podcast, often the same mood), so resampling turns one by one would give intervals that are too
narrow. Each resample draws as many speakers as dev has, uniformly **with replacement**, and takes
**all the turns** of every drawn speaker (a speaker drawn twice counts twice). Turns whose speaker
is unknown (``Unknown`` in MSP-Podcast, or ``speakers=None``) are each their own cluster.

**Percentile intervals.** The 95 % interval is the 2.5th and 97.5th percentiles of the resampled
scores; the point estimate is the score of the full dev set.

**Paired test.** Two systems are scored on the *same* resampled sets, so what varies with the turns
(an easy speaker drawn three times) cancels in their difference. The interval of the difference
comes from those paired differences, and the p-value of "A is not better than B" is the share of
resamples in which A does not beat B, ``(1 + #{d_b <= 0}) / (1 + B)`` (the one-sided level at which
the percentile interval of the difference would start to exclude 0; the +1 keeps it above 0).
Choosing "the best sub-system" on the same dev set favours it, so a fusion-vs-best test is, if
anything, against the fusion.

Every score is computed from per-speaker sums (true positives, predictions and references per
class; or the moments that make a CCC) multiplied by the ``(resamples x speakers)`` matrix of how
often each speaker was drawn: one matrix product per score, so 2,000 resamples of 20,000 turns
take well under a second. The draws come from ``numpy.random.default_rng(seed)``, so a report is
reproducible.

Example
-------
>>> labels = np.array(list("AHNS") * 25)
>>> speakers = np.repeat(np.arange(20), 5)
>>> good = labels.copy(); good[::10] = "N"
>>> bad = labels.copy(); bad[::3] = "N"
>>> boot = SpeakerBootstrap(speakers, n_resamples=500, seed=0)
>>> interval = boot.macro_f1_interval(labels, good)
>>> interval.low <= interval.estimate <= interval.high
True
>>> test = boot.paired_macro_f1_test(labels, good, bad)
>>> test.difference.estimate > 0, test.p_value < 0.05
(True, True)
"""

from dataclasses import asdict, dataclass

import numpy as np

from ser.emotions import EMOTIONS

__all__ = ["DEFAULT_RESAMPLES", "UNKNOWN_SPEAKER", "Interval", "PairedTest", "SpeakerBootstrap",
           "macro_f1_from_counts", "ccc_from_moments"]

#: Resamples per interval: the 2.5 % tail then holds 25 of them, enough for a stable bound.
DEFAULT_RESAMPLES = 1000
#: MSP-Podcast's speaker id for turns of an unidentified speaker: each such turn is its own cluster.
UNKNOWN_SPEAKER = "Unknown"
# Resamples per matrix product: bounds the draw matrix to ~chunk x clusters integers at a time.
_CHUNK = 250


@dataclass(frozen=True)
class Interval:
    """A score and its bootstrap confidence interval.

    Example
    -------
    >>> str(Interval(0.35, 0.331, 0.372, 0.95))
    '0.350 [0.331, 0.372]'
    """

    estimate: float
    low: float
    high: float
    level: float = 0.95

    def __str__(self):
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def as_dict(self):
        """Plain floats for JSON."""
        return {key: float(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class PairedTest:
    """Score of A minus score of B on the same resamples, and the p-value of "A is not better"."""

    a: str
    b: str
    difference: Interval
    p_value: float
    n_resamples: int

    def __str__(self):
        return (f"{self.a} - {self.b}: {self.difference.estimate:+.3f} "
                f"[{self.difference.low:+.3f}, {self.difference.high:+.3f}], p = {self.p_value:.3f}")

    def as_dict(self):
        """Plain values for JSON."""
        return {"a": self.a, "b": self.b, "difference": self.difference.as_dict(),
                "p_value": float(self.p_value), "n_resamples": int(self.n_resamples)}


def macro_f1_from_counts(true_positives, predicted, actual):
    """Macro-F1 from per-class counts (last axis = classes), as scikit-learn's ``zero_division=0``.

    ``F1_c = 2 TP_c / (predicted_c + actual_c)``, 0 for a class neither predicted nor present, and
    every class counts in the mean (as :func:`ser.metrics.classification_report`). Counts may be
    weighted (a speaker drawn twice counts twice).

    Example
    -------
    >>> float(macro_f1_from_counts(np.array([1, 1, 0]), np.array([1, 2, 0]), np.array([1, 1, 1])))
    0.5555555555555555
    """
    denominator = np.asarray(predicted, dtype=np.float64) + np.asarray(actual, dtype=np.float64)
    f1 = np.divide(2.0 * np.asarray(true_positives, dtype=np.float64), denominator,
                   out=np.zeros_like(denominator), where=denominator > 0)
    return f1.mean(axis=-1)


def ccc_from_moments(n, sx, sy, sxx, syy, sxy):
    """Concordance correlation coefficient from sums (population moments, as :mod:`ser.metrics`).

    Each argument is an array of the same shape: count, sums of x, y, x^2, y^2 and x*y. A
    denominator of 0 (both constant and equal) gives 1, as :func:`ser.metrics.concordance_cc`.

    Example
    -------
    >>> x, y = np.array([2.0, 3.0, 5.0]), np.array([1.0, 2.0, 4.0])
    >>> round(float(ccc_from_moments(3, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())), 4)
    0.7568
    """
    n = np.asarray(n, dtype=np.float64)
    mx, my = sx / n, sy / n
    vx, vy, cov = sxx / n - mx**2, syy / n - my**2, sxy / n - mx * my
    denominator = vx + vy + (mx - my) ** 2
    return np.divide(2.0 * cov, denominator, out=np.ones_like(denominator), where=denominator > 1e-15)


def _clusters(speakers, n_turns):
    """Cluster index per turn: one per speaker, one per turn of an unknown speaker."""
    if speakers is None:
        return np.arange(n_turns), n_turns
    speakers = np.asarray(speakers).astype(str)
    if speakers.shape != (n_turns,):
        raise ValueError(f"{speakers.size} speaker ids for {n_turns} turns")
    unknown = speakers == UNKNOWN_SPEAKER
    clusters = np.empty(n_turns, dtype=np.int64)
    _, clusters[~unknown] = np.unique(speakers[~unknown], return_inverse=True)
    n_known = int(clusters[~unknown].max()) + 1 if (~unknown).any() else 0
    clusters[unknown] = n_known + np.arange(int(unknown.sum()))
    return clusters, n_known + int(unknown.sum())


class SpeakerBootstrap:
    """Speaker-clustered bootstrap resamples of one dev set, shared by every score drawn from it.

    Parameters
    ----------
    speakers : array-like of str, or None
        Speaker id per turn; None resamples turns one by one.
    n_resamples : int
        Bootstrap resamples (default :data:`DEFAULT_RESAMPLES`).
    seed : int
        Seed of the draws: the same seed gives the same resamples, so two systems scored by one
        instance (or by two instances with the same speakers and seed) are paired.
    level : float
        Coverage of the intervals (0.95).

    Example
    -------
    >>> boot = SpeakerBootstrap(["s1", "s1", "s2", "Unknown", "Unknown"], n_resamples=3)
    >>> boot.n_clusters, sum(w.shape[0] for w in boot.weights())
    (4, 3)
    """

    def __init__(self, speakers, n_resamples=DEFAULT_RESAMPLES, seed=0, level=0.95, n_turns=None):
        if n_resamples < 1:
            raise ValueError(f"n_resamples={n_resamples}: need at least 1")
        if not 0 < level < 1:
            raise ValueError(f"level={level}: must be between 0 and 1")
        n_turns = len(speakers) if n_turns is None else n_turns
        if n_turns == 0:
            raise ValueError("no turns to resample")
        self.clusters, self.n_clusters = _clusters(speakers, n_turns)
        self.n_turns, self.n_resamples, self.seed, self.level = n_turns, int(n_resamples), int(seed), level

    def draws(self):
        """The drawn cluster indices, ``(chunk, n_clusters)`` arrays, the same on every call."""
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.n_resamples, _CHUNK):
            size = min(_CHUNK, self.n_resamples - start)
            yield rng.integers(0, self.n_clusters, size=(size, self.n_clusters))

    def weights(self):
        """How often each cluster was drawn: ``(chunk, n_clusters)`` count arrays, resample by row."""
        for draws in self.draws():
            rows = np.arange(len(draws))[:, None] * self.n_clusters
            counts = np.bincount((rows + draws).ravel(), minlength=len(draws) * self.n_clusters)
            yield counts.reshape(len(draws), self.n_clusters).astype(np.float64)

    def resampled_sums(self, per_turn):
        """Sums of the ``(n_turns, k)`` values over each resample: ``(n_resamples, k)``."""
        per_turn = np.asarray(per_turn, dtype=np.float64).reshape(self.n_turns, -1)
        per_cluster = np.zeros((self.n_clusters, per_turn.shape[1]))
        np.add.at(per_cluster, self.clusters, per_turn)
        return np.vstack([weights @ per_cluster for weights in self.weights()])

    # ---- macro-F1 -------------------------------------------------------------------------------

    def _f1_counts(self, y_true, y_pred, classes):
        classes = list(classes)
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({c for c in [*np.asarray(y_true).tolist(), *np.asarray(y_pred).tolist()]
                          if c not in index})
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {' '.join(classes)}")
        true = np.asarray([index[c] for c in np.asarray(y_true).tolist()])
        pred = np.asarray([index[c] for c in np.asarray(y_pred).tolist()])
        if true.shape != (self.n_turns,) or pred.shape != (self.n_turns,):
            raise ValueError(f"{true.size} labels and {pred.size} predictions for {self.n_turns} turns")
        eye = np.eye(len(classes))
        return np.hstack([eye[true] * (true == pred)[:, None], eye[pred], eye[true]])

    def macro_f1_replicates(self, y_true, y_pred, classes=EMOTIONS):
        """Macro-F1 of every resample, ``(n_resamples,)``, and of the full set.

        Example
        -------
        >>> boot = SpeakerBootstrap(["a", "b"], n_resamples=4)
        >>> replicates, full = boot.macro_f1_replicates(["A", "N"], ["A", "A"], classes="AN")
        >>> round(full, 4), replicates.shape
        (0.3333, (4,))
        """
        k = len(classes)
        counts = self._f1_counts(y_true, y_pred, classes)
        full = counts.sum(axis=0)
        sums = self.resampled_sums(counts)
        replicates = macro_f1_from_counts(sums[:, :k], sums[:, k:2 * k], sums[:, 2 * k:])
        return replicates, float(macro_f1_from_counts(full[:k], full[k:2 * k], full[2 * k:]))

    def macro_f1_interval(self, y_true, y_pred, classes=EMOTIONS):
        """Macro-F1 of the full set with its percentile interval (:class:`Interval`)."""
        return self._interval(*self.macro_f1_replicates(y_true, y_pred, classes))

    def paired_macro_f1_test(self, y_true, pred_a, pred_b, classes=EMOTIONS, names=("A", "B")):
        """Macro-F1 of A minus B on the same resamples (:class:`PairedTest`)."""
        a, full_a = self.macro_f1_replicates(y_true, pred_a, classes)
        b, full_b = self.macro_f1_replicates(y_true, pred_b, classes)
        return self._paired(a - b, full_a - full_b, names)

    # ---- CCC ------------------------------------------------------------------------------------

    def _ccc_moments(self, predictions, references):
        x = np.asarray(predictions, dtype=np.float64).reshape(self.n_turns, -1)
        y = np.asarray(references, dtype=np.float64).reshape(self.n_turns, -1)
        if x.shape != y.shape:
            raise ValueError(f"predictions {x.shape} and references {y.shape} differ")
        return np.hstack([np.ones((self.n_turns, 1)), x, y, x * x, y * y, x * y]), x.shape[1]

    def ccc_replicates(self, predictions, references):
        """CCC per column (attribute) of every resample, ``(n_resamples, k)``, and of the full set.

        Example
        -------
        >>> boot = SpeakerBootstrap(None, n_resamples=5, n_turns=3)
        >>> replicates, full = boot.ccc_replicates([2.0, 3.0, 5.0], [1.0, 2.0, 4.0])
        >>> replicates.shape, [round(v, 4) for v in full]
        ((5, 1), [0.7568])
        """
        moments, k = self._ccc_moments(predictions, references)
        sums = self.resampled_sums(moments)
        full = moments.sum(axis=0)

        def ccc(s):
            n, parts = s[..., :1], [s[..., 1 + i * k: 1 + (i + 1) * k] for i in range(5)]
            return ccc_from_moments(n, *parts)

        return ccc(sums), ccc(full).tolist()

    def ccc_intervals(self, predictions, references):
        """One :class:`Interval` per column (attribute), then one for their mean, in a list."""
        replicates, full = self.ccc_replicates(predictions, references)
        columns = [self._interval(replicates[:, i], full[i]) for i in range(replicates.shape[1])]
        return columns + [self._interval(replicates.mean(axis=1), float(np.mean(full)))]

    def paired_ccc_test(self, predictions_a, predictions_b, references, names=("A", "B")):
        """Mean CCC (over columns) of A minus B on the same resamples (:class:`PairedTest`)."""
        a, full_a = self.ccc_replicates(predictions_a, references)
        b, full_b = self.ccc_replicates(predictions_b, references)
        return self._paired(a.mean(axis=1) - b.mean(axis=1), float(np.mean(full_a) - np.mean(full_b)), names)

    # ---- intervals ------------------------------------------------------------------------------

    def _interval(self, replicates, estimate):
        tail = 100 * (1 - self.level) / 2
        low, high = np.percentile(replicates, [tail, 100 - tail])
        return Interval(float(estimate), float(low), float(high), self.level)

    def _paired(self, differences, estimate, names):
        p_value = (1 + np.count_nonzero(differences <= 0)) / (1 + len(differences))
        return PairedTest(str(names[0]), str(names[1]), self._interval(differences, estimate),
                          float(p_value), self.n_resamples)

    def describe(self):
        """What the intervals were computed from, for a metrics file.

        Example
        -------
        >>> SpeakerBootstrap(["a", "a", "b"], n_resamples=10).describe()["clusters"]
        2
        """
        return {"method": "percentile bootstrap, speakers resampled with replacement (all their turns)",
                "n_resamples": self.n_resamples, "seed": self.seed, "level": self.level,
                "turns": self.n_turns, "clusters": self.n_clusters}
