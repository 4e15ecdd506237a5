"""Past one machine: train.py on two torchrun "nodes", pre-empted and requeued.

Two launchers with one process each rendezvous on 127.0.0.1 (static rendezvous, gloo), as two
machines of a cluster do on the first node's address: each is ``recipes/slurm/torchrun_node.sh``
(what ``srun`` starts on every node in ``recipes/slurm/train.sbatch``), with ``SLURM_NODEID`` 0
and 1, so the world has 2 processes, ranks 0 and 1 on nodes 0 and 1. One node's worker gets
SIGTERM, as a pre-empted SLURM job does: both workers checkpoint after the same step and stop;
launching both nodes again (the requeued job) resumes from that checkpoint and finishes.
"""

import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, train_command

KILLPOINTS = ROOT / "tests" / "killpoints"
LAUNCHER = ROOT / "recipes" / "slurm" / "torchrun_node.sh"


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_two_nodes(command, node_env=None):
    """Run ``command`` (train.py and its arguments) under two torchrun launchers; (rc, output) each."""
    port = _free_port()
    processes = []
    for node_rank in (0, 1):
        # The SLURM template's launcher, with the variables srun and train.sbatch set on a node.
        slurm = {
            "SLURM_NNODES": "2",
            "SLURM_NODEID": str(node_rank),
            "NPROC_PER_NODE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "TORCHRUN": f"{sys.executable} -m torch.distributed.run",
        }
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            **slurm,
            **((node_env or {}).get(node_rank, {})),
        }
        processes.append(
            subprocess.Popen(
                ["bash", str(LAUNCHER), *command],
                cwd=ROOT,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    return [(process.returncode, output) for process, output in zip(processes, outputs, strict=True)]


@pytest.mark.slow  # two trainings under torchrun: about a minute on 2 cores
def test_two_nodes_train_stop_together_on_sigterm_and_resume(mini_corpus, tiny_models, tmp_path):
    # --debug evaluates 2 batches per rank: batches of 16 cover each rank's half of dev.
    command = train_command(
        "a", mini_corpus, tmp_path, tiny_models, "--debug", "--batch_size=16", "--distributed_backend=gloo"
    )[1:]
    folder = tmp_path / "system_a" / "1993"
    # Node 1's worker only is signalled, during its first training step.
    preempted = {
        1: {
            "PYTHONPATH": os.pathsep.join([str(KILLPOINTS), str(ROOT)]),
            "MSP_SER_KILL_AT": "speechbrain.core|Brain.fit_batch||1|sigterm",
        }
    }

    stopped = launch_two_nodes(command, preempted)

    for node_rank, (returncode, output) in enumerate(stopped):
        assert returncode != 0, f"node {node_rank} did not stop:\n{output[-3000:]}"
        # Node 0 was not signalled: it stops because node 1 was (the all-reduce of the request).
        assert "stopped by SIGTERM at epoch 1, step 1" in output, f"node {node_rank}:\n{output[-3000:]}"
    metas = [yaml.safe_load((ckpt / "CKPT.yaml").read_text()) for ckpt in (folder / "save").glob("CKPT+*")]
    assert [(m["epoch"], m["step"]) for m in metas if m.get("brain_intra_epoch_ckpt")] == [(1, 1)]
    assert not (folder / "posteriors").exists()

    resumed = launch_two_nodes(command)

    for node_rank, (returncode, output) in enumerate(resumed):
        assert returncode == 0, f"node {node_rank} failed:\n{output[-3000:]}"
    assert "Loading a checkpoint" in resumed[0][1]
    log = (folder / "train_log.txt").read_text().splitlines()
    assert [line.split(",")[0] for line in log if line.startswith("epoch:")] == ["epoch: 1", "epoch: 2"]
    # Each rank evaluated half of dev; the posteriors gather both halves, each turn once.
    valid = pd.read_csv(folder / "posteriors" / "valid.csv")
    manifest = json.loads((folder / "manifests" / "valid.json").read_text())
    assert sorted(valid["FileName"]) == sorted(f"{uid}.wav" for uid in manifest)
    for name, runs in (("pre-empted", stopped), ("requeued", resumed)):  # pytest -rP shows it
        for node_rank, (returncode, output) in enumerate(runs):
            lines = [line for line in output.splitlines() if "train.py:" in line or "Loading a ch" in line]
            print(f"{name} node {node_rank}: exit {returncode}; " + " | ".join(lines[-2:]))
