"""NLL and Jeffreys losses against direct evaluations of their formulas."""

import decimal
import math

import pytest
import torch
import torch.nn.functional as F

from ser.metrics import concordance_cc
from ser.nn.losses import CCCLoss, FocalLoss, JeffreysLoss, NLLLoss, jeffreys_loss

K = 8
# System D's optional class weights (A C D F H N S U), from the authors' recipe.
CLASS_WEIGHTS = [3.2, 3.5, 6.4, 9.0, 1.1, 1.0, 2.5, 5.1]


def eq1_direct(logits, targets, alpha, beta, target_weight=1.0, class_weights=None,
               digits=None):
    """Paper Eq. 1 written out term by term, from softmax probabilities.

    Float64 by default; with ``digits``, in decimal arithmetic of that many
    significant digits, where ``1 - p_k`` keeps its precision even for p_k
    within 1e-13 of 1.
    """
    if digits is None:
        number, exp, log = float, math.exp, math.log
    else:
        decimal.getcontext().prec = digits
        number, exp, log = decimal.Decimal, decimal.Decimal.exp, decimal.Decimal.ln
    alpha, beta, target_weight = number(alpha), number(beta), number(target_weight)
    total, weight_sum = number(0), number(0)
    for row, k in zip(logits.double().tolist(), targets.tolist(), strict=True):
        exps = [exp(number(z) - number(max(row))) for z in row]
        p = [e / sum(exps) for e in exps]
        others = [i for i in range(len(p)) if i != k]
        loss = (
            -target_weight * log(p[k])
            - alpha * sum(log(p[i]) for i in others) / (len(p) - 1)
            + beta * sum(p[i] * log(p[i]) for i in others) / (1 - p[k])
        )
        w = number(1) if class_weights is None else number(class_weights[k])
        total += w * loss
        weight_sum += w
    return float(total / weight_sum)


def _random_batch(seed, batch=16, scale=3.0):
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(batch, K, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, K, (batch,), generator=generator)
    return logits, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha,beta", [(0.1, 0.025), (0.3, 0.2), (0.0, 0.5)])
def test_jeffreys_equals_direct_eq1(seed, alpha, beta):
    logits, targets = _random_batch(seed)
    value = JeffreysLoss(alpha, beta)(logits.log_softmax(-1), targets)
    assert value.item() == pytest.approx(eq1_direct(logits, targets, alpha, beta), rel=1e-10)


def test_jeffreys_in_float32_is_close_to_float64_eq1():
    logits, targets = _random_batch(3)
    value = JeffreysLoss()(logits.float().log_softmax(-1), targets)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(eq1_direct(logits, targets, 0.1, 0.025), rel=1e-5)


def test_scaled_target_term_matches_authors_variant():
    logits, targets = _random_batch(4)
    alpha, beta = 0.1, 0.025
    loss = JeffreysLoss(alpha, beta, scale_target_term=True)
    expected = eq1_direct(logits, targets, alpha, beta, target_weight=1 - alpha - beta)
    assert loss(logits.log_softmax(-1), targets).item() == pytest.approx(expected, rel=1e-10)
    unscaled = JeffreysLoss(alpha, beta)(logits.log_softmax(-1), targets).item()
    assert unscaled != pytest.approx(expected, rel=1e-3)


def test_jeffreys_is_cross_entropy_at_zero_alpha_beta():
    logits, targets = _random_batch(5)
    for scale in (False, True):
        value = JeffreysLoss(0.0, 0.0, scale_target_term=scale)(logits.log_softmax(-1), targets)
        torch.testing.assert_close(value, F.cross_entropy(logits, targets))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale_target_term", [False, True])
def test_finite_loss_and_gradients_when_target_prob_goes_to_one(dtype, scale_target_term):
    logits = torch.zeros(3, K, dtype=dtype)
    logits[:, 0] = torch.tensor([30.0, 100.0, 1000.0], dtype=dtype)
    logits.requires_grad_(True)
    loss = JeffreysLoss(scale_target_term=scale_target_term)
    value = loss(logits.log_softmax(-1), torch.zeros(3, dtype=torch.long))
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()
    # The alpha term still pushes the squashed non-target logits up.
    assert (logits.grad[:, 1:] < 0).all()


@pytest.mark.parametrize("target_logit", [12.0, 30.0, 100.0])
def test_stays_exact_when_target_prob_is_near_one(target_logit):
    # Against Eq. 1 in 60-digit decimals: written naively in float64, 1 - p_k
    # loses most of its digits here (at 30, about 1e-3 relative error).
    logits = torch.zeros(2, K, dtype=torch.float64)
    logits[:, 0] = target_logit
    logits[1, 4] = -target_logit
    targets = torch.tensor([0, 0])
    value = JeffreysLoss()(logits.log_softmax(-1), targets).item()
    assert value == pytest.approx(eq1_direct(logits, targets, 0.1, 0.025, digits=60), rel=1e-12)


def test_finite_loss_and_gradients_when_a_non_target_prob_goes_to_zero():
    logits = torch.zeros(2, K)
    logits[:, 3] = -1000.0  # p_3 underflows to exactly 0 in float32
    logits[1, 5] = float("-inf")  # and a log-prob of -inf
    logits.requires_grad_(True)
    log_probs = logits.log_softmax(-1)
    assert log_probs.exp()[0, 3] == 0
    value = jeffreys_loss(log_probs, torch.tensor([0, 1]))
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()
    # The alpha term keeps pulling the vanished class up (negative gradient).
    assert logits.grad[0, 3] < 0


def test_class_weights_match_torch_weighted_nll():
    logits, targets = _random_batch(6, batch=32)
    log_probs = logits.log_softmax(-1)
    weights = torch.tensor(CLASS_WEIGHTS, dtype=torch.float64)
    expected = F.nll_loss(log_probs, targets, weight=weights)
    torch.testing.assert_close(NLLLoss(CLASS_WEIGHTS)(log_probs, targets), expected)
    # Jeffreys at alpha = beta = 0 reduces the same way.
    torch.testing.assert_close(JeffreysLoss(0.0, 0.0, class_weights=CLASS_WEIGHTS)(
        log_probs, targets), expected)


def test_jeffreys_class_weights_weight_each_sample():
    logits, targets = _random_batch(7, batch=24)
    value = JeffreysLoss(class_weights=CLASS_WEIGHTS)(logits.log_softmax(-1), targets)
    expected = eq1_direct(logits, targets, 0.1, 0.025, class_weights=CLASS_WEIGHTS)
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_nll_without_weights_is_torch_nll():
    logits, targets = _random_batch(8)
    log_probs = logits.log_softmax(-1)
    torch.testing.assert_close(NLLLoss()(log_probs, targets), F.nll_loss(log_probs, targets))


@pytest.mark.parametrize("loss", [NLLLoss(), JeffreysLoss()], ids=["nll", "jeffreys"])
def test_speechbrain_shapes_are_accepted(loss):
    logits, targets = _random_batch(9)
    log_probs = logits.log_softmax(-1)
    flat = loss(log_probs, targets)
    speechbrain_style = loss(log_probs.unsqueeze(1), targets.unsqueeze(1))
    torch.testing.assert_close(speechbrain_style, flat)
    assert flat.dim() == 0


def test_bad_inputs_give_clear_errors():
    log_probs = torch.zeros(2, K).log_softmax(-1)
    with pytest.raises(ValueError, match=r"targets\[1\] = 8 is not a class index"):
        JeffreysLoss()(log_probs, torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="integer class indices"):
        NLLLoss()(log_probs, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="targets must have shape"):
        NLLLoss()(log_probs, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="log_probs must have shape"):
        NLLLoss()(torch.zeros(2, 3, K), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class_weights has 3 entries but log_probs has 8"):
        NLLLoss([1.0, 2.0, 3.0])(log_probs, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class_weights must be finite"):
        JeffreysLoss(class_weights=[1.0, -1.0])


@pytest.mark.parametrize("seed", [0, 1])
def test_focal_with_gamma_zero_and_no_weights_is_nll(seed):
    logits, targets = _random_batch(seed)
    log_probs = logits.log_softmax(-1)
    torch.testing.assert_close(FocalLoss(gamma=0.0)(log_probs, targets), F.nll_loss(log_probs, targets))


def test_focal_equals_direct_formula_with_class_weights():
    logits, targets = _random_batch(6)
    p = logits.softmax(-1)
    gamma, weights = 2.0, torch.tensor(CLASS_WEIGHTS, dtype=torch.float64)
    per_sample = [-(1 - p[b, k]) ** gamma * math.log(p[b, k]) for b, k in enumerate(targets.tolist())]
    w = weights[targets]
    expected = float(sum(wi * li for wi, li in zip(w.tolist(), per_sample, strict=True)) / w.sum())
    value = FocalLoss(gamma, class_weights=CLASS_WEIGHTS)(logits.log_softmax(-1), targets)
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_soft_targets_of_one_hot_give_the_hard_loss():
    logits, targets = _random_batch(7)
    log_probs = logits.log_softmax(-1)
    one_hot = F.one_hot(targets, K).double()
    for loss in (NLLLoss(CLASS_WEIGHTS), FocalLoss(1.5, CLASS_WEIGHTS)):
        torch.testing.assert_close(loss(log_probs, one_hot), loss(log_probs, targets))
    with pytest.raises(ValueError, match="not soft targets"):
        JeffreysLoss()(log_probs, one_hot)
    with pytest.raises(ValueError, match="is not a distribution"):
        NLLLoss()(log_probs, one_hot * 2)


def test_soft_cross_entropy_equals_direct_sum():
    logits, _ = _random_batch(8)
    q = torch.rand(logits.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    q = q / q.sum(-1, keepdim=True)
    expected = -(q * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(NLLLoss()(logits.log_softmax(-1), q), expected)


def test_auto_class_weights_must_be_set_before_use():
    log_probs = torch.zeros(2, K).log_softmax(-1)
    loss = NLLLoss(class_weights="auto")
    with pytest.raises(ValueError, match="'auto' but no class counts"):
        loss(log_probs, torch.tensor([0, 1]))
    loss.set_class_weights(CLASS_WEIGHTS)
    expected = F.nll_loss(log_probs, torch.tensor([0, 1]), weight=torch.tensor(CLASS_WEIGHTS))
    torch.testing.assert_close(loss(log_probs, torch.tensor([0, 1])).float(), expected)


@pytest.mark.parametrize("targets", [[[4.0, 2.0, 5.0], [4.0, 3.0, 5.0]], [[4.0, 2.0, 5.0], [4.0, 2.0, 5.0]]],
                         ids=["batch_of_2", "batch_of_2_equal"])
def test_ccc_loss_has_finite_gradients_on_a_batch_of_two(targets):
    predictions = torch.tensor([[3.9, 2.1, 5.0], [3.9, 2.1, 5.0]], requires_grad=True)
    loss = CCCLoss()(predictions, torch.tensor(targets))
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(predictions.grad).all())
    assert 0.0 <= float(loss.detach()) <= 2.0


def test_ccc_loss_is_one_minus_the_float64_ccc():
    generator = torch.Generator().manual_seed(0)
    y = 1 + 6 * torch.rand(64, 3, generator=generator, dtype=torch.float64)
    x = y + torch.randn(64, 3, generator=generator, dtype=torch.float64)
    expected = 1 - sum(concordance_cc(x[:, i].numpy(), y[:, i].numpy()) for i in range(3)) / 3
    assert float(CCCLoss()(x, y)) == pytest.approx(expected, abs=1e-5)
