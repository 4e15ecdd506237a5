"""The eight emotion classes of MSP-Podcast Task 1 and their spellings.

Everything downstream (posterior files, fusion, reports) uses
:data:`EMOTIONS` as the one fixed class order.
"""

#: The fixed class order of every posterior file: A C D F H N S U.
EMOTIONS = ("A", "C", "D", "F", "H", "N", "S", "U")

#: Labels that are not one of the eight classes: no agreement, other.
NO_AGREEMENT = "X"
OTHER = "O"

#: Full names, as written in tables and figures.
EMOTION_NAMES = {
    "A": "Anger",
    "C": "Contempt",
    "D": "Disgust",
    "F": "Fear",
    "H": "Happiness",
    "N": "Neutral",
    "S": "Sadness",
    "U": "Surprise",
}

# Primary-emotion words used by annotators in labels_detailed.csv, in the spellings
# of every release (v1.11 "Angry", 2.0's vote columns "Anger", ...).
_WORD_TO_LETTER = {
    "angry": "A",
    "anger": "A",
    "contempt": "C",
    "disgust": "D",
    "fear": "F",
    "happy": "H",
    "happiness": "H",
    "neutral": "N",
    "sad": "S",
    "sadness": "S",
    "surprise": "U",
    "surprised": "U",
    "other": "O",
}


def emotion_letter(word):
    """Map an annotator's primary-emotion word to its class letter.

    Either spelling of a release is understood (``Angry``/``Anger``,
    ``Happy``/``Happiness``, ``Sad``/``Sadness``, ``Surprise``/``Surprised``);
    case and spaces do not matter. ``Other`` (possibly followed by free text,
    e.g. ``Other-Concerned``, ``Other - bored``) maps to ``"O"``.

    Parameters
    ----------
    word : str
        The word as written in ``EmoDetail`` (case-insensitive).

    Returns
    -------
    str
        One of ``A C D F H N S U O``.

    Raises
    ------
    ValueError
        If the word names no known emotion.

    Example
    -------
    >>> emotion_letter("Happy"), emotion_letter(" HAPPINESS"), emotion_letter("Other - bored")
    ('H', 'H', 'O')
    """
    key = "".join(word.split()).lower()
    if key in _WORD_TO_LETTER:
        return _WORD_TO_LETTER[key]
    if key.startswith("other"):
        return OTHER
    raise ValueError(f"unknown emotion word {word!r}")


#: The inverse map, used to write annotator words (mini corpus).
LETTER_TO_WORD = {
    "A": "Angry",
    "C": "Contempt",
    "D": "Disgust",
    "F": "Fear",
    "H": "Happy",
    "N": "Neutral",
    "S": "Sad",
    "U": "Surprise",
    "O": "Other",
}
