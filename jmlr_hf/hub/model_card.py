"""Model, index and data set cards: the templates of `model_cards/` (packaged as `jmlr_hf/hub/templates/`), rendered
with huggingface_hub's `ModelCard` / `DatasetCard` and their card data, with `model-index` results taken from
`jmlr evaluate` or the training recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, List
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from ..data.medqa_reason import check_reason_splits, data_file
from ..models.retrieval_jmlr import DOCUMENTS_FILE, RELATIVE_PATH_PREFIXES, is_local_path

# The package that holds the card templates: `model_cards/` of the source tree, installed as `jmlr_hf/hub/templates`
# (pyproject.toml maps one to the other), so `importlib.resources` finds them in every kind of install.
TEMPLATES_PACKAGE = "jmlr_hf.hub.templates"

# Public Hub copies of the evaluation sets, for the card's `model-index` (the numbers come from the local files).
TASK_DATASETS: dict[str, tuple[str, str, str]] = {
    # task: (dataset id on the Hub, readable name, task type of the model-index)
    "pubmedqa": ("qiaojin/PubMedQA", "PubMedQA-L", "question-answering"),
    "medmcqa": ("openlifescienceai/medmcqa", "MedMCQA", "multiple-choice"),
    "mmlu": ("cais/mmlu", "MMLU-Med", "multiple-choice"),
    "medqa": ("GBaker/MedQA-USMLE-4-options", "MedQA (USMLE)", "multiple-choice"),
    "medquad": ("lavita/MedQuAD", "MedQuAD open-book QA", "question-answering"),
}
MODEL_TAGS = ["jmlr", "medical", "retrieval-augmented-generation", "trl", "custom_code"]


def card_template_path(name: str) -> Path:
    """A card template (`model_card_template.md`, `index_card_template.md`, `dataset_card_template.md`)."""
    path = resources.files(TEMPLATES_PACKAGE) / name
    if not path.is_file():
        raise FileNotFoundError(f"The card template {name} is missing from {TEMPLATES_PACKAGE}: reinstall jmlr_hf")
    # Installed from a wheel or in editable mode, the templates are plain files (never inside a zip).
    return Path(str(path))


def _dataset(task: str) -> tuple[str, str, str]:
    return TASK_DATASETS.get(task, (task, task, "question-answering"))


def _given_dataset(task: str, questions: str | None) -> tuple[str, str, str]:
    """`(dataset id, readable name, task type)` of the questions an evaluation read, named as they were given: the
    task's public Hub copy only for the task's own files (`--questions` not given); a Hub id given with
    `--questions` as itself; a local file by its file name (its folder is the author's disk, and the Hub id of a
    public copy would claim a data set that was not the one read)."""
    dataset_type, dataset_name, task_type = _dataset(task)
    if not questions:
        return dataset_type, dataset_name, task_type
    if is_local_path(questions):
        file_name = os.path.basename(os.path.normpath(questions))
        return file_name, f"{dataset_name} ({file_name})", task_type
    return questions, f"{dataset_name} ({questions})", task_type


def weights_digest(folder: str | os.PathLike[str]) -> str | None:
    """A SHA-256 over a saved model's weight files (`*.safetensors`, `*.bin`, in every subfolder, by relative name):
    which model an evaluation measured (`jmlr evaluate` records it, `push_model` compares it). `None` for a
    folder without weight files, or a name that is not a local folder (a Hub id)."""
    root = Path(folder)
    if not root.is_dir():
        return None
    files = sorted(path for pattern in ("*.safetensors", "*.bin") for path in root.rglob(pattern) if path.is_file())
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def public_model_name(name: str | None) -> str | None:
    """`name` as a public card may show it: a Hub id as it is; the folder of a packaged demo model (the converted
    SmolLM2 in the cache, all-MiniLM-L6-v2 in its package) as that model's Hub id; any other local path `None`
    (a folder on the author's disk means nothing to a reader, and leaks the author's paths)."""
    if not name:
        return None
    if not is_local_path(name):
        return name
    from ..utils.demo_models import HUB_IDS, MINILM_ALIAS, SMOLLM2_ALIAS, cache_dir, minilm_path

    resolved = os.path.realpath(os.path.expanduser(name))
    packaged = {SMOLLM2_ALIAS: lambda: cache_dir() / SMOLLM2_ALIAS, MINILM_ALIAS: minilm_path}
    for alias, location in packaged.items():
        try:
            if os.path.realpath(location()) == resolved:
                return HUB_IDS[alias]
        except FileNotFoundError:
            continue
    return None


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
    questions = settings.get("questions")
    if split == "all" and questions and is_local_path(questions):
        split = None  # a whole local file: no split of a published data set
    entries: list[tuple[str, str, Any]] = []
    for mode in ("likelihood", "generative"):
        if mode in metrics:
            if "accuracy" not in metrics[mode]:  # open answers (MedQuAD): answer NLL or ROUGE-L instead
                for key in ("answer_nll", "rouge_l"):
                    if key in metrics[mode]:
                        entries.append((key, f"{key} ({mode})", metrics[mode][key]))
                continue
            entries.append(("accuracy", f"accuracy ({mode})", metrics[mode]["accuracy"]))
            if metrics[mode].get("macro_f1") is not None:
                entries.append(("f1", f"macro-F1 ({mode})", metrics[mode]["macro_f1"]))
    retrieval = metrics.get("retrieval") or {}
    for key, value in retrieval.items():
        if key == "mrr" or key.startswith(("recall@", "ndcg@")):
            entries.append((key.split("@")[0], f"retrieval {key}", value))
    dataset = _given_dataset(settings["task"], questions)
    return _eval_results(settings["task"], split, [entry for entry in entries if entry[2] is not None], dataset)


def eval_results_from_metrics(metrics: Mapping[str, Any], task: str, split: str = "test") -> list[EvalResult]:
    """The `model-index` entries of the training recipe's after-training metrics (`evaluate_model`)."""
    entries = [
        (key.split("@")[0], key, value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not key.startswith("num_") and value == value  # skips NaN
    ]
    return _eval_results(task, split, entries)


def _eval_results(
    task: str,
    split: str | None,
    entries: Iterable[tuple[str, str, Any]],
    dataset: tuple[str, str, str] | None = None,
) -> list[EvalResult]:
    """`EvalResult`s of `(metric type, metric name, value)` entries measured on `task`'s `split` (of `dataset`,
    `(id, name, task type)`: default, the task's public copy)."""
    dataset_type, dataset_name, task_type = dataset or _dataset(task)
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
    question: str = "Which organ makes insulin?",
    revision: str | None = None,
) -> ModelCard:
    """The model card of a JMLR model (`config` is its `JMLRConfig`) from `model_cards/model_card_template.md`.

    Args:
        eval_results: `model-index` entries (see `eval_results_from_evaluation` / `eval_results_from_metrics`).
        generator / retriever: the base models' Hub ids (default: the names recorded in the sub-configs).
        training: facts about the run shown in the card (task, steps, ...).
        comparison: an extra Markdown block, e.g. the recipe's before/after table.
        question: the example question of the card's snippets.
        revision: the commit of `repo_id` the snippets pin (`push_model` passes the commit it made); default
            `"main"`, with a note to pin a commit instead.

    The card shows how to load the model and both tokenizers with a pinned `revision`, and, when the config records
    a published index (a Hub id and its commit), how to answer with documents from the model's id alone.
    """
    eval_results = list(eval_results)
    # A local index is shown only as the path relative to the model folder that `save_pretrained` records, never as
    # a path on the author's disk.
    index = config.index_repo_id
    local_index = index is not None and is_local_path(index)
    relative_index = index if local_index and index.startswith(RELATIVE_PATH_PREFIXES) else None
    # Hub ids only: a local folder (the converted SmolLM2 in the user's cache, a retriever in site-packages) is shown
    # by the Hub id of the packaged model it is, or not at all.
    generator = public_model_name(
        generator or config.generator_base_model or getattr(config.generator, "_name_or_path", "")
    )
    retriever = public_model_name(retriever or getattr(config.retriever, "_name_or_path", ""))
    base_models = [generator] if generator else []
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
        template_path=str(card_template_path("model_card_template.md")),
        repo_id=repo_id,
        model_name=repo_id.split("/")[-1],
        generator=generator or "(unknown)",
        retriever=retriever or "(unknown)",
        generator_weights="a LoRA adapter on the base model" if config.generator_adapter else "full (merged) weights",
        config=config,
        index_repo_id=None if local_index else config.index_repo_id,
        index_revision=config.index_revision or "main",
        local_index=local_index,
        relative_index=relative_index,
        question=question,
        revision=revision,
        training=dict(training or {}),
        results_table=results_table(eval_results),
        comparison=comparison,
    )


def render_index_card(
    index,
    repo_id: str,
    *,
    model_repo_id: str | None = None,
    license: str | None = None,
    documents_file: str = DOCUMENTS_FILE,
):
    """The card of a document-index repository (a data set repository on the Hub) for a `DocumentIndex`;
    `documents_file` is the name of its document store (`documents.parquet` for an index of format 1)."""
    card_data = DatasetCardData(
        license=license,
        pretty_name=f"JMLR document index {repo_id.split('/')[-1]}",
        tags=["jmlr", "faiss", "retrieval", "medical"],
        size_categories=[size_category(len(index))],
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(card_template_path("index_card_template.md")),
        repo_id=repo_id,
        index=index.config(),
        num_documents=len(index),
        model_repo_id=model_repo_id,
        documents_file=documents_file,
    )


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket of a data set of `n` rows."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M" if n < 10_000_000 else "10M<n<100M"


# --------------------------------------------------------------------------------------------------------------------
# Data set cards (MedQA-Reason-style data sets, see `jmlr_hf.data.medqa_reason`)
# --------------------------------------------------------------------------------------------------------------------

FIELD_DESCRIPTIONS = {
    "id": "Stable identifier (the key of the hash split).",
    "question": "The question stem, without the options.",
    "options": "The option texts in letter order (A, B, ...).",
    "answer": "The correct option letter (`A`..`E`).",
    "answer_idx": "The correct option as a 0-based index into `options`.",
    "rationale": "Why the answer is right (explanation or worked reasoning); never empty.",
    "subject": "Subject or exam part when the source has one, else empty.",
    "source": "The source data set of the row.",
}


# What the card says about each value of the `source` column.
SOURCE_INFO: dict[str, dict[str, str]] = {
    "medmcqa": {
        "name": "MedMCQA",
        "url": "https://medmcqa.github.io",
        "license": "MIT. Questions, options and expert explanations from Pal, Umapathi & Sankarasubbu, "
        '"MedMCQA: A Large-scale Multi-Subject Multi-Choice Dataset for Medical domain Question Answering", '
        "CHIL 2022 (PMLR 174).",
    },
    "medqa-reason": {
        "name": "akemiH/MedQA-Reason",
        "url": "https://huggingface.co/datasets/akemiH/MedQA-Reason",
        "license": "Licence not verified by jmlr_hf: check the terms of akemiH/MedQA-Reason, of MedQA (Jin et al., "
        "Applied Sciences 2021) whose questions it holds, and of the model that wrote its GPT-4 rationales before "
        "using or redistributing these rows.",
    },
}


def _num_bytes(dataset: Dataset) -> int:
    """The Arrow size of `dataset` (what the Hub records as `num_bytes`), without rows hidden by an indices mapping."""
    return (dataset if dataset._indices is None else dataset.flatten_indices(keep_in_memory=True)).data.nbytes


def render_dataset_card(
    dataset_dict: DatasetDict,
    *,
    repo_id: str,
    source_description: str,
    license: str,
    pretty_name: str | None = None,
    build_command: str | None = None,
    template_path: str | os.PathLike[str] | None = None,
) -> DatasetCard:
    """The Hub dataset card of `dataset_dict`, rendered from `model_cards/dataset_card_template.md`.

    The card's metadata (`DatasetCardData`) holds the licence, `language: en`, the task categories
    `question-answering` / `multiple-choice`, the tags `medical`, `jmlr`, `medqa-reason`, the size category, the
    pretty name, `configs` pointing each split at `data/{split}-*.parquet` (the files [`save_reason_dataset`]
    writes), and `dataset_info` with the features and each split's `num_examples`. The body describes the data set,
    the schema, the split sizes, the sources of the rows with their licences ([`SOURCE_INFO`]), the build command and
    how to load it.

    Args:
        dataset_dict: the splits, with [`REASON_FEATURES`].
        repo_id: the Hub repository the card is for (shown in the loading snippet).
        source_description: a paragraph saying what the rows are and where they come from.
        license: the licence identifier declared in the metadata (e.g. `"mit"` for MedMCQA rows; `"other"` when it
            is unknown).
        pretty_name: the title; defaults to the last part of `repo_id`.
        build_command: the exact command that built the data set, shown verbatim.
        template_path: another Jinja template (default: the packaged `dataset_card_template.md`).
    """
    check_reason_splits(dataset_dict)
    template = Path(template_path) if template_path is not None else card_template_path("dataset_card_template.md")
    if not template.exists():
        raise FileNotFoundError(f"The dataset card template {template} does not exist; pass template_path=.")
    pretty_name = pretty_name or repo_id.rstrip("/").split("/")[-1]
    split_sizes = {name: len(split) for name, split in dataset_dict.items()}
    total = sum(split_sizes.values())
    features = next(iter(dataset_dict.values())).features
    source_rows: Counter[str] = Counter()
    for split in dataset_dict.values():
        source_rows.update(split["source"])
    sources = []
    for name, rows in sorted(source_rows.items()):
        info = SOURCE_INFO.get(name, {})
        sources.append(
            {
                "key": name,
                "name": info.get("name", name),
                "url": info.get("url", ""),
                "rows": rows,
                "license": info.get("license", "No licence information is known to jmlr_hf: check it before use."),
            }
        )
    card_data = DatasetCardData(
        license=license,
        language=["en"],
        task_categories=["question-answering", "multiple-choice"],
        task_ids=["multiple-choice-qa"],
        size_categories=[size_category(total)],
        pretty_name=pretty_name,
        tags=["medical", "jmlr", "medqa-reason"],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"data/{name}-*.parquet"} for name in dataset_dict],
            }
        ],
        dataset_info={
            "features": features._to_yaml_list(),
            "splits": [
                {"name": name, "num_bytes": _num_bytes(split), "num_examples": len(split)}
                for name, split in dataset_dict.items()
            ],
        },
    )
    fields = [
        {
            "name": name,
            "type": "list of strings" if isinstance(feature, List) else getattr(feature, "dtype", str(feature)),
            "description": FIELD_DESCRIPTIONS.get(name, ""),
        }
        for name, feature in features.items()
    ]
    return DatasetCard.from_template(
        card_data,
        template_path=str(template),
        pretty_name=pretty_name,
        repo_id=repo_id,
        source_description=source_description.strip(),
        license=license,
        splits=[{"name": name, "num_examples": size, "file": data_file(name)} for name, size in split_sizes.items()],
        total=total,
        fields=fields,
        sources=sources,
        build_command=build_command.strip() if build_command else None,
    )


__all__ = [
    "card_template_path",
    "FIELD_DESCRIPTIONS",
    "SOURCE_INFO",
    "TASK_DATASETS",
    "eval_results_from_evaluation",
    "eval_results_from_metrics",
    "render_index_card",
    "render_model_card",
    "results_table",
    "render_dataset_card",
    "size_category",
]
