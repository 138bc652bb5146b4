"""TRL's SFTConfig flags on the joint trainer: each one works (`max_length`, `eval_strategy`) or is refused with the
setting that replaces it (`packing`, `padding_free`, ...), and every figure reaches the callbacks' `on_log`."""

from __future__ import annotations

import pytest
from datasets import Dataset
from transformers import TrainerCallback

import jmlr_hf.trainer.joint_retrieval_trainer as trainer_module
from tests.testing_utils.models import TOY_ROWS
from tests.testing_utils.training import make_args, make_trainer

pytestmark = pytest.mark.usefixtures("single_thread")

# The toy rows with gold documents, so that an evaluation can measure the retriever too.
LABELLED_ROWS = [
    {**TOY_ROWS[0], "candidate_ids": ["a0", "a1", "a2", "a3"], "gold_doc_ids": ["a0"], "evidence_doc_ids": ["a0"]},
    {**TOY_ROWS[1], "candidate_ids": ["b0", "b1", "b2", "b3"], "gold_doc_ids": ["b1"], "evidence_doc_ids": []},
]


class LogRecorder(TrainerCallback):
    """What a `report_to` integration receives: every `on_log` call, with its step."""

    def __init__(self):
        self.received: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.received.append({**(logs or {}), "step": state.global_step})


@pytest.mark.parametrize("flag", ["packing", "padding_free", "eval_packing"])
def test_packing_flags_are_refused_naming_the_replacement(tmp_path, flag):
    with pytest.raises(ValueError, match=f"{flag}=True.*nll_padding_free.*max_length"):
        make_args(tmp_path, **{flag: True})


@pytest.mark.parametrize("flag", [{"assistant_only_loss": True}, {"completion_only_loss": False}])
def test_loss_masking_flags_are_refused(tmp_path, flag):
    with pytest.raises(ValueError, match="answer tokens only"):
        make_args(tmp_path, **flag)


@pytest.mark.parametrize(
    ("flag", "instead"),
    [
        ({"dataset_text_field": "content"}, "collator reads"),
        ({"dataset_num_proc": 4}, "collator tokenises"),
        ({"shuffle_dataset": True}, "sampler already shuffles"),
        ({"chat_template_path": "template.jinja"}, "prompt_template"),
        ({"loss_type": "dft"}, "retrieval_loss"),
        ({"label_smoothing_factor": 0.1}, "retrieval_loss"),
        ({"model_init_kwargs": {"dtype": "bfloat16"}}, "from_components"),
    ],
)
def test_sft_flags_the_joint_trainer_does_not_go_through_are_refused(tmp_path, flag, instead):
    (name,) = flag
    with pytest.raises(ValueError, match=f"does not use {name} .*{instead}"):
        make_args(tmp_path, **flag)


def test_max_length_is_the_sequence_cap(
    make_tiny_model, generator_tokenizer, retriever_tokenizer, tmp_path, monkeypatch
):
    """`max_length` (TRL's name) caps documents + question + answer; the model's config carries it, so the saved
    model answers under the cap it was trained with. Unset, the model's own cap stays."""
    model = make_tiny_model(0, max_length=256)
    make_trainer(model, make_args(tmp_path), generator_tokenizer, retriever_tokenizer)
    assert model.config.max_length == 256
    trainer = make_trainer(model, make_args(tmp_path, max_length=96), generator_tokenizer, retriever_tokenizer)
    assert model.config.max_length == 96
    widths, caps = [], []
    original = trainer_module.tokenize_for_lm

    def spy(tokenizer, prompts, targets, max_length):
        batch = original(tokenizer, prompts, targets, max_length)
        caps.append(max_length)
        widths.append(batch["input_ids"].shape[1])
        return batch

    monkeypatch.setattr(trainer_module, "tokenize_for_lm", spy)
    trainer.train()
    assert set(caps) == {96} and max(widths) <= 96  # the LM batch and the NLL pass, under the cap
    with pytest.raises(ValueError, match="max_length must be a positive"):
        make_args(tmp_path, max_length=0)


def test_eval_strategy_steps_evaluates_the_joint_loss_and_the_retriever(
    make_tiny_model, generator_tokenizer, retriever_tokenizer, tmp_path
):
    """`eval_strategy="steps"` with an `eval_dataset`: at every evaluation, the joint loss and its parts and the
    retriever's recall on the evaluation rows, all through the trainer's log (so `report_to` receives them)."""
    recorder = LogRecorder()
    args = make_args(tmp_path, max_steps=2, eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=2)
    trainer = make_trainer(
        make_tiny_model(0),
        args,
        generator_tokenizer,
        retriever_tokenizer,
        rows=LABELLED_ROWS * 2,
        eval_dataset=Dataset.from_list(LABELLED_ROWS),
        callbacks=[recorder],
    )
    trainer.train()
    evaluations = [entry for entry in recorder.received if "eval_loss" in entry]
    assert [entry["step"] for entry in evaluations] == [1, 2]
    for entry in evaluations:
        assert {"eval_lm_loss", "eval_retrieval_loss", "eval_retrieval_agreement"} <= set(entry)
        assert entry["eval_recall@1"] in (0.0, 0.5, 1.0) and entry["eval_evidence@1"] in (0.0, 1.0)
        assert "eval_recall@2" in entry  # K = num_context_documents = 2
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_lm_loss", "eval_recall@1"} <= set(metrics)
    # Rows without gold documents: the joint loss only.
    plain = Dataset.from_list(TOY_ROWS)
    assert "eval_recall@1" not in trainer.evaluate(plain) and "eval_lm_loss" in trainer.evaluate(plain)
