"""Evaluation metrics against hand-computed values, and the training-curve plot."""

from __future__ import annotations

import math

import pytest
from datasets import Dataset

from jmlr_hf.evaluation import format_comparison, retrieval_metrics
from jmlr_hf.plots import plot_training_curves


def test_retrieval_metrics_hand_computed():
    rows = Dataset.from_list(
        [
            # gold ranked 2nd; evidence not first
            {"candidate_ids": ["x", "g1", "g2"], "gold_doc_ids": ["g1", "g2"], "evidence_doc_ids": ["g2"]},
            # gold ranked 1st, and it is the evidence
            {"candidate_ids": ["g3", "y", "z"], "gold_doc_ids": ["g3"], "evidence_doc_ids": ["g3"]},
            # no gold among the candidates
            {"candidate_ids": ["a", "b", "c"], "gold_doc_ids": ["g4"], "evidence_doc_ids": ["g4"]},
            # no gold known: not counted
            {"candidate_ids": ["a", "b", "c"], "gold_doc_ids": [], "evidence_doc_ids": []},
        ]
    )
    # The retriever re-ranks the candidates: row 0 puts g2 (index 2) first, row 1 keeps the order.
    rankings = [[2, 1, 0], [0, 1, 2], [0, 1, 2], [0, 1, 2]]
    metrics = retrieval_metrics(rows, rankings, k=2)
    assert metrics["recall@1"] == pytest.approx(2 / 3)  # rows 0 and 1 of the 3 with gold
    assert metrics["recall@2"] == pytest.approx(2 / 3)
    assert metrics["evidence@1"] == pytest.approx(2 / 3)  # g2 and g3 are evidence


def test_retrieval_metrics_without_gold_is_nan():
    rows = Dataset.from_list([{"candidate_ids": ["a"], "gold_doc_ids": [], "evidence_doc_ids": []}])
    metrics = retrieval_metrics(rows, [[0]], k=1)
    assert math.isnan(metrics["recall@1"]) and math.isnan(metrics["evidence@1"])


def test_format_comparison():
    table = format_comparison({"recall@1": 0.5, "accuracy": 0.25}, {"recall@1": 0.75, "accuracy": 0.5})
    assert table.splitlines() == [
        "| metric | before | after |",
        "|---|---|---|",
        "| recall@1 | 0.5 | 0.75 |",
        "| accuracy | 0.25 | 0.5 |",
    ]


def test_plot_training_curves(tmp_path):
    history = [
        {"step": step, "lm_loss": 3.0 - 0.1 * step, "retrieval_loss": 0.7, "retrieval_agreement": 0.6}
        for step in range(1, 6)
    ] + [{"step": 5, "train_runtime": 1.0}]
    path = tmp_path / "curves.png"
    drawn = plot_training_curves(history, str(path))
    assert drawn == ["lm_loss", "retrieval_loss", "retrieval_agreement"]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="none of the JMLR metrics"):
        plot_training_curves([{"step": 1, "loss": 1.0}], str(tmp_path / "empty.png"))
