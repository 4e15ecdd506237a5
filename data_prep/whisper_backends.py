"""Whisper backends: they live in the library, :mod:`ser.asr` (inference transcribes too).

Kept so that ``data_prep.whisper_backends`` names (used by the demo profile, the transcription
stage and the benches) still resolve.
"""

from ser.asr import (  # noqa: F401 - re-exported
    BACKENDS,
    SAMPLE_RATE,
    WINDOW_SECONDS,
    DecodeOptions,
    FasterWhisperBackend,
    Hypothesis,
    OpenAIWhisperBackend,
    WhisperBackend,
    bundled_tiny_en_path,
    compression_ratio,
    decode_with_fallback,
    load_backend,
)
