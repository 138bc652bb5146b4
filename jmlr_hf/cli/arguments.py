"""The arguments of every `jmlr` subcommand, as dataclasses parsed by transformers' `HfArgumentParser`.

One style for every subcommand, as `jmlr train` has with TRL's `TrlParser`: each field is a flag spelled with
underscores or dashes (`--num_candidates` or `--num-candidates`), a `bool` field that defaults to true also has a
`--no_` form, and the same dataclass can be filled from Python (`EvaluateArguments(model=..., task=...)`).

This module imports nothing heavy (no torch, transformers, datasets or faiss): `jmlr --help` reads the command list
from here, and only the subcommand that runs pays for its imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# The names of `jmlr_hf.data.TASKS`, spelled out because importing `jmlr_hf.data` loads `datasets` (seconds), which
# `--help` must not pay; tests/test_cli_arguments.py checks that the two stay equal.
TaskName = Literal["pubmedqa", "medmcqa", "medqa", "mmlu", "medqa-reason", "medquad"]

DATA_DIR_HELP = "The shared data folder (default: $JMLR_DATA_DIR, else ../shared/data next to the source checkout)"
SKIP_INVALID_HELP = (
    "Skip invalid rows of the input files, counted in the summary line printed per file; --no_skip_invalid stops at "
    "the first one. A file without a valid row is an error either way"
)
LIMIT_HELP = "Use only N questions: a random sample drawn with --sample_seed (see --no_sample)"
SAMPLE_HELP = (
    "With --limit, draw the N questions at random (reproducible with --sample_seed) instead of taking the first N "
    "rows, which in a file sorted by subject are all of one subject (--no_sample: the first N)"
)


def positional(help: str, **metadata: Any) -> Any:
    """A required field given as a positional argument (`jmlr answer "question"`), not as a flag.

    `HfArgumentParser` knows only flags; [`jmlr_hf.cli.parser.with_positionals`] reads this marker.
    """
    return field(metadata={"help": help, "positional": True, **metadata})


def option(default: Any = None, help: str = "", **kwargs: Any) -> Any:
    """A flag with a default and a help text (lists take `default_factory`)."""
    if "default_factory" in kwargs:
        return field(default_factory=kwargs.pop("default_factory"), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


def required(help: str) -> Any:
    """A required flag (no default)."""
    return field(metadata={"help": help})


@dataclass(kw_only=True)
class ConsoleArguments:
    """What every subcommand accepts about the console itself (also before the subcommand: `jmlr --debug ...`)."""

    debug: bool = option(False, "On an error, print the full traceback instead of one line (or set JMLR_DEBUG=1)")
    verbose: bool = option(False, "Show library log lines (faiss, transformers) that are hidden by default")


@dataclass(kw_only=True)
class QuestionArguments:
    """Where the questions come from: shared by `retrieve` and `evaluate`."""

    task: TaskName = option("pubmedqa", "The task: which loader, and which file of --data_dir by default")
    questions: str | None = option(None, "Questions file or Hub id (default: the task's file in --data_dir)")
    limit: int | None = option(None, LIMIT_HELP)
    sample: bool = option(True, SAMPLE_HELP)
    sample_seed: int = option(0, "Seed of the --limit sample: the same seed gives the same questions")
    data_dir: str | None = option(None, DATA_DIR_HELP)
    skip_invalid: bool = option(True, SKIP_INVALID_HELP)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {self.limit}")


@dataclass(kw_only=True)
class IndexArguments:
    """`jmlr index`: build a document index over a corpus."""

    output: str = required("The index folder to write")
    corpus: str = option("pubmedqa", "'pubmedqa', 'medquad', or a corpus file / Hub id")
    retriever: str = option("all-minilm-l6-v2", "An encoder or a trained JMLR model (path, Hub id or alias)")
    kind: Literal["flat", "ivf", "ivfpq", "hnsw"] = option(
        "flat",
        "The faiss index type: flat (exact), ivf (inverted lists), ivfpq (inverted lists of product-quantised "
        "vectors: --pq_m bytes per vector), hnsw (graph, CPU only)",
    )
    nlist: int | None = option(
        None, "ivf/ivfpq: inverted lists (default about 4*sqrt(documents); required with --streaming)"
    )
    nprobe: int | None = option(None, "ivf/ivfpq: lists searched per query, saved with the index (default 16)")
    pq_m: int | None = option(
        None,
        "ivfpq: sub-quantisers = bytes per vector at 8 bits; must divide the dimension (default: dim/4, 96 for 384)",
    )
    pq_bits: int | None = option(None, "ivfpq: bits per sub-quantiser code (default 8)")
    opq: bool = option(
        False, "ivfpq: learn an OPQ rotation in front of the quantiser (better recall, slower training)"
    )
    distractor_passages: int = option(0, "MedQuAD passages to add as distractors")
    data_dir: str | None = option(None, DATA_DIR_HELP)
    skip_invalid: bool = option(True, SKIP_INVALID_HELP)
    streaming: bool = option(
        False,
        "Stream --corpus (a corpus file or Hub id) into --output chunk by chunk instead of loading it: corpora larger "
        "than memory (MedRAG's PubMed); invalid rows stop the build, naming the row; ivf/ivfpq need --nlist",
    )

    def index_options(self) -> dict[str, Any]:
        """The kind's options given on the command line, as `DocumentIndex.build` keywords (the others keep the
        library's defaults). An accepted flag must do something: the options of another kind are refused here (not
        at parsing, where each flag is read alone), before anything loads."""
        ivf_only = [name for name in ("nlist", "nprobe") if getattr(self, name) is not None]
        pq_only = [name for name in ("pq_m", "pq_bits") if getattr(self, name) is not None] + (
            ["opq"] if self.opq else []
        )
        if self.kind not in ("ivf", "ivfpq") and ivf_only:
            raise ValueError(f"--{' and --'.join(ivf_only)} apply to --kind ivf or ivfpq, not --kind {self.kind}")
        if self.kind != "ivfpq" and pq_only:
            raise ValueError(f"--{' and --'.join(pq_only)} apply to --kind ivfpq, not --kind {self.kind}")
        options = {name: getattr(self, name) for name in ("nlist", "nprobe", "pq_m", "pq_bits")}
        options = {name: value for name, value in options.items() if value is not None}
        if self.opq:
            options["opq"] = True
        return {"kind": self.kind, **options}


@dataclass(kw_only=True)
class RetrieveArguments(QuestionArguments):
    """`jmlr retrieve`: pre-retrieval, the top-N candidates of each question."""

    index: str = required("The index folder (or Hub id) to retrieve from")
    output: str = required("A .jsonl file, or a folder for save_to_disk")
    gpu_shards: bool = option(
        False,
        "Shard the index over all GPUs for the search (needs GPU faiss and a GPU; flat, ivf or ivfpq). Without it the "
        "index goes to one GPU when GPU faiss sees one, else stays on CPU",
    )
    retriever: str = option("all-minilm-l6-v2", "The encoder (or trained JMLR model) the index was built with")
    split: Literal["train", "validation", "test"] | None = option(
        None, "Split of the task's questions (default: all questions; validation: medquad and medqa-reason only)"
    )
    num_candidates: int = option(20, "Candidates per question")


@dataclass(kw_only=True)
class AnswerArguments:
    """`jmlr answer`: answer one question with a trained model and its index."""

    question: str = positional("The question")
    model: str = required("A trained JMLR model (folder, Hub id or alias)")
    index: str | None = option(None, "Index folder or Hub id (default: the index recorded in the model's config)")
    options: list[str] | None = option(None, "Options of a multiple-choice question")
    max_new_tokens: int = option(64, "Tokens to generate")


@dataclass(kw_only=True)
class EvaluateArguments(QuestionArguments):
    """`jmlr evaluate`: answer accuracy (and retrieval quality) on a QA set."""

    model: str = required("A trained JMLR model, or a causal LM (path, Hub id or alias)")
    task: TaskName = required("The task: which loader, and which file of --data_dir by default")
    retriever: str | None = option(None, "An encoder to pair with a plain causal LM (not with a JMLR model)")
    index: str | None = option(
        None, "Index folder or Hub id to retrieve from (default: the index recorded in a JMLR model's config)"
    )
    closed_book: bool = option(False, "No documents in the prompt, even when the model records an index")
    split: Literal["train", "validation", "test", "all"] | None = option(
        None,
        "Default: test; all of an explicit --questions file for medqa and medmcqa; validation for the tasks that "
        "have one (medquad, medqa-reason)",
    )
    mode: Literal["likelihood", "generative", "cloze", "both"] = option(
        "both",
        "How answers are read: likelihood (the option letter or yes/no/maybe with the lowest NLL), generative (a "
        "greedy reply, parsed), cloze (each option's text as the continuation, lm-evaluation-harness style: summed, "
        "per-token and per-character NLL), both (likelihood and generative)",
    )
    max_new_tokens: int | None = option(
        None,
        "Tokens generated per question (generative). Default: 16 for choices, 64 for open answers (--task medquad, "
        "whose targets run to 40 words)",
    )
    num_candidates: int | None = option(None, "Candidates from the index (default: the model's config)")
    num_documents: int | None = option(None, "Documents in the prompt (default: the model's config)")
    batch_size: int = option(16, "Questions per forward (retriever, likelihood scoring)")
    dtype: Literal["float32", "bfloat16", "float16"] = option(
        "float32",
        "Weights' precision. bfloat16 is several times faster on GPUs and on CPUs with AMX "
        "(benchmarks/evaluation.py); its NLLs differ from float32's in the second decimal, near-ties can flip",
    )
    output: str | None = option(None, "Results JSON (the Markdown table goes next to it, .md)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.closed_book and self.index:
            raise ValueError("--closed_book and --index contradict each other: pass one of them")


@dataclass(kw_only=True)
class PushArguments:
    """What every `jmlr push` target takes: where the one commit goes."""

    repo_id: str = required("The Hub repository to push to")
    private: bool = option(False, "Create the repository as private")
    revision: str | None = option(None, "Branch to commit to (created if missing; default main)")
    commit_message: str | None = option(None, "The commit message")
    delete: list[str] = option(help="Patterns of existing files to delete in the commit", default_factory=list)


@dataclass(kw_only=True)
class PushModelArguments(PushArguments):
    """`jmlr push model`: a saved JMLR model folder (and, by default, the index it records)."""

    source: str = positional("The saved model folder (e.g. outputs/demo/final)")
    generator_weights: Literal["merged", "adapter"] = option("merged", "Publish merged weights or the LoRA adapter")
    base_model: str | None = option(None, "Hub id of the base generator (for --generator_weights adapter)")
    index: str | None = option(None, "Index folder to publish, or Hub id of a published index")
    index_repo_id: str | None = option(None, "Where a local index goes (default: <repo_id>-index)")
    no_index: bool = option(False, "Publish no index and record none")
    allow_stale_index: bool = option(
        False, "Publish a local index built by other retriever weights than the model's (refused by default)"
    )
    eval_results: list[str] = option(
        help="`jmlr evaluate --output` files of this model for the card (a file of another model is refused)",
        default_factory=list,
    )
    datasets: list[str] = option(help="Training data set ids for the card", default_factory=list)


@dataclass(kw_only=True)
class PushIndexArguments(PushArguments):
    """`jmlr push index`: a saved document index folder (as a data set repository)."""

    source: str = positional("The index folder (index.faiss, documents.arrow, index_config.json)")
    model_repo_id: str | None = option(None, "The model it goes with (named in the card)")


@dataclass(kw_only=True)
class PushDatasetArguments(PushArguments):
    """`jmlr push dataset`: build a MedQA-Reason-style data set and publish it."""

    source: Literal["medmcqa", "medqa-reason-csv"] = required("What to build the data set from")
    input: str | None = option(None, "The source file (default for medmcqa: the file in --data_dir)")
    data_dir: str | None = option(None, DATA_DIR_HELP)
    skip_invalid: bool = option(True, SKIP_INVALID_HELP)


@dataclass(kw_only=True)
class PullArguments:
    """`jmlr pull`: download a model, an index or a data set from the Hub into a folder."""

    what: Literal["model", "index", "dataset"] = positional("What the repository holds")
    repo_id: str = positional("The Hub repository")
    output: str = required("The folder to download into")
    revision: str | None = option(None, "Branch, tag or commit (default main)")


@dataclass(frozen=True)
class Command:
    """One subcommand: its arguments, its one-line help, and the function that runs it (`commands.<name>`),
    named rather than imported so that listing the commands imports none of them."""

    arguments: type | None
    help: str
    runner: str


COMMANDS: dict[str, Command] = {
    "index": Command(IndexArguments, "Build a document index over a corpus", "run_index"),
    "retrieve": Command(RetrieveArguments, "Pre-retrieval: add the top-N candidates of each question", "run_retrieve"),
    "train": Command(None, "Run the training recipe (the flags of recipes/train.py, TRL-style)", "run_train"),
    "answer": Command(AnswerArguments, "Answer a question with a trained model and its index", "run_answer"),
    "evaluate": Command(EvaluateArguments, "Answer accuracy (and retrieval quality) on a QA set", "run_evaluate"),
    "push": Command(None, "Publish a model, an index or a data set to the Hub (one commit)", ""),
    "pull": Command(PullArguments, "Download a model, an index or a data set from the Hub", "run_pull"),
}
PUSH_TARGETS: dict[str, Command] = {
    "model": Command(
        PushModelArguments,
        "A saved JMLR model folder (and, by default, the index it records)",
        "run_push_model",
    ),
    "index": Command(PushIndexArguments, "A saved document index folder (as a data set repository)", "run_push_index"),
    "dataset": Command(PushDatasetArguments, "Build a MedQA-Reason-style data set and publish it", "run_push_dataset"),
}
