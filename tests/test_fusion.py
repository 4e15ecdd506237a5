"""SVM fusion of the sub-systems and its report (paper §7, §8, Table 1, Figure 4)."""

import json
import logging
import struct

import joblib
import numpy as np
import pandas as pd
import pytest

from fusion.fuse import fuse_systems, main
from fusion.inputs import load_systems, read_dev_labels
from fusion.svm import fit_fusion_model, speaker_folds
from ser.emotions import EMOTIONS
from ser.fusion_model import load_fusion, softmax
from ser.io.posteriors import read_posteriors, write_posteriors
from tests.conftest import SYSTEMS

N_SPEAKERS, TURNS_PER_SPEAKER, N_TEST = 60, 8, 80


def _posteriors(labels, reliable, rng, boost=2.5):
    """Confident on the true class when it is in ``reliable``, near-uniform noise otherwise."""
    logits = rng.normal(size=(len(labels), len(EMOTIONS)))
    for row, label in enumerate(labels):
        if label in reliable:
            logits[row, EMOTIONS.index(label)] += boost
    probabilities = np.exp(logits)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def _write_system(folder, valid_names, valid_probs, test_names, test_probs, labels, speakers,
                  classes=EMOTIONS):
    write_posteriors(folder / "posteriors" / "valid.csv", valid_names, valid_probs, classes)
    write_posteriors(folder / "posteriors" / "test.csv", test_names, test_probs, classes)
    manifest = {name.removesuffix(".wav"): {"emotion": label, "speaker": speaker, "gender": "Female"}
                for name, label, speaker in zip(valid_names, labels, speakers, strict=True)}
    (folder / "manifests").mkdir(parents=True, exist_ok=True)
    (folder / "manifests" / "valid.json").write_text(json.dumps(manifest))


def _synthetic_systems(root, halves, seed=0):
    """One system per entry of ``halves`` (the classes it is reliable on), sharing dev and test turns."""
    rng = np.random.default_rng(seed)
    n_valid = N_SPEAKERS * TURNS_PER_SPEAKER
    labels = np.asarray(EMOTIONS)[rng.integers(0, len(EMOTIONS), n_valid)]
    speakers = [str(1000 + i // TURNS_PER_SPEAKER) for i in range(n_valid)]
    valid_names = [f"MSP-PODCAST_{i:04d}_0001.wav" for i in range(n_valid)]
    test_labels = np.asarray(EMOTIONS)[rng.integers(0, len(EMOTIONS), N_TEST)]
    test_names = [f"MSP-PODCAST_test3_{i:05d}.wav" for i in range(N_TEST)]
    folders = []
    for index, reliable in enumerate(halves):
        folder = root / f"system_{'abcdefgh'[index]}" / "1993"
        _write_system(folder, valid_names, _posteriors(labels, reliable, rng), test_names,
                      _posteriors(test_labels, reliable, rng), labels, speakers)
        folders.append(folder.parent)
    return folders


@pytest.fixture(scope="module")
def complementary_fusion(tmp_path_factory):
    """Two systems, each reliable on a different half of the classes, fused once."""
    root = tmp_path_factory.mktemp("complementary")
    folders = _synthetic_systems(root, ["ACDF", "HNSU"])
    metrics = fuse_systems(folders, root / "fusion", folds=5, seed=0)
    return root, folders, metrics


def test_fusion_of_complementary_systems_beats_the_best_single_system(complementary_fusion):
    _, _, metrics = complementary_fusion
    best_single = max(report["macro_f1"] for report in metrics["per_system"].values())
    assert best_single < 0.65  # each system guesses on half the classes
    assert metrics["macro_f1"] > best_single + 0.1
    assert metrics["cv"]["folds"] == 5
    assert sum(fold["n_test"] for fold in metrics["cv"]["per_fold"]) == metrics["n_valid"]
    assert metrics["final_model"]["kernel"] in ("linear", "rbf")


def test_dev_score_comes_from_held_out_speakers(tmp_path):
    # Posteriors carrying no information: an SVM scored on its own training turns would
    # fit the noise; scored on held-out speakers it must stay near chance (1/8).
    folders = _synthetic_systems(tmp_path, ["", ""])
    metrics = fuse_systems(folders, tmp_path / "fusion", folds=3, seed=0, c_values=(10.0,), kernels=("rbf",))
    assert metrics["macro_f1"] < 0.25


def test_submission_has_the_challenge_format(complementary_fusion):
    root, folders, metrics = complementary_fusion
    lines = (root / "fusion" / "submission.csv").read_text().splitlines()
    assert lines[0] == "FileName,EmoClass"
    rows = [line.split(",") for line in lines[1:]]
    test_names = read_posteriors(folders[0] / "1993" / "posteriors" / "test.csv").index.tolist()
    assert [name for name, _ in rows] == sorted(test_names)
    assert all(len(row) == 2 and row[1] in EMOTIONS for row in rows)


def test_saved_model_predicts_the_submission(complementary_fusion):
    root, folders, _ = complementary_fusion
    model = load_fusion(root / "fusion")
    assert model.systems == ["Sub-System A", "Sub-System B"]
    blocks = [read_posteriors(f / "1993" / "posteriors" / "test.csv").sort_index() for f in folders]
    submission = pd.read_csv(root / "fusion" / "submission.csv")
    expected = submission["EmoClass"].tolist()
    assert model.predict(blocks).tolist() == expected
    assert model.predict(np.hstack([b.to_numpy() for b in blocks])).tolist() == expected
    probabilities = model.predict_proba(blocks)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="concatenated"):
        model.predict(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="columns"):
        model.predict([blocks[0][list(reversed(EMOTIONS))], blocks[1]])


def test_every_score_has_a_speaker_bootstrap_interval(complementary_fusion):
    root, _, metrics = complementary_fusion
    stats = metrics["statistics"]
    assert stats["bootstrap"]["clusters"] == N_SPEAKERS and stats["bootstrap"]["n_resamples"] == 1000
    reports = {**metrics["per_system"], "Fusion": metrics["fusion"]}
    assert list(stats["macro_f1"]) == list(reports)
    for name, interval in stats["macro_f1"].items():
        assert interval["estimate"] == pytest.approx(reports[name]["macro_f1"])
        assert interval["low"] < interval["estimate"] < interval["high"]
    best = max(metrics["per_system"], key=lambda name: metrics["per_system"][name]["macro_f1"])
    (test,) = stats["paired_tests"]  # no D and E here: only the fusion against the best system
    assert (test["a"], test["b"]) == ("Fusion", best) == ("Fusion", stats["best_system"])
    assert test["difference"]["estimate"] == pytest.approx(
        metrics["macro_f1"] - metrics["per_system"][best]["macro_f1"])
    # A gain of more than 0.1 on 480 turns of 60 speakers is no accident.
    assert test["difference"]["low"] > 0 and test["p_value"] < 0.01
    report = (root / "fusion" / "report.md").read_text()
    fused = stats["macro_f1"]["Fusion"]
    assert report.count(f"[{fused['low']:.3f}, {fused['high']:.3f}]") == 2  # Table 1 and the CI table
    assert "## Dev macro-F1 with 95 % confidence intervals" in report
    assert f"| Fusion vs {best} | +" in report


def test_e_against_d_is_tested_when_both_are_fused(tmp_path):
    # E is reliable on four classes, D on two of them: E must come out better, and the test say so.
    folders = _synthetic_systems(tmp_path, ["AC", "DF", "HN", "HN", "HNSU"])
    metrics = fuse_systems(folders, tmp_path / "fusion", folds=3, kernels=("linear",), c_values=(1.0,),
                           n_resamples=500)
    tests = {(t["a"], t["b"]): t for t in metrics["statistics"]["paired_tests"]}
    e_vs_d = tests[("Sub-System E", "Sub-System D")]
    per_system = metrics["per_system"]
    assert e_vs_d["difference"]["estimate"] == pytest.approx(
        per_system["Sub-System E"]["macro_f1"] - per_system["Sub-System D"]["macro_f1"])
    assert e_vs_d["p_value"] < 0.01 and e_vs_d["n_resamples"] == 500
    assert ("Fusion", "Sub-System E") in tests


def test_fused_probabilities_are_calibrated_everywhere(complementary_fusion):
    root, folders, metrics = complementary_fusion
    calibration = metrics["calibration"]
    # Softmax of SVM decision values is far from calibrated; the temperature, scored on folds it
    # was not fitted on, must bring the error down.
    assert calibration["ece_after"] < calibration["ece_before"] / 2
    assert calibration["nll_after"] < calibration["nll_before"]
    assert len(calibration["fold_temperatures"]) == metrics["cv"]["folds"]
    model = load_fusion(root / "fusion")
    assert model.calibrated and model.temperature == pytest.approx(calibration["temperature"])
    info = json.loads((root / "fusion" / "fusion_model.json").read_text())
    assert info["calibration"]["temperature"] == pytest.approx(model.temperature)
    blocks = [read_posteriors(f / "1993" / "posteriors" / "test.csv").sort_index() for f in folders]
    written = read_posteriors(root / "fusion" / "fused_test.csv").sort_index()
    np.testing.assert_allclose(written.to_numpy(), model.predict_proba(blocks), atol=1e-6)
    uncalibrated = softmax(model.decision_scores(blocks))
    assert not np.allclose(model.predict_proba(blocks), uncalibrated, atol=1e-3)
    assert (model.predict_proba(blocks).argmax(axis=1) == uncalibrated.argmax(axis=1)).all()
    report = (root / "fusion" / "report.md").read_text()
    assert "## Calibration of the fused probabilities" in report
    assert f"temperature {model.temperature:.2f}" in report
    assert _png_size(root / "fusion" / "reliability_diagram.png")[0] > 300


def test_fusion_saved_before_calibration_still_loads(complementary_fusion, tmp_path, caplog):
    # A model pickled by the FusionModel that had no temperature field: its state has no such key.
    root, folders, _ = complementary_fusion
    model = load_fusion(root / "fusion")
    del model.__dict__["temperature"]
    with open(tmp_path / "fusion_model.joblib", "wb") as stream:
        joblib.dump(model, stream)
    with caplog.at_level(logging.WARNING, logger="ser.fusion_model"):
        old = load_fusion(tmp_path)
    assert old.temperature is None and not old.calibrated
    assert "without calibration" in caplog.text and "fusion_model.joblib" in caplog.text
    blocks = [read_posteriors(f / "1993" / "posteriors" / "test.csv").sort_index() for f in folders]
    np.testing.assert_allclose(old.predict_proba(blocks), softmax(old.decision_scores(blocks)))


def test_task2_fusion_reports_ccc_intervals_and_a_paired_test(tmp_path):
    from fusion.attributes import fuse_attribute_systems, render_attribute_report
    from ser.io.posteriors import write_attributes
    from ser.targets import ATTRIBUTES

    rng = np.random.default_rng(0)
    truth = rng.uniform(1, 7, (120, 3))
    valid = [f"v{i:03d}.wav" for i in range(120)]
    folders = []
    for system, noise in (("task2_wavlm", 1.0), ("task2_d", 1.5)):
        write_attributes(tmp_path / system / "attributes" / "valid.csv", valid,
                         truth + rng.normal(0, noise, truth.shape), ATTRIBUTES)
        write_attributes(tmp_path / system / "attributes" / "test.csv", ["t.wav"], truth[:1], ATTRIBUTES)
        manifest = {n[:-4]: {"attributes": dict(zip(ATTRIBUTES, row, strict=True)), "speaker": str(i // 6)}
                    for i, (n, row) in enumerate(zip(valid, truth.tolist(), strict=True))}
        (tmp_path / system / "manifests").mkdir()
        (tmp_path / system / "manifests" / "valid.json").write_text(json.dumps(manifest))
        folders.append(tmp_path / system)
    metrics = fuse_attribute_systems(folders, tmp_path / "fusion", folds=4, n_resamples=300)
    stats = metrics["statistics"]
    assert stats["bootstrap"]["clusters"] == 20 and list(stats["ccc"]) == ["task2_wavlm", "task2_d", "Fusion"]
    for name, report in {**metrics["per_system"], "Fusion": metrics["fusion"]}.items():
        assert stats["ccc"][name]["mean"]["estimate"] == pytest.approx(report["mean_ccc"])
        for attribute in ATTRIBUTES:
            interval = stats["ccc"][name][attribute]
            assert interval["estimate"] == pytest.approx(report["ccc"][attribute])
            assert interval["low"] < interval["estimate"] < interval["high"]
    (test,) = stats["paired_tests"]
    assert (test["a"], test["b"]) == ("Fusion", "task2_wavlm") == ("Fusion", stats["best_system"])
    text = render_attribute_report(metrics)
    assert "95 % confidence intervals" in text and "Paired test" in text
    assert text in (tmp_path / "fusion" / "report.md").read_text()


def _two_small_systems(root):
    return _synthetic_systems(root, ["ACDF", "HNSU"], seed=1)


def test_systems_covering_different_files_are_rejected(tmp_path):
    folders = _two_small_systems(tmp_path)
    path = folders[1] / "1993" / "posteriors" / "valid.csv"
    table = read_posteriors(path)
    write_posteriors(path, table.index[1:], table.to_numpy()[1:])
    with pytest.raises(ValueError, match=r"Sub-System B .*valid.*MSP-PODCAST_0000_0001\.wav"):
        load_systems(folders)


def test_posteriors_in_another_class_order_are_rejected(tmp_path):
    folders = _two_small_systems(tmp_path)
    path = folders[0] / "1993" / "posteriors" / "test.csv"
    table = pd.read_csv(path)
    table[["FileName", "C", "A", *EMOTIONS[2:]]].to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"test\.csv: columns .*; expected .*\(class order\)"):
        load_systems(folders)


@pytest.mark.parametrize("row", [[0.5] * 8, [1.2, -0.2] + [0.0] * 6, [np.nan] * 8])
def test_rows_that_are_not_probabilities_are_rejected(tmp_path, row):
    folders = _two_small_systems(tmp_path)
    path = folders[1] / "1993" / "posteriors" / "valid.csv"
    table = pd.read_csv(path)
    table.loc[3, list(EMOTIONS)] = row
    table.to_csv(path, index=False)
    name = table.loc[3, "FileName"]
    with pytest.raises(ValueError, match=rf"valid\.csv: line 5 \(file {name}\) is not a probability row"):
        load_systems(folders)


def test_systems_disagreeing_on_dev_labels_are_rejected(tmp_path):
    folders = _two_small_systems(tmp_path)
    path = folders[1] / "1993" / "manifests" / "valid.json"
    manifest = json.loads(path.read_text())
    entry = manifest["MSP-PODCAST_0007_0001"]
    entry["emotion"] = "N" if entry["emotion"] != "N" else "A"
    path.write_text(json.dumps(manifest))
    systems = load_systems(folders)
    with pytest.raises(ValueError, match=r"valid\.json: label or speaker of 1 dev turn.*_0007_0001"):
        read_dev_labels(systems, systems[0].posteriors["valid"].index.tolist())


# Random cases from a seeded generator rather than hypothesis: hypothesis's
# pytest plugin reads __file__ of every loaded module, and SpeechBrain's lazy
# modules (e.g. its k2 integration) raise ImportError there.
FOLD_CASES = [
    (rng.integers(0, 13, rng.integers(2, 61)).tolist(), int(rng.integers(2, 7)), int(rng.integers(0, 4)))
    for rng in [np.random.default_rng(case) for case in range(40)]
]


@pytest.mark.parametrize(("speakers", "n_folds", "seed"), FOLD_CASES)
def test_speaker_folds_never_share_a_speaker(speakers, n_folds, seed):
    speakers = np.asarray([f"spk{s}" for s in speakers])
    if len(set(speakers.tolist())) < 2:
        with pytest.raises(ValueError, match="at least 2 speakers"):
            speaker_folds(["A"] * len(speakers), speakers, n_folds, seed)
        return
    labels = np.asarray(EMOTIONS)[np.arange(len(speakers)) % len(EMOTIONS)]
    folds = speaker_folds(labels, speakers, n_folds, seed)
    assert len(folds) == min(n_folds, len(set(speakers.tolist())))
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(speakers)))  # every turn tested exactly once
    for train, test in folds:
        assert not set(speakers[train].tolist()) & set(speakers[test].tolist())
        assert len(train) + len(test) == len(speakers)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_end_to_end_on_the_five_debug_systems(debug_results, tmp_path, capsys):
    out = tmp_path / "fusion"
    main([str(debug_results / f"system_{s}") for s in SYSTEMS] + ["--out", str(out)])
    for name in ("submission.csv", "fused_test.csv", "fused_valid_oof.csv", "fusion_model.joblib",
                 "fusion_model.json", "fusion_metrics.json", "report.md", "confusion_matrix.png",
                 "f1_per_class.png"):
        assert (out / name).is_file(), name
    table_1 = (out / "report.md").read_text().split("(paper Table 1)\n\n")[1].split("\n\n")[0]
    table = [line for line in table_1.splitlines() if line.startswith("| ")]
    assert table[0].split(" | ")[1:] == [f"Sub-System {s}" for s in "ABCDE"] + ["Fusion |"]
    assert len(table) == 1 + 8 + 3
    assert [row.split(" | ")[0] for row in table[-3:]] == ["| Accuracy", "| F1-Macro", "| F1-Macro 95 % CI"]
    assert "paper Table 2" in (out / "report.md").read_text()  # system E has a relabeled_*.csv
    report = (out / "report.md").read_text()
    for system in SYSTEMS:  # each system's training curves, drawn from its train_log and linked
        assert f"](training_curves/sub-system_{system}.png)" in report
        assert _png_size(out / "training_curves" / f"sub-system_{system}.png")[0] > 600
    assert "Sub-System E vs Sub-System D" in report and "| Fusion | " in report
    for png in ("confusion_matrix.png", "f1_per_class.png", "reliability_diagram.png"):
        width, height = _png_size(out / png)
        assert width > 200 and height > 200
    printed = capsys.readouterr().out
    assert str(out / "confusion_matrix.png") in printed and "| F1-Macro |" in printed
    test_turns = read_posteriors(debug_results / "system_a" / "1993" / "posteriors" / "test.csv")
    assert len(pd.read_csv(out / "submission.csv")) == len(test_turns)
    assert load_fusion(out).n_features == len(SYSTEMS) * 8


def _add_labelled_split(folder, split, reliable, n_turns, rng, labels=None):
    """An extra labelled split as train.py writes it: posteriors/<split>.csv + manifests/<split>.json."""
    labels = np.asarray(EMOTIONS)[rng.integers(0, len(EMOTIONS), n_turns)] if labels is None else labels
    names = [f"MSP-PODCAST_9{i:03d}_0001.wav" for i in range(n_turns)]
    write_posteriors(folder / "posteriors" / f"{split}.csv", names, _posteriors(labels, reliable, rng))
    manifest = {name.removesuffix(".wav"): {"emotion": label, "speaker": "2000"}
                for name, label in zip(names, labels, strict=True)}
    (folder / "manifests" / f"{split}.json").write_text(json.dumps(manifest))
    return labels


def test_extra_labelled_splits_are_scored_by_the_dev_trained_fusion(tmp_path):
    folders = _two_small_systems(tmp_path)
    rng = np.random.default_rng(5)
    labels = _add_labelled_split(folders[0] / "1993", "test1", "ACDF", 200, rng)
    _add_labelled_split(folders[1] / "1993", "test1", "HNSU", 200, rng, labels)
    _add_labelled_split(folders[0] / "1993", "test2", "ACDF", 50, rng)  # one system only: left out
    metrics = fuse_systems(folders, tmp_path / "fusion", folds=3, c_values=(1.0,))
    assert list(metrics["splits"]) == ["test1"]
    scored = metrics["splits"]["test1"]
    assert scored["n"] == 200 and sum(map(sum, scored["fusion"]["confusion_matrix"])) == 200
    best_single = max(report["macro_f1"] for report in scored["per_system"].values())
    assert scored["fusion"]["macro_f1"] > best_single + 0.1  # complementary systems, unseen turns
    assert len(read_posteriors(tmp_path / "fusion" / "fused_test1.csv")) == 200
    header = (tmp_path / "fusion" / "report.md").read_text().split("| Class | ")[1].split("\n")[0]
    assert header.split(" | ")[-3:] == ["Test1 Sub-System A", "Test1 Sub-System B", "Test1 Fusion |"]
    assert header.startswith("Dev Sub-System A | Dev Sub-System B | Dev Fusion")


def test_systems_disagreeing_on_an_extra_split_are_rejected(tmp_path):
    folders = _two_small_systems(tmp_path)
    rng = np.random.default_rng(5)
    labels = _add_labelled_split(folders[0] / "1993", "test1", "ACDF", 20, rng)
    other = labels.copy()
    other[3] = "N" if labels[3] != "N" else "A"
    _add_labelled_split(folders[1] / "1993", "test1", "HNSU", 20, rng, other)
    with pytest.raises(ValueError, match=r"test1\.json: label of 1 turn\(s\) differ.*MSP-PODCAST_9003_0001"):
        fuse_systems(folders, tmp_path / "fusion", folds=2, c_values=(1.0,))
    assert not (tmp_path / "fusion").exists()  # checked before the long part


def test_fast_search_fits_kernel_svms_on_a_bounded_stratified_sample():
    rng = np.random.default_rng(0)
    labels = np.asarray(EMOTIONS)[rng.choice(8, 600, p=[.05, .05, .05, .05, .2, .4, .1, .1])]
    features = _posteriors(labels, "ACDFHNSU", rng)
    speakers = np.arange(600) % 12
    model = fit_fusion_model(features, labels, speakers, ["s"], kernels=("rbf",), c_values=(1.0,),
                             kernel_max_turns=120)
    svc = model.estimator[-1]
    assert 100 <= svc.shape_fit_[0] <= 130 and sorted(svc.classes_) == sorted(set(labels))
    linear = fit_fusion_model(features, labels, speakers, ["s"], kernels=("linear",), c_values=(1.0,))
    assert type(linear.estimator[-1]).__name__ == "LinearSVC"  # primal, all turns
    exact = fit_fusion_model(features, labels, speakers, ["s"], kernels=("rbf",), c_values=(1.0,),
                             search="exact")
    assert exact.estimator[-1].shape_fit_[0] == 600 and exact.params["search"] == "exact"


def test_fast_and_exact_search_select_fusions_of_the_same_quality(complementary_fusion, tmp_path):
    _, folders, fast = complementary_fusion
    exact = fuse_systems(folders, tmp_path / "exact", folds=5, seed=0, search="exact")
    assert fast["cv"]["grid"]["search"] == "fast" and exact["cv"]["grid"]["search"] == "exact"
    assert fast["macro_f1"] > exact["macro_f1"] - 0.03  # bench/fusion.py checks it at scale


def _identity(folder, classes):
    identity = {"name": folder.parent.name, "targets": {"classes": classes}}
    (folder / "system.json").write_text(json.dumps(identity))


def test_the_class_order_comes_from_the_systems_identity(tmp_path):
    """Systems declaring 3 classes (system.json) are fused over those 3, in that order."""
    classes = ["S", "A", "N"]
    labels = np.asarray(classes * 16)
    valid = [f"v{i:02d}.wav" for i in range(len(labels))]
    folders = []
    for system in ("system_x", "system_y"):
        folder = tmp_path / system / "1993"
        probs = np.eye(3)[[classes.index(c) for c in labels]] * 0.7 + 0.1
        speakers = [str(i // 6) for i in range(len(labels))]
        _write_system(folder, valid, probs, ["t.wav"], probs[:1], labels, speakers, classes=classes)
        _identity(folder, classes)
        folders.append(folder.parent)
    metrics = fuse_systems(folders, tmp_path / "fusion", folds=2, kernels=("linear",), c_values=(1.0,))
    assert load_fusion(tmp_path / "fusion").classes == tuple(classes)
    assert read_posteriors(tmp_path / "fusion" / "fused_test.csv", classes).shape == (1, 3)
    assert set(metrics["per_system"]) == {"Sub-System X", "Sub-System Y"} and metrics["macro_f1"] == 1.0

    other = folders[1] / "1993"  # Y now declares (and writes) another class order
    _identity(other, ["A", "N", "S"])
    for split in ("valid", "test"):
        table = pd.read_csv(other / "posteriors" / f"{split}.csv")
        table[["FileName", "A", "N", "S"]].to_csv(other / "posteriors" / f"{split}.csv", index=False)
    with pytest.raises(ValueError, match=r"Sub-System Y .*classes A N S; Sub-System X has S A N"):
        fuse_systems(folders, tmp_path / "fusion2", folds=2, kernels=("linear",), c_values=(1.0,))
