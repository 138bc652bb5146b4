"""`jmlr evaluate`: split resolution, a tiny JMLR checkpoint with an index (given, or the one its config records, or
none with `--closed_book`), the seeded `--limit` sample, metrics computed through the package's `evaluate` modules,
and the real SmolLM2 on the real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from datasets import Dataset

from jmlr_hf.cli import limit_questions, main, resolve_evaluation_split
from jmlr_hf.data import default_data_dir
from jmlr_hf.evaluation import harness, load_metric
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


@pytest.fixture
def checkpoint_recording_its_index(make_tiny_model, generator_tokenizer, retriever_tokenizer, tmp_path):
    """A tiny JMLR checkpoint whose config records its index (`index_repo_id`), as `jmlr answer` reads it."""
    model = make_tiny_model()
    index_dir = tmp_path / "index"
    DocumentIndex.from_retriever(CORPUS, model.retriever, retriever_tokenizer, max_length=32).save(index_dir)
    model.config.index_repo_id = str(index_dir)
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    generator_tokenizer.save_pretrained(model_dir)
    retriever_tokenizer.save_pretrained(model_dir / RETRIEVER_TOKENIZER_DIR)
    return model_dir, index_dir


def test_evaluate_uses_the_models_recorded_index_unless_closed_book(checkpoint_recording_its_index, tmp_path):
    model_dir, index_dir = checkpoint_recording_its_index
    argv = ["evaluate", "--model", str(model_dir), "--task", "medqa", "--questions", MEDQA_FIXTURE]
    argv += ["--mode", "likelihood", "--num_candidates", "3", "--num-documents", "2"]

    main([*argv, "--output", str(tmp_path / "with_index.json")])
    results = json.loads((tmp_path / "with_index.json").read_text())
    settings = results["settings"]
    assert settings["index"] == str(index_dir) and settings["closed_book"] is False
    assert (settings["num_candidates"], settings["num_documents"]) == (3, 2)
    corpus_ids = {row["id"] for row in CORPUS}
    assert all(len(p["document_ids"]) == 2 and set(p["document_ids"]) <= corpus_ids for p in results["predictions"])

    main([*argv, "--closed_book", "--output", str(tmp_path / "closed.json")])
    results = json.loads((tmp_path / "closed.json").read_text())
    settings = results["settings"]
    assert settings["index"] is None and settings["closed_book"] is True and settings["num_documents"] == 0
    assert not any("document_ids" in p for p in results["predictions"])
    assert (tmp_path / "closed.md").read_text().startswith("### medqa all: 4 questions, closed book")


def test_limit_draws_a_seeded_sample_not_the_first_rows():
    # Sorted by subject, as MMLU-Med is: the first 10 rows are all of the first subject.
    rows = Dataset.from_list([{"id": f"{subject}-{i}", "subject": subject} for subject in "abcde" for i in range(20)])
    first = limit_questions(rows, 10, sample=False)
    assert first["id"] == [f"a-{i}" for i in range(10)]

    sample = limit_questions(rows, 10, seed=0)
    assert sample["id"] == limit_questions(rows, 10, seed=0)["id"]  # reproducible
    assert sample["id"] != first["id"] and len(set(sample["subject"])) > 1  # not the first rows
    assert sample["id"] != limit_questions(rows, 10, seed=1)["id"]  # the seed chooses the sample
    assert sample["id"] == sorted(sample["id"], key=rows["id"].index)  # kept in file order
    assert len(limit_questions(rows, 1000, seed=0)) == 100  # a limit above the size keeps every row


def test_evaluate_limit_sample_is_recorded_and_reproducible(checkpoint_recording_its_index, tmp_path):
    model_dir, _ = checkpoint_recording_its_index
    argv = ["evaluate", "--model", str(model_dir), "--task", "medqa", "--questions", MEDQA_FIXTURE, "--closed-book"]
    argv += ["--mode", "likelihood", "--sample-seed", "3"]
    ids = []
    for run, limit in (("a", ["--limit", "2"]), ("b", ["--limit", "2"]), ("all", [])):
        main([*argv, *limit, "--output", str(tmp_path / f"{run}.json")])
        results = json.loads((tmp_path / f"{run}.json").read_text())
        expected = (2, 3) if limit else (None, None)
        assert (results["settings"]["limit"], results["settings"]["sample_seed"]) == expected
        ids.append([p["id"] for p in results["predictions"]])
    assert ids[0] == ids[1] == limit_questions(Dataset.from_dict({"id": ids[2]}), 2, seed=3)["id"]


def test_evaluate_computes_its_metrics_through_the_evaluate_modules(
    checkpoint_recording_its_index, tmp_path, monkeypatch
):
    model_dir, _ = checkpoint_recording_its_index
    loaded = []

    def recording_load_metric(name):
        loaded.append(name)
        return load_metric(name)

    monkeypatch.setattr(harness, "load_metric", recording_load_metric)
    argv = ["evaluate", "--model", str(model_dir), "--task", "medqa", "--questions", MEDQA_FIXTURE]
    main([*argv, "--mode", "likelihood", "--output", str(tmp_path / "r.json")])
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]["likelihood"]
    assert "jmlr_accuracy" in loaded
    assert metrics["accuracy"] == pytest.approx(metrics["num_correct"] / metrics["num_questions"])


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
            assert 0.0 <= m["macro_f1"] <= 1.0  # every closed task, multiple choice included (issue 26)
            assert sum(m["answer_distribution"].values()) + m.get("num_unparseable", 0) == 3
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


def test_a_model_with_a_retriever_and_no_index_is_not_evaluated_closed_book_silently(
    make_tiny_model, generator_tokenizer, retriever_tokenizer, tmp_path, capsys
):
    """A JMLR model whose config records no index (and no --index): one line naming both ways out, exit 1 (the
    `jmlr` entry point's handling of SystemExit with a message); with --closed_book it is evaluated without
    documents."""
    model = make_tiny_model()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    generator_tokenizer.save_pretrained(model_dir)
    retriever_tokenizer.save_pretrained(model_dir / RETRIEVER_TOKENIZER_DIR)
    argv = ["evaluate", "--model", str(model_dir), "--task", "medqa", "--questions", MEDQA_FIXTURE]
    argv += ["--mode", "likelihood"]
    with pytest.raises(SystemExit, match="records no index: pass --index .* or --closed_book"):
        main(argv)
    main([*argv, "--closed_book", "--output", str(tmp_path / "closed.json")])
    assert json.loads((tmp_path / "closed.json").read_text())["settings"]["closed_book"] is True


@pytest.mark.integration
def test_evaluate_smollm2_on_medquad_open_answers(tmp_path, capsys):
    """`jmlr evaluate --task medquad`: open answers scored by their answer NLL and the reply's ROUGE-L (64 tokens
    generated by default), per question type."""
    output = tmp_path / "medquad.json"
    main(
        ["evaluate", "--model", "smollm2-135m-instruct", "--task", "medquad", "--limit", "3", "--output", str(output)]
    )
    results = json.loads(output.read_text())
    settings = results["settings"]
    assert (settings["task"], settings["split"], settings["open_questions"]) == ("medquad", "test", True)
    assert settings["max_new_tokens"] == 64 and settings["num_documents"] == 0
    likelihood, generative = results["metrics"]["likelihood"], results["metrics"]["generative"]
    nlls = [p["answer_nll"] for p in results["predictions"]]
    assert likelihood["answer_nll"] == pytest.approx(sum(nlls) / 3, abs=1e-3) and 0 < likelihood["answer_nll"] < 10
    assert 0.0 <= generative["rouge_l"] <= 1.0 and generative["num_questions"] == 3
    assert all(isinstance(p["generation"], str) for p in results["predictions"])
    assert sum(m["num_questions"] for m in results["per_subject"].values()) == 3
    assert "ROUGE-L F" in output.with_suffix(".md").read_text()


def test_evaluate_mode_cloze_through_the_cli(checkpoint_recording_its_index, tmp_path):
    """`--mode cloze`: three rows (summed, per-token, per-character NLL of each option's text), each with macro-F1 and
    the answers given, the gold answers under the table; `--mode both` does not include it."""
    model_dir, _ = checkpoint_recording_its_index
    argv = ["evaluate", "--model", str(model_dir), "--task", "medqa", "--questions", MEDQA_FIXTURE, "--closed_book"]
    main([*argv, "--mode", "cloze", "--output", str(tmp_path / "cloze.json")])
    results = json.loads((tmp_path / "cloze.json").read_text())
    assert set(results["metrics"]) == {"cloze", "cloze_per_token", "cloze_per_char"}
    assert results["settings"]["mode"] == "cloze"
    gold = results["settings"]["gold_answer_distribution"]
    assert sum(gold.values()) == 4 and list(gold) == list("ABCDE")  # the fixture has 4- and 5-option questions
    for record in results["predictions"]:
        assert set(record["option_nll"]) == set(record["option_tokens"]) and len(record["option_nll"]) in (4, 5)
        assert all(value > 0 for value in record["option_nll"].values())
    markdown = (tmp_path / "cloze.md").read_text()
    for row in ("cloze", "cloze per token", "cloze per char"):
        m = results["metrics"][row.replace(" ", "_")]
        assert sum(m["answer_distribution"].values()) == 4 and 0.0 <= m["macro_f1"] <= 1.0
        assert f"| {row} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['num_correct']} | – | 4 |" in markdown
    assert "Gold answers: " in markdown

    main([*argv, "--mode", "both", "--max_new_tokens", "2", "--output", str(tmp_path / "both.json")])
    assert set(json.loads((tmp_path / "both.json").read_text())["metrics"]) == {"likelihood", "generative"}


def test_console_warns_when_one_answer_dominates(checkpoint_recording_its_index, tmp_path):
    """The console script (`jmlr evaluate`, in a subprocess): one question gives one answer to 100% of the questions,
    which the console prints as a warning on stderr and the Markdown table carries as a line."""
    model_dir, _ = checkpoint_recording_its_index
    output = tmp_path / "one.json"
    argv = ["evaluate", "--model", str(model_dir), "--task", "medqa", "--questions", MEDQA_FIXTURE, "--closed_book"]
    argv += ["--mode", "cloze", "--limit", "1", "--output", str(output)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = "from jmlr_hf.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "of 1 questions (100%, more than 80%)" in line]
    assert [line.split(" gave ")[0] for line in warnings] == ["cloze", "cloze per token", "cloze per char"]
    table = output.with_suffix(".md").read_text()
    assert [line for line in table.splitlines() if line.startswith("**Warning:**")] == [
        f"**Warning:** {line}" for line in warnings
    ]
    assert table.strip() in done.stdout


def test_cloze_on_open_answers_is_refused_before_anything_loads(monkeypatch):
    """MedQuAD has no options to score: `--mode cloze --task medquad` is one line before the questions or a model
    load (a model that does not exist would otherwise be the first error)."""
    with pytest.raises(SystemExit, match="--mode cloze scores option texts"):
        main(["evaluate", "--model", "no/such-model", "--task", "medquad", "--mode", "cloze"])
