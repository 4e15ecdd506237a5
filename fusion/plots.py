"""Figures of the fusion report: confusion matrix (paper Figure 4) and per-class F1.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global
backend), so they render on a machine without a display.
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ser.emotions import EMOTION_NAMES
from ser.io.atomic import atomic_write

__all__ = ["row_normalise", "plot_confusion_matrix", "plot_f1_per_class", "plot_attribute_scatter"]


def row_normalise(matrix):
    """Divide each row by its sum (the recall view of Figure 4); empty rows stay 0.

    Example
    -------
    >>> row_normalise([[1, 3], [0, 0]]).tolist()
    [[0.25, 0.75], [0.0, 0.0]]
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def _save(figure, path):
    FigureCanvasAgg(figure)
    with atomic_write(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=120, bbox_inches="tight")


def plot_confusion_matrix(matrix, classes, path, title="Fusion: confusion matrix (dev)"):
    """Row-normalised confusion matrix with the value in each cell, saved as PNG.

    Parameters
    ----------
    matrix : array-like
        Counts, rows = true class, columns = predicted class.
    classes : sequence of str
        Class letters in matrix order.
    path : str or Path
        Destination PNG (written atomically).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "cm.png")
    >>> plot_confusion_matrix([[2, 1], [0, 3]], ["A", "N"], path)
    >>> open(path, "rb").read(4)
    b'\\x89PNG'
    """
    matrix = np.asarray(matrix)
    if matrix.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {len(classes)} classes")
    rates = row_normalise(matrix)
    names = [f"{EMOTION_NAMES.get(c, c)} ({c})" for c in classes]
    figure = Figure(figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.7 * len(classes)))
    axes = figure.add_subplot()
    image = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    for row in range(len(classes)):
        for column in range(len(classes)):
            # Dark cells need white text to stay readable.
            colour = "white" if rates[row, column] > 0.5 else "black"
            axes.text(column, row, f"{rates[row, column]:.2f}", ha="center", va="center",
                      color=colour, fontsize=8)
    axes.set_xticks(range(len(classes)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), names)
    axes.set_xlabel("Predicted class")
    axes.set_ylabel("True class")
    axes.set_title(title)
    _save(figure, path)


def plot_f1_per_class(reports, path, title="F1 per class (dev)"):
    """Grouped bar chart: one group per class, one bar per system (fusion last).

    Parameters
    ----------
    reports : dict
        Name -> report of :func:`ser.metrics.classification_report`; the
        first report sets the class order.
    path : str or Path
        Destination PNG (written atomically).

    Example
    -------
    >>> import tempfile, os
    >>> from ser.metrics import classification_report
    >>> report = classification_report(["A", "N"], ["A", "A"], classes=["A", "N"])
    >>> path = os.path.join(tempfile.mkdtemp(), "f1.png")
    >>> plot_f1_per_class({"System A": report, "Fusion": report}, path)
    >>> open(path, "rb").read(4)
    b'\\x89PNG'
    """
    if not reports:
        raise ValueError("plot_f1_per_class needs at least one report")
    classes = list(next(iter(reports.values()))["per_class_f1"])
    width = 0.8 / len(reports)
    figure = Figure(figsize=(2.0 + 1.1 * len(classes), 4.0))
    axes = figure.add_subplot()
    for index, (name, report) in enumerate(reports.items()):
        offsets = np.arange(len(classes)) - 0.4 + width * (index + 0.5)
        values = [report["per_class_f1"][c] for c in classes]
        axes.bar(offsets, values, width, label=f"{name} (macro {report['macro_f1']:.3f})")
    axes.set_xticks(range(len(classes)), [EMOTION_NAMES.get(c, c) for c in classes])
    axes.set_ylim(0.0, 1.0)
    axes.set_ylabel("F1")
    axes.set_title(title)
    axes.legend(fontsize=7, ncols=min(3, len(reports)), loc="upper left")
    _save(figure, path)


def plot_attribute_scatter(predicted, annotated, attribute, ccc, path):
    """Predicted vs annotated values of one attribute (dev), with the identity line.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scatter.png")
    >>> plot_attribute_scatter([2.0, 4.0, 5.5], [2.5, 4.0, 6.0], "EmoAct", 0.93, path)
    >>> open(path, "rb").read(4) == b"\\x89PNG"
    True
    """
    figure = Figure(figsize=(4.2, 4.0))
    axes = figure.add_subplot()
    axes.scatter(annotated, predicted, s=12, alpha=0.6)
    axes.plot([1, 7], [1, 7], color="grey", linewidth=1, linestyle="--")
    axes.set_xlim(1, 7)
    axes.set_ylim(1, 7)
    axes.set_xlabel(f"annotated {attribute}")
    axes.set_ylabel(f"predicted {attribute} (fusion, out of fold)")
    axes.set_title(f"{attribute}: CCC {ccc:.3f} (dev)")
    _save(figure, path)
