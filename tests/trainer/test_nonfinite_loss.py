"""A NaN or infinite training loss never reaches the weights: `nonfinite_loss="error"` stops the run naming the step
and the batch's rows, `"skip_step"` drops the micro-batch's gradient, warns, and counts it in the training logs.

Faults are injected for real on a tiny model: a NaN weight in the generator's embeddings (every loss of every step is
NaN), and a retrieval loss that is NaN at one step only."""

from __future__ import annotations

import logging
import math
import re

import pytest
import torch
from transformers import TrainerCallback

from jmlr_hf.trainer import JointRetrievalConfig, JointRetrievalTrainer, NonFiniteLossError
from tests.testing_utils.models import TOY_ROWS
from tests.testing_utils.reliability import record
from tests.testing_utils.training import make_args, make_trainer, snapshot

pytestmark = pytest.mark.usefixtures("single_thread")


def test_config_rejects_an_unknown_policy(tmp_path):
    with pytest.raises(ValueError, match="nonfinite_loss must be 'error' or 'skip_step', got 'ignore'"):
        make_args(tmp_path, nonfinite_loss="ignore")
    assert JointRetrievalConfig.__dataclass_fields__["nonfinite_loss"].default == "error"


def test_a_nan_weight_stops_the_run_naming_step_rows_and_parts(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    model = make_tiny_model(0)
    with torch.no_grad():
        model.generator.get_input_embeddings().weight[:, 0] = float("nan")
    args = make_args(tmp_path, max_steps=2)
    assert args.nonfinite_loss == "error"
    rows = [{**TOY_ROWS[i % 2], "id": f"row-{i}"} for i in range(4)]
    trainer = make_trainer(model, args, generator_tokenizer, retriever_tokenizer, rows=rows)
    with pytest.raises(NonFiniteLossError) as excinfo:
        trainer.train()
    message = str(excinfo.value)
    # The row ids of the batch (the sampler shuffles: any two rows), and which rows' NLLs are not finite (both).
    match = re.fullmatch(
        r"step 1: the training loss is nan \(lm_loss nan, retrieval_loss nan\) for the batch rows \['(row-\d)', "
        r"'(row-\d)'\]; non-finite answer NLLs in rows \['\1', '\2'\]\. Set nonfinite_loss='skip_step' to skip .*",
        message,
    )
    assert match and match[1] != match[2], message
    assert trainer.state.global_step == 0
    record("training", "non-finite loss, nonfinite_loss=error", "NonFiniteLossError naming step, rows and parts")


class Snapshots(TrainerCallback):
    """The model's parameters after every optimizer step."""

    def __init__(self, model) -> None:
        self.model = model
        self.after_step: list[dict[str, torch.Tensor]] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.after_step.append(snapshot(self.model))


def test_skip_step_drops_the_nan_step_counts_and_logs_it(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, monkeypatch, caplog
):
    model = make_tiny_model(0)
    initial = snapshot(model)
    real_loss = JointRetrievalTrainer._retrieval_loss
    calls = []

    def nan_at_step_two(cfg, sampled_logits, lm_nll, negative_logits):
        calls.append(1)
        loss = real_loss(cfg, sampled_logits, lm_nll, negative_logits)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(JointRetrievalTrainer, "_retrieval_loss", staticmethod(nan_at_step_two))
    args = make_args(tmp_path, max_steps=3, nonfinite_loss="skip_step")
    snapshots = Snapshots(model)
    trainer = make_trainer(model, args, generator_tokenizer, retriever_tokenizer, callbacks=[snapshots])
    with caplog.at_level(logging.WARNING, logger="jmlr_hf.trainer.joint_retrieval_trainer"):
        trainer.train()

    assert trainer.state.global_step == 3 and len(calls) == 3
    first, second, third = snapshots.after_step
    changed = [name for name in initial if not torch.equal(initial[name], first[name])]
    assert changed, "the first step should train"
    # The skipped step changed no weight (no gradient at all: the optimizer leaves every parameter alone), the next
    # one trained again, and nothing is NaN.
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert any(not torch.equal(second[name], third[name]) for name in second)
    assert all(torch.isfinite(value).all() for value in third.values())

    warnings = [r.getMessage() for r in caplog.records if "Skipped a micro-batch" in r.getMessage()]
    assert len(warnings) == 1 and "step 2: the training loss is nan (lm_loss " in warnings[0]
    assert "retrieval_loss nan) for the batch rows" in warnings[0]
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry.get("nonfinite_steps_skipped") for entry in logs] == [None, 1.0, 1.0]
    assert all(math.isfinite(entry["loss"]) for entry in logs)
    record(
        "training",
        "non-finite loss, nonfinite_loss=skip_step",
        "step skipped (weights unchanged), warned with step and rows, counted in the logs",
    )


def test_skip_step_under_gradient_accumulation_drops_the_whole_optimizer_step(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, monkeypatch
):
    """A NaN at the first of two accumulated micro-batches: the second one's gradient is not applied alone either (the
    rule that keeps DDP replicas identical, tests/trainer/test_multiprocess.py), so step 1 changes no weight."""
    model = make_tiny_model(0)
    real_loss = JointRetrievalTrainer._retrieval_loss
    calls = []

    def nan_at_first_micro_batch(cfg, sampled_logits, lm_nll, negative_logits):
        calls.append(1)
        loss = real_loss(cfg, sampled_logits, lm_nll, negative_logits)
        return loss * float("nan") if len(calls) == 1 else loss

    monkeypatch.setattr(JointRetrievalTrainer, "_retrieval_loss", staticmethod(nan_at_first_micro_batch))
    args = make_args(
        tmp_path, max_steps=2, gradient_accumulation_steps=2, per_device_train_batch_size=1, nonfinite_loss="skip_step"
    )
    initial = snapshot(model)
    snapshots = Snapshots(model)
    trainer = make_trainer(model, args, generator_tokenizer, retriever_tokenizer, callbacks=[snapshots])
    trainer.train()
    assert len(calls) == 4
    first, second = snapshots.after_step
    assert all(torch.equal(initial[name], first[name]) for name in initial)
    assert any(not torch.equal(first[name], second[name]) for name in first)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry.get("nonfinite_steps_skipped") for entry in logs] == [1.0, 1.0]
