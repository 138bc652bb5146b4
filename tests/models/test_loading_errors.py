"""Loading errors say what is wrong (issue 13, problem 4), and `from_components` takes the short names of the packaged
demo models, as the `jmlr` command does (problem 6).

An offline or unreachable Hub is reported as such, not as "not a saved JMLR model"; a mistyped local path as a path
that does not exist, not as the Hub client's "Repo id must be in the form ...".
"""

from __future__ import annotations

from types import SimpleNamespace

import huggingface_hub.constants
import huggingface_hub.utils._http
import pytest
import torch

from jmlr_hf import JMLRForCausalLM
from jmlr_hf.models import load_jmlr_checkpoint, save_model
from jmlr_hf.utils.demo_models import minilm_path, smollm2_path

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def saved_dir(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    return save_model(
        make_tiny_model(seed=1), generator_tokenizer, retriever_tokenizer, tmp_path / "outputs" / "final"
    )


def test_a_hub_id_while_offline_says_the_hub_is_unreachable(hub, fresh_hf_cache, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match=r"Hub is unreachable .*offline.* not in the local Hub cache") as caught:
        load_jmlr_checkpoint("jmlr-test/some-jmlr-model")
    assert "not a saved JMLR model" not in str(caught.value)


def test_a_hub_id_on_an_unreachable_endpoint_says_the_hub_is_unreachable(fresh_hf_cache, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    # The client retries a refused connection with back-off (23 s of sleeping); the retries are not what is tested.
    monkeypatch.setattr(huggingface_hub.utils._http, "time", SimpleNamespace(sleep=lambda seconds: None))
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}")
    with pytest.raises(OSError, match="Hub is unreachable"):
        load_jmlr_checkpoint("jmlr-test/some-jmlr-model")


def test_an_unknown_hub_id_says_there_is_no_such_repository(hub, fresh_hf_cache):
    with pytest.raises(OSError, match="There is no model repository jmlr-test/never-pushed on the Hub"):
        load_jmlr_checkpoint("jmlr-test/never-pushed")


def test_an_index_on_the_hub_while_offline_says_the_hub_is_unreachable(hub, fresh_hf_cache, saved_dir, monkeypatch):
    model = JMLRForCausalLM.from_pretrained(saved_dir)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match=r"Cannot download the index jmlr-test/an-index@abc: the Hub is unreachable"):
        model.load_index("jmlr-test/an-index", revision="abc")


@pytest.mark.parametrize("relative", ["outputs/finall", "./outputs/finall", "outputs/final/typo/deeper"])
def test_a_mistyped_local_path_says_it_does_not_exist(saved_dir, tmp_path, monkeypatch, relative):
    monkeypatch.chdir(tmp_path)  # `outputs/` exists here: `outputs/finall` is a typo, not a Hub id
    for load in (load_jmlr_checkpoint, JMLRForCausalLM.from_pretrained):
        with pytest.raises(FileNotFoundError, match=f"model folder '{relative}' does not exist") as caught:
            load(relative)
        assert "Repo id must be in the form" not in str(caught.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_jmlr_checkpoint(str(tmp_path / "elsewhere" / "final"))
    model, tokenizer, retriever_tokenizer = load_jmlr_checkpoint("outputs/final")  # the right path still loads
    assert model.config.model_type == "jmlr" and tokenizer is not None and retriever_tokenizer is not None


def test_a_folder_that_is_not_a_jmlr_model_says_so(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="model_type 'bert', not 'jmlr'"):
        load_jmlr_checkpoint(tmp_path / "bert")


def test_from_components_accepts_the_demo_model_short_names():
    model = JMLRForCausalLM.from_components(
        "smollm2-135m-instruct",
        "All-MiniLM-L6-v2",  # any case, as the CLI accepts it
        generator_kwargs={"dtype": torch.float32},
        num_candidates=4,
        num_sampled=2,
        num_context_documents=1,
    )
    assert model.config.generator.model_type == "llama" and model.config.retriever.model_type == "bert"
    assert model.config.generator._name_or_path == str(smollm2_path())
    assert model.config.retriever._name_or_path == str(minilm_path())
    assert model.config.num_candidates == 4
