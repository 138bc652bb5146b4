"""Retrieval headroom: the single-document NLLs, the rankings built from them, and the signal statistics."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset

from experiments.headroom import (
    candidate_agreement,
    evidence_first,
    plot_scan,
    retrieval_headroom,
    save_headroom,
    scan_headroom,
    scan_table,
)
from jmlr_hf.evaluation import rank_candidates, single_document_nlls, target_nll
from tests.testing_utils.models import TOY_ROWS

pytestmark = pytest.mark.usefixtures("single_thread")


def test_candidate_agreement_hand_computed():
    assert candidate_agreement([3.0, 2.0, 1.0], [0.1, 0.2, 0.3]) == 1.0  # higher score, lower NLL: every pair
    assert candidate_agreement([3.0, 2.0, 1.0], [0.3, 0.2, 0.1]) == 0.0
    # Pairs (0,1) and (0,2) agree, (1,2) disagrees (score 2 > 1 but NLL 0.5 > 0.3) → 2/3.
    assert candidate_agreement([3.0, 2.0, 1.0], [0.1, 0.5, 0.3]) == pytest.approx(2 / 3)
    # Tied scores or tied NLLs are skipped: only (0,2) and (1,2) count here, both agree.
    assert candidate_agreement([1.0, 1.0, 0.0], [0.2, 0.1, 0.9]) == 1.0
    assert candidate_agreement([1.0, 1.0], [0.2, 0.1]) != candidate_agreement([1.0, 1.0], [0.2, 0.1])  # NaN


def test_evidence_first_keeps_the_retriever_order_otherwise():
    row = {"candidate_ids": ["a", "b", "c", "d"], "evidence_doc_ids": ["c", "a"]}
    assert evidence_first(row, [3, 2, 1, 0]) == [2, 0, 3, 1]
    assert evidence_first({"candidate_ids": ["a"], "evidence_doc_ids": []}, [0]) is None


@pytest.fixture
def rows_with_evidence() -> Dataset:
    rows = []
    for i, row in enumerate(TOY_ROWS * 2):
        ids = [f"{i}-{j}" for j in range(len(row["candidates"]))]
        # Evidence known for the PubMedQA-like rows only, as with MedQuAD-backed multiple choice.
        rows.append(
            {**row, "id": f"q{i}", "candidate_ids": ids, "evidence_doc_ids": ids[:1] if not row["options"] else []}
        )
    return Dataset.from_list(rows)


def test_headroom_on_a_tiny_model(
    make_tiny_model, generator_tokenizer, retriever_tokenizer, rows_with_evidence, tmp_path
):
    model = make_tiny_model(seed=3)
    result = retrieval_headroom(
        model, generator_tokenizer, retriever_tokenizer, rows_with_evidence, num_documents=1, show_progress=False
    )
    per_question = result["per_question"]
    assert len(per_question) == len(rows_with_evidence)
    expected_rankings = rank_candidates(model, retriever_tokenizer, rows_with_evidence, show_progress=False)
    assert [q["retriever_ranking"] for q in per_question] == expected_rankings
    # The batched single-document NLLs are those of one prompt at a time.
    first = rows_with_evidence[0]
    expected = [
        target_nll(model, generator_tokenizer, first, [model_doc])
        for model_doc in [first["candidates"][j] for j in range(len(first["candidates"]))]
    ]
    assert per_question[0]["single_document_nlls"] == pytest.approx(expected, abs=1e-4)
    # With K = 1 the LLM's best / worst ranking puts the lowest / highest single-document NLL in the prompt.
    rankings = result["rankings"]
    best = sum(min(q["single_document_nlls"]) for q in per_question) / len(per_question)
    worst = sum(max(q["single_document_nlls"]) for q in per_question) / len(per_question)
    retriever = sum(q["single_document_nlls"][q["retriever_ranking"][0]] for q in per_question) / len(per_question)
    assert rankings["llm_best"]["answer_nll"] == pytest.approx(best, abs=1e-4)
    assert rankings["llm_worst"]["answer_nll"] == pytest.approx(worst, abs=1e-4)
    assert rankings["retriever"]["answer_nll"] == pytest.approx(retriever, abs=1e-4)
    # Evidence-first only on the rows that have evidence (half of them), compared with the retriever on those rows.
    assert rankings["evidence_first"]["num_questions"] == len(rows_with_evidence) // 2
    assert rankings["retriever_on_evidence_rows"]["num_questions"] == len(rows_with_evidence) // 2
    signal = result["signal"]
    assert signal["mean_nll_spread"] == pytest.approx(
        sum(max(q["single_document_nlls"]) - min(q["single_document_nlls"]) for q in per_question) / len(per_question)
    )
    assert 0.0 <= signal["pairwise_agreement"] <= 1.0
    top1 = [q["llm_ranking"][0] == q["retriever_ranking"][0] for q in per_question]
    assert signal["llm_top1_is_retriever_top1"] == pytest.approx(sum(top1) / len(top1))

    written = save_headroom(result, str(tmp_path))
    assert json.loads((tmp_path / "headroom.json").read_text())["num_documents"] == 1
    assert "| llm_best |" in (tmp_path / "headroom.md").read_text()
    assert (tmp_path / "headroom.png").read_bytes()[:4] == b"\x89PNG" and len(written) == 3


def test_headroom_needs_documents(make_tiny_model, generator_tokenizer, retriever_tokenizer, rows_with_evidence):
    with pytest.raises(ValueError, match="at least 1"):
        retrieval_headroom(make_tiny_model(), generator_tokenizer, retriever_tokenizer, rows_with_evidence, 0)


def test_scan_cells_follow_from_the_single_document_nlls(
    make_tiny_model, generator_tokenizer, retriever_tokenizer, rows_with_evidence, tmp_path
):
    # Two first stages over the same questions: the rows' own candidate order ("a"), and the reverse ("b").
    model = make_tiny_model(seed=3)
    pool_a = rows_with_evidence
    pool_b = Dataset.from_list(
        [{**row, "candidate_ids": row["candidate_ids"][::-1], "candidates": row["candidates"][::-1]} for row in pool_a]
    )
    result = scan_headroom(
        model,
        generator_tokenizer,
        retriever_tokenizer,
        {"a": pool_a, "b": pool_b},
        [2, 4],
        [1, 2],
        show_progress=False,
    )
    cells = {(c["first_stage"], c["num_candidates"], c["num_context_documents"]): c for c in result["cells"]}
    assert len(cells) == 8 and all(c["num_questions"] == len(pool_a) for c in cells.values())
    single = [single_document_nlls(model, generator_tokenizer, row) for row in pool_a]
    scores = model.score_documents(pool_a["question"], pool_a["candidates"], retriever_tokenizer).tolist()
    for stage, order in (("a", [0, 1, 2, 3]), ("b", [3, 2, 1, 0])):
        for n in (2, 4):
            kept = order[:n]
            best = [min(single[q][j] for j in kept) for q in range(len(pool_a))]
            top = [max(kept, key=scores[q].__getitem__) for q in range(len(pool_a))]
            retrieved = [single[q][top[q]] for q in range(len(pool_a))]
            cell = cells[(stage, n, 1)]
            assert cell["llm_best"] == pytest.approx(sum(best) / len(best), abs=1e-4)
            assert cell["retriever"] == pytest.approx(sum(retrieved) / len(retrieved), abs=1e-4)
            assert cell["headroom"] == pytest.approx(cell["retriever"] - cell["llm_best"], abs=1e-6)
            agree = [single[q][top[q]] == min(single[q][j] for j in kept) for q in range(len(pool_a))]
            assert cell["retriever_top1_is_llm_best"] == pytest.approx(sum(agree) / len(agree))
            # K = 2: the two prompts' documents, best first, measured as one prompt.
            two = cells[(stage, n, 2)]
            pairs = [sorted(kept, key=single[q].__getitem__)[:2] for q in range(len(pool_a))]
            expected = [
                target_nll(model, generator_tokenizer, pool_a[q], [pool_a[q]["candidates"][j] for j in pairs[q]])
                for q in range(len(pool_a))
            ]
            assert two["llm_best"] == pytest.approx(sum(expected) / len(expected), abs=1e-4)
    # The same candidate set in both pools at N = 4: the same numbers.
    for key in ("none", "retriever", "llm_best", "llm_worst"):
        assert cells[("a", 4, 1)][key] == pytest.approx(cells[("b", 4, 1)][key], abs=1e-6)
    assert "| a | 2 | 1 |" in scan_table(result)
    assert plot_scan(result, str(tmp_path / "scan.png")) and (tmp_path / "scan.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="between 1 and the smallest N"):
        scan_headroom(model, generator_tokenizer, retriever_tokenizer, {"a": pool_a}, [2], [3], show_progress=False)
