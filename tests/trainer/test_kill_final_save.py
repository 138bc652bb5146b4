"""A process SIGKILLed in the middle of writing its final model leaves the previous model whole: it loads, with
bit-identical weights, and what else the folder held (checkpoints, an index, a README) is still there. The next save
removes what the killed one left behind and writes the new model (real processes, the kill at a fixed point of the
save: tests/testing_utils/kill_save_worker.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from jmlr_hf.models import load_jmlr_checkpoint, save_model
from jmlr_hf.trainer import joint_retrieval_trainer as trainer_module
from jmlr_hf.trainer.joint_retrieval_trainer import is_saved_model_file
from tests.testing_utils.kill_save_worker import kill_when_paused
from tests.testing_utils.training import make_args, make_trainer

# What a user's output folder holds besides the model; `save_model` must leave all of it in place.
EXTRAS = {
    "README.md": "# my notes\n",
    "index/index_config.json": "{}\n",
    "checkpoint-1/trainer_state.json": '{"global_step": 1}\n',
}


def write_extras(folder: Path) -> None:
    for name, text in EXTRAS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def assert_extras(folder: Path) -> None:
    for name, text in EXTRAS.items():
        assert (folder / name).read_text() == text, name


def assert_loads_with_weights(folder: Path, expected: torch.nn.Module) -> None:
    loaded, _, _ = load_jmlr_checkpoint(folder)
    state, wanted = loaded.state_dict(), expected.state_dict()
    assert state.keys() == wanted.keys()
    assert any(name.startswith("retriever.") for name in wanted)
    for name, value in wanted.items():
        assert torch.equal(state[name], value), name


@pytest.mark.integration
@pytest.mark.parametrize("via", ["trainer", "script"])
def test_sigkill_during_the_final_save_keeps_the_previous_model(
    tmp_path, via, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """`via="trainer"`: `JointRetrievalTrainer.save_model(out)` into a folder that also holds checkpoints, an index
    and a README. `via="script"`: `jmlr_hf.models.save_model`, the training script's save of `output_dir/final`
    (a folder of its own, replaced whole)."""
    out = tmp_path / "final"

    def save(model: torch.nn.Module) -> None:
        if via == "trainer":
            trainer = make_trainer(
                model, make_args(tmp_path, output_dir=str(tmp_path / "run")), generator_tokenizer, retriever_tokenizer
            )
            trainer.save_model(str(out))
        else:
            save_model(model, generator_tokenizer, retriever_tokenizer, out)

    previous = make_tiny_model(0)
    save(previous)
    if via == "trainer":
        write_extras(out)

    # The worker trains another model one step and is killed with its model.safetensors half-written.
    half_written = kill_when_paused("final-save", out, "--via", via)
    assert half_written.name == "model.safetensors" and half_written.stat().st_size > 0

    assert_loads_with_weights(out, previous)
    if via == "trainer":
        assert_extras(out)

    # What the kill left (the temporary folder with the half-written file) goes with the next save.
    new = make_tiny_model(2)
    save(new)
    assert_loads_with_weights(out, new)
    if via == "trainer":
        assert_extras(out)
    assert not half_written.exists()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_save_model_keeps_the_folders_other_entries_and_drops_a_previous_saves_stale_weights(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """As the Trainer's in-place save would: files the save does not write stay (and are hard links, not copies);
    weights of another format or an adapter that a previous save left are dropped, since `from_pretrained` could
    load them instead of the new weights."""
    out = tmp_path / "out"
    out.mkdir()
    write_extras(out)
    save_file({"weight": torch.zeros(2)}, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text("{}")
    (out / "model-00001-of-00002.safetensors").write_bytes(b"an old shard")
    (out / "optimizer.pt").write_bytes(b"kept: not a model file")
    inode = (out / "checkpoint-1" / "trainer_state.json").stat().st_ino

    model = make_tiny_model(0)
    trainer = make_trainer(
        model, make_args(tmp_path, output_dir=str(tmp_path / "run")), generator_tokenizer, retriever_tokenizer
    )
    trainer.save_model(str(out))

    assert_extras(out)
    assert (out / "optimizer.pt").read_bytes() == b"kept: not a model file"
    assert (out / "checkpoint-1" / "trainer_state.json").stat().st_ino == inode  # linked, not copied
    for name in ("adapter_model.safetensors", "adapter_config.json", "model-00001-of-00002.safetensors"):
        assert not (out / name).exists(), name
    assert any(name.startswith("retriever.") for name in load_file(str(out / "model.safetensors")))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "run"]
    assert is_saved_model_file("model.safetensors.index.json") and not is_saved_model_file("index")


def test_checkpoints_are_written_in_place_and_only_the_final_save_is_swapped_in(
    tmp_path, monkeypatch, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """A checkpoint is not swapped in: the Trainer writes the optimizer and trainer state into the same folder after
    the model, and resuming passes over one whose writing did not finish."""
    swapped = []
    real_atomic_directory = trainer_module.atomic_directory

    def recording_atomic_directory(directory, **kwargs):
        swapped.append(Path(directory).name)
        return real_atomic_directory(directory, **kwargs)

    monkeypatch.setattr(trainer_module, "atomic_directory", recording_atomic_directory)
    args = make_args(tmp_path, max_steps=1, save_strategy="steps", save_steps=1)
    trainer = make_trainer(make_tiny_model(0), args, generator_tokenizer, retriever_tokenizer)
    trainer.train()
    checkpoint = Path(args.output_dir) / "checkpoint-1"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "trainer_state.json").is_file()
    assert swapped == []
    trainer.save_model()  # into args.output_dir, which holds checkpoint-1
    assert swapped == ["out"]
    assert (Path(args.output_dir) / "model.safetensors").is_file()
    assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / "optimizer.pt").is_file()


def test_save_model_into_the_current_directory(
    tmp_path, monkeypatch, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """`save_model(".")` swaps out the folder the process stands in: the process moves to the new one."""
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    monkeypatch.chdir(out / "sub")
    trainer = make_trainer(
        make_tiny_model(0),
        make_args(tmp_path, output_dir=str(tmp_path / "run")),
        generator_tokenizer,
        retriever_tokenizer,
    )
    trainer.save_model("..")
    assert Path.cwd() == out / "sub" and Path("..", "model.safetensors").is_file()
    assert os.stat(".").st_ino == (out / "sub").stat().st_ino  # the new folder, not the removed old one
