"""Whisper's encoder as a speech backbone (a Whisper source in a system YAML).

:class:`WhisperSpeechEncoder` fine-tunes the encoder of Whisper (``openai/whisper-large-v3``, or a
folder such as the one :mod:`ser.nn.whisper_ctranslate2` converts) with the interface of
:class:`ser.nn.encoders.SpeechEncoder`, which returns one for a Whisper source.
"""

import logging
from pathlib import Path

import torch
from torch import nn

from ser.io import SAMPLE_RATE
from ser.io.model_source import ModelNotAvailableError, resolve_model_source
from ser.nn.encoder_inputs import FramesOfPaddedWaveforms, checked_wav_lens, masked_standardize, model_type

logger = logging.getLogger(__name__)

__all__ = ["WhisperSpeechEncoder"]


def _whisper_encoder_weights(folder):
    """The ``WhisperEncoder`` state dict (float32) in a model folder's safetensors files.

    A converted folder holds the encoder's tensors without prefix, a full Whisper checkpoint
    (``openai/whisper-*``) under ``model.encoder.``: only those are read, not the decoder's.
    """
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ModelNotAvailableError(f"Whisper model folder {folder} has no .safetensors weights")
    names = {}
    for file in files:
        with safe_open(str(file), "pt") as handle:
            names[file] = list(handle.keys())
    every = [key for keys in names.values() for key in keys]
    prefix = next((p for p in ("model.encoder.", "encoder.") if any(k.startswith(p) for k in every)), "")
    state = {}
    for file, keys in names.items():
        with safe_open(str(file), "pt") as handle:
            for key in keys:
                if key.startswith(prefix):
                    state[key[len(prefix):]] = handle.get_tensor(key).to(torch.float32)
    return state


class WhisperSpeechEncoder(FramesOfPaddedWaveforms, nn.Module):
    """Whisper's encoder (log-mel, two convolutions, transformer) as a fine-tuned speech backbone.

    Same interface as :class:`SpeechEncoder` (``forward(wav, wav_lens)``, ``output_size``,
    ``frame_lengths``, ``relative_frame_lengths``, ``receptive_field``), so the model and the
    poolings take it unchanged; ``SpeechEncoder(source)`` returns one for a Whisper source.

    A turn pays only for its length, not for Whisper's 30 s window. Whisper was trained on
    log-mel spectrograms padded to 30 s (3,000 frames) and ``transformers`` refuses anything
    else; here the log-mel spectrogram (``WhisperFeatureExtractor``'s formula, in torch, so it
    runs on the model's device) covers the batch's longest turn, its frame count rounded up to
    the stride-2 convolution, and the positional embeddings are sliced to the frames made. A 3 s
    turn then costs 1/15 of a 30 s window (128 vs 1,982 ms, tiny.en, one thread). The price:
    the encoder no longer sees the silent tail it was pre-trained with (on tiny.en, unpadded vs
    padded-then-cut outputs agree at cosine ~0.98); fine-tuning adapts to that, and it is what
    lets the turns of a batch be masked.

    Padding is harmless: each turn's spectrogram covers its own samples up to its last output
    frame (two mel frames each), normalised by its own maximum, and is zero after it, which is
    what the convolutions' zero padding gives a turn alone; the transformer's attention ignores
    the padded frames; ``output_norm`` uses valid frames only and padded frames are zero. A turn
    thus encodes as CTranslate2's Whisper encodes the turn's own window (to 1e-4), alone or next
    to a longer one.

    Frames come every 20 ms (160-sample mel hop, convolution stride 2): a turn of ``n`` samples
    has ``ceil((n // 160) / 2)`` frames, as Whisper (480,000 samples → 1,500 frames). Turns
    longer than the positional embeddings (30 s) are refused.

    Parameters
    ----------
    source : str or Path
        Hub id (``openai/whisper-large-v3``) or local folder with ``config.json``
        (``model_type: whisper``), safetensors weights (a full Whisper model or its encoder alone)
        and ``preprocessor_config.json`` (``WhisperFeatureExtractor``).
    save_path : str or Path, optional
        Hugging Face cache folder for Hub ids.
    output_norm : bool
        Standardise each turn's output over its valid frames and all features.
    freeze : bool
        Freeze the whole encoder (no gradient, kept in eval mode).
    freeze_feature_extractor : bool
        Freeze the two convolutions on the log-mel spectrogram (the "CNN"); the transformer is
        fine-tuned. The positional embeddings (sinusoids in Whisper) are always frozen.
    output_all_hiddens : bool
        Return every hidden state, ``(layers + 1, batch, frames, dim)``: the embeddings, then each
        layer's output, the last one after the final layer norm (as ``transformers``).
    apply_spec_augment : bool
        Not supported (Whisper's encoder has no time-masking embedding): must be False.
    layerdrop : float, optional
        Probability of skipping each transformer layer in training; ``None`` keeps the
        configuration's ``encoder_layerdrop`` (0 for Whisper). Forced to 0 with
        ``output_all_hiddens``, as :class:`SpeechEncoder`.
    pretrained : bool
        Load the weights of ``source`` (True), or only build the architecture from its
        ``config.json`` (False: an exported package, whose checkpoint holds the weights).

    Example
    -------
    >>> import tempfile, torch
    >>> from ser.nn.encoders import SpeechEncoder
    >>> from ser.nn.tiny_models import build_whisper_encoder
    >>> encoder = SpeechEncoder(build_whisper_encoder(tempfile.mkdtemp()), save_path=None)
    >>> type(encoder).__name__, encoder.output_size
    ('WhisperSpeechEncoder', 384)
    >>> feats = encoder(torch.randn(2, 32000), torch.tensor([0.35, 1.0]))
    >>> tuple(feats.shape)
    (2, 100, 384)
    >>> encoder.frame_lengths(torch.tensor([400, 11200, 32000, 480000])).tolist()
    [1, 35, 100, 1500]
    >>> bool(feats[0, 35:].eq(0).all()), bool(feats[0, :35].ne(0).any(dim=-1).all())
    (True, True)
    """

    def __init__(
        self,
        source,
        save_path=None,
        output_norm=True,
        freeze=False,
        freeze_feature_extractor=False,
        output_all_hiddens=False,
        apply_spec_augment=False,
        layerdrop=None,
        pretrained=True,
    ):
        super().__init__()
        from transformers import WhisperConfig, WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if apply_spec_augment:
            raise ValueError(f"{source}: apply_spec_augment is not supported for a Whisper encoder")
        local_source = resolve_model_source(source, save_path)
        if model_type(local_source) != "whisper":
            raise ModelNotAvailableError(f"{source}: config.json does not describe a Whisper model")
        if not (Path(local_source) / "preprocessor_config.json").is_file():
            raise ModelNotAvailableError(
                f"Whisper model folder {local_source} has no preprocessor_config.json "
                "(WhisperFeatureExtractor)"
            )
        self.source = str(source)
        config = WhisperConfig.from_pretrained(local_source)
        self.model = WhisperEncoder(config)
        if pretrained:
            self.model.load_state_dict(_whisper_encoder_weights(local_source), strict=True)
        # Whisper's positional embeddings are fixed sinusoids: not trained.
        self.model.embed_positions.weight.requires_grad_(False)
        features = WhisperFeatureExtractor.from_pretrained(local_source)
        if features.sampling_rate != SAMPLE_RATE:
            raise ModelNotAvailableError(
                f"{local_source}: the feature extractor expects {features.sampling_rate} Hz, the project "
                f"reads audio at {SAMPLE_RATE} Hz"
            )
        self.n_fft = int(features.n_fft)
        self.hop_length = int(features.hop_length)
        # Derived from the preprocessor file, so not saved with the weights.
        self.register_buffer("mel_filters", torch.from_numpy(features.mel_filters.T.copy()).float(),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.output_norm = bool(output_norm)
        self.freeze = bool(freeze)
        self.freeze_feature_extractor = bool(freeze_feature_extractor)
        self.output_all_hiddens = bool(output_all_hiddens)
        drop = config.encoder_layerdrop if layerdrop is None else layerdrop
        if not 0.0 <= float(drop or 0.0) < 1.0:
            raise ValueError(f"layerdrop must be in [0, 1), got {layerdrop!r}")
        if self.output_all_hiddens and drop:
            logger.warning("%s: layerdrop %s ignored: all hidden states are used", source, drop)
            drop = 0.0
        self.model.config.encoder_layerdrop = float(drop or 0.0)
        if self.freeze:
            self.model.requires_grad_(False)
        elif self.freeze_feature_extractor:
            self.model.conv1.requires_grad_(False)
            self.model.conv2.requires_grad_(False)
        self.train(self.training)

    @property
    def output_size(self):
        """Dimension of the output features (the model's ``d_model``)."""
        return self.model.config.d_model

    @property
    def layerdrop(self):
        """Probability that a transformer layer is skipped in a training step (0 when frozen)."""
        return 0.0 if self.freeze else float(self.model.config.encoder_layerdrop or 0.0)

    @property
    def receptive_field(self):
        """Samples needed for one output frame: one STFT window (400 samples, 25 ms)."""
        return self.n_fft

    @property
    def max_samples(self):
        """Longest input the positional embeddings cover (480,000 samples, 30 s, for Whisper)."""
        return self.model.config.max_source_positions * 2 * self.hop_length

    def train(self, mode=True):
        """Set train/eval mode, keeping a frozen encoder in eval mode (no dropout)."""
        super().train(mode)
        if getattr(self, "freeze", False):
            self.model.eval()
        return self

    def frame_lengths(self, sample_lengths):
        """Number of output frames of ``sample_lengths`` samples (any shape): ``ceil((n // 160) / 2)``."""
        sample_lengths = torch.as_tensor(sample_lengths)
        return torch.div(torch.div(sample_lengths, self.hop_length, rounding_mode="floor") + 1, 2,
                         rounding_mode="floor")

    def log_mel(self, wav, n_mel_frames, mel_lengths=None):
        """Whisper's log-mel spectrogram of waveforms, ``(batch, mels, n_mel_frames)``.

        ``WhisperFeatureExtractor``'s formula (periodic Hann window, power spectrum, mel filters,
        log10, floor at the maximum minus 8, ``(x + 4) / 4``); frame ``t`` is centred on sample
        ``160 t`` and the waveforms are padded with zeros past the last frame. With
        ``mel_lengths``, row ``b`` keeps its first ``mel_lengths[b]`` frames, normalised by their
        own maximum, and is zero after them: what the convolutions see of a turn alone.
        """
        needed = (n_mel_frames + 2) * self.hop_length
        wav = nn.functional.pad(wav, (0, max(0, needed - wav.shape[1])))
        stft = torch.stft(wav, self.n_fft, self.hop_length, window=self.window, return_complex=True)
        power = (stft[..., :n_mel_frames].abs() ** 2).contiguous()
        log_spec = torch.clamp(self.mel_filters @ power, min=1e-10).log10()
        if mel_lengths is None:
            return (torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0) + 4.0) / 4.0
        valid = (torch.arange(n_mel_frames, device=wav.device)[None, :] < mel_lengths[:, None])[:, None, :]
        peak = log_spec.masked_fill(~valid, -torch.inf).amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0 * valid

    def forward(self, wav, wav_lens=None):
        """Encode a padded batch of waveforms (see :meth:`extract_features`)."""
        if self.freeze:
            with torch.no_grad():
                return self.extract_features(wav, wav_lens)
        return self.extract_features(wav, wav_lens)

    def _embed(self, wav, n_frames, frame_lengths):
        """Log-mel → two GELU convolutions → ``(batch, n_frames, dim)`` plus positional embeddings."""
        # Each turn's spectrogram stops at its own last output frame (zeros after it, as the
        # convolutions' padding of a turn alone), so its features do not depend on the batch.
        mel = self.log_mel(wav, 2 * n_frames, mel_lengths=2 * frame_lengths)
        frozen = self.freeze or self.freeze_feature_extractor
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            hidden = nn.functional.gelu(self.model.conv1(mel))
            hidden = nn.functional.gelu(self.model.conv2(hidden))
        hidden = hidden[:, :, :n_frames].transpose(1, 2)
        hidden = hidden + self.model.embed_positions.weight[:n_frames]
        return nn.functional.dropout(hidden, p=self.model.config.dropout, training=self.training)

    def extract_features(self, wav, wav_lens=None):
        """Encode a padded batch of waveforms.

        Parameters
        ----------
        wav : torch.Tensor
            ``(batch, samples)`` waveforms at 16 kHz, padded at the end (at most 30 s).
        wav_lens : torch.Tensor, optional
            ``(batch,)`` relative lengths in (0, 1]; all 1 if not given.

        Returns
        -------
        torch.Tensor
            ``(batch, frames, dim)``, or ``(layers + 1, batch, frames, dim)`` with
            ``output_all_hiddens``; padded frames are zero.
        """
        wav_lens = checked_wav_lens(wav, wav_lens, "WhisperSpeechEncoder")
        n_samples = wav.shape[1]
        n_frames = int(self.frame_lengths(n_samples))
        if n_frames < 1:
            raise ValueError(f"waveforms of {n_samples} samples are too short for {self.source}: "
                             f"one frame needs {self.hop_length} samples")
        if n_frames > self.model.config.max_source_positions:
            raise ValueError(f"waveforms of {n_samples / SAMPLE_RATE:.1f} s are too long for {self.source}: "
                             f"its positional embeddings cover {self.max_samples / SAMPLE_RATE:.0f} s")
        sample_lengths = self._valid_sample_lengths(wav_lens, n_samples)
        sample_mask = torch.arange(n_samples, device=wav.device)[None, :] < sample_lengths[:, None]
        frame_lengths = self.frame_lengths(sample_lengths)
        hidden = self._embed(wav * sample_mask, n_frames, frame_lengths)
        frame_mask = torch.arange(n_frames, device=wav.device)[None, :] < frame_lengths[:, None]
        # Additive mask (batch, 1, queries, keys): padded frames are never attended to.
        attention_mask = torch.zeros(frame_mask.shape, dtype=hidden.dtype, device=wav.device)
        attention_mask = attention_mask.masked_fill(~frame_mask, torch.finfo(hidden.dtype).min)
        attention_mask = attention_mask[:, None, None, :].expand(-1, 1, n_frames, -1)
        states = [hidden]
        for layer in self.model.layers:
            if self.training and self.layerdrop > 0.0 and float(torch.rand([])) < self.layerdrop:
                continue  # layer drop: the layer is skipped in this step
            hidden = layer(hidden, attention_mask)
            states.append(hidden)
        hidden = self.model.layer_norm(hidden)
        frame_mask = frame_mask.unsqueeze(-1)
        if self.output_all_hiddens:
            hidden = torch.stack([*states[:-1], hidden])
        if self.output_norm:
            return masked_standardize(hidden, frame_mask, dims=(-2, -1), eps=1e-5)
        return hidden * frame_mask
