"""Retrieval quality: how a model's retriever ranks each question's candidates, and how well that ranking finds the
gold passages.

* [`retrieval_metrics`] (the recipe and the training callback): `recall@1`, `recall@k` — a document of the gold
  article is ranked first / among the top k (in the terms of [`jmlr_hf.evaluation.metrics`], hit@1 and hit@k) — and
  `evidence@1`: the top document is one of the gold *evidence* passages (for PubMedQA, a RESULTS section of the gold
  article, the section that carries the answer);
* [`ranking_metrics`] (`jmlr evaluate`): recall@k, hit@k, nDCG@k and MRR for several k;
* [`llm_preference_metrics`]: how often the retriever's top candidate is the one the LLM itself finds most useful
  (the lowest answer NLL with that candidate alone in the prompt) — what JMLR's retrieval losses train for;
* [`corpus_retrieval_metrics`]: recall@1 / evidence@1 when the retriever searches the *whole* corpus (a fresh index
  of its own embeddings), not only re-ranks fixed candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from ..losses import pairwise_agreement
from ..models import eval_mode
from .metrics import hit_at_k, mean, ndcg_at_k, recall_at_k, reciprocal_rank

if TYPE_CHECKING:
    from ..models import JMLRForCausalLM
    from ..retrieval import DocumentIndex


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


def llm_preference_metrics(
    rankings: Sequence[Sequence[int]],
    reference_nlls: Sequence[Sequence[float]],
    base_rankings: Sequence[Sequence[int]] | None = None,
) -> dict[str, float]:
    """Agreement of the retriever's rankings with an LLM's single-document answer NLLs, row by row.

    Args:
        rankings: per row, candidate indices best first (e.g. [`rank_candidates`]).
        reference_nlls: per row, the answer NLL with each candidate alone in the prompt (same candidate order).
        base_rankings: per row, the ranking of a baseline retriever (e.g. the untrained one), for `headroom_captured`.

    Returns `llm_top1_agreement` (the retriever's top 1 is the lowest-NLL candidate; a tie for lowest counts if the
    top 1 is among the tied), `llm_pairwise_agreement` (the fraction of candidate pairs ordered as the NLLs order
    them, [`jmlr_hf.losses.pairwise_agreement`]; NaN when every pair ties), `llm_top1_nll` (the mean reference NLL
    of the retriever's top 1: the answer NLL that reference LLM gets with it, K = 1), `llm_best_nll` (the mean of the
    lowest: what a perfect re-ranking would give) and, with `base_rankings`, `headroom_captured`: (base top-1 NLL −
    top-1 NLL) / (base top-1 NLL − best NLL), the share of the re-ranking headroom won over the baseline.
    """
    if len(rankings) != len(reference_nlls):
        raise ValueError(f"{len(rankings)} rankings for {len(reference_nlls)} rows of reference NLLs")
    if base_rankings is not None and len(base_rankings) != len(rankings):
        raise ValueError(f"{len(base_rankings)} base rankings for {len(rankings)} rows")
    top1, pairwise, top1_nll, best_nll = [], [], [], []
    for row, (ranking, nlls) in enumerate(zip(rankings, reference_nlls, strict=True)):
        if sorted(ranking) != list(range(len(nlls))):
            raise ValueError(
                f"row {row}: the ranking {list(ranking)} is not a permutation of the {len(nlls)} candidates"
            )
        top1.append(float(nlls[ranking[0]] == min(nlls)))
        top1_nll.append(float(nlls[ranking[0]]))
        best_nll.append(float(min(nlls)))
        # Scores that reproduce the ranking: the first candidate highest.
        scores = torch.empty(len(nlls), dtype=torch.float64)
        scores[torch.tensor(list(ranking))] = torch.arange(len(nlls), 0, -1, dtype=torch.float64)
        agreement = float(pairwise_agreement(scores, torch.tensor(list(nlls), dtype=torch.float64)))
        if agreement == agreement:
            pairwise.append(agreement)
    metrics = {
        "llm_top1_agreement": mean(top1),
        "llm_pairwise_agreement": mean(pairwise) if pairwise else float("nan"),
        "llm_top1_nll": mean(top1_nll),
        "llm_best_nll": mean(best_nll),
    }
    if base_rankings is not None:
        base = mean(float(nlls[ranking[0]]) for ranking, nlls in zip(base_rankings, reference_nlls, strict=True))
        gap = base - metrics["llm_best_nll"]
        metrics["headroom_captured"] = (base - metrics["llm_top1_nll"]) / gap if gap > 0 else float("nan")
    return metrics


@torch.no_grad()
def corpus_retrieval_metrics(
    retriever,
    retriever_tokenizer,
    corpus: Dataset,
    dataset: Dataset,
    *,
    max_document_length: int = 256,
    max_query_length: int = 64,
    show_progress: bool = True,
    k_values: Sequence[int] = (1,),
    index: DocumentIndex | None = None,
) -> dict[str, float]:
    """`corpus_recall@k` (for each of `k_values`) and `corpus_evidence@1`: a gold passage is among the top k of a
    search of the whole `corpus` with `retriever` (a flat index of its own document embeddings, built here) / the top
    document is a gold evidence passage, over the rows of `dataset` with gold / evidence ids (NaN when none has).

    `index`: a flat index of `corpus` whose vectors are this retriever's document embeddings, to search instead of
    encoding the corpus again (the base index, for a retriever whose document tower did not train: query-side
    training, or an arm that trains only the LLM). Its passages must be `corpus`'s, in order."""
    if not k_values or any(k < 1 for k in k_values):
        raise ValueError(f"k_values must be positive cut-offs, got {list(k_values)}")
    from ..retrieval import DocumentIndex, encode_queries_with

    if index is not None and index.documents["id"] != corpus["id"]:
        raise ValueError("index: its passages are not the corpus's (ids or order differ)")
    with eval_mode(retriever):
        if index is None:
            index = DocumentIndex.from_retriever(
                corpus, retriever, retriever_tokenizer, max_length=max_document_length, show_progress=show_progress
            )
        hits = index.retrieve(
            list(dataset["question"]),
            encode_queries_with(retriever, retriever_tokenizer, max_length=max_query_length),
            max(k_values),
            show_progress=show_progress,
        )
    gold_hits: dict[int, list[float]] = {k: [] for k in k_values}
    evidence_hits: list[float] = []
    for row, top in zip(dataset, hits, strict=True):
        gold, evidence = set(row.get("gold_doc_ids") or []), set(row.get("evidence_doc_ids") or [])
        if gold:
            for k in k_values:
                gold_hits[k].append(float(any(hit["id"] in gold for hit in top[:k])))
        if evidence:
            evidence_hits.append(float(top[0]["id"] in evidence))
    nan = float("nan")
    metrics = {f"corpus_recall@{k}": mean(hits) if hits else nan for k, hits in gold_hits.items()}
    metrics["corpus_evidence@1"] = mean(evidence_hits) if evidence_hits else nan
    return metrics


__all__ = [
    "corpus_retrieval_metrics",
    "llm_preference_metrics",
    "rank_candidates",
    "ranking_metrics",
    "retrieval_metrics",
]
