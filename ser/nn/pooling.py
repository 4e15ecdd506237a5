"""Pooling over time: a sequence of frame features becomes one vector.

Paper §5.2 uses two kinds of pooling after the encoder: mean pooling
(systems A, B, C, E) and attention pooling (system D, after Safari et al.,
"Self-attention encoding and pooling for speaker recognition", 2020).

Both follow SpeechBrain's conventions: ``x`` is ``(batch, time, features)``
and ``lengths`` holds *relative* lengths in (0, 1], so sequence ``b`` has
``round(lengths[b] * time)`` valid frames at the start and padding after.

Both pool over the valid frames only. The authors' attention pooling did
not mask, so a turn's pooled vector (and its prediction) changed with the
length of the longest turn in its batch; here padding of any value never
reaches the output, nor the gradients.
"""

import torch
from torch import nn

__all__ = ["valid_frame_mask", "masked_mean_pool", "MeanPooling", "AttentionPooling"]


def _check_sequence(x):
    if x.dim() != 3:
        raise ValueError(
            f"pooling expects x of shape (batch, time, features), got shape {tuple(x.shape)}"
        )
    if x.shape[1] == 0:
        raise ValueError("pooling got a batch with 0 frames: nothing to pool")


def valid_frame_mask(lengths, max_len):
    """Boolean mask of the valid (non-padding) frames of a batch.

    Sequence ``b`` has ``round(lengths[b] * max_len)`` valid frames,
    SpeechBrain's convention for relative lengths, and at least one: a
    relative length so small that it rounds to 0 frames keeps its first
    frame, so pooling never divides by zero.

    Parameters
    ----------
    lengths : torch.Tensor
        ``(batch,)`` relative lengths in (0, 1].
    max_len : int
        Number of frames of the padded batch.

    Returns
    -------
    torch.Tensor
        ``(batch, max_len)`` bool, True on valid frames.

    Raises
    ------
    ValueError
        If ``lengths`` is not 1-D or holds values outside (0, 1].

    Example
    -------
    >>> valid_frame_mask(torch.tensor([1.0, 0.5]), 4)
    tensor([[ True,  True,  True,  True],
            [ True,  True, False, False]])
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must have shape (batch,), got shape {tuple(lengths.shape)}")
    # A little slack above 1: relative lengths computed as n / max_n in float
    # can land a rounding error above 1.0.
    bad = ~((lengths > 0) & (lengths <= 1.0 + 1e-4))
    if bool(bad.any()):
        index = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"lengths must be relative lengths in (0, 1]; entry {index} is "
            f"{float(lengths[index])!r}"
        )
    n_valid = torch.round(lengths.double() * max_len).long().clamp(1, max_len)
    frames = torch.arange(max_len, device=lengths.device)
    return frames.unsqueeze(0) < n_valid.unsqueeze(1)


def _mask_for(x, lengths):
    if lengths is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if len(lengths) != x.shape[0]:
        raise ValueError(f"lengths has {len(lengths)} entries but the batch has {x.shape[0]}")
    return valid_frame_mask(lengths.to(x.device), x.shape[1])


def masked_mean_pool(x, lengths=None):
    """Average each sequence over its valid frames only.

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, time, features)``.
    lengths : torch.Tensor, optional
        ``(batch,)`` relative lengths in (0, 1]; None means no padding.

    Returns
    -------
    torch.Tensor
        ``(batch, features)``.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [1e9]]])
    >>> masked_mean_pool(x, torch.tensor([2 / 3]))
    tensor([[2.]])
    """
    _check_sequence(x)
    mask = _mask_for(x, lengths).unsqueeze(-1)
    # torch.where, not a multiplication: padding may hold inf or nan, and
    # inf * 0 would be nan.
    total = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    return total / mask.sum(dim=1).to(x.dtype)


class MeanPooling(nn.Module):
    """Mean over the valid frames (paper §5.2, systems A, B, C and E).

    Example
    -------
    >>> pool = MeanPooling()
    >>> pool(torch.ones(2, 5, 3), torch.tensor([1.0, 0.4])).shape
    torch.Size([2, 3])
    """

    def forward(self, x, lengths=None):
        """Pool ``x (batch, time, features)`` to ``(batch, features)``.

        Example
        -------
        >>> MeanPooling()(torch.arange(4.0).view(1, 4, 1), torch.tensor([0.5]))
        tensor([[0.5000]])
        """
        return masked_mean_pool(x, lengths)


class AttentionPooling(nn.Module):
    """Self-attention pooling: a learned weighted mean over valid frames.

    Each frame ``h_t`` gets a score; the weights are the softmax of the
    scores over the valid frames of its sequence (padding gets -inf, so
    weight 0), and the output is the weighted mean of the frames.

    With ``hidden_size=None`` the score is ``u . h_t`` with one learned
    vector ``u``, Safari et al.'s self-attention pooling. With an integer
    ``hidden_size`` a small network scores each frame:
    ``v . tanh(W h_t + b)``.

    Parameters
    ----------
    input_size : int
        Feature size of the frames.
    hidden_size : int, optional
        Width of the scoring network's hidden layer; None for Safari et
        al.'s single learned vector.

    Example
    -------
    >>> pool = AttentionPooling(input_size=6, hidden_size=4)
    >>> pool(torch.randn(3, 10, 6), torch.tensor([1.0, 0.5, 0.1])).shape
    torch.Size([3, 6])
    """

    def __init__(self, input_size, hidden_size=None):
        super().__init__()
        if hidden_size is None:
            # No bias: a constant added to every score cancels in the softmax.
            self.scorer = nn.Linear(input_size, 1, bias=False)
        else:
            self.scorer = nn.Sequential(
                nn.Linear(input_size, hidden_size),
                nn.Tanh(),
                nn.Linear(hidden_size, 1, bias=False),
            )
        self.input_size = input_size

    def attention_weights(self, x, lengths=None):
        """Attention weights of each frame: sum 1 over valid frames, 0 on padding.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, time, features)``.
        lengths : torch.Tensor, optional
            ``(batch,)`` relative lengths in (0, 1]; None means no padding.

        Returns
        -------
        torch.Tensor
            ``(batch, time)``.

        Example
        -------
        >>> pool = AttentionPooling(input_size=2)
        >>> w = pool.attention_weights(torch.randn(1, 4, 2), torch.tensor([0.5]))
        >>> w[0, 2:].tolist(), round(float(w.detach().sum()), 5)
        ([0.0, 0.0], 1.0)
        """
        weights, _ = self._weights_and_frames(x, lengths)
        return weights

    def forward(self, x, lengths=None):
        """Pool ``x (batch, time, features)`` to ``(batch, features)``.

        Example
        -------
        >>> pool = AttentionPooling(input_size=3, hidden_size=8)
        >>> pool(torch.ones(2, 4, 3), torch.tensor([1.0, 0.25])).detach()
        tensor([[1., 1., 1.],
                [1., 1., 1.]])
        """
        weights, frames = self._weights_and_frames(x, lengths)
        return (weights.unsqueeze(-1) * frames).sum(dim=1)

    def _weights_and_frames(self, x, lengths):
        """Softmax weights over valid frames, and the frames with padding zeroed."""
        _check_sequence(x)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"AttentionPooling was built for {self.input_size} features, got {x.shape[-1]}"
            )
        mask = _mask_for(x, lengths)
        # Padding is zeroed before anything touches it: junk values (inf, nan)
        # would otherwise reach the scores, the weighted sum (0 * inf = nan)
        # or the scorer's gradients.
        frames = torch.where(
            mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device)
        )
        scores = self.scorer(frames).squeeze(-1).masked_fill(~mask, float("-inf"))
        # Every row keeps >= 1 valid frame (valid_frame_mask), so no row is
        # all -inf and the softmax is defined.
        return torch.softmax(scores, dim=1), frames


class AttentiveStatisticsPooling(AttentionPooling):
    """Attention-weighted mean and standard deviation, concatenated.

    The official challenge baseline's pooling (Okabe et al. 2018): the same
    attention weights as :class:`AttentionPooling` give a weighted mean
    ``mu`` and a weighted standard deviation ``sqrt(sum w h^2 - mu^2)``;
    the output has ``2 * input_size`` features.

    Example
    -------
    >>> pool = AttentiveStatisticsPooling(input_size=3)
    >>> out = pool(torch.ones(2, 4, 3), torch.tensor([1.0, 0.5])).detach()
    >>> out.shape, out[:, :3].tolist() == [[1.0] * 3] * 2, bool((out[:, 3:] < 1e-2).all())
    (torch.Size([2, 6]), True, True)
    """

    #: Floor of the variance, so the square root has finite gradients on constant frames.
    VARIANCE_FLOOR = 1e-5

    def forward(self, x, lengths=None):
        """Pool ``x (batch, time, features)`` to ``(batch, 2 * features)``."""
        weights, frames = self._weights_and_frames(x, lengths)
        weights = weights.unsqueeze(-1)
        mean = (weights * frames).sum(dim=1)
        variance = (weights * frames.pow(2)).sum(dim=1) - mean.pow(2)
        return torch.cat([mean, variance.clamp_min(self.VARIANCE_FLOOR).sqrt()], dim=-1)
