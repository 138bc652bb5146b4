"""Evaluation of medical QA models: answer accuracy, and retrieval quality where the gold passages are known.

The recipe's evaluation of a JMLR model on questions with pre-retrieved candidates ([`evaluate_model`]):
    * `recall@1`, `recall@K`: a document of the gold article is ranked first / among the top K (in the terms of
      [`jmlr_hf.metrics`], these are hit@1 and hit@K);
    * `evidence@1`: the top document is one of the gold *evidence* passages (for PubMedQA, a RESULTS section of the
      gold article — the section that carries the answer);
    * `accuracy`: with the top-K documents before the question, the answer choice with the lowest NLL is the gold
      one (for PubMedQA the decision yes/no/maybe, for multiple choice the option letter);
    * `answer_nll`: mean per-token NLL of the reference target (answer and rationale);
    * optionally `generative_accuracy`: greedy decoding, then the harness's answer extraction (below), with the
      count of replies that name no single answer (`generative_unparseable`, counted wrong).

The general harness behind `jmlr evaluate` ([`evaluate_dataset`]) runs any of three setups, wrapped as an
[`EvaluationModel`]: a trained JMLR model, a plain causal LM with a separate retriever encoder, or a causal LM alone.
It answers each question

    * by likelihood: the choice (option letter, or yes/no/maybe) with the lowest NLL right after the prompt;
    * generatively: greedy decoding of a few tokens, then [`jmlr_hf.answer_parsing.extract_answer`]; replies that
      name no single answer count as wrong and are counted (`num_unparseable`);

with no documents (closed book), or with the top-K of N candidates that the model's retriever re-ranks (candidates
from a `DocumentIndex`, or already in the dataset's `candidates` column). It reports accuracy (and macro-F1 for
PubMedQA's decisions), retrieval recall@k / hit@k / nDCG@k / MRR where the questions have `gold_doc_ids`, a
per-subject breakdown, and every prediction ([`EvaluationResult`], saved as JSON plus a Markdown table).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from .answer_parsing import DECISIONS, extract_answer
from .configuration_jmlr import JMLRConfig
from .index import DocumentIndex
from .metrics import accuracy, hit_at_k, macro_f1, mean, ndcg_at_k, recall_at_k, reciprocal_rank
from .modeling_jmlr import (
    OPTION_LETTERS,
    JMLRForCausalLM,
    answer_nll,
    build_prompt,
    build_target,
    tokenize_for_lm,
    truncate_to_tokens,
)
from .retrieval import add_candidates

logger = logging.getLogger(__name__)

OPEN_CHOICES = DECISIONS
MODES = ("likelihood", "generative")
NO_SUBJECT = "(no subject)"


@torch.no_grad()
def rank_candidates(
    model: JMLRForCausalLM, retriever_tokenizer, dataset: Dataset, batch_size: int = 16, show_progress: bool = True
) -> list[list[int]]:
    """For each row, the indices of its `candidates` from best to worst retriever score."""
    model.eval()
    rankings = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="Ranking candidates", disable=not show_progress):
        rows = dataset[start : start + batch_size]
        scores = model.score_documents(rows["question"], rows["candidates"], retriever_tokenizer)
        rankings.extend(scores.argsort(dim=-1, descending=True).tolist())
    return rankings


def retrieval_metrics(dataset: Dataset, rankings: Sequence[Sequence[int]], k: int) -> dict[str, float]:
    """`recall@1`, `recall@k` of the gold documents and `evidence@1`, over the rows that have gold ids."""
    hits1 = hitsk = evidence1 = rows_gold = rows_evidence = 0
    for row, ranking in zip(dataset, rankings, strict=True):
        ranked_ids = [row["candidate_ids"][i] for i in ranking]
        gold, evidence = set(row.get("gold_doc_ids") or []), set(row.get("evidence_doc_ids") or [])
        if gold:
            rows_gold += 1
            hits1 += ranked_ids[0] in gold
            hitsk += any(doc_id in gold for doc_id in ranked_ids[:k])
        if evidence:
            rows_evidence += 1
            evidence1 += ranked_ids[0] in evidence
    nan = float("nan")
    return {
        "recall@1": hits1 / rows_gold if rows_gold else nan,
        f"recall@{k}": hitsk / rows_gold if rows_gold else nan,
        "evidence@1": evidence1 / rows_evidence if rows_evidence else nan,
    }


@torch.no_grad()
def _choice_nll(
    model: JMLRForCausalLM | EvaluationModel,
    tokenizer,
    prompt: str,
    choices: Sequence[str],
    max_length: int | None = None,
) -> list[float]:
    """Summed NLL of each choice word right after the prompt (one batched forward; a single forward of the prompt
    when every choice is one token).

    With `max_length`, the prompt loses tokens from the left so that prompt and longest choice fit.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    choice_ids = [tokenizer(" " + choice, add_special_tokens=False)["input_ids"] for choice in choices]
    if max_length is not None:
        prompt_ids = prompt_ids[max(0, len(prompt_ids) + max(len(ids) for ids in choice_ids) - max_length) :]
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


def _context_documents(
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

    With `rankings=None` or `num_documents=0` the prompt has no documents (the closed-book baseline). With
    `truncate_documents`, each document is cut to the config's `max_document_length` generator tokens, as the
    trainer's collator and `jmlr evaluate` do, so the model is measured on prompts shaped like its training prompts
    (off by default, which keeps earlier measurements reproducible).
    """
    model.eval()
    cfg = model.config
    correct, nlls = 0, []
    for i, row in enumerate(tqdm(dataset, desc="Answering", disable=not show_progress)):
        ranking = None if rankings is None else rankings[i]
        docs = _context_documents(cfg, tokenizer, row, ranking, num_documents, truncate_documents)
        options = list(row.get("options") or [])
        prompt = build_prompt(cfg, row["question"], docs, options)
        choices = list(OPTION_LETTERS[: len(options)]) if options else list(OPEN_CHOICES)
        choice_nll = _choice_nll(model, tokenizer, prompt, choices)
        correct += choices[min(range(len(choices)), key=choice_nll.__getitem__)] == row["answer"]
        nlls.append(target_nll(model, tokenizer, row, docs, prompt=prompt))
    return {
        "accuracy": correct / len(dataset) if len(dataset) else float("nan"),
        "answer_nll": sum(nlls) / len(nlls) if nlls else float("nan"),
    }


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
    extraction ([`jmlr_hf.answer_parsing.extract_answer`]).

    The decoding is [`EvaluationModel.generate_answer`], the one `jmlr evaluate` uses, so the two report the same
    thing. A reply that names no single answer counts as wrong and is counted in `generative_unparseable`.
    Returns `generative_accuracy`, `generative_unparseable` and `num_generated`.
    """
    harness = EvaluationModel.from_jmlr(model, tokenizer, retriever_tokenizer).eval()
    cfg = model.config
    correct = unparseable = 0
    for i, row in enumerate(tqdm(dataset, desc="Generating", disable=not show_progress)):
        ranking = None if rankings is None else rankings[i]
        docs = _context_documents(cfg, tokenizer, row, ranking, num_documents, truncate_documents)
        options = list(row.get("options") or [])
        reply = harness.generate_answer(build_prompt(cfg, row["question"], docs, options), max_new_tokens)
        predicted = extract_answer(reply, options)
        unparseable += predicted is None
        correct += predicted == row["answer"]
    return {
        "generative_accuracy": correct / len(dataset) if len(dataset) else float("nan"),
        "generative_unparseable": unparseable,
        "num_generated": len(dataset),
    }


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
# The general harness (`jmlr evaluate`)
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
        """Load one of the three setups from local folders, Hub ids or the aliases of `jmlr_hf.pretrained`.

        A JMLR checkpoint (config model type `"jmlr"`, retriever tokenizer in `retriever_tokenizer/`) carries its
        own retriever, so `retriever_name_or_path` must then be `None`. Any other model is a plain causal LM; with
        `retriever_name_or_path` (an encoder) the two are combined with `JMLRForCausalLM.from_components`.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .pretrained import is_jmlr_checkpoint, load_jmlr_checkpoint, resolve_model_path

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
        ids = ids[max(0, len(ids) + max_new_tokens - self.config.max_length) :]
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


@dataclass
class EvaluationResult:
    """What [`evaluate_dataset`] measured.

    Args:
        settings: how it was run (setup, modes, documents per prompt, ...; the CLI adds task, split and model).
        metrics: `"likelihood"` and/or `"generative"`: `accuracy`, `num_correct`, `num_questions` (generative:
            `num_unparseable`; decision tasks: `macro_f1`); `"retrieval"` when gold passages are known:
            `num_questions`, `mrr` and `recall@k`, `hit@k`, `ndcg@k` for each k.
        per_subject: per subject (MMLU subject, MedMCQA subject, MedQA step), `num_questions` and
            `<mode>_accuracy`; empty when the questions have no subject.
        predictions: one record per question (id, subject, answer, documents, choice NLLs, generated text, the
            predictions of each mode).
    """

    settings: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    per_subject: dict[str, dict[str, Any]] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (`nan` becomes `None`)."""
        return _without_nan(
            {
                "settings": self.settings,
                "metrics": self.metrics,
                "per_subject": self.per_subject,
                "predictions": self.predictions,
            }
        )

    def to_markdown(self) -> str:
        """The metrics as Markdown tables: answers by mode, retrieval by k, and the per-subject breakdown."""
        s = self.settings
        title = " ".join(str(s[key]) for key in ("task", "split") if s.get(key)) or "evaluation"
        lines = [f"### {title}: {s.get('num_questions', '?')} questions, {_describe_retrieval(s)}", ""]
        if s.get("model"):
            lines += [f"Model: {s['model']}" + (f" with retriever {s['retriever']}" if s.get("retriever") else ""), ""]
        modes = [mode for mode in MODES if mode in self.metrics]
        with_f1 = any("macro_f1" in self.metrics[mode] for mode in modes)
        header = ["mode", "accuracy"] + (["macro-F1"] if with_f1 else []) + ["correct", "unparseable", "questions"]
        lines += [_row(header), _row(["---"] * len(header))]
        for mode in modes:
            m = self.metrics[mode]
            cells = [mode, _fmt(m["accuracy"])] + ([_fmt(m.get("macro_f1"))] if with_f1 else [])
            cells += [str(m["num_correct"]), str(m.get("num_unparseable", "–")), str(m["num_questions"])]
            lines.append(_row(cells))
        retrieval = self.metrics.get("retrieval")
        if retrieval:
            ks = sorted(int(key.split("@")[1]) for key in retrieval if key.startswith("recall@"))
            lines += [
                "",
                f"Retrieval, {retrieval['num_questions']} questions with gold passages, MRR {_fmt(retrieval['mrr'])}:",
                "",
                _row(["k", "recall@k", "hit@k", "nDCG@k"]),
                _row(["---"] * 4),
            ]
            for k in ks:
                lines.append(_row([str(k)] + [_fmt(retrieval[f"{name}@{k}"]) for name in ("recall", "hit", "ndcg")]))
        if self.per_subject:
            header = ["subject", "questions"] + [f"{mode} accuracy" for mode in modes]
            lines += ["", _row(header), _row(["---"] * len(header))]
            for subject, m in self.per_subject.items():
                cells = [subject, str(m["num_questions"])] + [_fmt(m[f"{mode}_accuracy"]) for mode in modes]
                lines.append(_row(cells))
        return "\n".join(lines)

    def save(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write the JSON to `path` and the Markdown next to it (same name, suffix `.md`); return both paths."""
        json_path = Path(path)
        markdown_path = json_path.with_suffix(".md")
        if markdown_path == json_path:
            raise ValueError(f"{path}: the results file must not end in .md (the Markdown table goes there)")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        markdown_path.write_text(self.to_markdown() + "\n", encoding="utf-8")
        return json_path, markdown_path


def evaluate_dataset(
    model: EvaluationModel,
    dataset: Dataset,
    *,
    mode: Literal["likelihood", "generative", "both"] = "likelihood",
    index: DocumentIndex | None = None,
    num_candidates: int | None = None,
    num_documents: int | None = None,
    max_new_tokens: int = 16,
    k_values: Sequence[int] | None = None,
    batch_size: int = 16,
    show_progress: bool = True,
) -> EvaluationResult:
    """Answer every question of `dataset` (the QA schema of `jmlr_hf.data`) and measure the answers.

    Documents in the prompt:

    * with `index`, the model's retriever pre-retrieves `num_candidates` candidates per question
      (`jmlr_hf.retrieval.add_candidates`);
    * rows that have a `candidates` column (from `index` or from `jmlr retrieve`) get them re-ranked by the model's
      retriever (`JMLRForCausalLM.score_documents`), or kept in their given order for a model without a retriever;
    * the top `num_documents` (default: the config's `num_context_documents`) go before the question, each cut to
      the config's `max_document_length` generator tokens. Without candidates, or with `num_documents=0`, the
      prompt has none (closed book).

    Args:
        model: the model to evaluate.
        dataset: questions with `question`, `options`, `answer`, and optionally `subject`, `gold_doc_ids`,
            `candidates` / `candidate_ids`.
        mode: `"likelihood"` (lowest-NLL choice), `"generative"` (greedy decoding, then answer extraction) or
            `"both"`.
        index: a document index to retrieve candidates from (needs a model with a retriever).
        num_candidates: candidates per question from `index` (default: the config's `num_candidates`, at most the
            index size).
        num_documents: documents in the prompt (default: the config's `num_context_documents`).
        max_new_tokens: generated tokens per question in generative mode.
        k_values: cut-offs of the retrieval metrics (default: 1, the documents in the prompt and the candidates).
        batch_size: questions per retriever batch.
        show_progress: show progress bars.
    """
    if mode not in (*MODES, "both"):
        raise ValueError(f"mode must be 'likelihood', 'generative' or 'both', got {mode!r}")
    modes = MODES if mode == "both" else (mode,)
    cfg = model.config
    num_documents = cfg.num_context_documents if num_documents is None else num_documents
    model.eval()

    if index is not None and num_documents > 0:
        if not model.has_retriever:
            raise ValueError("retrieving from an index needs a model with a retriever (a JMLR model, or a retriever)")
        num_candidates = min(num_candidates or cfg.num_candidates, len(index))
        dataset = add_candidates(
            dataset,
            index,
            model.jmlr.retriever,
            model.retriever_tokenizer,
            num_candidates,
            max_query_length=cfg.max_query_length,
            show_progress=show_progress,
        )
    rankings = None
    if "candidates" in dataset.column_names and num_documents > 0 and len(dataset):
        if model.has_retriever:
            rankings = rank_candidates(model.jmlr, model.retriever_tokenizer, dataset, batch_size, show_progress)
        else:
            rankings = [list(range(len(candidates))) for candidates in dataset["candidates"]]
        num_candidates = max(len(ranking) for ranking in rankings)
    else:
        num_documents, num_candidates = 0, None

    predictions = []
    for i in tqdm(range(len(dataset)), desc="Evaluating", unit="question", disable=not show_progress):
        row = dataset[i]
        options = list(row.get("options") or [])
        choices = list(OPTION_LETTERS[: len(options)]) if options else list(DECISIONS)
        top = [] if rankings is None else rankings[i][:num_documents]
        documents = [truncate_to_tokens(model.tokenizer, row["candidates"][j], cfg.max_document_length) for j in top]
        prompt = build_prompt(cfg, row["question"], documents, options)
        record: dict[str, Any] = {"id": row["id"], "subject": row.get("subject") or "", "answer": row["answer"]}
        if "candidate_ids" in row and top:
            record["document_ids"] = [row["candidate_ids"][j] for j in top]
        if "likelihood" in modes:
            nll = _choice_nll(model, model.tokenizer, prompt, choices, max_length=cfg.max_length)
            record["likelihood_prediction"] = choices[min(range(len(choices)), key=nll.__getitem__)]
            record["choice_nll"] = {choice: round(value, 4) for choice, value in zip(choices, nll)}
        if "generative" in modes:
            reply = model.generate_answer(prompt, max_new_tokens)
            record["generation"] = reply
            record["generative_prediction"] = extract_answer(reply, options)
        predictions.append(record)

    settings = {
        "setup": model.setup,
        "mode": mode,
        "num_questions": len(dataset),
        "num_documents": num_documents,
        "num_candidates": num_candidates,
        "max_new_tokens": max_new_tokens if "generative" in modes else None,
    }
    is_decision_task = len(dataset) > 0 and not any(dataset["options"])
    metrics = {name: _answer_metrics(predictions, name, is_decision_task) for name in modes}
    if rankings is not None and "candidate_ids" in dataset.column_names and "gold_doc_ids" in dataset.column_names:
        ks = k_values or sorted({1, max(num_documents, 1), num_candidates})
        ranked = [[ids[j] for j in ranking] for ids, ranking in zip(dataset["candidate_ids"], rankings)]
        retrieval = _retrieval_metrics(ranked, dataset["gold_doc_ids"], ks)
        if retrieval is not None:
            metrics["retrieval"] = retrieval
    return EvaluationResult(settings, metrics, _per_subject(predictions, modes), predictions)


def _answer_metrics(predictions: Sequence[dict[str, Any]], mode: str, is_decision_task: bool) -> dict[str, Any]:
    predicted = [record[f"{mode}_prediction"] for record in predictions]
    references = [record["answer"] for record in predictions]
    result = {
        "accuracy": accuracy(predicted, references),
        "num_correct": sum(p == r for p, r in zip(predicted, references)),
        "num_questions": len(predicted),
    }
    if mode == "generative":
        result["num_unparseable"] = sum(p is None for p in predicted)
    if is_decision_task:
        result["macro_f1"] = macro_f1(predicted, references)
    return result


def _retrieval_metrics(
    ranked_ids: Sequence[Sequence[str]], gold_ids: Sequence[Sequence[str]], k_values: Sequence[int]
) -> dict[str, Any] | None:
    """recall@k, hit@k, nDCG@k and MRR over the questions with gold ids (`None` when no question has any)."""
    pairs = [(ranked, gold) for ranked, gold in zip(ranked_ids, gold_ids) if gold]
    if not pairs:
        return None
    result: dict[str, Any] = {"num_questions": len(pairs), "mrr": mean(reciprocal_rank(r, g) for r, g in pairs)}
    for k in k_values:
        result[f"recall@{k}"] = mean(recall_at_k(r, g, k) for r, g in pairs)
        result[f"hit@{k}"] = mean(hit_at_k(r, g, k) for r, g in pairs)
        result[f"ndcg@{k}"] = mean(ndcg_at_k(r, g, k) for r, g in pairs)
    return result


def _per_subject(predictions: Sequence[dict[str, Any]], modes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Accuracy per subject; when only some questions have one, the others form the group `NO_SUBJECT`."""
    if not any(record["subject"] for record in predictions):
        return {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in predictions:
        groups.setdefault(record["subject"] or NO_SUBJECT, []).append(record)
    breakdown = {}
    for subject, records in sorted(groups.items()):
        answers = [record["answer"] for record in records]
        breakdown[subject] = {"num_questions": len(records)} | {
            f"{mode}_accuracy": accuracy([record[f"{mode}_prediction"] for record in records], answers)
            for mode in modes
        }
    return breakdown


def _describe_retrieval(settings: dict[str, Any]) -> str:
    if not settings.get("num_documents"):
        return "closed book"
    source = f"index {settings['index']}" if settings.get("index") else "the given candidates"
    return f"top {settings['num_documents']} of {settings['num_candidates']} candidates from {source}"


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _without_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(item) for item in value]
    return value
