"""The JMLR-vs-RAG-vs-SFT experiment script end to end on tiny random models, and its statistics."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_config
from transformers import BertModel, LlamaForCausalLM

from jmlr_hf import experiment as experiment_module
from jmlr_hf.experiment import ExperimentArguments, run_experiment, summarize, summary_table

pytestmark = pytest.mark.usefixtures("single_thread")


def test_summarize_mean_and_sample_std():
    records = [
        {"arm": "rag", "retrieval_loss": "none", "seed": s, "metrics": {"accuracy": v, "answer_nll": 2.0}}
        for s, v in enumerate([0.5, 0.6, 0.7])
    ] + [{"arm": "jmlr", "retrieval_loss": "lsr", "seed": 0, "metrics": {"accuracy": 0.9, "answer_nll": math.nan}}]
    summary = summarize(records, metrics=("accuracy", "answer_nll"))
    assert summary["RAG-SFT"]["accuracy"]["mean"] == pytest.approx(0.6)
    assert summary["RAG-SFT"]["accuracy"]["std"] == pytest.approx(0.1)  # sqrt(((-.1)^2 + 0 + .1^2) / (3 - 1))
    assert summary["RAG-SFT"]["answer_nll"]["std"] == 0.0
    assert summary["jmlr (lsr)"]["accuracy"]["n"] == 1 and math.isnan(summary["jmlr (lsr)"]["accuracy"]["std"])
    assert summary["jmlr (lsr)"]["answer_nll"]["n"] == 0  # NaN values are not averaged in
    table = summary_table(summary, metrics=("accuracy",))
    assert "| RAG-SFT | 0.6000 ± 0.1000 (3) |" in table.splitlines()


@pytest.mark.integration
def test_experiment_end_to_end_on_tiny_models(tmp_path, generator_tokenizer, retriever_tokenizer, monkeypatch):
    config = tiny_config(generator_tokenizer, retriever_tokenizer)
    torch.manual_seed(0)
    LlamaForCausalLM(config.generator).save_pretrained(tmp_path / "llama")
    generator_tokenizer.save_pretrained(tmp_path / "llama")
    BertModel(config.retriever).save_pretrained(tmp_path / "bert")
    retriever_tokenizer.save_pretrained(tmp_path / "bert")

    args = ExperimentArguments(
        output_dir=str(tmp_path / "exp"),
        generator=str(tmp_path / "llama"),
        retriever=str(tmp_path / "bert"),
        retrieval_losses=["llm_rank", "lsr"],
        seeds=[0, 1],
        train_limit=4,
        eval_limit=3,
        eval_answer_limit=2,
        max_steps=2,
        batch_size=2,
        num_candidates=4,
        num_sampled=2,
        num_context_documents=2,
        max_document_length=32,
        max_length=256,
        logging_steps=1,
    )
    summary = run_experiment(args)
    out = tmp_path / "exp"
    assert set(summary) == {"SFT (no docs)", "RAG-SFT", "jmlr (llm_rank)", "jmlr (lsr)"}
    assert all(row["accuracy"]["n"] == 2 for row in summary.values())
    assert len(list((out / "runs").glob("*.json"))) == 8
    for name in ("summary.md", "summary.json", "settings.json"):
        assert (out / name).stat().st_size > 0
    for name in ("training_curves.png", "final_metrics.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    # SFT and RAG never train the retriever: every seed ranks exactly like the base retriever.
    base = summary["RAG-SFT"]["recall@1"]["values"]
    assert summary["SFT (no docs)"]["recall@1"]["values"] == base and len(set(base)) == 1
    record = json.loads((out / "runs" / "jmlr-llm_rank-seed0.json").read_text())
    assert [e["step"] for e in record["log_history"] if "retrieval_loss" in e] == [1, 2]
    sft = json.loads((out / "runs" / "sft-seed0.json").read_text())
    assert all("retrieval_loss" not in e for e in sft["log_history"])

    # Resuming reuses every finished run and reproduces the summary.
    monkeypatch.setattr(experiment_module, "run_one", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert run_experiment(args) == summary
