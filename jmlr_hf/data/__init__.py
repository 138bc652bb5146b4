"""Medical QA sets and retrieval corpora in the two schemas the JMLR trainer reads.

* `qa`: MedQA, MedMCQA, MMLU-Med and PubMedQA-L as questions ([`QA_FEATURES`]);
* `medquad`: MedQuAD as open-book QA (target = the answer's opening sentences, one gold passage, split by topic);
* `corpus`: retrieval corpora ([`CORPUS_FEATURES`]) and their chunking;
* `medqa_reason`: MedQA-Reason-style data sets (questions + rationales) in the Hub layout;
* `splits`: deterministic hash splits;
* `tasks`: what `--task pubmedqa` / `--corpus medquad` mean, for the CLI and the recipe.

A bad row raises a [`DataFormatError`] naming the file, the row and the field; with `skip_invalid=True` it is dropped
and counted (one warning, and a [`LoadReport`]). The shared data folder that tests and demos read is
[`default_data_dir`]; see its README for the files.
"""

from ._loading import (
    ANSWER_LETTERS,
    CORPUS_FEATURES,
    DECISIONS,
    MAX_OPTIONS,
    PUBMEDQA_CORPUS_FEATURES,
    QA_FEATURES,
    DataFormatError,
    LoadReport,
    default_data_dir,
    print_load_summaries,
)
from .corpus import (
    MEDQUAD_FILE,
    chunk_text,
    load_corpus,
    load_medquad_corpus,
    load_pubmedqa_corpus,
    stream_corpus,
)
from .medqa_reason import (
    REASON_FEATURES,
    build_from_medmcqa,
    build_from_medqa_reason_csv,
    load_reason_split,
    normalize_whitespace,
    save_reason_dataset,
)
from .medquad import MEDQUAD_QA_FEATURES, load_medquad_qa, medquad_target
from .qa import MEDMCQA_FILE, MMLU_DIR, PUBMEDQA_FILE, load_medmcqa, load_medqa, load_mmlu, load_pubmedqa
from .splits import hash_split, split_by_hash
from .tasks import TASK_FILES, TASKS, TASKS_WITH_VALIDATION, load_named_corpus, load_task

__all__ = [
    "ANSWER_LETTERS",
    "CORPUS_FEATURES",
    "DECISIONS",
    "MAX_OPTIONS",
    "MEDMCQA_FILE",
    "MEDQUAD_FILE",
    "MEDQUAD_QA_FEATURES",
    "MMLU_DIR",
    "PUBMEDQA_CORPUS_FEATURES",
    "PUBMEDQA_FILE",
    "QA_FEATURES",
    "REASON_FEATURES",
    "TASKS",
    "TASKS_WITH_VALIDATION",
    "TASK_FILES",
    "DataFormatError",
    "LoadReport",
    "build_from_medmcqa",
    "build_from_medqa_reason_csv",
    "chunk_text",
    "default_data_dir",
    "hash_split",
    "load_corpus",
    "load_medmcqa",
    "load_medqa",
    "load_medquad_corpus",
    "load_medquad_qa",
    "load_mmlu",
    "load_named_corpus",
    "load_pubmedqa",
    "load_pubmedqa_corpus",
    "load_reason_split",
    "load_task",
    "print_load_summaries",
    "medquad_target",
    "normalize_whitespace",
    "save_reason_dataset",
    "split_by_hash",
    "stream_corpus",
]
