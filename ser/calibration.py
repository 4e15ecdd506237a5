"""Calibrating the fused scores into probabilities: temperature scaling, ECE, reliability diagram.

The fusion SVM outputs decision values, and their softmax sums to 1 but is no probability: on dev,
"0.6" may be right 30 % or 90 % of the time. Temperature scaling (Guo et al., 2017, "On calibration
of modern neural networks") divides the scores by one number ``T`` before the softmax, ``T`` chosen
to minimise the negative log-likelihood of the true classes on scores the model did not fit (the
out-of-fold scores of the fusion's speaker-disjoint cross-validation).

Why temperature scaling rather than Platt scaling or isotonic regression per class:

- one parameter, so a few hundred dev turns (the demo) fit it as well as 20,000; Platt per class
  needs 16 parameters and isotonic a step function per class, fitted on the ~10 dev turns of a
  rare class in the demo;
- dividing by ``T > 0`` never changes which score is largest, so the predicted class, macro-F1
  and the submission stay exactly what the SVM chose; per-class maps can change the argmax.

How calibrated is measured: the expected calibration error (ECE) over equal-width bins of the top
probability, ``sum_b (n_b / n) |accuracy_b - confidence_b|`` (15 bins), and the reliability
diagram (accuracy against confidence per bin; calibrated points lie on the diagonal).
"""

import numpy as np

__all__ = ["DEFAULT_BINS", "scaled_softmax", "fit_temperature", "negative_log_likelihood",
           "reliability_bins", "expected_calibration_error", "plot_reliability_diagram"]

#: Bins of the ECE and of the reliability diagram (Guo et al. use 15).
DEFAULT_BINS = 15
# Search range of the temperature (log-uniform): from 50x sharper to 100x flatter.
_LOG_T_RANGE = (np.log(0.02), np.log(100.0))
# Probability floor in the likelihood: a true class the scores rule out (-inf) must not make it infinite.
_FLOOR = 1e-12


def scaled_softmax(scores, temperature=1.0):
    """Row-wise ``softmax(scores / temperature)``; ``-inf`` (a class the model never saw) stays 0.

    Example
    -------
    >>> scaled_softmax(np.array([[2.0, 0.0, -np.inf]]), temperature=2.0).round(3).tolist()
    [[0.731, 0.269, 0.0]]
    """
    if not temperature > 0:
        raise ValueError(f"temperature={temperature}: must be positive")
    scaled = np.asarray(scores, dtype=np.float64) / temperature
    shifted = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _label_indices(labels, classes):
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({c for c in np.asarray(labels).tolist() if c not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {' '.join(classes)}")
    return np.asarray([index[c] for c in np.asarray(labels).tolist()], dtype=np.int64)


def negative_log_likelihood(probabilities, labels, classes):
    """Mean ``-log p(true class)`` (floored at 1e-12).

    Example
    -------
    >>> round(negative_log_likelihood(np.array([[0.5, 0.5], [0.9, 0.1]]), ["A", "A"], "AN"), 4)
    0.3993
    """
    rows = _label_indices(labels, classes)
    picked = np.asarray(probabilities, dtype=np.float64)[np.arange(len(rows)), rows]
    return float(-np.log(np.maximum(picked, _FLOOR)).mean())


def fit_temperature(scores, labels, classes):
    """The temperature that minimises the negative log-likelihood of ``labels``.

    Parameters
    ----------
    scores : array-like
        ``(n, k)`` scores (SVM decision values, logits), held out from the model's training.
    labels : sequence of str
        True class per row.
    classes : sequence of str
        Class of each column.

    Returns
    -------
    float
        ``T`` in [0.02, 100]; divide the scores by it before the softmax.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 3, 2000)
    >>> logits = np.eye(3)[labels] * 1.0 + rng.normal(0, 1, (2000, 3))  # calibrated at T = 1
    >>> round(fit_temperature(logits * 4, np.array(list("ABC"))[labels], "ABC") / 4, 1)  # 4x too sharp
    1.0
    """
    from scipy.optimize import minimize_scalar

    scores = np.asarray(scores, dtype=np.float64)
    rows = _label_indices(labels, classes)
    if scores.ndim != 2 or scores.shape != (len(rows), len(classes)):
        raise ValueError(f"scores of shape {scores.shape} for {len(rows)} labels and {len(classes)} classes")

    def loss(log_t):
        log_p = scores / np.exp(log_t)
        top = log_p.max(axis=1, keepdims=True)
        log_p = log_p - top - np.log(np.exp(log_p - top).sum(axis=1, keepdims=True))
        return -np.maximum(log_p[np.arange(len(rows)), rows], np.log(_FLOOR)).mean()

    result = minimize_scalar(loss, bounds=_LOG_T_RANGE, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def reliability_bins(probabilities, labels, classes, n_bins=DEFAULT_BINS):
    """Per equal-width bin of the top probability: count, mean confidence, accuracy.

    Returns
    -------
    dict
        ``edges`` (n_bins + 1), and per bin ``count``, ``confidence`` and ``accuracy``
        (``None`` for an empty bin), all plain lists (JSON).

    Example
    -------
    >>> bins = reliability_bins(np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]]), list("ANA"), "AN", 2)
    >>> bins["count"], bins["accuracy"]
    ([0, 3], [None, 0.6666666666666666])
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    rows = _label_indices(labels, classes)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == rows
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are (low, high]; a confidence of exactly 0 (impossible for a softmax) joins the first.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    sums_conf = np.bincount(which, weights=confidence, minlength=n_bins)
    sums_correct = np.bincount(which, weights=correct.astype(np.float64), minlength=n_bins)
    mean = lambda sums: [float(s / c) if c else None for s, c in zip(sums, counts, strict=True)]  # noqa: E731
    return {"edges": edges.tolist(), "count": counts.tolist(), "confidence": mean(sums_conf),
            "accuracy": mean(sums_correct)}


def expected_calibration_error(probabilities, labels, classes, n_bins=DEFAULT_BINS):
    """ECE: the count-weighted mean gap between accuracy and confidence over the bins.

    Example
    -------
    >>> p = np.array([[0.9, 0.1]] * 10)  # says 90 %, right 5 times in 10
    >>> round(expected_calibration_error(p, list("AAAAANNNNN"), "AN"), 3)
    0.4
    """
    bins = reliability_bins(probabilities, labels, classes, n_bins)
    total = sum(bins["count"])
    return float(sum(n * abs(a - c) for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"],
                                                        strict=True) if n) / total)


def plot_reliability_diagram(curves, path, title="Reliability diagram"):
    """Accuracy against confidence per bin, one line per curve, with the diagonal; saved as PNG.

    Parameters
    ----------
    curves : dict
        Label (``"before (ECE 0.12)"``) -> :func:`reliability_bins` output.
    path : str or pathlib.Path
        Destination PNG (written atomically).

    Example
    -------
    >>> import tempfile, os
    >>> bins = reliability_bins(np.array([[0.9, 0.1], [0.3, 0.7]]), list("AA"), "AN", 5)
    >>> path = os.path.join(tempfile.mkdtemp(), "reliability.png")
    >>> plot_reliability_diagram({"fusion": bins}, path)
    >>> open(path, "rb").read(4) == b"\\x89PNG"
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ser.io.atomic import atomic_write

    figure = Figure(figsize=(4.6, 4.4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--", label="calibrated")
    for label, bins in curves.items():
        points = [(c, a, n) for c, a, n
                  in zip(bins["confidence"], bins["accuracy"], bins["count"], strict=True) if n]
        if points:
            confidence, accuracy, counts = map(np.asarray, zip(*points, strict=True))
            line = axes.plot(confidence, accuracy, marker="o", markersize=3, label=label)[0]
            # Marker area follows the turns in the bin: a lone-turn bin should not look like evidence.
            axes.scatter(confidence, accuracy, s=8 + 80 * counts / counts.max(), color=line.get_color(),
                         alpha=0.35)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(fontsize=7, loc="upper left")
    with atomic_write(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=120, bbox_inches="tight")
