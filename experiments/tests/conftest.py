"""Fixtures shared by the experiments' tests."""

from __future__ import annotations

import pytest
import torch
from transformers import BertModel, LlamaForCausalLM

from tests.testing_utils.models import tiny_config


@pytest.fixture
def tiny_checkpoints(tmp_path, generator_tokenizer, retriever_tokenizer):
    """A tiny random Llama and BERT saved as the experiment's base models."""
    config = tiny_config(generator_tokenizer, retriever_tokenizer)
    torch.manual_seed(0)
    LlamaForCausalLM(config.generator).save_pretrained(tmp_path / "llama")
    generator_tokenizer.save_pretrained(tmp_path / "llama")
    BertModel(config.retriever).save_pretrained(tmp_path / "bert")
    retriever_tokenizer.save_pretrained(tmp_path / "bert")
    return str(tmp_path / "llama"), str(tmp_path / "bert")
