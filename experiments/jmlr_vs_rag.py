"""The JMLR-vs-RAG-vs-SFT experiment: the same base models, data, step budget and prompt, three ways of training.

    python -m experiments.jmlr_vs_rag --config experiments/configs/experiment-pubmedqa.yaml [--variants ...]

(from the repository root). Results of the runs made so far: `experiments/RESULTS.md`.

* `sft`: the LLM fine-tuned without documents (K = 0, λ = 0);
* `rag`: the LLM fine-tuned with the top-K documents of the frozen, off-the-shelf retriever (λ = 0);
* `jmlr`: joint training (one run per retrieval loss asked for: `llm_rank`, `lsr`, `ppl_distill`).

Every arm starts from the same checkpoints and the same pre-retrieved candidates (built once with the initial
retriever), runs each seed, and is evaluated on the same held-out questions. Each run's metrics, training log and the
settings it depends on are written to `runs/<arm>-seed<seed>.json` as soon as it ends, so an interrupted experiment
resumes where it stopped; a finished run recorded with other settings is an error, never silently mixed in.

A *sweep* (`variants`) re-runs the experiment with a few settings changed, each variant in `variants/<name>/`, on the
same prepared candidates. A run whose settings the change does not touch (the SFT and RAG arms when only retriever
settings change) is reused from the base experiment rather than trained again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

from datasets import Dataset, load_from_disk
from tqdm.auto import tqdm
from transformers import AutoTokenizer, set_seed

from jmlr_hf.data import (
    MEDQUAD_FILE,
    TASKS_WITH_VALIDATION,
    default_data_dir,
    load_medquad_corpus,
    load_named_corpus,
    load_task,
)
from jmlr_hf.evaluation import (
    corpus_retrieval_metrics,
    evaluate_model,
    llm_preference_metrics,
    rank_candidates,
    single_document_nlls,
)
from jmlr_hf.models import JMLRForCausalLM, merge_generator_adapter, save_model, truncate_to_tokens
from jmlr_hf.retrieval import BM25Index, DocumentIndex, add_candidates
from jmlr_hf.trainer import LOG_PREFIX, JointRetrievalConfig, JointRetrievalTrainer, RetrievalRecallCallback
from jmlr_hf.utils.atomic import write_json, write_text
from jmlr_hf.utils.demo_models import resolve_model_path

from .tables import (
    mean_curve,
    paired_by_seed,
    paired_table,
    plot_experiment,
    reported_metrics,
    summarize,
    summary_table,
)

logger = logging.getLogger(__name__)

ARMS = ("base", "sft", "rag", "jmlr", "retriever", "supervised")
#: The arms that train the retriever from the LLM (one run per retrieval loss); `retriever` keeps the LLM frozen.
RETRIEVAL_ARMS = ("jmlr", "retriever")
#: The arms whose LLM stays frozen while the retriever trains (no LoRA): from the LLM's cached NLLs (`retriever`) or
#: from the gold passages (`supervised`).
FROZEN_LLM_ARMS = ("retriever", "supervised")
#: The arms that train the retriever at all: they use the retriever settings (`RETRIEVER_ONLY_FIELDS`).
RETRIEVER_TRAINING_ARMS = RETRIEVAL_ARMS + ("supervised",)
#: The supervised upper reference: the retriever learns the gold passage by cross-entropy over the candidates,
#: `ppl_distill` with a target that is one-hot on the gold (NLL 0 for gold, 1 for the others, β = 0.01: the target
#: puts 1 - 7e-43 on the gold), i.e. -log P_R(gold) + const, the contrastive (InfoNCE) loss of dense retrievers.
SUPERVISED_LOSS = "ppl_distill"
SUPERVISED_TEMPERATURE = 0.01
#: The supervised arm's retriever temperature τ, fixed: the usual InfoNCE temperature of MiniLM-style dense retrievers
#: (sentence-transformers' in-batch ranking loss scales cosines by 20). `retrieval_temperature` is the JMLR losses'
#: setting, chosen on validation for them; the upper reference does not follow it (MedQuAD's first supervised seed
#: ran at this value before the llm_rank scan).
SUPERVISED_RETRIEVAL_TEMPERATURE = 0.05
#: The cut-offs of the whole-corpus search (`corpus_evidence`).
CORPUS_K_VALUES = (1, 8)


@dataclass
class ExperimentArguments:
    """Settings shared by every arm (the step budget, data and prompt are the same for all)."""

    output_dir: str = field(default="outputs/experiment", metadata={"help": "Where runs, tables and plots go."})
    task: str = field(
        default="pubmedqa",
        metadata={"help": "pubmedqa, medmcqa (held out by id hash) or medquad (open-book QA, held out by topic)."},
    )
    data_dir: str | None = field(default=None, metadata={"help": "Default $JMLR_DATA_DIR or ../shared/data."})
    corpus: str = field(default="pubmedqa", metadata={"help": "'pubmedqa', 'medquad' or a corpus file."})
    first_stage: str = field(
        default="dense",
        metadata={
            "help": "Where the N candidates come from: 'dense' (the base retriever's faiss index), 'bm25' (a "
            "lexical index, `jmlr_hf[lexical]`) or 'hybrid' (both, fused by reciprocal rank)."
        },
    )
    distractor_passages: int = field(default=0, metadata={"help": "MedQuAD passages added as distractors."})
    corpus_passages: int | None = field(
        default=None,
        metadata={
            "help": "Keep only N passages of the corpus: for MedQuAD a deterministic hash sample over all NIH "
            "sources, otherwise the first N. Encoding all ~30k MedQuAD passages takes ~15 min on 2 CPU cores."
        },
    )
    generator: str = field(default="smollm2-135m-instruct", metadata={"help": "Base causal LM."})
    retriever: str = field(default="all-minilm-l6-v2", metadata={"help": "Base retriever encoder."})
    arms: list[str] = field(
        default_factory=lambda: ["sft", "rag", "jmlr"],
        metadata={
            "help": "Arms to run: sft, rag, jmlr, retriever (the retriever trained alone from the frozen base "
            "LLM's answer NLLs, RePlug-style: isolates what the retriever learns, costs no LM backward pass), "
            "supervised (the retriever trained on the gold passages, LLM frozen: an upper reference), and "
            "base (the base models with the frozen retriever's top K, untrained: every arm's starting point; "
            "deterministic, so run for the first seed only)."
        },
    )
    retrieval_losses: list[str] = field(
        default_factory=lambda: ["llm_rank"], metadata={"help": "Retrieval losses of the jmlr arm (one run each)."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds, at least 3 for a std."})
    train_limit: int | None = field(default=None, metadata={"help": "First N training questions."})
    validation_size: int = field(
        default=0,
        metadata={
            "help": "The last N training questions, held out from training as a validation split: where settings "
            "are chosen (the headroom scan) and training curves are drawn, so the test questions are touched only "
            "for the final numbers."
        },
    )
    train_subset: int | None = field(
        default=None,
        metadata={
            "help": "Train on the first N prepared training questions only (all when None). A run setting, not a "
            "preparation one: the prepared candidates and the cached NLLs stay those of train_limit, and a run on "
            "a subset measures only the NLLs of its subset (what a cheap choice of τ on validation needs)."
        },
    )
    eval_limit: int | None = field(default=None, metadata={"help": "First N evaluation questions."})
    eval_answer_limit: int | None = field(default=None, metadata={"help": "Answer metrics on the first N only."})
    max_steps: int = field(default=40, metadata={"help": "Optimizer steps per run (the same for every arm)."})
    batch_size: int = field(default=1, metadata={"help": "Questions per forward (per micro-batch)."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimizer step: the effective batch is batch_size x this."}
    )
    learning_rate: float = field(default=2e-4, metadata={"help": "LLM (LoRA) learning rate."})
    retriever_learning_rate: float = field(default=2e-5, metadata={"help": "Retriever learning rate (jmlr arm)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank on every attention and MLP projection."})
    num_candidates: int = field(default=8, metadata={"help": "N"})
    num_sampled: int = field(default=4, metadata={"help": "S"})
    num_context_documents: int = field(default=2, metadata={"help": "K (the sft arm uses 0)"})
    retrieval_temperature: float = field(default=0.05, metadata={"help": "τ"})
    lm_temperature: float = field(
        default=1.0,
        metadata={
            "help": "β of lsr / ppl_distill: Q_LM = softmax(-NLL / β). The NLL is a mean per target token, so the "
            "candidates of a question differ by ~0.1-0.6 nats, and β = 1 makes Q_LM nearly flat."
        },
    )
    in_batch_negatives: bool = field(
        default=False,
        metadata={
            "help": "The other questions' candidates of the batch as negatives of the LLM-supervised arms' loss "
            "(jmlr, retriever; `JMLRConfig.in_batch_negatives`): with llm_rank, each sampled document ranks above "
            "them. The supervised reference keeps none, as it keeps its own τ."
        },
    )
    llm_rank_min_nll_gap: float = field(
        default=0.0,
        metadata={
            "help": "δ of the LLM-supervised arms' llm_rank (`JMLRConfig.llm_rank_min_nll_gap`): only pairs whose "
            "answer NLLs differ by more than δ nats/token count. 0: every untied pair (the paper)."
        },
    )
    llm_rank_pair_weighting: str = field(
        default="uniform",
        metadata={
            "help": "How the LLM-supervised arms' llm_rank weights its pairs (`JMLRConfig.llm_rank_pair_weighting`): "
            "'uniform' (the paper) or 'nll_gap' (by the difference of the pair's NLLs)."
        },
    )
    train_document_encoder: bool = field(
        default=True,
        metadata={
            "help": "Train the document side of the retriever too (retrieval arms). false: only the query side "
            "trains and documents keep the base encoder's embeddings, so a search of the whole corpus with the base "
            "index stays consistent with the trained queries."
        },
    )
    max_document_length: int = field(default=128, metadata={"help": "Tokens per document."})
    max_length: int = field(default=640, metadata={"help": "Generator tokens of prompt + answer."})
    logging_steps: int = field(default=5, metadata={"help": "Training-log interval."})
    max_rationale_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Cut each explanation to its first N generator tokens (train and held-out alike). MedMCQA "
            "explanations run to 1,000 tokens; uncut, a few would not fit max_length and would dominate the loss "
            "and the step time. The target stays `<letter>: <option>. <explanation>`."
        },
    )
    eval_truncate_documents: bool = field(
        default=True,
        metadata={
            "help": "Cut the documents of the evaluation prompts to max_document_length tokens, as in training. "
            "The committed PubMedQA runs were measured with false (uncut)."
        },
    )
    generative_limit: int = field(
        default=0,
        metadata={"help": "Generative accuracy (greedy decoding + letter extraction) on the first N held-out rows."},
    )
    max_new_tokens: int = field(default=12, metadata={"help": "Generated tokens per question (generative)."})
    eval_retrieval_steps: int = field(
        default=0,
        metadata={"help": "Log held-out recall@1/evidence@1 every N steps during training (0: off)."},
    )
    eval_retrieval_limit: int = field(default=200, metadata={"help": "Held-out rows of that recall-over-steps."})
    eval_split: str = field(
        default="test",
        metadata={
            "help": "The questions of the end-of-run metrics: 'test' (the final numbers) or 'validation' (to choose "
            "settings, e.g. in a sweep, without touching the test questions)."
        },
    )
    eval_retrieval_split: str = field(
        default="eval",
        metadata={
            "help": "Where the curves over steps are measured: 'eval' (the test questions) or 'validation' (the "
            "validation split, with the base LLM's single-document NLLs as the reference of "
            "eval_llm_top1_agreement; keeps the test questions for the final numbers)."
        },
    )
    eval_preference_limit: int = field(
        default=0,
        metadata={
            "help": "At the end of each run, llm_top1_agreement / llm_pairwise_agreement of the trained retriever "
            "against the base LLM's single-document answer NLLs on the first N test questions (computed once and "
            "cached in prepared/; N forwards per question). 0: off."
        },
    )
    cached_nlls: bool = field(
        default=True,
        metadata={
            "help": "The retriever arm's LLM is frozen, so its answer NLL with each training candidate is measured "
            "once (kept in prepared/reference_nlls-train.json, shared by every seed and variant) instead of at "
            "every step; the retriever learns exactly the same (tests/trainer/test_freeze_generator.py)."
        },
    )
    summary_only: bool = field(
        default=False,
        metadata={
            "help": "Train nothing: the summary table, JSON and plots of the planned runs already recorded (each "
            "missing run is named), e.g. to tabulate arms recorded by separate calls."
        },
    )
    save_models: bool = field(
        default=False,
        metadata={
            "help": "Save each run's final model (LoRA merged: a plain JMLR checkpoint with both tokenizers) to "
            "<run dir>/models/<run name>, for `jmlr index` / `jmlr evaluate` as a user would run them; the untrained "
            "base arm to <run dir>/models/base (no seed: it is the same model for every seed)."
        },
    )
    save_steps: int = field(
        default=0,
        metadata={
            "help": "Checkpoint each run every N optimizer steps (the last kept, in <run dir>/checkpoints/<run name>) "
            "so that a run interrupted mid-way resumes from its last checkpoint, exactly, instead of starting over; "
            "the folder is removed once the run is recorded. 0: no checkpoints (an interrupted run restarts)."
        },
    )
    corpus_evidence: bool = field(
        default=False,
        metadata={
            "help": "At the end of each run, corpus_recall@1 / corpus_evidence@1: the trained retriever searches the "
            "whole corpus (re-encoded with its weights), not only re-ranks the fixed candidates."
        },
    )
    variant: str | None = field(
        default=None,
        metadata={"help": "Name of this sweep variant: runs go to <output_dir>/variants/<name>/ (set by `variants`)."},
    )
    variants: list[str] = field(
        default_factory=list,
        metadata={
            "help": "A sweep: after the base experiment, one variant per entry 'name key=value [key=value ...]', "
            "e.g. 'lr1e-4 retriever_learning_rate=1e-4' or 'steps120 max_steps=120 arms=rag,jmlr'."
        },
    )


#: Settings that decide the prepared questions and candidates; a variant must not change them.
PREPARATION_FIELDS = (
    "task",
    "corpus",
    "first_stage",
    "validation_size",
    "distractor_passages",
    "corpus_passages",
    "retriever",
    "train_limit",
    "eval_limit",
    "num_candidates",
    "max_document_length",
    "max_rationale_tokens",
)
#: Settings that change no run's outcome: where things go, which runs, and what is only logged.
NON_OUTCOME_FIELDS = (
    "output_dir",
    "data_dir",
    "arms",
    "retrieval_losses",
    "seeds",
    "logging_steps",
    "eval_retrieval_steps",
    "eval_retrieval_limit",
    "eval_retrieval_split",
    "cached_nlls",
    "save_models",
    "save_steps",
    "summary_only",
    "variant",
    "variants",
)
#: Retriever settings that the SFT and RAG arms never use (τ rescales the scores; it does not reorder the top K).
RETRIEVER_ONLY_FIELDS = (
    "retriever_learning_rate",
    "num_sampled",
    "retrieval_temperature",
    "lm_temperature",
    "train_document_encoder",
    "in_batch_negatives",
    "llm_rank_min_nll_gap",
    "llm_rank_pair_weighting",
)
#: The values of settings added after the first PubMedQA runs, as those runs used them.
LEGACY_DEFAULTS = {
    "lm_temperature": 1.0,
    "train_document_encoder": True,
    "eval_split": "test",
    "gradient_accumulation_steps": 1,
    "eval_preference_limit": 0,
    "corpus_evidence": False,
    "first_stage": "dense",
    "validation_size": 0,
    "max_rationale_tokens": None,
    "corpus_passages": None,
    "eval_truncate_documents": False,
    "generative_limit": 0,
    "max_new_tokens": 12,
    "train_subset": None,
    "in_batch_negatives": False,
    "llm_rank_min_nll_gap": 0.0,
    "llm_rank_pair_weighting": "uniform",
}


def run_settings(settings: dict[str, Any], arm: str, retrieval_loss: str) -> dict[str, Any]:
    """The settings one run's outcome depends on (what must match for a recorded run to be reused)."""
    skip = set(NON_OUTCOME_FIELDS) | (set(RETRIEVER_ONLY_FIELDS) if arm not in RETRIEVER_TRAINING_ARMS else set())
    relevant = {key: value for key, value in (LEGACY_DEFAULTS | settings).items() if key not in skip}
    relevant.update(arm=arm, retrieval_loss=retrieval_loss)
    if arm == "supervised":
        relevant.update(
            retrieval_temperature=SUPERVISED_RETRIEVAL_TEMPERATURE,
            in_batch_negatives=False,
            num_sampled=relevant["num_candidates"],
            llm_rank_min_nll_gap=0.0,
            llm_rank_pair_weighting="uniform",
        )
    return relevant


def run_dir(args: ExperimentArguments) -> str:
    """Where this experiment's (or variant's) runs, tables and plots go; prepared data stay in `output_dir`."""
    return os.path.join(args.output_dir, "variants", args.variant) if args.variant else args.output_dir


def run_name(arm: str, retrieval_loss: str, seed: int) -> str:
    return f"{arm}-{retrieval_loss}-seed{seed}" if arm in RETRIEVAL_ARMS else f"{arm}-seed{seed}"


def planned_runs(args: ExperimentArguments) -> list[tuple[str, str, int]]:
    """`(arm, retrieval_loss, seed)` for every run, seed by seed; the loss is only meaningful for the jmlr arm."""
    unknown = set(args.arms) - set(ARMS)
    if unknown:
        raise ValueError(f"unknown arms {sorted(unknown)}; expected some of {ARMS}")
    shaped = args.llm_rank_min_nll_gap != 0.0 or args.llm_rank_pair_weighting != "uniform"
    other_losses = sorted(set(args.retrieval_losses) - {"llm_rank"})
    if shaped and other_losses and set(args.arms) & set(RETRIEVAL_ARMS):
        # Checked before the first run, not when the first lsr run's config is built hours into the experiment.
        raise ValueError(
            f"llm_rank_min_nll_gap / llm_rank_pair_weighting apply to llm_rank only, and retrieval_losses also has "
            f"{other_losses}: run those losses separately (their knob is lm_temperature)"
        )
    if len(args.seeds) < 2:
        logger.warning(
            "With %d seed(s) there is no standard deviation; the issue asks for at least 3", len(args.seeds)
        )
    # Seed by seed, so that an experiment stopped part-way has every arm for its first seeds.
    return [
        (arm, loss, seed)
        for seed in args.seeds
        for arm in args.arms
        for loss in (args.retrieval_losses if arm in RETRIEVAL_ARMS else ["none"])
        if arm != "base" or seed == args.seeds[0]
    ]


def build_arm_model(args: ExperimentArguments, arm: str, retrieval_loss: str) -> JMLRForCausalLM:
    """The base models of `arm` (SFT: K = 0; SFT and RAG: no retrieval loss) with the experiment's N, S, K and τ."""
    overrides = {
        "num_candidates": args.num_candidates,
        "num_sampled": args.num_sampled,
        "num_context_documents": 0 if arm == "sft" else args.num_context_documents,
        "retrieval_temperature": args.retrieval_temperature,
        "lm_temperature": args.lm_temperature,
        "train_document_encoder": args.train_document_encoder or arm not in RETRIEVER_TRAINING_ARMS,
        "retrieval_loss_weight": 1.0 if arm in RETRIEVER_TRAINING_ARMS else 0.0,
        "max_document_length": args.max_document_length,
        "max_length": args.max_length,
    }
    if arm in RETRIEVAL_ARMS:
        overrides.update(
            retrieval_loss=retrieval_loss,
            in_batch_negatives=args.in_batch_negatives,
            llm_rank_min_nll_gap=args.llm_rank_min_nll_gap,
            llm_rank_pair_weighting=args.llm_rank_pair_weighting,
        )
    if arm == "supervised":
        overrides.update(
            retrieval_loss=SUPERVISED_LOSS,
            lm_temperature=SUPERVISED_TEMPERATURE,
            retrieval_temperature=SUPERVISED_RETRIEVAL_TEMPERATURE,
            # All N candidates (S = N): the target is the gold passage, known without an NLL pass, so sampling fewer
            # would only hide it from some steps. `num_sampled` is the LLM-supervised arms' cost knob (each sampled
            # document is one more sequence in their NLL pass), not the reference's.
            num_sampled=args.num_candidates,
        )
    return JMLRForCausalLM.from_components(
        resolve_model_path(args.generator), resolve_model_path(args.retriever), **overrides
    )


def prepare_data(args: ExperimentArguments) -> tuple[Dataset, Dataset]:
    """Index the corpus and pre-retrieve N candidates with the initial retriever, once for every arm and seed.

    The prepared rows are kept in `<output_dir>/prepared/` with the settings that made them; reusing them with other
    preparation settings is an error (a different split or candidate list would make the arms incomparable).
    """
    prepared_dir = os.path.join(args.output_dir, "prepared")
    train_dir, eval_dir = (os.path.join(prepared_dir, split) for split in ("train", "eval"))
    fingerprint_path = os.path.join(prepared_dir, "settings.json")
    fingerprint = {key: (LEGACY_DEFAULTS | asdict(args))[key] for key in PREPARATION_FIELDS}
    if os.path.exists(eval_dir):
        if os.path.exists(fingerprint_path):
            with open(fingerprint_path, encoding="utf-8") as f:
                recorded = LEGACY_DEFAULTS | json.load(f)
            changed = {
                key: (recorded.get(key), value) for key, value in fingerprint.items() if recorded.get(key) != value
            }
            if changed:
                raise ValueError(
                    f"{prepared_dir} was prepared with other settings (recorded, now): {changed}; use another output_dir"
                )
        else:  # prepared before the fingerprint existed: record what it is used with from now on
            write_json(fingerprint_path, fingerprint)
        return load_from_disk(train_dir), load_from_disk(eval_dir)
    model = build_arm_model(args, "rag", "none")
    retriever_tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.retriever))
    generator_tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.generator))
    indexes = first_stage_indexes(args, experiment_corpus(args), model, retriever_tokenizer)
    train_questions, validation = split_validation(args)
    for split, questions, limit in (
        ("train", train_questions, args.train_limit),
        ("validation", validation, None),
        ("eval", load_task(args.task, "test", data_dir=args.data_dir), args.eval_limit),
    ):
        if questions is None:
            continue
        if limit is not None:
            questions = questions.select(range(min(limit, len(questions))))
        if args.max_rationale_tokens is not None:
            rationales = [
                truncate_to_tokens(generator_tokenizer, text, args.max_rationale_tokens) if text else text
                for text in questions["rationale"]
            ]
            questions = questions.remove_columns("rationale").add_column("rationale", rationales)
        questions = add_candidates(questions, indexes, model.retriever, retriever_tokenizer, args.num_candidates)
        questions.save_to_disk(os.path.join(prepared_dir, split))
    write_json(fingerprint_path, fingerprint)
    return load_from_disk(train_dir), load_from_disk(eval_dir)


FIRST_STAGES = ("dense", "bm25", "hybrid")


def first_stage_indexes(
    args: ExperimentArguments,
    corpus: Dataset,
    model: JMLRForCausalLM,
    retriever_tokenizer,
    first_stage: str | None = None,
) -> list[DocumentIndex | BM25Index]:
    """The index(es) of `first_stage` (default `args.first_stage`) over `corpus`: the base retriever's flat faiss
    index, BM25, or both (fused by `add_candidates`)."""
    first_stage = first_stage or args.first_stage
    if first_stage not in FIRST_STAGES:
        raise ValueError(f"first_stage must be one of {FIRST_STAGES}, got {first_stage!r}")
    indexes: list[DocumentIndex | BM25Index] = []
    if first_stage in ("dense", "hybrid"):
        indexes.append(base_dense_index(args, corpus, model, retriever_tokenizer))
    if first_stage in ("bm25", "hybrid"):
        indexes.append(BM25Index(corpus))
    return indexes


def base_dense_index(
    args: ExperimentArguments, corpus: Dataset, model: JMLRForCausalLM, retriever_tokenizer
) -> DocumentIndex:
    """The base retriever's flat index of `corpus`, kept in `<output_dir>/prepared/index-dense` and reused while its
    retriever fingerprint and passage ids match (encoding MedQuAD's 30k passages takes ~15 min on 2 cores; the
    preparation and the headroom scan both need it)."""
    directory = os.path.join(args.output_dir, "prepared", "index-dense")
    fingerprint = model.retriever.weights_fingerprint()
    if os.path.isdir(directory):
        index = DocumentIndex.load(directory, expected_fingerprint=fingerprint, on_stale="warn")
        if not index.is_stale(fingerprint) and index.documents["id"] == corpus["id"]:
            return index
        logger.warning("%s was built from another retriever or corpus: encoding the corpus again", directory)
    index = DocumentIndex.from_retriever(
        corpus, model.retriever, retriever_tokenizer, max_length=args.max_document_length
    )
    index.save(directory)
    return index


def split_validation(args: ExperimentArguments) -> tuple[Dataset, Dataset | None]:
    """The task's training questions without the last `validation_size` of them, and those (None when 0).

    A task with a validation split of its own (`TASKS_WITH_VALIDATION`: MedQuAD, held out by topic) keeps all its
    training questions, and its validation questions are the first `validation_size` of that split."""
    questions = load_task(args.task, "train", data_dir=args.data_dir)
    if args.validation_size <= 0:
        return questions, None
    if args.task in TASKS_WITH_VALIDATION:
        validation = load_task(args.task, "validation", data_dir=args.data_dir)
        return questions, validation.select(range(min(args.validation_size, len(validation))))
    if args.validation_size >= len(questions):
        raise ValueError(
            f"validation_size={args.validation_size} leaves no training question (the task has {len(questions)})"
        )
    cut = len(questions) - args.validation_size
    return questions.select(range(cut)), questions.select(range(cut, len(questions)))


def prepared_validation(args: ExperimentArguments) -> Dataset:
    """The prepared validation split (its candidates from the experiment's first stage); prepares the data first."""
    if args.validation_size <= 0:
        raise ValueError("the experiment has no validation split: set validation_size")
    prepare_data(args)
    path = os.path.join(args.output_dir, "prepared", "validation")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: {args.output_dir}/prepared was made without a validation split")
    return load_from_disk(path)


def experiment_corpus(args: ExperimentArguments) -> Dataset:
    """The retrieval corpus of `args`, cut to `corpus_passages` (see its help)."""
    if args.corpus == "medquad" and args.corpus_passages is not None:
        data_dir = args.data_dir or str(default_data_dir())
        corpus = load_medquad_corpus(os.path.join(data_dir, MEDQUAD_FILE), limit=args.corpus_passages)
        if args.distractor_passages:
            raise ValueError("MedQuAD distractors for the MedQuAD corpus would repeat its passages")
        return corpus
    corpus = load_named_corpus(args.corpus, data_dir=args.data_dir, distractor_passages=args.distractor_passages)
    if args.corpus_passages is not None:
        corpus = corpus.select(range(min(args.corpus_passages, len(corpus))))
    return corpus


def train_arm(
    args: ExperimentArguments,
    arm: str,
    name: str,
    seed: int,
    model: JMLRForCausalLM,
    tokenizer,
    retriever_tokenizer,
    train: Dataset,
    evaluation: Dataset,
    settings: dict[str, Any],
) -> tuple[list[dict], int]:
    """Train `model` as `arm` does (LoRA on the generator unless the arm freezes it), merge the adapter, save it if
    asked; returns the trainer's log history and the step it resumed from (0: a fresh start; see `save_steps` and
    [`resume_checkpoint`])."""
    from peft import LoraConfig

    if args.train_subset is not None:
        train = train.select(range(min(args.train_subset, len(train))))
    checkpoint_dir = os.path.join(run_dir(args), "checkpoints", name)
    resume = resume_checkpoint(checkpoint_dir, settings) if args.save_steps > 0 else None
    training_args = JointRetrievalConfig(
        output_dir=checkpoint_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
        retriever_learning_rate=args.retriever_learning_rate if arm in RETRIEVER_TRAINING_ARMS else 0.0,
        freeze_generator=arm in FROZEN_LLM_ARMS,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        logging_steps=args.logging_steps,
        save_strategy="steps" if args.save_steps > 0 else "no",
        save_steps=max(args.save_steps, 1),
        save_total_limit=1,
        report_to=[],
        bf16=False,
        gradient_checkpointing=False,
        seed=seed,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    if arm == "retriever" and args.cached_nlls:
        train = train.add_column("candidate_nlls", reference_nlls(args, "train", train))
    if arm == "supervised":
        train = gold_supervision(train, experiment_corpus(args))
    callbacks = []
    if args.eval_retrieval_steps > 0:
        callbacks += held_out_callback(args, evaluation, retriever_tokenizer)
    trainer = JointRetrievalTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        processing_class=tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        peft_config=None if arm in FROZEN_LLM_ARMS else lora,
        callbacks=callbacks,
    )
    if args.save_steps > 0:
        write_json(os.path.join(checkpoint_dir, CHECKPOINT_SETTINGS), settings)
    if resume is not None:
        logger.info("Resuming %s from %s", name, resume)
    trainer.train(resume_from_checkpoint=resume)
    merge_generator_adapter(model)
    if args.save_models:
        trainer.save_model(os.path.join(run_dir(args), "models", name))
    resumed_from = int(os.path.basename(resume).split("-")[1]) if resume else 0
    return trainer.state.log_history, resumed_from


def gold_supervision(train: Dataset, corpus: Dataset) -> Dataset:
    """The supervised arm's training rows: `candidate_nlls` 0 for the gold passages and 1 for the others (see
    `SUPERVISED_LOSS`), with a gold passage put in place of the last candidate where the first stage missed every
    one (as dense retrievers train: the positive and the first stage's hard negatives). Rows without gold passages
    are an error: this arm needs them (MedQuAD and PubMedQA have them)."""
    texts = dict(zip(corpus["id"], corpus["text"]))
    rows = []
    for row in train:
        gold = [doc_id for doc_id in row["gold_doc_ids"] if doc_id in texts]
        if not gold:
            raise ValueError(
                f"training question {row['id']!r} has no gold passage in the corpus: the supervised arm needs one"
            )
        ids, candidates = list(row["candidate_ids"]), list(row["candidates"])
        if not set(ids) & set(gold):
            ids[-1], candidates[-1] = gold[0], texts[gold[0]]
        labels = [0.0 if doc_id in gold else 1.0 for doc_id in ids]
        rows.append({"candidate_ids": ids, "candidates": candidates, "candidate_nlls": labels})
    columns = {name: [row[name] for row in rows] for name in ("candidate_ids", "candidates", "candidate_nlls")}
    train = train.remove_columns([name for name in ("candidate_ids", "candidates") if name in train.column_names])
    for name, values in columns.items():
        train = train.add_column(name, values)
    return train


#: The settings of the run whose checkpoints a `checkpoints/<run name>` folder holds.
CHECKPOINT_SETTINGS = "run_settings.json"


def resume_checkpoint(checkpoint_dir: str, settings: dict[str, Any]) -> str | None:
    """The last complete checkpoint of an interrupted run with these `settings` in `checkpoint_dir`, or `None` (no
    checkpoint yet: the run starts from step 0). Checkpoints written with other settings are an error, as a
    finished run's record would be: resuming them would mix two runs into one."""
    from jmlr_hf.trainer.joint_retrieval_trainer import last_complete_checkpoint

    if not os.path.isdir(checkpoint_dir) or not any(
        entry.startswith("checkpoint-") for entry in os.listdir(checkpoint_dir)
    ):
        return None
    recorded = _read_json(os.path.join(checkpoint_dir, CHECKPOINT_SETTINGS))
    if recorded is not None:  # a setting added after the checkpoint was written: it ran with the legacy value
        recorded = {key: value for key, value in LEGACY_DEFAULTS.items() if key in settings} | recorded
    if recorded != settings:
        raise ValueError(
            f"{checkpoint_dir} holds checkpoints of a run with other settings (or none recorded); delete the folder "
            "to start this run over"
        )
    try:
        return last_complete_checkpoint(checkpoint_dir)
    except ValueError:
        logger.warning("%s has no complete checkpoint (a kill while saving): the run starts over", checkpoint_dir)
        return None


def run_one(
    args: ExperimentArguments, arm: str, retrieval_loss: str, seed: int, train: Dataset, evaluation: Dataset
) -> dict:
    """Train one arm with one seed, evaluate it, and return (and write) its record."""
    set_seed(seed)
    model = build_arm_model(args, arm, retrieval_loss)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.generator))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    retriever_tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.retriever))
    name = run_name(arm, retrieval_loss, seed)
    settings = run_settings(asdict(args), arm, retrieval_loss)
    log_history: list[dict] = []
    train_seconds = 0.0
    resumed_from = 0
    if arm != "base":  # the base arm is the starting point of every other: evaluated untrained
        start = time.perf_counter()
        log_history, resumed_from = train_arm(
            args, arm, name, seed, model, tokenizer, retriever_tokenizer, train, evaluation, settings
        )
        train_seconds = time.perf_counter() - start
    elif args.save_models:
        # With the experiment's config (N, K, document and prompt lengths), so that `jmlr evaluate` measures the
        # base as the trained arms are measured; `--model <LM> --retriever <encoder>` would take JMLRConfig's defaults.
        save_model(model, tokenizer, retriever_tokenizer, os.path.join(run_dir(args), "models", "base"))
    start = time.perf_counter()
    metrics = evaluate_model(
        model,
        tokenizer,
        retriever_tokenizer,
        evaluation,
        answer_limit=args.eval_answer_limit,
        generative_limit=args.generative_limit,
        max_new_tokens=args.max_new_tokens,
        truncate_documents=args.eval_truncate_documents,
        show_progress=False,
    )
    if args.eval_preference_limit > 0:
        rows = evaluation.select(range(min(args.eval_preference_limit, len(evaluation))))
        rankings = rank_candidates(model, retriever_tokenizer, rows, show_progress=False)
        references = reference_nlls(args, "validation" if args.eval_split == "validation" else "eval", rows)
        base = rank_candidates(build_arm_model(args, "rag", "none"), retriever_tokenizer, rows, show_progress=False)
        metrics.update(llm_preference_metrics(rankings, references, base_rankings=base))
    if args.corpus_evidence:
        corpus = experiment_corpus(args)
        # A document tower that did not train encodes the corpus as the base retriever did: search the base index
        # (prepared/index-dense) instead of encoding the corpus again (~15-45 min for MedQuAD's 30k passages here).
        base_documents = arm not in RETRIEVER_TRAINING_ARMS or not args.train_document_encoder
        base_index = None
        if base_documents:
            base_index = base_dense_index(args, corpus, build_arm_model(args, "rag", "none"), retriever_tokenizer)
        metrics.update(
            corpus_retrieval_metrics(
                model.retriever,
                retriever_tokenizer,
                corpus,
                evaluation,
                max_document_length=args.max_document_length,
                show_progress=False,
                k_values=CORPUS_K_VALUES,
                index=base_index,
            )
        )
    record = {
        "arm": arm,
        "retrieval_loss": retrieval_loss,
        "seed": seed,
        "settings": settings,
        "metrics": metrics,
        "train_seconds": round(train_seconds, 1),  # this process's share when resumed
        "resumed_from_step": resumed_from,
        "eval_seconds": round(time.perf_counter() - start, 1),
        "log_history": log_history,
    }
    write_json(os.path.join(run_dir(args), "runs", f"{name}.json"), record)
    # Recorded: the checkpoints are no longer needed to resume (a kill before this line resumes from the last one).
    shutil.rmtree(os.path.join(run_dir(args), "checkpoints", name), ignore_errors=True)
    return record


def held_out_callback(
    args: ExperimentArguments, evaluation: Dataset, retriever_tokenizer
) -> list[RetrievalRecallCallback]:
    """The callback of the curves over steps, on `eval_retrieval_split` (validation: with the base LLM's reference
    NLLs); none when the split can measure nothing (no gold passages and no reference)."""
    if args.eval_retrieval_split == "validation":
        rows = prepared_validation(args)
        rows = rows.select(range(min(args.eval_retrieval_limit, len(rows))))
        return [
            RetrievalRecallCallback(
                rows,
                retriever_tokenizer,
                args.eval_retrieval_steps,
                reference_nlls=reference_nlls(args, "validation", rows),
            )
        ]
    if args.eval_retrieval_split != "eval":
        raise ValueError(f"eval_retrieval_split must be 'eval' or 'validation', got {args.eval_retrieval_split!r}")
    if not any(evaluation["gold_doc_ids"]):
        return []
    rows = evaluation.select(range(min(args.eval_retrieval_limit, len(evaluation))))
    return [RetrievalRecallCallback(rows, retriever_tokenizer, args.eval_retrieval_steps)]


def reference_nlls(args: ExperimentArguments, split: str, rows: Dataset) -> list[list[float]]:
    """The base LLM's answer NLL with each candidate of each of `rows` alone in the prompt: the reference of
    `llm_top1_agreement`. Measured once per prepared split and kept in `prepared/reference_nlls-<split>.json`
    (keyed by row id; rows measured before are not measured again)."""

    def base_llm() -> tuple[JMLRForCausalLM, Any]:
        model = build_arm_model(args, "rag", "none")
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.generator))
        return model, tokenizer

    path = os.path.join(args.output_dir, "prepared", f"reference_nlls-{split}.json")
    return cached_document_nlls(path, rows, base_llm, args.eval_truncate_documents, f"Reference NLLs ({split})")


#: `cached_document_nlls` rewrites its file (atomically) after every this many newly measured questions.
NLL_CACHE_SAVE_EVERY = 25


def cached_document_nlls(
    path: str,
    rows: Dataset,
    load: typing.Callable[[], tuple[JMLRForCausalLM, Any]],
    truncate_documents: bool,
    desc: str,
    fingerprint: str | None = None,
) -> list[list[float]]:
    """`single_document_nlls` of each of `rows`, kept in the JSON file `path` keyed by row id: rows measured before
    are not measured again, and `load()` (which returns the model and its generator tokenizer) is called only when
    a row is missing. With a `fingerprint` (the hash of what the NLLs belong to, e.g. a run record), the file keeps
    it beside the NLLs as `{"record_sha256": …, "nlls": {…}}` and NLLs written under another fingerprint are
    measured again: a model trained again under the same name must not inherit its predecessor's figures. The file
    is rewritten every `NLL_CACHE_SAVE_EVERY` questions, so an interrupted call loses at most that many."""
    cached: dict[str, list[float]] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
        if fingerprint is None:
            cached = kept
        elif kept.get("record_sha256") == fingerprint:
            cached = kept["nlls"]
    missing = [i for i, row_id in enumerate(rows["id"]) if row_id not in cached]
    if missing:
        model, tokenizer = load()
        model.eval()
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        for done, i in enumerate(tqdm(missing, desc=desc, unit="question"), start=1):
            row = rows[i]
            cached[row["id"]] = single_document_nlls(model, tokenizer, row, truncate_documents)
            if done % NLL_CACHE_SAVE_EVERY == 0 or done == len(missing):
                # Kept as it grows: the training split's NLLs take hours on a CPU, and a run stopped half-way (a
                # session's end) resumes from the rows already measured instead of from none.
                write_json(path, cached if fingerprint is None else {"record_sha256": fingerprint, "nlls": cached})
    return [cached[row_id] for row_id in rows["id"]]


def _load_record(path: str, expected: dict[str, Any], legacy_settings: dict[str, Any] | None) -> dict | None:
    """The record at `path` if it was run with the `expected` settings, else `None`.

    Records written before runs carried their settings take them from their experiment's `settings.json`
    (`legacy_settings`; without one they cannot be checked and are not reused).
    """
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    settings = record.get("settings")
    if settings is None and legacy_settings is not None:
        settings = run_settings(legacy_settings, record["arm"], record["retrieval_loss"])
    elif settings is not None:
        # A setting added after the record was written: the record ran with its legacy value.
        settings = {key: value for key, value in LEGACY_DEFAULTS.items() if key in expected} | settings
    return record if settings == expected else None


def _read_settings(directory: str) -> dict[str, Any] | None:
    return _read_json(os.path.join(directory, "settings.json"))


def _read_json(path: str) -> Any:
    """The JSON at `path`, or `None` when there is no such file."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_experiment(args: ExperimentArguments) -> dict:
    """Every planned run (reusing those already recorded with the same settings), then the summary table, JSON and
    plots; then each of `args.variants` (see [`run_sweep`])."""
    if args.variants and not args.variant:
        return run_sweep(args)
    directory = run_dir(args)
    os.makedirs(directory, exist_ok=True)
    # The settings.json of an earlier call describes the records it left without settings of their own.
    legacy = {directory: _read_settings(directory), args.output_dir: _read_settings(args.output_dir)}
    write_json(os.path.join(directory, "settings.json"), asdict(args))
    train, evaluation = prepare_data(args)
    if args.eval_split == "validation":
        evaluation = prepared_validation(args)
    elif args.eval_split != "test":
        raise ValueError(f"eval_split must be 'test' or 'validation', got {args.eval_split!r}")
    records, missing = [], []
    for arm, loss, seed in planned_runs(args):
        name = run_name(arm, loss, seed)
        expected = run_settings(asdict(args), arm, loss)
        own = os.path.join(directory, "runs", f"{name}.json")
        base = os.path.join(args.output_dir, "runs", f"{name}.json")
        record = None
        if os.path.exists(own):
            record = _load_record(own, expected, legacy[directory])
            if record is None:
                raise ValueError(
                    f"{own} was recorded with other settings; use another output_dir or variant, or delete it"
                )
        elif args.variant and os.path.exists(base):
            # A baseline run that the variant's changes do not touch: reuse the base experiment's.
            record = _load_record(base, expected, legacy[args.output_dir])
            if record is not None:
                logger.info("Reusing %s from the base experiment (its settings are unchanged)", name)
        if record is None and args.summary_only:
            missing.append(name)
            continue
        if record is None:
            logger.info("Running %s", name)
            record = run_one(args, arm, loss, seed, train, evaluation)
        records.append(record)
    if missing:
        print(f"Not recorded (summary_only: not run): {', '.join(missing)}")
    if not records:
        raise ValueError(f"summary_only: none of the planned runs is recorded in {directory}")
    metrics = reported_metrics(records)
    summary = summarize(records, metrics)
    table = summary_table(summary, metrics)
    paired = paired_by_seed(records, metrics)
    if paired:
        table += "\n\n" + paired_table(paired, metrics)
    write_json(os.path.join(directory, "summary.json"), summary)
    write_json(os.path.join(directory, "paired.json"), paired)
    write_text(os.path.join(directory, "summary.md"), table + "\n")
    plot_experiment(records, summary, directory)
    print(table)
    return summary


FIXED_IN_VARIANTS = (*PREPARATION_FIELDS, "output_dir", "data_dir", "variant", "variants")


def parse_variant(spec: str, base: ExperimentArguments) -> ExperimentArguments:
    """`'name key=value ...'` → `base` with those settings changed and `variant=name`.

    Values are read as the field's type (`int`, `float`, `bool`, `none`, comma-separated lists). Preparation
    settings cannot change within a sweep: every variant uses the base experiment's candidates.
    """
    name, *assignments = spec.split()
    if not name or "=" in name or "/" in name:
        raise ValueError(f"a variant starts with its name, then key=value pairs: {spec!r}")
    # From the annotations, not from `dataclasses.fields(...).type`: HfArgumentParser rewrites those in place (an
    # `int | None` field becomes `int` once the command line has been parsed).
    hints = typing.get_type_hints(ExperimentArguments)
    types = {f.name: _type_name(hints[f.name]) for f in dataclasses.fields(ExperimentArguments)}
    changes: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or key not in types:
            raise ValueError(f"variant {name!r}: {assignment!r} is not key=value of a setting")
        if key in FIXED_IN_VARIANTS:
            raise ValueError(f"variant {name!r} cannot change {key!r}: every variant uses the same prepared data")
        changes[key] = _parse_value(text, types[key])
    return dataclasses.replace(base, variant=name, variants=[], **changes)


def _type_name(annotation: Any) -> str:
    """`"float"`, `"int | None"`, `"list[str]"`: a field's type as text, whether annotations are evaluated or not."""
    return annotation.__name__ if type(annotation) is type else str(annotation)


def _parse_value(text: str, type_name: str) -> Any:
    if text.lower() == "none" and "None" in type_name:
        return None
    if type_name.startswith("list["):
        item_type = type_name[len("list[") : -1]
        return [_parse_value(item, item_type) for item in text.split(",") if item]
    if type_name.startswith("bool"):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() == "true"
    if type_name.startswith("int"):
        return int(text)
    if type_name.startswith("float"):
        return float(text)
    return text


def run_sweep(args: ExperimentArguments) -> dict:
    """The base experiment, then each variant; `sweep.md` / `sweep.json` (one row per variant and arm) and
    `sweep_retrieval.png` (held-out recall@1 / evidence@1 over steps of each variant's JMLR runs).

    Returns `{variant name ("base" first): summary}`.
    """
    variants = [parse_variant(spec, args) for spec in args.variants]
    names = [v.variant for v in variants]
    if len(set(names)) != len(names) or "base" in names:
        raise ValueError(f"variant names must be unique and not 'base': {names}")
    base = dataclasses.replace(args, variants=[])
    summaries = {"base": run_experiment(base)}
    settings = {"base": base}
    for variant in variants:
        summaries[variant.variant] = run_experiment(variant)
        settings[variant.variant] = variant
    rows: dict[str, dict[str, dict]] = {}
    for name, summary in summaries.items():
        for label, row in summary.items():
            rows[f"{name}: {label}"] = row
    metrics = tuple(dict.fromkeys(m for row in rows.values() for m in row))
    table = summary_table(rows, metrics, first_column="variant: arm")
    write_json(os.path.join(args.output_dir, "sweep.json"), rows)
    with open(os.path.join(args.output_dir, "sweep.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    plot_sweep(settings, os.path.join(args.output_dir, "sweep_retrieval.png"))
    print(table)
    return summaries


def plot_sweep(settings: dict[str, ExperimentArguments], path: str) -> str:
    """Held-out recall@1 and evidence@1 over steps, one line per variant and JMLR loss (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (LOG_PREFIX + "recall@1", LOG_PREFIX + "evidence@1")
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    line = 0
    for name, args in settings.items():
        records_by_loss: dict[str, list[dict]] = {}
        for arm, loss, seed in planned_runs(args):
            path_run = os.path.join(run_dir(args), "runs", f"{run_name(arm, loss, seed)}.json")
            if arm in RETRIEVAL_ARMS and os.path.exists(path_run):
                with open(path_run, encoding="utf-8") as f:
                    records_by_loss.setdefault(loss, []).append(json.load(f))
        for loss, records in records_by_loss.items():
            for ax, key in zip(axes[0], keys, strict=True):
                steps, mean = mean_curve(records, key)
                if steps:
                    ax.plot(steps, mean, marker="o", markersize=3, color=f"C{line}", label=f"{name} ({loss})")
            line += 1
    for ax, key in zip(axes[0], keys, strict=True):
        ax.set_title(f"JMLR: held-out {key[len(LOG_PREFIX) :]} (mean over seeds)", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    """Parse (a YAML `--config`, flags override it) → run every arm and seed (or the `--variants` sweep) → tables,
    JSON and plots in `output_dir`."""
    from trl import TrlParser

    (args,) = TrlParser((ExperimentArguments,)).parse_args_and_config(args=argv)
    return run_experiment(args)


if __name__ == "__main__":
    main()
