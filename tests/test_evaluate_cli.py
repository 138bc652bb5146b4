"""`jmlr evaluate`: split resolution, a tiny JMLR checkpoint with an index, and the real SmolLM2 on the real data."""

from __future__ import annotations

import json

import pytest

from jmlr_hf.cli import main, resolve_evaluation_split
from jmlr_hf.data import default_data_dir
from jmlr_hf.models import RETRIEVER_TOKENIZER_DIR
from jmlr_hf.retrieval.index import DocumentIndex

MEDQA_FIXTURE = "tests/fixtures/medqa_tiny.jsonl"
CORPUS = [
    {"id": "d1", "text": "Intramuscular epinephrine is the first-line treatment of anaphylaxis."},
    {"id": "d2", "text": "Iron deficiency causes a microcytic anemia with a low ferritin."},
    {"id": "d3", "text": "Hyperkalemia produces peaked T waves on the ECG."},
    {"id": "d4", "text": "A midshaft humerus fracture can injure the radial nerve."},
    {"id": "d5", "text": "The kidney filters the blood and makes urine."},
]


@pytest.mark.parametrize(
    ("task", "split", "questions", "expected"),
    [
        ("medmcqa", None, None, "test"),  # the held-out hash split of the bundled file
        ("medmcqa", None, "my_dev.json", "all"),  # an explicit evaluation file is read whole
        ("medqa", None, MEDQA_FIXTURE, "all"),
        ("medqa", "test", MEDQA_FIXTURE, "test"),
        ("pubmedqa", None, None, "test"),  # the official test ids
        ("pubmedqa", None, "ori_pqal.json", "test"),
        ("mmlu", None, None, "test"),
        ("mmlu", "all", None, "all"),
    ],
)
def test_resolve_evaluation_split(task, split, questions, expected):
    assert resolve_evaluation_split(task, split, questions) == expected


def test_resolve_evaluation_split_rejects_mmlu_train():
    with pytest.raises(SystemExit, match="only test questions"):
        resolve_evaluation_split("mmlu", "train", None)


def test_evaluate_a_jmlr_checkpoint_with_an_index(make_tiny_model, generator_tokenizer, retriever_tokenizer, tmp_path):
    model = make_tiny_model()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    generator_tokenizer.save_pretrained(model_dir)
    retriever_tokenizer.save_pretrained(model_dir / RETRIEVER_TOKENIZER_DIR)
    index_dir = tmp_path / "index"
    DocumentIndex.from_retriever(CORPUS, model.retriever, retriever_tokenizer, max_length=32).save(index_dir)

    output = tmp_path / "results.json"
    argv = ["evaluate", "--model", str(model_dir), "--task", "medqa", "--questions", MEDQA_FIXTURE]
    argv += ["--index", str(index_dir), "--num-candidates", "3", "--num-documents", "2", "--mode", "likelihood"]
    main(argv + ["--output", str(output)])
    results = json.loads(output.read_text())
    settings = results["settings"]
    assert settings["setup"] == "jmlr" and settings["split"] == "all" and settings["index"] == str(index_dir)
    assert (settings["num_questions"], settings["num_candidates"], settings["num_documents"]) == (4, 3, 2)
    assert all(len(p["document_ids"]) == 2 for p in results["predictions"])
    assert set(results["metrics"]) == {"likelihood"}  # MedQA has no gold passages
    assert output.with_suffix(".md").read_text().startswith("### medqa all: 4 questions, top 2 of 3 candidates")

    # A causal LM alone has no retriever to search the index with.
    model.generator.save_pretrained(tmp_path / "lm")
    generator_tokenizer.save_pretrained(tmp_path / "lm")
    with pytest.raises(SystemExit, match="--index needs a retriever"):
        main(["evaluate", "--model", str(tmp_path / "lm"), "--index", str(index_dir), *argv[3:7]])


REAL_TASKS = [
    ("medmcqa", [], "test", True, False),
    ("mmlu", [], "test", True, False),
    ("pubmedqa", [], "test", False, True),
    ("medqa", ["--questions", MEDQA_FIXTURE], "all", True, False),
]


@pytest.mark.integration
def test_evaluate_smollm2_closed_book_on_each_task(tmp_path, capsys):
    assert default_data_dir().exists(), f"the shared data folder {default_data_dir()} is missing"
    for task, extra, split, has_subjects, is_decision in REAL_TASKS:
        output = tmp_path / f"{task}.json"
        argv = ["evaluate", "--model", "smollm2-135m-instruct", "--task", task, *extra]
        main(argv + ["--limit", "3", "--mode", "both", "--output", str(output)])
        printed = capsys.readouterr().out
        markdown = output.with_suffix(".md").read_text()
        assert markdown.strip() in printed
        with capsys.disabled():
            print(f"\n{markdown}")

        results = json.loads(output.read_text())
        assert set(results) == {"settings", "metrics", "per_subject", "predictions"}
        settings = results["settings"]
        assert (settings["task"], settings["split"], settings["setup"]) == (task, split, "causal_lm")
        assert (settings["num_questions"], settings["num_documents"], settings["limit"]) == (3, 0, 3)
        assert set(results["metrics"]) == {"likelihood", "generative"}  # closed book: no retrieval metrics
        for m in results["metrics"].values():
            assert m["num_questions"] == 3 and m["accuracy"] == pytest.approx(m["num_correct"] / 3)
            assert ("macro_f1" in m) == is_decision
        generative = results["metrics"]["generative"]
        assert generative["num_unparseable"] == sum(p["generative_prediction"] is None for p in results["predictions"])
        assert generative["num_correct"] + generative["num_unparseable"] <= 3
        assert len(results["predictions"]) == 3
        choices = ["yes", "no", "maybe"] if is_decision else list("ABCDE")
        for record in results["predictions"]:
            assert record["likelihood_prediction"] in choices
            assert record["generative_prediction"] in [*choices, None]
            assert isinstance(record["generation"], str)
        if has_subjects:
            assert sum(m["num_questions"] for m in results["per_subject"].values()) == 3
        else:
            assert results["per_subject"] == {}
