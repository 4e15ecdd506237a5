"""Speech and text encoders (paper §5.1): pretrained SSL speech models and a text transformer.

:class:`SpeechEncoder` is SpeechBrain's Hugging Face wav2vec2 wrapper (which loads WavLM, HuBERT
or wav2vec 2.0 through ``AutoModel``) with these changes:

* padding is harmless: the waveform is standardised over its valid samples only (SpeechBrain
  normalises the padded row), padding is zeroed and masked in the transformer when the model
  takes an attention mask, ``output_norm`` ignores padded frames and padded frames are zero, so
  a turn encodes (almost) the same alone or next to a longer one;
* layer drop (skipping each transformer layer with probability ``layerdrop`` in training) keeps
  the model configuration's value (0.1 for WavLM-large and HuBERT-large, active in the
  authors' recipe) when only the last layer is used, and is switched off when every hidden
  state is returned: transformers 5 then drops the skipped layers' entries from
  ``hidden_states``, so the layer count would change from batch to batch;
* a frozen CNN feature extractor (paper §6.4; every system of the authors' recipe) builds no
  autograd graph at all; a trained one runs on contiguous tensors (:mod:`ser.nn.cnn_layout`);
* ``source`` (Hub id or folder) is resolved first, with a clear error when offline.

Frames come every 20 ms; ``round(wav_lens[b] * frames)`` counts the valid frames of turn ``b``
up to one frame at the edge, :meth:`SpeechEncoder.relative_frame_lengths` exactly.
:class:`WhisperSpeechEncoder` fine-tunes the encoder of Whisper (``openai/whisper-large-v3``, or a
folder such as the one :mod:`ser.nn.whisper_ctranslate2` converts) with the same interface;
``SpeechEncoder(source)`` builds one when the source's ``config.json`` says ``model_type: whisper``,
so a system YAML switches backbone by its ``source`` alone.
:class:`TextEncoder` wraps any Hugging Face text encoder (RoBERTa-base in §6.4), with the same
optional ``output_norm`` over its valid tokens (the authors' recipe normalises RoBERTa's output
as WavLM's).
"""

import json
import logging
from pathlib import Path

import torch
from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
from torch import nn

from ser.io import SAMPLE_RATE
from ser.io.model_source import ModelNotAvailableError, resolve_model_source
from ser.nn.cnn_layout import contiguous_layer_norm_cnn

logger = logging.getLogger(__name__)

__all__ = ["SPEECH_ENCODERS", "SpeechEncoder", "TextEncoder", "WhisperSpeechEncoder"]


def _masked_standardize(x, mask, dims, eps):
    """Zero-mean, unit-variance ``x`` over ``dims``, using only the entries where ``mask`` holds."""
    mask = mask.to(x.dtype).expand_as(x)
    count = mask.sum(dim=dims, keepdim=True).clamp(min=1.0)
    mean = (x * mask).sum(dim=dims, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dim=dims, keepdim=True) / count
    return (x - mean) / torch.sqrt(var + eps) * mask


def _absolute_lengths(relative_lengths, size):
    return torch.round(relative_lengths * size).long().clamp(1, size)


def _checked_wav_lens(wav, wav_lens, name):
    """``wav_lens`` as float32 on ``wav``'s device (all 1 when None), after checking the shapes."""
    if wav.dim() != 2:
        raise ValueError(f"{name} expects wav of shape (batch, samples), got {tuple(wav.shape)}")
    batch = wav.shape[0]
    wav_lens = torch.ones(batch) if wav_lens is None else torch.as_tensor(wav_lens)
    wav_lens = wav_lens.to(device=wav.device, dtype=torch.float32)
    if wav_lens.shape != (batch,) or bool(((wav_lens <= 0) | (wav_lens > 1 + 1e-6)).any()):
        raise ValueError(f"wav_lens must be {batch} relative lengths in (0, 1], got {wav_lens.tolist()}")
    return wav_lens


def _model_type(local_source):
    """``model_type`` of a local model folder's ``config.json`` (None when unreadable)."""
    try:
        return json.loads((Path(local_source) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


class SpeechEncoder(Wav2Vec2):
    """WavLM, HuBERT or wav2vec 2.0 encoder, through SpeechBrain's Hugging Face integration.

    Parameters
    ----------
    source : str or Path
        Hub id (``microsoft/wavlm-large``, ``facebook/hubert-large-ll60k``) or local folder with
        ``config.json``, weights and ``preprocessor_config.json``.
    save_path : str or Path
        Hugging Face cache folder for Hub ids.
    output_norm : bool
        Standardise each turn's output over its valid frames and all features (SpeechBrain's
        ``output_norm``, without the padding).
    freeze : bool
        Freeze the whole encoder (no gradient, kept in eval mode).
    freeze_feature_extractor : bool
        Freeze only the CNN feature extractor; the transformer is fine-tuned (paper §6.4).
    output_all_hiddens : bool
        Return every hidden state, ``(layers + 1, batch, frames, dim)``, instead of the last
        (layer drop is then off).
    apply_spec_augment : bool
        Let the Hugging Face model mask time steps in training (off in the paper).
    layerdrop : float, optional
        Probability of skipping each transformer layer in training; ``None`` keeps the model
        configuration's (0.1 for WavLM-large). Forced to 0 with ``output_all_hiddens``.
    pretrained : bool
        Load the pretrained weights of ``source`` (True), or only build the architecture from
        its ``config.json`` (False: an exported package, whose checkpoint holds the weights).

    Example
    -------
    >>> import tempfile, torch
    >>> from ser.nn.tiny_models import build_tiny_models
    >>> tiny = build_tiny_models(tempfile.mkdtemp())
    >>> encoder = SpeechEncoder(tiny["wavlm"], save_path=tempfile.mkdtemp())
    >>> feats = encoder(torch.randn(2, 32000), torch.tensor([0.35, 1.0]))
    >>> tuple(feats.shape), encoder.output_size
    ((2, 99, 64), 64)
    >>> encoder.frame_lengths(torch.tensor([400, 11200, 32000])).tolist()
    [1, 34, 99]
    >>> rel = encoder.relative_frame_lengths(torch.tensor([0.35, 1.0]), n_samples=32000)
    >>> (rel * 99).round().tolist()  # exact, where round(0.35 * 99) = 35 is one frame too many
    [34.0, 99.0]
    """

    def __new__(cls, source=None, save_path=None, *args, **kwargs):
        # One YAML tag for every speech backbone: a Whisper source gets the Whisper encoder,
        # so a profile switches a system's backbone by its source alone. (Copies and unpickling
        # call __new__ without arguments.)
        if cls is SpeechEncoder and source is not None:
            if _model_type(resolve_model_source(source, save_path)) == "whisper":
                return WhisperSpeechEncoder(source, save_path, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        source,
        save_path,
        output_norm=True,
        freeze=False,
        freeze_feature_extractor=False,
        output_all_hiddens=False,
        apply_spec_augment=False,
        layerdrop=None,
        pretrained=True,
    ):
        local_source = resolve_model_source(source, save_path)
        self.pretrained = bool(pretrained)
        super().__init__(
            source=local_source,
            save_path=str(save_path),
            output_norm=output_norm,
            freeze=freeze,
            freeze_feature_extractor=freeze_feature_extractor,
            apply_spec_augment=apply_spec_augment,
            output_all_hiddens=output_all_hiddens,
        )
        self.source = str(source)
        if output_all_hiddens:
            # transformers 5 drops a skipped layer's entry from hidden_states: every layer must run.
            if layerdrop:
                logger.warning("%s: layerdrop %s ignored: all hidden states are used", source, layerdrop)
            self.model.config.layerdrop = 0.0
        elif layerdrop is not None:
            if not 0.0 <= float(layerdrop) < 1.0:
                raise ValueError(f"layerdrop must be in [0, 1), got {layerdrop!r}")
            self.model.config.layerdrop = float(layerdrop)
        if not self.freeze and self.freeze_feature_extractor:
            # SpeechBrain only stops the CNN's parameters; this also stops Hugging Face from
            # making the waveform require grad, so the CNN builds no autograd graph. (HubertModel
            # has no freeze_feature_encoder(), but every CNN feature encoder has this method.)
            self.model.feature_extractor._freeze_parameters()
        elif not self.freeze:
            # A trained CNN (the demo's random-init encoders): same results, ~2x faster on CPU.
            contiguous_layer_norm_cnn(self.model.feature_extractor)
        masked_embedding = getattr(self.model, "masked_spec_embed", None)
        if masked_embedding is not None and not apply_spec_augment:
            # Only SpecAugment's time masking reads it: left trainable, it gets no gradient,
            # which DDP reports as an unused parameter.
            masked_embedding.requires_grad_(False)
        # Models with a group-norm CNN (wav2vec2-base style) must not get a mask (their
        # preprocessor says so); the others need one so padding stays out of attention.
        self.uses_attention_mask = bool(getattr(self.feature_extractor, "return_attention_mask", False))
        self.train(self.training)

    @property
    def output_size(self):
        """Dimension of the output features (the model's hidden size)."""
        return self.model.config.hidden_size

    @property
    def layerdrop(self):
        """Probability that a transformer layer is skipped in a training step (0 when frozen)."""
        return 0.0 if self.freeze else float(getattr(self.model.config, "layerdrop", 0.0) or 0.0)

    def _from_pretrained(self, source, save_path, cache_dir, device=None, **kwargs):
        """SpeechBrain's loader, or the bare architecture when ``pretrained`` is False."""
        if self.pretrained:
            return super()._from_pretrained(source, save_path, cache_dir, device=device, **kwargs)
        self.model = self.auto_class.from_config(self.config)
        if device is not None:
            self.model.to(device)
        return None

    def train(self, mode=True):
        """Set train/eval mode, keeping frozen parts in eval mode (no dropout on frozen layers)."""
        super().train(mode)
        if getattr(self, "freeze", False):
            self.model.eval()
        elif getattr(self, "freeze_feature_extractor", False):
            self.model.feature_extractor.eval()
        return self

    def frame_lengths(self, sample_lengths):
        """Number of output frames the CNN makes from ``sample_lengths`` samples (any shape)."""
        return self.model._get_feat_extract_output_lengths(sample_lengths)

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

        A turn shorter than the receptive field (400 samples, 25 ms) would give no frame at
        all and break the pooling; it is taken with its zero padding up to one frame, as
        :mod:`ser.inference` pads a short file.
        """
        lengths = _absolute_lengths(wav_lens, n_samples)
        return lengths.clamp(min=min(self.receptive_field, n_samples))

    @property
    def receptive_field(self):
        """Samples of waveform the CNN needs for one output frame (400 for WavLM/HuBERT)."""
        field = 1
        config = self.model.config
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride, strict=True))):
            field = (field - 1) * stride + kernel
        return field

    def extract_features(self, wav, wav_lens=None):
        """Encode a padded batch of waveforms.

        Parameters
        ----------
        wav : torch.Tensor
            ``(batch, samples)`` waveforms at 16 kHz, padded at the end.
        wav_lens : torch.Tensor, optional
            ``(batch,)`` relative lengths in (0, 1]; all 1 if not given.

        Returns
        -------
        torch.Tensor
            ``(batch, frames, dim)``, or ``(layers + 1, batch, frames, dim)`` with
            ``output_all_hiddens``; padded frames are zero.
        """
        wav_lens = _checked_wav_lens(wav, wav_lens, "SpeechEncoder")
        n_samples = wav.shape[1]
        if int(self.frame_lengths(torch.tensor(n_samples))) < 1:
            raise ValueError(
                f"waveforms of {n_samples} samples are too short for {self.source}: the CNN "
                "needs at least its receptive field (400 samples, 25 ms, for WavLM/HuBERT)"
            )
        sample_lengths = self._valid_sample_lengths(wav_lens, n_samples)
        sample_mask = torch.arange(n_samples, device=wav.device)[None, :] < sample_lengths[:, None]

        if self.normalize_wav:
            wav = _masked_standardize(wav, sample_mask, dims=(-1,), eps=1e-7)
        else:
            wav = wav * sample_mask

        out = self.model(
            wav,
            attention_mask=sample_mask.long() if self.uses_attention_mask else None,
            output_hidden_states=self.output_all_hiddens,
        )
        hidden = out.last_hidden_state
        if self.output_all_hiddens:
            hidden = torch.stack(out.hidden_states)
        frames = torch.arange(hidden.shape[-2], device=wav.device)
        # (batch, frames, 1): broadcasts over features (and layers)
        frame_mask = (frames[None, :] < self.frame_lengths(sample_lengths)[:, None]).unsqueeze(-1)
        if self.output_norm:
            return _masked_standardize(hidden, frame_mask, dims=(-2, -1), eps=1e-5)
        return hidden * frame_mask


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


class WhisperSpeechEncoder(nn.Module):
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
        if _model_type(local_source) != "whisper":
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

    def relative_frame_lengths(self, wav_lens, n_samples):
        """Exact relative lengths of the output frames of waveforms padded to ``n_samples``."""
        sample_lengths = self._valid_sample_lengths(wav_lens, n_samples)
        n_frames = self.frame_lengths(torch.tensor(n_samples, device=wav_lens.device))
        return self.frame_lengths(sample_lengths).to(wav_lens.dtype) / n_frames

    def _valid_sample_lengths(self, wav_lens, n_samples):
        """Samples of each turn treated as signal: at least one STFT window (as SpeechEncoder)."""
        lengths = _absolute_lengths(wav_lens, n_samples)
        return lengths.clamp(min=min(self.receptive_field, n_samples))

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
        wav_lens = _checked_wav_lens(wav, wav_lens, "WhisperSpeechEncoder")
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
            return _masked_standardize(hidden, frame_mask, dims=(-2, -1), eps=1e-5)
        return hidden * frame_mask


#: Every speech backbone class (``SpeechEncoder(source)`` may return either).
SPEECH_ENCODERS = (SpeechEncoder, WhisperSpeechEncoder)


class TextEncoder(nn.Module):
    """Any Hugging Face text encoder (RoBERTa, BERT, MiniLM), loaded with ``AutoModel``.

    Parameters
    ----------
    source : str or Path
        Hub id (``FacebookAI/roberta-base``) or local folder.
    freeze : bool
        Freeze the encoder (no gradient, kept in eval mode). Paper §6.4 fine-tunes it.
    max_length : int
        Transcripts are truncated to this many tokens, special tokens included.
    save_path : str or Path, optional
        Hugging Face cache folder for Hub ids (default cache if not given).
    output_norm : bool
        Standardise each transcript's output over its valid tokens and all features, as
        :class:`SpeechEncoder` does (the authors' recipe normalises RoBERTa's output so).
    pretrained : bool
        Load the pretrained weights (True), or build the architecture from ``config.json`` only
        (False: an exported package, whose checkpoint holds the weights).

    Example
    -------
    >>> import tempfile
    >>> from ser.nn.tiny_models import build_tiny_models
    >>> tiny = build_tiny_models(tempfile.mkdtemp())
    >>> encoder = TextEncoder(tiny["roberta"])
    >>> hidden, lengths = encoder(["I love the show!", ""])
    >>> tuple(hidden.shape), [round(x, 3) for x in lengths.tolist()], encoder.output_size
    ((2, 7, 64), [1.0, 0.286], 64)
    """

    def __init__(self, source, freeze=False, max_length=128, save_path=None, output_norm=False,
                 pretrained=True):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if max_length < 2:
            raise ValueError(f"max_length must leave room for the special tokens, got {max_length}")
        local_source = resolve_model_source(source, save_path)
        self.source = str(source)
        self.max_length = int(max_length)
        self.tokenizer = AutoTokenizer.from_pretrained(local_source)
        if pretrained:
            self.model = AutoModel.from_pretrained(local_source)
        else:
            self.model = AutoModel.from_config(AutoConfig.from_pretrained(local_source))
        if getattr(self.model, "pooler", None) is not None:
            # The [CLS] pooler is never used: dropping it keeps every parameter trained
            # (unused parameters break DistributedDataParallel).
            self.model.pooler = None
        self.output_norm = bool(output_norm)
        self.freeze = bool(freeze)
        if self.freeze:
            for param in self.model.parameters():
                param.requires_grad = False
        self.train(self.training)

    @property
    def output_size(self):
        """Dimension of the output features (the model's hidden size)."""
        return self.model.config.hidden_size

    def train(self, mode=True):
        """Set train/eval mode, keeping a frozen encoder in eval mode (no dropout)."""
        super().train(mode)
        if getattr(self, "freeze", False):
            self.model.eval()
        return self

    def forward(self, texts):
        """Encode a batch of transcripts.

        Parameters
        ----------
        texts : list of str
            Transcripts; an empty string is valid (only the special tokens are encoded).

        Returns
        -------
        hidden : torch.Tensor
            ``(batch, tokens, dim)`` token features; padded tokens are zero.
        lengths : torch.Tensor
            ``(batch,)`` relative lengths in (0, 1] (tokens of each text / longest).
        """
        if isinstance(texts, str) or not len(texts):
            raise ValueError("TextEncoder expects a non-empty list of strings")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"transcript {index} is {type(text).__name__}, not a string")
        device = next(self.model.parameters()).device
        tokens = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden = self.model(**tokens).last_hidden_state
        token_mask = tokens["attention_mask"]
        if self.output_norm:
            hidden = _masked_standardize(hidden, token_mask.unsqueeze(-1), dims=(-2, -1), eps=1e-5)
        hidden = hidden * token_mask.unsqueeze(-1).to(hidden.dtype)
        lengths = token_mask.sum(dim=1).to(hidden.dtype) / token_mask.shape[1]
        return hidden, lengths
