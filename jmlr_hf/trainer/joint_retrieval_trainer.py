"""`JointRetrievalTrainer`: TRL's `SFTTrainer` with JMLR's joint retriever + LLM step.

One training step, for each question of the batch (JMLR, Wang et al. 2024, arXiv 2402.17887):

1. the retriever scores the question's N pre-retrieved candidates (all candidates of the batch in one pass);
2. S candidates are sampled without replacement from `softmax(score / τ)`;
3. without gradient, the LLM computes its answer NLL given each sampled document (`[doc; question] → answer`), in
   one batched forward (micro-batched if asked);
4. a retrieval loss (`llm_rank`, `lsr` or `ppl_distill`, see `jmlr_hf.losses`) trains the retriever to order the
   documents by those NLLs;
5. the top-K candidates by retriever score go before the question for the usual causal LM loss on the answer;
6. `loss = lm_loss + λ · retrieval_loss`; both parts and the retriever/LLM pairwise agreement are logged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase
from transformers.trainer_utils import enable_full_determinism, set_seed
from trl import SFTTrainer

from ..evaluation.retrieval import rank_candidates, retrieval_metrics
from ..losses import RETRIEVAL_LOSSES, pairwise_agreement
from ..models import (
    GENERATOR_ADAPTER_DIR,
    OPTION_LETTERS,
    RETRIEVER_TOKENIZER_DIR,
    JMLRConfig,
    JMLRForCausalLM,
    answer_nll,
    answer_targets,
    apply_peft_to_generator,
    build_target,
    eval_mode,
    fit_prompt,
    keep_4bit_layers_differentiable_on_cpu,
    kept_logits,
    target_token_ids,
    tokenize_for_lm,
    tokenize_for_retriever,
    truncate_to_tokens,
)
from ..utils.atomic import atomic_directory, recover_interrupted_swap
from .fsdp import all_reduce_retriever_gradients, configure_fsdp2
from .joint_retrieval_config import DEFAULT_MAX_PACKED_TOKENS, JointRetrievalConfig

logger = logging.getLogger(__name__)

RETRIEVAL_INPUT_KEYS = ("query_input_ids", "query_attention_mask", "doc_input_ids", "doc_attention_mask")


def sample_without_replacement(
    logits: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Indices `[B, num_samples]` drawn without replacement from `softmax(logits)` along the last dimension.

    Gumbel-top-k: the top-k of `logits + Gumbel noise` is an exact sample of k items without replacement from the
    softmax (the Plackett-Luce model), in one vectorised call.
    """
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    # Parenthesised: `-torch.log(u).clamp(...)` would clamp log(u) < 0 up to 1e-20 and negate it, giving NaN noise.
    gumbel = -torch.log((-torch.log(uniform.clamp(min=1e-20))).clamp(min=1e-20))
    return (logits.detach().float() + gumbel).topk(num_samples, dim=-1).indices


@dataclass
class JointRetrievalCollator:
    """Batches raw rows (`question`, `options`, `answer`, `rationale`, `candidates`) for the joint step.

    The retriever's inputs are tokenised here (`[B, Lq]` questions, `[B * N, Ld]` candidates). The generator's inputs
    depend on which documents the retriever picks, so the texts travel on and are tokenised in `compute_loss`;
    candidates are cut to `max_document_length` generator tokens here, once.
    """

    config: JMLRConfig
    retriever_tokenizer: PreTrainedTokenizerBase
    generator_tokenizer: PreTrainedTokenizerBase
    # Candidates that replace a row's own, by row id as a string (`str(row["id"])`: an integer id and its JSON key
    # are one row): set through `set_candidate_overrides` by `CandidateRefreshCallback` when it re-retrieves them
    # with the retriever being trained.
    candidate_overrides: dict[str, list[str]] = field(default_factory=dict)
    # Incremented by each `set_candidate_overrides`; every batch carries the version it was collated with.
    candidates_version: int = 0

    def set_candidate_overrides(self, overrides: dict[Any, Sequence[str]]) -> None:
        """Train on `overrides` (`{row id: [candidate texts]}`) from the next micro-batch on.

        Keys are stored as strings, so that integer ids match, also after a JSON round trip. Batches collated
        before this call (the dataloader collates one ahead) carry an older `candidates_version`, and
        [`JointRetrievalTrainer.training_step`] collates them again from their `rows`: the micro-batch after a
        refresh trains on the refreshed candidates, as it does in a run resumed from that step.
        """
        self.candidate_overrides = {str(key): list(value) for key, value in overrides.items()}
        self.candidates_version += 1

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.config
        num = cfg.num_candidates
        questions, options, targets, documents, row_ids = [], [], [], [], []
        cached = [row.get("candidate_nlls") is not None for row in features]
        if any(cached) and not all(cached):
            first = features[cached.index(False)]
            raise ValueError(
                f"row {first.get('id', '?')!r}: field 'candidate_nlls' is missing where other rows have it"
            )
        candidate_nlls = []
        for row in features:
            check_training_row(row, num)
            if row.get("candidate_nlls") is not None:
                if str(row.get("id")) in self.candidate_overrides:
                    raise ValueError(
                        f"row {row.get('id')!r}: cached 'candidate_nlls' belong to the row's own candidates, not to "
                        "refreshed ones; do not combine them with CandidateRefreshCallback"
                    )
                candidate_nlls.append(check_candidate_nlls(row, num))
            candidates = list(self.candidate_overrides.get(str(row.get("id")), row["candidates"]))
            if len(candidates) < num:
                raise ValueError(
                    f"row {row.get('id', '?')!r}: field 'candidates' has {len(candidates)} documents, fewer than "
                    f"num_candidates={num}"
                )
            row_options = list(row.get("options") or [])
            row_ids.append(str(row.get("id", "?")))
            questions.append(row["question"])
            options.append(row_options)
            row_id = row.get("id", "?")
            try:
                target = build_target(cfg, row["answer"], row.get("rationale"), row_options)
            except ValueError as err:
                raise ValueError(f"row {row_id!r}: field 'answer': {err}") from None
            # Counted as `tokenize_for_lm` appends it (leading space and EOS included), which raises without the row.
            target_tokens = len(target_token_ids(self.generator_tokenizer, target))
            if target_tokens >= cfg.max_length:
                raise ValueError(
                    f"row {row_id!r}: fields 'answer' + 'rationale': the target is {target_tokens} tokens, which leaves "
                    f"no room for the question within max_length={cfg.max_length}"
                )
            targets.append(target)
            documents.append(
                [
                    truncate_to_tokens(self.generator_tokenizer, doc, cfg.max_document_length)
                    for doc in candidates[:num]
                ]
            )
        query = tokenize_for_retriever(cfg, self.retriever_tokenizer, questions, is_query=True)
        docs = tokenize_for_retriever(
            cfg, self.retriever_tokenizer, [doc for row in documents for doc in row], is_query=False
        )
        return {
            "query_input_ids": query["input_ids"],
            "query_attention_mask": query["attention_mask"],
            "doc_input_ids": docs["input_ids"],
            "doc_attention_mask": docs["attention_mask"],
            "questions": questions,
            "options": options,
            "targets": targets,
            "documents": documents,
            "row_ids": row_ids,  # named by errors raised in compute_loss (e.g. a non-finite loss)
            # To collate the batch again if the candidates are refreshed before it trains (`set_candidate_overrides`).
            "rows": list(features),
            "candidates_version": self.candidates_version,
            **({"candidate_nlls": torch.tensor(candidate_nlls, dtype=torch.float32)} if candidate_nlls else {}),
        }


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite (`JointRetrievalConfig.nonfinite_loss="error"`); the message names the
    step, the batch's row ids and which part of the loss, and which rows, are not finite."""


class _SkippedMicroBatch(Exception):
    """Raised by `compute_loss` to drop a micro-batch whose loss is not finite (`nonfinite_loss="skip_step"`)."""


def check_training_row(row: dict[str, Any], num_candidates: int) -> None:
    """Raise a `ValueError` naming the row and the field when a training row cannot be trained on.

    What the collator would otherwise turn into garbage without a word: `candidates` given as one string (iterated
    as characters), empty or non-string texts (empty prompts, or a crash deep inside the tokenizer).
    """
    row_id = row.get("id", "?")
    for key in ("question", "answer"):
        value = row.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"row {row_id!r}: field {key!r} is {value!r}; expected a non-empty string")
    candidates = row.get("candidates")
    if candidates is None:
        raise ValueError(f"row {row_id!r} has no 'candidates'; run `jmlr retrieve` to add them")
    if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
        raise ValueError(
            f"row {row_id!r}: field 'candidates' is a {type(candidates).__name__}; expected a list of at least "
            f"{num_candidates} document texts"
        )
    for i, doc in enumerate(candidates[:num_candidates]):
        if not isinstance(doc, str) or not doc.strip():
            raise ValueError(f"row {row_id!r}: field 'candidates'[{i}] is {doc!r}; expected a non-empty string")
    # Options: a list of texts, or none. `None` is a null field (the QA schema writes `[]` for an open question),
    # and an answer letter without options would train as an open question whose answer is the letter.
    if "options" in row and row["options"] is None:
        raise ValueError(
            f"row {row_id!r}: field 'options' is None; expected a list of option texts ([] for an open question)"
        )
    options = row.get("options") or []
    if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
        raise ValueError(
            f"row {row_id!r}: field 'options' is a {type(options).__name__}; expected a list of option texts"
        )
    for i, text in enumerate(options):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"row {row_id!r}: field 'options'[{i}] is {text!r}; expected a non-empty string")
    answer = row["answer"].strip()
    if not options and len(answer) == 1 and answer in OPTION_LETTERS:
        raise ValueError(
            f"row {row_id!r}: field 'answer' {answer!r} is an option letter, but the row has no options (give them "
            "in 'options', or the answer's text for an open question)"
        )


def check_candidate_nlls(row: dict[str, Any], num_candidates: int) -> list[float]:
    """A row's cached answer NLLs, the first `num_candidates` of them, or a `ValueError` naming the row and the field.

    They must be one per candidate of the row (a list one longer or shorter than `candidates` has lost track of
    which NLL belongs to which document), each a finite number >= 0: an NLL is a negative log-probability, and
    log-probabilities passed by mistake (negative) would invert the preference the retriever learns."""
    values = row["candidate_nlls"]
    row_id = row.get("id", "?")
    candidates = row.get("candidates")
    expected = len(candidates) if isinstance(candidates, Sequence) else num_candidates
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(
            f"row {row_id!r}: field 'candidate_nlls' must hold one answer NLL per candidate ({expected}), got "
            f"{values!r}"
        )
    if len(values) != expected:
        raise ValueError(
            f"row {row_id!r}: field 'candidate_nlls' holds {len(values)} values for the row's {expected} candidates; "
            "expected one answer NLL per candidate, in the candidates' order"
        )
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"row {row_id!r}: field 'candidate_nlls'[{i}] is {value!r}; expected a finite number")
        if value < 0:
            raise ValueError(
                f"row {row_id!r}: field 'candidate_nlls'[{i}] is {value!r}; expected an NLL, a number >= 0 (negative "
                "values are log-probabilities: pass their negation)"
            )
    return [float(value) for value in values[:num_candidates]]


class JointRetrievalTrainer(SFTTrainer):
    """Joint retriever + LLM training (JMLR) as an [`~trl.SFTTrainer`].

    Args:
        model ([`JMLRForCausalLM`]): the generator and retriever to train.
        args ([`JointRetrievalConfig`]): training arguments.
        train_dataset, eval_dataset: rows with `question`, `options`, `answer`, `rationale` and `candidates` (the
            pre-retrieved documents, at least `num_candidates` of them).
        processing_class: the generator's tokenizer.
        retriever_tokenizer: the retriever's tokenizer (saved with every checkpoint in `retriever_tokenizer/`).
        peft_config: a PEFT config applied to the generator only; the retriever trains fully, at its own learning
            rate (the authors' code let PEFT freeze most of the retriever).

    Example (the offline demo models; use Hub ids such as `"meta-llama/Llama-2-7b-hf"` and
    `"colbert-ir/colbertv2.0"` for real runs):

    ```python
    >>> from datasets import Dataset
    >>> from transformers import AutoTokenizer
    >>> from jmlr_hf import JMLRForCausalLM, JointRetrievalConfig, JointRetrievalTrainer
    >>> from jmlr_hf.utils.demo_models import resolve_model_path

    >>> generator, retriever = resolve_model_path("smollm2-135m-instruct"), resolve_model_path("all-minilm-l6-v2")
    >>> model = JMLRForCausalLM.from_components(
    ...     generator, retriever, num_candidates=3, num_sampled=2, num_context_documents=1, max_length=256
    ... )
    >>> dataset = Dataset.from_list(
    ...     [
    ...         {
    ...             "question": "Which organ makes insulin?",
    ...             "options": ["Liver", "Pancreas", "Kidney"],
    ...             "answer": "B",
    ...             "rationale": "Beta cells of the pancreas secrete insulin.",
    ...             "candidates": ["The pancreas secretes insulin.", "The kidney filters blood.", "Bones hold calcium."],
    ...         }
    ...     ]
    ... )
    >>> args = JointRetrievalConfig(
    ...     output_dir="out", max_steps=1, retriever_learning_rate=3e-6, bf16=False, report_to=[], save_strategy="no"
    ... )
    >>> trainer = JointRetrievalTrainer(
    ...     model=model,
    ...     args=args,
    ...     train_dataset=dataset,
    ...     processing_class=AutoTokenizer.from_pretrained(generator),
    ...     retriever_tokenizer=AutoTokenizer.from_pretrained(retriever),
    ... )
    >>> trainer.train()  # doctest: +ELLIPSIS
    {'train_runtime': ...}
    TrainOutput(global_step=1, ...)

    ```
    """

    _tag_names = ["trl", "sft", "jmlr", "retrieval"]

    def __init__(
        self,
        model: JMLRForCausalLM,
        args: JointRetrievalConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class: PreTrainedTokenizerBase | None = None,
        retriever_tokenizer: PreTrainedTokenizerBase | None = None,
        data_collator=None,
        peft_config=None,
        **kwargs,
    ):
        if not isinstance(model, JMLRForCausalLM):
            raise TypeError(f"JointRetrievalTrainer trains a JMLRForCausalLM, got {type(model).__name__}")
        if not isinstance(args, JointRetrievalConfig):
            raise TypeError(f"args must be a JointRetrievalConfig, got {type(args).__name__}")
        if processing_class is None or retriever_tokenizer is None:
            raise ValueError("pass both tokenizers: processing_class (generator) and retriever_tokenizer")
        # Seeded before any weight is created here (the LoRA adapters below), as `Trainer.__init__` would seed only
        # after them: otherwise two runs with one seed start from different adapters (issue 24).
        if args.full_determinism:
            enable_full_determinism(args.seed)
        else:
            set_seed(args.seed)
        if args.max_length is not None and args.max_length != model.config.max_length:
            # TRL's sequence cap: here the length every prompt (documents + question + answer) is fitted to, which
            # the model's config carries so that the saved model answers under the cap it was trained with.
            logger.info("max_length=%d replaces the model's max_length=%d", args.max_length, model.config.max_length)
            model.config.max_length = args.max_length
        model.config.validate_retrieval_settings()
        if (
            model.config.retrieval_loss_weight > 0
            and model.config.num_sampled < 2
            and args.per_device_train_batch_size < 2
        ):
            # The config allows S = 1 when in-batch negatives give the retrieval loss something to compare; with one
            # question per micro-batch there are none (`compute_loss` needs B > 1), and the retriever would get no
            # gradient at all.
            raise ValueError(
                f"num_sampled=1 with in_batch_negatives needs per_device_train_batch_size >= 2 (got "
                f"{args.per_device_train_batch_size}): with one question per batch there are no in-batch negatives, "
                "and the retrieval loss would train nothing; raise the batch size or num_sampled"
            )
        if args.freeze_generator:
            if model.config.retrieval_loss_weight == 0:
                raise ValueError(
                    "freeze_generator=True with retrieval_loss_weight=0 trains nothing: the generator is frozen and "
                    "no loss reaches the retriever"
                )
            if peft_config is not None:
                raise ValueError("freeze_generator=True freezes the generator: its LoRA adapters would never train")
            model.generator.requires_grad_(False)
        elif "candidate_nlls" in (getattr(train_dataset, "column_names", None) or []):
            raise ValueError(
                "the training rows carry cached 'candidate_nlls', which are the answer NLLs of a frozen LLM: set "
                "freeze_generator=True, or drop the column so that a training LLM's NLLs are measured at every step"
            )
        if peft_config is not None:
            apply_peft_to_generator(model, peft_config)
            if args.gradient_checkpointing:
                model.generator.enable_input_require_grads()
        prepare_retriever_for_training(model)
        if keep_4bit_layers_differentiable_on_cpu(model):
            logger.info(
                "4-bit generator on a CPU with AVX-512 BF16: bitsandbytes' inference repacking (no backward) off"
            )
        if args.should_save:
            # Before the Trainer makes `output_dir`: a final save killed between the two renames of the swap's
            # fallback (macOS, NFS) left it missing, its previous contents (checkpoints included) renamed aside.
            recover_interrupted_swap(Path(os.path.realpath(args.output_dir)))
        if processing_class.pad_token_id is None:
            processing_class.pad_token = processing_class.eos_token
        self.retriever_tokenizer = retriever_tokenizer
        if data_collator is None:
            data_collator = JointRetrievalCollator(model.config, retriever_tokenizer, processing_class)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            peft_config=None,
            **kwargs,
        )
        # compute_loss does not use `num_items_in_batch`, so the Trainer must scale the loss for gradient
        # accumulation itself.
        self.model_accepts_loss_kwargs = False
        if self.is_fsdp_enabled:
            # FSDP2: the generator sharded by decoder layer, the retriever kept whole (see jmlr_hf/trainer/fsdp.py).
            configure_fsdp2(self.accelerator.state.fsdp_plugin, self.model)
        for callback in self.callback_handler.callbacks:
            self._bind_callback(callback)

    # ---------------------------------------------------------------------------------------------------------------
    # Logging: every figure goes through `log`, so that `report_to` (W&B, TensorBoard, ...) receives it.
    # ---------------------------------------------------------------------------------------------------------------
    def _bind_callback(self, callback) -> None:
        """Give a callback that measures something (e.g. [`RetrievalRecallCallback`]) this trainer, so that it logs
        through [`log_measurement`]: transformers passes callbacks no trainer, and one that appended to
        `state.log_history` itself would never reach the `report_to` integrations."""
        if hasattr(callback, "bind_trainer"):
            callback.bind_trainer(self)

    def add_callback(self, callback) -> None:
        super().add_callback(callback)
        for registered in self.callback_handler.callbacks:
            if registered is callback or type(registered) is callback:
                self._bind_callback(registered)

    def log_measurement(self, metrics: dict[str, float]) -> None:
        """Log `metrics` as an entry of their own (the `step` and `epoch` added, then every callback's `on_log`, the
        `report_to` integrations included), between the training logs.

        Not through `SFTTrainer.log`, which would fold the step metrics gathered since the last training log
        (`lm_loss`, `retrieval_loss`, ...) into this entry and clear them: the next training log would then lack
        them. Call it on every process; the integrations report from the main one.

        The training loop's pending `should_log` is kept: the callback handler clears it on every log, and a
        measurement taken in `on_step_end` would otherwise swallow that step's training log.
        """
        should_log = self.control.should_log
        super(SFTTrainer, self).log(dict(metrics))
        self.control.should_log = should_log

    # ---------------------------------------------------------------------------------------------------------------
    # Optimiser: separate learning rates for the generator and the retriever, no weight decay on biases and norms.
    # ---------------------------------------------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        args = self.args
        retriever_decay = args.weight_decay if args.retriever_weight_decay is None else args.retriever_weight_decay
        groups = {
            "generator_decay": {"params": [], "weight_decay": args.weight_decay, "lr": args.learning_rate},
            "generator_no_decay": {"params": [], "weight_decay": 0.0, "lr": args.learning_rate},
            "retriever_decay": {"params": [], "weight_decay": retriever_decay, "lr": args.retriever_learning_rate},
            "retriever_no_decay": {"params": [], "weight_decay": 0.0, "lr": args.retriever_learning_rate},
        }
        for name, param in opt_model.named_parameters():
            if not param.requires_grad:
                continue
            part = "retriever" if is_retriever_parameter(name) else "generator"
            groups[f"{part}_{'decay' if name in decay else 'no_decay'}"]["params"].append(param)
        param_groups = []
        for group_name, group in groups.items():
            if group["params"]:
                param_groups.append({**group, "name": group_name})
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(args, opt_model)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    # ---------------------------------------------------------------------------------------------------------------
    # The joint step
    # ---------------------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if model.training else "eval"
        jmlr: JMLRForCausalLM = self.accelerator.unwrap_model(model)
        cfg = jmlr.config
        tokenizer = self.processing_class
        retrieval_inputs = {key: inputs[key] for key in RETRIEVAL_INPUT_KEYS}
        questions, options, targets, documents = (
            inputs["questions"],
            inputs["options"],
            inputs["targets"],
            inputs["documents"],
        )
        batch_size = len(questions)
        device = inputs["query_input_ids"].device

        # 1-2. Choose documents with a no-gradient scoring pass; the scores with gradient come in step 5's forward.
        # Dropout off: the choice is a measurement (and the RAG-SFT baseline's "frozen retriever top K" must not be
        # a random draw).
        top = None
        if cfg.num_context_documents > 0:
            with torch.no_grad(), eval_mode(jmlr.retriever):
                choice_scores = model(**retrieval_inputs).retrieval_scores.float()
            choice_logits = scores_to_logits(choice_scores, choice_scores, cfg)
            top = choice_logits.topk(cfg.num_context_documents, dim=-1).indices  # [B, K]
        # The LM batch with the top-K documents; a frozen generator (which `__init__` only allows with a retrieval
        # loss) computes no LM loss, so its prompts are not built.
        lm_batch = None
        if not self.args.freeze_generator:
            lm_batch = tokenize_for_lm(
                tokenizer,
                [
                    fit_prompt(
                        tokenizer,
                        cfg,
                        questions[b],
                        [] if top is None else [documents[b][i] for i in top[b].tolist()],
                        options[b],
                        targets[b],
                    )
                    for b in range(batch_size)
                ],
                targets,
                cfg.max_length,
            )
            lm_batch = {k: v.to(device) for k, v in lm_batch.items()}
        if cfg.retrieval_loss_weight == 0:
            # The baselines: SFT without documents (K = 0) or RAG-SFT with a fixed retriever's top K. No NLL pass and
            # no retrieval loss, so the retriever gets no gradient.
            outputs = lm_forward(model, lm_batch)
            if mode == "train":
                self._check_finite_loss(outputs.loss, inputs, {"lm_loss": outputs.loss}, {})
            self._metrics[mode]["lm_loss"].append(self._mean_across_processes(outputs.loss))
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        sampled = sample_without_replacement(
            choice_logits, cfg.num_sampled, generator=self._sampling_generator(mode, choice_logits.device)
        )  # [B, S]

        # 3. Answer NLL given each sampled document: one batched no-gradient forward over the B x S sequences — or,
        # with a frozen LLM whose NLLs were measured once (the rows' `candidate_nlls`), those.
        if "candidate_nlls" in inputs:
            lm_nll = inputs["candidate_nlls"].to(device).gather(1, sampled)
        else:
            lm_nll = self._nll_pass(model, jmlr, inputs, sampled, device)

        # 5. LM loss with the top-K documents before the question; the retriever's scores with gradient, same call.
        # With a frozen generator only the retriever runs (through the wrapped model, for DDP's gradient sync).
        use_negatives = cfg.in_batch_negatives and batch_size > 1
        if self.args.freeze_generator:
            outputs = model(**retrieval_inputs, score_all_pairs=use_negatives)
            lm_loss = None
        else:
            outputs = lm_forward(model, lm_batch, **retrieval_inputs, score_all_pairs=use_negatives)
            lm_loss = outputs.loss
        scores = outputs.retrieval_scores  # [B, N], or [B, B * N] with negatives
        own_scores = split_in_batch_scores(scores, cfg.num_candidates)[0] if use_negatives else scores
        logits = scores_to_logits(scores, own_scores, cfg)
        negative_logits = None
        if use_negatives:
            logits, negative_logits = split_in_batch_scores(logits, cfg.num_candidates)

        # 4. Retrieval loss on the sampled documents.
        sampled_logits = logits.gather(1, sampled)
        retrieval_loss = self._retrieval_loss(cfg, sampled_logits, lm_nll, negative_logits)
        loss = cfg.retrieval_loss_weight * retrieval_loss
        parts = {"retrieval_loss": retrieval_loss}
        if lm_loss is not None:
            loss = lm_loss + loss
            parts = {"lm_loss": lm_loss, **parts}
        if mode == "train":
            self._check_finite_loss(loss, inputs, parts, {"answer NLLs": lm_nll, "retriever scores": own_scores})

        # 6. Logging.
        metrics = self._metrics[mode]
        if lm_loss is not None:
            metrics["lm_loss"].append(self._mean_across_processes(lm_loss))
        metrics["retrieval_loss"].append(self._mean_across_processes(retrieval_loss))
        # Every rank takes part in every gather, also when its own agreement is undefined (all NLLs tied): a rank
        # that skipped a collective would hang the others.
        agreement = self._mean_across_processes(pairwise_agreement(sampled_logits, lm_nll))
        if not math.isnan(agreement):
            metrics["retrieval_agreement"].append(agreement)
        metrics["sampled_nll_mean"].append(self._mean_across_processes(lm_nll.mean()))
        best_is_top1 = (sampled.gather(1, lm_nll.argmin(-1, keepdim=True)).squeeze(1) == top[:, 0]).float().mean()
        metrics["lm_best_is_retriever_top1"].append(self._mean_across_processes(best_is_top1))
        return (loss, outputs) if return_outputs else loss

    def _check_finite_loss(
        self,
        loss: torch.Tensor,
        inputs: dict[str, Any],
        parts: dict[str, torch.Tensor],
        per_row: dict[str, torch.Tensor],
    ) -> None:
        """Stop the run (`nonfinite_loss="error"`) or the micro-batch (`"skip_step"`) when the loss is NaN or infinite
        on any process, naming the step, the batch's rows, the loss's parts and the rows whose `per_row` values
        (`[B, ...]`) are not finite.

        A collective when training on several processes: all of them must skip together (a process that skipped
        its backward would leave the others waiting in the gradient all-reduce).
        """
        finite = torch.isfinite(loss.detach()).reshape(1)
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.gather(finite.to(torch.int32)).bool()
        if bool(finite.all()):
            return
        row_ids = list(inputs.get("row_ids") or [])
        described = ", ".join(f"{name} {float(value.detach()):g}" for name, value in parts.items())
        message = (
            f"step {self.state.global_step + 1}: the training loss is {float(loss.detach()):g} ({described}) for the batch rows "
            f"{row_ids}"
        )
        for name, values in per_row.items():
            bad = (~torch.isfinite(values.detach().reshape(values.shape[0], -1))).any(-1).nonzero().flatten().tolist()
            if bad:
                message += f"; non-finite {name} in rows {[row_ids[i] if i < len(row_ids) else i for i in bad]}"
        if bool(torch.isfinite(loss.detach())):
            message += " (finite on this process; another process's is not)"
        if self.args.nonfinite_loss == "error":
            raise NonFiniteLossError(
                message + ". Set nonfinite_loss='skip_step' to skip such micro-batches instead of stopping."
            )
        raise _SkippedMicroBatch(message)

    def training_step(self, model, inputs, num_items_in_batch=None):
        """[`~transformers.Trainer.training_step`], except that with `nonfinite_loss="skip_step"` a micro-batch whose
        loss is not finite on any process makes its whole optimizer step change no weight, on every process: the
        micro-batch runs no backward, a warning names it, its returned loss is NaN (which transformers'
        `logging_nan_inf_filter`, on by default, leaves out of the logged loss), and at the step's last micro-batch
        every gradient is dropped; the skipped step is counted.

        Why the whole step and not only the micro-batch: under DDP (or FSDP) with gradient accumulation the earlier
        micro-batches run under `no_sync` and only the last one all-reduces. Were that one skipped and the step taken,
        each process would apply its own unreduced gradients and the replicas would diverge. The skip is decided by a
        collective (`_check_finite_loss`), so every process drops the same step.

        A batch collated before the last `CandidateRefreshCallback` refresh is collated again first (see
        [`JointRetrievalCollator.set_candidate_overrides`]).
        """
        version = getattr(self.data_collator, "candidates_version", None)
        if version is not None and inputs.get("candidates_version", version) != version:
            # Collated before the last candidate refresh (the dataloader collates one batch ahead): again, with the
            # refreshed candidates, so that what trains does not depend on how far ahead batches are fetched.
            inputs = self.data_collator(inputs["rows"])
        try:
            loss = super().training_step(model, inputs, num_items_in_batch)
        except _SkippedMicroBatch as skipped:
            self._nonfinite_in_step = True
            logger.warning(
                "Skipped a micro-batch (nonfinite_loss='skip_step'; its optimizer step changes no weight): %s", skipped
            )
            loss = torch.tensor(float("nan"), device=self.args.device)
        if self.accelerator.sync_gradients and getattr(self, "_nonfinite_in_step", False):
            # The step's last micro-batch: the optimizer step that follows finds no gradient, and torch's optimizers
            # leave a parameter without one alone (its moments included).
            model.zero_grad(set_to_none=True)
            self._nonfinite_in_step = False
            self._nonfinite_skipped = getattr(self, "_nonfinite_skipped", 0) + 1
        elif self.accelerator.sync_gradients and self.is_fsdp_enabled:
            # FSDP2 reduce-scatters the generator's gradients; the retriever it ignores is averaged here.
            all_reduce_retriever_gradients(self.accelerator.unwrap_model(model), self.accelerator.num_processes)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Training logs carry the number of optimizer steps skipped for a non-finite loss, once there is one.
        if getattr(self, "_nonfinite_skipped", 0) and "loss" in logs:
            logs["nonfinite_steps_skipped"] = float(self._nonfinite_skipped)
        super().log(logs, start_time)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """[`~transformers.Trainer.train`]; with `resume_from_checkpoint=True` it resumes from the last *complete*
        checkpoint of `output_dir` (see [`last_complete_checkpoint`]), where transformers takes the highest-numbered
        one even when a kill interrupted its writing."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir, self.args.save_only_model)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _sampling_generator(self, mode: str, device: torch.device) -> torch.Generator:
        """The random stream of this process for this micro-batch: seeded from (seed, process index, mode, global
        step, micro-batch within the step).

        Every process draws its own documents (with one global seed they would all add the same Gumbel noise), the
        same ones on every run, and a run resumed from a checkpoint draws exactly what the uninterrupted run drew,
        with no generator state to save.
        """
        step = self.state.global_step
        counters = self.__dict__.setdefault("_sampling_counters", {})
        last_step, calls = counters.get(mode, (None, 0))
        calls = calls + 1 if last_step == step else 0
        counters[mode] = (step, calls)
        key = f"{self.args.seed}:{self.accelerator.process_index}:{mode}:{step}:{calls}".encode()
        generator = torch.Generator(device=device)
        generator.manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "big") & (2**63 - 1))
        return generator

    def _nll_pass(self, model, jmlr: JMLRForCausalLM, inputs: dict[str, Any], sampled: torch.Tensor, device):
        """The answer NLL `[B, S]` given each sampled document alone, one batched no-gradient pass."""
        cfg = jmlr.config
        questions, options, targets, documents = (inputs[k] for k in ("questions", "options", "targets", "documents"))
        batch_size = len(questions)
        nll_batch = tokenize_for_lm(
            self.processing_class,
            [
                fit_prompt(self.processing_class, cfg, questions[b], [documents[b][i]], options[b], targets[b])
                for b in range(batch_size)
                for i in sampled[b].tolist()
            ],
            [targets[b] for b in range(batch_size) for _ in range(cfg.num_sampled)],
            cfg.max_length,
        )
        return self._answer_nll(model, jmlr, nll_batch, device).view(batch_size, cfg.num_sampled)

    def _answer_nll(self, model, jmlr: JMLRForCausalLM, batch: dict[str, torch.Tensor], device) -> torch.Tensor:
        """The answer NLLs of the no-gradient pass, through `model` as the Trainer wrapped it (DDP, FSDP, DeepSpeed):
        calling the unwrapped generator would bypass FSDP's all-gather of the sharded weights."""
        ids, mask, labels = (batch[key].to(device) for key in ("input_ids", "attention_mask", "labels"))
        micro_batch_size = self.args.nll_micro_batch_size
        # Dropout off: the NLLs are a measurement, and a noisy one would blur the ranking target.
        with eval_mode(jmlr.generator):
            packed = self._padding_free(jmlr, device)
            nll = answer_nll(
                model,
                ids,
                mask,
                labels,
                micro_batch_size=micro_batch_size,
                packed=packed,
                max_packed_tokens=self._max_packed_tokens(jmlr) if packed else None,
            )
            if packed and not getattr(self, "_padding_free_checked", False):
                padded = answer_nll(model, ids, mask, labels, micro_batch_size=micro_batch_size)
                self._check_padding_free(nll, padded, jmlr)
                if not self._nll_padding_free:
                    nll = padded
        return nll

    def _padding_free(self, jmlr: JMLRForCausalLM, device: torch.device) -> bool:
        """Whether the NLL pass packs its sequences (`nll_padding_free`; `None`: on a CPU or with flash attention)."""
        if not hasattr(self, "_nll_padding_free"):
            setting = self.args.nll_padding_free
            if setting is None:
                setting = device.type == "cpu" or _flash_attention(jmlr)
            self._nll_padding_free = bool(setting)
        return self._nll_padding_free

    def _max_packed_tokens(self, jmlr: JMLRForCausalLM) -> int | None:
        """The NLL pass's longest packed row (`nll_max_packed_tokens`; `None`: `DEFAULT_MAX_PACKED_TOKENS`, uncapped
        with flash attention, whose variable-length kernels spend nothing on a long row)."""
        if self.args.nll_max_packed_tokens is not None:
            return self.args.nll_max_packed_tokens
        return None if _flash_attention(jmlr) else DEFAULT_MAX_PACKED_TOKENS

    def _check_padding_free(self, packed: torch.Tensor, padded: torch.Tensor, jmlr: JMLRForCausalLM) -> None:
        """Packed NLLs must equal padded ones, to the generator's precision ([`packing_tolerance`]): a model whose
        attention ignores packed `position_ids` lets each sequence see the ones before it, and its NLLs would rank
        documents by their neighbours."""
        self._padding_free_checked = True
        tolerance = packing_tolerance(jmlr.generator, packed.device)
        # Every rank decides the same way: one rank packing while another pads would still train, but differently.
        difference = self.accelerator.gather((packed - padded).abs().max().float().reshape(1)).max().item()
        if difference <= tolerance:
            return
        message = (
            f"the generator ({type(jmlr.generator).__name__}, attention {jmlr.generator.config._attn_implementation!r}) "
            f"does not follow packed sequences: padding-free NLLs differ from padded ones by {difference:.3g} "
            f"(more than the {tolerance:.3g} its precision explains)"
        )
        if self.args.nll_padding_free:
            raise ValueError(f"{message}; set nll_padding_free=False")
        logger.warning("%s; the NLL pass pads its sequences instead", message)
        self._nll_padding_free = False

    @staticmethod
    def _retrieval_loss(cfg: JMLRConfig, sampled_logits, lm_nll, negative_logits) -> torch.Tensor:
        if cfg.retrieval_loss == "llm_rank":
            return RETRIEVAL_LOSSES["llm_rank"](
                sampled_logits,
                lm_nll,
                negative_logits=negative_logits,
                min_nll_gap=cfg.llm_rank_min_nll_gap,
                weight_by_nll_gap=cfg.llm_rank_pair_weighting == "nll_gap",
            )
        kwargs = {"lm_temperature": cfg.lm_temperature, "negative_logits": negative_logits}
        if cfg.retrieval_loss == "lsr":
            kwargs["negative_mass"] = cfg.in_batch_negative_mass
        return RETRIEVAL_LOSSES[cfg.retrieval_loss](sampled_logits, lm_nll, **kwargs)

    def _mean_across_processes(self, value: torch.Tensor) -> float:
        """The mean over processes of a scalar, leaving out the processes where it is NaN (NaN if it is everywhere).

        A collective: every process must call it the same number of times, whatever its value.
        """
        gathered = self.accelerator.gather(value.detach().float().reshape(1))
        valid = gathered[~torch.isnan(gathered)]
        return valid.mean().item() if valid.numel() else float("nan")

    def evaluation_loop(
        self,
        dataloader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ):
        """The Trainer's loop (the joint loss and its parts, averaged over the evaluation rows, with the same
        sampling stream on every run), plus the retrieval metrics of the current retriever on those rows when they
        have gold documents: `recall@1`, `recall@K` and `evidence@1` of its ranking of each row's candidates (K =
        `num_context_documents`), as `jmlr evaluate` and the training script measure them."""
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        dataset = getattr(dataloader, "dataset", None)
        columns = set(getattr(dataset, "column_names", None) or [])
        if {"question", "candidates", "candidate_ids", "gold_doc_ids"} <= columns:
            jmlr = self.accelerator.unwrap_model(self.model)
            with eval_mode(jmlr):
                rankings = rank_candidates(
                    jmlr, self.retriever_tokenizer, dataset, self.args.eval_batch_size, show_progress=False
                )
            k = max(1, jmlr.config.num_context_documents)
            for key, value in retrieval_metrics(dataset, rankings, k).items():
                if not math.isnan(value):
                    output.metrics[f"{metric_key_prefix}_{key}"] = value
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # The joint loss has no logits worth returning (the top-K prompts differ per example).
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # ---------------------------------------------------------------------------------------------------------------
    # Saving: the retriever is part of the model's state dict, so every checkpoint and `save_model` includes it and
    # `resume_from_checkpoint` restores it. Its tokenizer goes along.
    # ---------------------------------------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            self.retriever_tokenizer.save_pretrained(os.path.join(output_dir, RETRIEVER_TOKENIZER_DIR))

    def _save_checkpoint(self, model, trial) -> None:
        # A checkpoint is written in place: the Trainer adds the optimizer and trainer_state.json (last) to the folder
        # after the model, and `last_complete_checkpoint` passes over one whose writing did not finish.
        self._writing_checkpoint = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._writing_checkpoint = False

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model (weights, config, both tokenizers, training arguments) for `from_pretrained`, crash-safely.

        A run killed while saving must not leave a folder that `from_pretrained` loads half-written weights from, or
        fails on without saying why. So the model is written into a temporary sibling of `output_dir` and swapped in
        whole ([`~jmlr_hf.utils.atomic.atomic_directory`]): after a kill, `output_dir` holds the previous save or
        this one, never a mix; the temporary folder left behind is removed by the next save into `output_dir`.

        What else `output_dir` holds stays, as it would with the Trainer's in-place save: `checkpoint-*` folders, an
        `index/`, `runs/`, a README or results files are carried over into the new folder as hard links (no copy,
        and present at every moment). Only the files of a previous save's *model* that this save does not rewrite
        are dropped ([`is_saved_model_file`]: weights of another format or sharding, a PEFT adapter), since
        `from_pretrained` could load them instead of, or with, the new weights.

        Where `output_dir` cannot be swapped — a mount point (a container or Kubernetes volume), a parent folder the
        process cannot write — the model is saved in place instead, with a warning: written whole in a staging folder
        inside `output_dir`, then renamed file by file over the previous save, the checkpoints left where they are.

        Only the main process writes (`args.should_save`). Checkpoints (`_save_checkpoint`) are written in place as
        before. Not atomic, and unchanged from the Trainer's: FSDP, DeepSpeed, TPU (XLA), SageMaker model parallel
        and models sharded at load time, whose saves gather weights with collectives on every rank or write sharded
        files from several processes into `output_dir` itself.
        """
        if output_dir is None:
            output_dir = self.args.output_dir
        if getattr(self, "_writing_checkpoint", False) or not self._final_save_is_atomic():
            super().save_model(output_dir, _internal_call=_internal_call)
            return
        if self.args.should_save:
            with atomic_directory(output_dir, keep=lambda name: not is_saved_model_file(name)) as tmp:
                self._save(str(tmp))
            logger.info("Saved the model to %s", output_dir)
        # As the Trainer's save_model: push when the user calls it (not from push_to_hub, which calls it itself).
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _final_save_is_atomic(self) -> bool:
        """Whether `save_model` takes the Trainer's plain path (one process writes the whole model), which can be
        redirected to a temporary folder; the others write from several ranks or through the backend's own files."""
        from transformers.utils import is_sagemaker_mp_enabled, is_torch_xla_available

        return not (
            is_torch_xla_available()
            or is_sagemaker_mp_enabled()
            or self.is_fsdp_enabled
            or self.is_deepspeed_enabled
            or getattr(self, "is_distributed_loading_by_transformers", False)
        )


# Files a save of a model writes at the top of its folder that `from_pretrained` (transformers or PEFT, of the model,
# its tokenizer or its generation config) may read: weights in any format, sharded or not, with their index, a PEFT
# adapter with its config, the tokenizer's files (a fast or slow tokenizer's vocabulary, its config, its chat
# templates) and the generation config. A new save drops the previous save's ones that it does not rewrite: a chat
# template or a vocabulary file the new tokenizer no longer has would otherwise be loaded with it.
_SAVED_MODEL_FILE = re.compile(
    r"(?:(?:model|pytorch_model|adapter_model|tf_model|flax_model)(?:-\d{5}-of-\d{5})?"
    r"\.(?:safetensors|bin|h5|msgpack|ckpt\.index)(?:\.index\.json)?|adapter_config\.json"
    r"|tokenizer(?:_config)?\.json|tokenizer\.model|special_tokens_map\.json|added_tokens\.json"
    r"|vocab\.(?:json|txt)|merges\.txt|(?:spiece|sentencepiece\.bpe)\.model|chat_template\.(?:jinja|json)"
    r"|additional_chat_templates|generation_config\.json)"
)


def is_saved_model_file(name: str) -> bool:
    """Whether a top-level entry of a model folder belongs to a saved model (weights, tokenizer, generation config;
    see `save_model`): such files of an earlier save are not carried over, where anything else in the folder is."""
    return name == GENERATOR_ADAPTER_DIR or _SAVED_MODEL_FILE.fullmatch(name) is not None


# What a checkpoint folder holds once `Trainer._save_checkpoint` has finished: the weights, the optimizer state unless
# `save_only_model`, and `trainer_state.json`, which it writes last (after every other file, on every backend). The
# weights and the optimizer take the forms `Trainer._load_from_checkpoint` and `_load_optimizer_and_scheduler` read:
# the model's own files (these), FSDP's (`pytorch_model_fsdp*.bin`, `optimizer*.bin`, or the folders of a sharded
# state dict), a PEFT adapter in a subfolder, or DeepSpeed's engine folder `global_stepN/` (its model states, and
# under ZeRO-3 without gathered weights the only copy of them; its optimizer shards).
CHECKPOINT_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
_FSDP_WEIGHTS = re.compile(r"pytorch_model_fsdp.*")
_FSDP_OPTIMIZER = re.compile(r"optimizer(?:_\d+)?(?:\.bin)?")
_DEEPSPEED_ENGINE = re.compile(r"global_step\d+")


def _checkpoint_parts(path: str) -> tuple[bool, bool]:
    """`(has weights, has an optimizer state)` of a checkpoint folder, in any of the forms the Trainer resumes from
    (see `CHECKPOINT_WEIGHTS`). A folder counts only with a file in it: the backends create theirs before writing."""

    def nonempty(folder: str) -> bool:
        return os.path.isdir(folder) and any(os.scandir(folder))

    weights = optimizer = False
    for entry in os.scandir(path):
        name = entry.name
        if entry.is_file():
            weights |= name in CHECKPOINT_WEIGHTS or (
                _FSDP_WEIGHTS.fullmatch(name) is not None and name.endswith(".bin")
            )
            optimizer |= name == "optimizer.pt" or (
                _FSDP_OPTIMIZER.fullmatch(name) is not None and name.endswith(".bin")
            )
        elif entry.is_dir():
            files = os.listdir(entry.path)
            if _DEEPSPEED_ENGINE.fullmatch(name):
                weights |= any(file.endswith("model_states.pt") for file in files)
                optimizer |= any(file.endswith("optim_states.pt") for file in files)
            elif _FSDP_WEIGHTS.fullmatch(name):
                weights |= nonempty(entry.path)
            elif _FSDP_OPTIMIZER.fullmatch(name):
                optimizer |= nonempty(entry.path)
            else:  # a PEFT adapter saved in a subfolder (several adapters)
                weights |= any(file in ("adapter_model.safetensors", "adapter_model.bin") for file in files)
    return weights, optimizer


def last_complete_checkpoint(output_dir: str, save_only_model: bool = False) -> str:
    """The highest-numbered `checkpoint-N` folder of `output_dir` whose writing finished, with a warning for each
    newer one that did not (a run killed while saving leaves one behind).

    The folders considered are those transformers' `get_last_checkpoint` considers; complete means:
    `trainer_state.json` parses and has `global_step`, the weights are there and so is an optimizer state (unless
    `save_only_model`), each in any of the forms the Trainer resumes from, DeepSpeed's and FSDP's included (see
    `CHECKPOINT_WEIGHTS`). Raises `ValueError` when no checkpoint is complete.
    """
    import json

    # A final save killed between the two renames of the swap's fallback leaves `output_dir` missing or, once a
    # Trainer has recreated it, empty: the previous folder, checkpoints included, is renamed back first.
    recover_interrupted_swap(Path(os.path.realpath(output_dir)))
    folders = [
        name
        for name in os.listdir(output_dir)
        if re.fullmatch(r"checkpoint-\d+", name) and os.path.isdir(os.path.join(output_dir, name))
    ]
    folders.sort(key=lambda name: int(name.split("-")[1]), reverse=True)
    incomplete = []
    for name in folders:
        path = os.path.join(output_dir, name)
        has_weights, has_optimizer = _checkpoint_parts(path)
        missing = [] if has_weights else ["weights"]
        if not save_only_model and not has_optimizer:
            missing.append("an optimizer state")
        try:
            with open(os.path.join(path, "trainer_state.json")) as file:
                if "global_step" not in json.load(file):
                    missing.append("trainer_state.json's global_step")
        except (OSError, ValueError):
            missing.append("a readable trainer_state.json")
        if not missing:
            for skipped, what in incomplete:
                logger.warning("Skipping %s: its writing did not finish (it lacks %s)", skipped, ", ".join(what))
            if incomplete:
                logger.warning("Resuming from %s, the last complete checkpoint", path)
            return path
        incomplete.append((path, missing))
    details = "; ".join(f"{path} lacks {', '.join(what)}" for path, what in incomplete) or "there is none"
    raise ValueError(f"resume_from_checkpoint=True but {output_dir} has no complete checkpoint: {details}")


def packing_tolerance(generator: torch.nn.Module, device: torch.device) -> float:
    """How far packed NLLs may be from padded ones for a generator that does follow packed sequences.

    The two layouts run the same arithmetic in another order, so they agree to the precision the generator computes
    in: its weights' dtype, or autocast's where autocast is on (the NLLs themselves are always float32, see
    `chunked_token_nll`, so their dtype says nothing). Float32: 1e-3. Lower precision: 32 machine epsilons, 0.25 in
    bf16 and 0.031 in fp16. Measured on a 20-sequence batch of SmolLM2-135M on CPU: bf16 weights differ by 0.065,
    bf16 autocast by 0.027, float32 by 4e-6; the same batch packed into one causal row (a model that ignores packed
    `position_ids`, which the check exists to catch) differs by 0.2 to 3.2 on most sequences. The bf16 bound leaves
    a deeper model (7B) about four times SmolLM2's rounding.
    """
    dtypes = {param.dtype for param in generator.parameters() if param.is_floating_point()}
    if torch.is_autocast_enabled(device.type):
        dtypes.add(torch.get_autocast_dtype(device.type))
    eps = max((torch.finfo(dtype).eps for dtype in dtypes), default=torch.finfo(torch.float32).eps)
    return 1e-3 if eps <= torch.finfo(torch.float32).eps else 32 * eps


def is_retriever_parameter(name: str) -> bool:
    """Whether a parameter name (as `named_parameters` gives it, possibly under a DDP/compile wrapper) is the
    retriever's."""
    parts = name.split(".")
    return "retriever" in parts and "generator" not in parts[: parts.index("retriever")]


def lm_forward(model, lm_batch: dict[str, torch.Tensor], **kwargs):
    """The joint model's forward on a right-padded LM batch, with `outputs.loss` the mean NLL over the answer tokens.

    The same loss as a causal LM's own (token-level mean, labels -100 ignored), but logits are computed only at the
    positions that predict an answer token (`logits_to_keep` as a boolean mask): the documents and the question need
    none, and their full-vocabulary logits (and gradients) would be most of the step's activation memory.
    `outputs.logits` holds those `[n_answer_tokens, V]` logits.
    """
    keep, target = answer_targets(lm_batch["labels"])
    outputs = model(
        input_ids=lm_batch["input_ids"],
        attention_mask=lm_batch["attention_mask"],
        logits_to_keep=keep,
        use_cache=False,
        **kwargs,
    )
    outputs.logits = kept_logits(outputs.logits, keep)
    outputs.loss = F.cross_entropy(outputs.logits.float(), target) if target.numel() else outputs.logits.sum() * 0
    return outputs


def scores_to_logits(scores: torch.Tensor, own_scores: torch.Tensor, config: JMLRConfig) -> torch.Tensor:
    """Retriever scores → the logits of the sampling distribution and of the retrieval losses.

    `score_scaling="temperature"`: `s / τ`. `"minmax"`: each question's scores rescaled to [0, 1] by the minimum and
    maximum over its own N candidates (`own_scores`, `[B, N]`), then `/ τ`; other questions' candidates (in-batch
    negatives) are rescaled by the same two numbers. Min-max makes τ independent of how spread out an encoder's raw
    scores are.
    """
    if config.score_scaling == "temperature":
        return scores / config.retrieval_temperature
    low = own_scores.min(dim=-1, keepdim=True).values
    span = (own_scores.max(dim=-1, keepdim=True).values - low).clamp(min=1e-6)
    return (scores - low) / span / config.retrieval_temperature


def _flash_attention(jmlr: JMLRForCausalLM) -> bool:
    """Whether the generator's attention is a flash-attention kernel, which attends within packed sequences only
    (variable-length): packing is exact and a long packed row costs nothing extra."""
    return "flash" in str(getattr(jmlr.generator.config, "_attn_implementation", None) or "")


def split_in_batch_scores(all_pairs: torch.Tensor, num_candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split `[B, B * N]` all-pairs logits into each question's own candidates `[B, N]` and the other questions'
    candidates `[B, (B - 1) * N]`, its in-batch negatives."""
    batch_size = all_pairs.shape[0]
    own = torch.eye(batch_size, dtype=torch.bool, device=all_pairs.device).repeat_interleave(num_candidates, dim=1)
    return (
        all_pairs[own].view(batch_size, num_candidates),
        all_pairs[~own].view(batch_size, (batch_size - 1) * num_candidates),
    )


def prepare_retriever_for_training(model: JMLRForCausalLM) -> None:
    """Make the retriever trainable the way the model's settings say, or frozen when nothing would train it.

    * With `retrieval_loss_weight = 0` (the SFT and RAG-SFT baselines) no loss reaches the retriever: it is frozen,
      so that it is left out of the optimizer and DDP does not wait for gradients that never come (with gradient
      checkpointing, transformers sets `find_unused_parameters=False`, and an unused trainable parameter is an
      error).
    * Otherwise its weights are kept in float32 even when the model was loaded in bf16/fp16: at the paper's
      retriever learning rate (3e-6) AdamW's updates are below bf16's resolution for most weights (20 steps on bf16
      weights ~N(0, 0.03) changed 2.5% of the entries), so a bf16 retriever silently stops learning. Autocast still
      runs its matmuls in bf16; only the master weights and the optimizer state are float32.
    """
    retriever = model.retriever
    if model.config.retrieval_loss_weight == 0:
        retriever.requires_grad_(False)
        return
    retriever.requires_grad_(True)
    for tower in (retriever.document_encoder, retriever.document_linear):
        if tower is not None:  # query-side-only training: the document tower stays as it is
            tower.requires_grad_(False)
    if any(param.dtype != torch.float32 for param in retriever.parameters()):
        low = sorted({str(param.dtype) for param in retriever.parameters() if param.dtype != torch.float32})
        logger.info("Keeping the retriever's trainable weights in float32 (they were %s)", ", ".join(low))
        retriever.float()


__all__ = [
    "JointRetrievalCollator",
    "JointRetrievalTrainer",
    "check_candidate_nlls",
    "check_training_row",
    "eval_mode",
    "is_retriever_parameter",
    "is_saved_model_file",
    "last_complete_checkpoint",
    "lm_forward",
    "packing_tolerance",
    "prepare_retriever_for_training",
    "sample_without_replacement",
    "scores_to_logits",
    "split_in_batch_scores",
]
