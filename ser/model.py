"""The sub-system network: branches → pooling → concatenation → linear → log-softmax.

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
    >>> from ser.pooling import MeanPooling
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


class EmotionClassifier(torch.nn.Module):
    """Branches, concatenated pooled vectors, a linear head, log-softmax.

    Parameters
    ----------
    head : torch.nn.Module
        Maps the concatenated pooled vectors to class scores (paper §5.3:
        one linear layer).
    speech_branches : list of SpeechBranch
        All see the same waveform batch.
    text_branches : list of TextBranch
        All see the same transcripts.

    Example
    -------
    >>> from ser.pooling import MeanPooling
    >>> class Framer(torch.nn.Module):
    ...     def forward(self, wavs, lens):
    ...         return wavs.unfold(1, 160, 160)
    >>> model = EmotionClassifier(
    ...     torch.nn.Linear(320, 8),
    ...     speech_branches=[SpeechBranch(Framer(), MeanPooling()),
    ...                      SpeechBranch(Framer(), MeanPooling())])
    >>> log_probs = model(torch.randn(2, 1600), torch.ones(2))
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

    def forward(self, wavs=None, wav_lens=None, texts=None):
        """Log-probabilities ``(batch, n_classes)``."""
        pooled = [branch(wavs, wav_lens) for branch in self.speech_branches]
        if self.uses_text:
            if texts is None:
                raise ValueError("this model has a text branch: transcripts are required")
            pooled += [branch(list(texts)) for branch in self.text_branches]
        logits = self.head(torch.cat(pooled, dim=-1))
        # Log-softmax in float32: under bf16 autocast the head may be low precision.
        return torch.log_softmax(logits.float(), dim=-1)
