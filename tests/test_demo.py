"""The main job (`make demo`) end to end, at a reduced size."""

import json
import os
import re
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
    stages = ("[1/7]", "[2/7] consensus relabeling", "[3/7] Whisper", "[4/7] system E", "[4/7] task2_d",
              "[5/7]", "[6/7] Task 2 fusion", "[7/7] python -m ser.predict", "[7/7] model package")
    for stage in stages:
        assert stage in done.stdout, stage
    # Stage lines come in order; Whisper runs beside the trainings, so it may end after one of them.
    order = [int(line[1]) for line in done.stdout.splitlines() if line[:1] == "[" and line[2:5] == "/7]"]
    assert sorted(order, key=lambda n: 3 if n in (3, 4) else n) == order, order
    # No progress bar when the output is piped (captured here), and no unrounded number.
    assert "\r" not in done.stdout + done.stderr
    assert not re.search(r"\d\.\d{7,}", done.stdout), re.search(r".*\d\.\d{7,}.*", done.stdout).group(0)
    package = tmp_path / "results" / "package"
    assert (package / "ser_package.json").is_file() and (package / "custom_interface.py").is_file()
    manifest = json.loads((package / "ser_package.json").read_text())
    assert (manifest["fusion"], manifest["attribute_fusion"]) == ("fusion", "fusion_task2")
    lines = done.stdout.splitlines()
    shown = lines[lines.index(next(line for line in lines if "[7/7] model package" in line)) + 1:]
    assert shown[0].split() == ["python", "-m", "ser.predict", "--model", str(package), "FILE"]
    assert shown[1].split() == ["python", "-m", "ser.app", "--model", str(package)]
    fusion = tmp_path / "results" / "fusion"
    for name in ("report.md", "confusion_matrix.png", "f1_per_class.png", "reliability_diagram.png",
                 "submission.csv"):
        assert (fusion / name).is_file(), name
    assert "F1-Macro" in done.stdout and "Sub-System E" in (fusion / "report.md").read_text()
    # Every dev score with its interval, the paired tests and the calibration, on the console.
    assert "95 % CI" in done.stdout and "| Sub-System E vs Sub-System D |" in done.stdout
    assert "calibration error of its probabilities" in done.stdout
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
