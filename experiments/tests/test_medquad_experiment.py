"""The MedQuAD open-book experiment on tiny random models: the task's own validation split (held out by topic), the
supervised retriever arm (gold passages, LLM frozen), the open-answer metrics and the whole-corpus recall@k."""

from __future__ import annotations

import gzip
import json

import pytest
from datasets import Dataset, load_from_disk

from experiments.jmlr_vs_rag import CORPUS_K_VALUES, gold_supervision, run_experiment
from jmlr_hf.data import MEDQUAD_FILE, load_task

pytestmark = pytest.mark.usefixtures("single_thread")

QTYPES = {
    "symptoms": "{focus} causes fever number {i} and a rash that lasts for several days in most patients.",
    "treatment": "{focus} is treated with rest number {i}, fluids and medicines that lower the fever quickly.",
}


def write_tiny_medquad(data_dir) -> None:
    """40 topics x 2 question types, each answer unique: a MedQuAD file in the shared data folder's layout."""
    path = data_dir / MEDQUAD_FILE
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for i in range(40):
            focus = f"Disease {i}"
            for qtype, text in QTYPES.items():
                row = {
                    "id": f"{i}-{qtype}",
                    "source": "GARD",
                    "url": "https://example.org",
                    "focus": focus,
                    "question": f"What are the {qtype} of {focus} ?",
                    "qtype": qtype,
                    "text": text.format(focus=focus, i=i),
                }
                handle.write(json.dumps(row) + "\n")


def test_gold_supervision_labels_the_gold_and_brings_it_in_when_missed():
    corpus = Dataset.from_dict({"id": ["g1", "g2", "x", "y", "z"], "text": ["G1", "G2", "X", "Y", "Z"]})
    train = Dataset.from_list(
        [
            {"id": "q1", "gold_doc_ids": ["g1"], "candidate_ids": ["x", "g1", "y"], "candidates": ["X", "G1", "Y"]},
            {"id": "q2", "gold_doc_ids": ["g2"], "candidate_ids": ["x", "y", "z"], "candidates": ["X", "Y", "Z"]},
        ]
    )
    rows = gold_supervision(train, corpus).to_list()
    assert rows[0]["candidate_ids"] == ["x", "g1", "y"] and rows[0]["candidate_nlls"] == [1.0, 0.0, 1.0]
    # The first stage missed q2's gold: it replaces the last candidate, text and all.
    assert rows[1]["candidate_ids"] == ["x", "y", "g2"] and rows[1]["candidates"] == ["X", "Y", "G2"]
    assert rows[1]["candidate_nlls"] == [1.0, 1.0, 0.0]
    no_gold = Dataset.from_list([{**train[0], "gold_doc_ids": ["missing"]}])
    with pytest.raises(ValueError, match="'q1' has no gold passage in the corpus"):
        gold_supervision(no_gold, corpus)


def test_medquad_experiment_with_the_supervised_arm(tmp_path, tiny_experiment):
    data_dir = tmp_path / "data"
    write_tiny_medquad(data_dir)
    args = tiny_experiment(
        task="medquad",
        corpus="medquad",
        data_dir=str(data_dir),
        arms=["rag", "supervised"],
        validation_size=3,
        train_limit=6,
        eval_limit=3,
        eval_answer_limit=3,
        generative_limit=2,
        max_new_tokens=4,
        num_sampled=4,
        corpus_evidence=True,
        logging_steps=1,
    )
    summary = run_experiment(args)
    assert set(summary) == {"RAG-SFT", "supervised retriever (gold passages), LLM frozen"}
    out = tmp_path / "exp"
    prepared = {split: load_from_disk(str(out / "prepared" / split)) for split in ("train", "validation", "eval")}
    # The validation questions are the task's own validation split (held out by topic), not training questions.
    assert prepared["validation"]["id"] == load_task("medquad", "validation", data_dir=str(data_dir))["id"][:3]
    topics = {split: set(rows["focus"]) for split, rows in prepared.items()}
    assert not topics["train"] & topics["validation"] and not topics["train"] & topics["eval"]
    supervised = json.loads((out / "runs" / "supervised-seed0.json").read_text())
    assert supervised["settings"]["arm"] == "supervised"
    metrics = supervised["metrics"]
    # Open answers: an answer NLL and ROUGE-L, no accuracy; the whole corpus searched at every cut-off.
    assert "accuracy" not in metrics and metrics["answer_nll"] > 0
    assert 0.0 <= metrics["generative_rouge_l"] <= 1.0 and "generative_accuracy" not in metrics
    for k in CORPUS_K_VALUES:
        assert 0.0 <= metrics[f"corpus_recall@{k}"] <= 1.0
    assert metrics["corpus_recall@1"] <= metrics["corpus_recall@8"]
    # It trains the retriever only (a retrieval loss, no LM loss), from the gold labels.
    assert [e["step"] for e in supervised["log_history"] if "retrieval_loss" in e] == [1, 2]
    assert all("lm_loss" not in e for e in supervised["log_history"])
    assert "supervised retriever" in (out / "summary.md").read_text()
