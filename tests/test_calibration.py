"""Temperature scaling, ECE and the reliability diagram (ser.calibration).

The miscalibrated inputs are built so that the right answer is known: labels are drawn from
``softmax(z)`` itself, so ``z`` is calibrated by construction, and ``3 z`` (overconfident) or
``z / 3`` (underconfident) must be brought back to a temperature of 3 or 1/3.
"""

import numpy as np
import pytest

from ser.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    plot_reliability_diagram,
    reliability_bins,
    scaled_softmax,
)
from ser.emotions import EMOTIONS

CLASSES = "".join(EMOTIONS)


def _calibrated_logits(n, seed):
    """Logits and labels drawn from their own softmax: calibrated at temperature 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, len(CLASSES)))
    logits[np.arange(n), rng.integers(0, len(CLASSES), n)] += 2.0
    probabilities = scaled_softmax(logits)
    rows = (probabilities.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return logits, np.asarray(list(CLASSES))[np.minimum(rows, len(CLASSES) - 1)]


@pytest.mark.parametrize("scale", [3.0, 1 / 3])
def test_temperature_scaling_repairs_a_known_miscalibration(scale):
    logits, labels = _calibrated_logits(8000, seed=0)
    fit, held_out = slice(0, 4000), slice(4000, None)
    scores = scale * logits
    temperature = fit_temperature(scores[fit], labels[fit], CLASSES)
    assert temperature == pytest.approx(scale, rel=0.1)
    before = scaled_softmax(scores[held_out])
    after = scaled_softmax(scores[held_out], temperature)
    ece_before = expected_calibration_error(before, labels[held_out], CLASSES)
    ece_after = expected_calibration_error(after, labels[held_out], CLASSES)
    assert ece_before > 0.1 and ece_after < 0.03 and ece_after < ece_before / 4
    assert negative_log_likelihood(after, labels[held_out], CLASSES) < negative_log_likelihood(
        before, labels[held_out], CLASSES)
    # A temperature never changes the predicted class.
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()


def test_ece_and_bins_match_a_plain_loop():
    rng = np.random.default_rng(1)
    probabilities = scaled_softmax(rng.normal(0, 2, (500, 8)))
    labels = np.asarray(list(CLASSES))[rng.integers(0, 8, 500)]
    bins = reliability_bins(probabilities, labels, CLASSES, n_bins=10)
    total, edges = 0.0, np.linspace(0, 1, 11)
    for b in range(10):
        # A softmax over 8 classes never gives a top probability of 0: every bin is (low, high].
        members = [i for i in range(500) if edges[b] < probabilities[i].max() <= edges[b + 1]]
        assert bins["count"][b] == len(members)
        if members:
            confidence = np.mean([probabilities[i].max() for i in members])
            accuracy = np.mean([CLASSES[probabilities[i].argmax()] == labels[i] for i in members])
            assert bins["confidence"][b] == pytest.approx(confidence)
            assert bins["accuracy"][b] == pytest.approx(accuracy)
            total += len(members) * abs(accuracy - confidence)
    assert expected_calibration_error(probabilities, labels, CLASSES, n_bins=10) == pytest.approx(total / 500)


def test_classes_unseen_by_the_model_keep_probability_zero_and_a_finite_fit():
    scores = np.array([[1.0, 0.0, -np.inf], [0.0, 2.0, -np.inf], [0.5, 0.2, -np.inf]])
    labels = ["A", "B", "C"]  # the last turn's class was never predicted
    temperature = fit_temperature(scores, labels, "ABC")
    assert np.isfinite(temperature) and temperature > 0
    probabilities = scaled_softmax(scores, temperature)
    assert (probabilities[:, 2] == 0).all() and np.allclose(probabilities.sum(axis=1), 1)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r"labels \['Z'\] are not among the classes"):
        fit_temperature(np.zeros((1, 2)), ["Z"], "AB")
    with pytest.raises(ValueError, match="scores of shape"):
        fit_temperature(np.zeros((2, 3)), ["A", "B"], "AB")
    with pytest.raises(ValueError, match="temperature=0"):
        scaled_softmax(np.zeros((1, 2)), 0)


def test_reliability_diagram_is_a_png(tmp_path):
    logits, labels = _calibrated_logits(500, seed=2)
    curves = {"overconfident": reliability_bins(scaled_softmax(3 * logits), labels, CLASSES),
              "calibrated": reliability_bins(scaled_softmax(logits), labels, CLASSES)}
    plot_reliability_diagram(curves, tmp_path / "reliability.png")
    data = (tmp_path / "reliability.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000
