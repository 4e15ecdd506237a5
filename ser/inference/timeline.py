"""Emotion over time: the rows and the figure of :meth:`ser.inference.EmotionRecognizer.classify_timeline`.

Rows are ``File,Start,End,EmoClass,A..U`` (seconds, predicted letter, probabilities); the figure
draws the 8 probabilities against time, with the predicted class of each window as a strip.
"""

import csv

import numpy as np

from ser.emotions import EMOTION_NAMES, EMOTIONS
from ser.io.atomic import atomic_write

__all__ = ["TIMELINE_COLUMNS", "timeline_starts", "window_starts", "write_timeline", "plot_timeline"]

TIMELINE_COLUMNS = ("File", "Start", "End", "EmoClass", *EMOTIONS)
# One colour per class, the same in every figure of the project's timelines.
COLOURS = dict(zip(EMOTIONS, ("#d62728", "#8c564b", "#7f7f7f", "#9467bd", "#ffbf00", "#1f77b4",
                              "#17becf", "#2ca02c"), strict=True))


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
    >>> from ser.inference.recognizer import TimelineRow
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


def plot_timeline(rows, path, title=""):
    """Draw one file's timeline: probabilities per class against window centre, labels below.

    Example
    -------
    >>> import tempfile, os
    >>> from ser.inference.recognizer import TimelineRow
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

    centres = np.array([(r.start + r.end) / 2 for r in rows])
    probabilities = np.array([[r.probabilities[c] for c in EMOTIONS] for r in rows])
    figure, (top, strip) = plt.subplots(2, 1, figsize=(10, 4.8), sharex=True,
                                        gridspec_kw={"height_ratios": [5, 1]})
    for index, letter in enumerate(EMOTIONS):
        top.plot(centres, probabilities[:, index], marker="." if len(rows) < 60 else None,
                 color=COLOURS[letter], label=f"{EMOTION_NAMES[letter]} ({letter})")
    top.set_ylabel("probability")
    top.set_ylim(0, 1)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    top.set_title(title or "Emotion over time")
    # The predicted class of each window, from halfway to the previous centre to halfway to the next.
    edges = np.concatenate([[rows[0].start], (centres[1:] + centres[:-1]) / 2, [rows[-1].end]])
    for row, left, right in zip(rows, edges[:-1], edges[1:], strict=True):
        strip.axvspan(left, right, ymin=0.1, ymax=0.9, color=COLOURS[row.label], lw=0)
    strip.set_yticks([])
    strip.set_ylabel("label", rotation=0, ha="right", va="center")
    strip.set_xlabel("time (s), probabilities at window centres")
    strip.set_xlim(0, max(r.end for r in rows))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
