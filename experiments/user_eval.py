"""The saved models evaluated as a user evaluates them (`jmlr evaluate`), gathered into one table with paired differences.

`jmlr evaluate --model <saved run> --task … --output <file>.json` writes one result per model, task and setting. This
module reads a folder of them and answers the questions the separate files cannot:

* per **condition** (task + closed book / retrieval) and **arm** (the model folder's name without `-seed<N>`): the
  per-question **score** as mean ± sample std over seeds (one seed: the SE of its question mean in brackets). The
  score is whether the answer is right on multiple-choice and yes/no tasks (accuracy; SE sqrt(p(1 - p) / n)); on
  open-answer tasks (MedQuAD) it is the answer NLL in nats per target token (likelihood mode; lower is better) or the
  greedy reply's ROUGE-L F (generative mode), with SE = sample std / sqrt(n). For choices, also how often the arm gives
  its most frequent answer (`top_answer_share`: on PubMedQA-L a model that always says "yes" scores the majority
  rate, 0.552, and ranks nothing);
* where the results name each question's gold passages and the passage that answered (MedQuAD, PubMedQA with
  `--index`), **gold at top 1**: whether the first document put in the prompt is a gold passage;
* **paired by question and seed**, each arm against a reference arm (RAG-SFT by default; a reference evaluated once
  without a seed — the untrained base, named by its folder — pairs with every seed): the mean of
  score(arm) − score(reference) over the questions both answered, with its standard error
  (sample std of the per-question differences / sqrt(n)), and the same for gold at top 1. Pairing removes the
  question-to-question spread that makes the unpaired SEs (≈ 0.015 on MMLU-Med's 1,089 questions) too wide to rank
  two close models.

    python -m experiments.user_eval --input outputs/joint-pubmedqa/user-eval --reference rag

The answers are read from the likelihood mode where a file has it (it never fails to parse), else from the
generative one. Writes `user_eval.{md,json,png}` into the input folder (or `--output_dir`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from jmlr_hf.evaluation.harness import OPEN_SCORES  # the per-question score of open answers, by mode
from jmlr_hf.utils.atomic import write_json, write_text

from .tables import paired_difference, stats_cell, value_stats

#: `<arm>-seed<N>`: the experiment's saved-model folder names (`run_name`).
SEED_PATTERN = re.compile(r"^(?P<arm>.+)-seed(?P<seed>\d+)$")
#: The mode whose answers are compared, in order of preference.
MODE_PREFERENCE = ("likelihood", "generative")


def read_result(path: str) -> dict[str, Any]:
    """One `jmlr evaluate` result as `{arm, seed, condition, mode, score, scores: {question id: value}, answers,
    gold_top1: {question id: 0/1}}` (`score` names the per-question value: `accuracy`, `answer_nll` or `rouge_l`;
    `answers` is empty for open questions; `gold_top1` is empty where the records name no gold or no documents).

    Raises `ValueError` naming the file and the missing field for a file that is not such a result."""
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON ({error})") from None
    for field in ("settings", "metrics", "predictions"):
        if field not in data:
            raise ValueError(f"{path}: no '{field}' field; expected the JSON that `jmlr evaluate --output` writes")
    settings = data["settings"]
    mode = next((m for m in MODE_PREFERENCE if m in data["metrics"]), None)
    if mode is None:
        raise ValueError(f"{path}: 'metrics' has neither of the answer modes {MODE_PREFERENCE}")
    model = os.path.basename(os.path.normpath(str(settings.get("model") or "")))
    if not model:
        raise ValueError(f"{path}: 'settings.model' is missing: which model was evaluated?")
    match = SEED_PATTERN.match(model)
    arm, seed = (match["arm"], int(match["seed"])) if match else (model, None)
    documents = settings.get("num_documents") or 0
    where = "closed book" if not documents else f"top {documents} of {settings.get('num_candidates')} retrieved"
    is_open = bool(settings.get("open_questions"))
    score = OPEN_SCORES[mode] if is_open else "accuracy"
    value_field = score if is_open else f"{mode}_prediction"
    scores: dict[str, float] = {}
    answers: list[str] = []
    gold_top1: dict[str, int] = {}
    for row, record in enumerate(data["predictions"]):
        for field in ("id", "answer", value_field):
            if field not in record:
                raise ValueError(f"{path}: predictions[{row}] has no '{field}' field")
        key = str(record["id"])
        if key in scores:
            raise ValueError(
                f"{path}: predictions[{row}]: question id {key!r} appears twice; pairing needs unique ids"
            )
        if is_open:
            scores[key] = float(record[value_field])
        else:
            scores[key] = int(record[value_field] == record["answer"])
            answers.append(record[value_field])
        if record.get("gold_doc_ids") and record.get("document_ids"):
            gold_top1[key] = int(record["document_ids"][0] in record["gold_doc_ids"])
    if not scores:
        raise ValueError(f"{path}: no predictions")
    return {
        "path": path,
        "arm": arm,
        "seed": seed,
        "condition": f"{settings.get('task', '?')}, {where}",
        "mode": mode,
        "score": score,
        "scores": scores,
        "answers": answers,
        "gold_top1": gold_top1,
    }


def question_mean_se(values: Sequence[float], is_proportion: bool) -> float:
    """The SE of one run's mean over its questions: binomial, sqrt(p(1 - p) / n), for a proportion; else the sample
    std / sqrt(n)."""
    n = len(values)
    if is_proportion:
        p = statistics.fmean(values)
        return math.sqrt(p * (1 - p) / n)
    return statistics.stdev(values) / math.sqrt(n) if n > 1 else math.nan


def summarize_results(results: Sequence[dict[str, Any]], reference_arm: str) -> dict[str, Any]:
    """`{"conditions": {condition: {arm: {...}}}, "paired": {condition: {arm: {...}}}}`: per arm the score over seeds
    (and gold at top 1 where measured); per arm other than the reference, the paired differences by seed."""
    conditions: dict[str, dict[str, list[dict]]] = {}
    for result in results:
        by_arm = conditions.setdefault(result["condition"], {})
        if any(other["seed"] == result["seed"] for other in by_arm.get(result["arm"], [])):
            raise ValueError(
                f"{result['path']}: a second result for {result['arm']} seed {result['seed']} under "
                f"'{result['condition']}'; keep one file per model and setting"
            )
        first = next((r for runs in by_arm.values() for r in runs), None)
        if first is not None and first["score"] != result["score"]:
            raise ValueError(
                f"{result['path']}: scored by {result['score']}, but {first['path']} under the same condition "
                f"'{result['condition']}' by {first['score']}; evaluate them in the same mode"
            )
        by_arm.setdefault(result["arm"], []).append(result)
    table: dict[str, dict[str, dict]] = {}
    paired: dict[str, dict[str, dict]] = {}
    for condition, by_arm in sorted(conditions.items()):
        table[condition] = {}
        for arm, runs in sorted(by_arm.items()):
            runs.sort(key=lambda r: -1 if r["seed"] is None else r["seed"])
            score = runs[0]["score"]
            means = [statistics.fmean(r["scores"].values()) for r in runs]
            row: dict[str, Any] = {
                "seeds": [r["seed"] for r in runs],
                "questions": len(runs[0]["scores"]),
                "score": score,
                "mean": value_stats(means),
                "question_se": question_mean_se(list(runs[0]["scores"].values()), score == "accuracy"),
            }
            if runs[0]["answers"]:
                row["top_answer"] = Counter(runs[0]["answers"]).most_common(1)[0][0]
                row["top_answer_share"] = value_stats(
                    [Counter(r["answers"]).most_common(1)[0][1] / len(r["answers"]) for r in runs]
                )
            if all(r["gold_top1"] for r in runs):
                row["gold_top1"] = value_stats([statistics.fmean(r["gold_top1"].values()) for r in runs])
            table[condition][arm] = row
        reference = {r["seed"]: r for r in by_arm.get(reference_arm, [])}
        # A reference without a seed (an untrained model, named by its own folder) is every seed's reference.
        unseeded = reference.get(None) if len(reference) == 1 else None
        for arm, runs in sorted(by_arm.items()):
            if arm == reference_arm:
                continue
            mates = [(r, unseeded or reference[r["seed"]]) for r in runs if unseeded or r["seed"] in reference]
            if not mates:
                continue
            per_seed = {r["seed"]: paired_difference(r["scores"], ref["scores"]) for r, ref in mates}
            pair: dict[str, Any] = {
                "per_seed": per_seed,
                "mean": statistics.fmean(d["mean"] for d in per_seed.values()),
            }
            if all(r["gold_top1"] and ref["gold_top1"] for r, ref in mates):
                gold = {r["seed"]: paired_difference(r["gold_top1"], ref["gold_top1"]) for r, ref in mates}
                pair["gold_top1"] = {"per_seed": gold, "mean": statistics.fmean(d["mean"] for d in gold.values())}
            paired.setdefault(condition, {})[arm] = pair
    return {"reference": reference_arm, "conditions": table, "paired": paired}


def _paired_cells(pair: dict[str, Any]) -> str:
    return "; ".join(
        f"seed {seed}: {d['mean']:+.4f} ± {d['se']:.4f} ({d['n']})" for seed, d in pair["per_seed"].items()
    )


def summary_markdown(summary: dict[str, Any]) -> str:
    """The score table and the paired differences, as Markdown."""
    lines = [
        "| condition | arm | seeds | questions | score: mean ± std (n) [SE over questions] | gold at top 1 | "
        "most frequent answer: share |",
        "|---|---|---|---|---|---|---|",
    ]
    for condition, arms in summary["conditions"].items():
        for arm, row in arms.items():
            seeds = ", ".join("–" if s is None else str(s) for s in row["seeds"])
            score = f"{row['score']} {stats_cell(row['mean'])} [{row['question_se']:.4f}]"
            gold = stats_cell(row["gold_top1"]) if "gold_top1" in row else "–"
            share = f"{row['top_answer']}: {row['top_answer_share']['mean']:.3f}" if "top_answer" in row else "–"
            lines.append(f"| {condition} | {arm} | {seeds} | {row['questions']} | {score} | {gold} | {share} |")
    if summary["paired"]:
        lines += [
            "",
            f"Paired by question and seed, the arm's score − that of `{summary['reference']}` (± SE; for answer_nll, "
            "lower is better):",
            "",
            "| condition | arm | measure | per seed | mean over seeds |",
            "|---|---|---|---|---|",
        ]
        for condition, arms in summary["paired"].items():
            score = next(iter(summary["conditions"][condition].values()))["score"]
            for arm, pair in arms.items():
                lines.append(f"| {condition} | {arm} | {score} | {_paired_cells(pair)} | {pair['mean']:+.4f} |")
                if "gold_top1" in pair:
                    gold = pair["gold_top1"]
                    lines.append(
                        f"| {condition} | {arm} | gold at top 1 | {_paired_cells(gold)} | {gold['mean']:+.4f} |"
                    )
    return "\n".join(lines)


def plot_summary(summary: dict[str, Any], path: str) -> str:
    """The score per arm, one panel per condition; bars are seed means, whiskers the seed std (one seed: the SE over
    questions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(summary["conditions"])
    figure, axes = plt.subplots(1, len(conditions), figsize=(4.2 * len(conditions), 3.6), squeeze=False)
    for axis, condition in zip(axes[0], conditions):
        arms = summary["conditions"][condition]
        means = [row["mean"]["mean"] for row in arms.values()]
        errors = [
            row["question_se"] if math.isnan(row["mean"]["std"]) else row["mean"]["std"] for row in arms.values()
        ]
        axis.bar(range(len(arms)), means, yerr=errors, capsize=3, color="tab:blue")
        axis.set_xticks(range(len(arms)), list(arms), rotation=30, ha="right", fontsize=8)
        axis.set_title(condition, fontsize=9)
        score = next(iter(arms.values()))["score"]
        axis.set_ylabel(score + (" (nats/token, lower is better)" if score == "answer_nll" else ""))
        if score != "answer_nll":
            axis.set_ylim(0, 1)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, help="Folder of `jmlr evaluate --output` JSON files")
    parser.add_argument("--reference", default="rag", help="Arm the others are paired against (default: rag)")
    parser.add_argument("--output_dir", default=None, help="Where user_eval.{md,json,png} go (default: --input)")
    args = parser.parse_args(argv)
    names = sorted(
        name for name in os.listdir(args.input) if name.endswith(".json") and not name.startswith("user_eval")
    )
    if not names:
        raise SystemExit(f"{args.input}: no `jmlr evaluate` JSON results")
    summary = summarize_results([read_result(os.path.join(args.input, name)) for name in names], args.reference)
    output_dir = args.output_dir or args.input
    os.makedirs(output_dir, exist_ok=True)
    markdown = summary_markdown(summary)
    write_json(os.path.join(output_dir, "user_eval.json"), summary)
    write_text(os.path.join(output_dir, "user_eval.md"), markdown + "\n")
    plot_summary(summary, os.path.join(output_dir, "user_eval.png"))
    print(markdown)
    return summary


if __name__ == "__main__":
    main()
