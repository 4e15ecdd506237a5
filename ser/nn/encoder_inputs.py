"""What every encoder does with a padded batch: valid lengths, masked standardisation.

A batch pads its turns to the longest; each encoder keeps the padding out of what it computes
(:mod:`ser.nn.encoders`, :mod:`ser.nn.whisper_encoder`, :mod:`ser.nn.text_encoder`) with these.
"""

import json
from pathlib import Path

import torch

__all__ = [
    "FramesOfPaddedWaveforms",
    "absolute_lengths",
    "checked_wav_lens",
    "masked_standardize",
    "model_type",
]


def masked_standardize(x, mask, dims, eps):
    """Zero-mean, unit-variance ``x`` over ``dims``, using only the entries where ``mask`` holds.

    Example
    -------
    >>> x = torch.tensor([[1.0, 3.0, 99.0]])
    >>> masked_standardize(x, torch.tensor([[True, True, False]]), dims=(-1,), eps=0.0).tolist()
    [[-1.0, 1.0, 0.0]]
    """
    mask = mask.to(x.dtype).expand_as(x)
    count = mask.sum(dim=dims, keepdim=True).clamp(min=1.0)
    mean = (x * mask).sum(dim=dims, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dim=dims, keepdim=True) / count
    return (x - mean) / torch.sqrt(var + eps) * mask


def absolute_lengths(relative_lengths, size):
    """Relative lengths in (0, 1] as counts of ``size`` (at least 1).

    Example
    -------
    >>> absolute_lengths(torch.tensor([0.5, 1.0, 0.01]), 10).tolist()
    [5, 10, 1]
    """
    return torch.round(relative_lengths * size).long().clamp(1, size)


def checked_wav_lens(wav, wav_lens, name):
    """``wav_lens`` as float32 on ``wav``'s device (all 1 when None), after checking the shapes.

    Example
    -------
    >>> checked_wav_lens(torch.zeros(2, 8), None, "Encoder").tolist()
    [1.0, 1.0]
    >>> checked_wav_lens(torch.zeros(8), None, "Encoder")
    Traceback (most recent call last):
    ...
    ValueError: Encoder expects wav of shape (batch, samples), got (8,)
    """
    if wav.dim() != 2:
        raise ValueError(f"{name} expects wav of shape (batch, samples), got {tuple(wav.shape)}")
    batch = wav.shape[0]
    wav_lens = torch.ones(batch) if wav_lens is None else torch.as_tensor(wav_lens)
    wav_lens = wav_lens.to(device=wav.device, dtype=torch.float32)
    if wav_lens.shape != (batch,) or bool(((wav_lens <= 0) | (wav_lens > 1 + 1e-6)).any()):
        raise ValueError(f"wav_lens must be {batch} relative lengths in (0, 1], got {wav_lens.tolist()}")
    return wav_lens


def model_type(local_source):
    """``model_type`` of a local model folder's ``config.json`` (None when unreadable).

    Example
    -------
    >>> import tempfile
    >>> model_type(tempfile.mkdtemp()) is None
    True
    """
    try:
        return json.loads((Path(local_source) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


class FramesOfPaddedWaveforms:
    """How many output frames each padded waveform of a batch makes, for a speech encoder.

    A mixin for encoders that define ``frame_lengths(sample_lengths)`` (output frames of that
    many samples) and ``receptive_field`` (samples one frame needs): WavLM/HuBERT
    (:class:`ser.nn.encoders.SpeechEncoder`) and Whisper's encoder
    (:class:`ser.nn.whisper_encoder.WhisperSpeechEncoder`).

    Example
    -------
    >>> class Strided(FramesOfPaddedWaveforms):
    ...     receptive_field = 400
    ...     def frame_lengths(self, sample_lengths):
    ...         return torch.as_tensor(sample_lengths) // 320
    >>> relative = Strided().relative_frame_lengths(torch.tensor([0.5, 0.01]), n_samples=3200)
    >>> (relative * 10).round().tolist()  # of 10 frames; 32 samples still make one frame
    [5.0, 1.0]
    """

    def relative_frame_lengths(self, wav_lens, n_samples):
        """Exact relative lengths of the output frames of waveforms padded to ``n_samples``.

        ``round(result[b] * frames)`` is exactly the number of valid frames of turn ``b``;
        ``wav_lens`` itself can be one frame off at the edge.
        """
        sample_lengths = self._valid_sample_lengths(wav_lens, n_samples)
        n_frames = self.frame_lengths(torch.tensor(n_samples, device=wav_lens.device))
        return self.frame_lengths(sample_lengths).to(wav_lens.dtype) / n_frames

    def _valid_sample_lengths(self, wav_lens, n_samples):
        """Samples of each turn the encoder treats as signal: at least its receptive field.

        A turn shorter than the receptive field (400 samples, 25 ms, for WavLM and HuBERT; one
        STFT window for Whisper) would give no frame at all and break the pooling; it is taken
        with its zero padding up to one frame, as :mod:`ser.inference` pads a short file.
        """
        lengths = absolute_lengths(wav_lens, n_samples)
        return lengths.clamp(min=min(self.receptive_field, n_samples))
