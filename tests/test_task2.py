"""Task 2 (attributes) end to end, multi-task, the label tools through train.py, and ablations."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ser.emotions import EMOTIONS
from ser.targets import ATTRIBUTES
from tests.conftest import ATTRIBUTE_SYSTEMS, ROOT, run, train_command

TEST3 = "Test3"


def _truth(mini_corpus):
    return pd.read_csv(mini_corpus / "true_labels.csv")


@pytest.mark.parametrize("name", ATTRIBUTE_SYSTEMS)
def test_each_attribute_system_writes_attributes_and_ccc(name, task2_results, mini_corpus):
    folder = task2_results / name / "1993"
    assert not (folder / "posteriors").exists(), "an attribute system has no class posteriors"
    truth = _truth(mini_corpus)
    dev_turns = truth.loc[truth["Split_Set"] == "Development", "FileName"]
    test_turns = truth.loc[truth["Split_Set"] == TEST3, "FileName"]
    for split, expected in (("valid", dev_turns), ("test", test_turns)):
        table = pd.read_csv(folder / "attributes" / f"{split}.csv")
        assert list(table.columns) == ["FileName", *ATTRIBUTES]
        assert table["FileName"].is_monotonic_increasing
        assert table[list(ATTRIBUTES)].to_numpy().min() >= 1 and table[list(ATTRIBUTES)].to_numpy().max() <= 7
        # Every turn has attributes, X and O ones included.
        assert set(table["FileName"]) == set(expected)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["ccc"]) == set(ATTRIBUTES)
    assert metrics["mean_ccc"] == pytest.approx(np.mean(list(metrics["ccc"].values())))
    assert metrics["n_turns_attributes"] == len(dev_turns)
    train = json.loads((folder / "manifests" / "train.json").read_text())
    assert {"X", "O"} & {entry["emotion"] for entry in train.values()}, "X/O turns train Task 2"


def test_multitask_writes_posteriors_and_attributes(mini_corpus, tiny_models, tmp_path):
    run(train_command("a", mini_corpus, tmp_path, tiny_models, "--debug",
                      "--attributes=[EmoAct,EmoVal,EmoDom]", "--attribute_weight=0.5"))
    folder = tmp_path / "system_a" / "1993"
    posteriors = pd.read_csv(folder / "posteriors" / "valid.csv")
    attributes = pd.read_csv(folder / "attributes" / "valid.csv")
    assert list(posteriors.columns) == ["FileName", *EMOTIONS]
    assert list(attributes.columns) == ["FileName", *ATTRIBUTES]
    # Posteriors only for the turns with one of the classes (what Task 1 fusion scores); attributes
    # for every dev turn.
    consensus = pd.read_csv(mini_corpus / "Labels" / "labels_consensus.csv").set_index("FileName")
    assert set(consensus.loc[posteriors["FileName"], "EmoClass"]) <= set(EMOTIONS)
    assert set(posteriors["FileName"]) < set(attributes["FileName"])
    metrics = json.loads((folder / "metrics.json").read_text())
    assert "macro_f1" in metrics and set(metrics["ccc"]) == set(ATTRIBUTES)
    assert metrics["n_turns"] == len(posteriors)


def test_label_tools_train_through_train_py(mini_corpus, tiny_models, tmp_path):
    done = run(train_command("a", mini_corpus, tmp_path, tiny_models, "--debug", "--soft_labels=True",
                             "--soft_label_threshold=0.5", "--loss=focal", "--class_weights=auto",
                             "--balanced_sampler=True", "--batching=random"))
    folder = tmp_path / "system_a" / "1993"
    train = json.loads((folder / "manifests" / "train.json").read_text())
    x_turns = [entry for entry in train.values() if entry["emotion"] == "X"]
    assert x_turns, "with soft labels, X turns train too"
    assert all(sum(entry["votes"].values()) > 0 for entry in x_turns)
    assert (folder / "manifests" / "votes_K0.5.csv").is_file()
    assert "class weights (N / (K N_c))" in done.stderr + done.stdout
    assert (folder / "posteriors" / "valid.csv").is_file()


def test_balanced_sampler_with_bucketed_batching_is_one_clear_line(mini_corpus, tiny_models, tmp_path):
    command = train_command("a", mini_corpus, tmp_path, tiny_models, "--debug", "--balanced_sampler=True",
                            "--batching=bucketed")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "train.py: error: balanced_sampler: True needs batching: random (length buckets decide the "
        "batch order themselves)")


def test_task2_fusion_submission_has_the_exact_format(task2_results, mini_corpus, tmp_path):
    from fusion.attributes import main

    folders = [str(task2_results / name) for name in ATTRIBUTE_SYSTEMS]
    assert main([*folders, "--out", str(tmp_path / "fusion"), "--folds", "3"]) == 0
    lines = (tmp_path / "fusion" / "submission.csv").read_text().splitlines()
    assert lines[0] == "FileName,EmoAct,EmoVal,EmoDom"
    names = [line.split(",")[0] for line in lines[1:]]
    truth = _truth(mini_corpus)
    assert names == sorted(truth.loc[truth["Split_Set"] == TEST3, "FileName"])
    values = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert values.shape == (len(names), 3) and values.min() >= 1 and values.max() <= 7
    metrics = json.loads((tmp_path / "fusion" / "attribute_fusion_metrics.json").read_text())
    assert set(metrics["per_system"]) == set(ATTRIBUTE_SYSTEMS)
    report = (tmp_path / "fusion" / "report.md").read_text()
    assert f"| Attribute | {' | '.join(ATTRIBUTE_SYSTEMS)} | Fusion |" in report
    for name in ATTRIBUTES:
        assert (tmp_path / "fusion" / f"scatter_{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_recognizer_returns_the_attributes(task2_results, mini_corpus):
    from ser.inference.recognizer import EmotionRecognizer

    files = sorted((mini_corpus / "Audios").glob("*test3*.wav"))[:2]
    recognizer = EmotionRecognizer.from_folders([task2_results / "task2_wavlm" / "1993"])
    results = recognizer.classify_files(files)
    for result in results:
        assert result.label is None and result.probabilities is None
        assert list(result.attributes) == list(ATTRIBUTES)
        assert all(1.0 <= v <= 7.0 for v in result.attributes.values())
    # The whole turn fits one window: what inference returns is what evaluation wrote.
    written = pd.read_csv(task2_results / "task2_wavlm" / "1993" / "attributes" / "test.csv")
    written = written.set_index("FileName")
    for path, result in zip(files, results, strict=True):
        predicted = list(result.attributes.values())
        np.testing.assert_allclose(predicted, written.loc[path.name].to_numpy(), atol=2e-3)


def test_predict_cli_writes_attribute_columns(task2_results, mini_corpus, tmp_path):
    files = sorted((mini_corpus / "Audios").glob("*test3*.wav"))[:2]
    out = tmp_path / "preds.csv"
    done = subprocess.run(
        [sys.executable, "-m", "ser.predict", *map(str, files), "--systems",
         str(task2_results / "task2_d" / "1993"), "--out", str(out), "--no_progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(out)
    # task2_d reads Whisper transcripts: they are written too.
    assert list(table.columns) == ["File", *ATTRIBUTES, "Transcript", "Error", "Flag"]
    assert len(table) == 2 and table["Transcript"].notna().all()


@pytest.fixture(scope="module")
def task2_fusion(task2_results, tmp_path_factory):
    from fusion.attributes import main

    out = tmp_path_factory.mktemp("task2_fusion") / "fusion_task2"
    folders = [str(task2_results / name) for name in ATTRIBUTE_SYSTEMS]
    assert main([*folders, "--out", str(out), "--folds", "3"]) == 0
    return out


def _export(*args):
    return subprocess.run([sys.executable, "-m", "ser.export", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def _predict(package, files, *extra):
    return subprocess.run([sys.executable, "-m", "ser.predict", "--model", str(package), *map(str, files),
                           "--no_progress", *map(str, extra)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_task2_systems_export_alone_and_with_their_fusion(task2_results, task2_fusion, mini_corpus, tmp_path):
    from ser.inference.package import MANIFEST
    from ser.inference.recognizer import EmotionRecognizer

    folders = [task2_results / name / "1993" for name in ATTRIBUTE_SYSTEMS]
    files = sorted((mini_corpus / "Audios").glob("*test3*.wav"))[:2]
    alone, fused = tmp_path / "alone", tmp_path / "fused"
    done = _export(*folders, "--out", alone)
    assert done.returncode == 0, done.stderr[-3000:]
    done = _export(*folders, "--fusion", task2_fusion, "--out", fused)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((fused / MANIFEST).read_text())
    assert manifest["attribute_fusion"] == "fusion_task2" and manifest["fusion"] is None
    assert all("mean_ccc" in entry["metrics"] for entry in manifest["systems"])

    # The packaged fusion gives what the fusion folder's regressors give on the systems' outputs.
    from ser.fusion_model import load_attribute_fusion

    results = EmotionRecognizer.from_pretrained(fused).classify_files(files)
    model = load_attribute_fusion(task2_fusion)
    for result in results:
        blocks = [np.array([list(result.system_attributes[s].values())]) for s in ATTRIBUTE_SYSTEMS]
        np.testing.assert_allclose(list(result.attributes.values()), model.predict(blocks)[0], atol=1e-6)
    averaged = EmotionRecognizer.from_pretrained(alone).classify_files(files)
    for result in averaged:
        mean = np.mean([list(v.values()) for v in result.system_attributes.values()], axis=0)
        np.testing.assert_allclose(list(result.attributes.values()), mean, atol=1e-6)

    done = _predict(fused, files)
    assert done.returncode == 0, done.stderr[-3000:]
    header = done.stdout.splitlines()[0].split()
    assert header == ["File", *ATTRIBUTES, "Transcript"]
    out = tmp_path / "preds.csv"
    assert _predict(alone, files, "--out", out).returncode == 0
    assert list(pd.read_csv(out).columns) == ["File", *ATTRIBUTES, "Transcript", "Error", "Flag"]


def test_task1_and_task2_systems_in_one_package(debug_results, task2_results, task2_fusion, mini_corpus,
                                                tmp_path):
    from fusion.fuse import fuse_systems
    from ser.inference.package import MANIFEST

    task1 = [debug_results / f"system_{s}" / "1993" for s in ("a", "d")]
    fuse_systems(task1, tmp_path / "fusion", folds=2)
    task2 = [task2_results / name / "1993" for name in ATTRIBUTE_SYSTEMS]
    package = tmp_path / "package"
    fusions = ["--fusion", tmp_path / "fusion", "--fusion", task2_fusion]
    done = _export(*task1, *task2, *fusions, "--out", package)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((package / MANIFEST).read_text())
    assert (manifest["fusion"], manifest["attribute_fusion"]) == ("fusion", "fusion_task2")
    assert [e["label"] for e in manifest["systems"]] == ["Sub-System A", "Sub-System D", *ATTRIBUTE_SYSTEMS]
    files = sorted((mini_corpus / "Audios").glob("*test3*.wav"))[:2]
    out = tmp_path / "preds.csv"
    done = _predict(package, files, "--out", out, "--top_k", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(out)
    assert list(table.columns) == ["File", "EmoClass", *EMOTIONS, *ATTRIBUTES, "Top", "Transcript", "Error",
                                   "Flag"]
    assert table["EmoClass"].isin(EMOTIONS).all() and table[list(ATTRIBUTES)].notna().all().all()
    # A Task 1 fusion folder given for Task 2 systems alone is refused in one line (bad input: 2).
    done = _export(*task2, "--fusion", tmp_path / "fusion", "--out", tmp_path / "wrong")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "ser.export: error:" in done.stderr and not (tmp_path / "wrong").exists()


@pytest.mark.slow
def test_ablation_runs_each_variant_and_seed_in_its_folder_and_resumes(mini_corpus, tiny_models, tmp_path):
    command = [sys.executable, "-m", "recipes.ablate", str(ROOT / "hparams" / "system_a.yaml"),
               "--set", "loss=nll", "--set", "loss=focal class_weights=auto", "--seeds", "2",
               "--out", str(tmp_path / "ablate"),
               "--profile", str(ROOT / "hparams" / "profiles" / "demo.yaml"),
               f"--data_folder={mini_corpus}", f"--tiny_models_folder={tiny_models}", "--debug"]
    first = run(command, timeout=1200)
    folders = sorted(p.relative_to(tmp_path / "ablate") for p in (tmp_path / "ablate").glob("*/seed_*"))
    assert [str(p) for p in folders] == ["loss-focal_class_weights-auto/seed_1993",
                                         "loss-focal_class_weights-auto/seed_1994",
                                         "loss-nll/seed_1993", "loss-nll/seed_1994"]
    table = (tmp_path / "ablate" / "ablation.md").read_text()
    assert "| `loss=focal class_weights=auto` |" in table and " ± " in table
    again = run(command, timeout=120)  # everything done: nothing is trained again
    assert (tmp_path / "ablate" / "ablation.md").read_text() == table
    assert first.stdout.splitlines()[-3:] == again.stdout.splitlines()[-3:]
