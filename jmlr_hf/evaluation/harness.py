"""The general harness behind `jmlr evaluate` ([`evaluate_dataset`]).

It runs any of three setups, wrapped as an [`EvaluationModel`]: a trained JMLR model, a plain causal LM with a
separate retriever encoder, or a causal LM alone. It answers each question

    * by likelihood: the choice (option letter, or yes/no/maybe) with the lowest NLL right after the prompt;
    * generatively: greedy decoding of a few tokens, then [`jmlr_hf.evaluation.answer_parsing.extract_answer`];
      replies that name no single answer count as wrong and are counted (`num_unparseable`);
    * by cloze: each option's text (or yes/no/maybe) scored as the continuation of the question prompt without the
      option list, as lm-evaluation-harness's cloze tasks do: the lowest summed NLL (its `acc`, row `cloze`), the
      lowest NLL per token (`cloze_per_token`) and per character (`cloze_per_char`, its length-normalised
      `acc_norm`). A small model's letter likelihoods often name one letter for almost every question; the options'
      texts are what such a model can still tell apart;

(open questions, whose answer is a text — MedQuAD — are scored instead: by likelihood, the answer NLL per target token;
generatively, the reply's ROUGE-L against the reference answer, `jmlr_rouge_l`)
with no documents (closed book), or with the top-K of N candidates that the model's retriever re-ranks (candidates
from a `DocumentIndex`, or already in the dataset's `candidates` column). It reports accuracy, retrieval recall@k /
hit@k / nDCG@k / MRR where the questions have `gold_doc_ids`, a per-subject breakdown, and every prediction
([`EvaluationResult`], saved as JSON plus a Markdown table). Beside each accuracy it reports macro-F1 and the
distribution of the answers given, and it warns (a logged warning and a line under the table) when one answer is more
than `DOMINANT_ANSWER_SHARE` of them: the accuracy is then about that answer's share among the gold ones, and ranks
nothing (the letter likelihoods of a 135M model answer "A" to most MMLU-Med questions).

The metrics are computed through the package's `evaluate` modules ([`jmlr_hf.evaluation.load_metric`]:
`jmlr_accuracy`, `jmlr_macro_f1`, `jmlr_ranking`, `jmlr_rouge_l`), loaded from their folder inside the package, so they work offline;
those modules call the functions of `metrics` and `retrieval`, the one definition of each formula.
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

from datasets import Dataset
from tqdm.auto import tqdm

from ..data import DECISIONS
from ..models import OPTION_LETTERS, build_prompt, build_target, truncate_to_tokens
from ..retrieval import DocumentIndex, add_candidates
from .answer_parsing import extract_answer
from .metric_loading import load_metric
from .metrics import mean
from .qa import (
    EvaluationModel,
    batched_choice_nll,
    batched_continuation_nll,
    is_open_question,
    prompt_target_nlls,
)
from .retrieval import rank_candidates
from .settings import check_evaluation_settings

logger = logging.getLogger(__name__)

MODES = ("likelihood", "generative", "cloze")
#: What each `mode` argument runs. `"both"` keeps its meaning from before cloze scoring existed (the letter
#: likelihood and the generated reply, the two readings of the same prompt); cloze, a different prompt, is asked for
#: by name, as lm-evaluation-harness keeps its cloze formulations as tasks of their own.
MODE_SELECTIONS = {
    "likelihood": ("likelihood",),
    "generative": ("generative",),
    "cloze": ("cloze",),
    "both": ("likelihood", "generative"),
}
#: The three readings of the cloze NLLs, each a row of the results: the summed NLL (lm-evaluation-harness's `acc`),
#: per token, and per character of the option's text (its `acc_norm`).
CLOZE_SCORINGS = ("cloze", "cloze_per_token", "cloze_per_char")
#: The rows of the answer table, in order: each a key of `EvaluationResult.metrics` when it was run.
SCORINGS = ("likelihood", "generative", *CLOZE_SCORINGS)
#: Above this share of the predictions, one answer makes the accuracy uninformative: warned about.
DOMINANT_ANSWER_SHARE = 0.8
NO_SUBJECT = "(no subject)"
#: What each mode reports per question and per subject on open questions (MedQuAD): a score, not an accuracy.
OPEN_SCORES = {"likelihood": "answer_nll", "generative": "rouge_l"}


@dataclass
class EvaluationResult:
    """What [`evaluate_dataset`] measured.

    Args:
        settings: how it was run (setup, modes, documents per prompt, ...; the CLI adds task, split and model);
            on closed questions also `gold_answer_distribution`, the count of each gold answer.
        metrics: one entry per scoring that ran (`SCORINGS`: `"likelihood"`, `"generative"`, and for cloze
            `"cloze"`, `"cloze_per_token"`, `"cloze_per_char"`): `accuracy`, `macro_f1`, `num_correct`,
            `num_questions`, `answer_distribution` (the count of each answer given; `None`, no answer, left out),
            `top_answer` and `top_answer_share` (its share of all predictions), and for generative
            `num_unparseable`; on open questions instead `answer_nll` (likelihood) or `rouge_l`,
            `rouge_l_precision`, `rouge_l_recall` (generative); `"retrieval"` when gold passages are known:
            `num_questions`, `mrr` and `recall@k`, `hit@k`, `ndcg@k` for each k.
        per_subject: per subject (MMLU subject, MedMCQA subject, MedQA step), `num_questions` and
            `<scoring>_accuracy` (open questions: `likelihood_answer_nll`, `generative_rouge_l`); empty when the
            questions have no subject.
        predictions: one record per question (id, subject, answer, `document_ids` of the documents in the prompt
            best first, `gold_doc_ids` where the question has gold passages, choice NLLs, generated text, cloze
            `option_nll` and `option_tokens`, the predictions of each scoring).
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
        modes = [mode for mode in SCORINGS if mode in self.metrics]
        is_open = bool(s.get("open_questions"))
        if is_open:
            header = ["mode", "answer NLL (nats/token)", "ROUGE-L F", "ROUGE-L P", "ROUGE-L R", "questions"]
            lines += [_row(header), _row(["---"] * len(header))]
            for mode in modes:
                m = self.metrics[mode]
                cells = [mode, _fmt(m.get("answer_nll"))]
                cells += [_fmt(m.get(key)) for key in ("rouge_l", "rouge_l_precision", "rouge_l_recall")]
                lines.append(_row(cells + [str(m["num_questions"])]))
        else:
            with_f1 = any("macro_f1" in self.metrics[mode] for mode in modes)
            with_distribution = any("answer_distribution" in self.metrics[mode] for mode in modes)
            header = ["mode", "accuracy"] + (["macro-F1"] if with_f1 else [])
            header += ["correct", "unparseable", "questions"] + (["answers given"] if with_distribution else [])
            lines += [_row(header), _row(["---"] * len(header))]
            for mode in modes:
                m = self.metrics[mode]
                cells = [mode.replace("_", " "), _fmt(m["accuracy"])] + ([_fmt(m.get("macro_f1"))] if with_f1 else [])
                cells += [str(m["num_correct"]), str(m.get("num_unparseable", "–")), str(m["num_questions"])]
                if with_distribution:
                    cells.append(_distribution(m.get("answer_distribution"), m["num_questions"]))
                lines.append(_row(cells))
            gold = s.get("gold_answer_distribution")
            if gold:
                lines += ["", f"Gold answers: {_distribution(gold, sum(gold.values()))}"]
            warnings = dominant_answer_warnings(self.metrics, gold)
            if warnings:
                lines += [""] + [f"**Warning:** {warning}" for warning in warnings]
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
            columns = [f"{mode}_{OPEN_SCORES[mode] if is_open else 'accuracy'}" for mode in modes]
            header = ["subject", "questions"] + [column.replace("_", " ") for column in columns]
            lines += ["", _row(header), _row(["---"] * len(header))]
            for subject, m in self.per_subject.items():
                cells = [subject, str(m["num_questions"])] + [_fmt(m[column]) for column in columns]
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
    mode: Literal["likelihood", "generative", "cloze", "both"] = "likelihood",
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
        mode: `"likelihood"` (lowest-NLL choice letter or decision), `"generative"` (greedy decoding, then answer
            extraction), `"cloze"` (each option's text as the continuation of the prompt without the option list:
            lowest NLL summed, per token and per character; not for open questions) or `"both"` (likelihood and
            generative).
        index: a document index to retrieve candidates from (needs a model with a retriever).
        num_candidates: candidates per question from `index` (default: the config's `num_candidates`, at most the
            index size).
        num_documents: documents in the prompt (default: the config's `num_context_documents`).
        max_new_tokens: generated tokens per question in generative mode.
        k_values: cut-offs of the retrieval metrics (default: 1, the documents in the prompt and the candidates).
        batch_size: questions per batch, of the retriever and of likelihood scoring (cloze: sequences, one per
            option).
        show_progress: show progress bars.
    """
    if mode not in MODE_SELECTIONS:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODE_SELECTIONS))}, got {mode!r}")
    modes = MODE_SELECTIONS[mode]
    cfg = model.config
    check_evaluation_settings(
        batch_size=batch_size,
        num_candidates=num_candidates,
        num_documents=num_documents,
        max_new_tokens=max_new_tokens,
        config_candidates=cfg.num_candidates,
        config_documents=cfg.num_context_documents,
    )
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

    open_flags = [is_open_question(dataset[i]) for i in range(len(dataset))]
    is_open = any(open_flags)
    if is_open and not all(open_flags):
        first = dataset[open_flags.index(False)]["id"]
        raise ValueError(
            f"the questions mix open answers (texts, as MedQuAD's) with choices (question {first!r}): evaluate them "
            "separately, since their metrics differ (answer NLL / ROUGE-L against accuracy)"
        )
    if is_open and "cloze" in modes:
        raise ValueError(
            "mode 'cloze' scores each option's text, and open questions (MedQuAD's) have no options: use "
            "'likelihood' (answer NLL), 'generative' (ROUGE-L) or 'both'"
        )
    predictions, prompts, choice_lists, option_lists, document_lists = [], [], [], [], []
    for i in range(len(dataset)):
        row = dataset[i]
        options = list(row.get("options") or [])
        option_lists.append(options)
        top = [] if rankings is None else rankings[i][:num_documents]
        documents = [truncate_to_tokens(model.tokenizer, row["candidates"][j], cfg.max_document_length) for j in top]
        prompts.append(build_prompt(cfg, row["question"], documents, options))
        document_lists.append(documents)
        choice_lists.append(list(OPTION_LETTERS[: len(options)]) if options else list(DECISIONS))
        record: dict[str, Any] = {"id": row["id"], "subject": row.get("subject") or "", "answer": row["answer"]}
        if "candidate_ids" in row and top:
            record["document_ids"] = [row["candidate_ids"][j] for j in top]
        if row.get("gold_doc_ids"):
            # Beside the documents used, so that a reader can pair two models' retrieval question by question.
            record["gold_doc_ids"] = list(row["gold_doc_ids"])
        predictions.append(record)
    if is_open:
        _score_open_answers(model, dataset, modes, prompts, predictions, max_new_tokens, batch_size, show_progress)
    elif "likelihood" in modes:
        # All questions' prompts, `batch_size` per forward: the same NLLs as one question at a time, several times
        # faster (benchmarks/evaluation.py).
        nlls = batched_choice_nll(
            model,
            model.tokenizer,
            prompts,
            choice_lists,
            max_length=cfg.max_length,
            batch_size=batch_size,
            show_progress=show_progress,
        )
        for record, choices, nll in zip(predictions, choice_lists, nlls, strict=True):
            record["likelihood_prediction"] = choices[min(range(len(choices)), key=nll.__getitem__)]
            record["choice_nll"] = {choice: round(value, 4) for choice, value in zip(choices, nll, strict=True)}
    if "generative" in modes and not is_open:
        for i in tqdm(range(len(dataset)), desc="Generating", unit="question", disable=not show_progress):
            reply = model.generate_answer(prompts[i], max_new_tokens)
            predictions[i]["generation"] = reply
            predictions[i]["generative_prediction"] = extract_answer(reply, option_lists[i])
    if "cloze" in modes:
        _score_cloze(
            model, dataset, choice_lists, option_lists, document_lists, predictions, batch_size, show_progress
        )

    settings = {
        "setup": model.setup,
        "mode": mode,
        "num_questions": len(dataset),
        "num_documents": num_documents,
        "num_candidates": num_candidates,
        "max_new_tokens": max_new_tokens if "generative" in modes else None,
    }
    if is_open:
        settings["open_questions"] = True
        metrics = {name: _open_answer_metrics(predictions, name) for name in modes}
    else:
        scorings = [
            scoring for scoring in SCORINGS if scoring in modes or scoring in CLOZE_SCORINGS and "cloze" in modes
        ]
        labels = _answer_labels(choice_lists)
        metrics = {name: _answer_metrics(predictions, name, labels) for name in scorings}
        settings["gold_answer_distribution"] = _count_answers([record["answer"] for record in predictions], labels)
        for warning in dominant_answer_warnings(metrics, settings["gold_answer_distribution"]):
            logger.warning(warning)
    if rankings is not None and "candidate_ids" in dataset.column_names and "gold_doc_ids" in dataset.column_names:
        ks = k_values or sorted({1, max(num_documents, 1), num_candidates})
        ranked = [[ids[j] for j in ranking] for ids, ranking in zip(dataset["candidate_ids"], rankings)]
        retrieval = load_metric("jmlr_ranking").compute(
            predictions=ranked, references=dataset["gold_doc_ids"], k_values=list(ks)
        )
        if retrieval["num_questions"]:
            metrics["retrieval"] = retrieval
    scored = [name for name in SCORINGS if name in metrics]
    return EvaluationResult(settings, metrics, _per_subject(predictions, scored, is_open), predictions)


def _score_open_answers(
    model: EvaluationModel,
    dataset: Dataset,
    modes: Sequence[str],
    prompts: Sequence[str],
    predictions: list[dict[str, Any]],
    max_new_tokens: int,
    batch_size: int,
    show_progress: bool,
) -> None:
    """Open questions: each record gets `answer_nll` (likelihood: nats per target token) and/or `generation` with its
    `rouge_l` against the reference answer (generative)."""
    if "likelihood" in modes:
        targets = [build_target(model.config, row["answer"], row.get("rationale"), []) for row in dataset]
        nlls = prompt_target_nlls(model, model.tokenizer, prompts, targets, batch_size, show_progress)
        for record, nll in zip(predictions, nlls, strict=True):
            record["answer_nll"] = round(nll, 4)
    if "generative" in modes:
        rouge = load_metric("jmlr_rouge_l")
        for i in tqdm(range(len(dataset)), desc="Generating", unit="question", disable=not show_progress):
            reply = model.generate_answer(prompts[i], max_new_tokens)
            predictions[i]["generation"] = reply
            predictions[i]["rouge_l"] = round(
                rouge.compute(predictions=[reply], references=[predictions[i]["answer"]])["rouge_l"], 4
            )


def _score_cloze(
    model: EvaluationModel,
    dataset: Dataset,
    choice_lists: Sequence[Sequence[str]],
    option_lists: Sequence[Sequence[str]],
    document_lists: Sequence[Sequence[str]],
    predictions: list[dict[str, Any]],
    batch_size: int,
    show_progress: bool,
) -> None:
    """Cloze scoring: each record gets `option_nll` (summed NLL of each option's text, keyed by its letter or
    decision), `option_tokens`, and the prediction of each of `CLOZE_SCORINGS`.

    The prompt is the question with its documents but without the option list (`build_prompt(..., options=None)`):
    the model continues "Answer:" with the option's own words, as in lm-evaluation-harness's cloze formulation,
    instead of reading the letters off a list. Decisions are scored as the words yes / no / maybe. Normalising by
    characters is lm-evaluation-harness's `acc_norm` (the option's length without the space before it); by tokens,
    the per-token mean some harnesses use instead; both undo the sum's preference for short options.
    """
    cfg = model.config
    texts = [list(options) if options else list(choices) for options, choices in zip(option_lists, choice_lists)]
    prompts = [build_prompt(cfg, row["question"], documents, None) for row, documents in zip(dataset, document_lists)]
    scores = batched_continuation_nll(
        model,
        model.tokenizer,
        prompts,
        texts,
        max_length=cfg.max_length,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    for record, choices, options, score in zip(predictions, choice_lists, texts, scores, strict=True):
        nll = [total for total, _ in score]
        tokens = [count for _, count in score]
        readings = {
            "cloze": nll,
            "cloze_per_token": [total / count for total, count in zip(nll, tokens)],
            # An option with no characters was refused by `batched_continuation_nll`: no division by 0 here.
            "cloze_per_char": [total / len(text) for total, text in zip(nll, options)],
        }
        record["option_nll"] = {choice: round(value, 4) for choice, value in zip(choices, nll, strict=True)}
        record["option_tokens"] = dict(zip(choices, tokens, strict=True))
        for scoring, values in readings.items():
            record[f"{scoring}_prediction"] = choices[min(range(len(choices)), key=values.__getitem__)]


def _open_answer_metrics(predictions: Sequence[dict[str, Any]], mode: str) -> dict[str, Any]:
    """The mean answer NLL (likelihood) or ROUGE-L F / precision / recall (generative) of open answers."""
    if mode == "likelihood":
        return {"answer_nll": mean(record["answer_nll"] for record in predictions), "num_questions": len(predictions)}
    scores = load_metric("jmlr_rouge_l").compute(
        predictions=[record["generation"] for record in predictions],
        references=[record["answer"] for record in predictions],
    )
    return {**scores, "num_questions": len(predictions)}


def _answer_metrics(predictions: Sequence[dict[str, Any]], mode: str, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and the answers given by one scoring (`mode`, a key of `SCORINGS`); `labels` orders the
    distribution (every answer the questions allow, zeros included).

    Macro-F1 for multiple choice too: a scoring that names one letter for every question keeps the accuracy of that
    letter's share, but its macro-F1 falls to about 1/(number of options) of it, which the two side by side show.
    """
    predicted = [record[f"{mode}_prediction"] for record in predictions]
    references = [record["answer"] for record in predictions]
    # `""` for an unparseable reply: the metric modules read it as `None` (wrong), which `evaluate` cannot encode.
    answered = [p if p is not None else "" for p in predicted]
    given = _count_answers(predicted, labels)
    top = max(given, key=given.__getitem__) if given else None
    result = {
        "accuracy": load_metric("jmlr_accuracy").compute(predictions=answered, references=references)["accuracy"],
        "macro_f1": load_metric("jmlr_macro_f1").compute(predictions=answered, references=references)["macro_f1"],
        "num_correct": sum(p == r for p, r in zip(predicted, references)),
        "num_questions": len(predicted),
        "answer_distribution": given,
        "top_answer": top,
        "top_answer_share": given[top] / len(predicted) if top is not None else math.nan,
    }
    if mode == "generative":
        result["num_unparseable"] = sum(p is None for p in predicted)
    return result


def _answer_labels(choice_lists: Sequence[Sequence[str]]) -> list[str]:
    """Every answer the questions allow, in order (A, B, C, ... or yes, no, maybe)."""
    labels: list[str] = []
    for choices in choice_lists:
        labels += [choice for choice in choices if choice not in labels]
    return labels


def _count_answers(answers: Sequence[str | None], labels: Sequence[str]) -> dict[str, int]:
    """How often each of `labels` occurs in `answers` (zeros kept, so that a label never given shows), then any other
    answer; `None` (no answer) is not counted."""
    counts = dict.fromkeys(labels, 0)
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    return counts


def dominant_answer_warnings(
    metrics: dict[str, dict[str, Any]], gold_distribution: dict[str, int] | None = None
) -> list[str]:
    """One sentence for each scoring whose most frequent answer is more than `DOMINANT_ANSWER_SHARE` of its
    predictions: its accuracy is then mostly the share of that answer among the gold ones, and ranks nothing.

    Logged by [`evaluate_dataset`] and written under the Markdown table, from the metrics alone, so that a results
    file read back says the same.
    """
    warnings = []
    for scoring in SCORINGS:
        m = metrics.get(scoring) or {}
        share = m.get("top_answer_share")
        if share is None or math.isnan(share) or share <= DOMINANT_ANSWER_SHARE:
            continue
        top = m["top_answer"]
        count = m["answer_distribution"][top]
        sentence = (
            f"{scoring.replace('_', ' ')} gave the answer {top!r} to {count} of {m['num_questions']} questions "
            f"({share:.0%}, more than {DOMINANT_ANSWER_SHARE:.0%})"
        )
        if gold_distribution:
            gold_share = gold_distribution.get(top, 0) / max(sum(gold_distribution.values()), 1)
            sentence += f"; {top!r} is the gold answer of {gold_share:.0%}"
        sentence += ": its accuracy says little about the model"
        if scoring in ("likelihood", "generative"):
            sentence += " (mode 'cloze' scores the options' texts instead of a letter)"
        warnings.append(sentence)
    return warnings


def _distribution(counts: dict[str, int] | None, total: int) -> str:
    """`A 87%, B 5%, C <1%, D 0%`: each answer's share of `total` (the questions, unparseable replies included);
    `<1%` where a few answers round to 0%, so that 0% means never."""
    if not counts:
        return "–"

    def share(count: int) -> str:
        if not total:
            return str(count)
        return "<1%" if 0 < count / total < 0.005 else f"{count / total:.0%}"

    return ", ".join(f"{answer} {share(count)}" for answer, count in counts.items())


def _per_subject(
    predictions: Sequence[dict[str, Any]], modes: Sequence[str], is_open: bool = False
) -> dict[str, dict[str, Any]]:
    """Accuracy per subject (open questions: the mean answer NLL / ROUGE-L per question type); when only some
    questions have one, the others form the group `NO_SUBJECT`."""
    if not any(record["subject"] for record in predictions):
        return {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in predictions:
        groups.setdefault(record["subject"] or NO_SUBJECT, []).append(record)
    breakdown = {}
    if is_open:
        for subject, records in sorted(groups.items()):
            breakdown[subject] = {"num_questions": len(records)} | {
                f"{mode}_{OPEN_SCORES[mode]}": mean(record[OPEN_SCORES[mode]] for record in records) for mode in modes
            }
        return breakdown
    metric = load_metric("jmlr_accuracy")
    for subject, records in sorted(groups.items()):
        answers = [record["answer"] for record in records]
        breakdown[subject] = {"num_questions": len(records)} | {
            f"{mode}_accuracy": metric.compute(
                predictions=[record[f"{mode}_prediction"] or "" for record in records], references=answers
            )["accuracy"]
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


__all__ = [
    "CLOZE_SCORINGS",
    "DOMINANT_ANSWER_SHARE",
    "MODES",
    "MODE_SELECTIONS",
    "SCORINGS",
    "EvaluationResult",
    "dominant_answer_warnings",
    "evaluate_dataset",
]
