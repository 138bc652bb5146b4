"""The benchmark scripts run (a short smoke run: their figures are for people, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str, paired: bool = True) -> str:
    """A short run of `benchmarks/<script>`; its output, after checking it exited cleanly (and paired the variants).

    The timeout only guards against a hang: on a loaded 2-core machine the joint-step smoke run took 11 minutes."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True, timeout=1800
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert not paired or "paired ratio" in run.stdout
    return run.stdout


@pytest.mark.integration
def test_joint_step_benchmark_runs_and_the_scoring_passes_agree(tmp_path):
    # Tiny settings (a 2-layer random generator, short documents, one round): seconds, not the real figures, which
    # come from the benchmark itself. S = 10 > N's default: the paper's S needs --num-candidates.
    run_benchmark(
        "joint_step.py",
        *("--generator", "tiny-random", "--lora-r", "4", "--num-sampled", "10", "--num-candidates", "12"),
        *("--max-document-length", "32", "--repeats", "1", "--json", str(tmp_path / "figures.json")),
    )
    figures = json.loads((tmp_path / "figures.json").read_text())
    scoring_passes = ["scoring pass", "scoring pass, packed", "scoring pass, one packed row", "scoring pass, padded"]
    for name in [*scoring_passes, "scoring pass, 1/forward"]:
        assert figures[name]["nll_difference"] < 1e-4, name
    assert figures["args"]["num_sampled"] == 10 and len(figures["packed_over_padded"]) == 1
    assert len(figures["one_row_over_packed"]) == 1
    assert set(figures["variants"]) == {
        "reference scoring",
        "scoring pass",
        "scoring pass, packed",
        "scoring pass, one packed row",
        "scoring pass, padded",
        "scoring pass, 1/forward",
        "JMLR step",
        "RAG-SFT step",
        "SFT step",
    }
    assert figures["scoring_flop_ceiling"] > 1  # the reference computes logits the scoring pass does not
    assert figures["variants"]["scoring pass, packed"]["padding"] == 0
    assert figures["variants"]["scoring pass, one packed row"]["padding"] == 0
    assert figures["variants"]["scoring pass, padded"]["padding"] > 0
    # The JMLR step does what the RAG-SFT step does plus S single-document forwards: the bound exceeds 1.
    assert figures["simple_bound"] > 1 and figures["L_K"] > figures["L1"] > 0


@pytest.mark.integration
def test_evaluation_benchmark_runs_and_batching_keeps_the_predictions():
    # 3 questions in batches of 2: a full batch and a ragged last one (the real figures use 64 in batches of 16).
    out = run_benchmark("evaluation.py", "--questions", "3", "--batch-size", "2", "--repeats", "1")
    first = out.split("same predictions:")[1]
    assert first.split()[0] == "3" and float(first.split("largest NLL difference")[1].split()[0]) < 1e-3


@pytest.mark.integration
def test_index_encoding_benchmark_runs_and_finds_every_vector_at_its_row():
    out = run_benchmark("index_encoding.py", "--documents", "64", "--repeats", "1")
    assert float(out.split("own row ranked first:")[1].split()[0]) > 0.95


@pytest.mark.integration
def test_index_search_benchmark_runs_and_exact_search_finds_its_own_top_10(tmp_path):
    figures = tmp_path / "figures.json"
    out = run_benchmark(
        "index_search.py",
        *("--vectors", "5000", "--corpus-documents", "64", "--queries", "50", "--repeats", "1"),
        *("--json", str(figures)),
        paired=False,
    )
    tables = out.split("\n== ")[1:]
    assert len(tables) == 2  # the demo corpus, then the synthetic vectors
    for table in tables:
        lines = table.splitlines()
        exact = next(line for line in lines if line.startswith("flat  exact"))
        assert exact.split()[-1] == "1.000"  # recall@10 of exact search against itself
        for kind in ("flat", "ivf", "ivfpq", "hnsw"):
            assert any(line.startswith(kind) for line in lines) or (kind == "ivfpq" and "IVF-PQ skipped" in table), (
                f"no {kind} row in:\n{table}"
            )
        assert "Settings meeting the target" in table

    datasets = json.loads(figures.read_text())["datasets"]
    assert [d["vectors"] for d in datasets] == [64, 5000]
    for dataset, kinds in zip(datasets, ({"flat", "ivf", "hnsw"}, {"flat", "ivf", "ivfpq", "hnsw"})):
        assert {row["kind"] for row in dataset["rows"]} == kinds  # 64 vectors cannot train 8-bit PQ codes
        flat = dataset["rows"][0]
        assert flat["kind"] == "flat" and flat["recall_at_10"] == 1.0 and not flat["meets_target"]


@pytest.mark.integration
def test_candidate_ranking_benchmark_runs_and_grouping_keeps_the_rankings():
    out = run_benchmark("candidate_ranking.py", "--questions", "16", "--repeats", "1")
    assert out.split("same rankings:")[1].split()[:3] == ["16", "of", "16"]


@pytest.mark.integration
def test_index_memory_benchmark_runs_and_the_mapped_store_allocates_no_arrow_memory_on_open(tmp_path):
    figures = tmp_path / "figures.json"
    run_benchmark(
        "index_memory.py",
        *("--passages", "3000", "--queries", "20", "--chunk-size", "1000", "--json", str(figures)),
        paired=False,  # memory figures of separate processes, not timed variants
    )
    result = json.loads(figures.read_text())
    assert result["build"]["num_documents"] == 3000
    mapped, whole = result["open"]["2"], result["open"]["1"]
    assert mapped["arrow_allocated_by_open"] == 0  # format 2: the text stays in the file, mapped
    assert whole["arrow_allocated_by_open"] >= whole["documents_file_bytes"]  # format 1: read whole
