"""Pinning tests of jmlr_hf.configuration_jmlr and jmlr_hf.modeling_jmlr on tiny random models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

import jmlr_hf.models.modeling_jmlr as modeling_module
from jmlr_hf import JMLRConfig, JMLRForCausalLM
from jmlr_hf.models import (
    build_prompt,
    build_target,
    chunked_token_nll,
    kept_logits,
    maxsim,
    pack_sequences,
    tokenize_for_lm,
)
from jmlr_hf.trainer import split_in_batch_scores
from jmlr_hf.utils.demo_models import minilm_path
from tests.testing_utils.models import TOY_ROWS, tiny_config

QUESTIONS = [TOY_ROWS[0]["question"], TOY_ROWS[1]["question"]]
DOCUMENTS = [TOY_ROWS[0]["candidates"], TOY_ROWS[1]["candidates"]]


pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------------


def test_config_round_trip(tmp_path, generator_tokenizer, retriever_tokenizer):
    config = tiny_config(
        generator_tokenizer,
        retriever_tokenizer,
        num_candidates=7,
        num_sampled=5,
        num_context_documents=3,
        retrieval_temperature=0.1,
        lm_temperature=0.5,
        retrieval_loss_weight=0.25,
        retrieval_loss="lsr",
        in_batch_negatives=True,
        in_batch_negative_mass=0.01,
        scoring="dense",
        projection_dim=16,
        document_template="<{index}> {document}\n",
        index_repo_id="org/index",
    )
    config.save_pretrained(tmp_path)
    for loaded in (JMLRConfig.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path)):
        assert type(loaded) is JMLRConfig
        assert isinstance(loaded.generator, LlamaConfig)
        assert isinstance(loaded.retriever, BertConfig)
        assert loaded.generator.hidden_size == 32 and loaded.generator.num_key_value_heads == 2
        assert loaded.generator.vocab_size == len(generator_tokenizer)
        assert loaded.retriever.hidden_size == 32 and loaded.retriever.vocab_size == retriever_tokenizer.vocab_size
        for name in (
            "num_candidates",
            "num_sampled",
            "num_context_documents",
            "retrieval_temperature",
            "lm_temperature",
            "retrieval_loss_weight",
            "retrieval_loss",
            "in_batch_negatives",
            "in_batch_negative_mass",
            "scoring",
            "projection_dim",
            "document_template",
            "prompt_template",
            "index_repo_id",
            "max_length",
        ):
            assert getattr(loaded, name) == getattr(config, name), name
        assert loaded.num_candidates == 7 and loaded.retrieval_loss == "lsr" and loaded.projection_dim == 16
        assert loaded.generator.to_dict() == config.generator.to_dict()
        assert loaded.retriever.to_dict() == config.retriever.to_dict()


def test_config_defaults_are_the_paper_settings():
    config = JMLRConfig()
    assert (config.num_candidates, config.num_sampled, config.num_context_documents) == (20, 10, 5)
    assert config.retrieval_loss == "llm_rank" and config.scoring == "maxsim"
    assert config.generator.model_type == "llama" and config.retriever.model_type == "bert"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_candidates": 4, "num_sampled": 5}, "num_sampled"),
        ({"num_candidates": 4, "num_sampled": 2, "num_context_documents": 5}, "num_context_documents"),
        ({"num_candidates": 0}, "num_candidates"),
        ({"num_sampled": 0}, "num_sampled"),
        ({"retrieval_loss": "ranknet"}, "retrieval_loss"),
        ({"scoring": "cosine"}, "scoring"),
        ({"retrieval_temperature": 0.0}, "retrieval_temperature"),
        ({"lm_temperature": -1.0}, "lm_temperature"),
        ({"retrieval_temperature": 1e-30}, r"retrieval_temperature must be in \[0.0001, 10000\]"),
        ({"lm_temperature": 1e9}, "lm_temperature must be in"),
        ({"num_sampled": 1}, "num_sampled=1 with retrieval_loss='llm_rank'"),
        ({"num_sampled": 1, "retrieval_loss": "lsr"}, "one document has nothing to be compared with"),
        ({"in_batch_negative_mass": 1.0}, "in_batch_negative_mass"),
        ({"in_batch_negative_mass": 0.0}, "in_batch_negative_mass"),
        ({"num_context_documents": -1}, "num_context_documents"),
        ({"retrieval_loss_weight": -0.5}, "retrieval_loss_weight"),
        ({"num_context_documents": 0}, "num_context_documents=0"),  # closed book needs λ = 0
        ({"llm_rank_min_nll_gap": -0.1}, "llm_rank_min_nll_gap must be a finite number >= 0"),
        ({"llm_rank_min_nll_gap": float("nan")}, "llm_rank_min_nll_gap must be a finite number >= 0"),
        ({"llm_rank_pair_weighting": "lambda"}, "llm_rank_pair_weighting must be one of"),
        ({"retrieval_loss": "lsr", "llm_rank_min_nll_gap": 0.1}, "shape the pairs of llm_rank, not lsr"),
        ({"retrieval_loss": "ppl_distill", "llm_rank_pair_weighting": "nll_gap"}, "set lm_temperature instead"),
    ],
)
def test_config_invalid_knobs_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        JMLRConfig(**kwargs)


def test_one_sampled_document_is_fine_where_something_else_trains_the_retriever():
    JMLRConfig(num_sampled=1, retrieval_loss="lsr", in_batch_negatives=True)  # the other questions' documents
    JMLRConfig(num_sampled=1, retrieval_loss="llm_rank", in_batch_negatives=True)  # own document above theirs
    JMLRConfig(num_sampled=1, num_context_documents=1, retrieval_loss_weight=0.0)  # nothing trains it: RAG-SFT


# ---------------------------------------------------------------------------------------------------------------------
# Prompts and tokenisation
# ---------------------------------------------------------------------------------------------------------------------


def test_build_prompt_and_target_multiple_choice():
    config = JMLRConfig()
    prompt = build_prompt(config, "Which organ makes insulin?", ["Doc one.", "Doc two."], ["Liver", "Pancreas"])
    assert prompt == (
        "Document [1]: Doc one.\n"
        "Document [2]: Doc two.\n"
        "Question: Which organ makes insulin?\n"
        "A. Liver\n"
        "B. Pancreas\n"
        "Answer:"
    )
    options = ["Liver", "Pancreas", "Kidney"]
    assert build_target(config, "B", "  Beta cells secrete it. ", options) == "B: Pancreas. Beta cells secrete it."
    assert build_target(config, "C", None, options) == "C: Kidney"
    assert build_target(config, "A", "", options) == "A: Liver"


def test_build_prompt_and_target_open_question():
    config = JMLRConfig()
    assert build_prompt(config, "Is it?") == "Question: Is it?\nAnswer:"
    assert build_prompt(config, "Is it?", ["Yes it is."], []) == "Document [1]: Yes it is.\nQuestion: Is it?\nAnswer:"
    assert build_target(config, "yes") == "yes"
    assert build_target(config, "yes", "Because.") == "yes. Because."
    custom = JMLRConfig(target_template="{rationale} So: {answer}", option_template="({letter}) {text}; ")
    assert build_target(custom, "no", "It is not.") == "It is not. So: no"
    assert build_prompt(custom, "Q?", [], ["x", "y"]) == "Question: Q?\n(A) x; (B) y; Answer:"


@pytest.mark.parametrize("answer", ["D", "E", "b", "", "AB", "Pancreas"])
def test_build_target_invalid_letter_raises(answer):
    with pytest.raises(ValueError, match="option letters ABC"):
        build_target(JMLRConfig(), answer, None, ["Liver", "Pancreas", "Kidney"])


def _labelled_span(labels_row: torch.Tensor) -> torch.Tensor:
    return labels_row[labels_row != -100]


def test_tokenize_for_lm_labels(generator_tokenizer):
    tok = generator_tokenizer
    prompts = ["Question: Does aspirin help?\nAnswer:", "Document [1]: Beta cells.\nQuestion: Which organ?\nAnswer:"]
    targets = ["yes. It lowers the risk.", "B: Pancreas"]
    batch = tokenize_for_lm(tok, prompts, targets, max_length=256)
    eos_text = tok.eos_token
    lengths = []
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
        prompt_ids = tok(prompt)["input_ids"]
        target_ids = tok(" " + target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        n_prompt, n = len(prompt_ids), len(prompt_ids) + len(target_ids)
        lengths.append(n)
        ids, mask, labels = batch["input_ids"][i], batch["attention_mask"][i], batch["labels"][i]
        assert ids[:n].tolist() == prompt_ids + target_ids
        assert mask[:n].tolist() == [1] * n and mask[n:].tolist() == [0] * (len(mask) - n)
        # -100 on every prompt and padding token; equal to input_ids exactly on the answer + EOS.
        assert labels[:n_prompt].tolist() == [-100] * n_prompt
        assert labels[n:].tolist() == [-100] * (len(labels) - n)
        assert torch.equal(labels[n_prompt:n], ids[n_prompt:n])
        assert tok.decode(_labelled_span(labels)) == " " + target + eos_text
        assert tok.decode(ids[:n_prompt]) == prompt
        # Padding (which is the EOS token here) is never labelled: exactly one labelled EOS.
        assert (ids[n:] == tok.pad_token_id).all()
        assert (_labelled_span(labels) == tok.eos_token_id).sum() == 1
    assert batch["input_ids"].shape == (2, max(lengths))
    assert lengths[0] != lengths[1]  # one row is padded


def test_tokenize_for_lm_pad_to_multiple_of(generator_tokenizer):
    batch = tokenize_for_lm(generator_tokenizer, ["Question: Q?\nAnswer:"], ["no"], 256, pad_to_multiple_of=16)
    assert batch["input_ids"].shape == (1, 16)
    assert int(batch["attention_mask"].sum()) < 16


def test_tokenize_for_lm_left_truncation_keeps_answer(generator_tokenizer):
    tok = generator_tokenizer
    prompt = "Document [1]: " + "a long passage about the liver " * 20 + "\nQuestion: Which organ?\nAnswer:"
    target = "B: Pancreas. Beta cells secrete insulin."
    prompt_ids = tok(prompt)["input_ids"]
    target_ids = tok(" " + target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    max_length = len(target_ids) + 5
    batch = tokenize_for_lm(tok, [prompt], [target], max_length=max_length)
    assert batch["input_ids"].shape == (1, max_length)
    assert batch["attention_mask"].sum().item() == max_length
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    # The prompt lost tokens from the left: its last 5 tokens remain, then the whole answer.
    assert ids.tolist() == prompt_ids[-5:] + target_ids
    assert labels[:5].tolist() == [-100] * 5
    assert tok.decode(_labelled_span(labels)) == " " + target + tok.eos_token
    assert tok.decode(ids[:5]).endswith("Answer:")
    with pytest.raises(ValueError, match="max_length"):
        tokenize_for_lm(tok, [prompt], [target], max_length=len(target_ids))


# ---------------------------------------------------------------------------------------------------------------------
# Retriever scoring
# ---------------------------------------------------------------------------------------------------------------------


def test_maxsim_hand_checked():
    # Query tokens q1 = [1, 0], q2 = [0, 1]; document tokens d1 = [1, 0], d2 = [0.6, 0.8], d3 = [0, 1] (padding).
    query = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    docs = torch.tensor([[[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], [[-1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]]])
    qmask = torch.tensor([[1, 1]])
    dmask = torch.tensor([[[1, 1, 0], [1, 0, 0]]])
    # Doc 1: q1 best = max(1, 0.6) = 1; q2 best = max(0, 0.8) = 0.8 (the padded d3 = q2 would give 1): mean 0.9.
    # Doc 2 (one token [-1, 0]): q1 -> -1, q2 -> 0: mean -0.5 (padding zeros must not win with 0).
    torch.testing.assert_close(maxsim(query, qmask, docs, dmask), torch.tensor([[0.9, -0.5]]))
    # Without d1: q1 best 0.6, q2 best 0.8 -> 0.7.
    torch.testing.assert_close(
        maxsim(query, qmask, docs, torch.tensor([[[0, 1, 0], [1, 0, 0]]])), torch.tensor([[0.7, -0.5]])
    )
    # Padded query token q2: the mean is over q1 only -> [1, -1].
    torch.testing.assert_close(maxsim(query, torch.tensor([[1, 0]]), docs, dmask), torch.tensor([[1.0, -1.0]]))


def _retriever_inputs(tokenizer, config, questions=QUESTIONS, documents=DOCUMENTS):
    query = tokenizer(
        questions, max_length=config.max_query_length, truncation=True, padding=True, return_tensors="pt"
    )
    docs = tokenizer(
        [d for row in documents for d in row],
        max_length=config.max_document_length,
        truncation=True,
        padding=True,
        return_tensors="pt",
    )
    return query["input_ids"], query["attention_mask"], docs["input_ids"], docs["attention_mask"]


@pytest.mark.parametrize("projection_dim", [None, 8])
@pytest.mark.parametrize("scoring", ["dense", "maxsim"])
def test_scores_in_range_and_all_pairs_blocks(make_tiny_model, retriever_tokenizer, scoring, projection_dim):
    model = make_tiny_model(0, scoring=scoring, projection_dim=projection_dim).eval()
    num = model.config.num_candidates
    q, qm, d, dm = _retriever_inputs(retriever_tokenizer, model.config)
    with torch.no_grad():
        scores = model.retriever(q, qm, d, dm)
        all_pairs = model.retriever(q, qm, d, dm, all_pairs=True)
        via_docs = model.score_documents(QUESTIONS, DOCUMENTS, retriever_tokenizer)
        via_forward = model(query_input_ids=q, query_attention_mask=qm, doc_input_ids=d, doc_attention_mask=dm)
    assert scores.shape == (2, num) and all_pairs.shape == (2, 2 * num)
    assert via_forward.logits is None
    torch.testing.assert_close(via_forward.retrieval_scores, scores, atol=0, rtol=0)
    torch.testing.assert_close(via_docs, scores, atol=1e-6, rtol=0)
    for s in (scores, all_pairs):
        assert (s >= -1 - 1e-6).all() and (s <= 1 + 1e-6).all()
    assert scores.std() > 0  # not a constant
    own, negatives = split_in_batch_scores(all_pairs, num)
    torch.testing.assert_close(own, scores, atol=1e-6, rtol=0)
    torch.testing.assert_close(all_pairs[0, :num], scores[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(all_pairs[1, num:], scores[1], atol=1e-6, rtol=0)
    # Question 0's negatives are exactly its scores against question 1's candidates, and vice versa.
    with torch.no_grad():
        cross = model.score_documents(QUESTIONS, [DOCUMENTS[1], DOCUMENTS[0]], retriever_tokenizer)
    torch.testing.assert_close(negatives, cross, atol=1e-5, rtol=0)
    if scoring == "dense":
        with torch.no_grad():
            qv = model.retriever.encode_dense(q, qm)
            dv = model.retriever.encode_dense(d, dm).view(2, num, -1)
        assert qv.shape == (2, projection_dim or model.config.retriever.hidden_size)
        torch.testing.assert_close(scores, torch.einsum("bd,bnd->bn", qv, dv), atol=1e-6, rtol=0)
        torch.testing.assert_close(qv.norm(dim=-1), torch.ones(2))


def test_score_documents_requires_equal_counts(make_tiny_model, retriever_tokenizer):
    model = make_tiny_model(0)
    with pytest.raises(ValueError, match="same number of documents"):
        model.score_documents(QUESTIONS, [DOCUMENTS[0], DOCUMENTS[1][:3]], retriever_tokenizer)


# ---------------------------------------------------------------------------------------------------------------------
# answer_nll
# ---------------------------------------------------------------------------------------------------------------------


def test_answer_nll_batched_equals_single(make_tiny_model, generator_tokenizer):
    model = make_tiny_model(3).eval()
    tok = generator_tokenizer
    prompts = [
        "Question: Is it?\nAnswer:",
        "Document [1]: The pancreas makes insulin.\nQuestion: Which organ makes insulin?\nA. Liver\nB. Pancreas\n"
        "Answer:",
        "Q:",
        "Document [1]: Bones contain calcium and phosphate.\nQuestion: What do bones contain?\nAnswer:",
    ]
    targets = ["yes", "B: Pancreas. Beta cells secrete insulin.", "no. Short.", "Calcium"]
    batch = tokenize_for_lm(tok, prompts, targets, max_length=256)
    assert len(set(batch["attention_mask"].sum(-1).tolist())) == 4  # all lengths differ: real right padding
    batched = model.answer_nll(batch["input_ids"], batch["attention_mask"], batch["labels"])
    micro = model.answer_nll(batch["input_ids"], batch["attention_mask"], batch["labels"], micro_batch_size=2)
    assert batched.shape == (4,) and not batched.requires_grad
    single, manual = [], []
    for prompt, target in zip(prompts, targets):
        one = tokenize_for_lm(tok, [prompt], [target], max_length=256)
        single.append(model.answer_nll(one["input_ids"], one["attention_mask"], one["labels"]).item())
        # Manual cross-entropy: mean over the labelled positions t of -log p(x_t | x_<t).
        with torch.no_grad():
            log_probs = F.log_softmax(model(input_ids=one["input_ids"]).logits[0].double(), -1)
        ids, labels = one["input_ids"][0], one["labels"][0]
        positions = (labels != -100).nonzero().flatten().tolist()
        manual.append(sum(-log_probs[p - 1, ids[p]].item() for p in positions) / len(positions))
    torch.testing.assert_close(batched, torch.tensor(single), atol=1e-5, rtol=0)
    torch.testing.assert_close(micro, torch.tensor(single), atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.double(), torch.tensor(manual, dtype=torch.float64), atol=1e-5, rtol=0)
    assert min(single) > 5.0  # a random model over a 49k vocabulary: roughly ln(49152) = 10.8


def test_answer_nll_computes_logits_only_at_the_answer_positions(make_tiny_model, generator_tokenizer):
    """The prompt positions need no full-vocabulary logits: the LM head sees exactly the positions that predict an
    answer token, padded or packed."""
    model = make_tiny_model(3).eval()
    prompts = ["Document [1]: " + "The pancreas makes insulin. " * 20 + "\nQuestion: Which organ?\nAnswer:"] * 2
    batch = tokenize_for_lm(generator_tokenizer, prompts, ["Pancreas", "The pancreas, of course"], max_length=512)
    rows = []
    handle = model.generator.lm_head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    try:
        model.answer_nll(batch["input_ids"], batch["attention_mask"], batch["labels"])
        model.answer_nll(batch["input_ids"], batch["attention_mask"], batch["labels"], packed=True)
    finally:
        handle.remove()
    answer_tokens = int((batch["labels"] != -100).sum())
    assert rows == [answer_tokens, answer_tokens] and answer_tokens < batch["attention_mask"].sum() / 8


def test_packed_answer_nll_equals_the_padded_and_the_reference_nlls(make_tiny_model, generator_tokenizer):
    """Padding-free (packed) NLLs equal the padded batch's and the reference's (one sequence per forward, logits at
    every position, float32 log-softmax), in any micro-batching; and a packed row really is block-diagonal: with the
    packing undone (position ids running on), the NLLs change."""
    model = make_tiny_model(4).eval()
    prompts = [
        "Question: Is it?\nAnswer:",
        "Document [1]: The pancreas makes insulin.\nQuestion: Which organ makes insulin?\nAnswer:",
        "Document [1]: Bones contain calcium and phosphate. " * 3 + "\nQuestion: What do bones contain?\nAnswer:",
    ]
    targets = ["yes", "B: Pancreas. Beta cells secrete insulin.", "Calcium"]
    batch = tokenize_for_lm(generator_tokenizer, prompts, targets, max_length=256)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    reference = []
    with torch.no_grad():
        for i in range(3):
            length = int(mask[i].sum())
            log_probs = model(input_ids=ids[i : i + 1, :length]).logits[0, :-1].float().log_softmax(-1)
            target = labels[i, 1:length]
            valid = target != -100
            reference.append(-log_probs[valid].gather(-1, target[valid, None]).mean().item())
    reference = torch.tensor(reference)
    padded = model.answer_nll(ids, mask, labels)
    lengths = mask.sum(-1).tolist()
    for micro in (None, 2, 1):
        for cap in (None, 1, max(lengths[:2]) + min(lengths)):
            packed = model.answer_nll(ids, mask, labels, micro_batch_size=micro, packed=True, max_packed_tokens=cap)
            torch.testing.assert_close(packed, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded, reference, atol=1e-5, rtol=0)

    pack = pack_sequences(ids, mask, labels)
    assert pack["input_ids"].shape == (1, int(mask.sum())) and pack["targets"].numel() == int((labels != -100).sum())
    running = torch.arange(pack["input_ids"].shape[1])[None]
    with torch.no_grad():
        leaky = model(input_ids=pack["input_ids"], position_ids=running, logits_to_keep=pack["keep"]).logits
    leaky_nll = F.cross_entropy(kept_logits(leaky, pack["keep"]).float(), pack["targets"], reduction="none")
    last = int((labels[2] != -100).sum())
    assert abs(leaky_nll[-last:].mean().item() - reference[2].item()) > 1e-3


def test_documents_encoded_by_length_give_the_same_scores_and_gradients(make_tiny_model, retriever_tokenizer):
    """Documents of very different lengths are encoded in groups with their padding trimmed: same scores, same
    gradients as one padded forward."""
    from jmlr_hf.models import length_groups

    model = make_tiny_model(0)
    retriever = model.retriever.eval()
    documents = [("The pancreas makes insulin. " * n).strip() for n in (1, 12, 2, 9, 1, 11, 3, 10, 2, 12)]
    lengths = [len(retriever_tokenizer(d)["input_ids"]) for d in documents]
    assert len(length_groups(lengths, min_rows=2)) > 1
    query = retriever_tokenizer(["Which organ makes insulin?"] * 2, return_tensors="pt", padding=True)
    docs = retriever_tokenizer(documents, return_tensors="pt", padding=True)

    def scores_and_grads(grouped: bool):
        retriever.zero_grad()
        if not grouped:
            original = modeling_module.length_groups
            modeling_module.length_groups = lambda lengths: [list(range(len(lengths)))]
        try:
            scores = retriever(query["input_ids"], query["attention_mask"], docs["input_ids"], docs["attention_mask"])
        finally:
            if not grouped:
                modeling_module.length_groups = original
        scores.sum().backward()
        grads = [p.grad.clone() for p in retriever.parameters() if p.grad is not None]
        return scores.detach(), grads

    calls = []
    handle = retriever.encoder.register_forward_pre_hook(lambda m, a, k: calls.append(1), with_kwargs=True)
    grouped_scores, grouped_grads = scores_and_grads(True)
    handle.remove()
    plain_scores, plain_grads = scores_and_grads(False)
    assert len(calls) > 2  # the query, then more than one group of documents
    torch.testing.assert_close(grouped_scores, plain_scores, atol=1e-5, rtol=0)
    for a, b in zip(grouped_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_chunked_token_nll_equals_one_cross_entropy():
    logits, targets = torch.randn(37, 11, dtype=torch.bfloat16), torch.randint(0, 11, (37,))
    expected = F.cross_entropy(logits.float(), targets, reduction="none")
    torch.testing.assert_close(chunked_token_nll(logits, targets, chunk_size=8), expected)


# ---------------------------------------------------------------------------------------------------------------------
# Save / load, generation, construction from components
# ---------------------------------------------------------------------------------------------------------------------

SUBPROCESS_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    model_dir, tokenizer_dir, out_path = sys.argv[1:4]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    input_ids = torch.tensor([[1, 5, 42, 300, 7, 9000, 12]])
    results = {}
    for name, auto_cls in (("auto_model", AutoModel), ("causal_lm", AutoModelForCausalLM)):
        model = auto_cls.from_pretrained(model_dir, trust_remote_code=True)
        assert model.__class__.__name__ == "JMLRForCausalLM", type(model)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert not model.training
        with torch.no_grad():
            logits = model(input_ids=input_ids).logits
            scores = model.score_documents(
                ["Which organ makes insulin?", "Does aspirin help?"],
                [["The pancreas makes insulin.", "Bones contain calcium."], ["Aspirin helps.", "The liver."]],
                tokenizer,
            )
        results[name] = {"logits": logits, "scores": scores}
    assert "jmlr_hf" not in sys.modules, sorted(m for m in sys.modules if m.startswith("jmlr"))
    torch.save(results, out_path)
    print("OK")
    """
)


def test_save_and_load_through_remote_code(tmp_path, generator_tokenizer, retriever_tokenizer):
    torch.manual_seed(0)
    model = JMLRForCausalLM(tiny_config(generator_tokenizer, retriever_tokenizer, projection_dim=8)).eval()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    assert (model_dir / "modeling_jmlr.py").is_file() and (model_dir / "configuration_jmlr.py").is_file()
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "jmlr"
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}
    assert config["auto_map"]["AutoConfig"] == "configuration_jmlr.JMLRConfig"
    assert config["auto_map"]["AutoModel"] == "modeling_jmlr.JMLRForCausalLM"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_jmlr.JMLRForCausalLM"

    (tmp_path / "script.py").write_text(SUBPROCESS_SCRIPT)
    out_path = tmp_path / "out.pt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "script.py"), str(model_dir), str(minilm_path()), str(out_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "OK" in proc.stdout
    assert any((tmp_path / "modules").rglob("modeling_jmlr.py"))  # the code ran from the modules cache

    input_ids = torch.tensor([[1, 5, 42, 300, 7, 9000, 12]])
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
        scores = model.score_documents(
            ["Which organ makes insulin?", "Does aspirin help?"],
            [["The pancreas makes insulin.", "Bones contain calcium."], ["Aspirin helps.", "The liver."]],
            retriever_tokenizer,
        )
    results = torch.load(out_path)
    for name in ("auto_model", "causal_lm"):
        assert torch.equal(results[name]["logits"], logits), name
        assert torch.equal(results[name]["scores"], scores), name


def test_save_and_load_in_process(tmp_path, make_tiny_model):
    model = make_tiny_model(1, projection_dim=8).eval()
    model.save_pretrained(tmp_path)
    loaded = JMLRForCausalLM.from_pretrained(tmp_path).eval()
    original, restored = model.state_dict(), loaded.state_dict()
    assert set(original) == set(restored)
    for key, value in original.items():
        assert torch.equal(value, restored[key]), key
    # The generator's tied embeddings stay tied after loading.
    assert loaded.generator.lm_head.weight.data_ptr() == loaded.generator.model.embed_tokens.weight.data_ptr()


def test_generate_greedy(make_tiny_model, generator_tokenizer):
    model = make_tiny_model(2).eval()
    input_ids = torch.tensor([generator_tokenizer("Question: Which organ makes insulin?\nAnswer:")["input_ids"]])
    out = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=4,
        min_new_tokens=4,
        do_sample=False,
        pad_token_id=generator_tokenizer.pad_token_id,
    )
    assert out.shape == (1, input_ids.shape[1] + 4)
    assert torch.equal(out[:, : input_ids.shape[1]], input_ids)
    # Greedy = the argmax of the model's own logits, token by token (EOS suppressed by min_new_tokens).
    ids = input_ids
    with torch.no_grad():
        for _ in range(4):
            logits = model(input_ids=ids).logits[:, -1]
            logits[:, generator_tokenizer.eos_token_id] = -float("inf")
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ids)


def _tiny_llama_and_bert(tmp_path):
    torch.manual_seed(11)
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=128,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    bert = BertModel(
        BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    llama.save_pretrained(tmp_path / "llama")
    bert.save_pretrained(tmp_path / "bert")
    return llama, bert


def _assert_state_equal(module, reference, dropped: tuple[str, ...] = ()):
    got, expected = module.state_dict(), reference.state_dict()
    expected = {k: v for k, v in expected.items() if not k.startswith(dropped)}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_from_components(tmp_path):
    llama, bert = _tiny_llama_and_bert(tmp_path)
    model = JMLRForCausalLM.from_components(
        str(tmp_path / "llama"), str(tmp_path / "bert"), num_candidates=6, num_sampled=4, num_context_documents=2
    )
    assert model.config.projection_dim is None and model.retriever.linear is None
    assert (model.config.num_candidates, model.config.num_sampled) == (6, 4)
    assert model.config.generator.hidden_size == 16 and model.config.retriever.vocab_size == 100
    _assert_state_equal(model.generator, llama)
    _assert_state_equal(model.retriever.encoder, bert, dropped=("pooler.",))  # unused head, dropped


def test_from_components_colbert_projection(tmp_path):
    llama, bert = _tiny_llama_and_bert(tmp_path)
    colbert_dir = tmp_path / "colbert"
    bert.save_pretrained(colbert_dir)
    state = load_file(colbert_dir / "model.safetensors")
    linear = torch.randn(16, bert.config.hidden_size, generator=torch.Generator().manual_seed(5))
    state["linear.weight"] = linear
    save_file(state, colbert_dir / "model.safetensors", metadata={"format": "pt"})

    model = JMLRForCausalLM.from_components(str(tmp_path / "llama"), str(colbert_dir))
    assert model.config.projection_dim == 16
    assert torch.equal(model.retriever.linear.weight, linear)
    _assert_state_equal(model.generator, llama)
    _assert_state_equal(model.retriever.encoder, bert, dropped=("pooler.",))  # unused head, dropped
    # The projection is used: token embeddings are 16-dimensional.
    tokens = model.retriever.encode_tokens(torch.tensor([[1, 2, 3]]), torch.tensor([[1, 1, 1]]))
    assert tokens.shape == (1, 3, 16)
    with pytest.raises(ValueError, match="projection_dim"):
        JMLRForCausalLM.from_components(str(tmp_path / "llama"), str(colbert_dir), projection_dim=8)


def test_weights_fingerprint(make_tiny_model):
    model = make_tiny_model(0)
    first = model.retriever.weights_fingerprint()
    assert len(first) == 64 and first == model.retriever.weights_fingerprint()
    assert make_tiny_model(0).retriever.weights_fingerprint() == first  # same weights, same fingerprint
    assert make_tiny_model(1).retriever.weights_fingerprint() != first
    with torch.no_grad():
        model.generator.model.embed_tokens.weight[0, 0] += 1.0  # not the retriever's
    assert model.retriever.weights_fingerprint() == first
    weight = model.retriever.encoder.encoder.layer[1].attention.self.query.weight
    with torch.no_grad():
        weight[3, 4] += 1e-3
    changed = model.retriever.weights_fingerprint()
    assert changed != first
    with torch.no_grad():
        weight.copy_(make_tiny_model(0).retriever.encoder.encoder.layer[1].attention.self.query.weight)
    assert model.retriever.weights_fingerprint() == first


def test_packed_rows_hold_whole_sequences_up_to_the_token_cap(make_tiny_model, generator_tokenizer):
    """`packed_groups` cuts consecutive sequences into rows of at most `max_tokens` (a longer one alone), and
    `answer_nll` sends exactly those rows through the model: each forward's row is one group, none over the cap
    unless it holds a single sequence."""
    from jmlr_hf.models.modeling_jmlr import packed_groups

    assert packed_groups([100, 200, 300, 50], None) == [slice(0, 4)]
    assert packed_groups([100, 200, 300, 50], 300) == [slice(0, 2), slice(2, 3), slice(3, 4)]
    assert packed_groups([100, 200, 300, 50], 350) == [slice(0, 2), slice(2, 4)]
    assert packed_groups([500, 10, 10], 100) == [slice(0, 1), slice(1, 3)]

    model = make_tiny_model(4).eval()
    prompts = [
        f"Document [1]: {'Insulin lowers blood sugar. ' * n}\nQuestion: What does insulin do?\nAnswer:"
        for n in (1, 6, 2, 5, 1)
    ]
    batch = tokenize_for_lm(generator_tokenizer, prompts, ["It lowers blood sugar."] * 5, max_length=256)
    lengths = batch["attention_mask"].sum(-1).tolist()
    cap = lengths[0] + lengths[1]
    widths = []
    handle = model.generator.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    try:
        model.answer_nll(
            batch["input_ids"], batch["attention_mask"], batch["labels"], packed=True, max_packed_tokens=cap
        )
    finally:
        handle.remove()
    expected = [sum(lengths[group]) for group in packed_groups(lengths, cap)]
    assert len(expected) > 1 and [tuple(shape) for shape in widths] == [(1, width) for width in expected]
    assert all(
        width <= cap or len(lengths[group]) == 1
        for width, group in zip(expected, packed_groups(lengths, cap), strict=True)
    )
