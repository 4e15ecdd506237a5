"""Where things are in an MSP-Podcast release, and which turns each split holds.

The layout (v1.11, the challenge release)::

    <data_folder>/Audios/<FileName>.wav
    <data_folder>/Labels/labels_consensus.csv   (or labels_consensus.json)
    <data_folder>/Labels/labels_detailed.csv
    <data_folder>/Transcripts/<stem>.txt

Test3 (the challenge test set) has no labels, speakers or transcripts: its
turns are found by file name in ``Audios/`` (names containing ``test3``).
"""

from pathlib import Path

from ser.errors import UserInputError

AUDIO_DIR = "Audios"
LABELS_DIR = "Labels"
TRANSCRIPTS_DIR = "Transcripts"
CONSENSUS_CSV = f"{LABELS_DIR}/labels_consensus.csv"
CONSENSUS_JSON = f"{LABELS_DIR}/labels_consensus.json"
DETAILED_CSV = f"{LABELS_DIR}/labels_detailed.csv"

#: Split names of the release (``Split_Set`` column).
KNOWN_SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")
#: The split whose turns are listed only by audio file name.
HIDDEN_TEST_SPLIT = "Test3"


class CorpusLayoutError(UserInputError, FileNotFoundError):
    """The data folder is not an MSP-Podcast release (names the absent path)."""


def check_layout(data_folder):
    """Check that ``data_folder`` looks like an MSP-Podcast release.

    Parameters
    ----------
    data_folder : str or Path
        Root of the corpus (the folder holding ``Audios/`` and ``Labels/``).

    Returns
    -------
    Path
        The resolved root.

    Raises
    ------
    CorpusLayoutError
        Naming the first expected path that is absent.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> try:
    ...     check_layout(root)
    ... except CorpusLayoutError as error:
    ...     print("Audios" in str(error))
    True
    """
    root = Path(data_folder).expanduser()
    if not root.is_dir():
        raise CorpusLayoutError(f"{root}: data folder not found (expected an MSP-Podcast release)")
    audio = root / AUDIO_DIR
    if not audio.is_dir():
        raise CorpusLayoutError(
            f"{audio}: folder not found — {root} is not an MSP-Podcast layout "
            f"(expected {AUDIO_DIR}/, {LABELS_DIR}/, {TRANSCRIPTS_DIR}/)"
        )
    if not (root / CONSENSUS_CSV).is_file() and not (root / CONSENSUS_JSON).is_file():
        raise CorpusLayoutError(
            f"{root / CONSENSUS_CSV}: file not found (nor {CONSENSUS_JSON}) — "
            f"{root} is not an MSP-Podcast layout"
        )
    return root.resolve()


def audio_path(data_folder, file_name):
    """Path of a turn's audio file.

    Example
    -------
    >>> audio_path("/corpus", "MSP-PODCAST_0002_0033.wav").as_posix()
    '/corpus/Audios/MSP-PODCAST_0002_0033.wav'
    """
    return Path(data_folder) / AUDIO_DIR / file_name


def transcript_path(data_folder, file_name):
    """Path of a turn's human transcript (``Transcripts/<stem>.txt``).

    Example
    -------
    >>> transcript_path("/corpus", "MSP-PODCAST_0002_0033.wav").as_posix()
    '/corpus/Transcripts/MSP-PODCAST_0002_0033.txt'
    """
    return Path(data_folder) / TRANSCRIPTS_DIR / (Path(file_name).stem + ".txt")


def list_hidden_test_audio(data_folder):
    """File names of Test3 turns, found by name in ``Audios/``.

    The challenge released Test3 as audio only, so the official scripts (and
    this function) select it by the ``test3`` in its file names.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / AUDIO_DIR).mkdir()
    >>> for name in ["MSP-PODCAST_test3_00002.wav", "MSP-PODCAST_0001_0001.wav"]:
    ...     _ = (root / AUDIO_DIR / name).write_bytes(b"")
    >>> list_hidden_test_audio(root)
    ['MSP-PODCAST_test3_00002.wav']
    """
    folder = Path(data_folder) / AUDIO_DIR
    return sorted(
        path.name
        for path in folder.iterdir()
        if path.suffix.lower() == ".wav" and "test3" in path.name.lower()
    )


def list_split_turns(data_folder, splits):
    """The turns (file names) of each requested split.

    Labelled splits come from the consensus labels; Test3 turns that the
    labels do not list are added from ``Audios/`` (see
    :func:`list_hidden_test_audio`).

    Parameters
    ----------
    data_folder : str or Path
        Corpus root.
    splits : iterable of str
        ``Split_Set`` names, e.g. ``["Train", "Development", "Test3"]``.

    Returns
    -------
    dict
        split name → sorted list of file names.

    Raises
    ------
    ValueError
        For a split name that is not one of :data:`KNOWN_SPLITS`.
    """
    from data_prep.msp_labels import read_consensus_labels

    splits = list(splits)
    unknown = [split for split in splits if split not in KNOWN_SPLITS]
    if unknown:
        raise ValueError(f"unknown split name(s) {unknown}; expected some of {list(KNOWN_SPLITS)}")
    root = check_layout(data_folder)
    labels = read_consensus_labels(root)
    turns = {}
    for split in splits:
        names = set(labels.loc[labels["Split_Set"] == split, "FileName"])
        if split == HIDDEN_TEST_SPLIT:
            names.update(list_hidden_test_audio(root))
        turns[split] = sorted(names)
    return turns
