"""Named tasks and corpora: which loader and which file of the data folder each name means.

Shared by the `jmlr` command and the training recipe, so that `--task pubmedqa` or `--corpus medquad` mean the same
everywhere. A task or corpus can always be given as an explicit file or Hub id instead.
"""

from __future__ import annotations

import os

from datasets import Dataset, concatenate_datasets

from . import data as jdata

TASKS = ("pubmedqa", "medmcqa", "medqa", "mmlu", "medqa-reason")
TASK_FILES = {
    "pubmedqa": "corpus/pubmedqa_pqal/ori_pqal.json",
    "medmcqa": "qa/medmcqa/dev.json",
    "mmlu": "qa/mmlu_med",
}
PUBMEDQA_CORPUS_FILE = TASK_FILES["pubmedqa"]


def load_task(
    task: str,
    split: str | None,
    *,
    data_dir: str | None = None,
    path: str | None = None,
    eval_fraction: float = 0.2,
) -> Dataset:
    """The questions of `task` for `split` (`"train"`, `"test"` or `None` for all).

    PubMedQA-L uses its official test ids; MMLU-Med is test-only; MedMCQA (rows with an explanation) and MedQA are
    split deterministically by a hash of the id, `eval_fraction` held out. A MedQA-Reason-style data set
    (`medqa-reason`: a Hub id or a folder written by `jmlr push dataset`) has its own splits (`None` reads `test`).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    data_dir = data_dir or str(jdata.default_data_dir())
    if path is None:
        if task == "medqa":
            raise ValueError("task 'medqa' needs a file in the jind11 JSON-lines format (no MedQA file is bundled)")
        if task == "medqa-reason":
            raise ValueError(
                "task 'medqa-reason' needs a data set: a Hub id or a folder written by `jmlr push dataset`"
            )
        path = os.path.join(data_dir, TASK_FILES[task])
    if task == "medqa-reason":  # a published MedQA-Reason-style data set: its own train/validation/test splits
        from .reason_data import load_reason_split

        return load_reason_split(path, split or "test")
    if task == "pubmedqa":
        return jdata.load_pubmedqa(path, split=split)
    if task == "mmlu":
        return jdata.load_mmlu(path)
    full = jdata.load_medmcqa(path, require_rationale=True) if task == "medmcqa" else jdata.load_medqa(path)
    if split is None:
        return full
    train, held_out = jdata.split_by_hash(full, eval_fraction)
    return train if split == "train" else held_out


def load_named_corpus(spec: str, *, data_dir: str | None = None, distractor_passages: int = 0) -> Dataset:
    """`"pubmedqa"` (every abstract section), `"medquad"`, or a corpus file / Hub id; plus MedQuAD distractors."""
    data_dir = data_dir or str(jdata.default_data_dir())
    medquad = os.path.join(data_dir, jdata.MEDQUAD_FILE)
    if spec == "pubmedqa":
        corpus = jdata.load_pubmedqa_corpus(os.path.join(data_dir, PUBMEDQA_CORPUS_FILE))
    elif spec == "medquad":
        corpus = jdata.load_medquad_corpus(medquad)
    else:
        corpus = jdata.load_corpus(spec)
    if distractor_passages:
        keep = ["id", "title", "text"]
        extra = jdata.load_medquad_corpus(medquad, limit=distractor_passages)
        corpus = concatenate_datasets([corpus.select_columns(keep), extra.select_columns(keep)])
    return corpus
