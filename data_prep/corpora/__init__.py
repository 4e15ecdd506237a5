"""Corpus readers: each release's layout read in one place into one table of turns.

:func:`open_corpus` tells the release from the folder itself and returns its
reader (:class:`~data_prep.corpora.base.CorpusReader`); the data stages use only
the reader's tables (see :mod:`data_prep.corpora.base` for their columns). To add a
release or a corpus, write one reader class and list it in :data:`READERS`.
"""

import logging

from data_prep.corpora.base import (
    ANNOTATION_COLUMNS,
    DEFAULT_SPLITS,
    SPLITS,
    TURN_COLUMNS,
    Annotations,
    CorpusLayoutError,
    CorpusReader,
    SkippedRow,
    UnknownSplitError,
)
from data_prep.corpora.msp_podcast import (
    MSPPodcast,
    MSPPodcast1_12,
    MSPPodcast2_0,
    MSPPodcastOlder,
    explain_unrecognised,
)
from data_prep.corpora.text_files import LabelFileError

logger = logging.getLogger(__name__)

__all__ = ["open_corpus", "READERS", "CorpusReader", "CorpusLayoutError", "UnknownSplitError",
           "LabelFileError", "Annotations", "SkippedRow", "TURN_COLUMNS", "ANNOTATION_COLUMNS", "SPLITS",
           "DEFAULT_SPLITS"]

#: Every reader, the most specific first: the first that recognises a folder reads it.
READERS = (MSPPodcast2_0, MSPPodcastOlder, MSPPodcast1_12, MSPPodcast)


def open_corpus(data_folder):
    """The reader of the release in ``data_folder``.

    Parameters
    ----------
    data_folder : str or Path
        A corpus root (for MSP-Podcast: the folder holding ``Audios/`` and ``Labels/``).

    Returns
    -------
    CorpusReader
        ``describe()`` says which release was found.

    Raises
    ------
    CorpusLayoutError
        When no reader recognises the folder; the message names what is absent
        (or what to unpack).

    Example
    -------
    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "Audios").mkdir(); (root / "label").mkdir()
    >>> _ = (root / "label" / "labels_concensus.csv").write_text(
    ...     "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\\n")
    >>> open_corpus(root).release
    'v1.6-v1.10'
    """
    for reader in READERS:
        if reader.recognises(data_folder):
            corpus = reader(data_folder)
            logger.info("found %s", corpus.describe())
            return corpus
    raise explain_unrecognised(data_folder)
