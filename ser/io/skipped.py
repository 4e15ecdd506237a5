"""``skipped.csv``: what a corpus-wide job left out, one row per turn, the same columns for every stage.

Preparation (bad audio) and transcription (unreadable or empty audio) list
each turn they skip, with its split and the reason, instead of stopping
(unless ``--strict``). The file is written even when nothing was skipped
(header only), so it always describes the last run rather than an older one.
"""

import csv

from ser.io.atomic import atomic_write

SKIPPED_CSV = "skipped.csv"
SKIPPED_COLUMNS = ("FileName", "Split", "Reason")


def write_skipped_csv(path, skipped):
    """Write ``FileName,Split,Reason`` rows (sorted by FileName) atomically.

    Parameters
    ----------
    path : str or Path
        Destination, usually ``<folder>/skipped.csv``.
    skipped : iterable of (str, str, str)
        ``(FileName, Split, Reason)`` per skipped turn.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / SKIPPED_CSV
    >>> write_skipped_csv(path, [("b.wav", "Train", "audio file missing")])
    >>> print(path.read_text().strip())
    FileName,Split,Reason
    b.wav,Train,audio file missing
    """
    with atomic_write(path) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(SKIPPED_COLUMNS)
        writer.writerows(sorted(skipped))
