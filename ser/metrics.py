"""Challenge metrics (Task 1 macro-F1, Task 2 CCC) and the paper's Table 1 layout.

Task 2 scores each emotional attribute (arousal, valence, dominance) by the
concordance correlation coefficient (:func:`concordance_cc`), computed in
float64 with population moments; the mean over the attributes ranks systems.

The challenge ranks systems by macro-F1: scikit-learn's
``f1_score(average="macro")`` over the 8 classes. Here the 8 classes are
always passed as ``labels``, so every class counts in the average even if a
small evaluation set lacks it: a class absent from both the references and
the predictions has precision, recall and F1 of 0/0, scored 0
(``zero_division=0``), and still divides the sum by 8. On the real
development and test sets every class is present, so this only matters on
tiny sets (tests, the mini corpus) where it makes the number comparable
across runs.
"""

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from ser.emotions import EMOTION_NAMES, EMOTIONS

__all__ = ["classification_report", "format_f1_table", "concordance_cc", "attribute_report",
           "format_ccc_table"]


def _check_classes(classes):
    classes = list(classes)
    if not classes:
        raise ValueError("classes is empty")
    if len(set(classes)) != len(classes) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"classes must be distinct strings, got {classes!r}")
    return classes


def _as_class_labels(labels, classes, name):
    """Turn letters or class indices into letters, or raise naming the entry.

    Parameters
    ----------
    labels : sequence of str or int, numpy array or tensor
        One label per sample.
    classes : list of str
        The class order; index ``i`` means ``classes[i]``.
    name : str
        What the labels are (``"y_true"``), for error messages.
    """
    if hasattr(labels, "detach"):  # a torch tensor
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per sample), got shape {array.shape}")
    known = set(classes)
    letters = []
    for position, label in enumerate(array.tolist()):
        if isinstance(label, str):
            if label not in known:
                raise ValueError(
                    f"{name}[{position}] = {label!r} is not one of the classes "
                    f"{' '.join(classes)}"
                )
            letters.append(label)
        elif isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= label < len(classes):
                raise ValueError(
                    f"{name}[{position}] = {label} is not a class index in [0, {len(classes)})"
                )
            letters.append(classes[label])
        else:
            raise ValueError(
                f"{name}[{position}] = {label!r} is neither a class letter nor a class index"
            )
    return letters


def classification_report(y_true, y_pred, classes=EMOTIONS):
    """Macro-F1, accuracy, per-class F1, confusion matrix and support.

    Parameters
    ----------
    y_true, y_pred : sequence of str or int
        Reference and predicted labels, as class letters (``"A"``) or as
        indices into ``classes``; the two may use different forms.
    classes : sequence of str
        Class order of the report (default: :data:`ser.emotions.EMOTIONS`).

    Returns
    -------
    dict
        ``classes`` (list), ``macro_f1`` (float, the challenge metric),
        ``accuracy`` (float), ``per_class_f1`` (dict class -> float),
        ``confusion_matrix`` (list of lists of int; rows = true class,
        columns = predicted class, both in class order), ``support``
        (dict class -> number of reference samples), ``n_samples`` (int).

    Raises
    ------
    ValueError
        On empty or unequal-length inputs, or a label that is not a class.

    Example
    -------
    >>> report = classification_report(["A", "N", "N", "H"], ["A", "N", "H", "H"])
    >>> # F1: A 1, N 2/3, H 2/3, the 5 absent classes 0 -> (1 + 4/3) / 8
    >>> round(report["macro_f1"], 4), report["accuracy"], report["support"]["N"]
    (0.2917, 0.75, 2)
    >>> report["confusion_matrix"][5]  # true N: one predicted N, one H
    [0, 0, 0, 0, 1, 1, 0, 0]
    """
    classes = _check_classes(classes)
    true = _as_class_labels(y_true, classes, "y_true")
    pred = _as_class_labels(y_pred, classes, "y_pred")
    if len(true) != len(pred):
        raise ValueError(f"y_true has {len(true)} labels but y_pred has {len(pred)}")
    if not true:
        raise ValueError("y_true and y_pred are empty: nothing to score")

    per_class = f1_score(true, pred, labels=classes, average=None, zero_division=0)
    matrix = confusion_matrix(true, pred, labels=classes)
    return {
        "classes": classes,
        "macro_f1": float(f1_score(true, pred, labels=classes, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(true, pred)),
        "per_class_f1": {c: float(f) for c, f in zip(classes, per_class, strict=True)},
        "confusion_matrix": matrix.astype(int).tolist(),
        "support": {c: int(n) for c, n in zip(classes, matrix.sum(axis=1), strict=True)},
        "n_samples": len(true),
    }


def _class_label(letter):
    name = EMOTION_NAMES.get(letter)
    return f"{name} ({letter})" if name else letter


def _cell(text):
    # A "|" inside a cell would end it.
    return str(text).replace("|", "\\|")


def format_f1_table(reports):
    """Markdown table in the layout of paper Table 1: one column per system.

    Rows: one per class (``Anger (A)``, ...) with its F1, then
    ``Accuracy`` and ``F1-Macro``; values to 3 decimals.

    Parameters
    ----------
    reports : dict
        System name -> report from :func:`classification_report`; all
        reports must cover the same classes. The first one sets the order.

    Returns
    -------
    str
        The table, lines joined by newlines, no trailing newline.

    Raises
    ------
    ValueError
        If ``reports`` is empty, a report lacks a key, or the reports
        cover different classes.

    Example
    -------
    >>> r = classification_report(["A", "N"], ["A", "H"], classes=["A", "H", "N"])
    >>> print(format_f1_table({"System A": r}))
    | Class | System A |
    |---|---:|
    | Anger (A) | 1.000 |
    | Happiness (H) | 0.000 |
    | Neutral (N) | 0.000 |
    | Accuracy | 0.500 |
    | F1-Macro | 0.333 |
    """
    if not reports:
        raise ValueError("format_f1_table needs at least one report")
    for system, report in reports.items():
        missing = [k for k in ("per_class_f1", "accuracy", "macro_f1") if k not in report]
        if missing:
            raise ValueError(f"report of system {system!r} lacks {', '.join(missing)}")
    systems = list(reports)
    classes = list(reports[systems[0]]["per_class_f1"])
    for system in systems[1:]:
        if set(reports[system]["per_class_f1"]) != set(classes):
            raise ValueError(
                f"report of system {system!r} covers classes "
                f"{sorted(reports[system]['per_class_f1'])}, but {systems[0]!r} covers "
                f"{sorted(classes)}"
            )

    def row(label, values):
        return "| " + " | ".join([_cell(label)] + [f"{v:.3f}" for v in values]) + " |"

    lines = [
        "| " + " | ".join(["Class"] + [_cell(s) for s in systems]) + " |",
        "|---|" + "---:|" * len(systems),
    ]
    for letter in classes:
        f1s = [reports[s]["per_class_f1"][letter] for s in systems]
        lines.append(row(_class_label(letter), f1s))
    lines.append(row("Accuracy", [reports[s]["accuracy"] for s in systems]))
    lines.append(row("F1-Macro", [reports[s]["macro_f1"] for s in systems]))
    return "\n".join(lines)


#: Display names of the Task 2 attributes.
ATTRIBUTE_NAMES = {"EmoAct": "Arousal", "EmoVal": "Valence", "EmoDom": "Dominance"}


def concordance_cc(predictions, references):
    """Concordance correlation coefficient of two 1-D series (float64).

    ``2 cov(x, y) / (var x + var y + (mean x - mean y)^2)``, population
    moments. Finite for constant predictions (0 unless the references are the
    same constant, which gives 1).

    Example
    -------
    >>> concordance_cc([1, 2, 3], [1, 2, 3]), concordance_cc([2, 2, 2], [1, 2, 3])
    (1.0, 0.0)
    >>> round(concordance_cc([2, 3, 5], [1, 2, 4]), 4)
    0.7568
    """
    x = np.asarray(predictions, dtype=np.float64).ravel()
    y = np.asarray(references, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{x.size} predictions but {y.size} references")
    if x.size == 0:
        raise ValueError("no predictions: nothing to score")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("predictions and references must be finite numbers")
    dx, dy = x - x.mean(), y - y.mean()
    denominator = (dx**2).mean() + (dy**2).mean() + (x.mean() - y.mean()) ** 2
    if denominator == 0.0:  # both constant and equal
        return 1.0
    return float(2.0 * (dx * dy).mean() / denominator)


def attribute_report(predictions, references, attributes):
    """CCC of each attribute and their mean.

    Parameters
    ----------
    predictions, references : array-like
        ``(n, n_attributes)``, columns in the order of ``attributes``.
    attributes : sequence of str
        Names (``EmoAct EmoVal EmoDom``).

    Returns
    -------
    dict
        ``attributes`` (list), ``ccc`` (dict name -> CCC), ``mean_ccc`` and
        ``n_samples``.

    Example
    -------
    >>> report = attribute_report([[1, 2], [2, 2], [3, 2]], [[1, 1], [2, 2], [3, 3]], ["EmoAct", "EmoVal"])
    >>> report["ccc"], report["mean_ccc"]
    ({'EmoAct': 1.0, 'EmoVal': 0.0}, 0.5)
    """
    attributes = list(attributes)
    pred = np.asarray(predictions, dtype=np.float64)
    true = np.asarray(references, dtype=np.float64)
    if pred.ndim != 2 or pred.shape != true.shape or pred.shape[1] != len(attributes):
        raise ValueError(f"predictions {pred.shape} and references {true.shape} must be "
                         f"(n, {len(attributes)}) for attributes {attributes}")
    ccc = {name: concordance_cc(pred[:, i], true[:, i]) for i, name in enumerate(attributes)}
    return {"attributes": attributes, "ccc": ccc, "mean_ccc": float(np.mean(list(ccc.values()))),
            "n_samples": int(pred.shape[0])}


def format_ccc_table(reports):
    """Markdown table of CCC per attribute (rows) and system (columns), then the mean.

    Example
    -------
    >>> r = attribute_report([[1.0], [2.0]], [[1.0], [2.0]], ["EmoAct"])
    >>> print(format_ccc_table({"WavLM": r}))
    | Attribute | WavLM |
    |---|---:|
    | Arousal (EmoAct) | 1.000 |
    | **Mean CCC** | **1.000** |
    """
    if not reports:
        raise ValueError("format_ccc_table needs at least one report")
    systems = list(reports)
    attributes = list(reports[systems[0]]["ccc"])
    for system in systems[1:]:
        if list(reports[system]["ccc"]) != attributes:
            raise ValueError(f"report of system {system!r} covers {list(reports[system]['ccc'])}, "
                             f"but {systems[0]!r} covers {attributes}")
    lines = ["| " + " | ".join(["Attribute"] + [_cell(s) for s in systems]) + " |",
             "|---|" + "---:|" * len(systems)]
    for name in attributes:
        label = f"{ATTRIBUTE_NAMES[name]} ({name})" if name in ATTRIBUTE_NAMES else name
        lines.append("| " + " | ".join([_cell(label)] + [f"{reports[s]['ccc'][name]:.3f}" for s in systems])
                     + " |")
    lines.append("| **Mean CCC** | " + " | ".join(f"**{reports[s]['mean_ccc']:.3f}**" for s in systems)
                 + " |")
    return "\n".join(lines)
