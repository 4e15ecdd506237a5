"""The sub-system network: branches → pooling → concatenation → target heads.

The heads (:class:`TargetHeads`) are sized by the targets the YAML declares:
a linear classifier + log-softmax over the class set (Task 1) and/or a
linear regressor of the emotional attributes (Task 2) on the same pooled
vector; the network returns a dict with ``log_probs`` and/or ``attributes``.

Every system of the paper is one :class:`EmotionClassifier`; they differ
only in the branches the YAML gives it (paper Figures 1–3):

- A, B: one :class:`SpeechBranch` (WavLM, mean pooling);
- C: two speech branches that see the same waveform (WavLM and HuBERT, each
  mean pooled, pooled vectors concatenated — Figure 2);
- D, E: a speech branch (WavLM, attention pooling) and a :class:`TextBranch`
  (RoBERTa on Whisper transcripts, attention pooling) — Figure 3.
"""

import torch


class SpeechBranch(torch.nn.Module):
    """A speech encoder followed by a pooling over its frames.

    Parameters
    ----------
    encoder : torch.nn.Module
        Called as ``encoder(wavs, wav_lens)`` → ``(batch, frames, dim)``.
    pooling : torch.nn.Module
        Called as ``pooling(frames, lengths)`` → ``(batch, dim)``.

    Example
    -------
    >>> from ser.nn.pooling import MeanPooling
    >>> class Framer(torch.nn.Module):
    ...     def forward(self, wavs, lens):
    ...         return wavs.unfold(1, 320, 320)
    >>> branch = SpeechBranch(Framer(), MeanPooling())
    >>> branch(torch.randn(2, 3200), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 320])
    """

    def __init__(self, encoder, pooling):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling

    def forward(self, wavs, wav_lens):
        frames = self.encoder(wavs, wav_lens)
        # The CNN's exact frame count of each turn when the encoder knows it;
        # rounding relative lengths can count one padded frame too many.
        if hasattr(self.encoder, "relative_frame_lengths"):
            wav_lens = self.encoder.relative_frame_lengths(wav_lens, wavs.shape[1])
        return self.pooling(frames, wav_lens)


class TextBranch(torch.nn.Module):
    """A text encoder on transcripts followed by a pooling over its tokens.

    Parameters
    ----------
    encoder : torch.nn.Module
        Called as ``encoder(texts)`` → ``(hidden (batch, tokens, dim), lengths)``.
    pooling : torch.nn.Module
        Called as ``pooling(hidden, lengths)`` → ``(batch, dim)``.
    """

    def __init__(self, encoder, pooling):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling

    def forward(self, texts):
        hidden, lengths = self.encoder(texts)
        return self.pooling(hidden, lengths)


class TargetHeads(torch.nn.Module):
    """Classification and/or attribute-regression heads on one pooled vector.

    Parameters
    ----------
    in_features : int
        Size of the concatenated pooled vectors.
    classes : sequence of str, optional
        The class set (paper §5.3: one linear layer, softmax).
    attributes : sequence of str, optional
        The attributes (Task 2): one linear output each, mapped to the
        attribute scale as ``center + half_range * z`` so that a fresh head
        predicts the middle of the scale.
    class_bias : bool
        Bias of the class layer (the authors' recipe: none).
    attribute_scale : (float, float)
        The corpus scale of the attributes (MSP-Podcast: 1 to 7).

    Example
    -------
    >>> heads = TargetHeads(16, classes="ACN", attributes=["EmoAct", "EmoVal"])
    >>> out = heads(torch.randn(4, 16))
    >>> out["log_probs"].shape, out["attributes"].shape
    (torch.Size([4, 3]), torch.Size([4, 2]))
    """

    def __init__(self, in_features, classes=(), attributes=(), class_bias=False, attribute_scale=(1.0, 7.0)):
        super().__init__()
        self.classes = tuple(classes or ())
        self.attributes = tuple(attributes or ())
        if not self.classes and not self.attributes:
            raise ValueError("TargetHeads needs classes and/or attributes")
        if self.classes:
            self.classifier = torch.nn.Linear(in_features, len(self.classes), bias=class_bias)
        if self.attributes:
            self.regressor = torch.nn.Linear(in_features, len(self.attributes))
        low, high = (float(v) for v in attribute_scale)
        self.center, self.half_range = (low + high) / 2, (high - low) / 2

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints from before the targets were declared held a bare Linear classifier.
        for name in ("weight", "bias"):
            if prefix + name in state_dict and self.classes:
                state_dict[f"{prefix}classifier.{name}"] = state_dict.pop(prefix + name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, pooled):
        out = {}
        if self.classes:
            # Log-softmax in float32: under bf16 autocast the head may be low precision.
            out["log_probs"] = torch.log_softmax(self.classifier(pooled).float(), dim=-1)
        if self.attributes:
            out["attributes"] = self.center + self.half_range * self.regressor(pooled).float()
        return out


class EmotionClassifier(torch.nn.Module):
    """Branches, concatenated pooled vectors, target heads.

    Parameters
    ----------
    head : TargetHeads
        Maps the concatenated pooled vectors to the outputs (a dict with
        ``log_probs`` and/or ``attributes``).
    speech_branches : list of SpeechBranch
        All see the same waveform batch.
    text_branches : list of TextBranch
        All see the same transcripts.

    Example
    -------
    >>> from ser.nn.pooling import MeanPooling
    >>> class Framer(torch.nn.Module):
    ...     def forward(self, wavs, lens):
    ...         return wavs.unfold(1, 160, 160)
    >>> model = EmotionClassifier(
    ...     TargetHeads(320, classes="ACDFHNSU"),
    ...     speech_branches=[SpeechBranch(Framer(), MeanPooling()),
    ...                      SpeechBranch(Framer(), MeanPooling())])
    >>> log_probs = model(torch.randn(2, 1600), torch.ones(2))["log_probs"]
    >>> log_probs.shape, bool(torch.allclose(log_probs.exp().sum(-1), torch.ones(2)))
    (torch.Size([2, 8]), True)
    """

    def __init__(self, head, speech_branches=(), text_branches=()):
        super().__init__()
        if not speech_branches and not text_branches:
            raise ValueError("EmotionClassifier needs at least one speech or text branch")
        self.speech_branches = torch.nn.ModuleList(speech_branches)
        self.text_branches = torch.nn.ModuleList(text_branches)
        self.head = head

    @property
    def uses_text(self):
        """Whether the model needs transcripts."""
        return len(self.text_branches) > 0

    def embed(self, wavs=None, wav_lens=None, texts=None):
        """The pooled vectors of all branches, concatenated: the head's input ``(batch, dim)``.

        The turn's representation other tools take (``python -m ser.predict --embeddings``).
        """
        pooled = [branch(wavs, wav_lens) for branch in self.speech_branches]
        if self.uses_text:
            if texts is None:
                raise ValueError("this model has a text branch: transcripts are required")
            pooled += [branch(list(texts)) for branch in self.text_branches]
        return torch.cat(pooled, dim=-1)

    def classify(self, embeddings):
        """The head's outputs for :meth:`embed`'s vectors (the dict :meth:`forward` returns)."""
        return self.head(embeddings)

    def forward(self, wavs=None, wav_lens=None, texts=None):
        """A dict: ``log_probs`` ``(batch, n_classes)`` and/or ``attributes`` ``(batch, n_attributes)``."""
        return self.classify(self.embed(wavs, wav_lens, texts))
