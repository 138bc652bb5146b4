"""Saved models load as they were trained (issue 23): a model trained in bf16 reloads with its float32 retriever
(transformers 5 loads with `dtype="auto"` by default), and an adapter checkpoint pins the revision of its base model."""

from __future__ import annotations

import json
import uuid

import pytest
import torch
from huggingface_hub import HfApi
from peft import LoraConfig
from transformers import AutoModelForCausalLM

from jmlr_hf import JMLRForCausalLM
from jmlr_hf.models import apply_peft_to_generator, save_model

pytestmark = pytest.mark.usefixtures("single_thread")


def _bf16_trained(make_tiny_model) -> JMLRForCausalLM:
    """A model as bf16 training leaves it: bf16 generator, float32 retriever (`prepare_retriever_for_training`)."""
    model = make_tiny_model(0)
    model.generator.to(torch.bfloat16)
    return model


@pytest.mark.parametrize(
    "dtype", [None, "auto", torch.bfloat16, torch.float16], ids=["default", "auto", "bf16", "fp16"]
)
def test_a_bf16_trained_model_reloads_with_its_float32_retriever(tmp_path, make_tiny_model, dtype):
    """`save_pretrained` records `dtype: bfloat16` (the generator's); loading with transformers 5's default dtype
    ("auto") cast the float32 retriever to bf16: scores lost precision and `weights_fingerprint` no longer matched
    the model's own index."""
    model = _bf16_trained(make_tiny_model)
    model.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    kwargs = {} if dtype is None else {"dtype": dtype}
    loaded = JMLRForCausalLM.from_pretrained(tmp_path / "model", **kwargs)
    assert {param.dtype for param in loaded.retriever.parameters()} == {torch.float32}
    expected = torch.float16 if dtype is torch.float16 else torch.bfloat16
    assert {param.dtype for param in loaded.generator.parameters()} == {expected}
    assert loaded.retriever.weights_fingerprint() == model.retriever.weights_fingerprint()


def test_an_adapter_checkpoint_reloads_with_its_float32_retriever(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    model = make_tiny_model(0)
    model.generator.save_pretrained(tmp_path / "base")
    apply_peft_to_generator(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    save_model(
        model,
        generator_tokenizer,
        retriever_tokenizer,
        tmp_path / "model",
        generator_weights="adapter",
        base_model=str(tmp_path / "base"),
    )
    loaded = JMLRForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.bfloat16)
    assert {param.dtype for param in loaded.retriever.parameters()} == {torch.float32}
    assert loaded.retriever.weights_fingerprint() == model.retriever.weights_fingerprint()


def test_an_adapter_checkpoint_pins_its_base_models_revision(
    hub, fresh_hf_cache, tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """`base_revision=None` left the base unpinned: a later commit to the base repository would change what the
    adapter is applied to when the checkpoint is loaded. The adapter's base is pinned to the commit the generator
    was loaded at, or, for a generator that was not loaded from that repository, to its current commit."""
    base_id = f"jmlr-test/tiny-base-{uuid.uuid4().hex[:8]}"
    make_tiny_model(0).generator.save_pretrained(tmp_path / "base")
    HfApi().create_repo(base_id)
    loaded_at = HfApi().upload_folder(repo_id=base_id, folder_path=tmp_path / "base").oid
    model = make_tiny_model(0)
    model.set_generator(AutoModelForCausalLM.from_pretrained(base_id))
    apply_peft_to_generator(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    later = HfApi().upload_file(path_or_fileobj=b"later", path_in_repo="NOTES.md", repo_id=base_id).oid
    assert later != loaded_at
    save_model(model, generator_tokenizer, retriever_tokenizer, tmp_path / "model", generator_weights="adapter")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert (config["generator_base_model"], config["generator_base_revision"]) == (base_id, loaded_at)

    other = make_tiny_model(0)  # a generator built here, published against the base's id
    apply_peft_to_generator(other, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    save_model(
        other,
        generator_tokenizer,
        retriever_tokenizer,
        tmp_path / "other",
        generator_weights="adapter",
        base_model=base_id,
    )
    config = json.loads((tmp_path / "other" / "config.json").read_text())
    assert (config["generator_base_model"], config["generator_base_revision"]) == (base_id, later)
    loaded = JMLRForCausalLM.from_pretrained(tmp_path / "model")  # the pinned base loads
    assert loaded.config.generator_base_revision == loaded_at

    # An explicit revision is kept as given.
    save_model(
        model,
        generator_tokenizer,
        retriever_tokenizer,
        tmp_path / "explicit",
        generator_weights="adapter",
        base_revision="main",
    )
    assert json.loads((tmp_path / "explicit" / "config.json").read_text())["generator_base_revision"] == "main"
