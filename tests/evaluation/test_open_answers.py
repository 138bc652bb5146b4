"""Open questions (MedQuAD: the answer is a text to write): the answer NLL and ROUGE-L instead of accuracy, in the
recipe's evaluation (`answer_metrics`, `generative_metrics`), in `jmlr evaluate`'s harness and as a metric module."""

from __future__ import annotations

import math

import pytest
from datasets import Dataset

from jmlr_hf.evaluation import (
    EvaluationModel,
    answer_metrics,
    evaluate_dataset,
    generative_metrics,
    load_metric,
    target_nll,
)
from jmlr_hf.evaluation.metrics import rouge_l
from jmlr_hf.evaluation.qa import is_open_question, prompt_target_nlls
from jmlr_hf.hub.model_card import eval_results_from_evaluation
from jmlr_hf.models import build_prompt

OPEN = [
    {"id": "q1", "question": "What are the symptoms of gout ?", "answer": "Gout causes sudden pain in a joint.",
     "subject": "symptoms"},
    {"id": "q2", "question": "What is gout ?", "answer": "Gout is a form of arthritis with crystals in the joints.",
     "subject": "information"},
    {"id": "q3", "question": "How is gout treated ?", "answer": "Anti-inflammatory medicines treat the attacks.",
     "subject": "treatment"},
]  # fmt: skip


def open_questions(**columns) -> Dataset:
    rows = [{**row, "options": [], "rationale": "", "gold_doc_ids": [], "evidence_doc_ids": []} for row in OPEN]
    for name, values in columns.items():
        for row, value in zip(rows, values, strict=True):
            row[name] = value
    return Dataset.from_list(rows)


@pytest.fixture
def tiny(make_tiny_model, generator_tokenizer, retriever_tokenizer, single_thread) -> EvaluationModel:
    return EvaluationModel.from_jmlr(make_tiny_model(), generator_tokenizer, retriever_tokenizer)


def test_rouge_l_hand_computed():
    # Reference "gout attacks are treated with medicines" (6 tokens), reply "gout is treated with medicines" (5):
    # LCS = gout, treated, with, medicines (4): P = 4/5, R = 4/6, F = 2PR / (P + R) = 8/11.
    scores = rouge_l(["gout is treated with medicines"], ["gout attacks are treated with medicines"])
    assert scores["rouge_l_precision"] == pytest.approx(0.8)
    assert scores["rouge_l_recall"] == pytest.approx(4 / 6)
    assert scores["rouge_l"] == pytest.approx(8 / 11)
    # Stemming: "treats" and "treated" are one token; an empty or missing reply scores 0; the mean over questions.
    assert rouge_l(["pain treats"], ["pain treated"])["rouge_l"] == pytest.approx(1.0)
    two = rouge_l(["", None], ["pain", "gout"])
    assert two == {"rouge_l": 0.0, "rouge_l_precision": 0.0, "rouge_l_recall": 0.0}
    assert math.isnan(rouge_l([], [])["rouge_l"])
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        rouge_l(["a", "b"], ["a"])
    module = load_metric("jmlr_rouge_l").compute(
        predictions=["gout is treated with medicines", "x"],
        references=["gout attacks are treated with medicines", "y"],
    )
    assert module["rouge_l"] == pytest.approx((8 / 11 + 0.0) / 2)


def test_open_question_is_neither_a_choice_nor_a_decision():
    assert is_open_question({"options": [], "answer": "Gout causes pain."})
    assert not is_open_question({"options": [], "answer": "yes"})
    assert not is_open_question({"options": ["a", "b"], "answer": "A"})


def test_answer_metrics_of_open_questions_are_the_answer_nll_only(tiny):
    dataset = open_questions()
    metrics = answer_metrics(tiny.jmlr, tiny.tokenizer, dataset, None, 0, show_progress=False)
    assert set(metrics) == {"answer_nll"}  # no choice to be right about
    by_hand = [target_nll(tiny.jmlr, tiny.tokenizer, row, []) for row in dataset]
    assert metrics["answer_nll"] == pytest.approx(sum(by_hand) / 3, abs=1e-5)  # batched, as one at a time


def test_generative_metrics_of_open_questions_score_rouge_l(tiny, monkeypatch):
    replies = {"q1": "gout causes pain", "q2": "", "q3": "anti-inflammatory medicines treat the attacks"}

    def fake_generate(self, prompt, max_new_tokens):
        return next(reply for row, reply in zip(OPEN, replies.values()) if row["question"] in prompt)

    monkeypatch.setattr(EvaluationModel, "generate_answer", fake_generate)
    metrics = generative_metrics(tiny.jmlr, tiny.tokenizer, tiny.retriever_tokenizer, open_questions(), None, 0)
    expected = rouge_l(list(replies.values()), [row["answer"] for row in OPEN])["rouge_l"]
    assert metrics == {"num_generated": 3, "generative_rouge_l": pytest.approx(expected)}


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_prompt_target_nlls_batched_equals_one_at_a_time(tiny, batch_size):
    prompts = [build_prompt(tiny.config, row["question"]) for row in OPEN]
    targets = [row["answer"] for row in OPEN]
    batched = prompt_target_nlls(tiny, tiny.tokenizer, prompts, targets, batch_size)
    single = [prompt_target_nlls(tiny, tiny.tokenizer, [p], [t], 1)[0] for p, t in zip(prompts, targets)]
    assert batched == pytest.approx(single, abs=1e-5)
    with pytest.raises(ValueError, match="3 prompts for 2 targets"):
        prompt_target_nlls(tiny, tiny.tokenizer, prompts, targets[:2])


def test_harness_on_open_questions(tiny, monkeypatch):
    monkeypatch.setattr(EvaluationModel, "generate_answer", lambda self, prompt, n: "gout causes pain")
    dataset = open_questions()
    result = evaluate_dataset(tiny, dataset, mode="both", show_progress=False)
    assert result.settings["open_questions"] is True
    likelihood, generative = result.metrics["likelihood"], result.metrics["generative"]
    nlls = [target_nll(tiny.jmlr, tiny.tokenizer, row, []) for row in dataset]
    assert [record["answer_nll"] for record in result.predictions] == pytest.approx(nlls, abs=1e-4)
    assert likelihood == {"answer_nll": pytest.approx(sum(nlls) / 3, abs=1e-4), "num_questions": 3}
    scores = rouge_l(["gout causes pain"] * 3, [row["answer"] for row in OPEN])
    assert generative == {**{key: pytest.approx(value) for key, value in scores.items()}, "num_questions": 3}
    assert result.per_subject["symptoms"] == {
        "num_questions": 1,
        "likelihood_answer_nll": pytest.approx(nlls[0], abs=1e-4),
        "generative_rouge_l": pytest.approx(rouge_l(["gout causes pain"], [OPEN[0]["answer"]])["rouge_l"], abs=1e-4),
    }
    markdown = result.to_markdown()
    assert "| mode | answer NLL (nats/token) | ROUGE-L F |" in markdown and "accuracy" not in markdown
    assert "likelihood answer nll" in markdown and "generative rouge l" in markdown
    # The card entries of an open-answer result are its answer NLL and ROUGE-L.
    result.settings.update(task="medquad", split="test")
    names = [entry.metric_name for entry in eval_results_from_evaluation(result.to_dict())]
    assert names == ["answer_nll (likelihood)", "rouge_l (generative)"]


def test_harness_refuses_to_mix_open_questions_with_choices(tiny):
    rows = open_questions().to_list() + [
        {**OPEN[0], "id": "mc", "options": ["a", "b"], "answer": "A", "rationale": "", "gold_doc_ids": [],
         "evidence_doc_ids": []}
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"mix open answers .* \(question 'mc'\)"):
        evaluate_dataset(tiny, Dataset.from_list(rows), show_progress=False)
