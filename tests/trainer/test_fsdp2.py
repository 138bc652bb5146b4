"""FSDP2 (`fully_shard` through accelerate's `fsdp_version: 2`) in two CPU processes over gloo: the generator with
LoRA sharded by decoder layer, the retriever kept whole (jmlr_hf/trainer/fsdp.py). One launch trains, checkpoints,
gathers the full state dict as the recipe does, saves, and resumes a second model from the sharded checkpoint; a DDP
launch of the same worker is the reference (tests/testing_utils/fsdp2_worker.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "testing_utils" / "fsdp2_worker.py"
FSDP2_FLAGS = [
    "--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
    "--fsdp_state_dict_type", "FULL_STATE_DICT", "--fsdp_reshard_after_forward", "true",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(out_dir: Path, launcher_flags: list[str], *worker_args: str, timeout: int = 240) -> dict:
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", *launcher_flags, "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(WORKER), str(out_dir), *worker_args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    try:
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the 2-process run did not finish in {timeout} s (a hang?): {str(err.stderr)[-3000:]}")
    assert run.returncode == 0, run.stderr[-5000:]
    return torch.load(out_dir / "result.pt", weights_only=False)


def test_fsdp2_trains_saves_and_resumes_as_ddp_does(tmp_path):
    fsdp = launch(tmp_path / "fsdp2", FSDP2_FLAGS, "--resume")
    ddp = launch(tmp_path / "ddp", ["--multi_gpu"])
    assert fsdp["world"] == ddp["world"] == 2
    assert fsdp["fsdp"] and not ddp["fsdp"]  # each took the path it was launched for
    assert fsdp["sharded_class"] == "FSDPJMLRForCausalLM"

    # Same seed, same data: the same weights as DDP. FSDP2 all-gathers the generator's float32 shards before each
    # use (the computation sees bit-identical weights), reduce-scatters its gradients and averages over two ranks
    # (a sum of two values, which rounding cannot reorder), and the retriever's gradients are all-reduced and
    # averaged as DDP does. Exact equality is what two processes give here; atol 1e-6 (four steps at lr 1e-3 of
    # weights of order 1) leaves room only for a reduction order that differs in the last bit on other hardware.
    weights, reference = fsdp["weights"], ddp["weights"]
    assert weights.keys() == reference.keys()
    assert any("lora_" in name for name in weights) and any(name.startswith("retriever.") for name in weights)
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(fsdp["losses"], ddp["losses"], rtol=0, atol=1e-6)
    assert len(fsdp["losses"]) == 4
    assert fsdp["eval_loss"] == pytest.approx(ddp["eval_loss"], rel=0, abs=1e-6)  # evaluated through the shards

    # Resumed from checkpoint-2 (FSDP2's gathered weights and optimizer state), a model built from other initial
    # weights ends where the uninterrupted run ended, bit for bit; its log has steps 1-2 from the checkpoint's trainer
    # state and steps 3-4 trained again, value for value.
    for name, value in weights.items():
        assert torch.equal(fsdp["resumed"][name], value), name
    assert fsdp["resumed_losses"] == fsdp["losses"]

    # The saved model (gathered, merged) reloads with from_pretrained and holds the weights the DDP run merged.
    from jmlr_hf import JMLRForCausalLM

    final = tmp_path / "fsdp2" / "final"
    assert not list(final.glob("_fsdp*.py"))  # the remote code is the model's, not FSDP's generated class
    reloaded = JMLRForCausalLM.from_pretrained(final).state_dict()
    assert reloaded.keys() == ddp["merged"].keys()
    for name, value in ddp["merged"].items():
        torch.testing.assert_close(reloaded[name], value, rtol=0, atol=1e-6, msg=name)
    checkpoint_config = (tmp_path / "fsdp2" / "run" / "checkpoint-2" / "config.json").read_text(encoding="utf-8")
    assert "FSDPJMLR" not in checkpoint_config and "modeling_jmlr.JMLRForCausalLM" in checkpoint_config


# ------------------------------------------------------------------------------------ the plugin, in one process


@pytest.fixture(scope="module")
def tiny_model():
    from transformers import AutoTokenizer

    from jmlr_hf import JMLRForCausalLM
    from jmlr_hf.utils.demo_models import minilm_path, smollm2_path
    from tests.testing_utils.models import tiny_config

    generator_tokenizer = AutoTokenizer.from_pretrained(smollm2_path())
    generator_tokenizer.pad_token = generator_tokenizer.pad_token or generator_tokenizer.eos_token
    torch.manual_seed(0)
    return JMLRForCausalLM(tiny_config(generator_tokenizer, AutoTokenizer.from_pretrained(minilm_path())))


def plugin(**kwargs):
    from accelerate.utils import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(
        **{"fsdp_version": 2, "auto_wrap_policy": "transformer_based_wrap", **kwargs}
    )


def test_the_generator_layers_are_the_units_and_the_retriever_is_ignored(tiny_model):
    from jmlr_hf.trainer.fsdp import configure_fsdp2

    fsdp = plugin()
    configure_fsdp2(fsdp, tiny_model)
    assert fsdp.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    assert [module is tiny_model.retriever for module in fsdp.ignored_modules] == [True]
    configure_fsdp2(fsdp, tiny_model)  # a second trainer on the same plugin: the retriever is not added twice
    assert len(fsdp.ignored_modules) == 1
    named = plugin(transformer_cls_names_to_wrap="LlamaDecoderLayer")  # as transformers' fsdp_config passes it
    configure_fsdp2(named, tiny_model)
    assert named.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"fsdp_version": 1}, "fsdp_version: 2"),
        ({"auto_wrap_policy": "size_based_wrap"}, "TRANSFORMER_BASED_WRAP"),
        ({"transformer_cls_names_to_wrap": ["LlamaDecoderLayer", "BertLayer"]}, r"\['LlamaDecoderLayer'\]"),
        ({"ignored_modules": "retriever.*"}, "give no pattern"),
    ],
    ids=["fsdp1", "size-based", "retriever-layers", "pattern"],
)
def test_what_fsdp2_cannot_shard_this_way_is_refused_naming_the_fix(tiny_model, kwargs, named):
    from jmlr_hf.trainer.fsdp import configure_fsdp2

    with pytest.raises(ValueError, match=named):
        configure_fsdp2(plugin(**kwargs), tiny_model)


def test_a_gathered_state_dict_that_does_not_fit_the_rebuilt_model_is_an_error(tiny_model):
    import copy

    from jmlr_hf.trainer.fsdp import load_gathered_state_dict

    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    state["generator.model.layers.0.self_attn.q_proj.lora_A.default.weight"] = torch.zeros(4, 32)  # a PEFT key
    with pytest.raises(ValueError, match="unexpected.*lora_A"):
        load_gathered_state_dict(copy.deepcopy(tiny_model), state)
