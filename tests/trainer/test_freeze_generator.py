"""`freeze_generator=True`: the retriever-only arm (RePlug-style) — the retriever learns from the frozen LLM's answer
NLLs, exactly as it would in a joint step, while the generator gets no gradient and no LM loss is computed."""

from __future__ import annotations

import pytest
import torch

from jmlr_hf.evaluation import single_document_nlls
from jmlr_hf.trainer import joint_retrieval_trainer as trainer_module
from tests.testing_utils.models import TOY_ROWS
from tests.testing_utils.training import lora_config, make_args, make_trainer, snapshot


def test_frozen_generator_trains_the_retriever_alone(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, monkeypatch
):
    model = make_tiny_model(0)
    monkeypatch.setattr(trainer_module, "lm_forward", lambda *a, **k: pytest.fail("no LM loss with a frozen LLM"))
    args = make_args(tmp_path, max_steps=2, freeze_generator=True)
    trainer = make_trainer(model, args, generator_tokenizer, retriever_tokenizer)
    assert not any(param.requires_grad for param in model.generator.parameters())
    before = snapshot(model)
    trainer.train()
    after = snapshot(model)
    assert all(torch.equal(before[n], after[n]) for n in before if n.startswith("generator."))
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("retriever."))
    logs = [entry for entry in trainer.state.log_history if "retrieval_loss" in entry]
    assert len(logs) == 2 and all("lm_loss" not in entry for entry in logs)
    assert all(entry["loss"] == pytest.approx(entry["retrieval_loss"], rel=1e-5) for entry in logs)


def test_frozen_generator_gives_the_retriever_the_update_of_a_joint_step(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    # The LM loss takes no gradient to the retriever (the top K is a hard choice), so with the generator held still
    # (learning_rate=0) one joint step and one retriever-only step must move the retriever identically. (Without
    # clipping: the joint step clips by the norm of all gradients, the generator's included.)
    updated = {}
    for name, overrides in (("joint", {"learning_rate": 0.0}), ("frozen", {"freeze_generator": True})):
        model = make_tiny_model(0)
        args = make_args(tmp_path / name, max_steps=1, max_grad_norm=0.0, **overrides)
        make_trainer(model, args, generator_tokenizer, retriever_tokenizer).train()
        updated[name] = {n: p for n, p in snapshot(model).items() if n.startswith("retriever.")}
    moved = make_tiny_model(0)
    assert any(not torch.equal(updated["frozen"][n], p) for n, p in snapshot(moved).items() if n in updated["frozen"])
    for name, value in updated["frozen"].items():
        torch.testing.assert_close(value, updated["joint"][name], rtol=1e-5, atol=1e-7, msg=name)


def test_a_frozen_generator_that_cannot_train_fails_at_start(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    with pytest.raises(ValueError, match="trains nothing"):
        make_trainer(
            make_tiny_model(0, retrieval_loss_weight=0.0),
            make_args(tmp_path, freeze_generator=True),
            generator_tokenizer,
            retriever_tokenizer,
        )
    with pytest.raises(ValueError, match="LoRA adapters would never train"):
        make_trainer(
            make_tiny_model(0),
            make_args(tmp_path, freeze_generator=True),
            generator_tokenizer,
            retriever_tokenizer,
            peft_config=lora_config(),
        )
    with pytest.raises(ValueError, match="retriever_learning_rate > 0"):
        make_args(tmp_path, freeze_generator=True, retriever_learning_rate=0.0)


def test_cached_candidate_nlls_replace_the_nll_pass_exactly(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, monkeypatch
):
    # The frozen LLM's NLLs measured once per row (dropout off, documents cut as the collator cuts them) are the ones
    # the NLL pass would measure at every step: the retriever moves identically, and no NLL pass runs.
    model = make_tiny_model(0)
    rows = [
        {**row, "candidate_nlls": single_document_nlls(model, generator_tokenizer, row, truncate_documents=True)}
        for row in TOY_ROWS * 4
    ]
    updated = {}
    for name, data in (("live", TOY_ROWS * 4), ("cached", rows)):
        model = make_tiny_model(0)
        args = make_args(tmp_path / name, max_steps=2, freeze_generator=True)
        trainer = make_trainer(model, args, generator_tokenizer, retriever_tokenizer, rows=data)
        if name == "cached":
            monkeypatch.setattr(trainer, "_nll_pass", lambda *a, **k: pytest.fail("cached NLLs: no NLL pass"))
        trainer.train()
        updated[name] = {n: p for n, p in snapshot(model).items() if n.startswith("retriever.")}
        logs = [e for e in trainer.state.log_history if "sampled_nll_mean" in e]
        updated[name + "_nll"] = [e["sampled_nll_mean"] for e in logs]
    assert updated["cached_nll"] == pytest.approx(updated["live_nll"], rel=1e-4)
    for name, value in updated["cached"].items():
        torch.testing.assert_close(value, updated["live"][name], rtol=1e-4, atol=1e-6, msg=name)


def test_cached_candidate_nlls_are_checked(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    good = {**TOY_ROWS[0], "candidate_nlls": [1.0, 2.0, 3.0, 4.0]}
    with pytest.raises(ValueError, match="set freeze_generator=True"):
        make_trainer(make_tiny_model(0), make_args(tmp_path), generator_tokenizer, retriever_tokenizer, rows=[good])
    trainer = make_trainer(
        make_tiny_model(0), make_args(tmp_path, freeze_generator=True), generator_tokenizer, retriever_tokenizer
    )
    collator = trainer.data_collator
    assert collator([good])["candidate_nlls"].tolist() == [[1.0, 2.0, 3.0, 4.0]]
    for bad, message in (
        ({**good, "candidate_nlls": [1.0, 2.0]}, "holds 2 values for the row's 4 candidates"),
        ({**good, "candidate_nlls": [1.0, float("nan"), 3.0, 4.0]}, r"'candidate_nlls'\[1\] is nan"),
        ({**good, "candidate_nlls": "1 2 3 4"}, "one answer NLL per candidate"),
    ):
        with pytest.raises(ValueError, match=message):
            collator([bad])
    with pytest.raises(ValueError, match="'candidate_nlls' is missing where other rows have it"):
        collator([good, {**TOY_ROWS[1], "id": "q2"}])
    collator.candidate_overrides = {good["id"]: list(good["candidates"])}
    with pytest.raises(ValueError, match="not to refreshed ones"):
        collator([good])
