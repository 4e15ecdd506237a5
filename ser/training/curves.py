"""Training curves of a system: its ``train_log.txt`` read back and drawn.

``train.py`` logs one line per epoch through SpeechBrain's ``FileTrainLogger``::

    epoch: 2, lr_head: 1.00e-03 - train loss: 1.97 - valid loss: 1.90, valid macro_f1: 1.03e-01

:func:`read_train_log` turns those lines into columns; :func:`plot_training_curves` draws train
and dev loss, dev macro-F1 (and accuracy) and the learning rates per epoch in one PNG (the
fusion report links one per system).
"""

from pathlib import Path

from ser.io.atomic import atomic_write

__all__ = ["read_train_log", "plot_training_curves"]


def _number(text):
    try:
        return float(text)
    except ValueError:
        return None


def read_train_log(path):
    """Per-epoch values of a train log: ``{"epoch": [...], "train loss": [...], "lr_head": [...], ...}``.

    Lines that are not epochs (the final ``evaluation:`` line) are skipped; a later line of the
    same epoch (a resumed run) replaces the earlier one.

    Example
    -------
    >>> import tempfile, os
    >>> log = os.path.join(tempfile.mkdtemp(), "train_log.txt")
    >>> _ = open(log, "w").write(
    ...     "epoch: 1, lr_head: 1.00e-03 - train loss: 2.07 - valid loss: 1.98, valid macro_f1: 1.08e-01\\n"
    ...     "epoch: 2, lr_head: 9.00e-04 - train loss: 1.97 - valid loss: 1.90, valid macro_f1: 2.00e-01\\n"
    ...     "evaluation: metrics.json - test macro_f1: 1.08e-01\\n")
    >>> curves = read_train_log(log)
    >>> curves["epoch"], curves["valid macro_f1"], curves["lr_head"]
    ([1.0, 2.0], [0.108, 0.2], [0.001, 0.0009])
    """
    epochs = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("epoch:"):
            continue
        values = {}
        for part_index, part in enumerate(line.split(" - ")):
            prefix = ""
            for item in part.split(", "):
                key, _, value = item.partition(": ")
                if part_index > 0 and " " in key:  # "train loss", then "macro_f1" of the same stage
                    prefix = key.split(" ", 1)[0] + " "
                    key = key.split(" ", 1)[1]
                number = _number(value)
                if number is not None:
                    values[(prefix if part_index > 0 else "") + key] = number
        if "epoch" in values:
            epochs[values["epoch"]] = values
    keys = list(dict.fromkeys(key for values in epochs.values() for key in values))
    ordered = [epochs[e] for e in sorted(epochs)]
    return {key: [values.get(key) for values in ordered] for key in keys}


def plot_training_curves(train_log, path, title="", epoch_dev_turns=None):
    """Draw losses, dev scores and learning rates per epoch of ``train_log`` into a PNG.

    ``epoch_dev_turns``: the run scored each epoch on that many dev turns (its YAML's
    ``epoch_dev_turns``), said in the dev panel's title; None: on all of dev.

    Returns
    -------
    Path or None
        ``path``, or None when the log has no epoch line.

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> log = os.path.join(folder, "train_log.txt")
    >>> _ = open(log, "w").write("epoch: 1, lr_head: 1.00e-03 - train loss: 2.07 - valid loss: 1.98, "
    ...                          "valid macro_f1: 1.08e-01\\n")
    >>> png = plot_training_curves(log, os.path.join(folder, "curves.png"), "A")
    >>> open(png, "rb").read(4)
    b'\\x89PNG'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves = read_train_log(train_log)
    if not curves.get("epoch"):
        return None
    epochs = curves["epoch"]
    figure, (losses, scores, rates) = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, style in (("train loss", "-o"), ("valid loss", "-s")):
        if key in curves:
            losses.plot(epochs, curves[key], style, label=key.replace("valid", "dev"))
    losses.set_title("loss")
    for key, style in (("valid macro_f1", "-o"), ("valid accuracy", "--s")):
        if key in curves:
            scores.plot(epochs, curves[key], style, label=key.replace("valid ", "dev "))
    scores.set_title(f"dev scores ({epoch_dev_turns} dev turns)" if epoch_dev_turns else "dev scores")
    scores.set_ylim(0, 1)
    for key in (k for k in curves if k.startswith("lr")):
        rates.plot(epochs, curves[key], "-o", label=key)
    rates.set_yscale("log")
    rates.set_title("learning rates")
    for axis in (losses, scores, rates):
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    # Whole or not at all, and a full disk names the figure (matplotlib's write loses the name).
    try:
        with atomic_write(path, "wb") as stream:
            figure.savefig(stream, format=Path(path).suffix.lstrip(".") or "png", dpi=90)
    finally:
        plt.close(figure)
    return Path(path)
