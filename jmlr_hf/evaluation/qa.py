"""The recipe's evaluation of a JMLR model on questions with pre-retrieved candidates ([`evaluate_model`]), and the
scoring both harnesses share ([`EvaluationModel`], [`choice_nll`], [`target_nll`]).

[`evaluate_model`] reports:
    * `recall@1`, `recall@K`, `evidence@1` (see `jmlr_hf.evaluation.retrieval.retrieval_metrics`);
    * `accuracy`: with the top-K documents before the question, the answer choice with the lowest NLL is the gold
      one (for PubMedQA the decision yes/no/maybe, for multiple choice the option letter);
    * `answer_nll`: mean per-token NLL of the reference target (answer and rationale);
    * optionally `generative_accuracy`: greedy decoding, then the answer extraction of
      [`jmlr_hf.evaluation.answer_parsing.extract_answer`], with the count of replies that name no single answer
      (`generative_unparseable`, counted wrong).

The general harness behind `jmlr evaluate` is `jmlr_hf.evaluation.harness`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from ..data import DECISIONS
from ..models import (
    OPTION_LETTERS,
    JMLRConfig,
    JMLRForCausalLM,
    answer_nll,
    build_prompt,
    build_target,
    is_jmlr_checkpoint,
    kept_logits,
    left_truncate,
    load_jmlr_checkpoint,
    tokenize_for_lm,
    truncate_to_tokens,
)
from ..utils.demo_models import resolve_model_path
from .answer_parsing import extract_answer
from .metric_loading import load_metric
from .retrieval import rank_candidates, retrieval_metrics

logger = logging.getLogger(__name__)


@torch.no_grad()
def choice_nll(
    model: JMLRForCausalLM | EvaluationModel,
    tokenizer,
    prompt: str,
    choices: Sequence[str],
    max_length: int | None = None,
) -> list[float]:
    """Summed NLL of each choice word right after the prompt (one batched forward; a single forward of the prompt
    when every choice is one token).

    With `max_length`, the prompt loses tokens from the left so that prompt and longest choice fit, as in training
    (`left_truncate`: BOS kept).
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    choice_ids = [tokenizer(" " + choice, add_special_tokens=False)["input_ids"] for choice in choices]
    if max_length is not None:
        prompt_ids = left_truncate(tokenizer, prompt_ids, max_length - max(len(ids) for ids in choice_ids))
    device = next(model.parameters()).device
    if all(len(ids) == 1 for ids in choice_ids):
        # Every choice is one token (option letters, yes/no/maybe): the next-token distribution after the prompt
        # holds all their NLLs, so one forward of the prompt replaces one sequence per choice. The same numbers at
        # a fraction of the compute, which is most of an evaluation's time on a CPU.
        input_ids = torch.tensor([prompt_ids], device=device)
        logits = model.generator(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False)
        log_probs = logits.logits[0, -1].float().log_softmax(-1)
        return [-float(log_probs[ids[0]]) for ids in choice_ids]
    length = len(prompt_ids) + max(len(ids) for ids in choice_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(choices), length), pad, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for i, ids in enumerate(choice_ids):
        full = prompt_ids + ids
        input_ids[i, : len(full)] = torch.tensor(full)
        attention[i, : len(full)] = 1
        labels[i, len(prompt_ids) : len(full)] = torch.tensor(ids)
    mean_nll = model.answer_nll(input_ids.to(device), attention.to(device), labels.to(device))
    return [float(nll) * len(ids) for nll, ids in zip(mean_nll.tolist(), choice_ids, strict=True)]


@torch.no_grad()
def batched_choice_nll(
    model: JMLRForCausalLM | EvaluationModel,
    tokenizer,
    prompts: Sequence[str],
    choices: Sequence[Sequence[str]],
    max_length: int | None = None,
    batch_size: int = 16,
    show_progress: bool = False,
) -> list[list[float]]:
    """[`choice_nll`] of many questions: `prompts[i]` with `choices[i]` → the choices' NLLs, the same numbers.

    Questions whose choices are all one token (option letters, yes/no/maybe) are scored `batch_size` prompts per
    forward, shortest first (so a batch pads little), with logits only at each prompt's last position; any other
    question goes through [`choice_nll`] on its own. The forward is the largest cost of likelihood evaluation on a
    CPU, and one question per forward leaves most of it to per-call overhead and narrow matrix products.
    """
    if len(prompts) != len(choices):
        raise ValueError(f"{len(prompts)} prompts but {len(choices)} lists of choices")
    results: list[list[float] | None] = [None] * len(prompts)
    single, ids = [], {}
    for i, (prompt, options) in enumerate(zip(prompts, choices, strict=True)):
        choice_ids = [tokenizer(" " + choice, add_special_tokens=False)["input_ids"] for choice in options]
        if all(len(c) == 1 for c in choice_ids):
            prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
            if max_length is not None:  # as `choice_nll`: the prompt loses tokens from the left
                prompt_ids = left_truncate(tokenizer, prompt_ids, max_length - 1)
            ids[i] = (prompt_ids, [c[0] for c in choice_ids])
            single.append(i)
        else:
            results[i] = choice_nll(model, tokenizer, prompt, options, max_length=max_length)
    single.sort(key=lambda i: len(ids[i][0]))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = range(0, len(single), batch_size)
    for start in tqdm(batches, desc="Scoring choices", unit="batch", disable=not show_progress):
        group = single[start : start + batch_size]
        width = max(len(ids[i][0]) for i in group)
        input_ids = torch.full((len(group), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, i in enumerate(group):
            input_ids[row, : len(ids[i][0])] = torch.tensor(ids[i][0])
            attention_mask[row, : len(ids[i][0])] = 1
        keep = torch.zeros_like(input_ids, dtype=torch.bool)
        keep[torch.arange(len(group)), attention_mask.sum(-1) - 1] = True  # each prompt's last token
        input_ids, attention_mask, keep = input_ids.to(device), attention_mask.to(device), keep.to(device)
        logits = model.generator(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep
        ).logits
        log_probs = kept_logits(logits, keep).float().log_softmax(-1)
        for row, i in enumerate(group):
            results[i] = [-float(log_probs[row, token]) for token in ids[i][1]]
    return results


@torch.no_grad()
def batched_continuation_nll(
    model: JMLRForCausalLM | EvaluationModel,
    tokenizer,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    max_length: int | None = None,
    batch_size: int = 16,
    show_progress: bool = False,
) -> list[list[tuple[float, int]]]:
    """Summed NLL and token count of each text of `continuations[i]` as the continuation of `prompts[i]`.

    The cloze scoring of `jmlr evaluate --mode cloze` (lm-evaluation-harness's `loglikelihood` requests): each
    continuation is tokenised as `" " + text`, with no EOS after it (the option is scored, not the end of the reply),
    and the prompt loses tokens from the left so that prompt and continuation fit `max_length` ([`left_truncate`]).
    Every (prompt, continuation) pair is a sequence of its own; the sequences of all questions go `batch_size` per
    forward, shortest first (little padding), right-padded so that each token keeps its position, hence the numbers
    of one question at a time. The count is returned beside the sum so that callers can normalise per token.
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} lists of continuations")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sequences: list[tuple[int, int, list[int], int]] = []  # (question, continuation, token ids, prompt length)
    for i, (prompt, texts) in enumerate(zip(prompts, continuations, strict=True)):
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        for j, text in enumerate(texts):
            if not text.strip():  # `" "` alone is a token, but no answer: its NLL per character would divide by 0
                raise ValueError(f"prompt {i}: continuation {j} ({text!r}) is empty, there is no text to score")
            ids = tokenizer(" " + text, add_special_tokens=False)["input_ids"]
            if max_length is not None and len(ids) >= max_length:
                raise ValueError(
                    f"prompt {i}: continuation {j} has {len(ids)} tokens, leaving no room for the prompt in "
                    f"max_length={max_length}"
                )
            cut = prompt_ids if max_length is None else left_truncate(tokenizer, prompt_ids, max_length - len(ids))
            sequences.append((i, j, cut + ids, len(cut)))
    results: list[list[tuple[float, int]]] = [[(math.nan, 0)] * len(texts) for texts in continuations]
    order = sorted(range(len(sequences)), key=lambda k: len(sequences[k][2]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc="Scoring options", unit="batch", disable=not show_progress):
        group = [sequences[k] for k in order[start : start + batch_size]]
        width = max(len(ids) for _, _, ids, _ in group)
        input_ids = torch.full((len(group), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, -100)
        for row, (_, _, ids, prompt_length) in enumerate(group):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
            labels[row, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
        mean_nll = model.answer_nll(input_ids.to(device), attention_mask.to(device), labels.to(device)).tolist()
        for (i, j, ids, prompt_length), nll in zip(group, mean_nll, strict=True):
            count = len(ids) - prompt_length
            results[i][j] = (nll * count, count)
    return results


def context_documents(
    config: JMLRConfig,
    tokenizer,
    row: dict[str, Any],
    ranking: Sequence[int] | None,
    num_documents: int,
    truncate_documents: bool,
) -> list[str]:
    """The top `num_documents` candidates of `row` by `ranking`, cut to `max_document_length` tokens if asked."""
    if ranking is None:
        return []
    documents = [row["candidates"][j] for j in ranking[:num_documents]]
    if truncate_documents:
        documents = [truncate_to_tokens(tokenizer, doc, config.max_document_length) for doc in documents]
    return documents


@torch.no_grad()
def target_nll(
    model: JMLRForCausalLM, tokenizer, row: dict[str, Any], documents: Sequence[str], *, prompt: str | None = None
) -> float:
    """Mean per-token NLL of `row`'s reference target (answer and rationale) after a prompt with `documents`."""
    cfg = model.config
    options = list(row.get("options") or [])
    if prompt is None:
        prompt = build_prompt(cfg, row["question"], list(documents), options)
    target = build_target(cfg, row["answer"], row.get("rationale"), options)
    batch = tokenize_for_lm(tokenizer, [prompt], [target], cfg.max_length)
    device = next(model.parameters()).device
    return float(model.answer_nll(*(batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))))


@torch.no_grad()
def target_nlls(
    model: JMLRForCausalLM,
    tokenizer,
    row: dict[str, Any],
    document_lists: Sequence[Sequence[str]],
    truncate_documents: bool = True,
    batch_size: int = 16,
) -> list[float]:
    """[`target_nll`] of `row` after each of several prompts, one per list of `document_lists` (best first; `[]` is the
    no-document prompt), `batch_size` prompts per forward; documents cut to `max_document_length` tokens if asked."""
    cfg = model.config
    options = list(row.get("options") or [])
    target = build_target(cfg, row["answer"], row.get("rationale"), options)
    cut: dict[str, str] = {}
    prompts = []
    for documents in document_lists:
        if truncate_documents:
            documents = [
                cut.setdefault(doc, truncate_to_tokens(tokenizer, doc, cfg.max_document_length)) for doc in documents
            ]
        prompts.append(build_prompt(cfg, row["question"], list(documents), options))
    return prompt_target_nlls(model, tokenizer, prompts, [target] * len(prompts), batch_size)


@torch.no_grad()
def prompt_target_nlls(
    model: JMLRForCausalLM | EvaluationModel,
    tokenizer,
    prompts: Sequence[str],
    targets: Sequence[str],
    batch_size: int = 16,
    show_progress: bool = False,
) -> list[float]:
    """Mean per-token NLL of each target after its prompt (built prompts), `batch_size` pairs per forward."""
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts for {len(targets)} targets")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = next(model.parameters()).device
    nlls: list[float] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="Answer NLL", unit="batch", disable=not show_progress):
        batch = tokenize_for_lm(
            tokenizer,
            prompts[start : start + batch_size],
            targets[start : start + batch_size],
            model.config.max_length,
        )
        nlls += model.answer_nll(*(batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))).tolist()
    return nlls


def single_document_nlls(
    model: JMLRForCausalLM, tokenizer, row: dict[str, Any], truncate_documents: bool = True
) -> list[float]:
    """The answer NLL with each of `row`'s `candidates` alone in the prompt: how useful the LLM finds each one, the
    signal JMLR's retrieval losses learn from (and the reference of `llm_preference_metrics`)."""
    return target_nlls(model, tokenizer, row, [[doc] for doc in row["candidates"]], truncate_documents)


@torch.no_grad()
def answer_metrics(
    model: JMLRForCausalLM,
    tokenizer,
    dataset: Dataset,
    rankings: Sequence[Sequence[int]] | None,
    num_documents: int,
    show_progress: bool = True,
    *,
    truncate_documents: bool = False,
) -> dict[str, float]:
    """`accuracy` (lowest-NLL choice) and `answer_nll` with the top `num_documents` candidates in the prompt.

    Open questions ([`is_open_question`]: MedQuAD, whose answer is a text to write) have no choices: they count in
    `answer_nll` only, and `accuracy` is left out when every question is open.

    With `rankings=None` or `num_documents=0` the prompt has no documents (the closed-book baseline). With
    `truncate_documents`, each document is cut to the config's `max_document_length` generator tokens, as the
    trainer's collator and `jmlr evaluate` do, so the model is measured on prompts shaped like its training prompts
    (off by default, which keeps earlier measurements reproducible).
    """
    model.eval()
    cfg = model.config
    correct = closed = 0
    prompts, targets = [], []
    for i, row in enumerate(tqdm(dataset, desc="Answering", disable=not show_progress)):
        ranking = None if rankings is None else rankings[i]
        docs = context_documents(cfg, tokenizer, row, ranking, num_documents, truncate_documents)
        options = list(row.get("options") or [])
        prompt = build_prompt(cfg, row["question"], docs, options)
        if not is_open_question(row):
            choices = list(OPTION_LETTERS[: len(options)]) if options else list(DECISIONS)
            nll = choice_nll(model, tokenizer, prompt, choices)
            correct += choices[min(range(len(choices)), key=nll.__getitem__)] == row["answer"]
            closed += 1
        prompts.append(prompt)
        targets.append(build_target(cfg, row["answer"], row.get("rationale"), options))
    # The answer NLLs, 16 prompts per forward: the same values as `target_nll` one question at a time (up to float
    # rounding of the padded batch), several times faster on the experiment's 1,000 held-out questions.
    nlls = prompt_target_nlls(model, tokenizer, prompts, targets)
    metrics = {"answer_nll": sum(nlls) / len(nlls) if nlls else float("nan")}
    if closed or not len(dataset):
        metrics["accuracy"] = correct / closed if closed else float("nan")
    return metrics


def is_open_question(row: dict[str, Any]) -> bool:
    """A question whose answer is a text to write (MedQuAD), not a choice: no options and no yes/no/maybe answer."""
    return not row.get("options") and row["answer"] not in DECISIONS


@torch.no_grad()
def generative_metrics(
    model: JMLRForCausalLM,
    tokenizer,
    retriever_tokenizer,
    dataset: Dataset,
    rankings: Sequence[Sequence[int]] | None,
    num_documents: int,
    *,
    max_new_tokens: int = 16,
    truncate_documents: bool = False,
    show_progress: bool = True,
) -> dict[str, float]:
    """Generative accuracy: greedy decoding after the same prompt as [`answer_metrics`], then the harness's answer
    extraction ([`jmlr_hf.answer_parsing.extract_answer`]); for open questions ([`is_open_question`]) the reply's
    ROUGE-L against the reference answer ([`jmlr_hf.evaluation.metrics.rouge_l`]) instead.

    The decoding is [`EvaluationModel.generate_answer`], the one `jmlr evaluate` uses, so the two report the same
    thing. A reply that names no single answer counts as wrong and is counted in `generative_unparseable`.
    Returns `generative_accuracy` and `generative_unparseable` (over the closed questions, left out when all are
    open), `generative_rouge_l` (over the open ones, left out when none is) and `num_generated`.
    """
    harness = EvaluationModel.from_jmlr(model, tokenizer, retriever_tokenizer).eval()
    cfg = model.config
    correct = unparseable = closed = 0
    replies, references = [], []
    for i, row in enumerate(tqdm(dataset, desc="Generating", disable=not show_progress)):
        ranking = None if rankings is None else rankings[i]
        docs = context_documents(cfg, tokenizer, row, ranking, num_documents, truncate_documents)
        options = list(row.get("options") or [])
        reply = harness.generate_answer(build_prompt(cfg, row["question"], docs, options), max_new_tokens)
        if is_open_question(row):
            replies.append(reply)
            references.append(row["answer"])
            continue
        predicted = extract_answer(reply, options)
        unparseable += predicted is None
        correct += predicted == row["answer"]
        closed += 1
    metrics: dict[str, float] = {"num_generated": len(dataset)}
    if closed or not len(dataset):
        metrics["generative_accuracy"] = correct / closed if closed else float("nan")
        metrics["generative_unparseable"] = unparseable
    if replies:
        metrics["generative_rouge_l"] = load_metric("jmlr_rouge_l").compute(
            predictions=replies, references=references
        )["rouge_l"]
    return metrics


def evaluate_model(
    model: JMLRForCausalLM,
    tokenizer,
    retriever_tokenizer,
    dataset: Dataset,
    *,
    answer_limit: int | None = None,
    generative_limit: int = 0,
    max_new_tokens: int = 16,
    truncate_documents: bool = False,
    batch_size: int = 16,
    show_progress: bool = True,
) -> dict[str, float]:
    """Retrieval metrics on every row, likelihood answer metrics on the first `answer_limit` rows (all when `None`),
    generative accuracy on the first `generative_limit` rows (none by default: decoding is the slow part).

    The answers see the top `num_context_documents` candidates (none for a closed-book model, K = 0, whose retrieval
    metrics still describe its retriever, at k = 1); `truncate_documents` cuts them as in training (see
    [`answer_metrics`]).
    """
    k = model.config.num_context_documents
    rankings = rank_candidates(model, retriever_tokenizer, dataset, batch_size, show_progress)
    metrics = retrieval_metrics(dataset, rankings, max(k, 1))
    limit = len(dataset) if answer_limit is None else min(answer_limit, len(dataset))
    subset = dataset.select(range(limit))
    metrics.update(
        answer_metrics(
            model, tokenizer, subset, rankings[:limit], k, show_progress, truncate_documents=truncate_documents
        )
    )
    metrics["num_questions"] = len(dataset)
    metrics["num_answered"] = limit
    generated = min(generative_limit, len(dataset))
    if generated > 0:
        metrics.update(
            generative_metrics(
                model,
                tokenizer,
                retriever_tokenizer,
                dataset.select(range(generated)),
                rankings[:generated],
                k,
                max_new_tokens=max_new_tokens,
                truncate_documents=truncate_documents,
                show_progress=show_progress,
            )
        )
    return metrics


def format_comparison(before: dict[str, float], after: dict[str, float]) -> str:
    """A Markdown table of metrics before and after training."""
    lines = ["| metric | before | after |", "|---|---|---|"]
    for key in before:
        b, a = before[key], after.get(key, float("nan"))
        if isinstance(b, float) and not math.isnan(b) or isinstance(b, int):
            lines.append(f"| {key} | {b:.4g} | {a:.4g} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# The model wrapper of both harnesses
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class EvaluationModel:
    """What [`evaluate_dataset`] answers with: a causal LM, its tokenizer, the prompt format, maybe a retriever.

    Build it with one of the constructors, one per setup:

    * [`from_jmlr`]: a trained `JMLRForCausalLM`; its generator answers, its retriever ranks the documents, its
      config holds the prompt format and the limits;
    * [`from_pretrained`] with a retriever: a plain causal LM and a separate encoder, combined by
      `JMLRForCausalLM.from_components` (the untrained-JMLR baseline, default prompt format);
    * [`from_causal_lm`]: a causal LM alone, for closed-book evaluation; the prompt format is that of `JMLRConfig()`
      unless a config is given (the config is only read, no model is built from it).

    Args:
        generator: the causal LM that scores and generates answers.
        tokenizer: its tokenizer.
        config: the prompt templates (`build_prompt`) and the limits (`max_length`, `max_document_length`, the
            default `num_candidates` and `num_context_documents`).
        jmlr: the JMLR model whose retriever re-ranks candidate documents (`None`: no retriever).
        retriever_tokenizer: the retriever's tokenizer (needed with `jmlr`).
        setup: `"jmlr"`, `"causal_lm+retriever"` or `"causal_lm"`, recorded in the results.
    """

    generator: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    config: JMLRConfig
    jmlr: JMLRForCausalLM | None = None
    retriever_tokenizer: PreTrainedTokenizerBase | None = None
    setup: str = "causal_lm"

    def __post_init__(self):
        if self.jmlr is not None and self.retriever_tokenizer is None:
            raise ValueError("a model with a retriever needs its retriever_tokenizer")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def from_jmlr(
        cls,
        model: JMLRForCausalLM,
        tokenizer: PreTrainedTokenizerBase,
        retriever_tokenizer: PreTrainedTokenizerBase,
        setup: str = "jmlr",
    ) -> EvaluationModel:
        """A JMLR model: its generator answers, its retriever ranks, its config formats the prompts."""
        return cls(model.generator, tokenizer, model.config, model, retriever_tokenizer, setup)

    @classmethod
    def from_causal_lm(
        cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: JMLRConfig | None = None
    ) -> EvaluationModel:
        """A causal LM alone (closed book), with the prompt format of `config` (default: `JMLRConfig()`)."""
        return cls(model, tokenizer, config if config is not None else JMLRConfig(), setup="causal_lm")

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str,
        retriever_name_or_path: str | None = None,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> EvaluationModel:
        """Load one of the three setups from local folders, Hub ids or the aliases of `jmlr_hf.utils.demo_models`.

        A JMLR checkpoint (config model type `"jmlr"`, retriever tokenizer in `retriever_tokenizer/`) carries its
        own retriever, so `retriever_name_or_path` must then be `None`. Any other model is a plain causal LM; with
        `retriever_name_or_path` (an encoder) the two are combined with `JMLRForCausalLM.from_components`.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(model_name_or_path)
        if is_jmlr_checkpoint(path):
            if retriever_name_or_path is not None:
                raise ValueError(f"{model_name_or_path} is a JMLR model with its own retriever; pass no retriever")
            model, tokenizer, retriever_tokenizer = load_jmlr_checkpoint(path, dtype=dtype)
            return cls.from_jmlr(model.eval(), tokenizer, retriever_tokenizer)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if retriever_name_or_path is None:
            return cls.from_causal_lm(AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval(), tokenizer)
        retriever_path = resolve_model_path(retriever_name_or_path)
        if is_jmlr_checkpoint(retriever_path):
            raise ValueError(
                f"the retriever {retriever_name_or_path} is a JMLR model: evaluate it as the model, with no retriever"
            )
        model = JMLRForCausalLM.from_components(
            path, retriever_path, generator_kwargs={"dtype": dtype}, retriever_kwargs={"dtype": dtype}
        )
        retriever_tokenizer = AutoTokenizer.from_pretrained(retriever_path)
        return cls.from_jmlr(model.eval(), tokenizer, retriever_tokenizer, setup="causal_lm+retriever")

    @property
    def has_retriever(self) -> bool:
        return self.jmlr is not None

    def parameters(self):
        """The generator's parameters (where the answers are computed)."""
        return self.generator.parameters()

    def eval(self) -> EvaluationModel:
        self.generator.eval()
        if self.jmlr is not None:
            self.jmlr.eval()
        return self

    @torch.no_grad()
    def answer_nll(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean NLL per sequence over its labelled tokens: the same `answer_nll` as the trainer's, for every setup."""
        return answer_nll(self.generator, input_ids, attention_mask, labels)

    @torch.no_grad()
    def generate_answer(self, prompt: str, max_new_tokens: int) -> str:
        """Greedy decoding of at most `max_new_tokens` after `prompt`; the reply only, special tokens dropped."""
        ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        ids = left_truncate(self.tokenizer, ids, self.config.max_length - max_new_tokens)
        device = next(self.parameters()).device
        input_ids = torch.tensor([ids], device=device)
        generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        output = self.generator.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=generation_config
        )
        return self.tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)


__all__ = [
    "EvaluationModel",
    "answer_metrics",
    "batched_choice_nll",
    "batched_continuation_nll",
    "choice_nll",
    "context_documents",
    "evaluate_model",
    "format_comparison",
    "generative_metrics",
    "target_nll",
]
