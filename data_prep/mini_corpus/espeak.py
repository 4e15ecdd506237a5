"""Speech synthesis with the libespeak-ng shipped by the ``espeakng-loader`` wheel.

The mini corpus needs real audio without any download, so it drives the C API of
libespeak-ng through :mod:`ctypes`: the library and its voice data both come inside
the ``espeakng-loader`` PyPI package. libespeak-ng keeps one global engine per
process, so the engine is initialised once (lazily) and every call is serialised
by a lock.

libespeak-ng also keeps hidden state from one utterance to the next (the phase of
its pitch "flutter", a voicing-cycle counter, the breath-noise generators, one of
them seeded from the clock), so speaking the same text twice gives slightly
different samples. The noise generators are reseeded before every utterance. To make
:meth:`EspeakSynthesizer.synthesize` a pure function of its arguments (the mini
corpus must be byte-identical for a seed), every utterance is spoken in a forked
child of the freshly initialised engine, which therefore always starts from the
same state; a fork costs about 10 ms. Where ``os.fork`` does not exist the engine
speaks in-process and the output may differ in the last bits.

Synthesis runs at the engine's native rate (22050 Hz) and is resampled to 16 kHz
mono float32, the rate of MSP-Podcast.
"""

import ctypes
import logging
import os
import struct
import threading
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from ser.io import SAMPLE_RATE

logger = logging.getLogger(__name__)

#: Output sample rate of :meth:`EspeakSynthesizer.synthesize` (MSP-Podcast's rate).
TARGET_RATE = SAMPLE_RATE

# espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS hands samples to our callback and
# returns only when done. Unlike AUDIO_OUTPUT_RETRIEVAL it starts no background
# thread, which a forked child would not inherit.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_PARAMETER ids.
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
# espeak_POSITION_TYPE: POS_CHARACTER.
_POS_CHARACTER = 1
# espeakCHARS_UTF8: our text is always encoded as UTF-8.
_CHARS_UTF8 = 1
# Seed of the noise generators libespeak-ng draws breath noise from: its own
# (otherwise seeded from the clock at start-up) and the C library's rand().
_NOISE_SEED = 12345

# Parameter bounds. Volume is capped well below the 200 the API accepts because
# libespeak-ng's output clips from about 150 on.
_RATE_RANGE = (80, 450)
_VOLUME_RANGE = (0, 140)
_PITCH_RANGE = (0, 99)

# Status codes a synthesis child sends ahead of its samples.
_OK, _NO_VOICE, _SYNTH_FAILED, _CRASHED = 0, 1, 2, 3

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakError(RuntimeError):
    """libespeak-ng could not be loaded, initialised or asked to speak."""


class _Engine:
    """The process-wide libespeak-ng engine (initialised once, guarded by a lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.lib = None
        self.libc = None
        self.native_rate = None
        self.chunks = []
        # Keep a reference to the C callback: if it were garbage-collected the
        # library would call freed memory.
        self.callback = _SynthCallback(self._collect)

    def _collect(self, wav, n_samples, events):
        # Called by libespeak-ng from espeak_Synth; n_samples == 0 marks the end.
        if n_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = keep synthesising

    def start(self):
        """Load and initialise the library on first use; return it."""
        with self.lock:
            if self.lib is None:
                self._load()
        return self.lib

    def _load(self):
        try:
            import espeakng_loader
        except ImportError as error:
            raise EspeakError(
                "the 'espeakng-loader' package is not installed; "
                "install it with `pip install espeakng-loader`"
            ) from error
        lib_path = espeakng_loader.get_library_path()
        try:
            lib = ctypes.CDLL(lib_path)
            data_path = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as error:
            raise EspeakError(f"cannot load libespeak-ng from {lib_path}: {error}") from error
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int
        ]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if rate <= 0:
            raise EspeakError(
                f"espeak_Initialize failed (returned {rate}) with data path {data_path}"
            )
        lib.espeak_SetSynthCallback(self.callback)
        # The C library's own rand(), the one libespeak-ng calls for noise.
        self.libc = ctypes.CDLL(None)
        self.lib, self.native_rate = lib, rate
        logger.debug("libespeak-ng %s initialised at %d Hz", lib_path, rate)

    def speak_here(self, text, voice, settings):
        """Synthesise in this process; return (status, int16 samples)."""
        if self.lib.espeak_SetVoiceByName(voice) != 0:
            return _NO_VOICE, None
        # Parameters are set after the voice, since selecting a voice may reset them.
        for parameter, value in settings.items():
            self.lib.espeak_SetParameter(parameter, value, 0)
        self.libc.srand(_NOISE_SEED)
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):
            self.lib.espeak_ng_SetRandSeed(_NOISE_SEED)
        self.chunks = []
        status = self.lib.espeak_Synth(
            text, len(text) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        self.lib.espeak_Synchronize()
        chunks, self.chunks = self.chunks, []
        if status != 0 or not chunks:
            return _SYNTH_FAILED, None
        return _OK, np.concatenate(chunks).astype(np.int16)

    def speak_forked(self, text, voice, settings):
        """Synthesise in a forked child, so the engine's state never advances here."""
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: speak, send status + samples, exit without cleanup
            code = _CRASHED
            try:
                os.close(read_end)
                code, samples = self.speak_here(text, voice, settings)
                payload = samples.tobytes() if samples is not None else b""
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write(struct.pack("<i", code) + payload)
            finally:
                os._exit(0 if code == _OK else 1)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read()
        _, status = os.waitpid(pid, 0)
        if len(message) < 4 or len(message) % 2:
            return _CRASHED, None
        (code,) = struct.unpack("<i", message[:4])
        if code == _OK and os.waitstatus_to_exitcode(status) != 0:
            return _CRASHED, None  # died after writing: the samples may be cut short
        return code, np.frombuffer(message[4:], dtype=np.int16)

    def speak(self, text, voice, settings):
        with self.lock:
            if hasattr(os, "fork"):
                return self.speak_forked(text, voice, settings)
            return self.speak_here(text, voice, settings)


_ENGINE = _Engine()


def _check_range(name, value, bounds):
    low, high = bounds
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is outside [{low}, {high}]")
    return int(round(value))


class EspeakSynthesizer:
    """Text-to-speech with espeak-ng voices, returned as 16 kHz mono float32.

    Parameters
    ----------
    sample_rate : int
        Output sample rate in Hz.

    Raises
    ------
    EspeakError
        If libespeak-ng cannot be loaded or initialised.

    Example
    -------
    >>> synth = EspeakSynthesizer()
    >>> wav = synth.synthesize("Hello there.", voice="en-us+f3")
    >>> wav.dtype.name, 0.3 < len(wav) / synth.sample_rate < 3.0, float(abs(wav).max()) < 1.0
    ('float32', True, True)
    >>> bool(np.array_equal(wav, synth.synthesize("Hello there.", voice="en-us+f3")))
    True
    """

    def __init__(self, sample_rate=TARGET_RATE):
        self.sample_rate = int(sample_rate)
        _ENGINE.start()
        divisor = gcd(_ENGINE.native_rate, self.sample_rate)
        self._up = self.sample_rate // divisor
        self._down = _ENGINE.native_rate // divisor

    def synthesize(self, text, voice="en-us", rate=175, pitch=50, pitch_range=50, volume=100):
        """Speak ``text`` and return the waveform.

        Parameters
        ----------
        text : str
            What to say (plain text; punctuation shapes the intonation).
        voice : str
            espeak-ng voice name, a language optionally followed by ``+variant``
            (``"en-us+m3"``, ``"en-gb-x-rp+f2"``).
        rate : float
            Speaking rate in words per minute, 80 to 450.
        pitch : float
            Base pitch, 0 to 99 (50 is the voice's default).
        pitch_range : float
            Pitch range (intonation excursion), 0 to 99; 0 is monotone.
        volume : float
            Amplitude, 0 to 140 (100 is normal; higher values clip).

        Returns
        -------
        numpy.ndarray
            Mono float32 samples at :attr:`sample_rate`. They stay within (-1, 1)
            for volumes up to about 90; louder settings may overshoot after
            resampling, so callers that need a hard bound should check the peak.

        Raises
        ------
        ValueError
            If the text is empty or a parameter is out of range.
        EspeakError
            If espeak-ng rejects the voice or the synthesis fails.

        Example
        -------
        >>> synth = EspeakSynthesizer()
        >>> slow = synth.synthesize("one two three four", rate=120)
        >>> fast = synth.synthesize("one two three four", rate=260)
        >>> len(slow) > len(fast)
        True
        """
        if not text or not text.strip():
            raise ValueError("cannot synthesise empty text")
        settings = {
            _PARAM_RATE: _check_range("rate", rate, _RATE_RANGE),
            _PARAM_VOLUME: _check_range("volume", volume, _VOLUME_RANGE),
            _PARAM_PITCH: _check_range("pitch", pitch, _PITCH_RANGE),
            _PARAM_RANGE: _check_range("pitch_range", pitch_range, _PITCH_RANGE),
        }
        code, samples = _ENGINE.speak(text.encode("utf-8"), voice.encode("utf-8"), settings)
        if code == _NO_VOICE:
            raise EspeakError(f"espeak-ng has no voice named {voice!r}")
        if code != _OK:
            raise EspeakError(f"espeak-ng failed to speak {text!r} with voice {voice!r}")
        native = samples.astype(np.float32) / 32768.0
        wav = resample_poly(native, self._up, self._down).astype(np.float32)
        return wav
