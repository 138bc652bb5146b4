"""Tests of the lexical first stage: BM25 scores against the formula, stemming, ties, fusion, and `add_candidates`
with a BM25, dense or hybrid first stage."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from datasets import Dataset

from jmlr_hf.retrieval import BM25Index, DocumentIndex, add_candidates, reciprocal_rank_fusion

CORPUS = [
    {"id": "d0", "text": "vitamin deficiency scurvy bleeding gums", "title": ""},
    {"id": "d1", "text": "vitamin deficiency rickets bones bones", "title": ""},
    {"id": "d2", "text": "insulin glucose diabetes", "title": ""},
    {"id": "d3", "text": "scurvy sailors citrus fruit scurvy", "title": "history"},
]


def lucene_bm25(query: list[str], documents: list[list[str]], k1: float, b: float) -> list[float]:
    """Lucene's BM25, written out: idf = ln(1 + (n - df + 0.5) / (df + 0.5)) times tf / (tf + k1 (1 - b + b dl/avgdl))
    (Lucene 8+ dropped the classic numerator's constant factor k1 + 1, which changes no ranking)."""
    n = len(documents)
    average = sum(map(len, documents)) / n
    scores = []
    for words in documents:
        counts = Counter(words)
        score = 0.0
        for term in set(query):
            df = sum(term in other for other in documents)
            if not counts[term]:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = counts[term]
            score += idf * tf / (tf + k1 * (1 - b + b * len(words) / average))
        scores.append(score)
    return scores


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (2.0, 0.3)])
def test_bm25_scores_follow_the_lucene_formula(k1, b):
    index = BM25Index(CORPUS, k1=k1, b=b, stemmer=None)
    query = "scurvy vitamin bones"
    # The stored text of d3 is "history. scurvy sailors ...": the title is searched too.
    documents = [("history " + row["text"] if row["title"] else row["text"]).split() for row in CORPUS]
    expected = lucene_bm25(query.split(), documents, k1, b)
    hits = index.retrieve([query], k=4, show_progress=False)[0]
    by_id = {hit["id"]: hit["score"] for hit in hits}
    for row, score in zip(CORPUS, expected, strict=True):
        assert by_id[row["id"]] == pytest.approx(score, rel=1e-5)
    assert [hit["id"] for hit in hits] == sorted(by_id, key=lambda d: -by_id[d])


def test_bm25_stems_queries_and_documents_alike():
    corpus = [{"id": "a", "text": "scurvy is caused by a vitamin deficiency"}, {"id": "b", "text": "insulin"}]
    stemmed = BM25Index(corpus).retrieve(["what causes it"], k=1, show_progress=False)[0][0]
    exact = BM25Index(corpus, stemmer=None).retrieve(["what causes it"], k=1, show_progress=False)[0][0]
    assert stemmed["id"] == "a" and stemmed["score"] > 0
    assert exact["score"] == 0  # "causes" never meets "caused" without stemming


def test_bm25_hits_carry_the_document_columns_and_break_ties_by_corpus_order():
    index = BM25Index(CORPUS, stemmer=None)
    hits = index.retrieve(["unknownword", "insulin"], k=10, show_progress=False)
    assert [hit["id"] for hit in hits[0]] == ["d0", "d1", "d2", "d3"]  # k clipped, all tied at 0: corpus order
    assert all(hit["score"] == 0 for hit in hits[0])
    assert hits[1][0] == {**CORPUS[2], "score": pytest.approx(hits[1][0]["score"])} and hits[1][0]["score"] > 0
    with pytest.raises(TypeError, match="list of strings"):
        index.retrieve("insulin", k=1)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        index.retrieve(["insulin"], k=0)
    with pytest.raises(ValueError, match="k1 must be a finite number > 0"):
        BM25Index(CORPUS, k1=0)
    with pytest.raises(ValueError, match="Duplicate document id"):
        BM25Index([*CORPUS, CORPUS[0]])


def test_reciprocal_rank_fusion_sums_inverse_ranks():
    first = [{"id": "a", "score": 9.0}, {"id": "b", "score": 5.0}, {"id": "c", "score": 1.0}]
    second = [{"id": "c", "score": 0.9}, {"id": "a", "score": 0.8}, {"id": "d", "score": 0.1}]
    fused = reciprocal_rank_fusion([first, second], k=4, rrf_k=60)
    assert [hit["id"] for hit in fused] == ["a", "c", "b", "d"]
    assert fused[0]["score"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1]["score"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2]["score"] == pytest.approx(1 / 62) and fused[3]["score"] == pytest.approx(1 / 63)
    # b and d tie only if they hold the same rank: b (first list) is seen first.
    tied = reciprocal_rank_fusion([[{"id": "b"}], [{"id": "d"}]], k=2)
    assert [hit["id"] for hit in tied] == ["b", "d"]
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        reciprocal_rank_fusion([first], k=0)


@pytest.fixture
def questions() -> Dataset:
    return Dataset.from_list([{"question": "why do sailors get scurvy"}, {"question": "insulin and glucose"}])


def test_add_candidates_from_bm25_needs_no_retriever(questions):
    with_candidates = add_candidates(questions, BM25Index(CORPUS), num_candidates=2, show_progress=False)
    assert with_candidates["candidate_ids"] == [["d3", "d0"], ["d2", "d0"]]
    assert with_candidates["candidates"][0][0] == "history. scurvy sailors citrus fruit scurvy"
    with pytest.raises(ValueError, match="num_candidates must be a positive integer"):
        add_candidates(questions, BM25Index(CORPUS))


def test_add_candidates_fuses_dense_and_bm25(questions, make_tiny_model, retriever_tokenizer):
    pytest.importorskip("faiss")
    model = make_tiny_model()
    dense = DocumentIndex.from_retriever(CORPUS, model.retriever, retriever_tokenizer, show_progress=False)
    lexical = BM25Index(CORPUS)
    with pytest.raises(ValueError, match="needs the retriever"):
        add_candidates(questions, dense, num_candidates=2)
    separate = [
        add_candidates(questions, one, model.retriever, retriever_tokenizer, 4, show_progress=False)
        for one in (dense, lexical)
    ]
    hybrid = add_candidates(
        questions, [dense, lexical], model.retriever, retriever_tokenizer, 3, fusion_depth=4, show_progress=False
    )
    for row in range(len(questions)):
        expected = reciprocal_rank_fusion(
            [[{"id": doc_id} for doc_id in one["candidate_ids"][row]] for one in separate], k=3
        )
        assert hybrid["candidate_ids"][row] == [hit["id"] for hit in expected]
        assert hybrid["candidate_scores"][row] == pytest.approx([hit["score"] for hit in expected])
    with pytest.raises(ValueError, match="fusion_depth=2 is below num_candidates=3"):
        add_candidates(questions, [dense, lexical], model.retriever, retriever_tokenizer, 3, fusion_depth=2)
