"""recipes/msp_podcast.sh: every stage's status is checked, and E trains on the script's relabeling.

The real stages need the licensed corpus and GPUs; here ``PYTHON`` is a small program that
records each command the script runs (and fails where a test says), so what is tested is the
script's own control flow: which commands it runs, with which arguments, and what it does
when one of them fails.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import SYSTEMS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "recipes" / "msp_podcast.sh"

RECORDER = """#!{python}
import os, sys
with open(os.environ["CALLS"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
fail = os.environ.get("FAIL_WITH", "")
if fail and fail in " ".join(sys.argv[1:]):
    sys.exit(3)
"""


def _run(tmp_path, fail_with=""):
    recorder = tmp_path / "python"
    recorder.write_text(RECORDER.format(python=sys.executable))
    recorder.chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PYTHON": str(recorder), "NGPU": "2", "CALLS": str(calls), "FAIL_WITH": fail_with}
    (tmp_path / "corpus").mkdir()
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "corpus"), str(tmp_path / "results")],
                          env=env, capture_output=True, text=True, timeout=60)
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_a_failed_transcription_shard_fails_the_script(tmp_path):
    done, calls = _run(tmp_path, fail_with="--shard 2/2")
    assert done.returncode == 3
    assert "transcription shard 2/2 failed (exit status 3)" in done.stderr
    assert sum("--shard" in call for call in calls) == 2  # both shards ran
    assert not any("--merge" in call or "consensus" in call or "train.py" in call for call in calls)


def test_system_e_trains_on_the_relabeling_the_script_computed(tmp_path):
    done, calls = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    relabeling = [call for call in calls if call.startswith("-m data_prep.consensus")]
    assert len(relabeling) == 1
    out = relabeling[0].split("--out ")[1].split()[0]
    trainings = [call.split("train.py ")[1] for call in calls if "train.py" in call]
    assert all(call.startswith("-m torch.distributed.run --nproc_per_node=2") for call in calls
               if "train.py" in call)  # NGPU=2: DDP
    expected = [f"hparams/system_{s}.yaml" for s in SYSTEMS]
    assert [call.split()[0] for call in trainings][: len(expected)] == expected
    with_relabeling = [call.split()[0] for call in trainings if f"--relabeled_csv {out}" in call]
    assert with_relabeling == ["hparams/system_e.yaml"]
    assert sum("--relabeled_csv" in call for call in trainings) == 1
    assert Path(out).is_absolute() and any(call.startswith("-m fusion.fuse") for call in calls)


def test_a_failed_training_stops_the_script(tmp_path):
    done, calls = _run(tmp_path, fail_with="system_c.yaml")
    assert done.returncode == 3
    assert "train.py hparams/system_c.yaml" in calls[-1]


def test_system_e_prepares_from_a_given_relabeling_without_recomputing_it(mini_corpus, tmp_path):
    import json

    import pandas as pd

    from data_prep.consensus import main as consensus_main
    from data_prep.system_prep import prepare_system_data

    given = tmp_path / "relabeled_K0.5.csv"
    assert consensus_main(["--data_folder", str(mini_corpus), "--threshold", "0.5", "--out", str(given)]) == 0
    frame = pd.read_csv(given)
    # Keep one added turn only: a recomputation would add them all back.
    added = frame.index[frame["AddedToTrain"]]
    assert len(added) >= 2, "the mini corpus should yield relabeled turns"
    frame.loc[added[1:], "AddedToTrain"] = False
    frame.to_csv(given, index=False)
    hparams = {"data_folder": str(mini_corpus), "manifest_folder": str(tmp_path / "manifests"),
               "splits": {"train": "Train", "valid": "Development", "test": "Test3"}, "skip_prep": False,
               "transcripts": None, "relabel_threshold": 0.5, "relabel_classes": list("ACDFSU"),
               "relabeled_csv": str(given)}
    manifests = prepare_system_data(hparams)
    train = json.loads(Path(manifests["train"]).read_text())
    assert sum(bool(entry.get("relabeled")) for entry in train.values()) == 1
    kept = tmp_path / "manifests" / "relabeled_K0.5_ACDFSU.csv"
    assert kept.read_bytes() == given.read_bytes()  # beside the manifests, for the report's Table 2


def test_ddp_keeps_the_global_batch_of_each_yaml(tmp_path):
    """NGPU=2: each process takes half the YAML's turns per step, so a step sees the paper's batch."""
    done, calls = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    trainings = {call.split("train.py ")[1].split()[0]: call for call in calls if "train.py" in call}
    for yaml, call in trainings.items():
        text = (ROOT / yaml).read_text()
        batch = int(re.search(r"^batch_size: (\d+)", text, re.M).group(1))
        accumulation = re.search(r"^grad_accumulation_factor: (\d+)", text, re.M)
        accumulation = int(accumulation.group(1)) if accumulation else 1
        per_process = int(re.search(r"--batch_size=(\d+)", call).group(1))
        given = re.search(r"--grad_accumulation_factor=(\d+)", call)
        kept = int(given.group(1)) if given else accumulation
        assert per_process * 2 * kept == batch * accumulation, (yaml, call)
    assert "--batch_size=8" in trainings["hparams/system_a.yaml"]  # 16 turns over 2 GPUs
    assert "--batch_size=4" in trainings["hparams/system_c.yaml"]  # 8 x 2 accumulated
