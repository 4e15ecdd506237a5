"""bench/gpu.sh --smoke: every section of the GPU checks runs (on the CPU, tiny sizes)."""

import os
import re
import subprocess

import pytest

from tests.conftest import ROOT, THREADS


@pytest.mark.slow  # four benchmarks back to back: about a minute and a half on 2 cores
def test_gpu_checks_smoke_run_prints_every_figure(mini_corpus, tiny_models, debug_results, tmp_path):
    log = tmp_path / "bench_gpu.log"
    command = [
        "bash",
        "bench/gpu.sh",
        "--smoke",
        "--corpus",
        str(mini_corpus),
        "--models_folder",
        str(tiny_models),
        "--systems",
        str(debug_results / "system_a" / "1993"),
        "--log",
        str(log),
    ]
    env = {
        **os.environ,
        "PYTHON": os.environ.get("PYTHON", __import__("sys").executable),
        "OMP_NUM_THREADS": THREADS,
    }
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for number in "1234":
        assert f"## {number}." in out
    # 1: the four batching x precision rows, each with a rate.
    rows = re.findall(r"^\| (random|bucketed) \| (fp32|bf16) \| \d+ \| [\d.]+ \| ([\d.]+) \|", out, re.M)
    assert {(b, p) for b, p, _ in rows} == {
        ("random", "fp32"),
        ("bucketed", "bf16"),
        ("random", "bf16"),
        ("bucketed", "fp32"),
    }
    assert all(float(rate) > 0 for _, _, rate in rows)
    # 2: one memory row per system, measured and estimated.
    memory = re.findall(r"^\| ([ACD]) \| [\d.]+ \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", out, re.M)
    assert [row[0] for row in memory] == ["A", "C", "D"] and all(float(row[2]) > 0 for row in memory)
    # 3 and 4: Whisper speed-up and predict files/s.
    assert re.search(r"^\s+1\s+[\d.]+\s+[\d.]+\s+[\d.]+x", out, re.M)
    assert re.search(r"4 files in [\d.]+ s = [\d.]+ files/s", out)
    # The libraries' chatter went to the log, not the console.
    assert "INFO" not in out and "Loading weights" not in done.stderr
    assert "speechbrain" in log.read_text()
