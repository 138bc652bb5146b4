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


@pytest.fixture
def tiny_experiment(tmp_path, tiny_checkpoints):
    """A factory of the settings of a tiny experiment on `tiny_checkpoints`: its output in `tmp_path / name`, a few
    questions, 4 candidates, short documents, 2 steps of batch 2, one seed; keyword arguments override any setting."""
    from experiments.jmlr_vs_rag import ExperimentArguments

    def make(name: str = "exp", **overrides) -> ExperimentArguments:
        settings = {
            "output_dir": str(tmp_path / name),
            "generator": tiny_checkpoints[0],
            "retriever": tiny_checkpoints[1],
            "seeds": [0],
            "train_limit": 4,
            "eval_limit": 2,
            "eval_answer_limit": 1,
            "max_steps": 2,
            "batch_size": 2,
            "num_candidates": 4,
            "num_sampled": 2,
            "num_context_documents": 1,
            "max_document_length": 32,
            "max_length": 256,
        }
        return ExperimentArguments(**(settings | overrides))

    return make
