"""Adding a system is one YAML: a system F (A with attention pooling) in an extra hparams folder
is trained by the demo, fused and used by the predictions, with nothing else changed."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from recipes.systems import DuplicateSystemError, find_systems
from tests.conftest import ROOT, THREADS


def _system_f(folder):
    """hparams/system_a.yaml with attention pooling, as ``folder/system_f.yaml``.

    What differs is all in the YAML: its folder, its pooling, and the pooling's weights joining
    the head's optimizer (train.py refuses trainable parameters that no optimizer holds).
    """
    text = (ROOT / "hparams" / "system_a.yaml").read_text()
    for old, new in (("system_a/<seed>", "system_f/<seed>"),
                     ("pooling: !new:ser.nn.pooling.MeanPooling",
                      "pooling: !new:ser.nn.pooling.AttentionPooling\n    input_size: !ref <speech_dim>"),
                     ("modules: [!ref <head>]", "modules: [!ref <pooling>, !ref <head>]")):
        assert old in text, old
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "system_f.yaml").write_text(text)
    return folder


def test_an_extra_hparams_folder_adds_its_systems_and_a_name_defined_twice_is_refused(tmp_path):
    extra = _system_f(tmp_path / "hparams")
    assert list(find_systems("classes", [extra]))[-1] == "system_f"
    (extra / "system_a.yaml").write_text("seed: 1\n")
    with pytest.raises(DuplicateSystemError, match="system_a.yaml: system system_a is already defined"):
        find_systems("classes", [extra])


@pytest.mark.slow
def test_a_new_system_is_trained_fused_and_predicted_by_the_demo(tmp_path):
    extra = _system_f(tmp_path / "hparams")
    results = tmp_path / "results"
    command = [sys.executable, "-m", "recipes.demo", f"--corpus={tmp_path / 'corpus'}",
               f"--results={results}", "--turns=48", "--epochs=1", f"--extra_hparams={extra}",
               "--systems", "a", "f", "--attribute_systems"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[4/7] system F: dev macro-F1" in done.stdout
    assert "AttentionPooling" in (results / "system_f" / "1993" / "hyperparams.yaml").read_text()
    assert json.loads((results / "system_f" / "1993" / "system.json").read_text())["name"] == "system_f"
    fused = json.loads((results / "fusion" / "fusion_model.json").read_text())
    assert fused["systems"] == ["Sub-System A", "Sub-System F"]
    assert "Sub-System F" in (results / "fusion" / "report.md").read_text()
    predictions = pd.read_csv(results / "predict_examples.csv")
    assert len(predictions) > 0 and predictions["EmoClass"].notna().all()
