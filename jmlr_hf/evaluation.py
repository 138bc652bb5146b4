"""Evaluation of a JMLR model on questions with pre-retrieved candidates.

Retrieval quality (the retriever re-ranks each question's N candidates):
    * `recall@1`, `recall@K`: a document of the gold article is ranked first / among the top K;
    * `evidence@1`: the top document is one of the gold *evidence* passages (for PubMedQA, a RESULTS section of the
      gold article — the section that carries the answer).
Answering, with the top-K documents before the question:
    * `accuracy`: the answer choice with the lowest NLL is the gold one (for PubMedQA the decision yes/no/maybe, for
      multiple choice the option letter);
    * `answer_nll`: mean per-token NLL of the reference target (answer and rationale).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from .modeling_jmlr import OPTION_LETTERS, JMLRForCausalLM, build_prompt, build_target, tokenize_for_lm

OPEN_CHOICES = ("yes", "no", "maybe")


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


@torch.no_grad()
def _choice_nll(model: JMLRForCausalLM, tokenizer, prompt: str, choices: Sequence[str]) -> list[float]:
    """Summed NLL of each choice word right after the prompt (one batched forward)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    choice_ids = [tokenizer(" " + choice, add_special_tokens=False)["input_ids"] for choice in choices]
    length = len(prompt_ids) + max(len(ids) for ids in choice_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(choices), length), pad, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for i, ids in enumerate(choice_ids):
        full = prompt_ids + ids
        input_ids[i, : len(full)] = torch.tensor(full)
        attention[i, : len(full)] = 1
        labels[i, len(prompt_ids) : len(full)] = torch.tensor(ids)
    device = next(model.parameters()).device
    mean_nll = model.answer_nll(input_ids.to(device), attention.to(device), labels.to(device))
    return [float(nll) * len(ids) for nll, ids in zip(mean_nll.tolist(), choice_ids, strict=True)]


@torch.no_grad()
def answer_metrics(
    model: JMLRForCausalLM,
    tokenizer,
    dataset: Dataset,
    rankings: Sequence[Sequence[int]] | None,
    num_documents: int,
    show_progress: bool = True,
) -> dict[str, float]:
    """`accuracy` (lowest-NLL choice) and `answer_nll` with the top `num_documents` candidates in the prompt.

    With `rankings=None` or `num_documents=0` the prompt has no documents (the closed-book baseline).
    """
    model.eval()
    cfg = model.config
    correct, nlls = 0, []
    for i, row in enumerate(tqdm(dataset, desc="Answering", disable=not show_progress)):
        docs = [] if rankings is None else [row["candidates"][j] for j in rankings[i][:num_documents]]
        options = list(row.get("options") or [])
        prompt = build_prompt(cfg, row["question"], docs, options)
        choices = list(OPTION_LETTERS[: len(options)]) if options else list(OPEN_CHOICES)
        choice_nll = _choice_nll(model, tokenizer, prompt, choices)
        correct += choices[min(range(len(choices)), key=choice_nll.__getitem__)] == row["answer"]
        target = build_target(cfg, row["answer"], row.get("rationale"), options)
        batch = tokenize_for_lm(tokenizer, [prompt], [target], cfg.max_length)
        device = next(model.parameters()).device
        nlls.append(float(model.answer_nll(*(batch[k].to(device) for k in ("input_ids", "attention_mask", "labels")))))
    return {
        "accuracy": correct / len(dataset) if len(dataset) else float("nan"),
        "answer_nll": sum(nlls) / len(nlls) if nlls else float("nan"),
    }


def evaluate_model(
    model: JMLRForCausalLM,
    tokenizer,
    retriever_tokenizer,
    dataset: Dataset,
    *,
    answer_limit: int | None = None,
    batch_size: int = 16,
    show_progress: bool = True,
) -> dict[str, float]:
    """Retrieval metrics on every row, answer metrics on the first `answer_limit` rows (all when `None`)."""
    k = model.config.num_context_documents
    rankings = rank_candidates(model, retriever_tokenizer, dataset, batch_size, show_progress)
    metrics = retrieval_metrics(dataset, rankings, k)
    limit = len(dataset) if answer_limit is None else min(answer_limit, len(dataset))
    subset = dataset.select(range(limit))
    metrics.update(answer_metrics(model, tokenizer, subset, rankings[:limit], k, show_progress))
    metrics["num_questions"] = len(dataset)
    metrics["num_answered"] = limit
    return metrics


def format_comparison(before: dict[str, float], after: dict[str, float]) -> str:
    """A Markdown table of metrics before and after training."""
    lines = ["| metric | before | after |", "|---|---|---|"]
    for key in before:
        b, a = before[key], after.get(key, float("nan"))
        if isinstance(b, float) and not math.isnan(b) or isinstance(b, int):
            lines.append(f"| {key} | {b:.4g} | {a:.4g} |")
    return "\n".join(lines)
