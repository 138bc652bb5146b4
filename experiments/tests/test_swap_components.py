"""`experiments.swap_components`: a composite keeps one saved model's retriever and takes the other's generator."""

from __future__ import annotations

import json

import pytest
import torch

from experiments.swap_components import SWAP_RECORD, main
from jmlr_hf.models import JMLRForCausalLM, save_model


def _save(model: JMLRForCausalLM, path, generator_tokenizer, retriever_tokenizer) -> str:
    save_model(model, generator_tokenizer, retriever_tokenizer, path)
    return str(path)


def test_composite_has_one_models_retriever_and_the_others_generator(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    # Two models that differ in every weight (seeds) and in a retrieval setting, as a JMLR and a RAG-SFT model do.
    keep = make_tiny_model(seed=0, in_batch_negatives=True, train_document_encoder=False)
    take = make_tiny_model(seed=1)
    retriever_from = _save(keep, tmp_path / "jmlr", generator_tokenizer, retriever_tokenizer)
    generator_from = _save(take, tmp_path / "rag", generator_tokenizer, retriever_tokenizer)
    output = tmp_path / "composite"

    record = main(["--retriever_from", retriever_from, "--generator_from", generator_from, "--output", str(output)])

    composite = JMLRForCausalLM.from_pretrained(output)
    for name, value in composite.retriever.state_dict().items():
        assert torch.equal(value, keep.retriever.state_dict()[name]), name
    for name, value in composite.generator.state_dict().items():
        assert torch.equal(value, take.generator.state_dict()[name]), name
    # The weights really differed, so the checks above tell the two donors apart.
    assert not torch.equal(keep.generator.lm_head.weight, take.generator.lm_head.weight)
    # The retriever donor's config applies, and the record names what differed.
    assert composite.config.in_batch_negatives is True and composite.config.train_document_encoder is False
    assert record["config_differences"]["in_batch_negatives"] == [True, False]
    assert record["config_differences"]["train_document_encoder"] == [False, True]
    assert json.loads((output / SWAP_RECORD).read_text()) == record


def test_generators_of_different_architectures_are_refused(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    small = make_tiny_model(seed=0)
    other = make_tiny_model(seed=0)
    other.config.generator.num_hidden_layers = 1
    other.generator.model.layers = other.generator.model.layers[:1]
    retriever_from = _save(small, tmp_path / "a", generator_tokenizer, retriever_tokenizer)
    generator_from = _save(other, tmp_path / "b", generator_tokenizer, retriever_tokenizer)
    with pytest.raises(ValueError, match="different generators.*num_hidden_layers"):
        main(["--retriever_from", retriever_from, "--generator_from", generator_from, "--output", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()


def test_a_folder_that_is_not_a_saved_model_is_named(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    saved = _save(make_tiny_model(), tmp_path / "a", generator_tokenizer, retriever_tokenizer)
    with pytest.raises(FileNotFoundError, match="nowhere: not a saved JMLR model folder"):
        main(
            ["--retriever_from", saved, "--generator_from", str(tmp_path / "nowhere"), "--output", str(tmp_path / "c")]
        )
