"""The experiment's tables and plots: each arm's metrics as mean ± std over seeds, each arm against RAG-SFT paired by
seed, the training curves and the final bars.

Kept apart from the runs (`jmlr_vs_rag`) so that the other analyses of the same records (`own_preference`,
`user_eval`) format their numbers alike without importing the experiment's training code.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence

from jmlr_hf.trainer import LOG_PREFIX

#: Reported always (`n/a` where a task cannot measure one).
REPORTED_METRICS = ("accuracy", "answer_nll", "recall@1", "evidence@1")
#: Reported when the runs measured them (`generative_limit > 0`).
GENERATIVE_METRICS = ("generative_accuracy", "generative_unparseable", "generative_rouge_l")
#: Reported when the runs measured them (`eval_preference_limit > 0`, `corpus_evidence`).
RETRIEVER_METRICS = (
    "llm_top1_agreement",
    "llm_pairwise_agreement",
    "llm_top1_nll",
    "llm_best_nll",
    "headroom_captured",
    "corpus_recall@1",
    "corpus_recall@8",
    "corpus_evidence@1",
)


def arm_label(arm: str, retrieval_loss: str) -> str:
    if arm == "retriever":
        return f"retriever only, LLM frozen ({retrieval_loss})"
    if arm == "supervised":
        return "supervised retriever (gold passages), LLM frozen"
    if arm == "base":
        return "base models (untrained)"
    return f"jmlr ({retrieval_loss})" if arm == "jmlr" else {"sft": "SFT (no docs)", "rag": "RAG-SFT"}[arm]


def reported_metrics(records: Sequence[dict]) -> tuple[str, ...]:
    """The metrics of the tables and bars: the four always (`n/a` where a task cannot measure one, e.g. recall on
    MedMCQA, which has no gold passages), the generative and retriever ones when the runs measured them."""
    measured = tuple(m for m in GENERATIVE_METRICS + RETRIEVER_METRICS if any(m in r["metrics"] for r in records))
    return REPORTED_METRICS + measured


def summarize(records: Sequence[dict], metrics: Sequence[str] = REPORTED_METRICS) -> dict[str, dict[str, dict]]:
    """`{arm label: {metric: {"mean", "std", "n", "values"}}}`; std is the sample standard deviation (n - 1)."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(arm_label(record["arm"], record["retrieval_loss"]), []).append(record)
    summary = {}
    for label, group in groups.items():
        summary[label] = {}
        for metric in metrics:
            summary[label][metric] = value_stats([r["metrics"].get(metric, math.nan) for r in group])
    return summary


def value_stats(values: Sequence[float]) -> dict:
    """`{"mean", "std", "n", "values"}` of the measured (non-NaN) `values`; std is the sample one (n - 1)."""
    values = [v for v in values if not math.isnan(v)]
    return {
        "mean": statistics.fmean(values) if values else math.nan,
        "std": statistics.stdev(values) if len(values) > 1 else math.nan,
        "n": len(values),
        "values": values,
    }


#: The arm every other is paired against, seed by seed: the comparison the experiment is named for.
PAIRED_REFERENCE = "RAG-SFT"


def paired_difference(values: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """Mean and SE of values − reference over the keys both have (`n`: questions, or seeds); SE = sample std / sqrt(n)."""
    shared = sorted(set(values) & set(reference))
    differences = [values[key] - reference[key] for key in shared]
    n = len(differences)
    mean = statistics.fmean(differences) if n else math.nan
    se = statistics.stdev(differences) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "se": se, "n": n}


def paired_by_seed(
    records: Sequence[dict], metrics: Sequence[str], reference: str = PAIRED_REFERENCE
) -> dict[str, dict[str, dict]]:
    """Each arm against `reference`, seed by seed: `{arm label: {metric: {...}}}` over the seeds both recorded.

    Per metric: `differences` (arm − reference per seed, in seed order), their `mean`, sample `std` and `se` (std /
    √n: the paired standard error), `n`, `seeds`; and `pooled_std`, √((s²_arm + s²_ref) / 2) of the two arms' own
    values on those seeds — the seed-to-seed spread the experiment's targets measure a gap against ("below RAG-SFT by
    more than twice the pooled seed std") — with `gap_in_pooled_std` = mean / pooled_std. Pairing by seed removes
    what the seed shares between the arms (the order of the training questions, the LoRA initialisation); an arm
    evaluated once (the untrained base) pairs on its one seed, without a spread. `{}` when `reference` has no runs.
    """
    by_label: dict[str, dict[int, dict]] = {}
    for record in records:
        by_label.setdefault(arm_label(record["arm"], record["retrieval_loss"]), {})[record["seed"]] = record
    reference_runs = by_label.get(reference, {})
    paired: dict[str, dict[str, dict]] = {}
    for label, runs in by_label.items():
        seeds = sorted(set(runs) & set(reference_runs))
        if label == reference or not seeds:
            continue
        paired[label] = {}
        for metric in metrics:
            pairs = [
                (runs[s]["metrics"].get(metric, math.nan), reference_runs[s]["metrics"].get(metric, math.nan), s)
                for s in seeds
            ]
            pairs = [(a, b, s) for a, b, s in pairs if not (math.isnan(a) or math.isnan(b))]
            stats = paired_difference({s: a for a, _, s in pairs}, {s: b for _, b, s in pairs})
            n = stats["n"]
            stats["std"] = stats["se"] * math.sqrt(n) if n > 1 else math.nan
            stats["differences"] = [a - b for a, b, _ in pairs]
            stats["seeds"] = [s for _, _, s in pairs]
            spreads = [value_stats([a for a, _, _ in pairs])["std"], value_stats([b for _, b, _ in pairs])["std"]]
            stats["pooled_std"] = math.sqrt((spreads[0] ** 2 + spreads[1] ** 2) / 2) if n > 1 else math.nan
            usable = n > 1 and stats["pooled_std"] > 0
            stats["gap_in_pooled_std"] = stats["mean"] / stats["pooled_std"] if usable else math.nan
            paired[label][metric] = stats
    return paired


def paired_cell(stats: dict) -> str:
    """`mean ± SE (n) [gap / pooled std]` of one `paired_by_seed` entry; `n/a` where no seed pairs."""
    if stats["n"] == 0:
        return "n/a"
    if stats["n"] == 1:
        return f"{stats['mean']:+.4f} (1)"
    ratio = "–" if math.isnan(stats["gap_in_pooled_std"]) else f"{stats['gap_in_pooled_std']:+.1f}"
    return f"{stats['mean']:+.4f} ± {stats['se']:.4f} ({stats['n']}) [{ratio}]"


def paired_table(paired: dict[str, dict[str, dict]], metrics: Sequence[str], reference: str = PAIRED_REFERENCE) -> str:
    """Markdown: one row per arm, `arm − reference: mean ± paired SE (seeds) [mean / pooled seed std]` per metric."""
    lines = [
        f"Paired by seed against {reference}: arm − {reference}, mean ± paired SE (seeds) [difference in pooled seed "
        "stds]",
        "",
        "| arm | " + " | ".join(metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    for label, row in paired.items():
        lines.append(f"| {label} | " + " | ".join(paired_cell(row[m]) for m in metrics) + " |")
    return "\n".join(lines)


def stats_cell(stats: dict) -> str:
    """`mean ± std (n)` of one `summarize` entry; `n/a` when no run measured it."""
    if stats["n"] == 0:
        return "n/a"
    std = "–" if math.isnan(stats["std"]) else f"{stats['std']:.4f}"  # one run has no spread
    return f"{stats['mean']:.4f} ± {std} ({stats['n']})"


def summary_table(
    summary: dict[str, dict[str, dict]], metrics: Sequence[str] = REPORTED_METRICS, first_column: str = "arm"
) -> str:
    """Markdown: one row per arm, `mean ± std (n)` per metric, `n/a` where no run could measure it."""
    lines = [f"| {first_column} | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for label, row in summary.items():
        lines.append(f"| {label} | " + " | ".join(stats_cell(row[m]) for m in metrics) + " |")
    return "\n".join(lines)


def mean_curve(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    """`key` of the log histories against the step, averaged over the records (seeds) that logged it there."""
    per_step: dict[int, list[float]] = {}
    for record in records:
        for entry in record["log_history"]:
            if key in entry and "step" in entry:
                per_step.setdefault(entry["step"], []).append(entry[key])
    steps = sorted(per_step)
    return steps, [statistics.fmean(per_step[s]) for s in steps]


# The panels of training_curves.png: the trainer's logged losses and agreement, and the held-out retrieval callback's.
PANELS = (
    "lm_loss",
    "retrieval_loss",
    "retrieval_agreement",
    # The training batches' top-1 agreement beside the held-out one: the two apart = the preference memorised, not
    # learned (a question seen again in a later pass counts as agreed once the retriever fits it).
    "lm_best_is_retriever_top1",
    LOG_PREFIX + "recall@1",
    LOG_PREFIX + "evidence@1",
    LOG_PREFIX + "llm_top1_agreement",
)


def plot_experiment(records: Sequence[dict], summary: dict, output_dir: str) -> list[str]:
    """`training_curves.png` (mean over seeds per arm; held-out recall over steps where it was logged) and
    `final_metrics.png` (bars with std error bars; `n/a` panels for what the task cannot measure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(3.8 * len(PANELS), 3.4), squeeze=False)
    labels = list(summary)
    for ax, key in zip(axes[0], PANELS, strict=True):
        drawn = False
        for label in labels:
            group = [r for r in records if arm_label(r["arm"], r["retrieval_loss"]) == label]
            steps, mean = mean_curve(group, key)
            if steps:
                # One colour per arm in every panel, the same as in the bar chart.
                ax.plot(steps, mean, marker="o", markersize=3, label=label, color=f"C{labels.index(label)}")
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "n/a: not measured", ha="center", va="center", transform=ax.transAxes, color="grey")
        held_out = key.startswith(LOG_PREFIX)
        title = f"held-out {key[len(LOG_PREFIX) :]}" if held_out else key
        ax.set_title(f"{title} (mean over seeds)", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    # One legend for every arm drawn in any panel (the first panel lacks the arms without an LM loss).
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[0][0].legend(list(handles.values()), list(handles), fontsize=7)
    fig.tight_layout()
    curves_path = os.path.join(output_dir, "training_curves.png")
    fig.savefig(curves_path, dpi=120)
    plt.close(fig)

    metrics = reported_metrics(records)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.set_title(metric, fontsize=9)
        if all(summary[label][metric]["n"] == 0 for label in labels):
            ax.text(0.5, 0.5, "n/a for this task", ha="center", va="center", transform=ax.transAxes, color="grey")
            ax.set_xticks([])
            continue
        means = [summary[label][metric]["mean"] for label in labels]
        stds = [
            0.0 if math.isnan(summary[label][metric]["std"]) else summary[label][metric]["std"] for label in labels
        ]
        ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color=[f"C{i}" for i in range(len(labels))])
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    bars_path = os.path.join(output_dir, "final_metrics.png")
    fig.savefig(bars_path, dpi=120)
    plt.close(fig)
    return [curves_path, bars_path]
