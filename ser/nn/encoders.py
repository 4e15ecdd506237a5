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
:class:`TextEncoder` wraps any Hugging Face text encoder (RoBERTa-base in §6.4), with the same
optional ``output_norm`` over its valid tokens (the authors' recipe normalises RoBERTa's output
as WavLM's).
"""

import logging

import torch
from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
from torch import nn

from ser.io.model_source import resolve_model_source
from ser.nn.cnn_layout import contiguous_layer_norm_cnn

logger = logging.getLogger(__name__)

__all__ = ["SpeechEncoder", "TextEncoder"]

def _masked_standardize(x, mask, dims, eps):
    """Zero-mean, unit-variance ``x`` over ``dims``, using only the entries where ``mask`` holds."""
    mask = mask.to(x.dtype).expand_as(x)
    count = mask.sum(dim=dims, keepdim=True).clamp(min=1.0)
    mean = (x * mask).sum(dim=dims, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dim=dims, keepdim=True) / count
    return (x - mean) / torch.sqrt(var + eps) * mask


def _absolute_lengths(relative_lengths, size):
    return torch.round(relative_lengths * size).long().clamp(1, size)


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
        if wav.dim() != 2:
            raise ValueError(f"SpeechEncoder expects wav of shape (batch, samples), got {tuple(wav.shape)}")
        batch, n_samples = wav.shape
        if int(self.frame_lengths(torch.tensor(n_samples))) < 1:
            raise ValueError(
                f"waveforms of {n_samples} samples are too short for {self.source}: the CNN "
                "needs at least its receptive field (400 samples, 25 ms, for WavLM/HuBERT)"
            )
        wav_lens = torch.ones(batch) if wav_lens is None else torch.as_tensor(wav_lens)
        wav_lens = wav_lens.to(device=wav.device, dtype=torch.float32)
        if wav_lens.shape != (batch,) or bool(((wav_lens <= 0) | (wav_lens > 1 + 1e-6)).any()):
            raise ValueError(f"wav_lens must be {batch} relative lengths in (0, 1], got {wav_lens.tolist()}")
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
