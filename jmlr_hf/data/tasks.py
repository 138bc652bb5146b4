"""Named tasks and corpora: which loader and which file of the data folder each name means.

Shared by the `jmlr` command and the training recipe, so that `--task pubmedqa` or `--corpus medquad` mean the same
everywhere. A task or corpus can always be given as an explicit file or Hub id instead.
"""

from __future__ import annotations

import os

from datasets import Dataset, concatenate_datasets

from ._loading import LoadReport, default_data_dir
from .corpus import MEDQUAD_FILE, load_corpus, load_medquad_corpus, load_pubmedqa_corpus
from .medquad import load_medquad_qa
from .qa import MEDMCQA_FILE, MMLU_DIR, PUBMEDQA_FILE, load_medmcqa, load_medqa, load_mmlu, load_pubmedqa
from .splits import split_by_hash

TASKS = ("pubmedqa", "medmcqa", "medqa", "mmlu", "medqa-reason", "medquad")
# Where each task's questions are in the data folder (relative paths).
TASK_FILES = {"pubmedqa": PUBMEDQA_FILE, "medmcqa": MEDMCQA_FILE, "mmlu": MMLU_DIR, "medquad": MEDQUAD_FILE}
#: Tasks with a validation split of their own (`load_task(task, "validation")`), held out like their test split.
TASKS_WITH_VALIDATION = ("medqa-reason", "medquad")


def _new_report(reports: list[LoadReport] | None) -> LoadReport | None:
    """A fresh report appended to `reports` (one per loader call), or `None` when the caller keeps none."""
    if reports is None:
        return None
    report = LoadReport()
    reports.append(report)
    return report


def load_task(
    task: str,
    split: str | None,
    *,
    data_dir: str | None = None,
    path: str | None = None,
    eval_fraction: float = 0.2,
    skip_invalid: bool = True,
    reports: list[LoadReport] | None = None,
) -> Dataset:
    """The questions of `task` for `split` (`"train"`, `"test"` or `None` for all; `"validation"` for the
    [`TASKS_WITH_VALIDATION`]).

    PubMedQA-L uses its official test ids; MMLU-Med is test-only; MedMCQA (rows with an explanation) and MedQA are
    split deterministically by a hash of the id, `eval_fraction` held out. A MedQA-Reason-style data set
    (`medqa-reason`: a Hub id or a folder written by `jmlr push dataset`) has its own splits (`None` reads `test`).
    MedQuAD open-book QA (`medquad`, see [`load_medquad_qa`]) is split by topic into train / validation / test
    (about 80 / 10 / 10%); the gold passage ids refer to `--corpus medquad`.

    Unlike the loaders, a task skips invalid rows by default (`skip_invalid=True`): tasks read upstream files as
    released, and those hold rows no one can train or evaluate on (the bundled MedMCQA dev file has 4 whose answer
    text is also another option's, see `jmlr_hf.data.multiple_choice`). Every skipped row is counted in the
    [`LoadReport`] appended to `reports` (one per loader call; `LoadReport.summary()` is the line the `jmlr` command
    prints) and in a warning; a source without any valid row is still an error. `skip_invalid=False` makes the first
    invalid row a [`DataFormatError`]. (`medqa-reason` data sets were validated when they were built, so they are
    read as they are, without a report.)
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if split == "validation" and task not in TASKS_WITH_VALIDATION:
        raise ValueError(f"task {task!r} has no validation split (only {TASKS_WITH_VALIDATION} have one)")
    data_dir = data_dir or str(default_data_dir())
    if path is None:
        if task == "medqa":
            raise ValueError("task 'medqa' needs a file in the jind11 JSON-lines format (no MedQA file is bundled)")
        if task == "medqa-reason":
            raise ValueError(
                "task 'medqa-reason' needs a data set: a Hub id or a folder written by `jmlr push dataset`"
            )
        path = os.path.join(data_dir, TASK_FILES[task])
    if task == "medqa-reason":  # a published MedQA-Reason-style data set: its own train/validation/test splits
        from .medqa_reason import load_reason_split

        return load_reason_split(path, split or "test")
    checks = {"skip_invalid": skip_invalid, "report": _new_report(reports)}
    if task == "pubmedqa":
        return load_pubmedqa(path, split=split, **checks)
    if task == "medquad":
        return load_medquad_qa(path, split=split, **checks)
    if task == "mmlu":
        return load_mmlu(path, **checks)
    full = load_medmcqa(path, require_rationale=True, **checks) if task == "medmcqa" else load_medqa(path, **checks)
    if split is None:
        return full
    train, held_out = split_by_hash(full, eval_fraction)
    return train if split == "train" else held_out


def load_named_corpus(
    spec: str,
    *,
    data_dir: str | None = None,
    distractor_passages: int = 0,
    skip_invalid: bool = True,
    reports: list[LoadReport] | None = None,
) -> Dataset:
    """`"pubmedqa"` (every abstract section), `"medquad"`, or a corpus file / Hub id; plus MedQuAD distractors.

    Invalid rows are skipped and counted as in [`load_task`] (`skip_invalid`, `reports`: one report per file read,
    so two with distractors).
    """
    data_dir = data_dir or str(default_data_dir())
    medquad = os.path.join(data_dir, MEDQUAD_FILE)
    if spec == "pubmedqa":
        corpus = load_pubmedqa_corpus(
            os.path.join(data_dir, PUBMEDQA_FILE), skip_invalid=skip_invalid, report=_new_report(reports)
        )
    elif spec == "medquad":
        corpus = load_medquad_corpus(medquad, skip_invalid=skip_invalid, report=_new_report(reports))
    else:
        corpus = load_corpus(spec, skip_invalid=skip_invalid, report=_new_report(reports))
    if distractor_passages:
        keep = ["id", "title", "text"]
        extra = load_medquad_corpus(
            medquad, limit=distractor_passages, skip_invalid=skip_invalid, report=_new_report(reports)
        )
        corpus = concatenate_datasets([corpus.select_columns(keep), extra.select_columns(keep)])
    return corpus


__all__ = ["TASKS", "TASKS_WITH_VALIDATION", "TASK_FILES", "load_named_corpus", "load_task"]
