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
The Whisper encoder (:mod:`ser.nn.whisper_encoder`) has the same interface:
``SpeechEncoder(source)`` builds one when the source's ``config.json`` says ``model_type: whisper``,
so a system YAML switches backbone by its ``source`` alone. :class:`WhisperSpeechEncoder` and the
text encoder (:class:`TextEncoder`, :mod:`ser.nn.text_encoder`) can also be named from here, as
YAML files and packages do (``!new:ser.nn.encoders.TextEncoder``).
"""

import logging

import torch
from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2

from ser.io.model_source import resolve_model_source
from ser.nn.cnn_layout import contiguous_layer_norm_cnn
from ser.nn.encoder_inputs import FramesOfPaddedWaveforms, checked_wav_lens, masked_standardize, model_type
from ser.nn.text_encoder import TextEncoder
from ser.nn.whisper_encoder import WhisperSpeechEncoder

logger = logging.getLogger(__name__)

__all__ = ["SPEECH_ENCODERS", "SpeechEncoder", "TextEncoder", "WhisperSpeechEncoder"]


class SpeechEncoder(FramesOfPaddedWaveforms, Wav2Vec2):
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
            if model_type(resolve_model_source(source, save_path)) == "whisper":
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
        wav_lens = checked_wav_lens(wav, wav_lens, "SpeechEncoder")
        n_samples = wav.shape[1]
        if int(self.frame_lengths(torch.tensor(n_samples))) < 1:
            raise ValueError(
                f"waveforms of {n_samples} samples are too short for {self.source}: the CNN "
                "needs at least its receptive field (400 samples, 25 ms, for WavLM/HuBERT)"
            )
        sample_lengths = self._valid_sample_lengths(wav_lens, n_samples)
        sample_mask = torch.arange(n_samples, device=wav.device)[None, :] < sample_lengths[:, None]

        if self.normalize_wav:
            wav = masked_standardize(wav, sample_mask, dims=(-1,), eps=1e-7)
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
            return masked_standardize(hidden, frame_mask, dims=(-2, -1), eps=1e-5)
        return hidden * frame_mask



#: Every speech backbone class (``SpeechEncoder(source)`` may return either).
SPEECH_ENCODERS = (SpeechEncoder, WhisperSpeechEncoder)
