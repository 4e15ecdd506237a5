"""The one interface through which the data stages reach a corpus.

A *reader* knows one release's layout (folders, label files, split names, how the
hidden test set is found) and reads it into two tables; preparation
(:mod:`data_prep.msp_prepare`), transcription (:mod:`data_prep.transcribe`) and
relabeling (:mod:`data_prep.consensus`) take those tables and know nothing of the
layout. A new release or a new corpus is one new reader (a subclass registered in
:data:`data_prep.corpora.READERS`).

The table of turns (:meth:`CorpusReader.turns`), one row per speaking turn:

==============  ==============================================================
column          meaning
==============  ==============================================================
``FileName``    the audio file's name, e.g. ``MSP-PODCAST_0002_0033.wav``
``Split_Set``   ``Train Development Test1 Test2 Test3`` (the release's own names
                mapped to these)
``EmoClass``    ``A C D F H N S U``, ``X`` (no agreement), ``O`` (other); None
                when hidden (Test3)
``EmoAct``      arousal, the annotators' mean on 1-7 (float, NaN when hidden)
``EmoVal``      valence, likewise
``EmoDom``      dominance, likewise
``SpkrID``      speaker id (string, may be ``Unknown``; None when hidden)
``Gender``      ``Female``/``Male``/... (None when hidden)
``wav``         absolute path of the audio file (it may be missing: the audio
                check of the preparation says so)
==============  ==============================================================

The table of annotations (:meth:`CorpusReader.annotations`), one row per
annotator's judgement of a turn: ``FileName``, ``Worker``, ``Emotion`` (``A..U``
or ``O``), ``Secondary`` (the raw secondary-emotion text), ``EmoAct EmoVal
EmoDom`` (that annotator's ratings, floats). An odd row (a word that names no
emotion, a row that does not parse, a rating that is not a number) is left out
and listed in :attr:`Annotations.skipped`, or stops the reading with
``strict=True``.
"""

from dataclasses import dataclass, field
from pathlib import Path

from ser.errors import UserInputError

TURN_COLUMNS = ("FileName", "Split_Set", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "wav")
ANNOTATION_COLUMNS = ("FileName", "Worker", "Emotion", "Secondary", "EmoAct", "EmoVal", "EmoDom")
ATTRIBUTE_COLUMNS = ("EmoAct", "EmoVal", "EmoDom")
#: The corpus's rating scale of the attributes (annotators rate 1-7; consensus values are their means).
ATTRIBUTE_SCALE = (1.0, 7.0)
#: The split names every reader maps its release's names to.
SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")
#: The splits a system trains on, is selected on and is tested on (manifest name → split);
#: the labelled test sets are ``eval_splits`` of the YAML.
DEFAULT_SPLITS = {"train": "Train", "valid": "Development", "test": "Test3"}


class CorpusLayoutError(UserInputError, FileNotFoundError):
    """The data folder is not a corpus any reader knows (names what is absent or found)."""


class UnknownSplitError(UserInputError, ValueError):
    """A split name the corpus does not define."""


@dataclass(frozen=True)
class SkippedRow:
    """An annotation row left out: where it is and why.

    Example
    -------
    >>> str(SkippedRow("Labels/labels_detailed.csv", 7, "unknown primary emotion 'Joyful'"))
    "Labels/labels_detailed.csv:7: unknown primary emotion 'Joyful'"
    """

    path: str
    line: int
    reason: str

    def __str__(self):
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class Annotations:
    """The table of annotations and the rows left out of it."""

    table: object
    skipped: list = field(default_factory=list)


class CorpusReader:
    """One release of one corpus, read into the table of turns and of annotations.

    Subclasses set the class attributes and implement :meth:`recognises`,
    :meth:`turns` and :meth:`annotations`.

    Attributes
    ----------
    corpus : str
        The corpus's name, e.g. ``"MSP-Podcast"``.
    release : str
        The release the folder holds, e.g. ``"v1.11"``.
    splits : tuple of str
        The split names :meth:`turns` accepts.
    root : Path
        The data folder (resolved).
    """

    corpus = "corpus"
    release = "?"
    splits = SPLITS

    def __init__(self, root):
        self.root = Path(root).expanduser().resolve()

    @classmethod
    def recognises(cls, root):
        """Whether the folder ``root`` holds this release (looks at names and headers only)."""
        raise NotImplementedError

    def describe(self):
        """One line for the user: corpus, release and where it was found."""
        return f"{self.corpus} {self.release} in {self.root}"

    def check_splits(self, splits):
        """Raise :class:`UnknownSplitError` for a name that is not one of :attr:`splits`.

        Example
        -------
        >>> reader = CorpusReader("/corpus")
        >>> reader.check_splits(["Train"])
        >>> try:
        ...     reader.check_splits(["Dev"])
        ... except UnknownSplitError as error:
        ...     print(error)
        unknown split 'Dev': expected one of Train Development Test1 Test2 Test3
        """
        for split in splits:
            if split not in self.splits:
                raise UnknownSplitError(f"unknown split {split!r}: expected one of {' '.join(self.splits)}")

    def check_audio(self):
        """Raise :class:`CorpusLayoutError` when the audio is not there (stages reading audio call it)."""
        raise NotImplementedError

    def turns(self, splits=None):
        """The table of turns (columns :data:`TURN_COLUMNS`), of ``splits`` or of all splits."""
        raise NotImplementedError

    def annotations(self, strict=False):
        """The table of annotations (:data:`ANNOTATION_COLUMNS`) as :class:`Annotations`."""
        raise NotImplementedError

    def transcript(self, file_name):
        """The human transcript of a turn, or None when the release has none for it."""
        raise NotImplementedError

    def label_files(self):
        """The files the tables are read from (their stamps tell when they changed)."""
        raise NotImplementedError
