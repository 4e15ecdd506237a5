"""What :class:`ser.inference.recognizer.EmotionRecognizer` answers: a file's result, a timeline row.

A :class:`Result` holds a file's label, the probabilities (fused, and per system), the Task 2
attributes, the transcript, an error when the file could not be read, and a :data:`FLAGS` key
when it was classified but cannot carry an answer (:func:`audio_flag`).
"""

from dataclasses import dataclass, field

from ser.emotions import EMOTION_NAMES
from ser.io.audio import MIN_SAMPLES

__all__ = ["FLAGS", "SILENCE_PEAK", "Result", "TimelineRow", "audio_flag"]

#: Why a classified file's label is not meaningful (``Result.flag``, the ``Flag`` column of ser.predict).
FLAGS = {
    "too_short": f"under {MIN_SAMPLES} samples at 16 kHz (25 ms), the encoders' receptive field: zero-padded",
    "silent": "digital silence (no sample above one 16-bit step)",
}
#: Peak amplitude at or below which a file is digital silence: one step of 16-bit PCM.
SILENCE_PEAK = 1 / 32768

@dataclass
class Result:
    """What :meth:`EmotionRecognizer.classify_files` says about one file.

    Attributes
    ----------
    file : str
        The path as given.
    label : str or None
        Predicted class letter (argmax of ``probabilities``); None on error or when no loaded
        system predicts classes.
    probabilities : dict or None
        Class letter → probability: with a fusion model, its calibrated probabilities (softmax of
        the SVM decision values over the temperature fitted on dev, :mod:`ser.calibration`; plain
        softmax scores for a fusion saved without one); otherwise the average of the systems'
        posteriors. None on error.
    system_probabilities : dict
        System name → (class letter → probability), for the systems that predict classes.
    attributes : dict or None
        Attribute (``EmoAct``, ``EmoVal``, ``EmoDom``) → value on the 1-7 scale, the average of
        the systems that predict attributes; None when none does.
    system_attributes : dict
        System name → (attribute → value).
    transcript : str or None
        Whisper transcript when a text system is loaded.
    error : str or None
        Why the file could not be classified (None when it was).
    flag : str or None
        A key of :data:`FLAGS` when the file was classified but cannot carry an answer.
    """

    file: str
    label: str | None = None
    probabilities: dict | None = None
    system_probabilities: dict = field(default_factory=dict)
    transcript: str | None = None
    error: str | None = None
    attributes: dict | None = None
    system_attributes: dict = field(default_factory=dict)
    flag: str | None = None
    #: System name → pooled vectors ``(n_windows, dim)`` (the head's input), when asked for.
    embeddings: dict = field(default_factory=dict)

    @property
    def label_name(self):
        """The full name of ``label`` (``Anger`` for ``A``: :data:`ser.emotions.EMOTION_NAMES`), or None.

        Example
        -------
        >>> Result("a.wav", "H").label_name, Result("b.wav").label_name
        ('Happiness', None)
        """
        return None if self.label is None else EMOTION_NAMES.get(self.label, self.label)

    def top_k(self, k=3):
        """The ``k`` most probable classes, best first: ``[(letter, full name, probability), ...]``.

        Example
        -------
        >>> Result("a.wav", "N", {"A": 0.2, "H": 0.1, "N": 0.7}).top_k(2)
        [('N', 'Neutral', 0.7), ('A', 'Anger', 0.2)]
        """
        if not self.probabilities:
            return []
        ranked = sorted(self.probabilities.items(), key=lambda item: -item[1])[: max(0, int(k))]
        return [(letter, EMOTION_NAMES.get(letter, letter), p) for letter, p in ranked]


@dataclass
class TimelineRow:
    """One window of :meth:`EmotionRecognizer.classify_timeline`: seconds, label, probabilities."""

    start: float
    end: float
    label: str | None
    probabilities: dict | None
    transcript: str | None = None
    attributes: dict | None = None


def audio_flag(waveform):
    """The :data:`FLAGS` key of a 16 kHz waveform that cannot carry an answer, else None.

    Example
    -------
    >>> import torch
    >>> audio_flag(torch.zeros(16000)), audio_flag(torch.ones(100) * 0.1), audio_flag(torch.ones(800) * 0.1)
    ('silent', 'too_short', None)
    """
    if len(waveform) < MIN_SAMPLES:
        return "too_short"
    if float(waveform.abs().max()) <= SILENCE_PEAK:
        return "silent"
    return None
