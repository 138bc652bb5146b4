"""RetrievalRecallCallback: held-out recall over training steps, on tiny random models."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from jmlr_hf.evaluation import rank_candidates, retrieval_metrics
from jmlr_hf.trainer import JointRetrievalConfig, JointRetrievalTrainer, RetrievalRecallCallback
from tests.testing_utils.models import TOY_ROWS

pytestmark = pytest.mark.usefixtures("single_thread")

# The toy rows with retrieval labels: question 1's gold document is its candidate 0 (also the evidence), question 2's
# is its candidate 1 (no evidence labels).
LABELLED_ROWS = [
    {
        **TOY_ROWS[0],
        "candidate_ids": ["a0", "a1", "a2", "a3"],
        "gold_doc_ids": ["a0"],
        "evidence_doc_ids": ["a0"],
    },
    {**TOY_ROWS[1], "candidate_ids": ["b0", "b1", "b2", "b3"], "gold_doc_ids": ["b1"], "evidence_doc_ids": []},
]


def _train(model, tmp_path, generator_tokenizer, retriever_tokenizer, callbacks, max_steps=3):
    args = JointRetrievalConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        retriever_learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=False,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        gradient_checkpointing=False,
        seed=0,
    )
    trainer = JointRetrievalTrainer(
        model,
        args,
        train_dataset=Dataset.from_list(LABELLED_ROWS * 4),
        processing_class=generator_tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        callbacks=callbacks,
    )
    trainer.train()
    return trainer


def test_measure_is_the_end_of_run_metric_and_restores_the_mode(make_tiny_model, retriever_tokenizer):
    model = make_tiny_model(0).train()
    held_out = Dataset.from_list(LABELLED_ROWS)
    callback = RetrievalRecallCallback(held_out, retriever_tokenizer, every_steps=2)
    measured = callback.measure(model)
    assert model.training and model.retriever.training  # the training mode is back
    expected = retrieval_metrics(
        held_out, rank_candidates(model, retriever_tokenizer, held_out, show_progress=False), 1
    )
    assert measured == {"recall@1": expected["recall@1"], "evidence@1": expected["evidence@1"]}
    model.eval()
    callback.measure(model)
    assert not model.training  # an eval-mode model stays in eval mode


def test_recall_is_logged_at_start_every_n_steps_and_at_the_end(
    make_tiny_model, generator_tokenizer, retriever_tokenizer, tmp_path
):
    held_out = Dataset.from_list(LABELLED_ROWS)
    callback = RetrievalRecallCallback(held_out, retriever_tokenizer, every_steps=2)
    trainer = _train(make_tiny_model(0), tmp_path, generator_tokenizer, retriever_tokenizer, [callback])
    logged = [entry for entry in trainer.state.log_history if "eval_recall@1" in entry]
    assert [entry["step"] for entry in logged] == [0, 2, 3]
    for entry in logged:
        assert set(entry) == {"eval_recall@1", "eval_evidence@1", "step", "epoch"}
        assert entry["eval_recall@1"] in (0.0, 0.5, 1.0)  # two questions with gold ids
        assert entry["eval_evidence@1"] in (0.0, 1.0)  # one question with evidence labels
    # The last point is the trained retriever's recall on these rows.
    final = callback.measure(trainer.model)
    assert logged[-1]["eval_recall@1"] == final["recall@1"]


class LogRecorder(TrainerCallback):
    """What a `report_to` integration sees: every `on_log` call's figures, with the step it came at."""

    def __init__(self):
        self.received: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.received.append({**(logs or {}), "step": state.global_step})


def test_recall_reaches_every_callbacks_on_log(make_tiny_model, generator_tokenizer, retriever_tokenizer, tmp_path):
    """Through the trainer's log, not appended to the log history behind the integrations' backs: what `report_to`
    (W&B, TensorBoard) receives is exactly what the log history holds, and the training logs keep their metrics."""
    held_out = Dataset.from_list(LABELLED_ROWS)
    recorder = LogRecorder()
    trainer = _train(
        make_tiny_model(0),
        tmp_path,
        generator_tokenizer,
        retriever_tokenizer,
        [RetrievalRecallCallback(held_out, retriever_tokenizer, every_steps=2), recorder],
    )
    received = [entry for entry in recorder.received if "eval_recall@1" in entry]
    assert [entry["step"] for entry in received] == [0, 2, 3]
    assert recorder.received == trainer.state.log_history
    training_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in training_logs] == [1, 2, 3]
    assert all("lm_loss" in entry and "retrieval_loss" in entry for entry in training_logs)
    assert not any("lm_loss" in entry for entry in received)


def test_an_unbound_callback_says_how_to_bind_it(make_tiny_model, retriever_tokenizer):
    callback = RetrievalRecallCallback(Dataset.from_list(LABELLED_ROWS), retriever_tokenizer, every_steps=1)

    class State:
        global_step = 0
        max_steps = 1
        log_history: list = []

    with pytest.raises(RuntimeError, match="JointRetrievalTrainer"):
        callback.on_train_begin(None, State(), None, model=make_tiny_model(0))


def test_add_callback_binds_the_trainer(make_tiny_model, generator_tokenizer, retriever_tokenizer, tmp_path):
    from tests.testing_utils.training import make_args, make_trainer

    trainer = make_trainer(make_tiny_model(0), make_args(tmp_path), generator_tokenizer, retriever_tokenizer)
    callback = RetrievalRecallCallback(Dataset.from_list(LABELLED_ROWS), retriever_tokenizer, every_steps=1)
    trainer.add_callback(callback)
    assert callback._trainer() is trainer


def test_the_callback_does_not_change_training(make_tiny_model, generator_tokenizer, retriever_tokenizer, tmp_path):
    held_out = Dataset.from_list(LABELLED_ROWS)
    plain = _train(make_tiny_model(0), tmp_path / "a", generator_tokenizer, retriever_tokenizer, [])
    watched = _train(
        make_tiny_model(0),
        tmp_path / "b",
        generator_tokenizer,
        retriever_tokenizer,
        [RetrievalRecallCallback(held_out, retriever_tokenizer, every_steps=1)],
    )
    for (name, a), (_, b) in zip(plain.model.named_parameters(), watched.model.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in (plain, watched)]
    assert losses[0] == losses[1]


def test_nothing_is_logged_without_gold_ids(make_tiny_model, retriever_tokenizer):
    rows = [{**row, "gold_doc_ids": [], "evidence_doc_ids": []} for row in LABELLED_ROWS]
    callback = RetrievalRecallCallback(Dataset.from_list(rows), retriever_tokenizer, every_steps=1)

    class State:
        global_step = 0
        max_steps = 1
        log_history: list = []

    state = State()
    callback.on_train_begin(None, state, None, model=make_tiny_model(0))
    assert state.log_history == []


def test_rejects_bad_settings(retriever_tokenizer):
    with pytest.raises(ValueError, match="every_steps"):
        RetrievalRecallCallback(Dataset.from_list(LABELLED_ROWS), retriever_tokenizer, every_steps=0)
    rows = [{key: value for key, value in row.items() if key != "candidate_ids"} for row in LABELLED_ROWS]
    with pytest.raises(ValueError, match="candidate_ids"):
        RetrievalRecallCallback(Dataset.from_list(rows), retriever_tokenizer, every_steps=1)
