"""Rules that were written several times and disagreed, now written once (issue 23): the left cut of a prompt that is
too long (training and evaluation score the same prompt, BOS kept), the save-and-restore of train mode, the answer
positions of the LM loss and the NLL pass, and the rule that tells a local path from a Hub id."""

from __future__ import annotations

import pytest
import torch

import jmlr_hf.models.modeling_jmlr as modeling_module
import jmlr_hf.models.utils as model_utils
from jmlr_hf.evaluation.qa import EvaluationModel, batched_choice_nll, choice_nll
from jmlr_hf.models import answer_nll, eval_mode, tokenize_for_lm
from jmlr_hf.models.retrieval_jmlr import check_path_or_hub_id, is_local_path
from jmlr_hf.trainer import RetrievalRecallCallback
from jmlr_hf.trainer import joint_retrieval_trainer as trainer_module
from jmlr_hf.trainer.joint_retrieval_trainer import lm_forward
from tests.testing_utils.models import TOY_ROWS, BosTokenizer

pytestmark = pytest.mark.usefixtures("single_thread")

LONG_PROMPT = "word " * 200 + "Question: does it hold?"


def _generator_inputs(model) -> list[torch.Tensor]:
    """Every `input_ids` the generator is called with, from now on."""
    seen: list[torch.Tensor] = []

    def record(module, args, kwargs):
        seen.append((kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]).detach().clone())

    model.generator.register_forward_pre_hook(record, with_kwargs=True)
    return seen


# ---------------------------------------------------------------------------------------------------------------------
# 10. One left cut of a prompt, shared by training and evaluation: BOS kept
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("choices", [["yes", "no"], ["yes indeed", "no way at all"]], ids=["one_token", "multi_token"])
def test_evaluation_cuts_a_long_prompt_as_training_does(make_tiny_model, generator_tokenizer, choices):
    """`tokenize_for_lm` kept BOS when it cut a prompt from the left; `choice_nll` and `batched_choice_nll` dropped
    it, so evaluation scored a prompt the model was never trained on."""
    tokenizer = BosTokenizer(generator_tokenizer)
    model = make_tiny_model(0).eval()
    max_length = 64
    prompt_ids = tokenizer(LONG_PROMPT)["input_ids"]
    longest = max(len(tokenizer(" " + choice, add_special_tokens=False)["input_ids"]) for choice in choices)
    expected = [tokenizer.bos_token_id] + prompt_ids[len(prompt_ids) - (max_length - longest - 1) :]

    trained = tokenize_for_lm(tokenizer, [LONG_PROMPT], [choices[0]], max_length)
    assert trained["input_ids"][0, 0].item() == tokenizer.bos_token_id

    seen = _generator_inputs(model)
    choice_nll(model, tokenizer, LONG_PROMPT, choices, max_length=max_length)
    batched_choice_nll(model, tokenizer, [LONG_PROMPT], [choices], max_length=max_length)
    assert seen
    for input_ids in seen:
        for row in input_ids.tolist():
            assert row[: len(expected)] == expected


def test_decoding_cuts_a_long_prompt_as_training_does(make_tiny_model, generator_tokenizer, retriever_tokenizer):
    tokenizer = BosTokenizer(generator_tokenizer)
    model = make_tiny_model(0, max_length=64).eval()
    harness = EvaluationModel.from_jmlr(model, tokenizer, retriever_tokenizer)
    seen = _generator_inputs(model)
    harness.generate_answer(LONG_PROMPT, max_new_tokens=4)
    prompt = seen[0][0].tolist()
    assert len(prompt) == 64 - 4
    assert prompt[0] == tokenizer.bos_token_id and prompt[1] != tokenizer.bos_token_id


# ---------------------------------------------------------------------------------------------------------------------
# One save-and-restore of train mode: each submodule back in its own mode
# ---------------------------------------------------------------------------------------------------------------------


def test_eval_mode_restores_each_submodules_own_mode(make_tiny_model):
    """`module.train(was_training)` switched on a submodule that was in eval mode on purpose."""
    model = make_tiny_model(0).train()
    model.generator.eval()
    with eval_mode(model):
        assert not any(module.training for module in model.modules())
    assert model.training and model.retriever.training
    assert not any(module.training for module in model.generator.modules())
    assert trainer_module.eval_mode is eval_mode  # the trainer's is the same one


def test_the_recall_callback_and_encoding_restore_each_submodules_mode(make_tiny_model, retriever_tokenizer):
    from datasets import Dataset

    model = make_tiny_model(0).train()
    model.generator.eval()
    rows = [
        {"question": row["question"], "candidates": row["candidates"], "candidate_ids": ["a", "b", "c", "d"]}
        for row in TOY_ROWS
    ]
    callback = RetrievalRecallCallback(
        Dataset.from_list(rows), retriever_tokenizer, every_steps=1, reference_nlls=[[0.0, 1.0, 2.0, 3.0]] * 2
    )
    callback.measure(model)
    assert model.training and not model.generator.training
    model.retriever.encoder.embeddings.eval()
    model.retriever.encode_dense_texts(["a text"], retriever_tokenizer, max_length=16)
    assert model.retriever.training and not model.retriever.encoder.embeddings.training


# ---------------------------------------------------------------------------------------------------------------------
# Answer positions: one definition for the LM loss and the NLL pass
# ---------------------------------------------------------------------------------------------------------------------


def test_the_lm_loss_and_the_nll_pass_take_their_answer_positions_from_one_place(
    monkeypatch, make_tiny_model, generator_tokenizer
):
    model = make_tiny_model(0).eval()
    batch = tokenize_for_lm(generator_tokenizer, ["Question: a?", "Question: a longer one?"], ["yes", "no"], 64)
    calls = []
    original = modeling_module.answer_targets

    def spy(labels):
        calls.append(tuple(labels.shape))
        return original(labels)

    monkeypatch.setattr(modeling_module, "answer_targets", spy)
    monkeypatch.setattr(trainer_module, "answer_targets", spy)
    with torch.no_grad():
        loss = lm_forward(model, batch).loss
        padded = answer_nll(model.generator, batch["input_ids"], batch["attention_mask"], batch["labels"])
        packed = answer_nll(model.generator, batch["input_ids"], batch["attention_mask"], batch["labels"], packed=True)
    assert len(calls) == 1 + 1 + 2  # lm_forward, the padded pass, the packed pass (one per sequence)
    torch.testing.assert_close(packed, padded)
    counts = (batch["labels"][:, 1:] != -100).sum(-1).float()
    torch.testing.assert_close(loss, (padded * counts).sum() / counts.sum())


# ---------------------------------------------------------------------------------------------------------------------
# One rule tells a local path from a Hub id
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "local"),
    [
        ("outputs/run/index", True),  # more than one "/": no Hub id
        ("outputs/final", True),  # its parent folder exists: a folder not built yet, or a typo
        ("./index", True),
        ("~/index", True),
        ("/srv/models/index", True),
        ("org/model", False),
        ("model", False),
    ],
)
def test_one_rule_tells_a_local_path_from_a_hub_id(tmp_path, monkeypatch, name, local):
    """`is_local_path` (config index paths), `check_path_or_hub_id` (loading) and `is_jmlr_checkpoint` (the CLI)
    had three rules: `outputs/run/index` was a Hub id for the first and a missing folder for the second."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    assert is_local_path(name) is local
    asked_the_hub = []

    def cached_file(path_or_repo_id, filename, **kwargs):
        asked_the_hub.append(path_or_repo_id)
        raise OSError("not on the Hub")

    monkeypatch.setattr("transformers.utils.cached_file", cached_file)
    assert model_utils.is_jmlr_checkpoint(name) is False
    assert bool(asked_the_hub) is not local
    if local:
        with pytest.raises(FileNotFoundError, match="does not exist"):
            check_path_or_hub_id(name, "model")
    else:
        check_path_or_hub_id(name, "model")
