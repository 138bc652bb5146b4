"""QLoRA (`--load_in_4bit true`), the recipe's one-GPU path for a large generator: the generator's linear layers in
4-bit through bitsandbytes (the `qlora` extra), LoRA adapters trained on top, the retriever whole in float32, the
adapter saved with the base model's name. What cannot work is refused before anything loads, naming what to do."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import jmlr_hf.scripts.train as train_script
from jmlr_hf.scripts.train import check_arguments, cli_main, make_parser

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "recipes" / "demo.yaml")
HAS_BITSANDBYTES = importlib.util.find_spec("bitsandbytes") is not None


def refused(capsys, *flags: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--config", DEMO, *flags], prog="train.py")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train.py: error: "), err
    return err


@pytest.fixture
def bitsandbytes_installed(monkeypatch):
    """The checks as they run where the `qlora` extra is installed (the import itself is not needed by them)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real(name)
    )


def test_without_bitsandbytes_4bit_is_refused_naming_the_extra_and_fsdp2(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name))
    monkeypatch.setattr(train_script, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    err = refused(capsys, "--load_in_4bit", "true", "--merge_adapter", "false")
    assert "pip install 'jmlr_hf[qlora]'" in err and "recipes/accelerate_configs/fsdp2.yaml" in err


@pytest.mark.usefixtures("bitsandbytes_installed")
@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--load_in_8bit", "true"], "use --load_in_4bit true (QLoRA)"),
        (["--load_in_4bit", "true", "--use_peft", "false", "--merge_adapter", "false"], "add --use_peft true"),
        (["--load_in_4bit", "true"], "add --merge_adapter false"),
        (["--bnb_4bit_quant_type", "fp4"], "--bnb_4bit_quant_type set(s) the 4-bit quantisation"),
    ],
    ids=["8bit", "no-lora", "merge", "bnb-flag-alone"],
)
def test_what_qlora_cannot_do_is_refused_at_parse_time(capsys, monkeypatch, flags, named):
    monkeypatch.setattr(train_script, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    assert named in refused(capsys, *flags)


@pytest.mark.usefixtures("bitsandbytes_installed")
def test_4bit_under_fsdp2_is_refused_before_loading(monkeypatch, capsys):
    # What check_sharding returns for an FSDP2 launch on GPUs (tested in tests/test_recipe_configs.py).
    monkeypatch.setattr(train_script, "check_sharding", lambda training_args: "FSDP2")
    monkeypatch.setattr(train_script, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    assert "one-process path" in refused(capsys, "--load_in_4bit", "true", "--merge_adapter", "false")


@pytest.mark.skipif(not HAS_BITSANDBYTES, reason="needs the qlora extra: pip install 'jmlr_hf[qlora]'")
def test_qlora_loads_the_generator_in_4bit_trains_and_saves_a_full_precision_loadable_adapter(
    tmp_path, generator_tokenizer, retriever_tokenizer
):
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM
    from trl import get_peft_config

    from jmlr_hf import JMLRForCausalLM
    from jmlr_hf.models import save_model
    from tests.testing_utils.training import make_args, make_trainer

    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    torch.manual_seed(0)
    generator = LlamaForCausalLM(LlamaConfig(vocab_size=len(generator_tokenizer), num_key_value_heads=2, **tiny))
    generator.save_pretrained(tmp_path / "generator")
    generator_tokenizer.save_pretrained(tmp_path / "generator")
    BertModel(BertConfig(vocab_size=retriever_tokenizer.vocab_size, **tiny)).save_pretrained(tmp_path / "retriever")
    retriever_tokenizer.save_pretrained(tmp_path / "retriever")
    flags = [
        "--model_name_or_path", str(tmp_path / "generator"), "--retriever_name_or_path", str(tmp_path / "retriever"),
        "--load_in_4bit", "true", "--use_peft", "true", "--merge_adapter", "false", "--dtype", "float32",
        "--lora_target_modules", "q_proj", "v_proj", "--max_length", "256", "--num_candidates", "4",
        "--num_sampled", "3", "--num_context_documents", "2",
    ]  # fmt: skip
    data, training, model_args, retrieval = make_parser().parse_args_and_config(args=["--config", DEMO, *flags])
    check_arguments(data, training, model_args, retrieval)
    model, tokenizer, retriever_tok = train_script.load_model(
        model_args, retrieval, training.max_length, device=torch.device("cpu")
    )
    assert type(model.generator.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert all(param.dtype == torch.float32 for param in model.retriever.parameters())

    # As on a CPU with AVX-512 BF16 (Intel Xeon with AMX), whichever CPU runs this: there bitsandbytes repacks a 4-bit
    # weight for an inference kernel without backward at the first no-gradient eval forward (every step's NLL pass),
    # and the adapters below the quantised layers would get no gradient. The trainer turns the repacking off.
    quantised = [m for m in model.generator.modules() if type(m).__name__ == "Linear4bit"]
    for module in quantised:
        module.support_avx512bf16_for_cpu = True
    args = make_args(tmp_path, max_steps=1)
    trainer = make_trainer(model, args, tokenizer, retriever_tok, peft_config=get_peft_config(model_args))
    assert not any(module.support_avx512bf16_for_cpu for module in quantised)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer.train()
    assert not any(getattr(module.weight.quant_state, "packing_format_for_cpu", False) for module in quantised)
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    # Every adapter learns, the first layer's (below every quantised layer) included.
    lora_b = [n for n in trained if "lora_B" in n]
    assert any("layers.0." in n for n in lora_b)
    assert all(not torch.equal(before[n], trained[n]) for n in lora_b), [
        n for n in lora_b if torch.equal(before[n], trained[n])
    ]

    save_model(model, tokenizer, retriever_tok, tmp_path / "final", generator_weights="adapter")
    reloaded = JMLRForCausalLM.from_pretrained(tmp_path / "final")
    inner = reloaded.generator.base_model.model.model.layers[0].self_attn.q_proj
    assert type(inner.base_layer).__name__ == "Linear"  # the base in full precision, the adapter on it
    state = reloaded.state_dict()
    for name, value in trained.items():
        assert torch.equal(state[name], value), name
