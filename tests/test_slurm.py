"""The SLURM template (recipes/slurm/) without SLURM: syntax, and the commands it would run.

``DRY_RUN=1`` makes each script print its commands instead of running them; the launcher that
``srun`` starts on each node, ``torchrun_node.sh``, runs for real in tests/test_multinode.py.
"""

import os
import re
import subprocess

import pytest

from tests.conftest import ROOT, SYSTEMS

SLURM = ROOT / "recipes" / "slurm"


def dry_run(script, *args, **env):
    done = subprocess.run(
        ["bash", str(SLURM / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DRY_RUN": "1", **env},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("script", sorted(p.name for p in SLURM.iterdir()))
def test_scripts_parse(script):
    done = subprocess.run(["bash", "-n", str(SLURM / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_submit_chains_shards_systems_and_fusion():
    existed = (ROOT / "logs").exists()
    lines = dry_run("submit.sh", "/corpus", "/results", SHARDS="4", NODES="3").splitlines()
    jobs = [re.match(r"sbatch --parsable (.*) (\S+\.sbatch) -> (\d+)$", line) for line in lines[:-1]]
    assert all(jobs), lines
    scripts = [job.group(2).split("/")[-1] for job in jobs]
    assert scripts == ["transcribe.sbatch", "merge.sbatch", *["train.sbatch"] * len(SYSTEMS), "fuse.sbatch"]
    options, ids = [job.group(1) for job in jobs], [job.group(3) for job in jobs]
    assert "--array=1-4" in options[0]
    assert f"--dependency=afterok:{ids[0]}" in options[1]
    for system, train in zip(SYSTEMS, options[2:-1], strict=True):
        assert f"--dependency=afterok:{ids[1]}" in train and f"SYSTEM={system}" in train
        assert "--nodes=3" in train
    # Fusion waits for all five systems (a requeued system keeps its id: fusion keeps waiting).
    assert f"--dependency=afterok:{':'.join(ids[2:-1])}" in options[-1]
    assert existed == (ROOT / "logs").exists(), "the dry run created logs/"


def test_train_job_runs_the_node_launcher_with_the_systems_options():
    env = {"DATA": "/corpus", "MASTER_ADDR": "node001", "SLURM_JOB_ID": "4242"}
    speech = dry_run("train.sbatch", SYSTEM="a", **env).split()
    text = dry_run("train.sbatch", SYSTEM="d", WHISPER_MODEL="large-v3", **env).split()
    assert speech[:4] == ["srun", "--ntasks-per-node=1", "bash", "recipes/slurm/torchrun_node.sh"]
    assert speech[4:6] == ["train.py", "hparams/system_a.yaml"] and "/corpus" in speech
    assert "--ckpt_interval_minutes=30" in speech and "--whisper_model" not in speech
    assert text[text.index("--whisper_model") + 1] == "large-v3"


def test_node_launcher_gives_each_node_its_rank():
    env = {"SLURM_NNODES": "2", "MASTER_ADDR": "node001", "MASTER_PORT": "23456", "SLURM_GPUS_ON_NODE": "4"}
    for node in (0, 1):
        command = dry_run("torchrun_node.sh", "train.py", "x.yaml", SLURM_NODEID=str(node), **env).split()
        assert command == [
            "torchrun",
            "--nnodes=2",
            f"--node_rank={node}",
            "--nproc_per_node=4",
            "--master_addr=node001",
            "--master_port=23456",
            "train.py",
            "x.yaml",
        ]
