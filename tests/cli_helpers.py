"""Helpers for tests that run the project's commands as a user does and check their errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ser.emotions import EMOTIONS
from ser.io.posteriors import write_posteriors
from tests.conftest import ROOT, THREADS

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": THREADS}


def cli(command, timeout=300, preexec_fn=None):
    return subprocess.run(
        [str(part) for part in command],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def python_module(module, *args):
    return [sys.executable, "-m", module, *args]


def assert_one_line_error(done, *fragments):
    """Failed, without a traceback, and some stderr line holds every fragment."""
    assert done.returncode != 0, done.stdout[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if all(str(f) in line for f in fragments)]
    assert lines, f"no stderr line with {fragments}:\n{done.stderr[-3000:]}"


def fake_systems(root, n_turns=24):
    """Two system folders as train.py leaves them (posteriors and dev manifest), random scores."""
    rng = np.random.default_rng(0)
    valid = [f"MSP-PODCAST_{i:04d}_0001.wav" for i in range(n_turns)]
    manifest = {
        Path(n).stem: {"emotion": EMOTIONS[i % 8], "speaker": str(i % 6)} for i, n in enumerate(valid)
    }
    folders = []
    for system in ("system_a", "system_b"):
        folder = root / system / "1993"
        for split, names in (("valid", valid), ("test", valid[:5])):
            scores = rng.dirichlet(np.ones(8), len(names))
            write_posteriors(folder / "posteriors" / f"{split}.csv", names, scores)
        (folder / "manifests").mkdir(parents=True)
        (folder / "manifests" / "valid.json").write_text(json.dumps(manifest))
        folders.append(folder)
    return folders


def fusion_command(folders, out):
    return python_module(
        "fusion.fuse", *folders, "--out", out, "--folds", "2", "--kernels", "linear", "--C", "1"
    )
