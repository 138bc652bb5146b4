"""experiments.precision: float32 against bf16 autocast on the single-document NLLs, on a tiny random model."""

from __future__ import annotations

import pytest
from datasets import Dataset

from experiments.precision import compare_precisions, precision_table
from jmlr_hf.evaluation import single_document_nlls

pytestmark = pytest.mark.usefixtures("single_thread")


def test_compare_precisions_measures_both_orders(make_tiny_model, generator_tokenizer):
    model = make_tiny_model()
    rows = Dataset.from_list(
        [
            {
                "id": f"q{i}",
                "question": f"What are the symptoms of disease {i} ?",
                "options": [],
                "answer": f"Disease {i} causes fever and a rash.",
                "rationale": "",
                "candidates": [f"Passage {j} about disease {i} and its care." for j in range(4)],
            }
            for i in range(3)
        ]
    )
    result = compare_precisions(model, generator_tokenizer, rows, show_progress=False)
    summary, per_question = result["summary"], result["per_question"]
    assert summary["questions"] == 3 and summary["candidates_per_question"] == 4
    # The float32 side is the library's own single-document NLLs; bf16 rounds them (so they differ a little).
    assert per_question[0]["float32"] == pytest.approx(single_document_nlls(model, generator_tokenizer, rows[0]))
    assert 0 < summary["max_abs_difference"] < 1.0
    assert 0.0 <= summary["top1_same"] <= 1.0 and 0.0 <= summary["pairwise_agreement"] <= 1.0
    # The same best candidate, by hand, for each question.
    for question in per_question:
        best = [min(range(4), key=question[name].__getitem__) for name in ("float32", "bf16_autocast")]
        assert question["top1_same"] == float(best[0] == best[1])
    assert summary["top1_same"] == pytest.approx(sum(q["top1_same"] for q in per_question) / 3)
    assert "| same best candidate (top-1) |" in precision_table(summary)
