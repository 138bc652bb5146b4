"""The retriever's agreement with the LLM's own preferences, and retrieval over the whole corpus."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset

from jmlr_hf.evaluation import corpus_retrieval_metrics, llm_preference_metrics
from tests.testing_utils.models import TOY_ROWS


def test_llm_preference_metrics_hand_computed():
    nlls = [[2.0, 1.0, 3.0], [0.5, 0.7, 0.9]]
    rankings = [[1, 0, 2], [2, 0, 1]]  # row 0: top 1 is the best; row 1: the worst first
    base = [[0, 1, 2], [0, 1, 2]]  # row 0: base top 1 NLL 2.0; row 1: 0.5 (the best)
    metrics = llm_preference_metrics(rankings, nlls, base_rankings=base)
    assert metrics["llm_top1_agreement"] == 0.5
    # Row 0: pairs (1,0) agree, (1,2) agree, (0,2) agree: 1. Row 1: ranks 2>0>1 vs NLLs 0<1<2: (2,0) no, (2,1) no,
    # (0,1) yes: 1/3.
    assert metrics["llm_pairwise_agreement"] == pytest.approx((1 + 1 / 3) / 2)
    assert metrics["llm_top1_nll"] == pytest.approx((1.0 + 0.9) / 2)
    assert metrics["llm_best_nll"] == pytest.approx((1.0 + 0.5) / 2)
    # Base top-1 NLL (2.0 + 0.5) / 2 = 1.25; headroom 1.25 - 0.75 = 0.5; won 1.25 - 0.95 = 0.3.
    assert metrics["headroom_captured"] == pytest.approx(0.3 / 0.5)
    assert "headroom_captured" not in llm_preference_metrics(rankings, nlls)
    same = llm_preference_metrics(base, nlls, base_rankings=base)
    assert same["headroom_captured"] == 0.0
    no_room = llm_preference_metrics([[1, 0]], [[1.0, 1.0]], base_rankings=[[0, 1]])
    assert math.isnan(no_room["headroom_captured"]) and math.isnan(no_room["llm_pairwise_agreement"])
    with pytest.raises(ValueError, match="not a permutation"):
        llm_preference_metrics([[0, 0, 1]], [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="2 rankings for 1 rows"):
        llm_preference_metrics(rankings, nlls[:1])


def test_corpus_retrieval_finds_a_passage_identical_to_the_question(make_tiny_model, retriever_tokenizer):
    pytest.importorskip("faiss")
    model = make_tiny_model(0)
    corpus = [
        {"id": f"doc-{j}", "text": text}
        for j, text in enumerate(TOY_ROWS[0]["candidates"] + TOY_ROWS[1]["candidates"])
    ]
    corpus += [{"id": f"gold-{i}", "text": row["question"]} for i, row in enumerate(TOY_ROWS)]
    questions = Dataset.from_list(
        [
            {"question": TOY_ROWS[0]["question"], "gold_doc_ids": ["gold-0"], "evidence_doc_ids": ["doc-0"]},
            {"question": TOY_ROWS[1]["question"], "gold_doc_ids": ["gold-1"], "evidence_doc_ids": []},
        ]
    )
    metrics = corpus_retrieval_metrics(
        model.retriever, retriever_tokenizer, Dataset.from_list(corpus), questions, show_progress=False
    )
    # The same text encodes to the same vector: each question finds its copy first, which is no evidence passage.
    assert metrics == {"corpus_recall@1": 1.0, "corpus_evidence@1": 0.0}


def test_corpus_search_at_several_cut_offs_and_on_a_given_base_index(make_tiny_model, retriever_tokenizer):
    """recall@k for each cut-off; a query-side-only retriever searches the base index (its frozen document tower
    encodes as the base did) with the same result as encoding the corpus again."""
    from jmlr_hf.retrieval import DocumentIndex

    corpus = Dataset.from_list([{"id": f"d{j}", "text": f"passage {j} about organ {j % 3}"} for j in range(12)])
    questions = Dataset.from_list(
        [
            {"question": f"which organ is number {i}?", "gold_doc_ids": [f"d{i}"], "evidence_doc_ids": []}
            for i in range(6)
        ]
    )
    model = make_tiny_model(0, train_document_encoder=False)
    base = DocumentIndex.from_retriever(
        corpus, model.retriever, retriever_tokenizer, max_length=32, show_progress=False
    )
    with torch.no_grad():  # the query side trains: its weights move, the document tower's do not
        for parameter in model.retriever.encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    kwargs = {"max_document_length": 32, "show_progress": False, "k_values": (1, 4, 12)}
    encoded = corpus_retrieval_metrics(model.retriever, retriever_tokenizer, corpus, questions, **kwargs)
    reused = corpus_retrieval_metrics(model.retriever, retriever_tokenizer, corpus, questions, index=base, **kwargs)
    assert {k: v for k, v in reused.items() if k != "corpus_evidence@1"} == {
        k: v for k, v in encoded.items() if k != "corpus_evidence@1"
    }
    assert set(encoded) == {"corpus_recall@1", "corpus_recall@4", "corpus_recall@12", "corpus_evidence@1"}
    assert encoded["corpus_recall@1"] <= encoded["corpus_recall@4"] <= encoded["corpus_recall@12"] == 1.0
    assert math.isnan(encoded["corpus_evidence@1"])
    with pytest.raises(ValueError, match="not the corpus's"):
        corpus_retrieval_metrics(
            model.retriever, retriever_tokenizer, corpus.select(range(11)), questions, index=base, **kwargs
        )
    with pytest.raises(ValueError, match="k_values"):
        corpus_retrieval_metrics(model.retriever, retriever_tokenizer, corpus, questions, k_values=(0,))
