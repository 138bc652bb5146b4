"""Joint retriever + LLM training (JMLR), end to end: index → pre-retrieve → evaluate → train → evaluate → save.

```bash
python recipes/train.py --config recipes/demo.yaml
accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/train.py --config recipes/jmlr-7b.yaml
jmlr train --config recipes/demo.yaml   # the same, from the `jmlr` command (as `trl sft` runs trl/scripts/sft.py)
```

Parsed like TRL's own scripts: `TrlParser` over the data arguments, `JointRetrievalConfig`, TRL's `ModelConfig`
(generator, dtype, LoRA) and the retrieval arguments, with a YAML `--config`; command-line flags override it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, fields

import torch
from datasets import Dataset, load_from_disk
from transformers import AutoTokenizer
from trl import ModelConfig, TrlParser, get_peft_config

from ..data import TASKS, LoadReport, load_named_corpus, load_task, print_load_summaries
from ..evaluation import evaluate_model, format_comparison
from ..hub import eval_results_from_metrics, push_model, render_model_card
from ..models import (
    JMLRForCausalLM,
    is_jmlr_checkpoint,
    load_jmlr_checkpoint,
    merge_generator_adapter,
    save_model,
)
from ..models.utils import has_generator_adapter
from ..retrieval import DocumentIndex, StaleIndexError, add_candidates
from ..trainer import CandidateRefreshCallback, JointRetrievalConfig, JointRetrievalTrainer
from ..utils.atomic import write_text
from ..utils.demo_models import HUB_IDS, resolve_model_path
from ..utils.plotting import plot_training_curves

logger = logging.getLogger(__name__)


@dataclass
class DataArguments:
    """Which questions, which corpus, which index."""

    task: str = field(default="pubmedqa", metadata={"help": f"One of {TASKS}."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Folder of the QA sets and corpora; default $JMLR_DATA_DIR or ../shared/data."}
    )
    train_file: str | None = field(default=None, metadata={"help": "Training questions (a file or a Hub id)."})
    eval_file: str | None = field(default=None, metadata={"help": "Evaluation questions (a file or a Hub id)."})
    eval_fraction: float = field(
        default=0.2, metadata={"help": "For tasks without a test split (MedMCQA, MedQA): held-out share, by id hash."}
    )
    corpus: str = field(
        default="pubmedqa",
        metadata={
            "help": "'pubmedqa' (every abstract section), 'medquad', or a corpus file/Hub id (id, text, title)."
        },
    )
    distractor_passages: int = field(
        default=0, metadata={"help": "MedQuAD passages added to the corpus as distractors (0 = none)."}
    )
    index_dir: str | None = field(
        default=None, metadata={"help": "Where the index lives; default <output_dir>/index."}
    )
    index_kind: str = field(default="flat", metadata={"help": "'flat' (exact), 'ivf' or 'hnsw'."})
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
    in_batch_negatives: bool | None = field(default=None, metadata={"help": "In-batch negatives for lsr/ppl_distill."})
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
    max_prompt_length: int | None = field(default=None, metadata={"help": "Generator tokens of prompt + answer."})

    def config_overrides(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "retriever_name_or_path"}
        values["max_length"] = values.pop("max_prompt_length")
        return {key: value for key, value in values.items() if value is not None}


def load_split_questions(args: DataArguments, split: str) -> Dataset:
    """The questions of `split`, with one summary line per file read (see [`print_load_summaries`])."""
    path = args.train_file if split == "train" else args.eval_file
    reports: list[LoadReport] = []
    checks = {"data_dir": args.data_dir, "path": path, "skip_invalid": args.skip_invalid, "reports": reports}
    if args.task in ("medmcqa", "medqa") and path is not None and split == "test":
        questions = load_task(args.task, None, **checks)  # an explicit evaluation file
    else:
        questions = load_task(args.task, split, eval_fraction=args.eval_fraction, **checks)
    print_load_summaries(reports, f"{split} questions")
    return questions


def load_model(model_args: ModelConfig, retrieval_args: RetrievalArguments):
    """The model and both tokenizers. `--dtype` applies to the generator; the retriever is always loaded in float32
    (its weights train at ~3e-6, below bf16's resolution, and loading them in bf16 would round the pretrained
    weights before training even starts)."""
    dtype = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else torch.float32
    overrides = retrieval_args.config_overrides()
    path = resolve_model_path(model_args.model_name_or_path or "smollm2-135m-instruct")
    if is_jmlr_checkpoint(path):
        model, tokenizer, retriever_tokenizer = load_jmlr_checkpoint(path, dtype=torch.float32)
        model.generator.to(dtype)
        structural = {k: v for k, v in overrides.items() if k in ("projection_dim", "train_document_encoder")}
        changed = {k: v for k, v in structural.items() if getattr(model.config, k) != v}
        if changed:
            raise ValueError(
                f"{path} is a saved JMLR model: {sorted(changed)} change the retriever's modules and cannot be set "
                "on it; build a new model from the generator and retriever checkpoints instead (--model_name_or_path "
                "<causal LM> --retriever_name_or_path <encoder>)"
            )
        for key, value in overrides.items():
            setattr(model.config, key, value)
        model.config.validate_retrieval_settings()
    else:
        retriever_path = resolve_model_path(retrieval_args.retriever_name_or_path)
        model = JMLRForCausalLM.from_components(
            path,
            retriever_path,
            generator_kwargs={"dtype": dtype},
            retriever_kwargs={"dtype": torch.float32},
            **overrides,
        )
        retriever_tokenizer = AutoTokenizer.from_pretrained(retriever_path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, retriever_tokenizer


def build_or_load_index(model, retriever_tokenizer, corpus_fn, args: DataArguments, index_dir: str) -> DocumentIndex:
    """Reuse the index in `index_dir` if the current retriever built it; otherwise (re)build and save it."""
    fingerprint = model.retriever.weights_fingerprint()
    if os.path.exists(os.path.join(index_dir, "index_config.json")):
        try:
            return DocumentIndex.load(index_dir, expected_fingerprint=fingerprint)
        except StaleIndexError:
            logger.info("The index in %s was built by other retriever weights: rebuilding it", index_dir)
    index = DocumentIndex.from_retriever(
        corpus_fn(),
        model.retriever,
        retriever_tokenizer,
        max_length=model.config.max_document_length,
        kind=args.index_kind,
    )
    index.save(index_dir)
    return index


def sharding_scheme(training_args: JointRetrievalConfig) -> str | None:
    """`"FSDP"` or `"DeepSpeed ZeRO-3"` when this run shards the weights across processes (from the training
    arguments or the environment `accelerate launch` sets from its config file), else `None`."""
    if training_args.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "FSDP"
    stage = None
    if training_args.deepspeed:
        config = training_args.deepspeed
        if isinstance(config, str):
            with open(config, encoding="utf-8") as f:
                config = json.load(f)
        stage = (config.get("zero_optimization") or {}).get("stage")
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        stage = stage or os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    return "DeepSpeed ZeRO-3" if str(stage) == "3" else None


def check_sharding(training_args: JointRetrievalConfig) -> None:
    """Fail at start where the recipe cannot work: it evaluates, re-encodes the corpus and saves on the main process
    alone, which needs the whole model there, and under FSDP or DeepSpeed ZeRO-3 each process holds only a shard of
    the weights (the main process would hang waiting for the others, or encode with a shard)."""
    scheme = sharding_scheme(training_args)
    if scheme is not None:
        raise ValueError(
            f"recipes/train.py does not run under {scheme}: it evaluates, refreshes the index and saves on the main "
            "process alone, and the weights are sharded across processes. Use "
            "recipes/accelerate_configs/multi_gpu.yaml (DDP; JMLR-13B with LoRA fits an 80 GB GPU, see "
            "docs/SCALING.md) or zero2.yaml (ZeRO-2 shards optimizer states and gradients, not weights)."
        )


def main(data_args: DataArguments, training_args: JointRetrievalConfig, model_args: ModelConfig, retrieval_args):
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    check_sharding(training_args)
    model, tokenizer, retriever_tokenizer = load_model(model_args, retrieval_args)
    cfg = model.config
    index_dir = data_args.index_dir or os.path.join(training_args.output_dir, "index")

    corpus_loads = 0

    def corpus():
        nonlocal corpus_loads
        reports: list[LoadReport] = []
        loaded = load_named_corpus(
            data_args.corpus,
            data_dir=data_args.data_dir,
            distractor_passages=data_args.distractor_passages,
            skip_invalid=data_args.skip_invalid,
            reports=reports,
        )
        corpus_loads += 1
        if corpus_loads == 1:  # index refreshes read the same files again
            print_load_summaries(reports, "corpus")
        return loaded

    # Index and pre-retrieval run once, on the main process; the others read the result from disk.
    prepared_dir = os.path.join(training_args.output_dir, "prepared")
    with training_args.main_process_first(desc="index and pre-retrieval"):
        if training_args.process_index == 0 or not os.path.exists(os.path.join(prepared_dir, "train")):
            index = build_or_load_index(model, retriever_tokenizer, corpus, data_args, index_dir)
            splits = {}
            for split, limit in (("train", data_args.train_limit), ("eval", data_args.eval_limit)):
                questions = load_split_questions(data_args, "train" if split == "train" else "test")
                if limit is not None:
                    questions = questions.select(range(min(limit, len(questions))))
                splits[split] = add_candidates(
                    questions,
                    index,
                    model.retriever,
                    retriever_tokenizer,
                    cfg.num_candidates,
                    max_query_length=cfg.max_query_length,
                )
                splits[split].save_to_disk(os.path.join(prepared_dir, split))
    train_dataset = load_from_disk(os.path.join(prepared_dir, "train"))
    eval_dataset = load_from_disk(os.path.join(prepared_dir, "eval"))

    def run_eval(tag: str) -> dict:
        metrics = evaluate_model(
            model, tokenizer, retriever_tokenizer, eval_dataset, answer_limit=data_args.eval_answer_limit
        )
        logger.info("%s: %s", tag, metrics)
        return metrics

    before = run_eval("before training") if data_args.evaluate_before and training_args.process_index == 0 else None

    callbacks = []
    if data_args.refresh_index_steps:

        def refresh(jmlr) -> dict[str, list[str]]:
            index = build_or_load_index(jmlr, retriever_tokenizer, corpus, data_args, index_dir)
            questions = train_dataset.remove_columns(["candidate_ids", "candidates", "candidate_scores"])
            rows = add_candidates(
                questions,
                index,
                jmlr.retriever,
                retriever_tokenizer,
                cfg.num_candidates,
                max_query_length=cfg.max_query_length,
            )
            return dict(zip(rows["id"], rows["candidates"], strict=True))

        callbacks.append(CandidateRefreshCallback(refresh, data_args.refresh_index_steps))
    trainer = JointRetrievalTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=callbacks,
    )
    resume = training_args.resume_from_checkpoint
    # `--resume_from_checkpoint true` (or `true` in the YAML): the last complete checkpoint of output_dir.
    trainer.train(resume_from_checkpoint=True if str(resume).lower() == "true" else resume)

    model = trainer.accelerator.unwrap_model(trainer.model)
    generator_weights = "merged" if data_args.merge_adapter or not has_generator_adapter(model) else "adapter"
    if generator_weights == "merged":
        merge_generator_adapter(model)
    if trainer.accelerator.is_main_process:
        after = run_eval("after training")
        if data_args.refresh_index:
            # The trained retriever encodes queries differently: the index must hold its document vectors too.
            build_or_load_index(model, retriever_tokenizer, corpus, data_args, index_dir)
        final_dir = os.path.join(training_args.output_dir, "final")
        cfg.index_repo_id, cfg.index_revision = os.path.abspath(index_dir), None
        save_model(model, tokenizer, retriever_tokenizer, final_dir, generator_weights=generator_weights)
        card = render_model_card(
            type(cfg).from_pretrained(final_dir),
            training_args.hub_model_id or final_dir,
            eval_results=eval_results_from_metrics(after, data_args.task),
            generator=HUB_IDS.get(model_args.model_name_or_path, model_args.model_name_or_path),
            retriever=HUB_IDS.get(retrieval_args.retriever_name_or_path, retrieval_args.retriever_name_or_path),
            training={"task": data_args.task, "steps": trainer.state.global_step, "corpus": data_args.corpus},
            comparison=format_comparison(before, after) if before is not None else None,
        )
        write_text(os.path.join(final_dir, "README.md"), str(card))
        results = {"before": before, "after": after, "train": trainer.state.log_history}
        plot_training_curves(trainer.state.log_history, os.path.join(training_args.output_dir, "training_curves.png"))
        with open(os.path.join(training_args.output_dir, "results.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        if before is not None:
            print("\n" + format_comparison(before, after) + "\n")
        print(f"Saved the model to {final_dir} and the index to {index_dir}")
        if training_args.push_to_hub:
            # The final model (and its index, as its own repository) in one commit, with the card's results.
            repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
            result = push_model(
                final_dir,
                repo_id,
                generator_weights=generator_weights,
                private=bool(training_args.hub_private_repo),
                eval_results=eval_results_from_metrics(after, data_args.task),
                token=training_args.hub_token,
            )
            print(f"Pushed the model to {result.url} (index {result.index_repo_id} @ {result.index_revision})")
    return trainer


def make_parser() -> TrlParser:
    return TrlParser((DataArguments, JointRetrievalConfig, ModelConfig, RetrievalArguments))


def cli_main(argv: list[str] | None = None):
    parser = make_parser()
    data_args, training_args, model_args, retrieval_args = parser.parse_args_and_config(args=argv)
    return main(data_args, training_args, model_args, retrieval_args)
