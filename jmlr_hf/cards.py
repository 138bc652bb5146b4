"""Model and index cards: the templates in `model_cards/`, rendered with huggingface_hub's `ModelCard` /
`DatasetCard` and their card data, with `model-index` results taken from `jmlr evaluate` or the training recipe.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

# Public Hub copies of the evaluation sets, for the card's `model-index` (the numbers come from the local files).
TASK_DATASETS: dict[str, tuple[str, str, str]] = {
    # task: (dataset id on the Hub, readable name, task type of the model-index)
    "pubmedqa": ("qiaojin/PubMedQA", "PubMedQA-L", "question-answering"),
    "medmcqa": ("openlifescienceai/medmcqa", "MedMCQA", "multiple-choice"),
    "mmlu": ("cais/mmlu", "MMLU-Med", "multiple-choice"),
    "medqa": ("GBaker/MedQA-USMLE-4-options", "MedQA (USMLE)", "multiple-choice"),
}
MODEL_TAGS = ["jmlr", "medical", "retrieval-augmented-generation", "trl", "custom_code"]


def template_path(name: str) -> Path:
    """A template of `model_cards/`: from the source tree, or where a wheel installs it (`share/jmlr_hf`)."""
    for folder in (
        Path(__file__).resolve().parents[1] / "model_cards",
        Path(sys.prefix) / "share/jmlr_hf/model_cards",
    ):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"The card template {name} is missing: reinstall jmlr_hf (it ships model_cards/{name})")


def _dataset(task: str) -> tuple[str, str, str]:
    return TASK_DATASETS.get(task, (task, task, "question-answering"))


def eval_results_from_evaluation(result: Mapping[str, Any] | str | os.PathLike[str]) -> list[EvalResult]:
    """The `model-index` entries of one `jmlr evaluate` result (its JSON file or dict): accuracy per mode,
    macro-F1 for decision tasks, and MRR / recall@k / nDCG@k when retrieval was measured."""
    if not isinstance(result, Mapping):
        with open(result, encoding="utf-8") as f:
            result = json.load(f)
    settings, metrics = result.get("settings", {}), result.get("metrics")
    if not isinstance(metrics, Mapping) or not settings.get("task"):
        raise ValueError("not a `jmlr evaluate` result: it needs `settings.task` and `metrics` (see --output)")
    split = settings.get("split")
    entries: list[tuple[str, str, Any]] = []
    for mode in ("likelihood", "generative"):
        if mode in metrics:
            entries.append(("accuracy", f"accuracy ({mode})", metrics[mode]["accuracy"]))
            if metrics[mode].get("macro_f1") is not None:
                entries.append(("f1", f"macro-F1 ({mode})", metrics[mode]["macro_f1"]))
    retrieval = metrics.get("retrieval") or {}
    for key, value in retrieval.items():
        if key == "mrr" or key.startswith(("recall@", "ndcg@")):
            entries.append((key.split("@")[0], f"retrieval {key}", value))
    return _eval_results(settings["task"], split, [entry for entry in entries if entry[2] is not None])


def eval_results_from_metrics(metrics: Mapping[str, Any], task: str, split: str = "test") -> list[EvalResult]:
    """The `model-index` entries of the training recipe's after-training metrics (`evaluate_model`)."""
    entries = [
        (key.split("@")[0], key, value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not key.startswith("num_") and value == value  # skips NaN
    ]
    return _eval_results(task, split, entries)


def _eval_results(task: str, split: str | None, entries: Iterable[tuple[str, str, Any]]) -> list[EvalResult]:
    """`EvalResult`s of `(metric type, metric name, value)` entries measured on `task`'s `split`."""
    dataset_type, dataset_name, task_type = _dataset(task)
    return [
        EvalResult(
            task_type=task_type,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=split,
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(float(value), 4),
        )
        for metric_type, metric_name, value in entries
    ]


def results_table(eval_results: Sequence[EvalResult]) -> str:
    """The evaluation results as a Markdown table for the card's body."""
    if not eval_results:
        return "No evaluation results were recorded for this model."
    lines = ["| data set | split | metric | value |", "|---|---|---|---|"]
    for r in eval_results:
        lines.append(f"| {r.dataset_name} | {r.dataset_split or ''} | {r.metric_name} | {r.metric_value:.4g} |")
    return "\n".join(lines)


def render_model_card(
    config,
    repo_id: str,
    *,
    eval_results: Iterable[EvalResult] = (),
    generator: str | None = None,
    retriever: str | None = None,
    datasets: Sequence[str] = (),
    license: str = "apache-2.0",
    training: Mapping[str, Any] | None = None,
    comparison: str | None = None,
) -> ModelCard:
    """The model card of a JMLR model (`config` is its `JMLRConfig`) from `model_cards/model_card_template.md`.

    Args:
        eval_results: `model-index` entries (see `eval_results_from_evaluation` / `eval_results_from_metrics`).
        generator / retriever: the base models' Hub ids (default: the names recorded in the sub-configs).
        training: facts about the run shown in the card (task, steps, ...).
        comparison: an extra Markdown block, e.g. the recipe's before/after table.
    """
    eval_results = list(eval_results)
    generator = generator or config.generator_base_model or getattr(config.generator, "_name_or_path", "") or None
    retriever = retriever or getattr(config.retriever, "_name_or_path", "") or None
    base_models = [name for name in (generator,) if name and not os.path.isabs(name)]
    card_data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=MODEL_TAGS,
        base_model=base_models or None,
        datasets=list(datasets) or None,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path("model_card_template.md")),
        repo_id=repo_id,
        model_name=repo_id.split("/")[-1],
        generator=generator or "(unknown)",
        retriever=retriever or "(unknown)",
        generator_weights="a LoRA adapter on the base model" if config.generator_adapter else "full (merged) weights",
        config=config,
        index=f"{config.index_repo_id}@{config.index_revision}" if config.index_repo_id else None,
        index_repo_id=config.index_repo_id,
        training=dict(training or {}),
        results_table=results_table(eval_results),
        comparison=comparison,
    )


def render_index_card(index, repo_id: str, *, model_repo_id: str | None = None, license: str | None = None):
    """The card of a document-index repository (a data set repository on the Hub) for a `DocumentIndex`."""
    card_data = DatasetCardData(
        license=license,
        pretty_name=f"JMLR document index {repo_id.split('/')[-1]}",
        tags=["jmlr", "faiss", "retrieval", "medical"],
        size_categories=[size_category(len(index))],
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(template_path("index_card_template.md")),
        repo_id=repo_id,
        index=index.config(),
        num_documents=len(index),
        model_repo_id=model_repo_id,
    )


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket of a data set of `n` rows."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M" if n < 10_000_000 else "10M<n<100M"


__all__ = [
    "TASK_DATASETS",
    "eval_results_from_evaluation",
    "eval_results_from_metrics",
    "render_index_card",
    "render_model_card",
    "results_table",
    "size_category",
    "template_path",
]
