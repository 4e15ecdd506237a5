"""MSP-Podcast, every release researchers hold: where things are, and how to read them.

v1.11 (Odyssey 2024 challenge), the layout the others are told apart from::

    <root>/Audios/<FileName>.wav
    <root>/Labels/labels_consensus.csv     (or labels_consensus.json)
    <root>/Labels/labels_detailed.csv      FileName,EmoDetail
    <root>/Transcripts/<stem>.txt

* **v1.12** (Interspeech 2025 challenge): the same label files; Test3 audio named
  ``MSP-PODCAST_test3_0001.wav`` (four digits), some turns with three-part names;
  extra folders ``ForceAligned/`` and ``Previous_releases_information/``.
* **2.0**: ``labels_detailed.csv`` with one column per field
  (``FileName,WorkerID,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom``),
  and ``labels_detailed_aggregated.csv`` with per-turn ``count::<Emotion>`` votes.
* **older releases** (v1.6-v1.10): label folder ``Labels/``, ``labels/`` or
  ``label/``; the consensus file may be spelt ``labels_concensus``; Development is
  called ``Validation``; per-annotator columns ``Workers,EmoClass_Major,...``.

Test3 (the challenge test set) has no labels, speakers or transcripts: its turns
are found by file name in the audio folder (names containing ``test3``), as the
official scripts do. The release is told from the folder itself (folder names and
file headers; see each reader's :meth:`recognises`).
"""

import logging
import re
from pathlib import Path

import pandas as pd

from data_prep.corpora.base import (
    ATTRIBUTE_COLUMNS,
    TURN_COLUMNS,
    CorpusLayoutError,
    CorpusReader,
)
from data_prep.corpora.msp_label_files import read_consensus_file, read_detailed_file, read_vote_counts_file
from data_prep.corpora.text_files import LabelFileError, read_header, read_text

logger = logging.getLogger(__name__)

#: The split whose turns are listed only by audio file name.
HIDDEN_TEST_SPLIT = "Test3"
_TEST3_NAME = re.compile(r"test3", re.IGNORECASE)
_V112_TEST3_NAME = re.compile(r"^MSP-PODCAST_test3_\d{4}\.wav$", re.IGNORECASE)
# Archives v1.12 ships instead of folders: what to unpack when the folder is absent.
_ARCHIVES = {"Labels": "Labels.zip", "Audios": "Audios.tar.gz", "Transcripts": "Transcripts.zip"}


def _first_existing(root, names):
    """The first of ``root/<name>`` that exists, or None (names tried in order)."""
    for name in names:
        path = root / name
        # A case-insensitive file system answers for "label" when "Labels" exists:
        # compare with the name actually listed.
        if path.exists() and name in {entry.name for entry in root.iterdir()}:
            return path
    return None


class MSPPodcast(CorpusReader):
    """MSP-Podcast v1.11, the Odyssey 2024 challenge release (the base of the other releases).

    Parameters
    ----------
    root : str or Path
        The release's root folder.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()); (root / "Audios").mkdir(); (root / "Labels").mkdir()
    >>> _ = (root / "Labels" / "labels_consensus.csv").write_text(
    ...     "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\\n"
    ...     "MSP-PODCAST_0001_0001.wav,N,4,4,4,12,Female,Train\\n")
    >>> _ = (root / "Audios" / "MSP-PODCAST_test3_00001.wav").write_bytes(b"")
    >>> reader = MSPPodcast(root)
    >>> reader.turns()[["FileName", "Split_Set", "EmoClass"]].values.tolist()
    [['MSP-PODCAST_0001_0001.wav', 'Train', 'N'], ['MSP-PODCAST_test3_00001.wav', 'Test3', None]]
    """

    corpus = "MSP-Podcast"
    release = "v1.11"
    audio_dirs = ("Audios",)
    label_dirs = ("Labels",)
    consensus_names = ("labels_consensus.csv", "labels_consensus.json")
    detailed_name = "labels_detailed.csv"
    transcripts_dir = "Transcripts"
    #: The release's own ``Split_Set`` names that differ from the common ones.
    split_names = {}

    def __init__(self, root):
        super().__init__(root)
        self.audio_dir = _first_existing(self.root, self.audio_dirs) or self.root / self.audio_dirs[0]
        self.labels_dir = _first_existing(self.root, self.label_dirs) or self.root / self.label_dirs[0]
        self.consensus_file = (_first_existing(self.labels_dir, self.consensus_names)
                               if self.labels_dir.is_dir() else None)
        self.consensus_file = self.consensus_file or self.labels_dir / self.consensus_names[0]
        self.detailed_file = self.labels_dir / self.detailed_name
        self._consensus = None

    # -- telling releases apart ------------------------------------------------------------
    @classmethod
    def _detailed_header(cls, root):
        for labels in cls.label_dirs:
            header = read_header(Path(root) / labels / cls.detailed_name)
            if header:
                return [name.strip().strip('"') for name in header.split(",")]
        return []

    @classmethod
    def recognises(cls, root):
        """A ``Labels/labels_consensus.*``, and per-annotator labels (if any) as EmoDetail.

        The audio folder is not needed to read the labels (relabeling runs without
        it): :meth:`check_audio` asks for it where audio is read.
        """
        root = Path(root)
        labels = _first_existing(root, cls.label_dirs)
        if labels is None or _first_existing(labels, cls.consensus_names) is None:
            return False
        header = cls._detailed_header(root)
        return not header or "EmoDetail" in header

    def describe(self):
        """One line: the release, where, and the files read.

        Example
        -------
        >>> MSPPodcast("/corpus").describe()  # the files it reads (or would, were they there)
        'MSP-Podcast v1.11 in /corpus (Labels/labels_consensus.csv, Labels/labels_detailed.csv)'
        """
        files = self.label_files() or [self.consensus_file, self.detailed_file]
        named = ", ".join(str(path.relative_to(self.root)) for path in files)
        return f"{super().describe()} ({named})"

    def check_audio(self):
        """Raise :class:`CorpusLayoutError` when the audio folder is absent (or still an archive)."""
        if self.audio_dir.is_dir():
            return
        archive = self.root / _ARCHIVES["Audios"]
        hint = (f"unpack {archive.name} first" if archive.is_file()
                else f"{self.root} holds the labels but not the audio")
        raise CorpusLayoutError(f"{self.audio_dir}: folder not found — {hint}")

    # -- the tables ------------------------------------------------------------------------
    def consensus(self):
        """The consensus label file as read (rows of labelled turns only), read once."""
        if self._consensus is None:
            if not self.consensus_file.is_file():
                raise LabelFileError(self.consensus_file, None, "file not found")
            self._consensus = read_consensus_file(self.consensus_file, self.split_names)
        return self._consensus

    def hidden_test_audio(self):
        """File names of the Test3 turns, found by name in the audio folder.

        The challenge released Test3 as audio only, so the official scripts (and
        this method) select it by the ``test3`` in its file names.
        """
        if not self.audio_dir.is_dir():
            return []
        return sorted(path.name for path in self.audio_dir.iterdir()
                      if path.suffix.lower() == ".wav" and _TEST3_NAME.search(path.name))

    def turns(self, splits=None):
        """The table of turns (:data:`~data_prep.corpora.base.TURN_COLUMNS`).

        Parameters
        ----------
        splits : iterable of str, optional
            Keep these splits only (default: all).

        Raises
        ------
        UnknownSplitError
            For a split name the release does not define.
        """
        splits = list(self.splits if splits is None else splits)
        self.check_splits(splits)
        labels = self.consensus()
        turns = labels.loc[labels["Split_Set"].isin(splits)]
        turns = turns.astype({name: object for name in ("EmoClass", "SpkrID", "Gender")})
        if HIDDEN_TEST_SPLIT in splits:
            # Test3 is released as audio only: add the turns the labels do not list.
            hidden = sorted(set(self.hidden_test_audio()) - set(labels["FileName"]))
            extra = pd.DataFrame({"FileName": hidden, "Split_Set": HIDDEN_TEST_SPLIT})
            for name in ("EmoClass", "SpkrID", "Gender"):
                extra[name] = pd.Series([None] * len(hidden), dtype=object)
            for name in ATTRIBUTE_COLUMNS:
                extra[name] = float("nan")
            turns = pd.concat([turns, extra], ignore_index=True) if len(extra) else turns
        turns = turns.reset_index(drop=True)
        folder = str(self.audio_dir)  # joined as strings: a quarter of a million Path objects cost
        turns["wav"] = [f"{folder}/{name}" for name in turns["FileName"]]
        return turns.loc[:, list(TURN_COLUMNS)]

    def annotations(self, strict=False):
        """The table of annotations (one odd row left out and listed unless ``strict``).

        Raises
        ------
        LabelFileError
            When the release has no per-annotator file, or it cannot be read.
        """
        if not self.detailed_file.is_file():
            raise LabelFileError(self.detailed_file, None,
                                 f"file not found: {self.describe()} has no per-annotator labels")
        return read_detailed_file(self.detailed_file, strict=strict)

    def vote_counts(self, strict=False):
        """Per-turn votes (turns x ``A C D F H N S U O``), counted from the annotations."""
        table = self.annotations(strict=strict).table
        counts = pd.crosstab(table["FileName"], table["Emotion"])
        return counts.reindex(columns=list("ACDFHNSUO"), fill_value=0)

    def audio_path(self, file_name):
        """Path of a turn's audio file.

        Example
        -------
        >>> MSPPodcast("/corpus").audio_path("MSP-PODCAST_0002_0033.wav").as_posix()
        '/corpus/Audios/MSP-PODCAST_0002_0033.wav'
        """
        return self.audio_dir / file_name

    def transcript_path(self, file_name):
        """Path of a turn's human transcript (``Transcripts/<stem>.txt``).

        Example
        -------
        >>> MSPPodcast("/corpus").transcript_path("MSP-PODCAST_0002_0033.wav").as_posix()
        '/corpus/Transcripts/MSP-PODCAST_0002_0033.txt'
        """
        return self.root / self.transcripts_dir / (Path(file_name).stem + ".txt")

    def transcript(self, file_name):
        """The human transcript (any text encoding), or None when there is none."""
        path = self.transcript_path(file_name)
        return read_text(path).strip() if path.is_file() else None

    def label_files(self):
        """The label files of the release that exist (consensus first)."""
        return [path for path in (self.consensus_file, self.detailed_file) if path.is_file()]


class MSPPodcast1_12(MSPPodcast):
    """MSP-Podcast v1.12 (Interspeech 2025): v1.11's files; four-digit Test3 names, extra folders."""

    release = "v1.12"
    markers = ("ForceAligned", "Previous_releases_information")

    @classmethod
    def recognises(cls, root):
        """v1.11's layout plus ``ForceAligned/`` or ``Previous_releases_information/``, or
        Test3 audio named ``MSP-PODCAST_test3_0001.wav`` (four digits)."""
        if not super().recognises(root):
            return False
        root = Path(root)
        if any((root / name).is_dir() for name in cls.markers):
            return True
        audio = _first_existing(root, cls.audio_dirs)
        return audio is not None and any(_V112_TEST3_NAME.match(path.name)
                                         for path in audio.glob("*test3_*.wav"))


class MSPPodcast2_0(MSPPodcast):
    """MSP-Podcast 2.0: per-annotator labels in columns, per-turn vote counts beside them."""

    release = "2.0"
    aggregated_name = "labels_detailed_aggregated.csv"

    @classmethod
    def recognises(cls, root):
        """``Labels/labels_detailed.csv`` with a ``WorkerID`` column, or a
        ``labels_detailed_aggregated.csv``."""
        root = Path(root)
        labels = _first_existing(root, cls.label_dirs)
        if labels is None or _first_existing(labels, cls.consensus_names) is None:
            return False
        return "WorkerID" in cls._detailed_header(root) or (labels / cls.aggregated_name).is_file()

    def vote_counts(self, strict=False):
        """Per-turn votes as the release counts them (``labels_detailed_aggregated.csv``)."""
        path = self.labels_dir / self.aggregated_name
        return read_vote_counts_file(path) if path.is_file() else super().vote_counts(strict)

    def label_files(self):
        path = self.labels_dir / self.aggregated_name
        return super().label_files() + ([path] if path.is_file() else [])


class MSPPodcastOlder(MSPPodcast):
    """MSP-Podcast v1.6-v1.10: other folder names and spellings, ``Validation`` for Development."""

    release = "v1.6-v1.10"
    audio_dirs = ("Audios", "Audio")
    label_dirs = ("Labels", "labels", "label")
    consensus_names = ("labels_consensus.csv", "labels_concensus.csv", "labels_consensus.json",
                       "labels_concensus.json")
    split_names = {"Validation": "Development"}

    def __init__(self, root):
        super().__init__(root)
        # The folder name often says which release it is (MSP-PODCAST-Publish-1.8).
        version = re.search(r"(?<![\d.])1\.(6|7|8|9|10)(?![\d])", self.root.name)
        if version:
            self.release = f"v1.{version.group(1)}"

    @classmethod
    def recognises(cls, root):
        """Any of the older names: a ``label/`` or ``labels/`` folder, ``labels_concensus``,
        an ``Audio/`` folder, ``Validation`` rows, or a ``Workers`` column."""
        root = Path(root)
        audio = _first_existing(root, cls.audio_dirs)
        labels = _first_existing(root, cls.label_dirs)
        if labels is None:
            return False
        consensus = _first_existing(labels, cls.consensus_names)
        if consensus is None:
            return False
        header = cls._detailed_header(root)
        return (labels.name != "Labels" or (audio is not None and audio.name != "Audios")
                or "concensus" in consensus.name or "Workers" in header or _lists_validation(consensus))


def _lists_validation(consensus_file):
    """Whether the consensus file names a ``Validation`` split (read only when CSV)."""
    if consensus_file.suffix.lower() != ".csv":
        return False
    try:
        with open(consensus_file, "rb") as handle:
            return b",Validation" in handle.read(1 << 20)
    except OSError:
        return False


def explain_unrecognised(root):
    """A :class:`CorpusLayoutError` saying what ``root`` holds and what is missing.

    Example
    -------
    >>> import tempfile
    >>> print(explain_unrecognised(Path("/no/such/folder")))
    /no/such/folder: data folder not found (expected an MSP-Podcast release)
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        return CorpusLayoutError(f"{root}: data folder not found (expected an MSP-Podcast release)")
    archives = [archive for folder, archive in _ARCHIVES.items()
                if not (root / folder).is_dir() and (root / archive).is_file()]
    if archives:
        return CorpusLayoutError(
            f"{root}: holds {', '.join(archives)} but not the folders they contain: unpack them "
            f"(MSP-Podcast v1.12 ships its folders as archives)")
    audio = _first_existing(root, MSPPodcastOlder.audio_dirs)
    if audio is None:
        return CorpusLayoutError(
            f"{root / 'Audios'}: folder not found — {root} is not an MSP-Podcast layout "
            "(expected Audios/, Labels/, Transcripts/)")
    labels = _first_existing(root, MSPPodcastOlder.label_dirs)
    return CorpusLayoutError(
        f"{(labels or root / 'Labels') / 'labels_consensus.csv'}: file not found (nor "
        f"labels_consensus.json, nor the older spelling labels_concensus) — {root} is not an "
        "MSP-Podcast layout")
