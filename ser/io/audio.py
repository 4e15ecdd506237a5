"""Reading speech turns as 16 kHz mono waveforms, with length limits.

Audio is read with soundfile (``torchaudio.load`` needs torchcodec, which this
project does not depend on). Other sample rates are resampled and several
channels are averaged, with a warning, so a stray 44.1 kHz stereo file is
handled rather than silently mis-read.
"""

import logging
import os
import struct

import numpy as np
import soundfile
import torch
import torchaudio.functional

from ser.errors import UserInputError
from ser.io import SAMPLE_RATE

logger = logging.getLogger(__name__)

#: Receptive field of the WavLM/HuBERT CNN at 16 kHz (25 ms): shorter waveforms give no frame at all.
MIN_SAMPLES = 400
#: The longest audio file read whole (24 h): a header claiming more is damaged or gives no length.
MAX_SECONDS = 24 * 3600


class AudioError(UserInputError, ValueError):
    """An audio file that cannot be used (names the file and the problem)."""


# File name endings of the formats libsndfile (through soundfile) reads, by format name.
_SUFFIXES_BY_FORMAT = {
    "WAV": (".wav", ".wave"), "FLAC": (".flac",), "OGG": (".ogg", ".oga", ".opus"), "MP3": (".mp3",),
    "AIFF": (".aif", ".aiff", ".aifc"), "AU": (".au", ".snd"), "CAF": (".caf",), "W64": (".w64",),
    "RF64": (".rf64",), "NIST": (".sph", ".nist"), "VOC": (".voc",),
}


def readable_suffixes():
    """The file name endings of the audio formats :func:`load_waveform` reads here (lower case).

    One list for a single file and for a folder scan (``python -m ser.predict recordings/``): the
    formats this machine's libsndfile reads, MP3 included from libsndfile 1.1.

    Example
    -------
    >>> {".wav", ".flac", ".ogg"} <= set(readable_suffixes())
    True
    """
    formats = soundfile.available_formats()
    return tuple(s for name, suffixes in _SUFFIXES_BY_FORMAT.items() if name in formats for s in suffixes)


def path_problem(path):
    """Why ``path`` cannot be read as an audio file (missing, a folder, unreadable), or None.

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "dir.wav").mkdir()
    >>> (folder / "loop.wav").symlink_to(folder / "loop.wav")
    >>> for name in ("none.wav", "dir.wav", "loop.wav"):
    ...     print(path_problem(folder / name))
    audio file missing
    a folder, not an audio file
    unreadable path (Too many levels of symbolic links)
    """
    try:
        os.stat(path)
    except FileNotFoundError:
        return "audio file missing"
    except OSError as error:  # ELOOP, EACCES, ENAMETOOLONG: the path exists but cannot be followed
        return f"unreadable path ({error.strerror or error})"
    if os.path.isdir(path):
        return "a folder, not an audio file"
    if not os.path.isfile(path):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "unreadable path (Permission denied)"
    return None


def duration_seconds(path):
    """An audio file's length in seconds from its header; 0.0 when it cannot be read.

    For ordering and planning work only: :func:`load_waveform` is what reports a bad file.

    Example
    -------
    >>> import tempfile, pathlib, numpy, soundfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> soundfile.write(folder / "a.wav", numpy.zeros(24000), 16000)
    >>> duration_seconds(folder / "a.wav"), duration_seconds(folder / "none.wav")
    (1.5, 0.0)
    """
    # Opening a FIFO or device blocks until a writer comes: only regular files are asked.
    if path_problem(path) is not None:
        return 0.0
    try:
        return soundfile.info(str(path)).duration
    except Exception:  # noqa: BLE001 - unreadable files count as empty; load_waveform reports them
        return 0.0


def wav_truncation(path):
    """Why a WAV file holds less audio than its header declares (cut short), or None.

    libsndfile reads what is there and says nothing: a copy cut short would silently become a
    shorter turn. Streamed WAVs that declare no size (0 or 0xFFFFFFFF) are not checked.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "cut.wav")
    >>> soundfile.write(path, np.zeros(16000), 16000, subtype="PCM_16")
    >>> wav_truncation(path) is None
    True
    >>> os.truncate(path, 44 + 2 * 4000)
    >>> wav_truncation(path)
    'truncated: its header declares 16000 samples, the file holds 4000'
    """
    try:
        with open(path, "rb") as stream:
            head = stream.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(stream.fileno()).st_size
            block_align = 0
            while True:
                chunk = stream.read(8)
                if len(chunk) < 8:
                    return None
                name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"fmt ":
                    fmt = stream.read(min(length, 16))
                    block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else 0
                    stream.seek(length - len(fmt) + (length & 1), os.SEEK_CUR)
                elif name == b"data":
                    available = size - stream.tell()
                    if length in (0, 0xFFFFFFFF) or length <= available or not block_align:
                        return None
                    return (f"truncated: its header declares {length // block_align} samples, "
                            f"the file holds {available // block_align}")
                else:
                    stream.seek(length + (length & 1), os.SEEK_CUR)
    except OSError:
        return None  # reported by the reader itself


def length_problem(frames, rate):
    """Why a header's length cannot be trusted (unknown, or beyond :data:`MAX_SECONDS`), or None.

    libsndfile reports a stream that declares no length (a FLAC whose header says 0 samples) as
    2**63 - 1 frames: reading it whole would ask for exabytes.

    Example
    -------
    >>> length_problem(16000, 16000) is None
    True
    >>> length_problem(2**63 - 1, 16000)
    'its header gives no usable length (9223372036854775807 frames at 16000 Hz); re-encode the file'
    """
    if rate <= 0 or frames < 0 or frames > MAX_SECONDS * rate:
        return f"its header gives no usable length ({frames} frames at {rate} Hz); re-encode the file"
    return None


def load_waveform(path, sample_rate=SAMPLE_RATE):
    """Read an audio file as a float32 mono tensor at ``sample_rate``.

    Parameters
    ----------
    path : str or Path
        Any format soundfile reads (WAV PCM-16/24/32, float, FLAC, ...).
    sample_rate : int
        Target rate; other rates are resampled and several channels
        down-mixed, each with a logged warning.

    Returns
    -------
    torch.Tensor
        Shape ``(samples,)``, float32.

    Raises
    ------
    AudioError
        If the file is missing, unreadable (:func:`path_problem`), a WAV cut short
        (:func:`wav_truncation`), holds no samples or NaN/infinite ones.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> soundfile.write(path, np.zeros((4410, 2)), 44100)
    >>> load_waveform(path).shape
    torch.Size([1600])
    """
    problem = path_problem(path) or wav_truncation(path)
    if problem:
        raise AudioError(f"{path}: {problem}")
    try:
        info = soundfile.info(str(path))
        problem = length_problem(info.frames, info.samplerate)
        if problem:
            raise AudioError(f"{path}: {problem}")
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError, MemoryError) as error:
        raise AudioError(f"{path}: unreadable audio file ({error})") from error
    return as_mono_waveform(data, rate, sample_rate, name=path, kind="audio file")


def as_mono_waveform(data, rate, sample_rate=SAMPLE_RATE, name="waveform", kind="audio"):
    """Turn samples held in memory into the float32 mono tensor at ``sample_rate`` models take.

    Parameters
    ----------
    data : array-like or torch.Tensor
        ``(samples,)`` or ``(samples, channels)``; integer PCM (int16, int32) is scaled to
        [-1, 1], floats are taken as they are.
    rate : int
        Its sample rate; other rates than ``sample_rate`` are resampled (with a warning).
    sample_rate : int
    name, kind : str
        Name and kind of the waveform in warnings and errors (a path and "audio file").

    Raises
    ------
    AudioError
        If it holds no samples, NaN/infinite ones, or has more than two dimensions.

    Example
    -------
    >>> as_mono_waveform(np.full((8000, 2), 16384, np.int16), 8000).shape
    torch.Size([16000])
    >>> as_mono_waveform(np.zeros(0), 16000)
    Traceback (most recent call last):
    ...
    ser.io.audio.AudioError: waveform: empty audio (0 samples)
    """
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    data = data.astype(np.float32, copy=False)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2:
        raise AudioError(f"{name}: audio of shape {data.shape}: expected (samples,) or (samples, channels)")
    if data.shape[0] == 0:
        raise AudioError(f"{name}: empty {kind} (0 samples)")
    if data.shape[1] > data.shape[0]:  # more channels than samples: a (channels, samples) array
        raise AudioError(f"{name}: audio of shape {data.shape}: expected (samples, channels), as "
                         "soundfile.read returns it; transpose a (channels, samples) array")
    if not np.isfinite(data).all():
        # A float file can hold NaN or infinity; they would turn every posterior into NaN.
        raise AudioError(f"{name}: {int((~np.isfinite(data)).sum())} samples are NaN or infinite")
    if int(rate) <= 0:
        raise AudioError(f"{name}: sample rate {rate} is not positive")
    if data.shape[1] > 1:
        logger.warning("%s: %d channels, down-mixed to mono", name, data.shape[1])
        data = data.mean(axis=1, keepdims=True)
    waveform = torch.from_numpy(np.ascontiguousarray(data[:, 0]))
    if rate != sample_rate:
        logger.warning("%s: %d Hz, resampled to %d Hz", name, rate, sample_rate)
        waveform = torchaudio.functional.resample(waveform, int(rate), sample_rate)
    return waveform


def crop_waveform(waveform, max_samples, mode="random"):
    """Limit a waveform to ``max_samples`` samples.

    Parameters
    ----------
    waveform : torch.Tensor
        Shape ``(samples,)``.
    max_samples : int or None
        Longest length kept; ``None`` or a non-positive value keeps everything.
    mode : {"random", "center"}
        Where the kept window lies: random (training: every epoch sees
        another part of a long turn; drawn from torch's global generator, which
        the checkpoints save: :class:`ser.io.checkpoints.RandomState`) or center
        (evaluation: repeatable).

    Example
    -------
    >>> crop_waveform(torch.arange(10.0), 4, mode="center")
    tensor([3., 4., 5., 6.])
    """
    if max_samples is None or max_samples <= 0 or waveform.shape[0] <= max_samples:
        return waveform
    excess = waveform.shape[0] - max_samples
    if mode == "random":
        start = int(torch.randint(0, excess + 1, (1,)))
    elif mode == "center":
        start = excess // 2
    else:
        raise ValueError(f"unknown crop mode {mode!r}: expected random or center")
    return waveform[start : start + max_samples]
