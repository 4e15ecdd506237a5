"""Smoke test of bench/real_size.py (the real-size dry run) on the demo's tiny encoders."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_real_size_dry_run_reports_groups_frozen_parts_and_checkpoint(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "real_size.py"), "--size", "tiny", "--systems", "a",
               "--turns", "2", "--batch_size", "2", "--work", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| A |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert "speech" in cells[2] and "head" in cells[2]
    # Frozen parameters unchanged, every trainable one moved (unless layerdrop skipped its layer).
    assert cells[4].startswith("yes"), cells[4]
    assert float(cells[5]) > 0 and "ESTIMATE" in done.stdout
