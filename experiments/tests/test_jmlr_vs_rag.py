"""The JMLR-vs-RAG-vs-SFT experiment script end to end on tiny random models, and its statistics."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from datasets import load_from_disk

from experiments import jmlr_vs_rag as experiment_module
from experiments.jmlr_vs_rag import (
    ExperimentArguments,
    parse_variant,
    run_experiment,
    run_settings,
)
from experiments.tables import paired_by_seed, paired_table, summarize, summary_table
from jmlr_hf.models import JMLRForCausalLM

pytestmark = pytest.mark.usefixtures("single_thread")


def test_planned_runs_evaluate_the_base_models_once():
    args = ExperimentArguments(arms=["base", "retriever"], retrieval_losses=["lsr", "llm_rank"], seeds=[3, 4])
    assert experiment_module.planned_runs(args) == [
        ("base", "none", 3),
        ("retriever", "lsr", 3),
        ("retriever", "llm_rank", 3),
        ("retriever", "lsr", 4),
        ("retriever", "llm_rank", 4),
    ]


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


def test_summary_table_says_na_for_what_no_run_measured():
    records = [
        {"arm": "rag", "retrieval_loss": "none", "seed": s, "metrics": {"accuracy": 0.5, "recall@1": math.nan}}
        for s in range(2)
    ]
    table = summary_table(summarize(records, metrics=("accuracy", "recall@1")), metrics=("accuracy", "recall@1"))
    assert "| RAG-SFT | 0.5000 ± 0.0000 (2) | n/a |" in table.splitlines()


def test_paired_by_seed_hand_computed():
    def run(arm, loss, seed, nll):
        return {"arm": arm, "retrieval_loss": loss, "seed": seed, "metrics": {"answer_nll": nll, "recall@1": math.nan}}

    records = [run("rag", "none", s, v) for s, v in zip((0, 1, 2), (0.68, 0.70, 0.66), strict=True)]
    # JMLR seeds 2, 0, 1 (recorded out of order) and a seed 3 RAG-SFT never ran: pairs are 0, 1, 2 by seed.
    records += [run("jmlr", "llm_rank", s, v) for s, v in zip((2, 0, 1, 3), (0.60, 0.58, 0.59, 0.10), strict=True)]
    records += [run("base", "none", 0, 1.24)]
    paired = paired_by_seed(records, metrics=("answer_nll", "recall@1"))
    assert set(paired) == {"jmlr (llm_rank)", "base models (untrained)"}  # the reference is not paired with itself
    jmlr = paired["jmlr (llm_rank)"]["answer_nll"]
    # Differences by seed: 0.58-0.68, 0.59-0.70, 0.60-0.66 = -0.10, -0.11, -0.06; mean -0.09.
    assert jmlr["seeds"] == [0, 1, 2]
    assert jmlr["differences"] == pytest.approx([-0.10, -0.11, -0.06])
    assert jmlr["mean"] == pytest.approx(-0.09)
    # Sample std of the differences: sqrt((0.01^2 + 0.02^2 + 0.03^2) / 2) = sqrt(0.0007); SE = that / sqrt(3).
    assert jmlr["std"] == pytest.approx(math.sqrt(0.0007))
    assert jmlr["se"] == pytest.approx(math.sqrt(0.0007 / 3))
    # Each arm's own seed std: JMLR 0.58/0.59/0.60 -> 0.01; RAG-SFT 0.68/0.70/0.66 -> 0.02; pooled sqrt((1+4)/2)*0.01.
    pooled = math.sqrt((0.01**2 + 0.02**2) / 2)
    assert jmlr["pooled_std"] == pytest.approx(pooled)
    assert jmlr["gap_in_pooled_std"] == pytest.approx(-0.09 / pooled)
    assert paired["jmlr (llm_rank)"]["recall@1"]["n"] == 0  # NaN on either side: not paired
    base = paired["base models (untrained)"]["answer_nll"]
    assert base["n"] == 1 and base["mean"] == pytest.approx(0.56) and math.isnan(base["se"])
    table = paired_table(paired, metrics=("answer_nll", "recall@1")).splitlines()
    assert f"| jmlr (llm_rank) | -0.0900 ± {math.sqrt(0.0007 / 3):.4f} (3) [{-0.09 / pooled:+.1f}] | n/a |" in table
    assert "| base models (untrained) | +0.5600 (1) | n/a |" in table
    assert paired_by_seed([r for r in records if r["arm"] != "rag"], metrics=("answer_nll",)) == {}


def test_parse_variant_reads_each_setting_as_its_type():
    base = ExperimentArguments(variants=["x retriever_learning_rate=1e-4"])
    variant = parse_variant(
        "fast retriever_learning_rate=1e-4 num_sampled=8 arms=rag,jmlr eval_truncate_documents=false "
        "eval_answer_limit=none",
        base,
    )
    assert variant.variant == "fast" and variant.variants == []
    assert variant.retriever_learning_rate == 1e-4 and isinstance(variant.retriever_learning_rate, float)
    assert variant.num_sampled == 8 and variant.arms == ["rag", "jmlr"]
    assert variant.eval_truncate_documents is False and variant.eval_answer_limit is None
    assert variant.max_steps == base.max_steps  # everything else is the base's
    with pytest.raises(ValueError, match="same prepared data"):
        parse_variant("more num_candidates=16", base)  # the candidates are shared by every variant
    with pytest.raises(ValueError, match="key=value"):
        parse_variant("typo retriever_lr=1e-4", base)
    with pytest.raises(ValueError, match="its name"):
        parse_variant("num_sampled=8", base)


def test_baselines_do_not_depend_on_retriever_settings():
    base = dataclasses.asdict(ExperimentArguments())
    changed = base | {"retriever_learning_rate": 1e-4, "num_sampled": 8, "retrieval_temperature": 0.1}
    assert run_settings(base, "rag", "none") == run_settings(changed, "rag", "none")
    assert run_settings(base, "sft", "none") == run_settings(changed, "sft", "none")
    assert run_settings(base, "jmlr", "llm_rank") != run_settings(changed, "jmlr", "llm_rank")
    # The supervised upper reference keeps its own τ whatever the JMLR losses' τ is (its learning rate still counts).
    tau_only = base | {"retrieval_temperature": 0.1}
    assert run_settings(base, "supervised", "none") == run_settings(tau_only, "supervised", "none")
    assert run_settings(tau_only, "supervised", "none")["retrieval_temperature"] == 0.05
    assert run_settings(base, "supervised", "none") != run_settings(changed, "supervised", "none")
    # ...and scores all N candidates whatever S the LLM-supervised arms sample (S is their NLL pass's cost knob).
    fewer_sampled = base | {"num_sampled": 2}
    assert run_settings(base, "supervised", "none") == run_settings(fewer_sampled, "supervised", "none")
    assert run_settings(fewer_sampled, "supervised", "none")["num_sampled"] == base["num_candidates"]
    assert run_settings(base, "retriever", "llm_rank") != run_settings(fewer_sampled, "retriever", "llm_rank")
    assert run_settings(base, "rag", "none") != run_settings(base | {"max_steps": 99}, "rag", "none")
    # In-batch negatives are a setting of the LLM-supervised arms; the supervised reference and RAG-SFT ignore them.
    negatives = base | {"in_batch_negatives": True}
    assert run_settings(base, "supervised", "none") == run_settings(negatives, "supervised", "none")
    assert run_settings(base, "rag", "none") == run_settings(negatives, "rag", "none")
    for arm in ("jmlr", "retriever"):
        assert run_settings(base, arm, "llm_rank") != run_settings(negatives, arm, "llm_rank")
    # Where the outputs go and what is only logged does not change a run.
    logged = base | {"output_dir": "elsewhere", "eval_retrieval_steps": 5, "seeds": [7]}
    assert run_settings(base, "jmlr", "lsr") == run_settings(logged, "jmlr", "lsr")


def test_query_side_only_training_is_a_retriever_setting(tiny_checkpoints):
    """`train_document_encoder: false` freezes the document tower of the retrieval arms only, and changes only their
    recorded settings (RAG-SFT's retriever never trains, so the baselines stay reusable)."""
    base = dataclasses.asdict(ExperimentArguments())
    query_only = base | {"train_document_encoder": False}
    assert run_settings(base, "rag", "none") == run_settings(query_only, "rag", "none")
    assert run_settings(base, "retriever", "lsr") != run_settings(query_only, "retriever", "lsr")
    args = ExperimentArguments(
        generator=tiny_checkpoints[0], retriever=tiny_checkpoints[1], train_document_encoder=False
    )
    frozen_docs = experiment_module.build_arm_model(args, "retriever", "lsr").retriever
    assert frozen_docs.document_encoder is not None
    assert not any(p.requires_grad for p in frozen_docs.document_encoder.parameters())
    assert any(p.requires_grad for p in frozen_docs.encoder.parameters())
    assert experiment_module.build_arm_model(args, "rag", "none").retriever.document_encoder is None
    with_negatives = dataclasses.replace(args, in_batch_negatives=True)
    assert experiment_module.build_arm_model(with_negatives, "jmlr", "llm_rank").config.in_batch_negatives
    assert experiment_module.build_arm_model(with_negatives, "retriever", "llm_rank").config.in_batch_negatives
    assert not experiment_module.build_arm_model(with_negatives, "supervised", "none").config.in_batch_negatives
    fewer_sampled = dataclasses.replace(args, num_candidates=4, num_sampled=2)
    assert experiment_module.build_arm_model(fewer_sampled, "supervised", "none").config.num_sampled == 4
    assert experiment_module.build_arm_model(fewer_sampled, "jmlr", "llm_rank").config.num_sampled == 2


@pytest.mark.integration
def test_experiment_end_to_end_on_tiny_models(tmp_path, tiny_checkpoints, monkeypatch):
    args = ExperimentArguments(
        output_dir=str(tmp_path / "exp"),
        generator=tiny_checkpoints[0],
        retriever=tiny_checkpoints[1],
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
        eval_retrieval_steps=1,
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
    # Held-out recall over steps: before training, then every step; the last point is the end-of-run recall on the
    # same rows (the callback's rows are the first eval_retrieval_limit = all 3 here).
    recall = [(e["step"], e["eval_recall@1"]) for e in record["log_history"] if "eval_recall@1" in e]
    assert [step for step, _ in recall] == [0, 1, 2]
    assert recall[-1][1] == record["metrics"]["recall@1"]
    assert {e["eval_recall@1"] for e in sft["log_history"] if "eval_recall@1" in e} == {base[0]}
    assert record["settings"]["max_steps"] == 2 and record["train_seconds"] > 0

    # Resuming reuses every finished run and reproduces the summary.
    real_run_one = experiment_module.run_one
    monkeypatch.setattr(experiment_module, "run_one", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert run_experiment(args) == summary
    # A finished run recorded with other settings is an error, not silently mixed in.
    with pytest.raises(ValueError, match="other settings"):
        run_experiment(dataclasses.replace(args, max_steps=3))

    # A sweep: the variant changes a retriever setting, so only its jmlr runs train; SFT and RAG are reused.
    trained = []

    def counting_run_one(run_args, arm, loss, seed, *rest):
        trained.append((run_args.variant, arm, loss, seed))
        return real_run_one(run_args, arm, loss, seed, *rest)

    monkeypatch.setattr(experiment_module, "run_one", counting_run_one)
    sweep = dataclasses.replace(args, retrieval_losses=["llm_rank"], variants=["fastlr retriever_learning_rate=1e-2"])
    summaries = run_experiment(sweep)
    assert trained == [("fastlr", "jmlr", "llm_rank", 0), ("fastlr", "jmlr", "llm_rank", 1)]  # nothing else
    assert list(summaries) == ["base", "fastlr"]
    assert summaries["fastlr"]["RAG-SFT"] == summaries["base"]["RAG-SFT"]
    variant_dir = out / "variants" / "fastlr"
    assert sorted(p.name for p in (variant_dir / "runs").glob("*.json")) == [
        "jmlr-llm_rank-seed0.json",
        "jmlr-llm_rank-seed1.json",
    ]
    assert json.loads((variant_dir / "settings.json").read_text())["retriever_learning_rate"] == 1e-2
    assert "| fastlr: jmlr (llm_rank) |" in (out / "sweep.md").read_text()
    for path in (out / "sweep_retrieval.png", variant_dir / "training_curves.png"):
        assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_medmcqa_experiment_with_generative_accuracy(tmp_path, tiny_checkpoints, generator_tokenizer):
    """MedMCQA with explanations: MedQuAD corpus (no gold passages: recall is n/a, and no recall curve), targets
    with the explanation cut to `max_rationale_tokens`, accuracy by likelihood and by generation."""
    args = ExperimentArguments(
        output_dir=str(tmp_path / "mc"),
        task="medmcqa",
        corpus="medquad",
        corpus_passages=40,
        generator=tiny_checkpoints[0],
        retriever=tiny_checkpoints[1],
        arms=["rag", "jmlr"],
        seeds=[0, 1],
        train_limit=4,
        eval_limit=3,
        generative_limit=2,
        max_new_tokens=4,
        max_rationale_tokens=16,
        max_steps=2,
        batch_size=2,
        num_candidates=4,
        num_sampled=2,
        num_context_documents=1,
        max_document_length=32,
        max_length=256,
        logging_steps=1,
        eval_retrieval_steps=1,
    )
    summary = run_experiment(args)
    out = tmp_path / "mc"
    train = load_from_disk(str(out / "prepared" / "train"))
    assert all(train["rationale"]) and all(options for options in train["options"])
    assert max(len(generator_tokenizer(r, add_special_tokens=False)["input_ids"]) for r in train["rationale"]) <= 17
    for label in ("RAG-SFT", "jmlr (llm_rank)"):
        row = summary[label]
        assert row["recall@1"]["n"] == 0 and row["evidence@1"]["n"] == 0  # no gold passages in MedQuAD
        assert row["generative_accuracy"]["n"] == 2 and row["accuracy"]["n"] == 2
        assert all(0 <= v <= 2 for v in row["generative_unparseable"]["values"])  # a count over 2 generated
    record = json.loads((out / "runs" / "jmlr-llm_rank-seed0.json").read_text())
    assert record["metrics"]["num_generated"] == 2 and record["metrics"]["num_answered"] == 3
    assert not any("eval_recall@1" in e for e in record["log_history"])
    table = (out / "summary.md").read_text()
    assert "generative_accuracy" in table and "| n/a | n/a |" in table
    assert (out / "final_metrics.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_retriever_arm_validation_split_and_retriever_metrics(tmp_path, tiny_checkpoints, capsys):
    """The answer-quality setting: a validation split carved from the training questions, a hybrid first stage, the
    retriever-only arm (LLM frozen), curves on the validation split against the base LLM's reference NLLs, and the
    end-of-run LLM-preference and whole-corpus metrics."""
    args = ExperimentArguments(
        output_dir=str(tmp_path / "exp"),
        generator=tiny_checkpoints[0],
        retriever=tiny_checkpoints[1],
        first_stage="hybrid",
        validation_size=3,
        arms=["base", "rag", "retriever"],
        retrieval_losses=["lsr"],
        seeds=[0],
        train_limit=4,
        eval_limit=3,
        eval_answer_limit=2,
        max_steps=2,
        batch_size=1,
        gradient_accumulation_steps=2,
        num_candidates=4,
        num_sampled=4,
        num_context_documents=1,
        max_document_length=32,
        max_length=256,
        logging_steps=1,
        eval_retrieval_steps=1,
        eval_retrieval_split="validation",
        eval_preference_limit=2,
        corpus_evidence=True,
        save_models=True,
    )
    summary = run_experiment(args)
    out = tmp_path / "exp"
    assert set(summary) == {"base models (untrained)", "RAG-SFT", "retriever only, LLM frozen (lsr)"}
    # The validation split: the last 3 training questions, none of them trained on.
    prepared = {split: load_from_disk(str(out / "prepared" / split)) for split in ("train", "validation", "eval")}
    task_train = experiment_module.load_task("pubmedqa", "train")
    assert prepared["validation"]["id"] == task_train["id"][-3:]
    assert not set(prepared["validation"]["id"]) & set(prepared["train"]["id"])
    assert all(len(ids) == 4 for ids in prepared["validation"]["candidate_ids"])
    # Reference NLLs measured once, for the validation rows of the curves and the test rows of the final metric.
    references = json.loads((out / "prepared" / "reference_nlls-validation.json").read_text())
    assert set(references) == set(prepared["validation"]["id"]) and all(len(v) == 4 for v in references.values())
    assert len(json.loads((out / "prepared" / "reference_nlls-eval.json").read_text())) == 2
    # The retriever arm trains on the frozen LLM's NLLs measured once per training row (cached_nlls).
    assert set(json.loads((out / "prepared" / "reference_nlls-train.json").read_text())) == set(
        prepared["train"]["id"]
    )

    base = json.loads((out / "runs" / "base-seed0.json").read_text())
    assert base["log_history"] == [] and base["train_seconds"] == 0.0
    # The untrained base is saved once, without a seed, with the experiment's config, as the trained arms are.
    saved_base = experiment_module.JMLRForCausalLM.from_pretrained(out / "models" / "base")
    assert (saved_base.config.max_document_length, saved_base.config.num_candidates) == (32, 4)
    assert (out / "models" / "rag-seed0").is_dir() and not (out / "models" / "base-seed0").exists()
    rag = json.loads((out / "runs" / "rag-seed0.json").read_text())
    # RAG-SFT never trains its retriever: it ranks as the untrained base, which captures no headroom by definition.
    for metric in ("llm_top1_agreement", "llm_top1_nll", "recall@1", "corpus_recall@1", "corpus_evidence@1"):
        assert rag["metrics"][metric] == base["metrics"][metric], metric
    captured = base["metrics"]["headroom_captured"]
    assert captured == 0.0 or math.isnan(captured)  # NaN only if no ranking could do better
    frozen = json.loads((out / "runs" / "retriever-lsr-seed0.json").read_text())
    for record in (rag, frozen):
        for metric in ("llm_top1_agreement", "llm_pairwise_agreement", "corpus_recall@1", "corpus_evidence@1"):
            assert 0.0 <= record["metrics"][metric] <= 1.0, metric
        curve = [
            (e["step"], e["eval_llm_top1_agreement"]) for e in record["log_history"] if "eval_llm_top1_agreement" in e
        ]
        assert [step for step, _ in curve] == [0, 1, 2]
    # The retriever-only arm trains no LLM: no LM loss is logged; its answers come from the base LLM.
    assert all("lm_loss" not in e for e in frozen["log_history"])
    assert [e["step"] for e in frozen["log_history"] if "retrieval_loss" in e] == [1, 2]
    # Both start from the same retriever: the curves' first points agree.
    start = [next(e for e in r["log_history"] if "eval_llm_top1_agreement" in e) for r in (rag, frozen)]
    assert start[0]["eval_llm_top1_agreement"] == start[1]["eval_llm_top1_agreement"]
    assert "llm_top1_agreement" in (out / "summary.md").read_text()
    # Tabulating arms recorded by separate calls: summary_only trains nothing and names what is not recorded.
    runs_before = sorted(p.name for p in (out / "runs").iterdir())
    tabulated = run_experiment(dataclasses.replace(args, seeds=[0, 1], summary_only=True))
    assert tabulated == summary and sorted(p.name for p in (out / "runs").iterdir()) == runs_before
    assert "Not recorded (summary_only: not run): rag-seed1, retriever-lsr-seed1" in capsys.readouterr().out
    # Choosing settings on the validation split: a variant evaluated there never reads a test question.
    test_nlls = (out / "prepared" / "reference_nlls-eval.json").read_text()
    sweep = run_experiment(dataclasses.replace(args, variants=["val eval_split=validation save_models=false"]))
    assert set(sweep["val"]) == set(summary)
    assert (out / "prepared" / "reference_nlls-eval.json").read_text() == test_nlls
    val = json.loads((out / "variants" / "val" / "runs" / "retriever-lsr-seed0.json").read_text())
    assert val["settings"]["eval_split"] == "validation" and 0.0 <= val["metrics"]["llm_top1_agreement"] <= 1.0
    # Each run's final model, saved as a plain JMLR checkpoint (what `jmlr evaluate --model` loads).
    saved = JMLRForCausalLM.from_pretrained(str(out / "models" / "retriever-lsr-seed0"))
    assert not any("lora" in name for name, _ in saved.named_parameters())
    assert (out / "models" / "rag-seed0" / "retriever_tokenizer").is_dir()


@pytest.mark.integration
def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, tiny_experiment, monkeypatch):
    """`save_steps`: a JMLR run killed after its step-2 checkpoint resumes there and records what the uninterrupted
    run records; checkpoints of other settings are refused; the folder goes once the run is recorded."""
    settings = {
        "arms": ["jmlr"],
        "retrieval_losses": ["lsr"],
        "train_limit": 6,
        "max_steps": 3,
        "logging_steps": 1,
        "eval_retrieval_steps": 1,
        "save_steps": 1,
    }
    run_experiment(tiny_experiment("whole", **settings))
    expected = json.loads((tmp_path / "whole" / "runs" / "jmlr-lsr-seed0.json").read_text())
    assert expected["resumed_from_step"] == 0
    assert not (tmp_path / "whole" / "checkpoints" / "jmlr-lsr-seed0").exists()  # recorded: checkpoints removed

    class Killed(RuntimeError):
        pass

    class KilledAtStep3(experiment_module.JointRetrievalTrainer):
        def training_step(self, *args, **kwargs):
            if self.state.global_step == 2:
                raise Killed
            return super().training_step(*args, **kwargs)

    interrupted = tiny_experiment("cut", **settings)
    with monkeypatch.context() as patch:
        patch.setattr(experiment_module, "JointRetrievalTrainer", KilledAtStep3)
        with pytest.raises(Killed):
            run_experiment(interrupted)
    checkpoints = tmp_path / "cut" / "checkpoints" / "jmlr-lsr-seed0"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-2"]  # the last one kept
    assert not (tmp_path / "cut" / "runs" / "jmlr-lsr-seed0.json").exists()
    # Checkpoints of a run with other settings are not resumed into this one.
    with pytest.raises(ValueError, match="other settings"):
        run_experiment(dataclasses.replace(interrupted, retriever_learning_rate=1e-3))

    run_experiment(interrupted)
    resumed = json.loads((tmp_path / "cut" / "runs" / "jmlr-lsr-seed0.json").read_text())
    assert resumed["resumed_from_step"] == 2
    assert not checkpoints.exists()
    timing = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss"}

    def curve(record):
        return [{k: v for k, v in e.items() if k not in timing} for e in record["log_history"]]

    assert curve(resumed) == curve(expected)  # every logged loss, agreement and held-out point, steps 0-3
    assert resumed["metrics"] == expected["metrics"]


def test_an_interrupted_nll_cache_keeps_the_rows_it_measured(tmp_path, monkeypatch):
    """The training split's NLLs take hours on a CPU: a call stopped half-way keeps what it measured (every
    `NLL_CACHE_SAVE_EVERY` rows), and the next call measures only the rest."""
    from datasets import Dataset

    class Stopped(Exception):
        """The session ending half-way through."""

    rows = Dataset.from_list([{"id": f"q{i}"} for i in range(12)])
    measured: list[str] = []
    stopped: list[str] = []

    def fake_nlls(model, tokenizer, row, truncate_documents):
        if row["id"] == "q7" and not stopped:
            stopped.append("q7")
            raise Stopped
        measured.append(row["id"])
        return [float(row["id"][1:]), 1.0]

    class Tokenizer:
        pad_token = "<pad>"

    class Model:
        def eval(self):
            return self

    monkeypatch.setattr(experiment_module, "NLL_CACHE_SAVE_EVERY", 3)
    monkeypatch.setattr(experiment_module, "single_document_nlls", fake_nlls)
    path = tmp_path / "nlls.json"
    with pytest.raises(Stopped):
        experiment_module.cached_document_nlls(str(path), rows, lambda: (Model(), Tokenizer()), True, "test")
    assert sorted(json.loads(path.read_text())) == ["q0", "q1", "q2", "q3", "q4", "q5"]  # q6 not yet saved
    measured.clear()
    nlls = experiment_module.cached_document_nlls(str(path), rows, lambda: (Model(), Tokenizer()), True, "test")
    assert measured == [f"q{i}" for i in range(6, 12)]  # q7 failed once and is measured now
    assert nlls == [[float(i), 1.0] for i in range(12)]
    assert len(json.loads(path.read_text())) == 12


def test_a_run_on_a_training_subset_measures_and_trains_on_that_subset_only(tmp_path, tiny_experiment):
    """`train_subset`: the retriever-only arm on the first 2 of 4 prepared training questions measures the frozen
    LLM's NLLs of those 2 alone (the cache is keyed by question, so the full run later measures only the rest), and
    the setting is one of the run's: a record of the whole set is not reused for the subset."""
    args = tiny_experiment(
        arms=["retriever"], retrieval_losses=["llm_rank"], train_subset=2, batch_size=1, logging_steps=1
    )
    run_experiment(args)
    out = tmp_path / "exp"
    prepared = load_from_disk(str(out / "prepared" / "train"))
    assert len(prepared) == 4  # the preparation is that of train_limit
    measured = json.loads((out / "prepared" / "reference_nlls-train.json").read_text())
    assert sorted(measured) == sorted(prepared["id"][:2])
    record = json.loads((out / "runs" / "retriever-llm_rank-seed0.json").read_text())
    assert record["settings"]["train_subset"] == 2
    assert [e["step"] for e in record["log_history"] if "retrieval_loss" in e] == [1, 2]
    whole = run_settings(dataclasses.asdict(dataclasses.replace(args, train_subset=None)), "retriever", "llm_rank")
    assert experiment_module._load_record(str(out / "runs" / "retriever-llm_rank-seed0.json"), whole, None) is None


def test_a_checkpoint_written_before_a_setting_existed_resumes_with_its_legacy_value(tmp_path):
    """A run interrupted under an older version of the script (its `run_settings.json` lacks a setting added since)
    resumes when the new setting has its legacy value, and is refused when it does not."""
    settings = run_settings(dataclasses.asdict(ExperimentArguments()), "jmlr", "llm_rank")
    older = {key: value for key, value in settings.items() if key != "train_subset"}
    checkpoint = tmp_path / "checkpoint-3"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    (checkpoint / "model.safetensors").write_bytes(b"")
    (checkpoint / "optimizer.pt").write_bytes(b"")
    (tmp_path / experiment_module.CHECKPOINT_SETTINGS).write_text(json.dumps(older))
    assert experiment_module.resume_checkpoint(str(tmp_path), settings) == str(checkpoint)
    with pytest.raises(ValueError, match="other settings"):
        experiment_module.resume_checkpoint(str(tmp_path), settings | {"train_subset": 100})


def test_llm_rank_pair_shaping_is_refused_with_other_losses_before_any_run():
    args = ExperimentArguments(
        arms=["rag", "jmlr"], retrieval_losses=["llm_rank", "lsr"], llm_rank_pair_weighting="nll_gap", seeds=[0, 1]
    )
    with pytest.raises(ValueError, match=r"apply to llm_rank only, and retrieval_losses also has \['lsr'\]"):
        experiment_module.planned_runs(args)
    # Arms without a retrieval loss do not care; llm_rank alone is the option's use.
    assert experiment_module.planned_runs(dataclasses.replace(args, arms=["rag"]))
    assert experiment_module.planned_runs(dataclasses.replace(args, retrieval_losses=["llm_rank"]))


def test_pair_shaping_is_an_outcome_setting_of_the_llm_supervised_arms_only(tmp_path):
    """A run recorded before the pair-shaping options existed is reused where they keep the paper's values, and not
    where a variant changes them; the arms whose loss they do not touch (RAG-SFT, the supervised reference) ignore
    them."""
    defaults = dataclasses.asdict(ExperimentArguments())
    shaped = defaults | {"llm_rank_min_nll_gap": 0.1}
    recorded = run_settings(defaults, "retriever", "llm_rank")
    older = {key: value for key, value in recorded.items() if not key.startswith("llm_rank_")}
    path = tmp_path / "retriever-llm_rank-seed0.json"
    path.write_text(json.dumps({"arm": "retriever", "retrieval_loss": "llm_rank", "settings": older}))
    assert experiment_module._load_record(str(path), recorded, None) is not None
    assert experiment_module._load_record(str(path), run_settings(shaped, "retriever", "llm_rank"), None) is None
    for arm, loss in (("rag", "none"), ("supervised", "ppl_distill")):
        assert run_settings(shaped, arm, loss) == run_settings(defaults, arm, loss)
