"""bench/rtf.py --smoke and bench/startup.py run end to end and print every figure they promise."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, THREADS

ENV = {**os.environ, "OMP_NUM_THREADS": THREADS, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
NUMBER = r"\d+\.\d+"


@pytest.mark.slow  # exports four graphs and runs eight processes: a few minutes on 2 cores
def test_rtf_smoke_prints_runtimes_side_by_side_and_the_batching_ceiling(tmp_path):
    done = subprocess.run([sys.executable, "bench/rtf.py", "--smoke", "--work", str(tmp_path)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    row = rf"^\| ([AD]) \| (pytorch|onnx|onnx-int8) \| 1 \| {NUMBER} \| ({NUMBER}) \| ({NUMBER}) \|"
    rows = re.findall(row, out, re.M)
    assert {(system, runtime) for system, runtime, *_ in rows} == {
        (s, r) for s in "AD" for r in ("pytorch", "onnx", "onnx-int8")}
    assert all(float(one) > 0 and float(batched) > 0 for *_, one, batched in rows)
    assert re.search(rf"^\| HF pipeline \(tiny WavLM\) \| pytorch \| 1 \| {NUMBER} \| {NUMBER} \|", out, re.M)
    assert re.search(r"^\| Whisper tiny.en", out, re.M)
    ceiling = re.search(r"1 thread\(s\): (\d+) GFLOP/s one clip, (\d+) batched: .* at most (\d+\.\d+)x", out)
    assert ceiling and int(ceiling[1]) > 0 and int(ceiling[2]) > 0, out[-2000:]


@pytest.mark.slow  # three fresh processes, each importing torch and loading the five systems
def test_startup_prints_each_stage_against_one_clip(demo_package):
    command = [sys.executable, "bench/startup.py", "--model", str(demo_package[0]), "--repeats", "1"]
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(rf"one 3 s clip classifies in {NUMBER} s", out), out
    for stage in ("import torch", "import ser", "import model code", "load", "first clip", "next clip"):
        row = re.search(rf"^\| {stage} \| ({NUMBER}) \| ({NUMBER}) \| ({NUMBER})x \|$", out, re.M)
        assert row and float(row[2]) > 0, (stage, out)
    # A PyTorch package has no "weights packed" column (an ONNX option).
    assert "packed" not in out
