"""The text encoder of the systems that read transcripts (D, E; paper §5.1).

:class:`TextEncoder` wraps any Hugging Face text encoder (RoBERTa-base in §6.4), with the same
optional ``output_norm`` over its valid tokens (the authors' recipe normalises RoBERTa's output
as WavLM's).
"""

import torch
from torch import nn

from ser.io.model_source import resolve_model_source
from ser.nn.encoder_inputs import masked_standardize

__all__ = ["TextEncoder"]


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
            hidden = masked_standardize(hidden, token_mask.unsqueeze(-1), dims=(-2, -1), eps=1e-5)
        hidden = hidden * token_mask.unsqueeze(-1).to(hidden.dtype)
        lengths = token_mask.sum(dim=1).to(hidden.dtype) / token_mask.shape[1]
        return hidden, lengths
