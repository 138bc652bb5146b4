"""Pre-retrieval: attach each question's top-N candidate documents from a `DocumentIndex`.

The joint trainer re-scores these N candidates with the retriever it trains; the index only has to bring the
candidates in. The columns added are `candidate_ids`, `candidates` (texts) and `candidate_scores`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from datasets import Dataset

from .index import DocumentIndex, document_text, encode_queries_with

if TYPE_CHECKING:
    from ..models import JMLRRetriever

logger = logging.getLogger(__name__)


def add_candidates(
    dataset: Dataset,
    index: DocumentIndex,
    retriever: JMLRRetriever,
    retriever_tokenizer,
    num_candidates: int,
    *,
    max_query_length: int = 64,
    batch_size: int = 64,
    show_progress: bool = True,
) -> Dataset:
    """Return `dataset` with the `num_candidates` best documents of `index` for each `question`."""
    if num_candidates > len(index):
        raise ValueError(f"num_candidates={num_candidates} exceeds the index's {len(index)} documents")
    was_training = retriever.training
    retriever.eval()
    try:
        hits = index.retrieve(
            list(dataset["question"]),
            encode_queries_with(retriever, retriever_tokenizer, max_length=max_query_length),
            num_candidates,
            batch_size=batch_size,
            show_progress=show_progress,
        )
    finally:
        retriever.train(was_training)
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


__all__ = ["add_candidates"]
