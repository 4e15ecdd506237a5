"""train.py end to end: the five systems in debug mode, resume, DDP, YAML hygiene."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from speechbrain.utils.run_opts import RunOptions

from ser.emotions import EMOTIONS
from ser.training.overrides import top_level_keys
from tests.conftest import SYSTEMS, THREADS, run, train_command

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("system", SYSTEMS)
def test_each_system_writes_its_outputs(system, debug_results, mini_corpus):
    folder = debug_results / f"system_{system}" / "1993"
    for name in ("hyperparams.yaml", "train_log.txt", "env.log", "metrics.json"):
        assert (folder / name).is_file(), name

    truth = pd.read_csv(mini_corpus / "true_labels.csv")
    valid = pd.read_csv(folder / "posteriors" / "valid.csv")
    test = pd.read_csv(folder / "posteriors" / "test.csv")
    for table in (valid, test):
        assert list(table.columns) == ["FileName", *EMOTIONS]
        assert table["FileName"].is_monotonic_increasing
        assert (table[list(EMOTIONS)].sum(axis=1) - 1).abs().max() < 1e-4
    assert set(test["FileName"]) == set(truth.loc[truth["Split_Set"] == "Test3", "FileName"])

    metrics = json.loads((folder / "metrics.json").read_text())
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert set(metrics["per_class_f1"]) == set(EMOTIONS)
    assert metrics["n_turns"] == len(valid)
    assert sum(map(sum, metrics["confusion_matrix"])) == len(valid)


def test_system_e_trains_on_more_turns_than_d(debug_results):
    def train_size(system):
        manifest = debug_results / f"system_{system}" / "1993" / "manifests" / "train.json"
        return len(json.loads(manifest.read_text()))

    assert train_size("e") > train_size("d")


def test_every_top_level_yaml_key_is_used():
    code = "\n".join(
        path.read_text()
        for path in [ROOT / "train.py", *ROOT.glob("ser/**/*.py"), ROOT / "data_prep" / "system_prep.py"]
    )
    # SpeechBrain's Brain reads its run options (grad_accumulation_factor, ...) from the YAML too.
    run_options = {field.name for field in dataclasses.fields(RunOptions)}
    for yaml_file in sorted((ROOT / "hparams").glob("*.yaml")):
        text = yaml_file.read_text()
        for key in sorted(top_level_keys(text)):
            if key.startswith("__") or key in run_options:
                continue  # executed on load (e.g. seeding), or read by SpeechBrain
            referenced = f"<{key}>" in text or f"<{key}[" in text
            read_by_code = re.search(rf"hparams(\[\"|\.get\(\"|\.){key}\b", code)
            assert referenced or read_by_code, f"{yaml_file.name}: key {key!r} is never used"


def test_d_and_e_differ_only_in_relabeling():
    d = (ROOT / "hparams" / "system_d.yaml").read_text().splitlines()
    e = (ROOT / "hparams" / "system_e.yaml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(d, e, strict=True) if a != b and not a.startswith("#")]
    assert [a.split(":")[0] for a, _ in changed] == ["output_folder", "relabel_threshold"]


@pytest.mark.slow
def test_tensorboard_logging_is_switched_on_in_yaml(mini_corpus, tiny_models, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(train_command("a", mini_corpus, tmp_path, tiny_models, "--debug", "--use_tensorboard=True"))
    events = EventAccumulator(str(tmp_path / "system_a" / "1993" / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"epoch", "lr_speech", "lr_head"} <= tags and any("macro_f1" in tag for tag in tags), tags
    assert len(events.Scalars("epoch")) == 2  # --debug trains 2 epochs


def test_unknown_override_is_refused(mini_corpus, tiny_models, tmp_path):
    command = train_command("a", mini_corpus, tmp_path, tiny_models, "--debug", "--no_such_key=3")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "no_such_key" in done.stderr


def test_killed_run_resumes_from_its_last_checkpoint(mini_corpus, tiny_models, tmp_path):
    extra = ["--debug", "--debug_persistently", "--debug_epochs=4", "--skip_prep=False"]
    command = train_command("a", mini_corpus, tmp_path, tiny_models, *extra)
    save = tmp_path / "system_a" / "1993" / "save"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = subprocess.Popen(command, cwd=ROOT, env=env, **quiet)
    deadline = time.time() + 300
    while time.time() < deadline and not list(save.glob("CKPT+*")):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoints = list(save.glob("CKPT+*"))
    assert checkpoints, "no checkpoint was written before the kill"

    log = tmp_path / "system_a" / "1993" / "train_log.txt"
    epochs_before = log.read_text().count("epoch:") if log.exists() else 0
    done = run(command)
    assert "Loading a checkpoint from" in done.stderr + done.stdout
    epochs = re.findall(r"^epoch: (\d+)", log.read_text(), flags=re.MULTILINE)
    assert epochs == [str(n) for n in range(1, 5)][: len(epochs)] and len(epochs) == 4
    assert epochs_before >= 1
    assert (tmp_path / "system_a" / "1993" / "posteriors" / "test.csv").is_file()


def test_ddp_two_processes_on_cpu(mini_corpus, tiny_models, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--standalone"]  # torchrun binds a free port itself: no race for one picked here
    command = train_command("a", mini_corpus, tmp_path, tiny_models, "--debug", "--distributed_backend=gloo")
    done = run(torchrun + command[1:])
    assert (tmp_path / "system_a" / "1993" / "posteriors" / "valid.csv").is_file(), done.stderr[-2000:]
