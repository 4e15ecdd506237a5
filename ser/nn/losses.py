"""Training losses: classification on log-softmax outputs, and the CCC loss of Task 2.

The classification losses (NLL, focal, Jeffreys) take ``log_probs`` of shape
``(batch, n_classes)``, or ``(batch, 1, n_classes)`` as SpeechBrain
classifiers produce, and integer ``targets`` of shape ``(batch,)`` or
``(batch, 1)``; NLL and focal also take *soft* targets, ``(batch, n_classes)``
float distributions (the annotators' votes). All return the (optionally
class-weighted) mean over the batch, as a scalar. ``class_weights="auto"``
leaves the weights to be set from the training manifest's class counts
(:meth:`ClassWeightedLoss.set_class_weights`, done by ``train.py``).

:class:`CCCLoss` is ``1 - CCC`` (concordance correlation coefficient, the
Task 2 metric) averaged over the attributes, on a batch of predictions.

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

from ser.errors import UserInputError

__all__ = ["LossSettingsError", "classification_loss", "NLLLoss", "FocalLoss", "JeffreysLoss", "CCCLoss",
           "ClassWeightedLoss", "jeffreys_loss", "batch_ccc", "weighted_mean"]

#: Added to the CCC denominator: a batch of 2 equal targets and predictions
#: would otherwise divide 0 by 0 (loss and gradients nan).
CCC_EPSILON = 1e-6

# Floor for log-probabilities. Log-softmax of finite logits is always finite,
# so this only replaces -inf (a logit of -inf), which would make Eq. 1
# infinite and its gradients nan; exp(-1e4) is 0 in every float type.
_LOG_PROB_FLOOR = -1e4


def _flat_log_probs(log_probs):
    if log_probs.dim() == 3 and log_probs.shape[1] == 1:
        log_probs = log_probs.squeeze(1)
    if log_probs.dim() != 2:
        raise ValueError(
            "log_probs must have shape (batch, n_classes) or (batch, 1, n_classes), "
            f"got shape {tuple(log_probs.shape)}"
        )
    return log_probs


def is_soft(targets, log_probs):
    """Whether ``targets`` are distributions ``(batch, K)`` rather than class indices.

    Example
    -------
    >>> lp = torch.zeros(2, 3)
    >>> is_soft(torch.tensor([0, 2]), lp), is_soft(torch.full((2, 3), 1 / 3), lp)
    (False, True)
    """
    log_probs = _flat_log_probs(log_probs)
    return (targets.dtype.is_floating_point and targets.dim() == 2
            and tuple(targets.shape) == tuple(log_probs.shape) and log_probs.shape[1] > 1)


def _flatten_soft(log_probs, targets):
    """Bring soft targets to ``(batch, K)`` distributions, or raise naming the row."""
    log_probs = _flat_log_probs(log_probs)
    targets = targets.to(log_probs.dtype)
    sums = targets.sum(dim=1)
    bad = ~targets.isfinite().all(dim=1) | (targets < 0).any(dim=1) | ((sums - 1).abs() > 1e-3)
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0])
        raise ValueError(f"soft targets[{row}] = {targets[row].tolist()} is not a distribution "
                         "(non-negative, summing to 1)")
    return log_probs, targets


def _flatten(log_probs, targets):
    """Bring inputs to ``(batch, K)`` floats and ``(batch,)`` longs, or raise."""
    log_probs = _flat_log_probs(log_probs)
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


class LossSettingsError(UserInputError, ValueError):
    """A loss setting of the YAML (``loss``, ``class_weights``) that cannot work."""


def _class_weight_tensor(class_weights):
    if class_weights is None or (isinstance(class_weights, str) and class_weights == "auto"):
        return None
    expected = "class_weights must be a list of numbers (one per class), 'auto' or null"
    if isinstance(class_weights, (str, bool)):
        raise LossSettingsError(f"{expected}, not {class_weights!r}")
    try:
        # float64 so that YAML values like 3.2 stay exact; cast to the loss's dtype at use.
        weights = torch.as_tensor(class_weights, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise LossSettingsError(f"{expected}, not {class_weights!r}") from None
    if weights.numel() == 0 or bool((weights < 0).any()) or not bool(weights.isfinite().all()):
        raise LossSettingsError(f"class_weights must be finite and >= 0, got {class_weights!r}")
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
        ``(batch,)`` class indices, or ``(batch, n_classes)`` soft targets.
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
    weights = class_weights.to(per_sample.device, per_sample.dtype)
    # Soft targets: a turn weighs the expected weight of its classes.
    sample_weights = targets.to(per_sample.dtype) @ weights if targets.dim() == 2 else weights[targets]
    return (sample_weights * per_sample).sum() / sample_weights.sum().clamp_min(1e-12)


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


class ClassWeightedLoss(nn.Module):
    """Base of the classification losses: holds optional per-class weights.

    Parameters
    ----------
    class_weights : sequence of float, "auto" or None
        One weight per class in class order (a list from YAML); ``"auto"``:
        to be set by :meth:`set_class_weights` from the training class
        counts before training (``train.py`` does it, official baseline's
        ``w_c = N / (K * N_c)``); None: unweighted.
    """

    def __init__(self, class_weights=None):
        super().__init__()
        self.auto_weights = isinstance(class_weights, str) and class_weights == "auto"
        # A buffer, so that .to(device) moves it and checkpoints keep it.
        self.register_buffer("class_weights", _class_weight_tensor(class_weights))

    def set_class_weights(self, class_weights):
        """Replace the class weights (e.g. the ``"auto"`` ones, once counted).

        Example
        -------
        >>> loss = NLLLoss(class_weights="auto")
        >>> loss.set_class_weights([1.0, 3.0])
        >>> loss.class_weights.tolist()
        [1.0, 3.0]
        """
        weights = _class_weight_tensor(class_weights)
        if weights is not None and self.class_weights is not None:
            weights = weights.to(self.class_weights.device)
        self.class_weights = weights

    def _checked_weights(self, n_classes):
        if self.auto_weights and self.class_weights is None:
            raise ValueError("class_weights is 'auto' but no class counts were given "
                             "(set_class_weights was not called)")
        _check_weights_match(self.class_weights, n_classes)
        return self.class_weights


class NLLLoss(ClassWeightedLoss):
    """Negative log-likelihood on log-softmax outputs, optional class weights.

    With soft targets (``(batch, K)`` distributions, e.g. the annotators'
    votes) it is the soft cross-entropy ``-sum_c q_c log p_c``.

    Parameters
    ----------
    class_weights : sequence of float, "auto" or None
        One weight per class in class order (e.g. a list from YAML); the
        batch mean is weighted like ``torch.nn.functional.nll_loss(weight=)``
        (soft targets: a turn weighs ``sum_c q_c w_c``). See
        :class:`ClassWeightedLoss`.

    Example
    -------
    >>> loss = NLLLoss(class_weights=[1.0, 2.0])
    >>> lp = torch.tensor([[[-0.1, -2.4]], [[-1.2, -0.4]]])  # (batch, 1, K)
    >>> round(float(loss(lp, torch.tensor([[0], [1]]))), 4)
    0.3
    >>> round(float(NLLLoss()(lp, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))), 4)
    0.825
    """

    def forward(self, log_probs, targets):
        """Weighted mean NLL of ``targets`` under ``log_probs``.

        Example
        -------
        >>> float(NLLLoss()(torch.tensor([[-0.5, -1.0]]), torch.tensor([1])))
        1.0
        """
        if is_soft(targets, log_probs):
            log_probs, targets = _flatten_soft(log_probs, targets)
            per_sample = -(targets * log_probs.clamp_min(_LOG_PROB_FLOOR)).sum(dim=1)
        else:
            log_probs, targets = _flatten(log_probs, targets)
            per_sample = -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
        return weighted_mean(per_sample, targets, self._checked_weights(log_probs.shape[1]))


class FocalLoss(ClassWeightedLoss):
    """Focal loss ``-w_k (1 - p_k)^gamma log p_k`` (Lin et al. 2017).

    The Odyssey 2024 challenge winner's loss, with class-prior weights
    (``class_weights="auto"``: ``w_c = N / (K * N_c)``). Easy turns
    (``p_k`` near 1) weigh little, so the rare classes' hard turns drive
    the gradient. ``gamma = 0`` without weights is plain NLL. Soft targets:
    ``-sum_c q_c (1 - p_c)^gamma log p_c``.

    Parameters
    ----------
    gamma : float
        Focusing exponent, >= 0 (2 in the focal-loss paper).
    class_weights : sequence of float, "auto" or None
        See :class:`ClassWeightedLoss`.

    Example
    -------
    >>> lp = torch.tensor([[0.9, 0.1]]).log()
    >>> round(float(FocalLoss(gamma=2.0)(lp, torch.tensor([0]))), 6)  # 0.1^2 * -log 0.9
    0.001054
    """

    def __init__(self, gamma=2.0, class_weights=None):
        super().__init__(class_weights)
        if not gamma >= 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def forward(self, log_probs, targets):
        """Weighted mean focal loss of ``targets`` under ``log_probs``."""
        if is_soft(targets, log_probs):
            log_probs, targets = _flatten_soft(log_probs, targets)
            log_probs = log_probs.clamp_min(_LOG_PROB_FLOOR)
            focus = (1.0 - log_probs.exp()).clamp_min(0.0) ** self.gamma
            per_sample = -(targets * focus * log_probs).sum(dim=1)
        else:
            log_probs, targets = _flatten(log_probs, targets)
            target_log_prob = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
            focus = (1.0 - target_log_prob.exp()).clamp_min(0.0) ** self.gamma
            per_sample = -focus * target_log_prob
        return weighted_mean(per_sample, targets, self._checked_weights(log_probs.shape[1]))

    def extra_repr(self):
        return f"gamma={self.gamma}"


class JeffreysLoss(ClassWeightedLoss):
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
        super().__init__(class_weights)
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.scale_target_term = bool(scale_target_term)

    def forward(self, log_probs, targets):
        """Weighted mean Jeffreys loss of ``targets`` under ``log_probs``.

        Example
        -------
        >>> lp = torch.tensor([[0.0, -50.0]])
        >>> bool(torch.isfinite(JeffreysLoss()(lp, torch.tensor([0]))))
        True
        """
        if is_soft(targets, log_probs):
            raise ValueError("the Jeffreys loss takes class indices, not soft targets "
                             "(soft_labels: use loss nll or focal)")
        return jeffreys_loss(
            log_probs,
            targets,
            alpha=self.alpha,
            beta=self.beta,
            scale_target_term=self.scale_target_term,
            class_weights=self._checked_weights(_flat_log_probs(log_probs).shape[1]),
        )

    def extra_repr(self):
        return (
            f"alpha={self.alpha}, beta={self.beta}, scale_target_term={self.scale_target_term}"
        )


def batch_ccc(predictions, targets, epsilon=CCC_EPSILON):
    """Concordance correlation coefficient of each column, on one batch.

    ``CCC = 2 cov(x, y) / (var x + var y + (mean x - mean y)^2)`` with
    population (biased) moments, as the challenge scores it; ``epsilon`` in
    the denominator keeps a batch of 2 (or of equal values) finite, with
    finite gradients.

    Parameters
    ----------
    predictions, targets : torch.Tensor
        ``(batch, n_attributes)``.
    epsilon : float
        Added to the denominator.

    Returns
    -------
    torch.Tensor
        ``(n_attributes,)``.

    Example
    -------
    >>> y = torch.tensor([[1.0], [2.0], [4.0]])
    >>> round(float(batch_ccc(y, y)[0]), 5), round(float(batch_ccc(y + 1, y)[0]), 4)
    (1.0, 0.7568)
    """
    if predictions.shape != targets.shape or predictions.dim() != 2:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} "
                         "must both be (batch, n_attributes)")
    x, y = predictions.float(), targets.to(predictions.device).float()
    mean_x, mean_y = x.mean(dim=0), y.mean(dim=0)
    dx, dy = x - mean_x, y - mean_y
    covariance = (dx * dy).mean(dim=0)
    denominator = (dx**2).mean(dim=0) + (dy**2).mean(dim=0) + (mean_x - mean_y) ** 2
    return 2.0 * covariance / (denominator + epsilon)


class CCCLoss(nn.Module):
    """``1 - CCC`` per attribute, averaged (the official Task 2 baseline's loss).

    Parameters
    ----------
    weights : sequence of float, optional
        One weight per attribute (default: equal); normalised to sum to 1.

    Example
    -------
    >>> y = torch.tensor([[1.0, 5.0], [3.0, 2.0], [6.0, 4.0]])
    >>> round(float(CCCLoss()(y, y)), 4)
    0.0
    >>> bool(CCCLoss()(torch.full((3, 2), 4.0), y) > 0.99)  # constant prediction: CCC 0
    True
    """

    def __init__(self, weights=None):
        super().__init__()
        self.register_buffer("weights", None if weights is None
                             else torch.as_tensor(weights, dtype=torch.float32))

    def forward(self, predictions, targets):
        """Weighted mean of ``1 - CCC`` over the attributes (columns)."""
        losses = 1.0 - batch_ccc(predictions, targets)
        if self.weights is None:
            return losses.mean()
        if self.weights.numel() != losses.numel():
            raise ValueError(f"CCCLoss has {self.weights.numel()} weights for {losses.numel()} attributes")
        weights = self.weights.to(losses.device)
        return (weights * losses).sum() / weights.sum()


def classification_loss(name="nll", class_weights=None, gamma=2.0, alpha=0.1, beta=0.025):
    """The classification loss a YAML's ``loss`` key names.

    Parameters
    ----------
    name : {"nll", "focal", "jeffreys"}
        ``nll``: softmax + NLL (systems A, C, D, E); ``focal``:
        :class:`FocalLoss` (``gamma``); ``jeffreys``: :class:`JeffreysLoss`
        (``alpha``, ``beta``; system B).
    class_weights : sequence of float, "auto" or None
        See :class:`ClassWeightedLoss`.

    Example
    -------
    >>> classification_loss("focal", gamma=1.0)
    FocalLoss(gamma=1.0)
    """
    if name == "nll":
        return NLLLoss(class_weights)
    if name == "focal":
        return FocalLoss(gamma, class_weights)
    if name == "jeffreys":
        return JeffreysLoss(alpha, beta, class_weights=class_weights)
    raise LossSettingsError(f"loss must be nll, focal or jeffreys, not {name!r}")
