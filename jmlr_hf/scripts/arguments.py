"""The training recipe's own flags (`DataArguments`, `RetrievalArguments`) and its one-line error, without any heavy
import: `jmlr train --help` lists them in a fraction of a second, and a wrong `--task` or a missing corpus file is
found before torch, transformers or a model loads ([`jmlr_hf.scripts.train`] parses them with TRL's `TrlParser`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import get_args

from ..cli.arguments import TaskName

#: The task names, as `TaskName` spells them (tests/test_cli_arguments.py checks that they are `jmlr_hf.data.TASKS`).
TASK_NAMES: tuple[str, ...] = get_args(TaskName)


@dataclass
class DataArguments:
    """Which questions, which corpus, which index."""

    task: str = field(default="pubmedqa", metadata={"help": f"One of {TASK_NAMES}."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Folder of the QA sets and corpora; default $JMLR_DATA_DIR or ../shared/data."}
    )
    train_file: str | None = field(default=None, metadata={"help": "Training questions (a file or a Hub id)."})
    eval_file: str | None = field(default=None, metadata={"help": "Evaluation questions (a file or a Hub id)."})
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "TRL's flag: a Hub data set id (or a local data set folder) holding the questions in --task's "
            "format, read with datasets.load_dataset; its --dataset_train_split trains, its --dataset_test_split "
            "evaluates. Replaces --train_file/--eval_file."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "The data set's configuration (name=...)."})
    dataset_train_split: str = field(default="train", metadata={"help": "The split of --dataset_name to train on."})
    dataset_test_split: str = field(default="test", metadata={"help": "The split of --dataset_name to evaluate on."})
    dataset_streaming: bool = field(
        default=False,
        metadata={
            "help": "TRL's flag, refused when true: the questions are pre-retrieved and trained from memory (a "
            "training set is small); a corpus larger than memory streams with --corpus_streaming."
        },
    )
    eval_fraction: float = field(
        default=0.2, metadata={"help": "For tasks without a test split (MedMCQA, MedQA): held-out share, by id hash."}
    )
    corpus: str = field(
        default="pubmedqa",
        metadata={
            "help": "'pubmedqa' (every abstract section), 'medquad', or a corpus file/Hub id (id, text, title)."
        },
    )
    corpus_streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream --corpus (a corpus file or Hub id) into the index in chunks instead of loading it: for "
            "corpora larger than memory (MedRAG's PubMed). Rows are checked as they arrive; no distractors."
        },
    )
    distractor_passages: int = field(
        default=0, metadata={"help": "MedQuAD passages added to the corpus as distractors (0 = none)."}
    )
    index_dir: str | None = field(
        default=None, metadata={"help": "Where the index lives; default <output_dir>/index."}
    )
    overwrite_index: bool = field(
        default=False,
        metadata={
            "help": "Allow rebuilding --index_dir when another saved model records it as its index (that model's "
            "index then goes stale). False: such a run stops before anything loads."
        },
    )
    index_kind: str = field(
        default="flat",
        metadata={
            "help": "'flat' (exact), 'ivf', 'ivfpq' (compressed: product quantisation, for corpora of millions; "
            "`jmlr index` sets its options) or 'hnsw'."
        },
    )
    corpus_limit: int | None = field(
        default=None,
        metadata={
            "help": "Use only the first N passages of --corpus (distractors included; a stream stops after N): with "
            "--train_limit and --eval_limit, a quick trial of the whole pipeline on a real corpus."
        },
    )
    train_limit: int | None = field(default=None, metadata={"help": "Use only the first N training questions."})
    eval_limit: int | None = field(default=None, metadata={"help": "Use only the first N evaluation questions."})
    eval_answer_limit: int | None = field(
        default=None, metadata={"help": "Answer metrics on the first N evaluation questions (retrieval on all)."}
    )
    evaluate_before: bool = field(default=True, metadata={"help": "Also evaluate before training."})
    merge_adapter: bool = field(
        default=True,
        metadata={"help": "Save the final generator with the LoRA adapter merged; false keeps base + adapter."},
    )
    refresh_index_steps: int | None = field(
        default=None,
        metadata={
            "help": "Every N steps during training, re-encode the corpus with the current retriever and re-retrieve "
            "the training questions' candidates (Atlas' index refresh; with train_document_encoder=false only the "
            "queries are re-encoded). None: the candidates retrieved before training are kept."
        },
    )
    skip_invalid: bool = field(
        default=True,
        metadata={
            "help": "Skip invalid question and corpus rows (each load prints one summary line with the counts and the "
            "first reasons; a file without a valid row is still an error). False: the first invalid row stops the run."
        },
    )
    refresh_index: bool = field(
        default=True,
        metadata={
            "help": "After training, re-encode the corpus with the trained retriever, so that the saved model and "
            "its index agree (the index's vectors come from the same query/document encoder). False keeps the "
            "initial index: the saved model then warns that its index is stale."
        },
    )


@dataclass
class RetrievalArguments:
    """The retriever and the JMLR knobs (`None` keeps `JMLRConfig`'s default or the loaded model's value)."""

    retriever_name_or_path: str = field(
        default="all-minilm-l6-v2", metadata={"help": "Retriever encoder; ignored when loading a JMLR checkpoint."}
    )
    num_candidates: int | None = field(default=None, metadata={"help": "N: pre-retrieved candidates per question."})
    num_sampled: int | None = field(default=None, metadata={"help": "S: candidates sampled for the NLL pass."})
    num_context_documents: int | None = field(default=None, metadata={"help": "K: documents in the LM prompt."})
    retrieval_temperature: float | None = field(default=None, metadata={"help": "τ of the retriever softmax."})
    score_scaling: str | None = field(
        default=None, metadata={"help": "'temperature' (score / τ) or 'minmax' (per-question min-max, then / τ)."}
    )
    lm_temperature: float | None = field(default=None, metadata={"help": "β of the LM softmax over -NLL."})
    retrieval_loss_weight: float | None = field(default=None, metadata={"help": "λ: weight of the retrieval loss."})
    retrieval_loss: str | None = field(default=None, metadata={"help": "'llm_rank', 'lsr' or 'ppl_distill'."})
    in_batch_negatives: bool | None = field(
        default=None,
        metadata={"help": "The other questions' candidates as in-batch negatives (every retrieval loss)."},
    )
    llm_rank_min_nll_gap: float | None = field(
        default=None,
        metadata={"help": "llm_rank only: skip pairs whose answer NLLs differ by at most this (nats/token; 0: ties)."},
    )
    llm_rank_pair_weighting: str | None = field(
        default=None,
        metadata={
            "help": "llm_rank only: 'uniform' (the paper's mean over pairs) or 'nll_gap' (pairs weighted by it)."
        },
    )
    scoring: str | None = field(default=None, metadata={"help": "'maxsim' or 'dense'."})
    projection_dim: int | None = field(default=None, metadata={"help": "Retriever projection size (None: none)."})
    train_document_encoder: bool | None = field(
        default=None,
        metadata={"help": "False: train the query side only; documents keep the initial encoder (no index refresh)."},
    )
    max_query_length: int | None = field(default=None, metadata={"help": "Retriever tokens per question."})
    document_order: str | None = field(
        default=None,
        metadata={"help": "'best_first' or 'best_last' (the best document next to the question, as the authors)."},
    )
    max_document_length: int | None = field(default=None, metadata={"help": "Tokens per document."})
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "The former name of --max_length (generator tokens of prompt + answer)."}
    )

    def config_overrides(self) -> dict:
        """The `JMLRConfig` fields set on the command line. The sequence cap is `--max_length`, which the trainer
        applies (`check_arguments` moves `--max_prompt_length` there)."""
        skipped = ("retriever_name_or_path", "max_prompt_length")
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skipped}
        return {key: value for key, value in values.items() if value is not None}


class RecipeError(ValueError):
    """A setting of the recipe that cannot work, found before anything is loaded. Its message is the whole story:
    `cli_main` prints it as one line, without a traceback."""


#: What `jmlr train --help` adds below the recipe's own flags: the trainer's flags a run usually sets.
TRAINER_FLAGS = """Also every flag of JointRetrievalConfig (TRL's SFTConfig, transformers' TrainingArguments) and of TRL's
ModelConfig, e.g.:
  --config FILE                  a YAML file of any of these flags (recipes/demo.yaml); flags override it
  --output_dir DIR               where the checkpoints, the final model (DIR/final) and the index (DIR/index) go
  --model_name_or_path NAME      the generator (default: smollm2-135m-instruct)
  --max_steps N, --learning_rate LR, --retriever_learning_rate LR, --per_device_train_batch_size N
  --logging_steps N, --save_steps N, --eval_strategy steps --eval_steps N
  --use_peft true --lora_r N     LoRA on the generator
  --use_cpu true | --bf16 true   where and in which precision to train
  --report_to tensorboard|wandb|...   --push_to_hub true --hub_model_id ORG/NAME
A short run (what the README times): --max_steps 4 --train_limit 8 --eval_limit 8 --eval_answer_limit 4
--distractor_passages 0 --no_evaluate_before --no_refresh_index.
`jmlr train --help-all` lists all of them (it loads transformers and TRL: seconds)."""


def short_help(prog: str) -> str:
    """The help of `jmlr train` without loading transformers or TRL: the recipe's own flags (`DataArguments`,
    `RetrievalArguments`, through the `HfArgumentParser` the other subcommands use) and the common trainer flags."""
    import argparse

    from ..cli.parser import DefaultsHelpFormatter, hf_argument_parser_class

    class Formatter(DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """Flag defaults shown, and the list of trainer flags kept as written."""

    parser = hf_argument_parser_class()(
        (DataArguments, RetrievalArguments),
        prog=prog,
        description="Run the training recipe: index, pre-retrieve, evaluate, joint-train, evaluate, save.",
        epilog=TRAINER_FLAGS,
        formatter_class=Formatter,
    )
    parser.add_argument("--help-all", "--help_all", action="store_true", help="List every flag (slower: seconds)")
    return parser.format_help()


__all__ = ["TASK_NAMES", "DataArguments", "RecipeError", "RetrievalArguments", "short_help"]
