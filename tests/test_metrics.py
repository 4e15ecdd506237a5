"""Challenge metrics against scikit-learn, and the Table 1 layout."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from ser.emotions import EMOTION_NAMES, EMOTIONS
from ser.metrics import (
    attribute_report,
    classification_report,
    concordance_cc,
    format_ccc_table,
    format_f1_table,
)


def _random_labels(seed, n=200):
    rng = np.random.default_rng(seed)
    # Skewed like MSP-Podcast (many N and H), so per-class F1s differ.
    p = np.array([6, 5, 3, 2, 25, 47, 7, 5]) / 100
    true = rng.choice(EMOTIONS, size=n, p=p)
    pred = np.where(rng.random(n) < 0.5, true, rng.choice(EMOTIONS, size=n, p=p))
    return true.tolist(), pred.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_equals_scikit_learn(seed):
    true, pred = _random_labels(seed)
    report = classification_report(true, pred)
    expected = f1_score(true, pred, average="macro", labels=list(EMOTIONS), zero_division=0)
    assert report["macro_f1"] == pytest.approx(expected, abs=1e-12)
    assert report["macro_f1"] == pytest.approx(np.mean(list(report["per_class_f1"].values())))
    assert report["accuracy"] == pytest.approx(np.mean(np.array(true) == np.array(pred)))


def test_confusion_matrix_rows_sum_to_supports_and_columns_to_predictions():
    true, pred = _random_labels(10)
    report = classification_report(true, pred)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (8, 8)
    for i, c in enumerate(EMOTIONS):
        assert matrix[i].sum() == report["support"][c] == true.count(c)
        assert matrix[:, i].sum() == pred.count(c)
        assert matrix[i, i] == sum(t == p == c for t, p in zip(true, pred, strict=True))
    assert matrix.trace() / matrix.sum() == pytest.approx(report["accuracy"])


def test_letters_and_indices_give_the_same_report():
    true, pred = _random_labels(11)
    index = {c: i for i, c in enumerate(EMOTIONS)}
    as_letters = classification_report(true, pred)
    as_indices = classification_report(
        np.array([index[c] for c in true]), torch.tensor([index[c] for c in pred])
    )
    mixed = classification_report(true, [index[c] for c in pred])
    assert as_indices == as_letters == mixed


def test_class_absent_from_both_scores_zero_and_counts_in_the_average():
    true = ["A", "A", "N", "N"]
    pred = ["A", "N", "N", "N"]
    report = classification_report(true, pred)
    assert report["per_class_f1"]["F"] == 0.0
    assert report["support"]["F"] == 0
    present = report["per_class_f1"]["A"] + report["per_class_f1"]["N"]
    assert report["macro_f1"] == pytest.approx(present / 8)


def test_bad_labels_give_clear_errors():
    with pytest.raises(ValueError, match=r"y_true\[1\] = 'X' is not one of the classes"):
        classification_report(["A", "X"], ["A", "A"])
    with pytest.raises(ValueError, match=r"y_pred\[0\] = 8 is not a class index"):
        classification_report([0], [8])
    with pytest.raises(ValueError, match=r"y_pred\[0\] = 0.5 is neither"):
        classification_report([0], [0.5])
    with pytest.raises(ValueError, match="y_true has 2 labels but y_pred has 1"):
        classification_report(["A", "N"], ["A"])
    with pytest.raises(ValueError, match="empty"):
        classification_report([], [])


def test_f1_table_has_paper_table1_layout():
    reports = {
        name: classification_report(*_random_labels(seed))
        for seed, name in enumerate(["Sub-System A", "Sub-System B", "Fusion"])
    }
    table = format_f1_table(reports)
    lines = table.splitlines()
    header, rule, body = lines[0], lines[1], lines[2:]
    assert header == "| Class | Sub-System A | Sub-System B | Fusion |"
    assert rule.count("|") == 5
    assert len(body) == 8 + 2
    for line, c in zip(body, EMOTIONS, strict=False):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == f"{EMOTION_NAMES[c]} ({c})"
        assert cells[1:] == [f"{r['per_class_f1'][c]:.3f}" for r in reports.values()]
    assert body[8].startswith("| Accuracy |")
    assert body[9] == "| F1-Macro | " + " | ".join(
        f"{r['macro_f1']:.3f}" for r in reports.values()) + " |"


def test_f1_table_rejects_mismatched_or_incomplete_reports():
    full = classification_report(["A"], ["A"])
    partial = classification_report(["A"], ["A"], classes=["A", "N"])
    with pytest.raises(ValueError, match="covers classes"):
        format_f1_table({"a": full, "b": partial})
    with pytest.raises(ValueError, match="lacks macro_f1"):
        format_f1_table({"a": {"per_class_f1": {}, "accuracy": 1.0}})
    with pytest.raises(ValueError, match="at least one report"):
        format_f1_table({})


def _direct_ccc(x, y):
    """CCC written out term by term in float64 Python arithmetic."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    vx = sum((a - mx) ** 2 for a in x) / n
    vy = sum((b - my) ** 2 for b in y) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / n
    return 2 * cov / (vx + vy + (mx - my) ** 2)


@pytest.mark.parametrize("seed", range(4))
def test_ccc_equals_direct_float64_evaluation(seed):
    rng = np.random.default_rng(seed)
    y = rng.uniform(1, 7, 150)
    x = 0.6 * y + rng.normal(1.5, 0.8, 150)
    assert concordance_cc(x, y) == pytest.approx(_direct_ccc(x.tolist(), y.tolist()), rel=1e-12)


def test_ccc_is_one_for_identical_inputs_and_finite_on_constant_predictions():
    y = np.random.default_rng(0).uniform(1, 7, 40)
    assert concordance_cc(y, y) == pytest.approx(1.0)
    assert concordance_cc(np.full(40, 4.0), y) == 0.0
    assert concordance_cc(np.full(3, 4.0), np.full(3, 4.0)) == 1.0
    assert np.isfinite(concordance_cc(np.full(3, 4.0), np.full(3, 5.0)))
    with pytest.raises(ValueError, match="finite"):
        concordance_cc([1.0, np.nan], [1.0, 2.0])


def test_attribute_report_and_ccc_table():
    rng = np.random.default_rng(1)
    y = rng.uniform(1, 7, (30, 3))
    report = attribute_report(y + rng.normal(0, 0.5, y.shape), y, ["EmoAct", "EmoVal", "EmoDom"])
    assert report["mean_ccc"] == pytest.approx(np.mean(list(report["ccc"].values())))
    table = format_ccc_table({"A": report, "B": report}).splitlines()
    assert table[0] == "| Attribute | A | B |"
    assert [line.split(" | ")[0] for line in table[2:]] == [
        "| Arousal (EmoAct)", "| Valence (EmoVal)", "| Dominance (EmoDom)", "| **Mean CCC**"]
