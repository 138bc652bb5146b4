"""Cloze scoring (`evaluate_dataset(mode="cloze")`, `jmlr evaluate --mode cloze`) against NLLs computed by hand from
the logits of a tiny random model, batched against one question at a time; and the answer distribution, macro-F1 and
the dominant-answer warning that every answer table carries (issue 26: letter likelihoods that answer "A" to nearly
every question looked like an accuracy)."""

from __future__ import annotations

import logging

import pytest
import torch
from datasets import Dataset

from jmlr_hf.evaluation import EvaluationModel, EvaluationResult, evaluate_dataset, harness
from jmlr_hf.evaluation.metrics import macro_f1
from jmlr_hf.evaluation.qa import batched_continuation_nll
from jmlr_hf.models import build_prompt

QUESTIONS = [
    {"id": "m1", "question": "Which organ makes insulin?", "options": ["Liver", "Pancreas", "Kidney", "Spleen"],
     "answer": "B", "subject": "physiology"},
    {"id": "m2", "question": "Which vitamin deficiency causes scurvy?",
     "options": ["Vitamin A", "Vitamin B1", "Vitamin C", "Vitamin D", "Vitamin K"], "answer": "C",
     "subject": "biochemistry"},
    {"id": "m3", "question": "Which nerve is injured in a midshaft humerus fracture?",
     "options": ["Axillary nerve", "Radial", "Ulnar nerve of the forearm", "Median"], "answer": "B",
     "subject": "physiology"},
    {"id": "m4", "question": "Which electrolyte abnormality gives peaked T waves?",
     "options": ["Hyperkalemia", "Hypokalemia", "Hypocalcemia", "Hypernatremia"], "answer": "A", "subject": ""},
]  # fmt: skip
DECISIONS = [
    {"id": "p1", "question": "Does aspirin prevent strokes?", "options": [], "answer": "yes", "subject": ""},
    {"id": "p2", "question": "Is the moon made of cheese?", "options": [], "answer": "no", "subject": ""},
    {"id": "p3", "question": "Is X Y?", "options": [], "answer": "maybe", "subject": ""},
]
CLOZE_ROWS = ("cloze", "cloze_per_token", "cloze_per_char")


@pytest.fixture
def tiny(make_tiny_model, generator_tokenizer, retriever_tokenizer, single_thread) -> EvaluationModel:
    return EvaluationModel.from_jmlr(make_tiny_model(), generator_tokenizer, retriever_tokenizer)


def hand_nll(model: EvaluationModel, prompt: str, text: str) -> tuple[float, int]:
    """The summed NLL of `" " + text` after `prompt`, from one forward of the whole sequence: log-softmax of the
    logits at each position before a continuation token, read at that token."""
    prompt_ids = model.tokenizer(prompt)["input_ids"]
    ids = model.tokenizer(" " + text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.generator(input_ids=torch.tensor([prompt_ids + ids])).logits[0].double()
    log_probs = logits.log_softmax(-1)
    positions = range(len(prompt_ids) - 1, len(prompt_ids) + len(ids) - 1)
    return -sum(float(log_probs[p, token]) for p, token in zip(positions, ids, strict=True)), len(ids)


def argmin(values: list[float]) -> int:
    return min(range(len(values)), key=values.__getitem__)


def test_cloze_scores_are_the_hand_computed_option_nlls(tiny):
    result = evaluate_dataset(tiny, Dataset.from_list(QUESTIONS), mode="cloze", show_progress=False)
    assert set(result.metrics) == set(CLOZE_ROWS) and result.settings["mode"] == "cloze"
    for record, row in zip(result.predictions, QUESTIONS, strict=True):
        # The cloze prompt is the question without its option list: the model continues "Answer:" with the text.
        prompt = build_prompt(tiny.config, row["question"], [], None)
        assert prompt.endswith("Answer:") and row["options"][0] not in prompt
        letters = list("ABCDE"[: len(row["options"])])
        expected = [hand_nll(tiny, prompt, text) for text in row["options"]]
        sums = [total for total, _ in expected]
        assert list(record["option_nll"]) == letters
        assert list(record["option_nll"].values()) == pytest.approx(sums, abs=1e-3)
        assert list(record["option_tokens"].values()) == [count for _, count in expected]
        per_token = [total / count for total, count in expected]
        per_char = [total / len(text) for total, text in zip(sums, row["options"])]  # "Vitamin C": 9 characters
        assert record["cloze_prediction"] == letters[argmin(sums)]
        assert record["cloze_per_token_prediction"] == letters[argmin(per_token)]
        assert record["cloze_per_char_prediction"] == letters[argmin(per_char)]
        assert "likelihood_prediction" not in record and "generation" not in record
    # The options differ in length (1 to 6 tokens here), so the three readings are not the same numbers.
    tokens = [count for record in result.predictions for count in record["option_tokens"].values()]
    assert min(tokens) < max(tokens)
    for scoring in CLOZE_ROWS:
        predicted = [record[f"{scoring}_prediction"] for record in result.predictions]
        m = result.metrics[scoring]
        correct = sum(p == row["answer"] for p, row in zip(predicted, QUESTIONS))
        assert (m["num_correct"], m["num_questions"], m["accuracy"]) == (correct, 4, correct / 4)
    assert result.per_subject["physiology"].keys() == {"num_questions", *(f"{s}_accuracy" for s in CLOZE_ROWS)}


def test_cloze_scores_decisions_as_the_words_yes_no_maybe(tiny):
    result = evaluate_dataset(tiny, Dataset.from_list(DECISIONS), mode="cloze", show_progress=False)
    for record, row in zip(result.predictions, DECISIONS, strict=True):
        prompt = build_prompt(tiny.config, row["question"], [], None)
        expected = [hand_nll(tiny, prompt, word)[0] for word in ("yes", "no", "maybe")]
        assert list(record["option_nll"]) == ["yes", "no", "maybe"]
        assert list(record["option_nll"].values()) == pytest.approx(expected, abs=1e-3)
    assert result.settings["gold_answer_distribution"] == {"yes": 1, "no": 1, "maybe": 1}


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_continuation_nll_equals_one_question_at_a_time(tiny, batch_size):
    """All options of all questions `batch_size` sequences per forward (sorted by length, right-padded) give the NLLs
    of each question scored alone, an over-long prompt cut on the left included."""
    prompts = [build_prompt(tiny.config, row["question"], [], None) for row in QUESTIONS]
    continuations = [row["options"] for row in QUESTIONS]
    prompts.append(build_prompt(tiny.config, "Is insulin made in the pancreas? " * 30, [], None))
    continuations.append(["yes", "no", "maybe"])
    assert len(tiny.tokenizer(prompts[-1])["input_ids"]) > 64
    alone = [
        batched_continuation_nll(tiny, tiny.tokenizer, [p], [c], max_length=64, batch_size=1)[0]
        for p, c in zip(prompts, continuations, strict=True)
    ]
    batched = batched_continuation_nll(
        tiny, tiny.tokenizer, prompts, continuations, max_length=64, batch_size=batch_size
    )
    for single, many in zip(alone, batched, strict=True):
        assert [count for _, count in many] == [count for _, count in single]
        assert [total for total, _ in many] == pytest.approx([total for total, _ in single], abs=1e-4)
    # The cut prompt keeps its last tokens: the same NLLs as the hand computation on those tokens.
    kept = tiny.tokenizer.decode(tiny.tokenizer(prompts[-1])["input_ids"][-(64 - 1) :])
    assert batched[-1][0][0] == pytest.approx(hand_nll(tiny, kept, "yes")[0], abs=1e-3)


def test_cloze_batch_size_does_not_change_the_answers(tiny):
    dataset = Dataset.from_list(QUESTIONS)
    one, many = (
        evaluate_dataset(tiny, dataset, mode="cloze", batch_size=size, show_progress=False) for size in (1, 7)
    )
    for a, b in zip(one.predictions, many.predictions, strict=True):
        assert b["option_nll"] == pytest.approx(a["option_nll"], abs=1e-3)
        assert [b[f"{s}_prediction"] for s in CLOZE_ROWS] == [a[f"{s}_prediction"] for s in CLOZE_ROWS]


def test_batched_continuation_nll_refuses_what_it_cannot_score(tiny):
    with pytest.raises(ValueError, match="is empty, there is no text to score"):
        batched_continuation_nll(tiny, tiny.tokenizer, ["Question: q\nAnswer:"], [["Liver", ""]])
    with pytest.raises(ValueError, match="no room for the prompt"):
        batched_continuation_nll(tiny, tiny.tokenizer, ["Question: q\nAnswer:"], [["a b c d e f"]], max_length=3)
    with pytest.raises(ValueError, match="2 prompts but 1"):
        batched_continuation_nll(tiny, tiny.tokenizer, ["a", "b"], [["x"]])


def test_cloze_refuses_open_questions(tiny):
    rows = [{"id": "o1", "question": "What is gout ?", "options": [], "answer": "A form of arthritis.", "subject": ""}]
    with pytest.raises(ValueError, match="open questions .* have no options"):
        evaluate_dataset(tiny, Dataset.from_list(rows), mode="cloze", show_progress=False)


def test_every_answer_table_reports_the_distribution_and_macro_f1(tiny):
    """Likelihood, generative and cloze, on multiple choice: macro-F1 through `jmlr_macro_f1` (the same formula), the
    count of each answer given, in the JSON and in the Markdown table, and the gold answers under it."""
    dataset = Dataset.from_list(QUESTIONS)
    results = [
        evaluate_dataset(tiny, dataset, mode=mode, max_new_tokens=3, show_progress=False) for mode in ("both", "cloze")
    ]
    references = [row["answer"] for row in QUESTIONS]
    for result in results:
        assert result.settings["gold_answer_distribution"] == {"A": 1, "B": 2, "C": 1, "D": 0, "E": 0}
        markdown = result.to_markdown()
        assert "| mode | accuracy | macro-F1 | correct | unparseable | questions | answers given |" in markdown
        assert "Gold answers: A 25%, B 50%, C 25%, D 0%, E 0%" in markdown
        for scoring, m in result.metrics.items():
            predicted = [record[f"{scoring}_prediction"] for record in result.predictions]
            assert m["macro_f1"] == pytest.approx(macro_f1(predicted, references))
            counts = {letter: predicted.count(letter) for letter in "ABCDE"}
            assert m["answer_distribution"] == counts
            assert m["top_answer_share"] == max(counts.values()) / 4
            assert m["top_answer"] == max(counts, key=counts.get)
            shares = ", ".join(f"{letter} {count / 4:.0%}" for letter, count in counts.items())
            row = [line for line in markdown.splitlines() if line.startswith(f"| {scoring.replace('_', ' ')} |")]
            assert len(row) == 1 and row[0].endswith(f"| {shares} |")
    assert set(results[0].metrics) == {"likelihood", "generative"}  # "both" keeps its meaning


def test_decision_tables_report_the_distribution_and_macro_f1(tiny):
    result = evaluate_dataset(tiny, Dataset.from_list(DECISIONS), mode="likelihood", show_progress=False)
    m = result.metrics["likelihood"]
    predicted = [record["likelihood_prediction"] for record in result.predictions]
    assert list(m["answer_distribution"]) == ["yes", "no", "maybe"]
    assert sum(m["answer_distribution"].values()) == 3
    assert m["macro_f1"] == pytest.approx(macro_f1(predicted, ["yes", "no", "maybe"]))


def test_one_dominant_answer_is_warned_about_in_the_log_and_the_table(tiny, monkeypatch, caplog):
    """Letter likelihoods that name "A" for every question (what the 135M models did on MMLU-Med): a logged warning
    and a line under the table, naming the share of "A" among the gold answers; cloze rows are checked the same way."""

    def always_a(model, tokenizer, prompts, choices, **kwargs):
        return [[0.1] + [5.0] * (len(options) - 1) for options in choices]

    monkeypatch.setattr(harness, "batched_choice_nll", always_a)
    with caplog.at_level(logging.WARNING, logger="jmlr_hf.evaluation.harness"):
        result = evaluate_dataset(tiny, Dataset.from_list(QUESTIONS), mode="likelihood", show_progress=False)
    m = result.metrics["likelihood"]
    assert (m["top_answer"], m["top_answer_share"], m["answer_distribution"]["A"]) == ("A", 1.0, 4)
    expected = (
        "likelihood gave the answer 'A' to 4 of 4 questions (100%, more than 80%); 'A' is the gold answer of 25%"
    )
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING][0].startswith(expected)
    warnings = [line for line in result.to_markdown().splitlines() if line.startswith("**Warning:**")]
    assert len(warnings) == 1 and warnings[0].startswith(f"**Warning:** {expected}")
    assert "mode 'cloze'" in warnings[0]


def test_no_warning_at_or_below_the_threshold():
    """80% exactly is not more than 80%: no warning; 5 of 6 (83%) is, for a cloze row as for any other."""

    def metrics(scoring: str, counts: dict[str, int]) -> dict[str, dict]:
        total = sum(counts.values())
        top = max(counts, key=counts.get)
        m = {"accuracy": 0.2, "macro_f1": 0.1, "num_correct": 1, "num_questions": total}
        return {
            scoring: m | {"answer_distribution": counts, "top_answer": top, "top_answer_share": counts[top] / total}
        }

    at = EvaluationResult({"num_questions": 5}, metrics("cloze_per_char", {"A": 4, "B": 1}))
    assert harness.dominant_answer_warnings(at.metrics) == [] and "Warning" not in at.to_markdown()
    above = EvaluationResult({"num_questions": 6}, metrics("cloze_per_char", {"A": 1, "B": 5}))
    (warning,) = harness.dominant_answer_warnings(above.metrics)
    assert warning.startswith("cloze per char gave the answer 'B' to 5 of 6 questions (83%")
    assert f"**Warning:** {warning}" in above.to_markdown() and "mode 'cloze'" not in warning


def test_the_answers_given_column_tells_rare_from_never():
    counts = {"A": 298, "B": 1, "C": 0, "D": 1}  # 1 of 300 rounds to 0%, yet is not never
    m = {"accuracy": 0.217, "macro_f1": 0.097, "num_correct": 65, "num_questions": 300, "answer_distribution": counts}
    result = EvaluationResult(
        {"num_questions": 300}, {"likelihood": m | {"top_answer": "A", "top_answer_share": 0.99}}
    )
    assert "| likelihood | 0.217 | 0.097 | 65 | – | 300 | A 99%, B <1%, C 0%, D <1% |" in result.to_markdown()
