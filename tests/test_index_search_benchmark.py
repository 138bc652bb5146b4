"""The index search benchmark runs (a short smoke run: its figures are for people, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_index_search_benchmark_runs_and_exact_search_finds_its_own_top_10(tmp_path):
    figures = tmp_path / "figures.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "index_search.py"),
            *("--vectors", "5000", "--corpus-documents", "64", "--queries", "50", "--repeats", "1"),
            *("--json", str(figures)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    tables = run.stdout.split("\n== ")[1:]
    assert len(tables) == 2  # the demo corpus, then the synthetic vectors
    for table in tables:
        lines = table.splitlines()
        exact = next(line for line in lines if line.startswith("flat  exact"))
        assert exact.split()[-1] == "1.000"  # recall@10 of exact search against itself
        for kind in ("flat", "ivf", "hnsw"):
            assert any(line.startswith(kind) for line in lines), f"no {kind} row in:\n{table}"
        assert "Settings meeting the target" in table

    datasets = json.loads(figures.read_text())["datasets"]
    assert [d["vectors"] for d in datasets] == [64, 5000]
    for dataset in datasets:
        assert {row["kind"] for row in dataset["rows"]} == {"flat", "ivf", "hnsw"}
        flat = dataset["rows"][0]
        assert flat["kind"] == "flat" and flat["recall_at_10"] == 1.0 and not flat["meets_target"]
