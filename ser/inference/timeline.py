"""Emotion over time: the rows and the figure of :meth:`ser.inference.EmotionRecognizer.classify_timeline`.

Rows are ``File,Start,End,EmoClass,A..U`` (seconds, predicted letter, probabilities), one per
window (fixed windows every hop) or per speech segment (:mod:`ser.inference.vad`); the figure
draws the 8 probabilities against time, with the predicted class of each row, named, on a strip.
"""

import csv
from pathlib import Path

import numpy as np

from ser.emotions import EMOTION_NAMES, EMOTIONS
from ser.io.atomic import atomic_write

__all__ = ["TIMELINE_COLUMNS", "timeline_starts", "window_starts", "write_timeline", "plot_timeline",
           "label_runs", "strip_spans"]

TIMELINE_COLUMNS = ("File", "Start", "End", "EmoClass", *EMOTIONS)
# One colour per class, the same in every figure of the project's timelines.
COLOURS = dict(zip(EMOTIONS, ("#d62728", "#8c564b", "#7f7f7f", "#9467bd", "#ffbf00", "#1f77b4",
                              "#17becf", "#2ca02c"), strict=True))
# Classes whose colour is light enough for black text on the strip.
LIGHT = {"H", "S"}


def timeline_starts(n_samples, window, hop):
    """Start samples of timeline windows: every ``hop``, the last one ending at the end.

    Example
    -------
    >>> timeline_starts(100, 30, 20), timeline_starts(20, 30, 20), timeline_starts(90, 30, 30)
    ([0, 20, 40, 60, 70], [0], [0, 30, 60])
    """
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def window_starts(n_samples, window):
    """Start samples of back-to-back windows covering a turn (``window`` None: the whole turn).

    The timeline with the hop equal to the window: the last window ends at the end of the turn,
    overlapping its predecessor, so no window is shorter than the others.

    Example
    -------
    >>> window_starts(40, 10), window_starts(25, 10), window_starts(7, 10), window_starts(9, None)
    ([0, 10, 20, 30], [0, 10, 15], [0], [0])
    """
    return [0] if window is None else timeline_starts(n_samples, window, window)


def write_timeline(path, timelines):
    """Write ``{file: [TimelineRow, ...]}`` as one CSV (atomically).

    Example
    -------
    >>> import tempfile, os
    >>> from ser.inference.results import TimelineRow
    >>> out = os.path.join(tempfile.mkdtemp(), "timeline.csv")
    >>> write_timeline(out, {"a.wav": [TimelineRow(0.0, 3.0, "N", {c: 0.125 for c in EMOTIONS})]})
    >>> open(out).read().splitlines()[1]
    'a.wav,0.00,3.00,N,0.125000,0.125000,0.125000,0.125000,0.125000,0.125000,0.125000,0.125000'
    """
    with atomic_write(path) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(TIMELINE_COLUMNS)
        for file, rows in timelines.items():
            for row in rows:
                writer.writerow([file, f"{row.start:.2f}", f"{row.end:.2f}", row.label,
                                 *(f"{row.probabilities[c]:.6f}" for c in EMOTIONS)])


def label_runs(rows):
    """Merge consecutive rows that share a label and touch or overlap: ``[(start, end, label), ...]``.

    A gap between rows (silence between VAD segments) ends a run, so the strip shows it.

    Example
    -------
    >>> from ser.inference.results import TimelineRow
    >>> rows = [TimelineRow(0, 3, "H", None), TimelineRow(1, 4, "H", None), TimelineRow(2, 5, "S", None),
    ...         TimelineRow(9, 11, "S", None)]
    >>> label_runs(rows)
    [(0, 3.0, 'H'), (3.0, 5, 'S'), (9, 11, 'S')]
    """
    runs = []
    for row, (left, right) in zip(rows, strip_spans(rows), strict=True):
        if runs and runs[-1][2] == row.label and left <= runs[-1][1] + 1e-9:
            runs[-1] = (runs[-1][0], right, row.label)
        else:
            runs.append((left, right, row.label))
    return runs


def strip_spans(rows):
    """Where each row's label is drawn: halfway to its neighbours' centres, never outside the row.

    Overlapping windows (a hop shorter than the window) share the time between their centres;
    separate segments (VAD) keep their own extent, so silence between them stays blank.

    Example
    -------
    >>> from ser.inference.results import TimelineRow
    >>> strip_spans([TimelineRow(0, 3, "H", None), TimelineRow(1, 4, "H", None)])
    [(0, 2.0), (2.0, 4)]
    >>> strip_spans([TimelineRow(0, 2, "H", None), TimelineRow(5, 6, "S", None)])
    [(0, 2), (5, 6)]
    """
    centres = [(r.start + r.end) / 2 for r in rows]
    spans = []
    for index, row in enumerate(rows):
        left = (centres[index - 1] + centres[index]) / 2 if index else row.start
        right = (centres[index] + centres[index + 1]) / 2 if index + 1 < len(rows) else row.end
        spans.append((max(row.start, left), min(row.end, right)))
    return spans


def plot_timeline(rows, path, title="", xlim=None, time_label="time (s)"):
    """Draw one file's timeline: probabilities per class against time, the labels on a strip below.

    Overlapping windows' probabilities are drawn at their centres; separate segments (VAD) hold
    theirs over their extent, and the lines break where rows do not touch (the silence between
    them). The strip colours each row's label and writes the class name on it (the letter where the
    name does not fit).

    Parameters
    ----------
    rows : list of TimelineRow
        Sorted by start; an empty list draws an empty figure that says no speech was found.
    path : str, Path or file object
        Where the PNG goes.
    title : str
    xlim : (float, float), optional
        Time range shown (a rolling view of the last seconds); default: 0 to the last row's end.
    time_label : str
        The time axis' label.

    Example
    -------
    >>> import tempfile, os
    >>> from ser.inference.results import TimelineRow
    >>> rows = [TimelineRow(s, s + 3.0, "H", {c: (0.3 if c == "H" else 0.1) for c in EMOTIONS})
    ...         for s in range(0, 10)]
    >>> png = os.path.join(tempfile.mkdtemp(), "t.png")
    >>> plot_timeline(rows, png, "demo")
    >>> open(png, "rb").read(4)
    b'\\x89PNG'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, strip) = plt.subplots(2, 1, figsize=(10, 4.8), sharex=True,
                                        gridspec_kw={"height_ratios": [5, 1.2]})
    # Separate segments (VAD) hold their probabilities over their whole extent; overlapping windows
    # are drawn at their centres. NaN between rows that do not touch: matplotlib breaks the line there.
    separate = all(b.start >= a.end - 1e-6 for a, b in zip(rows, rows[1:], strict=False))
    times, values = [], []
    for index, row in enumerate(rows):
        if index and row.start > rows[index - 1].end + 1e-6:
            times.append(np.nan)
            values.append([np.nan] * len(EMOTIONS))
        probabilities = [row.probabilities[c] for c in EMOTIONS]
        for moment in (row.start, row.end) if separate else ((row.start + row.end) / 2,):
            times.append(moment)
            values.append(probabilities)
    values = np.array(values).reshape(-1, len(EMOTIONS))
    for index, letter in enumerate(EMOTIONS):
        top.plot(times, values[:, index], marker="." if len(rows) < 60 and not separate else None,
                 color=COLOURS[letter], label=f"{EMOTION_NAMES[letter]} ({letter})")
    top.set_ylabel("probability")
    top.set_ylim(0, 1)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    top.set_title(title or "Emotion over time")
    low, high = xlim if xlim is not None else (0, max([r.end for r in rows], default=1.0))
    if not rows:
        top.text(0.5, 0.5, "no speech found", transform=top.transAxes, ha="center", va="center")
    strip.set_xlim(low, high)
    strip.set_yticks([])
    strip.set_ylim(0, 1)
    strip.set_ylabel("label", rotation=0, ha="right", va="center")
    strip.set_xlabel(time_label)
    figure.tight_layout()
    # Text that fits: the strip's width in pixels, from the laid-out figure.
    pixels_per_second = strip.get_window_extent().width / max(high - low, 1e-9)
    for left, right, label in label_runs(rows):
        strip.axvspan(left, right, ymin=0.1, ymax=0.9, color=COLOURS[label], lw=0)
        left, right = max(left, low), min(right, high)
        width = (right - left) * pixels_per_second
        # About 6.5 pixels per character at 8 points and 100 dpi.
        text = EMOTION_NAMES[label] if width > 6.5 * len(EMOTION_NAMES[label]) + 6 else label
        if width > 12:
            strip.text((left + right) / 2, 0.5, text, ha="center", va="center", fontsize=8,
                       color="black" if label in LIGHT else "white", clip_on=True)
    try:
        if hasattr(path, "write"):  # a file object (the web page draws into memory)
            figure.savefig(path, format="png", dpi=100)
        else:
            # Whole or not at all, and a full disk names the figure (matplotlib's write loses the name).
            with atomic_write(path, "wb") as stream:
                figure.savefig(stream, format=Path(path).suffix.lstrip(".") or "png", dpi=100)
    finally:
        plt.close(figure)
