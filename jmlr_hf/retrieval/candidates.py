"""Pre-retrieval: attach each question's top-N candidate documents from a first stage — a dense `DocumentIndex`, a
lexical `BM25Index`, or both fused.

The joint trainer re-scores these N candidates with the retriever it trains; the index only has to bring the
candidates in. The columns added are `candidate_ids`, `candidates` (texts) and `candidate_scores`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from ..models import eval_mode
from ._corpus import document_text
from .index import DocumentIndex, encode_queries_with
from .lexical import BM25Index, reciprocal_rank_fusion

if TYPE_CHECKING:
    from ..models import JMLRRetriever

logger = logging.getLogger(__name__)


def add_candidates(
    dataset: Dataset,
    index: DocumentIndex | BM25Index | Sequence[DocumentIndex | BM25Index],
    retriever: JMLRRetriever | None = None,
    retriever_tokenizer=None,
    num_candidates: int | None = None,
    *,
    fusion_depth: int | None = None,
    max_query_length: int = 64,
    batch_size: int = 64,
    show_progress: bool = True,
) -> Dataset:
    """Return `dataset` with the `num_candidates` best documents for each `question`.

    Args:
        dataset: Rows with a `question`.
        index: The first stage: a dense [`DocumentIndex`] (queries encoded by `retriever`), a lexical
            [`BM25Index`] (no retriever needed), or several of them over the same corpus, whose rankings are merged
            by [`reciprocal_rank_fusion`] (a hybrid first stage).
        retriever, retriever_tokenizer: The query encoder of a dense index.
        num_candidates: N, the candidates kept per question.
        fusion_depth: With several indexes, how many hits of each are fused (default `2 * num_candidates`).
    """
    if num_candidates is None or num_candidates < 1:
        raise ValueError(f"num_candidates must be a positive integer, got {num_candidates}")
    indexes = list(index) if isinstance(index, (list, tuple)) else [index]
    if not indexes:
        raise ValueError("index: give at least one index")
    depth = num_candidates if len(indexes) == 1 else (fusion_depth or 2 * num_candidates)
    if depth < num_candidates:
        raise ValueError(f"fusion_depth={depth} is below num_candidates={num_candidates}")
    for one in indexes:
        if num_candidates > len(one):
            raise ValueError(f"num_candidates={num_candidates} exceeds the index's {len(one)} documents")
    questions = list(dataset["question"])
    rankings = [
        _first_stage_hits(
            one, questions, retriever, retriever_tokenizer, depth, max_query_length, batch_size, show_progress
        )
        for one in indexes
    ]
    if len(indexes) == 1:
        hits = rankings[0]
    else:
        hits = [reciprocal_rank_fusion(per_query, num_candidates) for per_query in zip(*rankings, strict=True)]
    short = [i for i, row in enumerate(hits) if len(row) < num_candidates]
    if short:
        raise RuntimeError(
            f"the index returned fewer than {num_candidates} documents for {len(short)} questions "
            f"(first: row {short[0]}); use a flat index or raise nprobe/ef_search"
        )
    dataset = dataset.remove_columns([c for c in ("candidate_ids", "candidates", "candidate_scores") if c in dataset])
    dataset = dataset.add_column("candidate_ids", [[hit["id"] for hit in row] for row in hits])
    dataset = dataset.add_column("candidates", [[document_text(hit) for hit in row] for row in hits])
    return dataset.add_column("candidate_scores", [[float(hit["score"]) for hit in row] for row in hits])


def _first_stage_hits(
    index: DocumentIndex | BM25Index,
    questions: list[str],
    retriever: JMLRRetriever | None,
    retriever_tokenizer,
    k: int,
    max_query_length: int,
    batch_size: int,
    show_progress: bool,
) -> list[list[dict[str, Any]]]:
    if isinstance(index, BM25Index):
        return index.retrieve(questions, k, show_progress=show_progress)
    if not isinstance(index, DocumentIndex):
        raise TypeError(f"index must be a DocumentIndex or a BM25Index, got {type(index).__name__}")
    if retriever is None or retriever_tokenizer is None:
        raise ValueError("a dense DocumentIndex needs the retriever and its tokenizer to encode the questions")
    with eval_mode(retriever):
        return index.retrieve(
            questions,
            encode_queries_with(retriever, retriever_tokenizer, max_length=max_query_length),
            k,
            batch_size=batch_size,
            show_progress=show_progress,
        )


__all__ = ["add_candidates"]
