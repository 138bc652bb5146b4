"""Retrieval headroom: how much could a better ranking of the candidates lower the generator's answer NLL?

JMLR's retrieval loss learns from the generator's answer NLL with each sampled document. Whether joint training can
beat a frozen retriever (RAG) therefore depends on two things this module measures with the *base* models, before any
training, on the experiment's own prepared candidates:

* **headroom**: the answer NLL (and likelihood accuracy) with the top K of several rankings of the same N candidates

    - ``none``: no documents (the SFT arm's prompt);
    - ``retriever``: the frozen retriever's top K (the RAG arm's prompt);
    - ``evidence_first``: the gold evidence passages first, then the retriever's order (where evidence is known);
    - ``llm_best`` / ``llm_worst``: the K candidates whose single-document prompts give the lowest / highest answer
      NLL, i.e. the ranking the retrieval loss pulls the retriever towards, and its opposite.

  ``retriever − llm_best`` bounds what re-ranking these candidates can win for this generator; ``llm_worst −
  llm_best`` is how much the choice among them matters at all.

* **signal**: per question, the spread (max − min) of the single-document answer NLLs over the N candidates, how
  often the LLM's best candidate is the retriever's top 1 or an evidence passage, and the retriever/LLM pairwise
  agreement over all N(N−1)/2 candidate pairs — the quantity the trainer logs as ``retrieval_agreement`` over its
  S sampled candidates (0.5 = chance).

Small spreads and high agreement mean the retrieval loss has little to learn from, whatever its form.

    python -m experiments.headroom --config experiments/configs/experiment-pubmedqa.yaml [--headroom_limit 100]

(from the repository root) uses the experiment's prepared candidates (made first if missing) and writes
`headroom.{json,md,png}` to its output_dir.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from jmlr_hf.evaluation import answer_metrics, single_document_nlls, target_nlls
from jmlr_hf.losses import pairwise_agreement
from jmlr_hf.models import JMLRForCausalLM
from jmlr_hf.retrieval import add_candidates
from jmlr_hf.utils.atomic import write_text
from jmlr_hf.utils.demo_models import resolve_model_path

from .jmlr_vs_rag import (
    ExperimentArguments,
    build_arm_model,
    experiment_corpus,
    first_stage_indexes,
    prepare_data,
    prepared_validation,
)

RANKINGS = ("none", "retriever", "evidence_first", "llm_best", "llm_worst")


def candidate_agreement(scores: Sequence[float], nlls: Sequence[float]) -> float:
    """Fraction of all candidate pairs that the retriever orders as the LLM does (higher score ↔ lower NLL): the
    trainer's `retrieval_agreement` (`jmlr_hf.losses.pairwise_agreement`) over all N candidates instead of the S
    sampled ones; pairs tied in either are skipped. NaN when every pair is tied."""
    agreement = pairwise_agreement(
        torch.tensor(scores, dtype=torch.float64), torch.tensor(nlls, dtype=torch.float64), skip_score_ties=True
    )
    return float(agreement)


def evidence_first(row: dict[str, Any], ranking: Sequence[int]) -> list[int] | None:
    """`ranking` with the row's evidence candidates moved to the front (order kept); None when it has none."""
    evidence = set(row.get("evidence_doc_ids") or [])
    first = [i for i in ranking if row["candidate_ids"][i] in evidence]
    if not first:
        return None
    return first + [i for i in ranking if i not in first]


@torch.no_grad()
def retrieval_headroom(
    model: JMLRForCausalLM,
    tokenizer,
    retriever_tokenizer,
    dataset: Dataset,
    num_documents: int,
    *,
    truncate_documents: bool = True,
    show_progress: bool = True,
) -> dict[str, Any]:
    """The headroom and signal figures of the module docstring for `dataset` (rows with `candidates`).

    Returns ``{"rankings": {name: {"accuracy", "answer_nll", "num_questions"}}, "signal": {...}, "per_question":
    [...]}``; ``evidence_first`` is measured on the rows with an evidence candidate only, and is absent when none has.
    """
    if num_documents < 1:
        raise ValueError("num_documents (K) must be at least 1: the headroom compares rankings of documents")
    model.eval()
    scores = []
    for start in range(0, len(dataset), 16):
        rows = dataset[start : start + 16]
        scores.extend(model.score_documents(rows["question"], rows["candidates"], retriever_tokenizer).tolist())
    # Best first, as `evaluation.rank_candidates` orders them.
    retriever_rankings = [sorted(range(len(row)), key=lambda j, row=row: -row[j]) for row in scores]
    per_question = []
    for i, row in enumerate(tqdm(dataset, desc="Single-document NLLs", disable=not show_progress)):
        nlls = single_document_nlls(model, tokenizer, row, truncate_documents)
        by_nll = sorted(range(len(nlls)), key=nlls.__getitem__)
        evidence = set(row.get("evidence_doc_ids") or [])
        per_question.append(
            {
                "id": row.get("id"),
                "single_document_nlls": nlls,
                "retriever_ranking": retriever_rankings[i],
                "llm_ranking": by_nll,
                "nll_spread": max(nlls) - min(nlls),
                "llm_top1_is_retriever_top1": by_nll[0] == retriever_rankings[i][0],
                "llm_top1_is_evidence": (row["candidate_ids"][by_nll[0]] in evidence) if evidence else None,
                "pairwise_agreement": candidate_agreement(scores[i], nlls),
            }
        )
    rankings = {
        "none": (dataset, None, 0),
        "retriever": (dataset, retriever_rankings, num_documents),
        "llm_best": (dataset, [q["llm_ranking"] for q in per_question], num_documents),
        "llm_worst": (dataset, [q["llm_ranking"][::-1] for q in per_question], num_documents),
    }
    with_evidence = [
        (i, ranking)
        for i, row in enumerate(dataset)
        if (ranking := evidence_first(row, retriever_rankings[i])) is not None
    ]
    if with_evidence:
        subset = dataset.select([i for i, _ in with_evidence])
        rankings["evidence_first"] = (subset, [ranking for _, ranking in with_evidence], num_documents)
        # The same rows under the retriever, so that the two can be compared on equal footing.
        rankings["retriever_on_evidence_rows"] = (
            subset,
            [retriever_rankings[i] for i, _ in with_evidence],
            num_documents,
        )
    results = {}
    for name, (rows, ranking, k) in rankings.items():
        metrics = answer_metrics(
            model, tokenizer, rows, ranking, k, show_progress=False, truncate_documents=truncate_documents
        )
        results[name] = {**metrics, "num_questions": len(rows)}
    signal = _signal(per_question)
    return {"num_documents": num_documents, "rankings": results, "signal": signal, "per_question": per_question}


def _signal(per_question: Sequence[dict[str, Any]]) -> dict[str, float]:
    def mean_of(key: str) -> float:
        values = [float(q[key]) for q in per_question if q[key] is not None and q[key] == q[key]]
        return sum(values) / len(values) if values else float("nan")

    spreads = sorted(q["nll_spread"] for q in per_question)
    return {
        "mean_nll_spread": mean_of("nll_spread"),
        "median_nll_spread": spreads[len(spreads) // 2] if spreads else float("nan"),
        "llm_top1_is_retriever_top1": mean_of("llm_top1_is_retriever_top1"),
        "llm_top1_is_evidence": mean_of("llm_top1_is_evidence"),
        "pairwise_agreement": mean_of("pairwise_agreement"),
        "num_questions": len(per_question),
    }


def headroom_table(result: dict[str, Any]) -> str:
    """The rankings and the signal as two Markdown tables."""
    k = result["num_documents"]
    lines = [
        f"| documents in the prompt (K = {k}) | answer NLL (nats/token) | likelihood accuracy | questions |",
        "|---|---|---|---|",
    ]
    for name, metrics in result["rankings"].items():
        lines.append(
            f"| {name} | {metrics['answer_nll']:.3f} | {metrics['accuracy']:.3f} | {metrics['num_questions']} |"
        )
    lines += ["", "| signal | value |", "|---|---|"]
    lines += [
        f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |"
        for key, value in result["signal"].items()
    ]
    return "\n".join(lines)


def plot_headroom(result: dict[str, Any], path: str) -> str:
    """Left: the answer NLL of each ranking's top K. Right: a histogram of the questions' single-document NLL spreads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(result["rankings"])
    values = [result["rankings"][name]["answer_nll"] for name in names]
    labels = [f"{name} ({result['rankings'][name]['num_questions']} q.)" for name in names]
    left.barh(labels, values, color=[f"C{i}" for i in range(len(names))])
    left.set_xlim(min(values) - 0.1, max(values) + 0.05)
    left.set_xlabel("answer NLL (nats/token), lower is better")
    left.set_title(f"top K = {result['num_documents']} of each ranking", fontsize=9)
    left.invert_yaxis()
    spreads = [q["nll_spread"] for q in result["per_question"]]
    right.hist(spreads, bins=20, color="C0")
    right.set_xlabel("max − min single-document answer NLL (nats/token)")
    right.set_ylabel("questions")
    right.set_title("spread of the answer NLL over a question's candidates", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_headroom(result: dict[str, Any], output_dir: str) -> list[str]:
    """`headroom.json` (with every question's NLLs), `headroom.md` and `headroom.png` in `output_dir`, atomically."""
    written = []
    for name, text in (
        ("headroom.json", json.dumps(result, indent=2)),
        ("headroom.md", headroom_table(result) + "\n"),
    ):
        write_text(os.path.join(output_dir, name), text)
        written.append(os.path.join(output_dir, name))
    written.append(plot_headroom(result, os.path.join(output_dir, "headroom.png")))
    return written


def run_headroom(args: ExperimentArguments, limit: int | None = None) -> dict[str, Any]:
    """The headroom of an experiment's base models on its prepared held-out questions (the first `limit`, default
    the experiment's `eval_answer_limit`), written to `<output_dir>/headroom.{json,md,png}`."""
    _, evaluation = prepare_data(args)
    limit = limit if limit is not None else args.eval_answer_limit
    if limit is not None:
        evaluation = evaluation.select(range(min(limit, len(evaluation))))
    model = build_arm_model(args, "rag", "none")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.generator))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    retriever_tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.retriever))
    result = retrieval_headroom(
        model,
        tokenizer,
        retriever_tokenizer,
        evaluation,
        args.num_context_documents,
        truncate_documents=args.eval_truncate_documents,
    )
    save_headroom(result, args.output_dir)
    print(headroom_table(result))
    return result


# ---------------------------------------------------------------------------------------------- the headroom scan
#
# Which setting leaves the retriever something to learn? The scan measures the headroom of every combination of a
# first stage (where the N candidates come from), N and K on the validation questions, from one set of measurements
# per question: the answer NLL with each distinct candidate alone in the prompt (K = 1 rankings need nothing else),
# the base retriever's score of each, and the K > 1 prompts the rankings pick (each distinct one measured once).

SCAN_RANKINGS = ("retriever", "llm_best", "llm_worst")


@torch.no_grad()
def scan_headroom(
    model: JMLRForCausalLM,
    tokenizer,
    retriever_tokenizer,
    pools: dict[str, Dataset],
    candidate_counts: Sequence[int],
    context_counts: Sequence[int],
    *,
    truncate_documents: bool = True,
    show_progress: bool = True,
) -> dict[str, Any]:
    """The headroom of each (first stage, N, K) cell over the same questions.

    Args:
        pools: `{first stage name: the questions with their candidates from it}`, the same questions in the same
            order in every pool, each with at least `max(candidate_counts)` candidates (best first).
        candidate_counts: the N values; a cell uses the first N candidates of its pool.
        context_counts: the K values (each ≤ every N).

    Returns `{"cells": [...], "per_question": [...]}`; a cell holds the mean answer NLL of ``none`` and of the top K of
    each of `SCAN_RANKINGS` within its N candidates, ``headroom`` (retriever − llm_best: what a perfect re-ranking of
    these candidates could win) with its standard error over questions (paired), ``retriever_top1_is_llm_best``
    and ``pairwise_agreement`` (as in [`retrieval_headroom`]).
    """
    names = list(pools)
    if not names:
        raise ValueError("pools: give at least one first stage")
    questions = len(pools[names[0]])
    if any(len(pool) != questions for pool in pools.values()):
        raise ValueError("every pool must hold the same questions")
    largest = max(candidate_counts)
    if any(k < 1 or k > min(candidate_counts) for k in context_counts):
        raise ValueError(f"every K must be between 1 and the smallest N, got K={list(context_counts)}")
    model.eval()
    per_question = []
    for i in tqdm(range(questions), desc="Headroom scan", unit="question", disable=not show_progress):
        rows = {name: pools[name][i] for name in names}
        row = rows[names[0]]
        texts: dict[str, str] = {}
        for name in names:
            if rows[name]["question"] != row["question"]:
                raise ValueError(f"pool {name!r} row {i} holds another question than pool {names[0]!r}")
            if len(rows[name]["candidates"]) < largest:
                raise ValueError(f"pool {name!r} row {i} has fewer than N={largest} candidates")
            texts.update(zip(rows[name]["candidate_ids"][:largest], rows[name]["candidates"][:largest]))
        ids = list(texts)
        single = dict(zip(ids, target_nlls(model, tokenizer, row, [[texts[d]] for d in ids], truncate_documents)))
        scores = dict(
            zip(
                ids,
                model.score_documents([row["question"]], [[texts[d] for d in ids]], retriever_tokenizer)[0].tolist(),
            )
        )
        none = target_nlls(model, tokenizer, row, [[]], truncate_documents)[0]
        picks: dict[tuple[str, int, int, str], tuple[str, ...]] = {}
        for name in names:
            for n in candidate_counts:
                candidates = rows[name]["candidate_ids"][:n]
                by_score = sorted(candidates, key=lambda d: -scores[d])
                by_nll = sorted(candidates, key=lambda d: single[d])
                for k in context_counts:
                    for ranking, order in zip(SCAN_RANKINGS, (by_score, by_nll, by_nll[::-1]), strict=True):
                        picks[(name, n, k, ranking)] = tuple(order[:k])
        multi = sorted({top for top in picks.values() if len(top) > 1})
        multi_nll = dict(
            zip(
                multi,
                target_nlls(model, tokenizer, row, [[texts[d] for d in top] for top in multi], truncate_documents),
            )
        )
        cells = {}
        for (name, n, k, ranking), top in picks.items():
            cells[f"{name}|{n}|{k}|{ranking}"] = single[top[0]] if k == 1 else multi_nll[top]
        for name in names:
            for n in candidate_counts:
                candidates = rows[name]["candidate_ids"][:n]
                best = min(candidates, key=single.__getitem__)
                retrieved = max(candidates, key=scores.__getitem__)
                cells[f"{name}|{n}|top1"] = float(best == retrieved)
                cells[f"{name}|{n}|agreement"] = candidate_agreement(
                    [scores[d] for d in candidates], [single[d] for d in candidates]
                )
        per_question.append({"id": row.get("id"), "none": none, "cells": cells, "single_document_nlls": single})
    return {"cells": _scan_cells(per_question, names, candidate_counts, context_counts), "per_question": per_question}


def _scan_cells(
    per_question: Sequence[dict[str, Any]],
    names: Sequence[str],
    candidate_counts: Sequence[int],
    context_counts: Sequence[int],
) -> list[dict[str, Any]]:
    n_questions = len(per_question)
    none = [q["none"] for q in per_question]
    cells = []
    for name in names:
        for n in candidate_counts:
            for k in context_counts:
                values = {r: [q["cells"][f"{name}|{n}|{k}|{r}"] for q in per_question] for r in SCAN_RANKINGS}
                gaps = [a - b for a, b in zip(values["retriever"], values["llm_best"], strict=True)]
                agreement = [q["cells"][f"{name}|{n}|agreement"] for q in per_question]
                agreement = [a for a in agreement if a == a]
                cells.append(
                    {
                        "first_stage": name,
                        "num_candidates": n,
                        "num_context_documents": k,
                        "none": statistics.fmean(none),
                        **{r: statistics.fmean(v) for r, v in values.items()},
                        "headroom": statistics.fmean(gaps),
                        "headroom_se": statistics.stdev(gaps) / math.sqrt(n_questions)
                        if n_questions > 1
                        else math.nan,
                        "retriever_top1_is_llm_best": statistics.fmean(
                            q["cells"][f"{name}|{n}|top1"] for q in per_question
                        ),
                        "pairwise_agreement": statistics.fmean(agreement) if agreement else math.nan,
                        "num_questions": n_questions,
                    }
                )
    return cells


def scan_table(result: dict[str, Any]) -> str:
    """The scan's cells as one Markdown table, largest headroom first."""
    lines = [
        "| first stage | N | K | none | frozen retriever's top K | LLM's best K | LLM's worst K "
        "| headroom (retriever − best) ± SE | retriever top 1 = LLM's best | pairwise agreement | questions |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in sorted(result["cells"], key=lambda c: -c["headroom"]):
        lines.append(
            f"| {cell['first_stage']} | {cell['num_candidates']} | {cell['num_context_documents']} "
            f"| {cell['none']:.3f} | {cell['retriever']:.3f} | {cell['llm_best']:.3f} | {cell['llm_worst']:.3f} "
            f"| {cell['headroom']:.3f} ± {cell['headroom_se']:.3f} | {cell['retriever_top1_is_llm_best']:.3f} "
            f"| {cell['pairwise_agreement']:.3f} | {cell['num_questions']} |"
        )
    return "\n".join(lines)


def plot_scan(result: dict[str, Any], path: str, title: str = "") -> str:
    """Headroom (± 2 SE) of each cell, one bar group per first stage and K, bars by N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = result["cells"]
    groups = list(dict.fromkeys((c["first_stage"], c["num_context_documents"]) for c in cells))
    counts = sorted({c["num_candidates"] for c in cells})
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 3.6))
    width = 0.8 / len(counts)
    for j, n in enumerate(counts):
        xs, ys, errs = [], [], []
        for g, (name, k) in enumerate(groups):
            cell = next(
                c for c in cells if (c["first_stage"], c["num_context_documents"], c["num_candidates"]) == (name, k, n)
            )
            xs.append(g + (j - (len(counts) - 1) / 2) * width)
            ys.append(cell["headroom"])
            errs.append(2 * cell["headroom_se"])
        ax.bar(xs, ys, width, yerr=errs, capsize=3, label=f"N = {n}", color=f"C{j}")
    ax.set_xticks(range(len(groups)), [f"{name}, K = {k}" for name, k in groups], fontsize=8)
    ax.set_ylabel("retriever − LLM-best answer NLL\n(nats/token, ± 2 SE)")
    ax.set_title(title or "retrieval headroom on the validation questions", fontsize=9)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_scan(
    args: ExperimentArguments,
    first_stages: Sequence[str],
    candidate_counts: Sequence[int],
    context_counts: Sequence[int],
    limit: int | None = None,
) -> dict[str, Any]:
    """The headroom scan on the experiment's validation questions (the first `limit`), each first stage's pool of
    `max(candidate_counts)` candidates built here with the base models; writes `scan.{json,md,png}` to output_dir."""
    validation = prepared_validation(args)
    if limit is not None:
        validation = validation.select(range(min(limit, len(validation))))
    validation = validation.remove_columns(["candidate_ids", "candidates", "candidate_scores"])
    model = build_arm_model(args, "rag", "none")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.generator))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    retriever_tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.retriever))
    corpus = experiment_corpus(args)
    pools = {
        stage: add_candidates(
            validation,
            first_stage_indexes(args, corpus, model, retriever_tokenizer, stage),
            model.retriever,
            retriever_tokenizer,
            max(candidate_counts),
        )
        for stage in first_stages
    }
    result = scan_headroom(
        model,
        tokenizer,
        retriever_tokenizer,
        pools,
        candidate_counts,
        context_counts,
        truncate_documents=args.eval_truncate_documents,
    )
    result["settings"] = {
        "task": args.task,
        "corpus": args.corpus,
        "generator": args.generator,
        "retriever": args.retriever,
    }
    write_text(os.path.join(args.output_dir, "scan.json"), json.dumps(result, indent=2))
    write_text(os.path.join(args.output_dir, "scan.md"), scan_table(result) + "\n")
    plot_scan(
        result, os.path.join(args.output_dir, "scan.png"), f"{args.task}: retrieval headroom, validation questions"
    )
    print(scan_table(result))
    return result


@dataclass
class HeadroomArguments:
    headroom_limit: int | None = field(
        default=None,
        metadata={
            "help": "First N questions: held-out ones (default: the experiment's eval_answer_limit), or validation "
            "ones with --scan (default: all)."
        },
    )
    scan: bool = field(
        default=False,
        metadata={"help": "Scan first stages x N x K on the validation split (needs validation_size) instead."},
    )
    scan_first_stages: list[str] = field(
        default_factory=lambda: ["dense", "bm25"], metadata={"help": "First stages of the scan."}
    )
    scan_candidates: list[int] = field(default_factory=lambda: [8, 16, 32], metadata={"help": "N values of the scan."})
    scan_context_documents: list[int] = field(default_factory=lambda: [1, 2], metadata={"help": "K values."})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the experiment's config (and `--headroom_limit`) → measure → write `headroom.{json,md,png}`."""
    from trl import TrlParser

    args, headroom_args = TrlParser((ExperimentArguments, HeadroomArguments)).parse_args_and_config(args=argv)
    if headroom_args.scan:
        return run_scan(
            args,
            headroom_args.scan_first_stages,
            headroom_args.scan_candidates,
            headroom_args.scan_context_documents,
            headroom_args.headroom_limit,
        )
    return run_headroom(args, headroom_args.headroom_limit)


if __name__ == "__main__":
    main()
