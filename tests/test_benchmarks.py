"""The benchmark scripts run (a short smoke run: their figures are for people, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_nll_pass_benchmark_runs_and_the_two_passes_agree():
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/nll_pass.py"), "--repeats", "1", "--sequences", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "paired ratio" in run.stdout
    difference = float(run.stdout.split("largest NLL difference:")[1].split()[0])
    assert difference < 1e-4


@pytest.mark.integration
def test_index_encoding_benchmark_runs_and_finds_every_vector_at_its_row():
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/index_encoding.py"), "--documents", "64", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "paired ratio" in run.stdout
    assert float(run.stdout.split("own row ranked first:")[1].split()[0]) > 0.95
