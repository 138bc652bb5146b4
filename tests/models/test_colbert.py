"""ColBERT checkpoints by Hub id: the projection is loaded, and ColBERT's input conventions are applied.

A ColBERT checkpoint (`colbert-ir/colbertv2.0`) is a BERT encoder saved with a `bert.` prefix plus a `linear.weight`
projection (768 → 128). Its scores need the conventions it was trained with (Khattab & Zaharia 2020; Santhanam et
al. 2022): the query marker `[unused0]` and document marker `[unused1]` right after `[CLS]`; queries padded to their
full length with `[MASK]` tokens, which the encoder does not attend to but which are scored (query augmentation); and
punctuation left out of a document's tokens in MaxSim.
"""

from __future__ import annotations

import string

import pytest
import torch
from huggingface_hub import HfApi
from safetensors.torch import save_file
from transformers import BertModel, LlamaForCausalLM

from jmlr_hf import JMLRForCausalLM
from jmlr_hf.models import tokenize_for_retriever
from tests.testing_utils.models import tiny_config

QUERY_LENGTH = 12


@pytest.fixture
def colbert_repo(
    hub, fresh_hf_cache, tmp_path, generator_tokenizer, retriever_tokenizer
) -> tuple[str, dict[str, torch.Tensor]]:
    """A tiny checkpoint in ColBERT's layout, published on the stand-in Hub."""
    torch.manual_seed(0)
    config = tiny_config(generator_tokenizer, retriever_tokenizer).retriever
    config.architectures = ["HF_ColBERT"]
    bert = BertModel(config, add_pooling_layer=False)
    state = {f"bert.{key}": value.contiguous() for key, value in bert.state_dict().items()}
    state["linear.weight"] = torch.randn(16, 32)
    folder = tmp_path / "colbert"
    folder.mkdir()
    save_file(state, folder / "model.safetensors")
    config.save_pretrained(folder)
    retriever_tokenizer.save_pretrained(folder)
    repo_id = f"{hub.user}/colbert-tiny-{tmp_path.name[-6:]}"
    api = HfApi()
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=folder)
    return repo_id, state


@pytest.fixture
def generator_dir(tmp_path, generator_tokenizer, retriever_tokenizer):
    config = tiny_config(generator_tokenizer, retriever_tokenizer).generator
    LlamaForCausalLM(config).save_pretrained(tmp_path / "generator")
    return str(tmp_path / "generator")


def test_a_colbert_checkpoint_by_hub_id_loads_its_projection_and_conventions(
    colbert_repo, generator_dir, retriever_tokenizer
):
    repo_id, state = colbert_repo
    model = JMLRForCausalLM.from_components(generator_dir, repo_id, max_query_length=QUERY_LENGTH)
    assert model.config.projection_dim == 16
    torch.testing.assert_close(model.retriever.linear.weight, state["linear.weight"], atol=0, rtol=0)
    torch.testing.assert_close(
        model.retriever.encoder.embeddings.word_embeddings.weight,
        state["bert.embeddings.word_embeddings.weight"],
        atol=0,
        rtol=0,
    )
    assert model.config.colbert_conventions
    ids = model.config.colbert_token_ids
    assert ids["query_marker"] == retriever_tokenizer.convert_tokens_to_ids("[unused0]")
    assert ids["document_marker"] == retriever_tokenizer.convert_tokens_to_ids("[unused1]")
    assert ids["mask"] == retriever_tokenizer.mask_token_id and ids["pad"] == retriever_tokenizer.pad_token_id
    assert retriever_tokenizer.convert_tokens_to_ids(".") in ids["skiplist"]


def test_a_plain_encoder_gets_no_colbert_conventions(generator_dir, retriever_tokenizer):
    from jmlr_hf.utils.demo_models import minilm_path

    model = JMLRForCausalLM.from_components(generator_dir, str(minilm_path()))
    assert not model.config.colbert_conventions and model.config.projection_dim is None


def test_retriever_inputs_follow_colbert(colbert_repo, generator_dir, retriever_tokenizer):
    model = JMLRForCausalLM.from_components(generator_dir, colbert_repo[0], max_query_length=QUERY_LENGTH)
    tok = retriever_tokenizer
    query = tokenize_for_retriever(model.config, tok, ["Which organ makes insulin?"], is_query=True)
    words = tok.convert_ids_to_tokens(query["input_ids"][0])
    assert words[:2] == ["[CLS]", "[unused0]"] and len(words) == QUERY_LENGTH
    assert words[words.index("[SEP]") + 1 :] == ["[MASK]"] * (QUERY_LENGTH - words.index("[SEP]") - 1)
    assert query["attention_mask"][0].tolist() == [1] * (words.index("[SEP]") + 1) + [0] * words.count("[MASK]")
    docs = tokenize_for_retriever(model.config, tok, ["The pancreas makes insulin.", "Bones!"], is_query=False)
    assert tok.convert_ids_to_tokens(docs["input_ids"][0])[:2] == ["[CLS]", "[unused1]"]
    assert "[MASK]" not in tok.convert_ids_to_tokens(docs["input_ids"][1])


def hand_computed_colbert_score(model, tok, question: str, document: str) -> float:
    """Mean over the query's positions of the best cosine with a non-punctuation document token, built token by token
    from ColBERT's description (not from `tokenize_for_retriever`)."""
    encoder, linear = model.retriever.encoder, model.retriever.linear.weight
    q_tokens = ["[CLS]", "[unused0]", *tok.tokenize(question), "[SEP]"]
    q_tokens += ["[MASK]"] * (QUERY_LENGTH - len(q_tokens))
    q_ids = torch.tensor([tok.convert_tokens_to_ids(q_tokens)])
    q_attention = torch.tensor([[int(t != "[MASK]") for t in q_tokens]])
    d_tokens = ["[CLS]", "[unused1]", *tok.tokenize(document), "[SEP]"]
    d_ids = torch.tensor([tok.convert_tokens_to_ids(d_tokens)])
    with torch.no_grad():
        q = encoder(input_ids=q_ids, attention_mask=q_attention).last_hidden_state[0] @ linear.T
        d = encoder(input_ids=d_ids, attention_mask=torch.ones_like(d_ids)).last_hidden_state[0] @ linear.T
    q = q / q.norm(dim=-1, keepdim=True)
    d = d / d.norm(dim=-1, keepdim=True)
    kept = [i for i, t in enumerate(d_tokens) if t not in string.punctuation]
    best = [max(float(q[i] @ d[j]) for j in kept) for i in range(len(q_tokens))]
    return sum(best) / len(best)


def test_scores_match_a_hand_computed_colbert_maxsim(colbert_repo, generator_dir, retriever_tokenizer):
    model = JMLRForCausalLM.from_components(generator_dir, colbert_repo[0], max_query_length=QUERY_LENGTH).eval()
    question = "Which organ makes insulin?"
    documents = ["The pancreas makes insulin.", "Bones, teeth and calcium!"]
    with torch.no_grad():
        scores = model.score_documents([question], [documents], retriever_tokenizer)[0]
    expected = [hand_computed_colbert_score(model, retriever_tokenizer, question, doc) for doc in documents]
    torch.testing.assert_close(scores, torch.tensor(expected), atol=1e-5, rtol=0)
    # The conventions change the scores: the same weights without them score differently.
    model.config.colbert_conventions, model.retriever.colbert_ids = False, None
    with torch.no_grad():
        plain = model.score_documents([question], [documents], retriever_tokenizer)[0]
    assert not torch.allclose(plain, scores, atol=1e-3)
