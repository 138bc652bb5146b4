"""The benchmark scripts run (a short smoke run: their figures are for people, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str) -> str:
    """A short run of `benchmarks/<script>`; its output, after checking it exited cleanly and paired the variants."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "paired ratio" in run.stdout
    return run.stdout


@pytest.mark.integration
def test_nll_pass_benchmark_runs_and_the_two_passes_agree():
    out = run_benchmark("nll_pass.py", "--repeats", "1", "--sequences", "2")
    assert float(out.split("largest NLL difference:")[1].split()[0]) < 1e-4


@pytest.mark.integration
def test_index_encoding_benchmark_runs_and_finds_every_vector_at_its_row():
    out = run_benchmark("index_encoding.py", "--documents", "64", "--repeats", "1")
    assert float(out.split("own row ranked first:")[1].split()[0]) > 0.95
