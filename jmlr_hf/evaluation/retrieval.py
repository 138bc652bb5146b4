"""Retrieval quality: how a model's retriever ranks each question's candidates, and how well that ranking finds the
gold passages.

* [`retrieval_metrics`] (the recipe and the training callback): `recall@1`, `recall@k` — a document of the gold
  article is ranked first / among the top k (in the terms of [`jmlr_hf.evaluation.metrics`], hit@1 and hit@k) — and
  `evidence@1`: the top document is one of the gold *evidence* passages (for PubMedQA, a RESULTS section of the gold
  article, the section that carries the answer);
* [`ranking_metrics`] (`jmlr evaluate`): recall@k, hit@k, nDCG@k and MRR for several k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from .metrics import hit_at_k, mean, ndcg_at_k, recall_at_k, reciprocal_rank

if TYPE_CHECKING:
    from ..models import JMLRForCausalLM


@torch.no_grad()
def rank_candidates(
    model: JMLRForCausalLM, retriever_tokenizer, dataset: Dataset, batch_size: int = 16, show_progress: bool = True
) -> list[list[int]]:
    """For each row, the indices of its `candidates` from best to worst retriever score."""
    model.eval()
    rankings = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="Ranking candidates", disable=not show_progress):
        rows = dataset[start : start + batch_size]
        scores = model.score_documents(rows["question"], rows["candidates"], retriever_tokenizer)
        rankings.extend(scores.argsort(dim=-1, descending=True).tolist())
    return rankings


def retrieval_metrics(dataset: Dataset, rankings: Sequence[Sequence[int]], k: int) -> dict[str, float]:
    """`recall@1`, `recall@k` of the gold documents and `evidence@1`, over the rows that have gold ids."""
    hits1 = hitsk = evidence1 = rows_gold = rows_evidence = 0
    for row, ranking in zip(dataset, rankings, strict=True):
        ranked_ids = [row["candidate_ids"][i] for i in ranking]
        gold, evidence = set(row.get("gold_doc_ids") or []), set(row.get("evidence_doc_ids") or [])
        if gold:
            rows_gold += 1
            hits1 += ranked_ids[0] in gold
            hitsk += any(doc_id in gold for doc_id in ranked_ids[:k])
        if evidence:
            rows_evidence += 1
            evidence1 += ranked_ids[0] in evidence
    nan = float("nan")
    return {
        "recall@1": hits1 / rows_gold if rows_gold else nan,
        f"recall@{k}": hitsk / rows_gold if rows_gold else nan,
        "evidence@1": evidence1 / rows_evidence if rows_evidence else nan,
    }


def ranking_metrics(
    ranked_ids: Sequence[Sequence[str]], gold_ids: Sequence[Sequence[str]], k_values: Sequence[int]
) -> dict[str, Any] | None:
    """recall@k, hit@k, nDCG@k and MRR over the questions with gold ids (`None` when no question has any)."""
    pairs = [(ranked, gold) for ranked, gold in zip(ranked_ids, gold_ids) if gold]
    if not pairs:
        return None
    result: dict[str, Any] = {"num_questions": len(pairs), "mrr": mean(reciprocal_rank(r, g) for r, g in pairs)}
    for k in k_values:
        result[f"recall@{k}"] = mean(recall_at_k(r, g, k) for r, g in pairs)
        result[f"hit@{k}"] = mean(hit_at_k(r, g, k) for r, g in pairs)
        result[f"ndcg@{k}"] = mean(ndcg_at_k(r, g, k) for r, g in pairs)
    return result


__all__ = ["rank_candidates", "ranking_metrics", "retrieval_metrics"]
