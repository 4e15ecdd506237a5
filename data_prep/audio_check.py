"""Turn audio files checked before they enter a manifest, and the list of those left out.

A day-long preparation of a whole corpus should not stop at one broken file: the
preparation checks each turn's audio header with :func:`audio_duration`, leaves
the bad turns out and lists them in ``skipped.csv`` (:func:`ser.io.skipped.write_skipped_csv`)
with the reason. A turn is bad when its file is

* missing, a folder, or a path that cannot be followed (a symlink loop, no permission),
* unreadable (not an audio format libsndfile knows, or a malformed header),
* a WAV whose data is shorter than its header declares (a copy cut short),
* empty (0 samples),
* shorter than :data:`MIN_SAMPLES` at 16 kHz: the WavLM/HuBERT CNN needs that
  many samples (25 ms) to give one frame, so such a turn cannot be classified;
* a floating-point file holding NaN or infinite samples (they would make every
  posterior NaN; ``ser.io.audio.load_waveform`` refuses them too).

Only the header is read (and a WAV's chunk sizes compared with the file size),
so checking a million PCM turns costs file opens, not decoding; only float files,
the one kind that can hold NaN, are read whole.
"""

import logging

import numpy as np
import soundfile

from ser.io.audio import MIN_SAMPLES, SAMPLE_RATE, AudioError, length_problem, path_problem, wav_truncation
from ser.io.derived_files import file_stamp  # a skipped file's stamp: fixing it re-runs the preparation
from ser.io.skipped import write_skipped_csv

logger = logging.getLogger(__name__)

#: libsndfile subtypes that can hold NaN or infinity (PCM cannot).
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


class BadAudioError(AudioError):
    """A turn's audio file that cannot be used; ``str()`` is ``"<path>: <reason>"``.

    Example
    -------
    >>> error = BadAudioError("Audios/a.wav", "empty audio file (0 samples)")
    >>> str(error), error.reason
    ('Audios/a.wav: empty audio file (0 samples)', 'empty audio file (0 samples)')
    """

    def __init__(self, path, reason):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")


def audio_duration(path):
    """Duration in seconds of a turn's audio file, read from its header.

    Parameters
    ----------
    path : str or Path
        The audio file.

    Returns
    -------
    float
        Seconds, rounded to 0.1 ms.

    Raises
    ------
    BadAudioError
        If the file is missing, unreadable, empty, shorter than
        :data:`MIN_SAMPLES` once at 16 kHz, or holds NaN/infinite samples.

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> soundfile.write(folder / "ok.wav", [0.0] * 8000, 16000)
    >>> audio_duration(folder / "ok.wav")
    0.5
    >>> soundfile.write(folder / "short.wav", [0.0] * 300, 16000)
    >>> try:
    ...     audio_duration(folder / "short.wav")
    ... except BadAudioError as error:
    ...     print(error.reason)
    too short: 300 samples at 16000 Hz, under the 400 samples at 16 kHz the encoders need
    """
    problem = path_problem(path) or wav_truncation(path)
    if problem:
        raise BadAudioError(path, problem)
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError, OSError) as error:
        raise BadAudioError(path, f"unreadable audio file ({error})") from error
    if info.frames == 0:
        raise BadAudioError(path, "empty audio file (0 samples)")
    problem = length_problem(info.frames, info.samplerate)
    if problem:  # a duration nothing could decode would poison batching and every later stage
        raise BadAudioError(path, problem)
    # Compared at 16 kHz: a 8 kHz file is upsampled before the encoder sees it.
    if info.frames * SAMPLE_RATE < MIN_SAMPLES * info.samplerate:
        raise BadAudioError(
            path,
            f"too short: {info.frames} samples at {info.samplerate} Hz, under the "
            f"{MIN_SAMPLES} samples at 16 kHz the encoders need",
        )
    if info.subtype in FLOAT_SUBTYPES:
        data, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
        n_bad = int((~np.isfinite(data)).sum())
        if n_bad:
            raise BadAudioError(path, f"{n_bad} samples are NaN or infinite")
    return round(info.frames / info.samplerate, 4)


class TurnAudioChecker:
    """Durations of the turns of a preparation; bad files raise (strict) or are recorded.

    Parameters
    ----------
    strict : bool
        Raise :class:`BadAudioError` for a bad file instead of recording it.

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> soundfile.write(folder / "a.wav", [0.0] * 1600, 16000)
    >>> checker = TurnAudioChecker(strict=False)
    >>> checker.duration(folder / "a.wav", "a.wav", "Train"), checker.duration(
    ...     folder / "b.wav", "b.wav", "Train")
    (0.1, None)
    >>> checker.skipped_rows()
    [('b.wav', 'Train', 'audio file missing')]
    """

    def __init__(self, strict):
        self.strict = strict
        self.skipped = {}  # path -> (FileName, Split, Reason)

    def duration(self, wav, file_name, split):
        """Seconds, or None for a bad file that is left out (warned once per file)."""
        wav = str(wav)
        if wav in self.skipped:  # a relabeled Development turn is in two manifests
            return None
        try:
            return audio_duration(wav)
        except BadAudioError as error:
            if self.strict:
                raise
            logger.warning("%s: %s (split %s): left out of the manifests", wav, error.reason, split)
            self.skipped[wav] = (file_name, split, error.reason)
            return None

    def skipped_rows(self):
        """``(FileName, Split, Reason)`` of every turn left out so far."""
        return list(self.skipped.values())

    def skipped_stamps(self):
        """Path → :func:`file_stamp` of every skipped file (saved with the options)."""
        return {path: file_stamp(path) for path in self.skipped}

    def write_skipped_csv(self, path):
        """Write the turns left out so far to ``path`` (:func:`ser.io.skipped.write_skipped_csv`)."""
        write_skipped_csv(path, self.skipped_rows())
