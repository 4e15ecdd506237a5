"""Posterior files: the one thing each sub-system hands to the fusion.

``FileName`` then the 8 class probabilities in the fixed order of
:data:`ser.emotions.EMOTIONS` (A C D F H N S U), one row per turn, sorted by
``FileName``.
"""

import numpy as np
import pandas as pd

from ser.atomic_io import atomic_write
from ser.emotions import EMOTIONS

COLUMNS = ("FileName",) + EMOTIONS


def write_posteriors(path, file_names, probabilities):
    """Write a posterior file atomically (a reader never sees half a file).

    Parameters
    ----------
    path : str or Path
        Destination CSV.
    file_names : sequence of str
        One per row, e.g. ``MSP-PODCAST_0002_0033.wav``.
    probabilities : array-like
        Shape ``(n, 8)``, rows in the order of ``file_names``.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "valid.csv")
    >>> write_posteriors(path, ["b.wav", "a.wav"], np.eye(8)[:2])
    >>> read_posteriors(path).index.tolist()
    ['a.wav', 'b.wav']
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(EMOTIONS):
        raise ValueError(f"{path}: expected (n, {len(EMOTIONS)}) probabilities, got {probabilities.shape}")
    table = pd.DataFrame(probabilities, columns=list(EMOTIONS))
    table.insert(0, "FileName", list(file_names))
    table = table.sort_values("FileName", kind="stable")
    with atomic_write(path) as stream:
        table.to_csv(stream, index=False, float_format="%.6f")


def read_posteriors(path):
    """Read a posterior file, checking its columns and class order.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``FileName``, columns ``A C D F H N S U``.

    Raises
    ------
    ValueError
        If the columns are not ``FileName`` + the 8 classes in order.
    """
    table = pd.read_csv(path)
    if tuple(table.columns) != COLUMNS:
        raise ValueError(
            f"{path}: columns {list(table.columns)}; expected {list(COLUMNS)} (fixed class order)"
        )
    return table.set_index("FileName")
