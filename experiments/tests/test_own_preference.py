"""The own-LLM preference measurement (experiments/own_preference.py) on a tiny experiment's saved models."""

from __future__ import annotations

import json
import math

import pytest

from experiments import jmlr_vs_rag, own_preference
from experiments.jmlr_vs_rag import ExperimentArguments, prepare_data, run_experiment
from jmlr_hf.evaluation import llm_preference_metrics, rank_candidates, single_document_nlls
from jmlr_hf.models import JMLRForCausalLM

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.integration
def test_each_retriever_is_measured_against_its_own_llm(tmp_path, tiny_experiment, monkeypatch, capsys):
    args = tiny_experiment(
        arms=["base", "sft", "rag", "jmlr"],
        retrieval_losses=["lsr"],
        eval_limit=3,
        learning_rate=5e-2,  # a tiny LLM that moves in 2 steps, so its own NLLs differ from the base LLM's
        retriever_learning_rate=1e-2,
        num_sampled=4,
        eval_preference_limit=3,
        save_models=True,
    )
    run_experiment(args)
    out = tmp_path / "exp"
    result = own_preference.main(["--config", _write_config(tmp_path, args)])
    assert set(result["runs"]) == {"base-seed0", "rag-seed0", "jmlr-lsr-seed0"}  # SFT's LLM never sees a document
    assert result["questions"] == 3

    # The base arm's LLM is the base one: its record already measured exactly this.
    base_record = json.loads((out / "runs" / "base-seed0.json").read_text())["metrics"]
    base = result["runs"]["base-seed0"]
    assert all(base[f"own_{key}"] == base_record[key] for key in own_preference.PREFERENCE_METRICS)

    # JMLR: its saved LLM's single-document NLLs, its saved retriever's ranking.
    _, evaluation = prepare_data(args)
    rows = evaluation.select(range(3))
    saved = JMLRForCausalLM.from_pretrained(str(out / "models" / "jmlr-lsr-seed0"))
    tokenizer, retriever_tokenizer = saved.load_tokenizers()
    nlls = [single_document_nlls(saved, tokenizer, row, args.eval_truncate_documents) for row in rows]
    base_nlls = json.loads((out / "prepared" / "reference_nlls-eval.json").read_text())
    assert nlls != [base_nlls[row_id] for row_id in rows["id"]]  # the trained LLM is not the base LLM
    base_model = JMLRForCausalLM.from_pretrained(str(out / "models" / "rag-seed0"))
    expected = llm_preference_metrics(
        rank_candidates(saved, retriever_tokenizer, rows, show_progress=False),
        nlls,
        base_rankings=rank_candidates(base_model, retriever_tokenizer, rows, show_progress=False),
    )
    jmlr = result["runs"]["jmlr-lsr-seed0"]
    for key, value in expected.items():
        assert jmlr[f"own_{key}"] == pytest.approx(value, rel=1e-6, nan_ok=True)

    # RAG-SFT's retriever is the base retriever: it captures nothing of its own LLM's headroom, by construction.
    rag = result["runs"]["rag-seed0"]
    assert rag["own_headroom_captured"] == 0.0 or math.isnan(rag["own_headroom_captured"])
    pair = result["paired"]["jmlr-lsr-seed0"]
    gap = rag["own_llm_top1_nll"] - rag["own_llm_best_nll"]
    assert pair["rag_headroom"] == pytest.approx(gap)
    assert pair["top1_nll_rag_minus_jmlr"] == pytest.approx(rag["own_llm_top1_nll"] - jmlr["own_llm_top1_nll"])
    if gap > 0:
        assert pair["headroom_captured_vs_rag"] == pytest.approx(pair["top1_nll_rag_minus_jmlr"] / gap)
    table = (out / "own_preference.md").read_text()
    assert "| jmlr-lsr-seed0 |" in table and "| RAG-SFT |" in table and table in capsys.readouterr().out
    assert json.loads((out / "own_preference.json").read_text()) == json.loads(json.dumps(result))

    # A second call reuses the NLLs measured for each run; a run trained again under the same name is measured again.
    monkeypatch.setattr(jmlr_vs_rag, "single_document_nlls", lambda *a, **k: pytest.fail("measured again"))
    assert own_preference.measure(args)["runs"] == result["runs"]
    record = out / "runs" / "rag-seed0.json"
    record.write_text(record.read_text().replace('"seed": 0', '"seed": 0 '))
    with pytest.raises(pytest.fail.Exception, match="measured again"):
        own_preference.measure(args)


@pytest.mark.integration
def test_a_run_without_its_saved_model_says_how_to_get_it(tiny_experiment):
    args = tiny_experiment(arms=["rag"], train_limit=2, max_steps=1, eval_preference_limit=2)
    run_experiment(args)
    with pytest.raises(FileNotFoundError, match="--save_models true"):
        own_preference.measure(args)
    with pytest.raises(ValueError, match="eval_preference_limit is 0"):
        own_preference.measure(ExperimentArguments(output_dir=args.output_dir, eval_preference_limit=0))


def _write_config(tmp_path, args: ExperimentArguments) -> str:
    """The experiment's settings as a YAML `--config`, as the command line takes them."""
    import dataclasses

    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(dataclasses.asdict(args)))
    return str(path)
