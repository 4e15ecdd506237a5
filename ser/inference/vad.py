"""Speech segments of a long recording, found by Silero VAD (voice activity detection).

A podcast episode or a call holds pauses, music and silence; classifying fixed windows over it
gives labels to silence too. :func:`speech_segments` finds where someone speaks, with the
Silero VAD model that the ``silero-vad`` package ships (its weights are in the wheel: nothing is
downloaded at run time), and returns ``(start, end)`` seconds, which
:meth:`ser.inference.EmotionRecognizer.classify_segments` then classifies one by one.

Segmentation only: no emotion model here. Needs the ``vad`` extra (``pip install -e '.[vad]'``).
"""

import functools
import threading
from dataclasses import dataclass

import torch

from ser.errors import UserInputError
from ser.io import SAMPLE_RATE

__all__ = ["VadOptions", "VadUnavailableError", "vad_available", "speech_segments", "split_long_segments"]


class VadUnavailableError(UserInputError, RuntimeError):
    """``silero-vad`` is not installed."""


@dataclass(frozen=True)
class VadOptions:
    """How speech is cut into segments (seconds, except ``threshold``).

    Attributes
    ----------
    threshold : float
        Silero's speech probability above which a 32 ms frame is speech (its default, 0.5).
    min_speech : float
        Shorter bursts are dropped: a cough or a click says nothing about emotion.
    max_segment : float
        Longer speech is split into equal parts no longer than this; 10 s keeps a segment within
        the turn lengths the systems were trained on (MSP-Podcast turns last 2.75-11 s).
    padding : float
        Added before and after each segment (clipped to the recording and to its neighbours),
        so that word onsets and endings are not cut.
    min_silence : float
        A pause shorter than this does not end a segment (breaths between words).
    """

    threshold: float = 0.5
    min_speech: float = 0.25
    max_segment: float = 10.0
    padding: float = 0.1
    min_silence: float = 0.3

    def __post_init__(self):
        if not 0 < self.threshold < 1:
            raise UserInputError(f"VAD threshold {self.threshold}: must be between 0 and 1")
        for name in ("min_speech", "max_segment", "min_silence"):
            if getattr(self, name) <= 0:
                raise UserInputError(f"VAD {name} {getattr(self, name)}: must be positive seconds")
        if self.padding < 0:
            raise UserInputError(f"VAD padding {self.padding}: must be zero or positive seconds")


def vad_available():
    """Whether ``silero-vad`` is installed (the page offers VAD segments only then).

    Example
    -------
    >>> isinstance(vad_available(), bool)
    True
    """
    import importlib.util

    return importlib.util.find_spec("silero_vad") is not None


# One model per process, used by one caller at a time: it carries a recurrent state.
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _model():
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    except ModuleNotFoundError:
        raise VadUnavailableError("VAD segments need silero-vad: pip install -e '.[vad]'") from None
    model = load_silero_vad()
    # Importing silero_vad sets torch to one thread for the whole process: give the emotion
    # models back the threads they had.
    torch.set_num_threads(threads)
    return model


def split_long_segments(segments, max_length):
    """Split each ``(start, end)`` longer than ``max_length`` into equal parts that fit.

    Equal parts rather than ``max_length`` pieces plus a remainder: no part is a sliver.

    Example
    -------
    >>> split_long_segments([(0.0, 4.0), (5.0, 26.0)], 10.0)
    [(0.0, 4.0), (5.0, 12.0), (12.0, 19.0), (19.0, 26.0)]
    """
    parts = []
    for start, end in segments:
        count = max(1, -int(-(end - start) // max_length))  # ceil without float surprises at exact fits
        step = (end - start) / count
        parts += [(start + i * step, end if i == count - 1 else start + (i + 1) * step) for i in range(count)]
    return parts


def speech_segments(waveform, options=None):
    """Where someone speaks in a 16 kHz mono waveform: ``[(start, end), ...]`` in seconds.

    Parameters
    ----------
    waveform : torch.Tensor or numpy.ndarray
        16 kHz mono float samples (:func:`ser.io.audio.load_waveform` gives them).
    options : VadOptions, optional

    Returns
    -------
    list of (float, float)
        Sorted, non-overlapping segments, each between ``min_speech`` (before padding) and
        ``max_segment`` seconds long; empty when nothing is speech.

    Raises
    ------
    VadUnavailableError
        If ``silero-vad`` is not installed.

    Example
    -------
    >>> speech_segments(torch.zeros(5 * SAMPLE_RATE))  # silence: no segment
    []
    """
    from silero_vad import get_speech_timestamps

    options = options or VadOptions()
    model = _model()
    audio = torch.as_tensor(waveform, dtype=torch.float32).reshape(-1)
    with _LOCK, torch.inference_mode():
        found = get_speech_timestamps(
            audio, model, threshold=options.threshold, sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=round(options.min_speech * 1000),
            min_silence_duration_ms=round(options.min_silence * 1000),
            speech_pad_ms=round(options.padding * 1000))
    segments = [(item["start"] / SAMPLE_RATE, item["end"] / SAMPLE_RATE) for item in found]
    return split_long_segments(segments, options.max_segment)
