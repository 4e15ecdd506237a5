"""The main job (`make demo`) end to end, at a reduced size."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT, THREADS


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reuses_its_work(tmp_path):
    command = [
        sys.executable, "-m", "recipes.demo", f"--corpus={tmp_path / 'corpus'}",
        f"--results={tmp_path / 'results'}", "--turns=48", "--epochs=2",
    ]
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stages = ("[1/7]", "[2/7]", "[3/7]", "[4/7] system E", "[4/7] task2_d", "[5/7]", "[6/7] Task 2 fusion",
              "[7/7]")
    for stage in stages:
        assert stage in done.stdout, stage
    fusion = tmp_path / "results" / "fusion"
    for name in ("report.md", "confusion_matrix.png", "f1_per_class.png", "submission.csv"):
        assert (fusion / name).is_file(), name
    assert "F1-Macro" in done.stdout and "Sub-System E" in (fusion / "report.md").read_text()
    assert "| **Mean CCC** |" in done.stdout
    task2 = tmp_path / "results" / "fusion_task2"
    scatters = [f"scatter_{a}.png" for a in ("EmoAct", "EmoVal", "EmoDom")]
    for name in ("report.md", "submission.csv", *scatters):
        assert (task2 / name).is_file(), name
    predictions = pd.read_csv(tmp_path / "results" / "predict_examples.csv")
    assert predictions["EmoClass"].notna().all()
    assert predictions[["EmoAct", "EmoVal", "EmoDom"]].notna().all().all()

    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                           env={**os.environ, **env})
    assert again.returncode == 0
    assert "mini corpus: reusing" in again.stdout
    assert again.stdout.count("[4/7] system") == 5
