"""The saved-model evaluation table (experiments/user_eval.py), on results written by the harness's own writer."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from experiments import user_eval
from jmlr_hf.evaluation import EvaluationResult


def _save(folder, model: str, answers: list[str], predicted: list[str], *, documents: int = 0, task: str = "mmlu"):
    """One `jmlr evaluate` result for `model`, written as the CLI writes it (JSON + Markdown)."""
    predictions = [
        {"id": f"q{i}", "subject": "", "answer": a, "document_ids": [], "likelihood_prediction": p}
        for i, (a, p) in enumerate(zip(answers, predicted))
    ]
    correct = sum(a == p for a, p in zip(answers, predicted))
    settings = {
        "setup": "jmlr",
        "mode": "likelihood",
        "num_questions": len(answers),
        "num_documents": documents,
        "num_candidates": 8 if documents else None,
        "task": task,
        "split": "test",
        "model": f"outputs/models/{model}",
        "closed_book": not documents,
    }
    metrics = {
        "likelihood": {"accuracy": correct / len(answers), "num_correct": correct, "num_questions": len(answers)}
    }
    name = f"{model}-{task}-{'rag' if documents else 'closed'}.json"
    EvaluationResult(settings, metrics, {}, predictions).save(folder / name)


ANSWERS = list("ABCDABCD")


def test_accuracy_over_seeds_and_the_paired_difference_by_question(tmp_path):
    # rag: seed 0 right on 0-3, seed 1 right on 0-5; jmlr: seed 0 right on 2-6, seed 1 right on 0-5 (= rag seed 1).
    wrong = "D"
    _save(tmp_path, "rag-seed0", ANSWERS, ANSWERS[:4] + [wrong if a != wrong else "A" for a in ANSWERS[4:]])
    _save(tmp_path, "rag-seed1", ANSWERS, ANSWERS[:6] + ["A", "A"])
    _save(tmp_path, "jmlr-lsr-seed0", ANSWERS, ["D", "A"] + ANSWERS[2:7] + ["A"])
    _save(tmp_path, "jmlr-lsr-seed1", ANSWERS, ANSWERS[:6] + ["A", "A"])
    _save(tmp_path, "sft-seed0", ANSWERS, ["A"] * 8)
    _save(tmp_path, "rag-seed0", ANSWERS, ANSWERS, documents=1)

    summary = user_eval.main(["--input", str(tmp_path), "--reference", "rag"])

    closed = summary["conditions"]["mmlu, closed book"]
    assert closed["rag"]["seeds"] == [0, 1]
    assert closed["rag"]["score"] == "accuracy"
    assert closed["rag"]["mean"]["values"] == [4 / 8, 6 / 8]
    assert closed["rag"]["mean"]["std"] == pytest.approx(statistics.stdev([0.5, 0.75]))
    assert closed["sft"]["top_answer"] == "A" and closed["sft"]["top_answer_share"]["mean"] == 1.0
    assert closed["sft"]["question_se"] == pytest.approx(math.sqrt(0.25 * 0.75 / 8))  # 2 of 8 right: binomial
    assert "gold_top1" not in closed["rag"]  # no gold passages named
    # The retrieval setting is its own condition, not a third rag seed.
    assert summary["conditions"]["mmlu, top 1 of 8 retrieved"]["rag"]["mean"]["values"] == [1.0]

    pair = summary["paired"]["mmlu, closed book"]["jmlr-lsr"]
    # Seed 0 per question (jmlr - rag): q0 -1, q1 -1, q2..q3 0, q4..q6 +1, q7 0 -> mean 1/8.
    differences = [-1, -1, 0, 0, 1, 1, 1, 0]
    assert pair["per_seed"][0]["mean"] == pytest.approx(1 / 8)
    assert pair["per_seed"][0]["se"] == pytest.approx(statistics.stdev(differences) / math.sqrt(8))
    assert pair["per_seed"][1] == {"mean": 0.0, "se": 0.0, "n": 8}
    assert pair["mean"] == pytest.approx(1 / 16)
    # sft (right on q0, q4) against rag seed 0 (right on q0-q3): 0, -1, -1, -1, +1, 0, 0, 0; no rag pair for seed 1.
    assert summary["paired"]["mmlu, closed book"]["sft"]["per_seed"][0]["mean"] == pytest.approx(-2 / 8)
    assert list(summary["paired"]["mmlu, closed book"]["sft"]["per_seed"]) == [0]

    # What was written: the tables, the JSON and the plot.
    markdown = (tmp_path / "user_eval.md").read_text()
    assert "| mmlu, closed book | jmlr-lsr | 0, 1 | 8 | accuracy" in markdown
    assert "seed 0: +0.1250" in markdown
    assert json.loads((tmp_path / "user_eval.json").read_text())["reference"] == "rag"
    assert (tmp_path / "user_eval.png").stat().st_size > 0
    # A rerun reads only the evaluation results, not its own output (which has no 'settings' and would be refused).
    assert user_eval.main(["--input", str(tmp_path)])["conditions"].keys() == summary["conditions"].keys()


def test_bad_results_are_rejected_naming_the_file_and_field(tmp_path):
    (tmp_path / "broken.json").write_text(json.dumps({"settings": {"model": "m"}, "metrics": {}}))
    with pytest.raises(ValueError, match=r"broken\.json: no 'predictions' field"):
        user_eval.read_result(str(tmp_path / "broken.json"))

    _save(tmp_path, "rag-seed0", ["A", "B"], ["A", "B"])
    path = tmp_path / "rag-seed0-mmlu-closed.json"
    data = json.loads(path.read_text())
    data["predictions"][1]["id"] = "q0"
    path.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"rag-seed0-mmlu-closed\.json: predictions\[1\]: question id 'q0' appears twice"
    ):
        user_eval.read_result(str(path))

    del data["predictions"][1]["likelihood_prediction"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"predictions\[1\] has no 'likelihood_prediction' field"):
        user_eval.read_result(str(path))


def test_two_results_for_one_seed_and_setting_are_an_error(tmp_path):
    _save(tmp_path, "rag-seed0", ["A", "B"], ["A", "B"])
    first = user_eval.read_result(str(tmp_path / "rag-seed0-mmlu-closed.json"))
    with pytest.raises(ValueError, match="a second result for rag seed 0 under 'mmlu, closed book'"):
        user_eval.summarize_results([first, dict(first, path="copy.json")], "rag")


def _save_open(folder, model: str, nlls: list[float], top1: list[str]):
    """One `jmlr evaluate --task medquad --mode likelihood --index …` result: open answers scored by their NLL, the
    top document of each prompt, and the gold passage `g<i>` of question i."""
    predictions = [
        {
            "id": f"q{i}",
            "subject": "",
            "answer": "text",
            "document_ids": [doc],
            "gold_doc_ids": [f"g{i}"],
            "answer_nll": nll,
        }
        for i, (nll, doc) in enumerate(zip(nlls, top1))
    ]
    settings = {
        "setup": "jmlr",
        "mode": "likelihood",
        "num_questions": len(nlls),
        "num_documents": 1,
        "num_candidates": 8,
        "task": "medquad",
        "split": "test",
        "model": f"outputs/models/{model}",
        "open_questions": True,
    }
    metrics = {"likelihood": {"answer_nll": statistics.fmean(nlls), "num_questions": len(nlls)}}
    EvaluationResult(settings, metrics, {}, predictions).save(folder / f"{model}-medquad.json")


def test_open_answers_are_paired_by_their_nll_and_gold_at_top_1(tmp_path):
    # base: gold first on q0 only; jmlr: gold first on q0-q2, and a lower NLL where it found the gold.
    _save_open(tmp_path, "base", [1.0, 2.0, 2.5, 1.5], ["g0", "x", "x", "x"])
    _save_open(tmp_path, "jmlr-llm_rank-seed0", [1.0, 0.5, 1.0, 2.0], ["g0", "g1", "g2", "x"])

    summary = user_eval.main(["--input", str(tmp_path), "--reference", "base"])

    rows = summary["conditions"]["medquad, top 1 of 8 retrieved"]
    assert rows["base"]["score"] == "answer_nll" and rows["base"]["seeds"] == [None]
    assert rows["base"]["mean"]["values"] == [pytest.approx(7.0 / 4)]
    assert rows["base"]["question_se"] == pytest.approx(statistics.stdev([1.0, 2.0, 2.5, 1.5]) / 2)
    assert rows["jmlr-llm_rank"]["gold_top1"]["values"] == [0.75] and rows["base"]["gold_top1"]["values"] == [0.25]
    assert "top_answer" not in rows["base"]  # open answers have no "most frequent answer"
    # The base, evaluated once without a seed, is the reference of every seed.
    _save_open(tmp_path, "jmlr-llm_rank-seed1", [1.0, 2.0, 2.5, 1.5], ["g0", "x", "x", "x"])
    summary = user_eval.main(["--input", str(tmp_path), "--reference", "base"])
    assert summary["paired"]["medquad, top 1 of 8 retrieved"]["jmlr-llm_rank"]["per_seed"][1]["mean"] == 0.0
    pair = summary["paired"]["medquad, top 1 of 8 retrieved"]["jmlr-llm_rank"]
    differences = [0.0, -1.5, -1.5, 0.5]
    assert pair["per_seed"][0]["mean"] == pytest.approx(-0.625)
    assert pair["per_seed"][0]["se"] == pytest.approx(statistics.stdev(differences) / 2)
    gold = pair["gold_top1"]["per_seed"][0]
    assert gold["mean"] == pytest.approx(0.5) and gold["se"] == pytest.approx(statistics.stdev([0, 1, 1, 0]) / 2)
    markdown = (tmp_path / "user_eval.md").read_text()
    assert "| medquad, top 1 of 8 retrieved | jmlr-llm_rank | answer_nll | seed 0: -0.6250" in markdown
    assert "| gold at top 1 | seed 0: +0.5000" in markdown


def test_results_scored_differently_under_one_condition_are_an_error(tmp_path):
    _save_open(tmp_path, "base-seed0", [1.0, 2.0], ["g0", "x"])
    path = tmp_path / "base-seed0-medquad.json"
    data = json.loads(path.read_text())
    data["metrics"] = {"generative": {"rouge_l": 0.2}}
    for record in data["predictions"]:
        record["rouge_l"] = 0.2
    data["settings"]["model"] = "outputs/models/jmlr-seed0"
    (tmp_path / "jmlr-seed0-medquad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="scored by .* evaluate them in the same mode"):
        user_eval.main(["--input", str(tmp_path)])
    del data["predictions"][1]["rouge_l"]
    (tmp_path / "jmlr-seed0-medquad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"predictions\[1\] has no 'rouge_l' field"):
        user_eval.read_result(str(tmp_path / "jmlr-seed0-medquad.json"))
