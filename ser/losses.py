"""Classification losses on log-softmax outputs: NLL and the Jeffreys loss.

Both take ``log_probs`` of shape ``(batch, n_classes)``, or
``(batch, 1, n_classes)`` as SpeechBrain classifiers produce, and integer
``targets`` of shape ``(batch,)`` or ``(batch, 1)``; both return the
(optionally class-weighted) mean over the batch, as a scalar.

The Jeffreys loss is system B's loss (paper §6.2, Eq. 1). With
``p = softmax(z)``, target ``k`` and ``K`` classes::

    L = -log p_k - alpha * sum_{i!=k} log p_i / (K - 1)
                 + beta * sum_{i!=k} p_i log p_i / (1 - p_k)

The second term is a label-smoothing-like push on every non-target class;
the third is the Jeffreys divergence term, which spreads the non-target
mass evenly. With alpha = beta = 0 it is plain cross-entropy.
"""

import torch
from torch import nn

__all__ = ["NLLLoss", "JeffreysLoss", "jeffreys_loss", "weighted_mean"]

# Floor for log-probabilities. Log-softmax of finite logits is always finite,
# so this only replaces -inf (a logit of -inf), which would make Eq. 1
# infinite and its gradients nan; exp(-1e4) is 0 in every float type.
_LOG_PROB_FLOOR = -1e4


def _flatten(log_probs, targets):
    """Bring inputs to ``(batch, K)`` floats and ``(batch,)`` longs, or raise."""
    if log_probs.dim() == 3 and log_probs.shape[1] == 1:
        log_probs = log_probs.squeeze(1)
    if log_probs.dim() != 2:
        raise ValueError(
            "log_probs must have shape (batch, n_classes) or (batch, 1, n_classes), "
            f"got shape {tuple(log_probs.shape)}"
        )
    if targets.dim() == 2 and targets.shape[1] == 1:
        targets = targets.squeeze(1)
    if targets.dim() != 1 or targets.shape[0] != log_probs.shape[0]:
        raise ValueError(
            f"targets must have shape ({log_probs.shape[0]},) or ({log_probs.shape[0]}, 1) "
            f"to match log_probs, got shape {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer class indices, got dtype {targets.dtype}")
    n_classes = log_probs.shape[1]
    out_of_range = (targets < 0) | (targets >= n_classes)
    if bool(out_of_range.any()):
        row = int(torch.nonzero(out_of_range)[0])
        raise ValueError(
            f"targets[{row}] = {int(targets[row])} is not a class index in [0, {n_classes})"
        )
    return log_probs, targets.long()


def _class_weight_tensor(class_weights):
    if class_weights is None:
        return None
    # float64 so that YAML values like 3.2 stay exact; cast to the loss's dtype at use.
    weights = torch.as_tensor(class_weights, dtype=torch.float64).flatten()
    if weights.numel() == 0 or bool((weights < 0).any()) or not bool(weights.isfinite().all()):
        raise ValueError(f"class_weights must be finite and >= 0, got {class_weights!r}")
    return weights


def weighted_mean(per_sample, targets, class_weights=None):
    """Mean of per-sample losses, weighted by the class weight of each target.

    Same reduction as ``torch.nn.functional.nll_loss(weight=...)``:
    ``sum_b w[y_b] * loss_b / sum_b w[y_b]``; a plain mean without weights.

    Parameters
    ----------
    per_sample : torch.Tensor
        ``(batch,)`` losses.
    targets : torch.Tensor
        ``(batch,)`` class indices.
    class_weights : torch.Tensor, optional
        ``(n_classes,)`` non-negative weights.

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> weighted_mean(torch.tensor([1.0, 3.0]), torch.tensor([0, 1]), torch.tensor([1.0, 3.0]))
    tensor(2.5000)
    """
    if class_weights is None:
        return per_sample.mean()
    sample_weights = class_weights.to(per_sample.device, per_sample.dtype)[targets]
    return (sample_weights * per_sample).sum() / sample_weights.sum()


def _check_weights_match(class_weights, n_classes):
    if class_weights is not None and class_weights.numel() != n_classes:
        raise ValueError(
            f"class_weights has {class_weights.numel()} entries but log_probs has "
            f"{n_classes} classes"
        )


def jeffreys_loss(log_probs, targets, alpha=0.1, beta=0.025, scale_target_term=False,
                  class_weights=None):
    """Jeffreys loss (paper Eq. 1), mean over the batch.

    Computed from log-probabilities, never from probabilities that may
    underflow. The third term is evaluated in the equivalent form
    ``sum_{i!=k} q_i log p_i`` with ``q = softmax`` of the non-target
    log-probabilities (``q_i = p_i / sum_{j!=k} p_j = p_i / (1 - p_k)``),
    so ``1 - p_k -> 0`` needs no floor: loss and gradients stay finite when
    ``p_k -> 1`` or when some ``p_i -> 0``.

    Parameters
    ----------
    log_probs : torch.Tensor
        ``(batch, K)`` or ``(batch, 1, K)`` log-softmax outputs, K >= 2.
    targets : torch.Tensor
        ``(batch,)`` or ``(batch, 1)`` class indices.
    alpha : float
        Weight of the non-target log-likelihood term.
    beta : float
        Weight of the non-target entropy (Jeffreys divergence) term.
    scale_target_term : bool
        False: Eq. 1 exactly, ``-log p_k`` with weight 1. True: weight
        ``-log p_k`` by ``(1 - alpha - beta)``, as the authors' public code
        (speaker recognition) does.
    class_weights : sequence of float or torch.Tensor, optional
        Per-class weights; the mean is weighted as in ``nll_loss(weight=)``.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> logits = torch.tensor([[2.0, 0.0, -1.0]])
    >>> ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
    >>> lp = logits.log_softmax(-1)
    >>> bool(torch.isclose(jeffreys_loss(lp, torch.tensor([0]), 0.0, 0.0), ce))
    True
    >>> round(float(jeffreys_loss(lp, torch.tensor([0]))), 4)
    0.3759
    """
    log_probs, targets = _flatten(log_probs, targets)
    n_classes = log_probs.shape[1]
    if n_classes < 2:
        raise ValueError(f"the Jeffreys loss needs at least 2 classes, got {n_classes}")
    weights = _class_weight_tensor(class_weights)
    _check_weights_match(weights, n_classes)

    log_probs = log_probs.clamp_min(_LOG_PROB_FLOOR)
    is_target = nn.functional.one_hot(targets, n_classes).bool()
    target_log_prob = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)

    non_target = log_probs.masked_fill(is_target, 0.0)
    mean_non_target_log_prob = non_target.sum(dim=1) / (n_classes - 1)

    # q_i = p_i / (1 - p_k): the non-target distribution, renormalised.
    q = torch.softmax(log_probs.masked_fill(is_target, float("-inf")), dim=1)
    jeffreys_term = (q * non_target).sum(dim=1)

    target_weight = (1.0 - alpha - beta) if scale_target_term else 1.0
    per_sample = (
        -target_weight * target_log_prob
        - alpha * mean_non_target_log_prob
        + beta * jeffreys_term
    )
    return weighted_mean(per_sample, targets, weights)


class NLLLoss(nn.Module):
    """Negative log-likelihood on log-softmax outputs, optional class weights.

    Parameters
    ----------
    class_weights : sequence of float, optional
        One weight per class in class order (e.g. a list from YAML); the
        batch mean is weighted like ``torch.nn.functional.nll_loss(weight=)``.

    Example
    -------
    >>> loss = NLLLoss(class_weights=[1.0, 2.0])
    >>> lp = torch.tensor([[[-0.1, -2.4]], [[-1.2, -0.4]]])  # (batch, 1, K)
    >>> round(float(loss(lp, torch.tensor([[0], [1]]))), 4)
    0.3
    """

    def __init__(self, class_weights=None):
        super().__init__()
        weights = _class_weight_tensor(class_weights)
        # A buffer, so that .to(device) moves it and checkpoints keep it.
        self.register_buffer("class_weights", weights)

    def forward(self, log_probs, targets):
        """Weighted mean NLL of ``targets`` under ``log_probs``.

        Example
        -------
        >>> float(NLLLoss()(torch.tensor([[-0.5, -1.0]]), torch.tensor([1])))
        1.0
        """
        log_probs, targets = _flatten(log_probs, targets)
        _check_weights_match(self.class_weights, log_probs.shape[1])
        per_sample = -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
        return weighted_mean(per_sample, targets, self.class_weights)


class JeffreysLoss(nn.Module):
    """Jeffreys loss of paper Eq. 1 (system B, §6.2); see :func:`jeffreys_loss`.

    Parameters
    ----------
    alpha : float
        Weight of the non-target log-likelihood term (authors: 0.1).
    beta : float
        Weight of the Jeffreys divergence term (authors: 0.025).
    scale_target_term : bool
        Weight ``-log p_k`` by ``(1 - alpha - beta)`` as in the authors'
        public code, instead of by 1 as in Eq. 1.
    class_weights : sequence of float, optional
        Per-class weights, as in :class:`NLLLoss`.

    Example
    -------
    >>> loss = JeffreysLoss(alpha=0.1, beta=0.025)
    >>> lp = torch.tensor([[100.0, 0.0, 0.0]]).log_softmax(-1)
    >>> value = loss(lp, torch.tensor([0]))
    >>> bool(torch.isfinite(value)), round(float(value), 3)
    (True, 7.5)
    """

    def __init__(self, alpha=0.1, beta=0.025, scale_target_term=False, class_weights=None):
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.scale_target_term = bool(scale_target_term)
        self.register_buffer("class_weights", _class_weight_tensor(class_weights))

    def forward(self, log_probs, targets):
        """Weighted mean Jeffreys loss of ``targets`` under ``log_probs``.

        Example
        -------
        >>> lp = torch.tensor([[0.0, -50.0]])
        >>> bool(torch.isfinite(JeffreysLoss()(lp, torch.tensor([0]))))
        True
        """
        return jeffreys_loss(
            log_probs,
            targets,
            alpha=self.alpha,
            beta=self.beta,
            scale_target_term=self.scale_target_term,
            class_weights=self.class_weights,
        )

    def extra_repr(self):
        return (
            f"alpha={self.alpha}, beta={self.beta}, scale_target_term={self.scale_target_term}"
        )
