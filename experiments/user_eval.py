"""The saved models evaluated as a user evaluates them (`jmlr evaluate`), gathered into one table with paired differences.

`jmlr evaluate --model <saved run> --task … --output <file>.json` writes one result per model, task and setting. This
module reads a folder of them and answers the questions the separate files cannot:

* per **condition** (task + closed book / retrieval) and **arm** (the model folder's name without `-seed<N>`):
  accuracy as mean ± sample std over seeds (one seed: its binomial SE, sqrt(p(1 - p) / n), in brackets), and how
  often the arm gives its most frequent answer (`top_answer_share`: on PubMedQA-L a model that always says "yes"
  scores the majority rate, 0.552, and ranks nothing);
* **paired by question and seed**, each arm against a reference arm (RAG-SFT by default): the mean of
  correct(arm) − correct(reference) over the questions both answered, with its standard error
  (sample std of the per-question differences / sqrt(n)). Pairing removes the question-to-question spread that makes
  the unpaired binomial SEs (≈ 0.015 on MMLU-Med's 1,089 questions) too wide to rank two close models.

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

from jmlr_hf.utils.atomic import write_json, write_text

from .jmlr_vs_rag import stats_cell, value_stats

#: `<arm>-seed<N>`: the experiment's saved-model folder names (`run_name`).
SEED_PATTERN = re.compile(r"^(?P<arm>.+)-seed(?P<seed>\d+)$")
#: The mode whose answers are compared, in order of preference.
MODE_PREFERENCE = ("likelihood", "generative")


def read_result(path: str) -> dict[str, Any]:
    """One `jmlr evaluate` result as `{arm, seed, condition, mode, correct: {question id: 0/1}, answers}`.

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
    correct, answers = {}, []
    for row, record in enumerate(data["predictions"]):
        for field in ("id", "answer", f"{mode}_prediction"):
            if field not in record:
                raise ValueError(f"{path}: predictions[{row}] has no '{field}' field")
        key = str(record["id"])
        if key in correct:
            raise ValueError(
                f"{path}: predictions[{row}]: question id {key!r} appears twice; pairing needs unique ids"
            )
        correct[key] = int(record[f"{mode}_prediction"] == record["answer"])
        answers.append(record[f"{mode}_prediction"])
    if not correct:
        raise ValueError(f"{path}: no predictions")
    return {
        "path": path,
        "arm": arm,
        "seed": seed,
        "condition": f"{settings.get('task', '?')}, {where}",
        "mode": mode,
        "correct": correct,
        "answers": answers,
    }


def paired_difference(correct: dict[str, int], reference: dict[str, int]) -> dict[str, float]:
    """Mean and SE of correct − reference over the questions both answered (`n`); SE = sample std / sqrt(n)."""
    shared = sorted(set(correct) & set(reference))
    differences = [correct[key] - reference[key] for key in shared]
    n = len(differences)
    mean = statistics.fmean(differences) if n else math.nan
    se = statistics.stdev(differences) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "se": se, "n": n}


def summarize_results(results: Sequence[dict[str, Any]], reference_arm: str) -> dict[str, Any]:
    """`{"conditions": {condition: {arm: {...}}}, "paired": {condition: {arm: {seed: diff, "mean": …}}}}`."""
    conditions: dict[str, dict[str, list[dict]]] = {}
    for result in results:
        by_arm = conditions.setdefault(result["condition"], {})
        if any(other["seed"] == result["seed"] for other in by_arm.get(result["arm"], [])):
            raise ValueError(
                f"{result['path']}: a second result for {result['arm']} seed {result['seed']} under "
                f"'{result['condition']}'; keep one file per model and setting"
            )
        by_arm.setdefault(result["arm"], []).append(result)
    table: dict[str, dict[str, dict]] = {}
    paired: dict[str, dict[str, dict]] = {}
    for condition, by_arm in sorted(conditions.items()):
        table[condition] = {}
        for arm, runs in sorted(by_arm.items()):
            runs.sort(key=lambda r: -1 if r["seed"] is None else r["seed"])
            accuracies = [statistics.fmean(r["correct"].values()) for r in runs]
            n = len(runs[0]["correct"])
            shares = [Counter(r["answers"]).most_common(1)[0][1] / len(r["answers"]) for r in runs]
            table[condition][arm] = {
                "seeds": [r["seed"] for r in runs],
                "questions": n,
                "accuracy": value_stats(accuracies),
                "binomial_se": math.sqrt(accuracies[0] * (1 - accuracies[0]) / n),
                "top_answer": Counter(runs[0]["answers"]).most_common(1)[0][0],
                "top_answer_share": value_stats(shares),
            }
        reference = {r["seed"]: r for r in by_arm.get(reference_arm, [])}
        for arm, runs in sorted(by_arm.items()):
            if arm == reference_arm:
                continue
            per_seed = {
                r["seed"]: paired_difference(r["correct"], reference[r["seed"]]["correct"])
                for r in runs
                if r["seed"] in reference
            }
            if per_seed:
                paired.setdefault(condition, {})[arm] = {
                    "per_seed": per_seed,
                    "mean": statistics.fmean(d["mean"] for d in per_seed.values()),
                }
    return {"reference": reference_arm, "conditions": table, "paired": paired}


def summary_markdown(summary: dict[str, Any]) -> str:
    """The accuracy table and the paired differences, as Markdown."""
    lines = [
        "| condition | arm | seeds | questions | accuracy: mean ± std (n) [binomial SE] | most frequent answer: share |",
        "|---|---|---|---|---|---|",
    ]
    for condition, arms in summary["conditions"].items():
        for arm, row in arms.items():
            seeds = ", ".join("–" if s is None else str(s) for s in row["seeds"])
            accuracy = f"{stats_cell(row['accuracy'])} [{row['binomial_se']:.4f}]"
            share = f"{row['top_answer']}: {row['top_answer_share']['mean']:.3f}"
            lines.append(f"| {condition} | {arm} | {seeds} | {row['questions']} | {accuracy} | {share} |")
    if summary["paired"]:
        lines += [
            "",
            f"Paired by question and seed, accuracy of the arm − accuracy of `{summary['reference']}` (± SE):",
            "",
            "| condition | arm | per seed | mean over seeds |",
            "|---|---|---|---|",
        ]
        for condition, arms in summary["paired"].items():
            for arm, pair in arms.items():
                cells = "; ".join(
                    f"seed {seed}: {d['mean']:+.4f} ± {d['se']:.4f} ({d['n']})" for seed, d in pair["per_seed"].items()
                )
                lines.append(f"| {condition} | {arm} | {cells} | {pair['mean']:+.4f} |")
    return "\n".join(lines)


def plot_summary(summary: dict[str, Any], path: str) -> str:
    """Accuracy per arm, one panel per condition; bars are seed means, whiskers the seed std (one seed: binomial SE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(summary["conditions"])
    figure, axes = plt.subplots(1, len(conditions), figsize=(4.2 * len(conditions), 3.6), squeeze=False)
    for axis, condition in zip(axes[0], conditions):
        arms = summary["conditions"][condition]
        means = [row["accuracy"]["mean"] for row in arms.values()]
        errors = [
            row["binomial_se"] if math.isnan(row["accuracy"]["std"]) else row["accuracy"]["std"]
            for row in arms.values()
        ]
        axis.bar(range(len(arms)), means, yerr=errors, capsize=3, color="tab:blue")
        axis.set_xticks(range(len(arms)), list(arms), rotation=30, ha="right", fontsize=8)
        axis.set_title(condition, fontsize=9)
        axis.set_ylabel("accuracy")
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
