"""[`JointRetrievalConfig`]: the training arguments of [`JointRetrievalTrainer`] (TRL's `SFTConfig` plus the retriever's
optimiser settings and the micro-batching of the no-gradient NLL pass)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig

#: The NLL pass's longest packed row when `nll_max_packed_tokens` is `None` and the attention kernel computes a packed
#: row's whole T x T scores (SDPA, eager). At 512-1,024 the pass of 32 MedQuAD sequences ran as fast as padded ones on
#: a 2-core CPU, at 2,048 1.2x slower, as one row of 5,815 tokens 2.3x slower (docs/PERFORMANCE.md).
DEFAULT_MAX_PACKED_TOKENS = 1024


@dataclass
class JointRetrievalConfig(SFTConfig):
    r"""
    Configuration class for the [`JointRetrievalTrainer`].

    Everything of [`~trl.SFTConfig`] (and so of [`~transformers.TrainingArguments`]), plus the parameters below. The
    retrieval knobs that describe the model (N, S, K, τ, β, λ, the loss, the scoring, the prompt templates) live in
    [`JMLRConfig`], so that a saved model carries them; this class holds how to *train* it. Using
    [`~transformers.HfArgumentParser`] (or TRL's `TrlParser`, as `recipes/train.py` does) it becomes command-line
    arguments.

    Parameters:
        > Parameters that control the retriever's optimisation

        retriever_learning_rate (`float`, *optional*, defaults to `1e-5`):
            Learning rate of the retriever's parameters, in optimizer groups of their own; the generator uses
            `learning_rate`. The paper trains the retriever at 3e-6 with Llama-2 at 2e-5.
        retriever_weight_decay (`float`, *optional*):
            Weight decay of the retriever's parameters (never on biases and norms). `None` uses `weight_decay`.
        freeze_generator (`bool`, *optional*, defaults to `False`):
            Train only the retriever, from the frozen LLM's answer NLLs (as RePlug's LSR trains a retriever for a
            black-box LM). The generator gets no gradient and the LM loss with the top-K documents is not computed, so
            a step costs the no-gradient choice and NLL passes plus the retriever's forward and backward — a fraction
            of a joint step — and what the retriever learns is isolated from what the LLM learns. Needs a retrieval
            loss (`retrieval_loss_weight > 0`), `retriever_learning_rate > 0` and no `peft_config`. Since the LLM does
            not change, its NLLs can be measured once: rows with a `candidate_nlls` column (the answer NLL with each
            candidate alone in the prompt, e.g. from `jmlr_hf.evaluation.single_document_nlls`) skip the NLL pass, and
            a step costs only the retriever's passes. Such rows are rejected without `freeze_generator`.

        > Parameters that control the no-gradient NLL pass

        nll_micro_batch_size (`int`, *optional*):
            Sequences per forward when the LLM computes its answer NLL given each of the B × S sampled documents.
            `None` runs them all in one forward; lower it when memory is short.
        nll_padding_free (`bool`, *optional*):
            Lay the sequences of each forward of the NLL pass end to end in one row, without padding (packed
            `position_ids`, block-diagonal attention). `None` (default) packs on a CPU, where batching saves little
            and padding costs its full share, and on GPUs with a flash-attention implementation, which handle packed
            sequences exactly; it pads otherwise (SDPA's dense mask would spend on the whole packed row). The first
            pass checks that the model's attention follows packed sequences (the NLLs must equal the padded pass's):
            with `None` a model that does not falls back to padding, with a warning; with `True` it is an error.
        nll_max_packed_tokens (`int`, *optional*):
            The longest packed row of the NLL pass, in tokens: a forward's sequences go through in consecutive rows of
            at most this many (a longer sequence alone). A kernel without variable-length support (SDPA, eager: every
            CPU run) computes a packed row's whole T × T attention under its block-diagonal mask, so one row of all
            B × S sequences makes attention the bulk of the pass. `None` (default) caps rows at
            `DEFAULT_MAX_PACKED_TOKENS` (1,024) unless the attention is a flash-attention kernel, whose
            variable-length attention costs nothing extra for a long row; then rows are not capped. Measured on a
            2-core CPU (SmolLM2-135M, 32 sequences of 182 tokens on average, `docs/PERFORMANCE.md`): one row 33.7 s,
            rows of ≤ 1,024 tokens 14.0 s, padded 14.4 s.

        > Parameters that control what a non-finite loss does

        nonfinite_loss (`str`, *optional*, defaults to `"error"`):
            What a NaN or infinite training loss does. `"error"` stops the run with a `NonFiniteLossError` that names
            the step, the batch's row ids, the loss's parts and the rows whose NLLs or retriever scores are not
            finite. `"skip_step"` instead skips the whole optimizer step that micro-batch belongs to, on every
            process (with gradient accumulation, the step's other micro-batches are dropped too: under DDP only the
            last one all-reduces, so applying the others alone would let the replicas diverge), logs a warning naming
            the same, and counts the skipped optimizer steps in the training logs (`nonfinite_steps_skipped`).
            Either way no NaN reaches the weights: transformers' own `logging_nan_inf_filter` only hides such a loss
            from the logs, while its NaN gradient is applied.

        > Parameters of [`~trl.SFTConfig`] whose meaning or defaults differ

        max_length (`int`, *optional*):
            Generator tokens of a whole sequence (documents + question + answer), as in TRL: the cap every prompt is
            fitted to (the lowest-ranked document loses tokens first, then the question). `None` (default) keeps the
            model's own `JMLRConfig.max_length`; a value replaces it in the model's config, so that the saved model
            answers with the same cap it was trained with.
        packing, padding_free, eval_packing (`bool`, *optional*):
            Must stay off: each training sequence is built inside the step from the documents the retriever picks
            then, so there are no sequences to pack beforehand. The no-gradient NLL pass, where most sequences are,
            packs its own (`nll_padding_free`).
        assistant_only_loss, completion_only_loss (`bool`, *optional*):
            The LM loss is always on the answer tokens only (the completion); `assistant_only_loss=True` and
            `completion_only_loss=False` are rejected.
        dataset_text_field, dataset_num_proc, shuffle_dataset, chat_template_path, loss_type, label_smoothing_factor,
        model_init_kwargs:
            Flags of TRL's dataset preparation, prompt formatting, LM loss and model loading, none of which the joint
            trainer goes through: set to anything but their defaults they are rejected, each message naming what
            does that job here (the collator, `JMLRConfig`'s prompt templates, `JMLRForCausalLM.from_components`).
        remove_unused_columns (`bool`, *optional*, defaults to `False`):
            Must stay `False`: the joint collator reads the raw `question`, `options`, `answer`, `rationale` and
            `candidates` columns.
        dataset_kwargs (`dict[str, Any]`, *optional*, defaults to `{"skip_prepare_dataset": True}`):
            Must keep `skip_prepare_dataset=True`: the prompts depend on which documents the retriever picks, so the
            collator and the trainer tokenise on the fly.

    Example:

    ```python
    >>> from jmlr_hf import JointRetrievalConfig

    >>> args = JointRetrievalConfig(
    ...     output_dir="out",
    ...     learning_rate=2e-5,
    ...     retriever_learning_rate=3e-6,
    ...     bf16=False,  # TRL's default bf16=True needs a GPU
    ...     report_to=[],
    ... )
    >>> args.retriever_learning_rate, args.remove_unused_columns
    (3e-06, False)

    ```
    """

    retriever_learning_rate: float = field(
        default=1e-5,
        metadata={
            "help": "Learning rate of the retriever's parameters. The generator uses `learning_rate`. The paper "
            "trains the retriever at 3e-6 with Llama-2 at 2e-5."
        },
    )
    retriever_weight_decay: float | None = field(
        default=None,
        metadata={"help": "Weight decay of the retriever's parameters; `None` uses `weight_decay`."},
    )
    freeze_generator: bool = field(
        default=False,
        metadata={
            "help": "Train only the retriever from the frozen LLM's answer NLLs (RePlug-style): no generator "
            "gradient, no LM loss. Needs retrieval_loss_weight > 0, retriever_learning_rate > 0, no peft_config."
        },
    )
    nll_micro_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Sequences per forward in the no-gradient NLL pass over the B x S sampled documents. `None` "
            "runs them all in one forward; lower it when memory is short."
        },
    )
    nll_padding_free: bool | None = field(
        default=None,
        metadata={
            "help": "Pack the NLL pass's sequences end to end without padding. `None` packs on CPU and with "
            "flash attention, pads otherwise; the first pass checks that the model follows packed sequences."
        },
    )
    nll_max_packed_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Longest packed row of the NLL pass, in tokens (a longer sequence goes alone). `None` caps rows "
            f"at {DEFAULT_MAX_PACKED_TOKENS} unless the attention is flash-attention (variable-length kernels): then "
            "no cap."
        },
    )
    nonfinite_loss: str = field(
        default="error",
        metadata={
            "help": "What a NaN or infinite training loss does: 'error' stops the run naming the step and the batch's "
            "rows; 'skip_step' skips that optimizer step on every process, warns and counts it "
            "(nonfinite_steps_skipped).",
            "choices": ["error", "skip_step"],
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Generator tokens of a whole sequence (documents + question + answer). None keeps the model's "
            "own JMLRConfig.max_length; a value replaces it (and is saved with the model)."
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: the joint collator needs the raw `question`/`candidates` columns."},
    )
    dataset_kwargs: dict[str, Any] | None = field(
        default_factory=lambda: {"skip_prepare_dataset": True},
        metadata={"help": "Kept with `skip_prepare_dataset=True`: the joint collator tokenises on the fly."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.remove_unused_columns:
            raise ValueError("JointRetrievalConfig needs remove_unused_columns=False (the collator reads raw columns)")
        if self.freeze_generator and self.retriever_learning_rate <= 0:
            raise ValueError("freeze_generator=True trains only the retriever: set retriever_learning_rate > 0")
        for name in ("nll_micro_batch_size", "nll_max_packed_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"{name} must be a positive number of {'sequences' if 'batch' in name else 'tokens'} "
                    f"or None, got {value!r}"
                )
        if self.nonfinite_loss not in ("error", "skip_step"):
            raise ValueError(f"nonfinite_loss must be 'error' or 'skip_step', got {self.nonfinite_loss!r}")
        for name in ("packing", "padding_free", "eval_packing"):
            if getattr(self, name):
                raise ValueError(
                    f"JointRetrievalConfig does not support {name}=True: the joint step builds each sequence from the "
                    "documents the retriever picks at that step, so nothing can be packed beforehand. The no-gradient "
                    "NLL pass packs its own sequences: use nll_padding_free (on by default on CPU and with flash "
                    "attention); the sequence cap is max_length."
                )
        if self.assistant_only_loss or self.completion_only_loss is False:
            raise ValueError(
                "JointRetrievalConfig always computes the LM loss on the answer tokens only (the completion): drop "
                "assistant_only_loss / completion_only_loss; the answer is built from the rows' answer and rationale."
            )
        for name, ignored, instead in (
            (
                "dataset_text_field",
                self.dataset_text_field != "text",
                "the joint collator reads the rows' question, options, answer, rationale and candidates columns",
            ),
            (
                "dataset_num_proc",
                self.dataset_num_proc is not None,
                "nothing is prepared beforehand: the collator tokenises each batch (dataloader_num_workers overlaps it)",
            ),
            (
                "shuffle_dataset",
                self.shuffle_dataset,
                "the Trainer's sampler already shuffles the training rows every epoch, seeded by seed",
            ),
            (
                "chat_template_path",
                self.chat_template_path is not None,
                "prompts are written by the model's JMLRConfig templates (prompt_template, document_template, ...)",
            ),
            (
                "loss_type",
                self.loss_type != "nll",
                "the LM loss is the answer tokens' NLL; the retriever's loss is JMLRConfig.retrieval_loss",
            ),
            (
                "label_smoothing_factor",
                self.label_smoothing_factor > 0,
                "the LM loss is the answer tokens' NLL; the retriever's loss is JMLRConfig.retrieval_loss",
            ),
            (
                "model_init_kwargs",
                self.model_init_kwargs is not None,
                "the trainer takes a built JMLRForCausalLM: pass loading options to JMLRForCausalLM.from_components",
            ),
        ):
            if ignored:
                raise ValueError(f"JointRetrievalConfig does not use {name} ({getattr(self, name)!r}): {instead}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be a positive number of tokens or None, got {self.max_length}")
        if not (self.dataset_kwargs or {}).get("skip_prepare_dataset", False):
            raise ValueError("JointRetrievalConfig needs dataset_kwargs={'skip_prepare_dataset': True}")


__all__ = ["JointRetrievalConfig"]
