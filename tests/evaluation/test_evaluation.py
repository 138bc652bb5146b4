"""Evaluation: the recipe's metrics against hand-computed values, the training-curve plot, and the general harness
(`evaluate_dataset`) on tiny random models."""

from __future__ import annotations

import json
import math

import pytest
import torch
from datasets import Dataset

from jmlr_hf.evaluation import (
    EvaluationModel,
    EvaluationResult,
    answer_metrics,
    evaluate_dataset,
    evaluate_model,
    format_comparison,
    generative_metrics,
    rank_candidates,
    retrieval_metrics,
)
from jmlr_hf.evaluation import qa as evaluation_module
from jmlr_hf.evaluation.harness import NO_SUBJECT
from jmlr_hf.evaluation.metrics import macro_f1
from jmlr_hf.models import RETRIEVER_TOKENIZER_DIR, build_prompt
from jmlr_hf.retrieval.index import DocumentIndex
from jmlr_hf.utils.plotting import plot_training_curves


def test_retrieval_metrics_hand_computed():
    rows = Dataset.from_list(
        [
            # gold ranked 2nd; evidence not first
            {"candidate_ids": ["x", "g1", "g2"], "gold_doc_ids": ["g1", "g2"], "evidence_doc_ids": ["g2"]},
            # gold ranked 1st, and it is the evidence
            {"candidate_ids": ["g3", "y", "z"], "gold_doc_ids": ["g3"], "evidence_doc_ids": ["g3"]},
            # no gold among the candidates
            {"candidate_ids": ["a", "b", "c"], "gold_doc_ids": ["g4"], "evidence_doc_ids": ["g4"]},
            # no gold known: not counted
            {"candidate_ids": ["a", "b", "c"], "gold_doc_ids": [], "evidence_doc_ids": []},
        ]
    )
    # The retriever re-ranks the candidates: row 0 puts g2 (index 2) first, row 1 keeps the order.
    rankings = [[2, 1, 0], [0, 1, 2], [0, 1, 2], [0, 1, 2]]
    metrics = retrieval_metrics(rows, rankings, k=2)
    assert metrics["recall@1"] == pytest.approx(2 / 3)  # rows 0 and 1 of the 3 with gold
    assert metrics["recall@2"] == pytest.approx(2 / 3)
    assert metrics["evidence@1"] == pytest.approx(2 / 3)  # g2 and g3 are evidence


def test_retrieval_metrics_without_gold_is_nan():
    rows = Dataset.from_list([{"candidate_ids": ["a"], "gold_doc_ids": [], "evidence_doc_ids": []}])
    metrics = retrieval_metrics(rows, [[0]], k=1)
    assert math.isnan(metrics["recall@1"]) and math.isnan(metrics["evidence@1"])


def test_format_comparison():
    table = format_comparison({"recall@1": 0.5, "accuracy": 0.25}, {"recall@1": 0.75, "accuracy": 0.5})
    assert table.splitlines() == [
        "| metric | before | after |",
        "|---|---|---|",
        "| recall@1 | 0.5 | 0.75 |",
        "| accuracy | 0.25 | 0.5 |",
    ]


def test_plot_training_curves(tmp_path):
    history = [
        {"step": step, "lm_loss": 3.0 - 0.1 * step, "retrieval_loss": 0.7, "retrieval_agreement": 0.6}
        for step in range(1, 6)
    ] + [{"step": 5, "train_runtime": 1.0}]
    path = tmp_path / "curves.png"
    drawn = plot_training_curves(history, str(path))
    assert drawn == ["lm_loss", "retrieval_loss", "retrieval_agreement"]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="none of the JMLR metrics"):
        plot_training_curves([{"step": 1, "loss": 1.0}], str(tmp_path / "empty.png"))


# --------------------------------------------------------------------------------------------------------------------
# evaluate_dataset: the general harness, on tiny random models
# --------------------------------------------------------------------------------------------------------------------

QUESTIONS = [
    {
        "id": "m1",
        "question": "Which organ makes insulin?",
        "options": ["Liver", "Pancreas", "Kidney", "Spleen"],
        "answer": "B",
        "subject": "physiology",
    },
    {
        "id": "m2",
        "question": "Which vitamin deficiency causes scurvy?",
        "options": ["Vitamin A", "Vitamin B1", "Vitamin C", "Vitamin D", "Vitamin K"],
        "answer": "C",
        "subject": "biochemistry",
    },
    {
        "id": "m3",
        "question": "Which nerve is injured in a midshaft humerus fracture?",
        "options": ["Axillary", "Radial", "Ulnar", "Median"],
        "answer": "B",
        "subject": "physiology",
    },
    {
        "id": "m4",
        "question": "Which electrolyte abnormality gives peaked T waves?",
        "options": ["Hyperkalemia", "Hypokalemia", "Hypocalcemia", "Hypernatremia"],
        "answer": "A",
        "subject": "",
    },
]
DOCS = {
    "d1": "Beta cells of the pancreas secrete insulin.",
    "d2": "Vitamin C deficiency causes scurvy.",
    "d3": "The radial nerve runs in the spiral groove of the humerus.",
    "d4": "Hyperkalemia produces peaked T waves.",
    "d5": "The kidney filters the blood.",
    "d6": "The spleen removes old red cells.",
}


@pytest.fixture
def tiny(make_tiny_model, generator_tokenizer, retriever_tokenizer, single_thread) -> EvaluationModel:
    return EvaluationModel.from_jmlr(make_tiny_model(), generator_tokenizer, retriever_tokenizer)


def _questions(**columns) -> Dataset:
    rows = [{**row, "rationale": "", "gold_doc_ids": [], "evidence_doc_ids": []} for row in QUESTIONS]
    for name, values in columns.items():
        for row, value in zip(rows, values):
            row[name] = value
    return Dataset.from_list(rows)


def test_evaluate_dataset_closed_book(tiny):
    dataset = _questions()
    result = evaluate_dataset(tiny, dataset, mode="both", max_new_tokens=4, show_progress=False)
    assert result.settings["num_documents"] == 0 and result.settings["setup"] == "jmlr"
    assert set(result.metrics) == {"likelihood", "generative"}  # no gold passages: no retrieval metrics
    assert len(result.predictions) == 4
    for record, row in zip(result.predictions, QUESTIONS):
        assert record["id"] == row["id"] and "document_ids" not in record
        nll = record["choice_nll"]
        assert list(nll) == list("ABCDE"[: len(row["options"])])
        assert record["likelihood_prediction"] == min(nll, key=nll.get)
        assert isinstance(record["generation"], str)
    for mode in ("likelihood", "generative"):
        m = result.metrics[mode]
        predicted = [record[f"{mode}_prediction"] for record in result.predictions]
        correct = sum(p == row["answer"] for p, row in zip(predicted, QUESTIONS))
        assert m["num_questions"] == 4 and m["num_correct"] == correct and m["accuracy"] == correct / 4
        # Multiple choice has a macro-F1 too (issue 26: one letter for every answer shows there, not in accuracy).
        assert m["macro_f1"] == pytest.approx(macro_f1(predicted, [row["answer"] for row in QUESTIONS]))
    unparseable = sum(record["generative_prediction"] is None for record in result.predictions)
    assert result.metrics["generative"]["num_unparseable"] == unparseable
    # The likelihood answers are those of the recipe's closed-book evaluation.
    closed_book = answer_metrics(tiny.jmlr, tiny.tokenizer, dataset, None, 0, show_progress=False)
    assert result.metrics["likelihood"]["accuracy"] == closed_book["accuracy"]


def test_generative_metrics_count_unparseable_replies_as_wrong(tiny, monkeypatch):
    dataset = _questions()  # answers B, A, B, A
    replies = iter(["B: Pancreas. Beta cells make insulin.", "I don't know.", "C or D", "Answer: A"])
    prompts = []

    def fake_generate(self, prompt, max_new_tokens):
        prompts.append((prompt, max_new_tokens))
        return next(replies)

    monkeypatch.setattr(EvaluationModel, "generate_answer", fake_generate)
    metrics = generative_metrics(
        tiny.jmlr, tiny.tokenizer, tiny.retriever_tokenizer, dataset, None, 0, max_new_tokens=5, show_progress=False
    )
    # B right; a refusal and an ambiguous reply are unparseable (wrong); A right.
    assert metrics == {"generative_accuracy": 0.5, "generative_unparseable": 2, "num_generated": 4}
    assert [p for p, _ in prompts] == [
        build_prompt(tiny.config, row["question"], [], row["options"]) for row in QUESTIONS
    ] and {n for _, n in prompts} == {5}


def test_evaluate_model_generates_on_the_first_rows_with_the_answer_prompts(tiny, monkeypatch):
    long_document = " ".join(["The pancreas makes insulin in its beta cells."] * 20)
    ids = [["long", "long"], ["d2", "d5"], ["d6", "d3"], ["d4", "d1"]]  # question 1 sees the long one either way
    dataset = _questions(
        candidate_ids=ids,
        candidates=[[long_document if d == "long" else DOCS[d] for d in row] for row in ids],
        gold_doc_ids=[["long"], ["d2"], ["d3"], []],
    )
    tiny.jmlr.config.num_context_documents = 1
    generated, scored = [], []

    def fake_generate(self, prompt, max_new_tokens):
        generated.append(prompt)
        return "A"

    original_choice_nll = evaluation_module.choice_nll

    def recording_choice_nll(model, tokenizer, prompt, choices, max_length=None):
        scored.append(prompt)
        return original_choice_nll(model, tokenizer, prompt, choices, max_length)

    monkeypatch.setattr(EvaluationModel, "generate_answer", fake_generate)
    monkeypatch.setattr(evaluation_module, "choice_nll", recording_choice_nll)
    metrics = evaluate_model(
        tiny.jmlr,
        tiny.tokenizer,
        tiny.retriever_tokenizer,
        dataset,
        answer_limit=3,
        generative_limit=2,
        truncate_documents=True,
        show_progress=False,
    )
    assert metrics["num_answered"] == 3 and metrics["num_generated"] == 2
    assert metrics["generative_unparseable"] == 0
    assert metrics["generative_accuracy"] == sum(row["answer"] == "A" for row in QUESTIONS[:2]) / 2
    assert generated == scored[:2]  # generation sees exactly the likelihood prompts
    # The documents are cut as in training: the first prompt has the long one's start, never all of it.
    assert long_document[:40] in scored[0] and all(long_document not in prompt for prompt in scored)
    assert not evaluate_model(
        tiny.jmlr, tiny.tokenizer, tiny.retriever_tokenizer, dataset, show_progress=False
    ).keys() & {
        "generative_accuracy",
        "num_generated",
    }


def test_answer_metrics_cut_documents_only_when_asked(tiny, monkeypatch):
    long_document = " ".join(["The pancreas makes insulin in its beta cells."] * 20)
    dataset = _questions(candidate_ids=[["long"]] * 4, candidates=[[long_document]] * 4).select([0])
    documents = []

    def recording_build_prompt(config, question, docs=(), options=None):
        documents.append(list(docs))
        return build_prompt(config, question, docs, options)

    monkeypatch.setattr("jmlr_hf.evaluation.qa.build_prompt", recording_build_prompt)
    for truncate in (False, True):
        answer_metrics(tiny.jmlr, tiny.tokenizer, dataset, [[0]], 1, False, truncate_documents=truncate)
    uncut, cut = documents
    assert uncut == [long_document]
    assert long_document.startswith(cut[0]) and len(cut[0]) < len(long_document)
    assert len(tiny.tokenizer(cut[0], add_special_tokens=False)["input_ids"]) <= tiny.config.max_document_length


def test_single_token_choices_are_scored_from_one_forward(tiny):
    prompt = build_prompt(tiny.config, QUESTIONS[0]["question"], [], QUESTIONS[0]["options"])
    letters = ["A", "B", "C", "D"]
    assert all(len(tiny.tokenizer(" " + c, add_special_tokens=False)["input_ids"]) == 1 for c in letters)
    fast = evaluation_module.choice_nll(tiny, tiny.tokenizer, prompt, letters)
    # The reference: one sequence per choice, its NLL on the choice token (what the batched path computes).
    prompt_ids = tiny.tokenizer(prompt, add_special_tokens=True)["input_ids"]
    for letter, value in zip(letters, fast, strict=True):
        (token,) = tiny.tokenizer(" " + letter, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + [token]])
        labels = torch.full_like(ids, -100)
        labels[0, -1] = token
        assert value == pytest.approx(float(tiny.answer_nll(ids, torch.ones_like(ids), labels)[0]), abs=1e-4)
    # Multi-token choices take the batched path; a single-token one among them scores the same there.
    mixed = evaluation_module.choice_nll(tiny, tiny.tokenizer, prompt, ["A", "Pancreatic beta cells"])
    assert mixed[0] == pytest.approx(fast[0], abs=1e-4) and mixed[1] > 0


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_choice_nll_equals_one_question_at_a_time(tiny, batch_size):
    """Many questions per forward (shortest first, right-padded, logits at each prompt's last token) give the NLLs,
    hence the predictions, of one question at a time; multi-token choices and over-long prompts included."""
    prompts = [build_prompt(tiny.config, row["question"], [], row["options"]) for row in QUESTIONS]
    prompts.append(build_prompt(tiny.config, "Is insulin made in the pancreas? " * 30, [DOCS["d1"]] * 3, []))
    choices = [list("ABCDE"[: len(row["options"])]) for row in QUESTIONS] + [["yes", "no", "maybe"]]
    prompts.append(prompts[1])
    choices.append(["A", "Pancreatic beta cells"])  # multi-token: scored on its own
    one_at_a_time = [
        evaluation_module.choice_nll(tiny, tiny.tokenizer, p, c, max_length=64) for p, c in zip(prompts, choices)
    ]
    batched = evaluation_module.batched_choice_nll(
        tiny, tiny.tokenizer, prompts, choices, max_length=64, batch_size=batch_size
    )
    assert len(tiny.tokenizer(prompts[4])["input_ids"]) > 64  # the long prompt is cut on the left, in both
    for single, many in zip(one_at_a_time, batched, strict=True):
        assert many == pytest.approx(single, abs=1e-4)
        assert min(range(len(many)), key=many.__getitem__) == min(range(len(single)), key=single.__getitem__)


def test_evaluate_dataset_batch_size_does_not_change_the_answers(tiny):
    dataset = _questions()
    results = [evaluate_dataset(tiny, dataset, batch_size=size, show_progress=False) for size in (1, 4)]
    one, many = (result.predictions for result in results)
    assert [r["likelihood_prediction"] for r in one] == [r["likelihood_prediction"] for r in many]
    for a, b in zip(one, many, strict=True):
        assert b["choice_nll"] == pytest.approx(a["choice_nll"], abs=1e-3)


def test_causal_lm_alone_matches_the_jmlr_model_closed_book(tiny):
    dataset = _questions()
    plain = EvaluationModel.from_causal_lm(tiny.generator, tiny.tokenizer, tiny.config)
    assert not plain.has_retriever and plain.setup == "causal_lm"
    a = evaluate_dataset(tiny, dataset, mode="both", max_new_tokens=3, show_progress=False)
    b = evaluate_dataset(plain, dataset, mode="both", max_new_tokens=3, show_progress=False)
    assert a.predictions == b.predictions
    # Without a config, the prompt format is JMLRConfig()'s (which is the default format here too).
    default = EvaluationModel.from_causal_lm(tiny.generator, tiny.tokenizer)
    assert default.config.prompt_template == tiny.config.prompt_template
    assert default.config.max_length == 1024


def test_evaluate_dataset_reranks_candidates_into_the_prompt(tiny, monkeypatch):
    ids = [["d5", "d1", "d6"], ["d2", "d5", "d6"], ["d6", "d5", "d3"], ["d4", "d1", "d2"]]
    dataset = _questions(
        candidate_ids=ids,
        candidates=[[DOCS[d] for d in row] for row in ids],
        gold_doc_ids=[["d1"], ["d2"], ["d3"], []],
    )
    closed = evaluate_dataset(tiny, dataset, num_documents=0, show_progress=False)
    prompt_documents = []

    def recording_build_prompt(config, question, documents=(), options=None):
        prompt_documents.append(list(documents))
        return build_prompt(config, question, documents, options)

    monkeypatch.setattr("jmlr_hf.evaluation.harness.build_prompt", recording_build_prompt)
    result = evaluate_dataset(tiny, dataset, num_documents=2, show_progress=False)
    rankings = rank_candidates(tiny.jmlr, tiny.retriever_tokenizer, dataset, show_progress=False)
    for record, row_ids, ranking, documents in zip(result.predictions, ids, rankings, prompt_documents, strict=True):
        assert record["document_ids"] == [row_ids[j] for j in ranking[:2]]
        assert documents == [DOCS[doc_id] for doc_id in record["document_ids"]]  # short: not truncated
    # Each record names its gold passages (none for the 4th question), so two results pair question by question.
    assert [r.get("gold_doc_ids") for r in result.predictions] == [["d1"], ["d2"], ["d3"], None]
    assert result.settings["num_documents"] == 2 and result.settings["num_candidates"] == 3
    # The documents change what the model sees, hence the NLLs.
    assert [r["choice_nll"] for r in result.predictions] != [r["choice_nll"] for r in closed.predictions]
    retrieval = result.metrics["retrieval"]
    assert retrieval["num_questions"] == 3  # the 4th question has no gold passage
    assert {"recall@1", "recall@2", "recall@3", "hit@2", "ndcg@3", "mrr"} <= set(retrieval)
    assert retrieval["recall@3"] == 1.0  # each gold passage is among the 3 candidates
    assert "retrieval" not in closed.metrics


def test_documents_in_the_prompt_are_cut_to_max_document_length(tiny, monkeypatch):
    long_document = " ".join(["The pancreas makes insulin in its beta cells."] * 20)
    dataset = _questions(candidate_ids=[["long"]] * 4, candidates=[[long_document]] * 4).select([0])
    prompts = []

    def recording_build_prompt(config, question, documents=(), options=None):
        prompts.append(list(documents))
        return build_prompt(config, question, documents, options)

    monkeypatch.setattr("jmlr_hf.evaluation.harness.build_prompt", recording_build_prompt)
    evaluate_dataset(tiny, dataset, num_documents=1, show_progress=False)
    (document,) = prompts[0]
    assert long_document.startswith(document.strip()) and len(document) < len(long_document)
    assert len(tiny.tokenizer(document, add_special_tokens=False)["input_ids"]) <= tiny.config.max_document_length


def test_retrieval_metrics_of_a_model_without_retriever(tiny):
    """Without a retriever, the candidates keep their given order: the numbers can be worked out by hand."""
    ids = [["d5", "d1", "d6"], ["d2", "d5", "d6"], ["d6", "d5", "d3"], ["d4", "d1", "d2"]]
    dataset = _questions(
        candidate_ids=ids,
        candidates=[[DOCS[d] for d in row] for row in ids],
        gold_doc_ids=[["d1"], ["d2"], ["d3"], []],
    )
    plain = EvaluationModel.from_causal_lm(tiny.generator, tiny.tokenizer, tiny.config)
    result = evaluate_dataset(plain, dataset, num_documents=1, k_values=[1, 2], show_progress=False)
    assert [r["document_ids"] for r in result.predictions] == [["d5"], ["d2"], ["d6"], ["d4"]]
    # Gold ranks: 2, 1, 3 (one gold passage each, so recall@k = hit@k).
    retrieval = result.metrics["retrieval"]
    assert retrieval["mrr"] == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    assert retrieval["recall@1"] == pytest.approx(1 / 3) and retrieval["hit@1"] == pytest.approx(1 / 3)
    assert retrieval["recall@2"] == pytest.approx(2 / 3)
    # nDCG@2: 1/log2(3), 1, 0 over an ideal DCG of 1 -> (0.63093 + 1 + 0) / 3 = 0.54364.
    assert retrieval["ndcg@2"] == pytest.approx(0.54364, abs=1e-5)


def test_evaluate_dataset_retrieves_from_an_index(tiny, retriever_tokenizer):
    corpus = [{"id": doc_id, "text": text} for doc_id, text in DOCS.items()]
    index = DocumentIndex.from_retriever(corpus, tiny.jmlr.retriever, retriever_tokenizer, max_length=32)
    dataset = _questions(gold_doc_ids=[["d1"], ["d2"], ["d3"], ["d4"]])
    result = evaluate_dataset(tiny, dataset, index=index, num_candidates=4, num_documents=2, show_progress=False)
    assert result.settings["num_candidates"] == 4
    for record in result.predictions:
        assert len(record["document_ids"]) == 2 and set(record["document_ids"]) <= set(DOCS)
    assert result.metrics["retrieval"]["num_questions"] == 4
    assert sorted(k for k in result.metrics["retrieval"] if k.startswith("recall@")) == [
        "recall@1",
        "recall@2",
        "recall@4",
    ]
    # A model without a retriever cannot use an index.
    plain = EvaluationModel.from_causal_lm(tiny.generator, tiny.tokenizer, tiny.config)
    with pytest.raises(ValueError, match="needs a model with a retriever"):
        evaluate_dataset(plain, dataset, index=index, show_progress=False)


def test_evaluate_dataset_decisions_and_macro_f1(tiny):
    rows = [
        {"id": f"p{i}", "question": q, "options": [], "answer": a, "subject": ""}
        for i, (q, a) in enumerate(
            [("Does aspirin prevent strokes?", "yes"), ("Is the moon made of cheese?", "no"), ("Is X Y?", "maybe")]
        )
    ]
    result = evaluate_dataset(tiny, Dataset.from_list(rows), mode="both", max_new_tokens=3, show_progress=False)
    for record in result.predictions:
        assert list(record["choice_nll"]) == ["yes", "no", "maybe"]
    for mode in ("likelihood", "generative"):
        predicted = [record[f"{mode}_prediction"] for record in result.predictions]
        assert result.metrics[mode]["macro_f1"] == pytest.approx(macro_f1(predicted, ["yes", "no", "maybe"]))
    assert result.per_subject == {}


def test_evaluate_dataset_per_subject(tiny):
    result = evaluate_dataset(tiny, _questions(), mode="likelihood", show_progress=False)
    assert list(result.per_subject) == [NO_SUBJECT, "biochemistry", "physiology"]
    assert [m["num_questions"] for m in result.per_subject.values()] == [1, 1, 2]
    physiology = [r for r in result.predictions if r["subject"] == "physiology"]
    correct = sum(r["likelihood_prediction"] == r["answer"] for r in physiology)
    assert result.per_subject["physiology"] == {"num_questions": 2, "likelihood_accuracy": correct / 2}
    assert "generative" not in result.metrics


def test_evaluate_dataset_rejects_an_unknown_mode(tiny):
    with pytest.raises(ValueError, match="mode must be"):
        evaluate_dataset(tiny, _questions(), mode="sampling", show_progress=False)


def test_generation_is_greedy_and_prompt_based(tiny):
    row = QUESTIONS[0]
    prompt = build_prompt(tiny.config, row["question"], [], row["options"])
    ids = tiny.tokenizer(prompt, return_tensors="pt")["input_ids"]
    expected = tiny.generator.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=5,
        do_sample=False,
        pad_token_id=tiny.tokenizer.pad_token_id,
    )
    reply = tiny.generate_answer(prompt, 5)
    assert reply == tiny.tokenizer.decode(expected[0, ids.shape[1] :], skip_special_tokens=True)


def test_evaluation_result_json_and_markdown(tmp_path):
    result = EvaluationResult(
        settings={"task": "mmlu", "split": "test", "num_questions": 4, "num_documents": 2, "num_candidates": 8},
        metrics={
            "likelihood": {"accuracy": 0.5, "num_correct": 2, "num_questions": 4},
            "generative": {"accuracy": 0.25, "num_correct": 1, "num_questions": 4, "num_unparseable": 2},
            "retrieval": {"num_questions": 3, "mrr": 0.5, "recall@1": 1 / 3, "hit@1": 1 / 3, "ndcg@1": float("nan")},
        },
        per_subject={"anatomy": {"num_questions": 4, "likelihood_accuracy": 0.5, "generative_accuracy": 0.25}},
        predictions=[{"id": "q1", "generative_prediction": None}],
    )
    assert result.to_markdown().splitlines() == [
        "### mmlu test: 4 questions, top 2 of 8 candidates from the given candidates",
        "",
        "| mode | accuracy | correct | unparseable | questions |",
        "| --- | --- | --- | --- | --- |",
        "| likelihood | 0.500 | 2 | – | 4 |",
        "| generative | 0.250 | 1 | 2 | 4 |",
        "",
        "Retrieval, 3 questions with gold passages, MRR 0.500:",
        "",
        "| k | recall@k | hit@k | nDCG@k |",
        "| --- | --- | --- | --- |",
        "| 1 | 0.333 | 0.333 | – |",
        "",
        "| subject | questions | likelihood accuracy | generative accuracy |",
        "| --- | --- | --- | --- |",
        "| anatomy | 4 | 0.500 | 0.250 |",
    ]
    json_path, markdown_path = result.save(tmp_path / "out" / "results.json")
    assert markdown_path == tmp_path / "out" / "results.md"
    assert markdown_path.read_text() == result.to_markdown() + "\n"
    saved = json.loads(json_path.read_text())  # strict JSON: NaN is written as null
    assert saved["metrics"]["retrieval"]["ndcg@1"] is None
    assert saved["predictions"] == [{"id": "q1", "generative_prediction": None}]
    assert set(saved) == {"settings", "metrics", "per_subject", "predictions"}
    with pytest.raises(ValueError, match=r"\.md"):
        result.save(tmp_path / "results.md")


def test_markdown_of_a_decision_task_has_macro_f1():
    result = EvaluationResult(
        settings={"task": "pubmedqa", "num_questions": 2, "num_documents": 0, "model": "m"},
        metrics={"likelihood": {"accuracy": 0.5, "num_correct": 1, "num_questions": 2, "macro_f1": 1 / 3}},
    )
    lines = result.to_markdown().splitlines()
    assert lines[0] == "### pubmedqa: 2 questions, closed book"
    assert lines[2] == "Model: m"
    assert lines[4:] == [
        "| mode | accuracy | macro-F1 | correct | unparseable | questions |",
        "| --- | --- | --- | --- | --- | --- |",
        "| likelihood | 0.500 | 0.333 | 1 | – | 2 |",
    ]


def test_evaluation_model_from_pretrained_three_setups(tiny, tmp_path):
    jmlr_dir, lm_dir, encoder_dir = tmp_path / "jmlr", tmp_path / "lm", tmp_path / "encoder"
    tiny.jmlr.save_pretrained(jmlr_dir)
    tiny.tokenizer.save_pretrained(jmlr_dir)
    tiny.retriever_tokenizer.save_pretrained(jmlr_dir / RETRIEVER_TOKENIZER_DIR)
    tiny.generator.save_pretrained(lm_dir)
    tiny.tokenizer.save_pretrained(lm_dir)
    tiny.jmlr.retriever.encoder.save_pretrained(encoder_dir)
    tiny.retriever_tokenizer.save_pretrained(encoder_dir)

    jmlr = EvaluationModel.from_pretrained(str(jmlr_dir))
    assert jmlr.setup == "jmlr" and jmlr.has_retriever and jmlr.config.num_candidates == 4
    combined = EvaluationModel.from_pretrained(str(lm_dir), str(encoder_dir))
    assert combined.setup == "causal_lm+retriever" and combined.has_retriever
    assert combined.config.num_candidates == 20  # JMLRConfig defaults for a new combination
    alone = EvaluationModel.from_pretrained(str(lm_dir))
    assert alone.setup == "causal_lm" and not alone.has_retriever
    # The same generator weights answer alike in all three.
    dataset = _questions()
    reference = evaluate_dataset(tiny, dataset, num_documents=0, show_progress=False).predictions
    for model in (jmlr, combined, alone):
        predictions = evaluate_dataset(model, dataset, num_documents=0, show_progress=False).predictions
        assert [p["likelihood_prediction"] for p in predictions] == [p["likelihood_prediction"] for p in reference]
    with pytest.raises(ValueError, match="its own retriever"):
        EvaluationModel.from_pretrained(str(jmlr_dir), str(encoder_dir))
    with pytest.raises(ValueError, match="is a JMLR model"):
        EvaluationModel.from_pretrained(str(lm_dir), str(jmlr_dir))


def test_answer_metrics_batch_the_answer_nll_as_one_question_at_a_time(tiny):
    """The answer NLLs are computed 16 prompts per forward; with documents of different lengths in the prompts, the
    mean equals `target_nll` question by question."""
    ids = [["d1", "d2"], ["d2", "d5"], ["d6", "d3"], ["d4", "d1"]]
    dataset = _questions(candidate_ids=ids, candidates=[[DOCS[d] for d in row] for row in ids])
    rankings = [[1, 0], [0, 1], [1, 0], [0, 1]]
    metrics = answer_metrics(tiny.jmlr, tiny.tokenizer, dataset, rankings, 1, show_progress=False)
    one_at_a_time = [
        evaluation_module.target_nll(tiny.jmlr, tiny.tokenizer, row, [row["candidates"][ranking[0]]])
        for row, ranking in zip(dataset, rankings, strict=True)
    ]
    assert metrics["answer_nll"] == pytest.approx(sum(one_at_a_time) / 4, abs=1e-5)
