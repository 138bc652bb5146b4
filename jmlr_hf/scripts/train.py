"""Joint retriever + LLM training (JMLR), end to end: index → pre-retrieve → evaluate → train → evaluate → save.

```bash
python recipes/train.py --config recipes/demo.yaml
accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/train.py --config recipes/jmlr-7b.yaml
jmlr train --config recipes/demo.yaml   # the same, from the `jmlr` command (as `trl sft` runs trl/scripts/sft.py)
```

Parsed like TRL's own scripts: `TrlParser` over the data arguments, `JointRetrievalConfig`, TRL's `ModelConfig`
(generator, dtype, LoRA) and the retrieval arguments, with a YAML `--config`; command-line flags override it. Every
flag it accepts does something or is refused before anything loads, with a message naming what to use instead
(TRL's `--max_length` is the sequence cap; `--packing` is refused; `--dataset_name` reads a Hub data set;
`--eval_strategy steps` evaluates the prepared evaluation split; `--push_to_hub` checks the Hub first). Every figure
(training, evaluations, the before/after comparison) goes through `trainer.log`, so `--report_to` receives it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable

import torch
from datasets import Dataset, IterableDataset, load_from_disk
from transformers import AutoTokenizer, TrainerCallback
from transformers.trainer_utils import enable_full_determinism, set_seed
from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from ..data import (
    TASKS,
    LoadReport,
    load_medmcqa,
    load_medqa,
    load_mmlu,
    load_named_corpus,
    load_pubmedqa,
    load_reason_split,
    load_task,
    print_load_summaries,
    stream_corpus,
)
from ..evaluation import evaluate_model, format_comparison
from ..hub import eval_results_from_metrics, push_model, render_model_card
from ..models import (
    JMLRForCausalLM,
    is_jmlr_checkpoint,
    load_jmlr_checkpoint,
    merge_generator_adapter,
    save_model,
)
from ..models.utils import apply_peft_to_generator, has_generator_adapter
from ..retrieval import DocumentIndex, StaleIndexError, add_candidates
from ..retrieval.sharded import ShardGroup, process_group, run_on_main
from ..trainer import CandidateRefreshCallback, JointRetrievalConfig, JointRetrievalTrainer
from ..trainer.fsdp import load_gathered_state_dict
from ..utils.atomic import write_text
from ..utils.demo_models import HUB_IDS, resolve_model_path
from ..utils.plotting import plot_training_curves
from .arguments import DataArguments, RecipeError, RetrievalArguments
from .preflight import (
    check_accelerate_device,
    check_choice,
    check_corpus,
    check_index_overwrite,
    check_report_to,
    check_task_files,
    did_you_mean,
    record_index_user,
)

logger = logging.getLogger(__name__)


def check_arguments(
    data_args: DataArguments, training_args: JointRetrievalConfig, model_args: ModelConfig, retrieval_args
) -> None:
    """Refuse, at parse time and naming the replacement, the flags the recipe would otherwise accept and ignore, and
    move `--max_prompt_length` (the recipe's former name of the sequence cap) to TRL's `--max_length`."""
    check_choice("--task", data_args.task, TASKS)
    check_report_to(training_args.report_to)  # transformers would fail on it only after loading and indexing
    if retrieval_args.max_prompt_length is not None:
        if training_args.max_length not in (None, retrieval_args.max_prompt_length):
            raise RecipeError(
                f"--max_prompt_length {retrieval_args.max_prompt_length} and --max_length {training_args.max_length} "
                "set the same cap (generator tokens of documents + question + answer): give --max_length only"
            )
        training_args.max_length = retrieval_args.max_prompt_length
        retrieval_args.max_prompt_length = None
    if data_args.dataset_streaming:
        raise RecipeError(
            "--dataset_streaming is not supported: the training questions are pre-retrieved and held in memory; to "
            "index a corpus larger than memory use --corpus <file or Hub id> --corpus_streaming true"
        )
    if data_args.dataset_name is not None and (data_args.train_file or data_args.eval_file):
        raise RecipeError(
            "--dataset_name gives both splits (--dataset_train_split, --dataset_test_split): drop --train_file and "
            "--eval_file, or drop --dataset_name"
        )
    if data_args.corpus_streaming and (data_args.corpus in ("pubmedqa", "medquad") or data_args.distractor_passages):
        raise RecipeError(
            "--corpus_streaming reads one corpus file or Hub id as it comes: give --corpus <file or Hub id> and "
            "--distractor_passages 0 (the named corpora 'pubmedqa' and 'medquad' fit in memory: drop the flag)"
        )
    for flag in ("corpus_limit", "train_limit", "eval_limit", "eval_answer_limit"):
        value = getattr(data_args, flag)
        if value is not None and value < 1:
            raise RecipeError(f"--{flag} {value}: give a positive count, or leave it out to use all")
    if data_args.corpus_streaming and data_args.index_kind in ("ivf", "ivfpq"):
        raise RecipeError(
            "--corpus_streaming builds a flat or HNSW index (--index_kind flat or hnsw): an IVF or IVF-PQ index needs "
            "its list count before the stream's length is known (`jmlr index --streaming --kind "
            f"{data_args.index_kind} --nlist N`, then --index_dir)"
        )
    check_quantization(model_args, data_args)


# What a generator too large for bf16 + LoRA on one GPU can use instead of a 4-bit load.
BIG_MODEL_PATHS = (
    "--dtype bfloat16 with --use_peft true (LoRA) to save memory, and for a generator that does not fit one GPU shard "
    "it across GPUs with FSDP2 (accelerate launch --config_file recipes/accelerate_configs/fsdp2.yaml)"
)


def check_quantization(model_args: ModelConfig, data_args: DataArguments) -> None:
    """QLoRA (`--load_in_4bit true`: the generator's linear layers in 4-bit NF4 through bitsandbytes, LoRA adapters
    trained in float32 on top, the retriever whole in float32) is the one-GPU path for a large generator. Refused,
    naming what to do: 8-bit loading, 4-bit without bitsandbytes installed, without LoRA (4-bit weights do not train),
    or with the adapter merged at the end (a merge into 4-bit weights re-quantises them: QLoRA saves the adapter, and
    `from_pretrained` loads the base in full precision with it); the bitsandbytes flags without `--load_in_4bit`."""
    if model_args.load_in_8bit:
        raise RecipeError(f"--load_in_8bit is not supported: use --load_in_4bit true (QLoRA) or {BIG_MODEL_PATHS}")
    if not model_args.load_in_4bit:
        defaults = ModelConfig()
        given = [
            f"--{name}"
            for name in ("bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_quant_storage")
            if getattr(model_args, name) != getattr(defaults, name)
        ]
        if given:
            raise RecipeError(f"{', '.join(given)} set(s) the 4-bit quantisation: it applies with --load_in_4bit true")
        return
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RecipeError(
            "--load_in_4bit needs bitsandbytes, which is not installed (pip install 'jmlr_hf[qlora]'); without it "
            f"use {BIG_MODEL_PATHS}"
        )
    if not model_args.use_peft:
        raise RecipeError(
            "--load_in_4bit trains the generator through LoRA adapters only (QLoRA): add --use_peft true"
        )
    if data_args.merge_adapter:
        raise RecipeError(
            "--load_in_4bit: add --merge_adapter false. QLoRA saves the LoRA adapter with the base model's name, and "
            "from_pretrained loads the base in full precision with it; merging into the 4-bit weights would "
            "re-quantise them"
        )


def check_inputs(data_args: DataArguments, training_args: JointRetrievalConfig) -> None:
    """What can be checked on disk before a model loads: the questions' and the corpus' files exist, a GPU
    configuration of `accelerate launch` has a GPU to run on, and `--index_dir` is not the index of another saved
    model (rebuilding it would make that model's index stale; `--overwrite_index true` allows it, with a warning).
    Each failure is a one-line [`RecipeError`]."""
    index_dir = data_args.index_dir or os.path.join(training_args.output_dir, "index")
    try:
        if data_args.dataset_name is None:
            questions = {"--train_file": data_args.train_file, "--eval_file": data_args.eval_file}
            check_task_files(data_args.task, data_args.data_dir, questions)
        check_corpus(data_args.corpus, data_args.data_dir, data_args.distractor_passages)
        check_accelerate_device(training_args.use_cpu, torch.cuda.is_available())
        final_dir = os.path.join(training_args.output_dir, "final")
        others = check_index_overwrite(index_dir, final_dir, data_args.overwrite_index)
    except (OSError, ValueError, RuntimeError) as err:
        raise RecipeError(str(err)) from None
    for folder in others:
        print(
            f"warning: --overwrite_index: rebuilding {index_dir} leaves {folder} with a stale index", file=sys.stderr
        )


def check_hub_access(training_args: JointRetrievalConfig) -> None:
    """With `--push_to_hub`, make sure, before hours of indexing and training, that the Hub answers, that the token
    is valid and may write, and that the target namespace is the token's user or one of its organisations.

    Raises a one-line [`RecipeError`] otherwise (offline mode, no network, an invalid or read-only token).
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(token=training_args.hub_token)
    where = f"the Hub ({constants.ENDPOINT})"
    try:
        info = api.whoami()
    except OfflineModeIsEnabled:
        raise RecipeError(
            f"--push_to_hub needs {where}, but HF_HUB_OFFLINE is set: unset it, or train without --push_to_hub and "
            "publish later with `jmlr push model`"
        ) from None
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        reason = (
            "the token is invalid or missing (log in with `hf auth login` or set HF_TOKEN)" if status == 401 else err
        )
        raise RecipeError(f"--push_to_hub: {where} refused the token check: {reason}") from None
    except Exception as err:  # noqa: BLE001 - connection errors come in many types; all mean the same here
        raise RecipeError(
            f"--push_to_hub: cannot reach {where}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            "; check the network, or train without --push_to_hub and publish later with `jmlr push model`"
        ) from None
    token = (info.get("auth") or {}).get("accessToken") or {}
    if token.get("role") == "read":
        raise RecipeError(
            f"--push_to_hub: the token of {info.get('name')!r} is read-only; use a token with write access"
        )
    repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
    namespace = repo_id.split("/")[0] if "/" in repo_id else info.get("name")
    allowed = {info.get("name")} | {org.get("name") for org in info.get("orgs") or []}
    if namespace not in allowed:
        raise RecipeError(
            f"--push_to_hub: {info.get('name')!r} cannot create {repo_id!r}: the namespace {namespace!r} is not the "
            f"user or one of its organisations ({sorted(name for name in allowed if name)})"
        )


def load_dataset_questions(args: DataArguments, split: str, reports: list[LoadReport]) -> Dataset:
    """The questions of `--dataset_name`'s training or test split, through the task's loader (so a Hub data set in
    the task's format is checked and converted like a local file)."""
    hub_split = args.dataset_train_split if split == "train" else args.dataset_test_split
    load_kwargs = {"name": args.dataset_config} if args.dataset_config else {}
    if args.task == "medqa-reason":
        return load_reason_split(args.dataset_name, hub_split, **load_kwargs)
    report = LoadReport()
    reports.append(report)
    checks = {"skip_invalid": args.skip_invalid, "report": report}
    if args.task == "pubmedqa":
        return load_pubmedqa(args.dataset_name, split=None, hub_split=hub_split, **checks, **load_kwargs)
    if args.task == "medquad":
        raise RecipeError(
            "--task medquad reads the MedQuAD answers file (its questions, targets and gold passages are derived from "
            "it, split by topic): give --train_file <medquad_answers.jsonl.gz> or the data folder, not --dataset_name"
        )
    loader = {"medqa": load_medqa, "medmcqa": load_medmcqa, "mmlu": load_mmlu}[args.task]
    if args.task == "medmcqa":
        load_kwargs["require_rationale"] = True
    return loader(args.dataset_name, split=hub_split, **checks, **load_kwargs)


def load_split_questions(args: DataArguments, split: str) -> Dataset:
    """The questions of `split`, with one summary line per file read (see [`print_load_summaries`])."""
    reports: list[LoadReport] = []
    if args.dataset_name is not None:
        questions = load_dataset_questions(args, split, reports)
        print_load_summaries(reports, f"{split} questions")
        return questions
    path = args.train_file if split == "train" else args.eval_file
    checks = {"data_dir": args.data_dir, "path": path, "skip_invalid": args.skip_invalid, "reports": reports}
    if args.task in ("medmcqa", "medqa") and path is not None and split == "test":
        questions = load_task(args.task, None, **checks)  # an explicit evaluation file
    else:
        questions = load_task(args.task, split, eval_fraction=args.eval_fraction, **checks)
    print_load_summaries(reports, f"{split} questions")
    return questions


def load_model(
    model_args: ModelConfig,
    retrieval_args: RetrievalArguments,
    max_length: int | None = None,
    trust_remote_code: bool = False,
    device: torch.device | None = None,
):
    """The model and both tokenizers. `--dtype` applies to the generator; the retriever is always loaded in float32
    (its weights train at ~3e-6, below bf16's resolution, and loading them in bf16 would round the pretrained
    weights before training even starts). `--model_revision`, `--attn_implementation` and `--trust_remote_code` apply
    to the generator (and its tokenizer); `max_length` (TRL's `--max_length`) is the sequence cap the model's config
    carries. With `--load_in_4bit` (QLoRA) the generator's linear layers load in 4-bit on `device` (computing in
    `--dtype`), and its other weights are made float32 and frozen for the LoRA adapters (PEFT's
    `prepare_model_for_kbit_training`)."""
    dtype = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else torch.float32
    overrides = retrieval_args.config_overrides()
    if max_length is not None:
        overrides["max_length"] = max_length
    revision = {"revision": model_args.model_revision} if model_args.model_revision not in (None, "main") else {}
    # A saved JMLR model is this package's own class; remote code only concerns a generator loaded by Hub id.
    remote = {"trust_remote_code": True} if trust_remote_code else {}
    path = resolve_model_path(model_args.model_name_or_path or "smollm2-135m-instruct")
    if is_jmlr_checkpoint(path) and model_args.load_in_4bit:
        raise ValueError(
            f"--load_in_4bit: {path} is a saved JMLR model; QLoRA loads a causal LM checkpoint (--model_name_or_path "
            "<causal LM> --retriever_name_or_path <encoder>)"
        )
    if is_jmlr_checkpoint(path):
        model, tokenizer, retriever_tokenizer = load_jmlr_checkpoint(path, dtype=torch.float32, **revision)
        model.generator.to(dtype)
        if model_args.attn_implementation is not None:
            model.generator.set_attn_implementation(model_args.attn_implementation)
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
        generator_kwargs = {"dtype": dtype, **revision, **remote}
        if model_args.attn_implementation is not None:
            generator_kwargs["attn_implementation"] = model_args.attn_implementation
        if model_args.load_in_4bit:
            generator_kwargs["quantization_config"] = get_quantization_config(model_args)
            generator_kwargs["device_map"] = {"": str(device or "cpu")}
        model = JMLRForCausalLM.from_components(
            path,
            retriever_path,
            generator_kwargs=generator_kwargs,
            retriever_kwargs={"dtype": torch.float32},
            **overrides,
        )
        if model_args.load_in_4bit:
            from peft import prepare_model_for_kbit_training

            # Gradient checkpointing stays the Trainer's (--gradient_checkpointing), as without quantisation.
            prepare_model_for_kbit_training(model.generator, use_gradient_checkpointing=False)
        retriever_tokenizer = AutoTokenizer.from_pretrained(retriever_path)
        tokenizer = AutoTokenizer.from_pretrained(path, **revision, **remote)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, retriever_tokenizer


def build_or_load_index(
    model, retriever_tokenizer, corpus_fn, args: DataArguments, index_dir: str
) -> DocumentIndex | None:
    """Reuse the index in `index_dir` if the current retriever built it; otherwise (re)build and save it.

    With several processes (DDP) every process calls it, and none waits alone on the whole corpus: the main process
    alone reads and writes `index_dir` (the nodes need not share a filesystem) and decides whether to rebuild; a
    rebuild is shared, each process encoding its share of the corpus (`jmlr_hf.retrieval.sharded`). The main process
    gets the index, the others `None`."""
    group = process_group()
    is_main = group is None or group.is_main
    fingerprint = model.retriever.weights_fingerprint()

    def current_index() -> DocumentIndex | None:
        if os.path.exists(os.path.join(index_dir, "index_config.json")):
            try:
                return DocumentIndex.load(index_dir, expected_fingerprint=fingerprint)
            except StaleIndexError:
                logger.info("The index in %s was built by other retriever weights: rebuilding it", index_dir)
        return None

    index = current_index() if group is None else run_on_main(group, current_index)
    reused = index is not None if group is None else group.broadcast(index is not None)
    if reused:
        return index
    corpus = corpus_fn()
    common = {
        "max_length": model.config.max_document_length,
        "kind": args.index_kind,
        "show_progress": is_main,
        "distributed": None,  # every process of the run encodes its share
    }
    if isinstance(corpus, IterableDataset):  # --corpus_streaming: written into index_dir as it is encoded
        return DocumentIndex.from_retriever(
            corpus, model.retriever, retriever_tokenizer, directory=index_dir, **common
        )
    index = DocumentIndex.from_retriever(corpus, model.retriever, retriever_tokenizer, **common)
    if index is not None:
        index.save(index_dir)
    return index


def candidate_refresh(
    retriever_tokenizer,
    corpus_fn: Callable[[], Dataset | IterableDataset],
    args: DataArguments,
    index_dir: str,
    train_dataset: Dataset,
    num_candidates: int,
    max_query_length: int,
) -> Callable[..., dict[str, list[str]] | None]:
    """The `--refresh_index_steps` refresh, for [`CandidateRefreshCallback`] (called on every process): the corpus
    re-encoded by the model being trained, each process encoding its share, into `index_dir`; then, on the main
    process, the training questions' `num_candidates` candidates retrieved from it (`None` on the others, which
    receive the main process's over `torch.distributed`)."""
    questions = train_dataset.remove_columns(["candidate_ids", "candidates", "candidate_scores"])

    def refresh(jmlr) -> dict[str, list[str]] | None:
        index = build_or_load_index(jmlr, retriever_tokenizer, corpus_fn, args, index_dir)
        if index is None:
            return None
        rows = add_candidates(
            questions, index, jmlr.retriever, retriever_tokenizer, num_candidates, max_query_length=max_query_length
        )
        return dict(zip(rows["id"], rows["candidates"], strict=True))

    return refresh


def share_prepared_splits(group: ShardGroup | None, prepare: Callable[[], None], prepared_dir: str) -> dict:
    """`{"train": ..., "eval": ...}`: the questions with their candidates, which `prepare()` writes under
    `prepared_dir` on the main process. The other processes receive them from it over `torch.distributed` (as Arrow
    tables), not from `prepared_dir`: the nodes of a multi-node run need not share a filesystem."""
    splits = ("train", "eval")
    if group is None:
        prepare()
        return {split: load_from_disk(os.path.join(prepared_dir, split)) for split in splits}
    run_on_main(group, prepare)
    datasets = {split: load_from_disk(os.path.join(prepared_dir, split)) for split in splits} if group.is_main else {}
    # Saved datasets have no indices mapping: their Arrow tables are their rows.
    tables = group.broadcast({split: data.data.table for split, data in datasets.items()})
    if group.is_main:
        return datasets
    from datasets.table import InMemoryTable

    return {split: Dataset(InMemoryTable(table)) for split, table in tables.items()}


def sharding_scheme(training_args: JointRetrievalConfig) -> str | None:
    """`"FSDP2"`, `"FSDP1"` or `"DeepSpeed ZeRO-3"` when this run shards the weights across processes (from the
    training arguments or the environment `accelerate launch` sets from its config file), else `None`."""
    if training_args.fsdp:
        version = (training_args.fsdp_config or {}).get("version", 2)  # transformers' default: FSDP2
        return "FSDP2" if int(version) == 2 else "FSDP1"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        # accelerate's own default, when its config names no version, is FSDP1.
        return "FSDP2" if os.environ.get("FSDP_VERSION", "1") == "2" else "FSDP1"
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


def check_sharding(training_args: JointRetrievalConfig, cuda_available: bool | None = None) -> str | None:
    """The sharding scheme of this run (see [`sharding_scheme`]), after refusing at start, naming the replacement,
    what the recipe cannot do.

    FSDP2 runs: the generator is sharded by decoder layer and the retriever kept whole on every process
    (`jmlr_hf/trainer/fsdp.py`); after training the full state dict is gathered to the main process, which evaluates,
    refreshes the index and saves an unsharded model. Refused: FSDP1 (FSDP2 replaces it), FSDP2 without a GPU
    (accelerate applies FSDP to GPU processes only; on CPU the processes would silently train as DDP replicas), and
    DeepSpeed ZeRO-3 (not installed or run by this project; FSDP2 shards the same weights)."""
    scheme = sharding_scheme(training_args)
    fsdp2 = "recipes/accelerate_configs/fsdp2.yaml"
    if scheme == "FSDP1":
        raise ValueError(
            f"recipes/train.py does not run under FSDP1: use FSDP2 (fsdp_version: 2, as in {fsdp2}), which shards "
            "the generator by decoder layer and keeps the retriever whole"
        )
    if scheme == "DeepSpeed ZeRO-3":
        raise ValueError(
            f"recipes/train.py does not run under DeepSpeed ZeRO-3: use FSDP2 ({fsdp2}) to shard the weights, or "
            "zero2.yaml (ZeRO-2 shards optimizer states and gradients, not weights)"
        )
    if scheme == "FSDP2":
        if cuda_available is None:
            cuda_available = torch.cuda.is_available()
        if training_args.use_cpu or not cuda_available:
            raise ValueError(
                "FSDP2 needs GPUs: accelerate applies FSDP to GPU processes only, and on CPU"
                f"{' (--use_cpu true)' if training_args.use_cpu else ''} the processes would train as DDP replicas; "
                "without a GPU use recipes/accelerate_configs/cpu.yaml, or accelerate launch --multi_gpu (DDP over "
                "gloo)"
            )
    return scheme


def gather_trained_model(
    trainer: JointRetrievalTrainer, build_model: Callable[[], JMLRForCausalLM], device: torch.device | None = None
) -> JMLRForCausalLM:
    """The trained model, whole, for what the main process does after training (evaluate, refresh the index, save).

    Without sharding, the trainer's own model. Under FSDP2, a collective: the full state dict is gathered the way
    accelerate does it (`Accelerator.get_state_dict`: every shard all-gathered, kept on the main process's CPU), and
    the main process loads it into an unsharded model from `build_model` (the same structure: the same generator,
    the same PEFT adapters), moved to `device` (the main process's GPU) when it fits in that device's free memory,
    kept on the CPU otherwise, with a warning (evaluation then runs on the CPU). The other processes get their own,
    sharded, model back: its retriever is whole and trained there too (FSDP2 keeps it whole), and its generator must
    not be called outside a collective. Peak host memory on the main process: the gathered state dict plus the
    rebuilt model, about twice the model's size.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not trainer.is_fsdp_enabled:
        return model
    state = trainer.accelerator.get_state_dict(trainer.model)
    if not trainer.accelerator.is_main_process:
        return model
    whole = build_model()
    load_gathered_state_dict(whole, state)
    del state
    if device is not None and device.type == "cuda":
        size = sum(t.numel() * t.element_size() for t in (*whole.parameters(), *whole.buffers()))
        free = torch.cuda.mem_get_info(device)[0]
        if size < 0.9 * free:
            whole.to(device)
        else:
            print(
                f"warning: the gathered model ({size / 2**30:.1f} GiB) does not fit the {free / 2**30:.1f} GiB free on "
                f"{device}: evaluating, re-encoding and saving it on the CPU",
                file=sys.stderr,
            )
    return whole.eval()


def logged_metrics(metrics: dict, prefix: str = "eval_") -> dict[str, float]:
    """The numeric figures of an evaluation, prefixed as the Trainer prefixes evaluation metrics (`report_to`
    integrations file `eval_*` under "eval"); counts and NaNs (nothing measured) are left out."""
    return {
        prefix + key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    }


class LogAtTrainBegin(TrainerCallback):
    """Log one measurement (the evaluation before training) once training has begun: `Trainer.train` starts a fresh
    `TrainerState`, whose log history would not hold an entry logged before it. [`JointRetrievalTrainer`] binds
    itself (`bind_trainer`), and the entry goes through its `log_measurement`, so `report_to` receives it."""

    def __init__(self, metrics: dict[str, float]):
        self.metrics = metrics
        self._trainer: JointRetrievalTrainer | None = None

    def bind_trainer(self, trainer: JointRetrievalTrainer) -> None:
        self._trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        if self.metrics and self._trainer is not None:
            self._trainer.log_measurement(self.metrics)
            self.metrics = {}


def main(data_args: DataArguments, training_args: JointRetrievalConfig, model_args: ModelConfig, retrieval_args):
    # Warnings only, unless --log_level info/debug: the loaders' INFO lines repeat the summary lines printed for each
    # load, and the evaluations' INFO lines the before/after table. faiss's loader probing its builds ("Could not load
    # library with AVX512...") stays off at any level.
    level = training_args.get_process_log_level() if training_args.should_log else logging.WARNING
    logging.basicConfig(level=min(level, logging.WARNING))
    logging.getLogger("faiss").setLevel(logging.WARNING)
    check_arguments(data_args, training_args, model_args, retrieval_args)
    scheme = check_sharding(training_args)
    if model_args.load_in_4bit and (scheme is not None or training_args.world_size > 1):
        raise RecipeError(
            "--load_in_4bit (QLoRA) is the one-process path for a large generator: run one process, or shard a bf16 "
            "generator across processes with FSDP2 (recipes/accelerate_configs/fsdp2.yaml) without --load_in_4bit"
        )
    check_inputs(data_args, training_args)
    if training_args.push_to_hub:
        check_hub_access(training_args)  # before hours of indexing and training
    # Seeded before any weight is created (a projection the retriever checkpoint lacks, the LoRA adapters), so that
    # one --seed reproduces a run (issue 24).
    if training_args.full_determinism:
        enable_full_determinism(training_args.seed)
    else:
        set_seed(training_args.seed)
    model, tokenizer, retriever_tokenizer = load_model(
        model_args, retrieval_args, training_args.max_length, training_args.trust_remote_code, training_args.device
    )
    cfg = model.config
    index_dir = data_args.index_dir or os.path.join(training_args.output_dir, "index")

    corpus_loads = 0

    def corpus() -> Dataset | IterableDataset:
        nonlocal corpus_loads
        if data_args.corpus_streaming:
            stream = stream_corpus(data_args.corpus)
            return stream if data_args.corpus_limit is None else stream.take(data_args.corpus_limit)
        reports: list[LoadReport] = []
        loaded = load_named_corpus(
            data_args.corpus,
            data_dir=data_args.data_dir,
            distractor_passages=data_args.distractor_passages,
            skip_invalid=data_args.skip_invalid,
            reports=reports,
        )
        corpus_loads += 1
        if corpus_loads == 1 and training_args.process_index == 0:  # index refreshes read the same files again
            print_load_summaries(reports, "corpus")
            if data_args.corpus_limit is not None and data_args.corpus_limit < len(loaded):
                print(f"corpus: using the first {data_args.corpus_limit} of {len(loaded)} passages (--corpus_limit)")
        if data_args.corpus_limit is not None:
            loaded = loaded.select(range(min(data_args.corpus_limit, len(loaded))))
        return loaded

    # Every process takes part in building the index (each encodes its share of the corpus); the main process
    # pre-retrieves and sends the prepared questions to the others.
    prepared_dir = os.path.join(training_args.output_dir, "prepared")
    group = process_group()

    def prepare(index: DocumentIndex) -> None:
        for split, limit in (("train", data_args.train_limit), ("eval", data_args.eval_limit)):
            questions = load_split_questions(data_args, "train" if split == "train" else "test")
            if limit is not None:
                questions = questions.select(range(min(limit, len(questions))))
            questions = add_candidates(
                questions,
                index,
                model.retriever,
                retriever_tokenizer,
                cfg.num_candidates,
                max_query_length=cfg.max_query_length,
            )
            questions.save_to_disk(os.path.join(prepared_dir, split))

    index = build_or_load_index(model, retriever_tokenizer, corpus, data_args, index_dir)
    prepared = share_prepared_splits(group, functools.partial(prepare, index), prepared_dir)
    del index  # the main process's: the index is searched again only by a refresh, which rebuilds it
    train_dataset, eval_dataset = prepared["train"], prepared["eval"]

    def run_eval(tag: str) -> dict:
        metrics = evaluate_model(
            model, tokenizer, retriever_tokenizer, eval_dataset, answer_limit=data_args.eval_answer_limit
        )
        logger.info("%s: %s", tag, metrics)
        return metrics

    before = run_eval("before training") if data_args.evaluate_before and training_args.process_index == 0 else None

    callbacks: list[TrainerCallback] = [LogAtTrainBegin(logged_metrics(before))] if before is not None else []
    if data_args.refresh_index_steps:
        refresh = candidate_refresh(
            retriever_tokenizer, corpus, data_args, index_dir, train_dataset, cfg.num_candidates, cfg.max_query_length
        )
        callbacks.append(
            CandidateRefreshCallback(refresh, data_args.refresh_index_steps, refresh_on_every_process=True)
        )
    peft_config = get_peft_config(model_args)
    trainer = JointRetrievalTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,  # evaluated with the joint loss and the retrieval metrics (--eval_strategy)
        processing_class=tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    resume = training_args.resume_from_checkpoint
    # `--resume_from_checkpoint true` (or `true` in the YAML): the last complete checkpoint of output_dir.
    trainer.train(resume_from_checkpoint=True if str(resume).lower() == "true" else resume)

    def unsharded_model() -> JMLRForCausalLM:
        # The structure the trained model has (the same loading, the same adapters), for the gathered FSDP2 weights.
        whole = load_model(model_args, retrieval_args, training_args.max_length, training_args.trust_remote_code)[0]
        if peft_config is not None:
            apply_peft_to_generator(whole, peft_config)
        return whole

    model = gather_trained_model(trainer, unsharded_model, training_args.device)
    cfg = model.config
    generator_weights = "merged" if data_args.merge_adapter or not has_generator_adapter(model) else "adapter"
    if generator_weights == "merged" and (trainer.accelerator.is_main_process or not trainer.is_fsdp_enabled):
        merge_generator_adapter(model)  # under FSDP2 the other processes' generators are shards: left alone
    if data_args.refresh_index:
        # The trained retriever encodes queries differently: the index must hold its document vectors too. Every
        # process encodes its share with its retriever (whole on every process, also under FSDP2, and equal: its
        # gradients are averaged); the main process writes index_dir.
        build_or_load_index(model, retriever_tokenizer, corpus, data_args, index_dir)
    if trainer.accelerator.is_main_process:
        after = run_eval("after training")
        trainer.log_measurement(logged_metrics(after))
        final_dir = os.path.join(training_args.output_dir, "final")
        cfg.index_repo_id, cfg.index_revision = os.path.abspath(index_dir), None
        save_model(model, tokenizer, retriever_tokenizer, final_dir, generator_weights=generator_weights)
        record_index_user(index_dir, final_dir)  # a later run with this --index_dir will not rebuild it silently
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


class RecipeParser(TrlParser):
    """TRL's `TrlParser` whose every mistake is a one-line [`RecipeError`] for the user, not a developer's message:
    an argparse error (a bad value, a missing value) without the usage block, an unknown flag or an unknown key of the
    `--config` file with the closest known name ("did you mean --num_candidates?") instead of TRL's "add them to the
    dataclass, or set fail_with_unknown_args=False"."""

    config_path: str | None = None

    def known_flags(self) -> list[str]:
        """Every flag, in its underscore spelling (`--num_candidates`; `--num-candidates` is its alias)."""
        return [f"--{action.dest}" for action in self._actions if action.option_strings]

    def error(self, message: str):
        raise RecipeError(message)

    def set_defaults_with_config(self, **kwargs) -> list[str]:
        remaining = super().set_defaults_with_config(**kwargs)
        if remaining:
            keys = [item[2:] for item in remaining[::2]]
            known = [flag[2:] for flag in self.known_flags()]
            where = self.config_path or "the --config file"
            raise RecipeError(
                f"{where}: unknown key {keys[0]!r}{did_you_mean(keys[0], known)}"
                + (f" (and {len(keys) - 1} more: {', '.join(keys[1:])})" if len(keys) > 1 else "")
            )
        return remaining

    def parse_args_and_config(self, args=None, **kwargs):
        args = list(sys.argv[1:] if args is None else args)
        if "--config" in args[:-1]:
            self.config_path = args[args.index("--config") + 1]
        *parsed, remaining = super().parse_args_and_config(args, return_remaining_strings=True)
        if remaining:
            flag = next((item for item in remaining if item.startswith("-")), remaining[0])
            name = flag.split("=", 1)[0]
            hint = did_you_mean(name, self.known_flags()) if name.startswith("--") else ""
            raise RecipeError(f"unrecognized argument {flag}{hint}")
        return tuple(parsed)


def make_parser(prog: str | None = None) -> RecipeParser:
    """The recipe's parser: `DataArguments`, `JointRetrievalConfig`, TRL's `ModelConfig` and `RetrievalArguments`."""
    return RecipeParser((DataArguments, JointRetrievalConfig, ModelConfig, RetrievalArguments), prog=prog)


def fail(prog: str, message: str, status: int = 1) -> None:
    """Print one line, `<prog>: error: <message>`, and exit: a setting the user can fix needs no traceback."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def cli_main(argv: list[str] | None = None, prog: str | None = None):
    """Parse, then run. Every mistake found before training (a parse error, a setting refused at parse time, a
    [`RecipeError`] of the checks before loading, e.g. `--push_to_hub` without Hub access) is one line on stderr,
    prefixed with the command (`prog`: `jmlr train`, or the script's name), and exit status 1."""
    parser = make_parser(prog)
    # TRL's configs default `gradient_checkpointing` (transformers' deprecated name of `activation_checkpointing`) to
    # True, and TRL/PEFT ask models `is_gradient_checkpointing`: transformers warns about both in every run, whatever
    # the user set, which nothing in the user's hands can change.
    warnings.filterwarnings("ignore", message="`(is_)?gradient_checkpointing` is deprecated", category=FutureWarning)
    try:
        data_args, training_args, model_args, retrieval_args = parser.parse_args_and_config(args=argv)
        check_arguments(data_args, training_args, model_args, retrieval_args)
    except (ValueError, OSError) as err:  # a configuration's __post_init__ check, or check_arguments
        fail(parser.prog, str(err))
    try:
        return main(data_args, training_args, model_args, retrieval_args)
    except RecipeError as err:
        fail(parser.prog, str(err))
