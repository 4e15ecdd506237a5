"""train.py scores every labelled split of eval_splits that the corpus holds (Test1 -> test1)."""

import json
import shutil

import pandas as pd
import pytest

from ser.emotions import EMOTIONS
from tests.conftest import run, train_command


@pytest.fixture(scope="module")
def corpus_with_test1(mini_corpus, tmp_path_factory):
    """The mini corpus, with the Development turns of half its Development speakers moved to Test1."""
    root = tmp_path_factory.mktemp("corpus_with_test1")
    for name in ("Audios", "Transcripts"):
        (root / name).symlink_to(mini_corpus / name, target_is_directory=True)
    shutil.copytree(mini_corpus / "Labels", root / "Labels")
    labels_csv = root / "Labels" / "labels_consensus.csv"
    labels = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    development = labels["Split_Set"] == "Development"
    speakers = sorted(labels.loc[development, "SpkrID"].unique())
    moved = development & labels["SpkrID"].isin(speakers[: len(speakers) // 2])
    labels.loc[moved, "Split_Set"] = "Test1"
    labels.to_csv(labels_csv, index=False)
    scored = labels["EmoClass"].isin(EMOTIONS)
    return root, {
        "test1": set(labels.loc[moved & scored, "FileName"]),
        "valid": set(labels.loc[development & ~moved & scored, "FileName"]),
    }


def test_each_labelled_eval_split_gets_manifest_posteriors_and_metrics(
    corpus_with_test1, tiny_models, tmp_path
):
    corpus, expected = corpus_with_test1
    assert expected["test1"] and expected["valid"]
    # --debug evaluates 2 batches: batches of 16 cover each of these splits (about 20 turns each).
    done = run(train_command("a", corpus, tmp_path, tiny_models, "--debug", "--batch_size=16"))
    output = done.stdout + done.stderr
    folder = tmp_path / "system_a" / "1993"

    manifest = json.loads((folder / "manifests" / "test1.json").read_text())
    assert {f"{uid}.wav" for uid in manifest} == expected["test1"]
    assert {entry["split"] for entry in manifest.values()} == {"Test1"}
    for name in ("valid", "test1"):
        posteriors = pd.read_csv(folder / "posteriors" / f"{name}.csv")
        assert list(posteriors.columns) == ["FileName", *EMOTIONS]
        assert set(posteriors["FileName"]) == expected[name]
    dev = json.loads((folder / "metrics.json").read_text())
    test1 = json.loads((folder / "metrics_test1.json").read_text())
    assert set(test1) == set(dev) and test1["n_turns"] == len(expected["test1"])
    assert dev["n_turns"] == len(expected["valid"])
    # Test2 is listed in the YAML but absent from this corpus: one warning line, no files.
    assert len([line for line in output.splitlines() if "eval_splits: Test2" in line]) == 1
    assert not (folder / "metrics_test2.json").exists() and not (folder / "manifests" / "test2.json").exists()
    assert "Optimizer steps per epoch:" in output and "Trainable parameters:" in output
