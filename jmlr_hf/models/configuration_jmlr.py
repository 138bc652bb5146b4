# Copyright 2026 The jmlr_hf developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""JMLR model configuration.

This file imports only `transformers` so that `save_pretrained` can ship it as remote code.
"""

from collections.abc import Sequence
from typing import Literal

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

# The letters of multiple-choice options, in order: `option_template`'s `{letter}`. Defined here, the lightest file of
# the remote code, so that data loaders and answer parsing share it with the prompts.
OPTION_LETTERS = "ABCDEFGHIJ"
# The token ids that ColBERT's input conventions need (`colbert_token_ids`).
COLBERT_TOKEN_KEYS = ("query_marker", "document_marker", "mask", "pad", "skiplist")
# The range `retrieval_temperature` and `lm_temperature` must lie in (see `validate_retrieval_settings`).
TEMPERATURE_RANGE = (1e-4, 1e4)
# How `llm_rank` weights its pairs (`llm_rank_pair_weighting`): the paper's plain mean, or by the pair's NLL gap.
LLM_RANK_PAIR_WEIGHTINGS = ("uniform", "nll_gap")


# --------------------------------------------------------------------------------------------------------------------
# Arguments: one check per kind of input, shared by every entry point (the loaders of jmlr_hf.data apply the same
# text rules to a file's rows; the remote code holds them, so that a model loaded without jmlr_hf checks alike, and
# this file, the lightest of it, so that every part of jmlr_hf can import them without a cycle)
# --------------------------------------------------------------------------------------------------------------------

#: Cells that mean "missing" once a table has been through pandas or a spreadsheet (compared lower-cased): not a
#: question. (An option may read "None": it is a real answer.)
MISSING_MARKERS = ("nan", "none", "null", "n/a")


def text_problem(text: str) -> str | None:
    """Why `text` cannot go to a tokenizer or into Arrow (undecodable bytes or a lone surrogate, which are not UTF-8,
    or a NUL character, which betrays a broken file), or `None` when it can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        bad = text[err.start : err.start + 1]
        return f"not valid UTF-8 text: {bad!r} at character {err.start} (undecodable bytes or a lone surrogate)"
    if "\x00" in text:
        return f"contains a NUL character at character {text.index(chr(0))}"
    return None


def check_text_argument(value: object, name: str) -> str:
    """`value` as a non-blank text, or a `TypeError` / `ValueError` that starts with `name` (e.g. `"queries[2]"`)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} is a {type(value).__name__}; expected a string")
    problem = text_problem(value) or (None if value.strip() else "empty")
    if problem:
        raise ValueError(f"{name}: {problem}" if problem != "empty" else f"{name} is empty")
    return value


def check_question(question: object, name: str = "question") -> str:
    """One question as `answer` takes it: a string (not a list of questions, not a number), neither blank nor a
    missing-value marker, and valid text (see [`text_problem`]). Raises `TypeError` / `ValueError` naming `name`."""
    if not isinstance(question, str):
        several = isinstance(question, (list, tuple))
        raise TypeError(
            f"{name} must be one question as a string, got {type(question).__name__}"
            + (
                " (ask several questions one at a time, or use retrieve() for the documents of many)"
                if several
                else ""
            )
        )
    problem = text_problem(question)
    if problem is None and not question.strip():
        problem = "empty"
    if problem is None and question.strip().lower() in MISSING_MARKERS:
        problem = f"{question.strip()!r} is a missing-value marker, not a question"
    if problem:
        raise ValueError(f"{name}: {problem}")
    return question


def check_options(options: object, name: str = "options") -> list[str]:
    """The options of a multiple-choice question as a list: `None` or `[]` for an open question, else 2 to
    `len(OPTION_LETTERS)` non-blank texts (the letters a prompt has). A single string is refused, since it would be
    read as one option per character; so is a mapping. Raises `TypeError` / `ValueError` naming `name` (and the
    option)."""
    if options is None:
        return []
    if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
        raise TypeError(
            f"{name} must be a list of option texts, got a {type(options).__name__}"
            + (" (a string would be read as one option per character)" if isinstance(options, (str, bytes)) else "")
        )
    options = list(options)
    if options and not 2 <= len(options) <= len(OPTION_LETTERS):
        raise ValueError(
            f"{name}: expected 2 to {len(OPTION_LETTERS)} options, got {len(options)} (a prompt letters them "
            f"{OPTION_LETTERS[0]} to {OPTION_LETTERS[-1]})"
        )
    for position, text in enumerate(options):
        letter = OPTION_LETTERS[position]
        if not isinstance(text, str):
            raise ValueError(f"{name}[{position}] (option {letter}) is a {type(text).__name__}; expected a string")
        if not text.strip():
            raise ValueError(f"{name}[{position}] (option {letter}) is empty")
        problem = text_problem(text)
        if problem:
            raise ValueError(f"{name}[{position}] (option {letter}): {problem}")
    return options


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """`value` as an `int` of at least `minimum`: a whole number (a `bool`, a float such as `2.0`, or a string is
    refused, not rounded), or a `TypeError` / `ValueError` that starts with `name`."""
    # `__index__`: Python and NumPy integers (and 0-d integer tensors), not floats; without importing `numbers`,
    # which the remote code may not (it imports only transformers and its siblings at the top level).
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value.__index__()


class JMLRConfig(PretrainedConfig):
    r"""
    Configuration of a [`JMLRForCausalLM`]: a causal LM (the *generator*) and a retriever encoder trained together as
    in JMLR (Wang et al. 2024, "JMLR: Joint Medical LLM and Retrieval Training", arXiv 2402.17887). Like `RagConfig`,
    it nests the configuration of each sub-model and adds the retrieval knobs.

    Args:
        generator (`PretrainedConfig | dict`, *optional*):
            Configuration of the causal LM (any `AutoModelForCausalLM` architecture). Defaults to a Llama config.
        retriever (`PretrainedConfig | dict`, *optional*):
            Configuration of the retriever's encoder (any `AutoModel` encoder, e.g. BERT). Defaults to a BERT config.
        num_candidates (`int`, *optional*, defaults to 20):
            N, the number of pre-retrieved candidate documents per question that the retriever scores during
            training (paper: 20).
        num_sampled (`int`, *optional*, defaults to 10):
            S, the number of candidates sampled without replacement from `softmax(scores / retrieval_temperature)`
            whose answer NLL the LLM computes to supervise the retriever (paper: 10).
        num_context_documents (`int`, *optional*, defaults to 5):
            K, the number of top-scored documents placed before the question for the LM loss and at inference
            (paper: 5). 0 means closed book (the SFT baseline; needs `retrieval_loss_weight=0`).
        retrieval_temperature (`float`, *optional*, defaults to 0.05):
            τ: retriever logits are `score / τ`. Scores lie in [-1, 1] (cosine or mean MaxSim), so τ sets how sharp
            the sampling distribution and the ranking losses are.
        score_scaling (`str`, *optional*, defaults to `"temperature"`):
            How retriever scores become logits: `"temperature"`, `score / τ`; or `"minmax"`, each question's scores
            min-max scaled to [0, 1] over its N candidates, then divided by τ (so τ does not depend on how spread out
            an encoder's raw scores are).
        lm_temperature (`float`, *optional*, defaults to 1.0):
            β: the LM's preference over documents is `softmax(-NLL / β)` (used by `lsr` and `ppl_distill`).
        retrieval_loss_weight (`float`, *optional*, defaults to 1.0):
            λ in `loss = lm_loss + λ * retrieval_loss`. 0 trains the LLM alone on the top-K documents of a fixed
            retriever (the RAG-SFT baseline), skipping the NLL pass.
        retrieval_loss (`str`, *optional*, defaults to `"llm_rank"`):
            `"llm_rank"` (the paper's pairwise RankNet loss), `"lsr"` (RePlug's LM-supervised retrieval,
            KL(P_R ‖ Q_LM)) or `"ppl_distill"` (Atlas' perplexity distillation, KL(Q_LM ‖ P_R)).
        in_batch_negatives (`bool`, *optional*, defaults to `False`):
            Whether the other examples' candidates in the batch act as extra negatives: in the distribution-matching
            losses (`lsr`, `ppl_distill`) they join the softmax; in `llm_rank` each sampled document is to rank above
            each of them (a second mean of pairs, see `jmlr_hf.losses.llm_rank_loss`), which holds the query on its
            own candidates' topic.
        llm_rank_min_nll_gap (`float`, *optional*, defaults to 0.0):
            δ, `llm_rank` only: a pair of sampled documents counts only when their answer NLLs (nats/token) differ by
            more than δ; 0 keeps every pair that is not tied (the paper). See `jmlr_hf.losses.llm_rank_loss` for why
            it exists and what it did on MedQuAD (nothing measurable).
        llm_rank_pair_weighting (`str`, *optional*, defaults to `"uniform"`):
            `llm_rank` only: `"uniform"`, the plain mean over pairs (the paper); or `"nll_gap"`, each pair weighted by
            the difference of its two NLLs, so that decisive pairs count more than near-ties.
        in_batch_negative_mass (`float`, *optional*, defaults to 1e-3):
            Total LM-side probability given to the in-batch negatives for `lsr`, whose KL(P_R ‖ Q_LM) is infinite
            where Q_LM is zero. The sampled documents share the rest.
        scoring (`str`, *optional*, defaults to `"maxsim"`):
            `"maxsim"`: ColBERT late interaction, the mean over query tokens of the best cosine with any document
            token. `"dense"`: cosine of the mean-pooled embeddings.
        colbert_conventions (`bool`, *optional*, defaults to `False`):
            Whether the retriever's inputs follow ColBERT's conventions (Khattab & Zaharia 2020; Santhanam et al.
            2022), as a ColBERT checkpoint (e.g. `colbert-ir/colbertv2.0`) was trained with them: a query marker
            (`[unused0]`) or document marker (`[unused1]`) right after `[CLS]`; queries padded to
            `max_query_length` with `[MASK]` tokens, which the encoder does not attend to but which take part in
            MaxSim (query augmentation); and punctuation left out of a document's tokens in MaxSim.
            `JMLRForCausalLM.from_components` turns it on for a checkpoint with a ColBERT projection.
        colbert_token_ids (`dict`, *optional*):
            The token ids those conventions need, from the retriever's tokenizer: `query_marker`,
            `document_marker`, `mask`, `pad` and `skiplist` (a list: the punctuation tokens). Required with
            `colbert_conventions`; `from_components` fills it.
        train_document_encoder (`bool`, *optional*, defaults to `True`):
            `False` trains the retriever on the query side only (as Atlas offers): documents are encoded by a frozen
            copy of the initial encoder and projection, so the document index never goes stale and needs no refresh.
            `True` trains one encoder for both sides; the index must then be re-encoded after training.
        projection_dim (`int`, *optional*):
            Output size of the retriever's linear projection (ColBERT's `linear` layer). `None` (default) uses the
            encoder's hidden states directly, so an off-the-shelf encoder starts from its own ranking.
        max_query_length (`int`, *optional*, defaults to 64):
            Maximum retriever tokens of a question.
        max_document_length (`int`, *optional*, defaults to 180):
            Maximum retriever tokens of a document; also the cap, in generator tokens, of each document placed in
            the prompt.
        max_length (`int`, *optional*, defaults to 1024):
            Maximum generator tokens of a prompt plus its answer; longer inputs lose prompt tokens from the left
            (the answer is always kept whole).
        document_order (`str`, *optional*, defaults to `"best_first"`):
            Where the retriever's best document goes among the K in the prompt: `"best_first"` (first), or
            `"best_last"` (last, right before the question, as the authors' code places it). Over-long prompts are
            shortened from the lowest-ranked document either way.
        document_template (`str`, *optional*, defaults to `"Document [{index}]: {document}\n"`):
            How each context document is written into the prompt (`{index}` is 1-based).
        prompt_template (`str`, *optional*):
            The generator prompt, with `{documents}` (the formatted documents, possibly empty), `{question}` and
            `{options}` (the formatted options, possibly empty).
        option_template (`str`, *optional*, defaults to `"{letter}. {text}\n"`):
            How each option of a multiple-choice question is written.
        target_template (`str`, *optional*, defaults to `"{answer}. {rationale}"`):
            The training target; `{answer}` is the answer (for multiple choice, `"{letter}: {option text}"`) and
            `{rationale}` the explanation. Without a rationale the target is the answer alone.
        index_repo_id (`str`, *optional*):
            Where the document index that goes with this model lives (a local folder or a Hub repository).
        index_revision (`str`, *optional*):
            Revision of `index_repo_id` (a commit sha pins exactly the index the model was published with).
        generator_base_model (`str`, *optional*):
            Set only for a checkpoint that stores the generator as a LoRA adapter instead of full weights: the Hub id
            (or folder) of the base causal LM the adapter applies to. `from_pretrained` loads it, then the adapter.
        generator_base_revision (`str`, *optional*):
            Revision of `generator_base_model`.
        generator_adapter (`str`, *optional*):
            Subfolder of the checkpoint holding the generator's PEFT adapter (with `generator_base_model`).

    Example:

    ```python
    >>> from transformers import BertConfig, LlamaConfig
    >>> from jmlr_hf import JMLRConfig

    >>> config = JMLRConfig(
    ...     generator=LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    ...     retriever=BertConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    ...     num_candidates=8,
    ...     num_sampled=4,
    ...     num_context_documents=2,
    ...     retrieval_loss="lsr",
    ... )
    >>> config.generator.model_type, config.retriever.model_type, config.num_sampled
    ('llama', 'bert', 4)
    >>> JMLRConfig(num_candidates=4, num_sampled=8)
    Traceback (most recent call last):
        ...
    ValueError: num_sampled (8) cannot exceed num_candidates (4)

    ```
    """

    model_type = "jmlr"
    sub_configs_defaults = {
        "generator": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "retriever": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
    }

    generator: dict | PretrainedConfig | None = None
    retriever: dict | PretrainedConfig | None = None
    num_candidates: int = 20
    num_sampled: int = 10
    num_context_documents: int = 5
    retrieval_temperature: float = 0.05
    score_scaling: Literal["temperature", "minmax"] = "temperature"
    lm_temperature: float = 1.0
    retrieval_loss_weight: float = 1.0
    retrieval_loss: Literal["llm_rank", "lsr", "ppl_distill"] = "llm_rank"
    in_batch_negatives: bool = False
    llm_rank_min_nll_gap: float = 0.0
    llm_rank_pair_weighting: Literal["uniform", "nll_gap"] = "uniform"
    in_batch_negative_mass: float = 1e-3
    scoring: Literal["maxsim", "dense"] = "maxsim"
    colbert_conventions: bool = False
    colbert_token_ids: dict | None = None
    train_document_encoder: bool = True
    projection_dim: int | None = None
    max_query_length: int = 64
    max_document_length: int = 180
    max_length: int = 1024
    document_order: Literal["best_first", "best_last"] = "best_first"
    document_template: str = "Document [{index}]: {document}\n"
    prompt_template: str = "{documents}Question: {question}\n{options}Answer:"
    option_template: str = "{letter}. {text}\n"
    target_template: str = "{answer}. {rationale}"
    index_repo_id: str | None = None
    index_revision: str | None = None
    generator_base_model: str | None = None
    generator_base_revision: str | None = None
    generator_adapter: str | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        # A composite config sets its sub-configs' attention implementation from its own (None unless asked), and a
        # sub-config given as a loaded model's config object is that model's config: resetting it would silently
        # switch the model to an attention path that ignores the padding mask (an encoder whose vectors change with
        # what else is in the batch). Keep what each given sub-config had, unless an implementation is asked for.
        kept = {
            name: getattr(self, name)._attn_implementation
            for name in ("generator", "retriever")
            if isinstance(getattr(self, name), PretrainedConfig)
        }
        super().__post_init__(**kwargs)
        if kwargs.get("attn_implementation") is None:
            for name, implementation in kept.items():
                if implementation is not None and getattr(self, name)._attn_implementation is None:
                    getattr(self, name)._attn_implementation = implementation
        self.validate_retrieval_settings()

    def validate_retrieval_settings(self) -> None:
        """Raise a `ValueError` naming the field when the retrieval knobs are inconsistent."""
        if self.retrieval_loss not in ("llm_rank", "lsr", "ppl_distill"):
            raise ValueError(f"retrieval_loss must be 'llm_rank', 'lsr' or 'ppl_distill', got {self.retrieval_loss!r}")
        if self.colbert_conventions:
            missing = [k for k in COLBERT_TOKEN_KEYS if k not in (self.colbert_token_ids or {})]
            if missing:
                raise ValueError(
                    f"colbert_conventions needs colbert_token_ids with {list(COLBERT_TOKEN_KEYS)}; missing {missing}"
                )
        if self.score_scaling not in ("temperature", "minmax"):
            raise ValueError(f"score_scaling must be 'temperature' or 'minmax', got {self.score_scaling!r}")
        if self.document_order not in ("best_first", "best_last"):
            raise ValueError(f"document_order must be 'best_first' or 'best_last', got {self.document_order!r}")
        if self.scoring not in ("maxsim", "dense"):
            raise ValueError(f"scoring must be 'maxsim' or 'dense', got {self.scoring!r}")
        for name in ("num_candidates", "num_sampled"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_context_documents < 0:
            raise ValueError(f"num_context_documents must be at least 0, got {self.num_context_documents}")
        if self.retrieval_loss_weight < 0:
            raise ValueError(f"retrieval_loss_weight must be at least 0, got {self.retrieval_loss_weight}")
        if self.num_context_documents == 0 and self.retrieval_loss_weight > 0:
            raise ValueError(
                "num_context_documents=0 (no documents in the prompt) needs retrieval_loss_weight=0: joint training "
                "teaches the retriever to pick the documents the prompt uses"
            )
        if self.num_sampled > self.num_candidates:
            raise ValueError(f"num_sampled ({self.num_sampled}) cannot exceed num_candidates ({self.num_candidates})")
        if self.num_context_documents > self.num_candidates:
            raise ValueError(
                f"num_context_documents ({self.num_context_documents}) cannot exceed num_candidates "
                f"({self.num_candidates})"
            )
        for name in ("retrieval_temperature", "lm_temperature"):
            # Scores lie in [-1, 1] and NLLs in nats: beyond these bounds the softmax is a hard argmax or flat, and
            # tiny temperatures overflow the losses (1e-30 logged a loss of 2e28 and trained on).
            if not TEMPERATURE_RANGE[0] <= getattr(self, name) <= TEMPERATURE_RANGE[1]:
                raise ValueError(
                    f"{name} must be in [{TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}], got {getattr(self, name)}"
                )
        if self.retrieval_loss_weight > 0 and self.num_sampled < 2 and not self.in_batch_negatives:
            raise ValueError(
                f"num_sampled={self.num_sampled} with retrieval_loss={self.retrieval_loss!r}: the retrieval loss "
                "compares the sampled documents' NLLs, and one document has nothing to be compared with (the "
                "retriever would not learn); use num_sampled >= 2"
            )
        if (self.generator_base_model is None) != (self.generator_adapter is None):
            raise ValueError(
                "generator_base_model and generator_adapter go together: a generator stored as an adapter needs its "
                f"base model (got generator_base_model={self.generator_base_model!r}, "
                f"generator_adapter={self.generator_adapter!r})"
            )
        if not (0.0 <= self.llm_rank_min_nll_gap < float("inf")):
            raise ValueError(f"llm_rank_min_nll_gap must be a finite number >= 0, got {self.llm_rank_min_nll_gap}")
        if self.llm_rank_pair_weighting not in LLM_RANK_PAIR_WEIGHTINGS:
            raise ValueError(
                f"llm_rank_pair_weighting must be one of {LLM_RANK_PAIR_WEIGHTINGS}, got {self.llm_rank_pair_weighting!r}"
            )
        if self.retrieval_loss != "llm_rank" and (
            self.llm_rank_min_nll_gap != 0.0 or self.llm_rank_pair_weighting != "uniform"
        ):
            raise ValueError(
                f"llm_rank_min_nll_gap / llm_rank_pair_weighting shape the pairs of llm_rank, not {self.retrieval_loss}"
                " (which weighs documents by softmax(-NLL / β)): set lm_temperature instead, or retrieval_loss='llm_rank'"
            )
        if not 0.0 < self.in_batch_negative_mass < 1.0:
            raise ValueError(f"in_batch_negative_mass must be in (0, 1), got {self.in_batch_negative_mass}")


__all__ = [
    "COLBERT_TOKEN_KEYS",
    "LLM_RANK_PAIR_WEIGHTINGS",
    "MISSING_MARKERS",
    "OPTION_LETTERS",
    "JMLRConfig",
    "check_count",
    "check_options",
    "check_question",
    "check_text_argument",
    "text_problem",
]
