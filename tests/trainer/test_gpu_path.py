"""Defects of the GPU and cluster path, second round (issue 23), each pinned on CPU with tiny models or a stand-in of
the GPU condition: the packed-vs-padded check on low-precision models, resuming DeepSpeed and FSDP checkpoints, the
collator's target-length check, and `save_model` where the Trainer's own save works (a mount point, an unwritable
parent) or after a kill between the fallback's two renames."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import torch
from transformers import AutoTokenizer

from jmlr_hf import JMLRForCausalLM
from jmlr_hf.models import tokenize_for_lm
from jmlr_hf.trainer import JointRetrievalCollator
from jmlr_hf.trainer import joint_retrieval_trainer as trainer_module
from jmlr_hf.utils import atomic as atomic_module
from tests.testing_utils.models import TOY_ROWS
from tests.testing_utils.training import make_args, make_trainer, transform_packed_nlls

pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------------------------------------------------------------
# 1. The packed-vs-padded check follows the model's precision, not the NLLs' dtype (always float32)
# ---------------------------------------------------------------------------------------------------------------------


def test_packing_on_a_bf16_model_is_not_mistaken_for_a_leak(
    tmp_path, monkeypatch, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """bf16 weights without autocast: packed and padded NLLs differ by bf16 rounding alone (0.065 on a 20-sequence
    SmolLM2-135M batch), which the float32 tolerance (1e-3, chosen because `chunked_token_nll` returns float32) took
    for a model that ignores packing: an error with `nll_padding_free=True`, packing silently off by default.

    A tiny random model rounds the same way in both layouts (its logits are nearly flat), so the stand-in adds the
    rounding explicitly: the packed NLLs are rounded to bf16, an error of at most 0.031 at NLL 10.8, half of what
    SmolLM2 shows."""
    transform_packed_nlls(monkeypatch, trainer_module, lambda nll: nll.to(torch.bfloat16).float())
    model = make_tiny_model(0)
    model.generator.to(torch.bfloat16)
    trainer = make_trainer(model, make_args(tmp_path, nll_padding_free=True), generator_tokenizer, retriever_tokenizer)
    inputs = JointRetrievalCollator(model.config, retriever_tokenizer, generator_tokenizer)(TOY_ROWS)
    with torch.no_grad():
        loss = trainer.compute_loss(model, inputs)
    assert torch.isfinite(loss)
    assert trainer._padding_free(model, torch.device("cpu")) is True


def test_a_leaking_bf16_model_is_still_caught(
    tmp_path, monkeypatch, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """The low-precision tolerance stays far below what a model that ignores packing does to the NLLs (0.2 to 3.2
    nats on most sequences of the same SmolLM2 batch)."""
    transform_packed_nlls(monkeypatch, trainer_module, lambda nll: nll + 1.0)
    model = make_tiny_model(0)
    model.generator.to(torch.bfloat16)
    trainer = make_trainer(model, make_args(tmp_path, nll_padding_free=True), generator_tokenizer, retriever_tokenizer)
    inputs = JointRetrievalCollator(model.config, retriever_tokenizer, generator_tokenizer)(TOY_ROWS)
    with pytest.raises(ValueError, match="does not follow packed sequences"), torch.no_grad():
        trainer.compute_loss(model, inputs)


def test_the_tolerance_follows_the_compute_precision(make_tiny_model):
    model = make_tiny_model(0)
    cpu = torch.device("cpu")
    assert trainer_module.packing_tolerance(model.generator, cpu) == pytest.approx(1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert trainer_module.packing_tolerance(model.generator, cpu) == pytest.approx(0.25)
    model.generator.to(torch.float16)
    assert trainer_module.packing_tolerance(model.generator, cpu) == pytest.approx(32 * torch.finfo(torch.float16).eps)


# ---------------------------------------------------------------------------------------------------------------------
# 4. resume_from_checkpoint=True accepts DeepSpeed and FSDP checkpoints, and still skips incomplete ones
# ---------------------------------------------------------------------------------------------------------------------


def _trainer_state(folder, step: int) -> None:
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))


def _deepspeed_checkpoint(folder, step: int, *, weights: bool = True, finished: bool = True) -> None:
    """What `Trainer._save_checkpoint` leaves under DeepSpeed: the model's files (ZeRO-2; none under ZeRO-3
    without `stage3_gather_16bit_weights_on_model_save`), the engine's `global_stepN/` with the sharded optimizer,
    `latest`, no `optimizer.pt`, then `trainer_state.json`."""
    folder.mkdir(parents=True)
    if weights:
        (folder / "model.safetensors").write_bytes(b"weights")
    engine = folder / f"global_step{step}"
    engine.mkdir()
    (engine / "mp_rank_00_model_states.pt").write_bytes(b"model")
    (engine / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"optimizer")
    (folder / "latest").write_text(f"global_step{step}")
    if finished:
        _trainer_state(folder, step)


def _fsdp_checkpoint(folder, step: int, *, sharded: bool, finished: bool = True) -> None:
    """What `Trainer._save_checkpoint` leaves under FSDP: `pytorch_model_fsdp.bin` and `optimizer.bin` with a full
    state dict, `pytorch_model_fsdp_0/` and `optimizer_0/` with a sharded one; no `optimizer.pt`."""
    folder.mkdir(parents=True)
    if sharded:
        (folder / "pytorch_model_fsdp_0").mkdir()
        (folder / "pytorch_model_fsdp_0" / "__0_0.distcp").write_bytes(b"weights")
        (folder / "optimizer_0").mkdir()
        (folder / "optimizer_0" / "__0_0.distcp").write_bytes(b"optimizer")
    else:
        (folder / "pytorch_model_fsdp.bin").write_bytes(b"weights")
        (folder / "optimizer.bin").write_bytes(b"optimizer")
    (folder / "scheduler.pt").write_bytes(b"scheduler")
    if finished:
        _trainer_state(folder, step)


@pytest.mark.parametrize("weights", [True, False], ids=["zero2", "zero3"])
def test_a_deepspeed_checkpoint_is_resumed_from(tmp_path, weights):
    _deepspeed_checkpoint(tmp_path / "checkpoint-2", 2, weights=weights)
    _deepspeed_checkpoint(tmp_path / "checkpoint-4", 4, weights=weights, finished=False)  # killed while saving
    assert trainer_module.last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")


@pytest.mark.parametrize("sharded", [False, True], ids=["full_state_dict", "sharded_state_dict"])
def test_an_fsdp_checkpoint_is_resumed_from(tmp_path, sharded):
    _fsdp_checkpoint(tmp_path / "checkpoint-2", 2, sharded=sharded)
    _fsdp_checkpoint(tmp_path / "checkpoint-4", 4, sharded=sharded, finished=False)
    assert trainer_module.last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")


def test_a_checkpoint_without_its_optimizer_is_still_incomplete(tmp_path):
    """An optimizer state of any of the Trainer's forms is still required (unless `save_only_model`)."""
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    _trainer_state(folder, 2)
    with pytest.raises(ValueError, match="checkpoint-2 lacks an optimizer state"):
        trainer_module.last_complete_checkpoint(str(tmp_path))
    assert trainer_module.last_complete_checkpoint(str(tmp_path), save_only_model=True) == str(folder)
    engine = folder / "global_step2"
    engine.mkdir()
    with pytest.raises(ValueError, match="checkpoint-2 lacks an optimizer state"):  # an empty engine folder
        trainer_module.last_complete_checkpoint(str(tmp_path))
    (engine / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"optimizer")
    assert trainer_module.last_complete_checkpoint(str(tmp_path)) == str(folder)


# ---------------------------------------------------------------------------------------------------------------------
# 9. The collator measures the target as tokenize_for_lm does (leading space and EOS included)
# ---------------------------------------------------------------------------------------------------------------------


def test_a_target_one_token_too_long_is_refused_by_the_collator_naming_the_row(
    make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """A target of `max_length - 1` tokens (counted without its leading space and EOS) passed the collator and failed
    in `compute_loss`, which cannot name the row."""
    max_length = 16
    model = make_tiny_model(0, max_length=max_length)
    rationale = " ".join(["insulin"] * 40)
    while True:  # the longest rationale whose target, counted the old way, is max_length - 1 tokens
        row = dict(TOY_ROWS[0], id="q-long", rationale=rationale)
        target = model.config.target_template.format(answer=row["answer"], rationale=rationale)
        if len(generator_tokenizer(target, add_special_tokens=False)["input_ids"]) <= max_length - 1:
            break
        rationale = rationale.rsplit(" ", 1)[0]
    assert len(generator_tokenizer(target, add_special_tokens=False)["input_ids"]) == max_length - 1
    with pytest.raises(ValueError, match="target alone"):  # what compute_loss would meet
        tokenize_for_lm(generator_tokenizer, ["Question?"], [target], max_length)
    collator = JointRetrievalCollator(model.config, retriever_tokenizer, generator_tokenizer)
    with pytest.raises(ValueError, match=r"row 'q-long': fields 'answer' \+ 'rationale': the target is \d+ tokens"):
        collator([TOY_ROWS[1], row])


# ---------------------------------------------------------------------------------------------------------------------
# 3. save_model where the output folder cannot be swapped; and the unconfirmed save defects that held
# ---------------------------------------------------------------------------------------------------------------------


def test_save_model_on_a_mount_point_saves_in_place_and_keeps_the_checkpoints(
    tmp_path, monkeypatch, caplog, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """`output_dir` a container volume: renaming it fails with EBUSY (renameat2 and rename alike; a bind mount on
    the same filesystem is no mount point to `os.path.ismount`), so the final save failed and the model was lost,
    after every checkpoint had been linked or copied into the temporary sibling."""
    output_dir = tmp_path / "out"
    args = make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    trainer = make_trainer(make_tiny_model(0), args, generator_tokenizer, retriever_tokenizer)
    trainer.train()
    optimizer = output_dir / "checkpoint-2" / "optimizer.pt"
    inode = os.stat(optimizer).st_ino

    def busy(first, second):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(second))

    monkeypatch.setattr(atomic_module, "exchange_paths", busy)
    with caplog.at_level("WARNING", logger=atomic_module.logger.name):
        trainer.save_model()
    assert "in place" in caplog.text
    assert os.stat(optimizer).st_ino == inode  # left where it was
    loaded = JMLRForCausalLM.from_pretrained(output_dir)
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_resave_drops_the_previous_tokenizers_chat_template(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """Every top-level entry the new save did not write was carried over, tokenizer files included: a chat template
    removed since the last save came back with `AutoTokenizer.from_pretrained`."""
    tokenizer = AutoTokenizer.from_pretrained(generator_tokenizer.name_or_path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    trainer = make_trainer(make_tiny_model(0), make_args(tmp_path), tokenizer, retriever_tokenizer)
    trainer.save_model()
    output_dir = tmp_path / "out"
    assert AutoTokenizer.from_pretrained(output_dir).chat_template is not None
    (output_dir / "notes.md").write_text("kept")
    tokenizer.chat_template = None
    trainer.save_model()
    assert AutoTokenizer.from_pretrained(output_dir).chat_template is None
    assert (output_dir / "notes.md").read_text() == "kept"


def test_a_kill_between_the_fallback_renames_is_recovered_before_resuming(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """Where renameat2 cannot exchange (macOS, NFS), the final save renames `output_dir` aside, then the new folder
    into place. A kill in between left no `output_dir`; the restarted Trainer recreated it empty, so resuming found
    no checkpoint, and the next save removed the backup with every checkpoint in it."""
    output_dir = tmp_path / "out"
    args = make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    make_trainer(make_tiny_model(0), args, generator_tokenizer, retriever_tokenizer).train()
    # The state the kill leaves: the old folder renamed aside, the new one complete beside it.
    os.replace(output_dir, tmp_path / ".out.old-k1ll3d00")
    new = tmp_path / ".out.tmp-k1ll3d01"
    shutil.copytree(tmp_path / ".out.old-k1ll3d00", new)
    assert not output_dir.exists()

    args = make_args(tmp_path, max_steps=3, save_strategy="steps", save_steps=2)
    resumed = make_trainer(make_tiny_model(1), args, generator_tokenizer, retriever_tokenizer)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 3
    resumed.save_model()
    assert (output_dir / "checkpoint-2" / "optimizer.pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_is_saved_model_file_covers_the_tokenizer_and_generation_files():
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert trainer_module.is_saved_model_file(name), name
    for name in ("checkpoint-2", "index", "README.md", "runs", "results.json"):
        assert not trainer_module.is_saved_model_file(name), name
