"""Defects of the paper-scale path (bf16, several processes, long prompts), each pinned on CPU with tiny models.

Each test failed on the code before its fix (see the issue "The paper-scale path"): a bf16 retriever that stops
learning, bf16-quantised scores, dropout in the choice pass, a hang when one rank's NLLs all tie, a trainable but
unused retriever in the baselines, the NLL pass around the wrapped model, and over-long prompts that lost the best
document.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

from jmlr_hf.models import build_prompt, fit_prompt, tokenize_for_lm
from jmlr_hf.trainer import JointRetrievalCollator
from jmlr_hf.trainer import joint_retrieval_trainer as trainer_module
from tests.testing_utils.models import TOY_ROWS, BosTokenizer
from tests.testing_utils.training import make_args, make_trainer, snapshot, transform_packed_nlls

pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------------------------------------------------------------
# bf16: the retriever keeps float32 weights, and its scores are computed in float32
# ---------------------------------------------------------------------------------------------------------------------


def test_bf16_training_moves_every_retriever_weight_at_the_paper_lr(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """The recipe loads the model in bf16; at the paper's retriever lr (3e-6) AdamW steps are below bf16's
    resolution for most weights, so a bf16 retriever barely changes. Its weights must stay float32."""
    model = make_tiny_model(0).to(torch.bfloat16)
    args = make_args(tmp_path, max_steps=3, bf16=True, retriever_learning_rate=3e-6, learning_rate=1e-4)
    trainer = make_trainer(model, args, generator_tokenizer, retriever_tokenizer)
    assert all(param.dtype == torch.float32 for param in model.retriever.parameters())
    assert all(param.dtype == torch.bfloat16 for param in model.generator.parameters())
    before = snapshot(model)
    trainer.train()
    after = snapshot(model)
    retriever = [name for name in before if name.startswith("retriever.")]
    unmoved = [name for name in retriever if torch.equal(before[name], after[name])]
    assert not unmoved, f"{len(unmoved)} of {len(retriever)} retriever tensors did not move: {unmoved[:5]}"
    # Every entry, not just every tensor: at lr 3e-6 a bf16 weight would round most updates away. (Embedding rows
    # of tokens that never occur get no gradient, so the embedding tables are left out.)
    dense = [name for name in retriever if "embeddings" not in name]
    moved = {name: (before[name] != after[name]).float().mean().item() for name in dense}
    assert min(moved.values()) > 0.9, sorted(moved.items(), key=lambda item: item[1])[:5]


def test_scores_are_float32_under_bf16_autocast(make_tiny_model, retriever_tokenizer):
    """Scores are compared at τ = 0.05: in bf16, 20 candidate scores collapsed to 13 distinct values."""
    model = make_tiny_model(0, scoring="maxsim", projection_dim=16).eval()
    questions = ["Which organ makes insulin?"]
    documents = [[f"Passage {i} about the pancreas, insulin and the liver, variant {i * 7}." for i in range(20)]]
    with torch.no_grad():
        reference = model.score_documents(questions, documents, retriever_tokenizer)
        model.retriever.encoder.to(torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            scores = model.score_documents(questions, documents, retriever_tokenizer)
    assert scores.dtype == torch.float32
    assert scores.unique().numel() == reference.unique().numel() == 20
    # Only the encoder's bf16 hidden states differ; projection, normalisation and MaxSim are float32.
    torch.testing.assert_close(scores, reference, atol=2e-2, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# The choice pass is a measurement: no dropout
# ---------------------------------------------------------------------------------------------------------------------


def test_the_choice_pass_runs_without_dropout(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    model = make_tiny_model(0, retrieval_loss_weight=0.0)  # the RAG-SFT baseline: top K of a fixed retriever
    for module in model.retriever.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    trainer = make_trainer(model, make_args(tmp_path), generator_tokenizer, retriever_tokenizer)
    collator = JointRetrievalCollator(model.config, retriever_tokenizer, generator_tokenizer)
    inputs = collator(TOY_ROWS)
    model.eval()
    with torch.no_grad():
        expected_top = model(**{k: inputs[k] for k in trainer_module.RETRIEVAL_INPUT_KEYS}).retrieval_scores
    expected = [row.argsort(descending=True)[:2].tolist() for row in expected_top]
    model.train()
    chosen = []

    def spy(tokenizer, config, question, documents, options, target):
        chosen.append(list(documents))
        return fit_prompt(tokenizer, config, question, documents, options, target)

    original = trainer_module.fit_prompt
    trainer_module.fit_prompt = spy
    try:
        for _ in range(5):
            trainer.compute_loss(model, inputs)
    finally:
        trainer_module.fit_prompt = original
    expected_documents = [[inputs["documents"][b][i] for i in expected[b]] for b in range(len(TOY_ROWS))]
    assert chosen == expected_documents * 5
    assert model.retriever.training, "the retriever is back in train mode after the choice pass"


# ---------------------------------------------------------------------------------------------------------------------
# Several processes: every rank joins every collective; nothing trainable is left without a gradient
# ---------------------------------------------------------------------------------------------------------------------


def _gathers_in_one_step(trainer, model, monkeypatch, generator_tokenizer, retriever_tokenizer) -> int:
    gathers = []
    real_gather = trainer.accelerator.gather

    def counting_gather(value):
        gathers.append(1)
        return real_gather(value)

    monkeypatch.setattr(trainer.accelerator, "gather", counting_gather)
    inputs = JointRetrievalCollator(model.config, retriever_tokenizer, generator_tokenizer)(TOY_ROWS)
    trainer.compute_loss(model, inputs)
    return len(gathers)


def test_metric_gathers_do_not_depend_on_tied_nlls(
    tmp_path, monkeypatch, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """A rank whose sampled NLLs all tie has no agreement; it must still join the same gathers as the others
    (before the fix it skipped one, and the other ranks waited for it forever)."""
    model = make_tiny_model(0)
    trainer = make_trainer(model, make_args(tmp_path), generator_tokenizer, retriever_tokenizer)
    # The first step also checks that the padding-free NLL pass matches the padded one (one more gather, once).
    first = _gathers_in_one_step(trainer, model, monkeypatch, generator_tokenizer, retriever_tokenizer)
    normal = _gathers_in_one_step(trainer, model, monkeypatch, generator_tokenizer, retriever_tokenizer)
    monkeypatch.setattr(trainer_module, "answer_nll", lambda model, ids, *args, **kwargs: torch.ones(ids.shape[0]))
    tied = _gathers_in_one_step(trainer, model, monkeypatch, generator_tokenizer, retriever_tokenizer)
    assert tied == normal == first - 1 > 0


@pytest.mark.parametrize("num_context_documents", [0, 2], ids=["sft", "rag-sft"])
def test_baselines_freeze_the_retriever(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, num_context_documents
):
    """With λ = 0 nothing reaches the retriever: trainable, it would be an unused parameter for DDP."""
    model = make_tiny_model(0, retrieval_loss_weight=0.0, num_context_documents=num_context_documents)
    trainer = make_trainer(model, make_args(tmp_path), generator_tokenizer, retriever_tokenizer)
    assert not any(param.requires_grad for param in model.retriever.parameters())
    trainer.train()
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in model.retriever.parameters()}
    assert all(param.grad is None for param in model.retriever.parameters())
    assert any(param.requires_grad for param in model.generator.parameters())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_nll_pass_goes_through_the_wrapped_model(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """Under FSDP the unwrapped generator holds only shards: the NLL pass must call the wrapped model's forward."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        model = make_tiny_model(0)
        trainer = make_trainer(model, make_args(tmp_path), generator_tokenizer, retriever_tokenizer)
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
        assert trainer.accelerator.unwrap_model(wrapped) is model
        forwards = []
        wrapped.register_forward_pre_hook(
            lambda module, args, kwargs: forwards.append(torch.is_grad_enabled()), with_kwargs=True
        )
        inputs = JointRetrievalCollator(model.config, retriever_tokenizer, generator_tokenizer)(TOY_ROWS)
        trainer.compute_loss(wrapped, inputs)
        # The choice pass and the NLL pass without gradient (packed, then padded: the first step checks that the two
        # agree), the joint forward with it: all through the wrapper.
        assert forwards == [False, False, False, True]
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------------------
# Over-long prompts lose the lowest-ranked document, never the best one or BOS
# ---------------------------------------------------------------------------------------------------------------------


LONG_DOCUMENT = "The pancreas is a gland behind the stomach. " * 12


@pytest.mark.parametrize("document_order", ["best_first", "best_last"])
def test_overlong_prompts_keep_the_best_document(make_tiny_model, generator_tokenizer, document_order):
    config = make_tiny_model(0, max_length=120, max_document_length=100, document_order=document_order).config
    best = "BEST: beta cells of the pancreas secrete insulin. " + LONG_DOCUMENT
    documents = [best, "SECOND: " + LONG_DOCUMENT, "THIRD: " + LONG_DOCUMENT]
    target = "B: Pancreas. Beta cells secrete insulin."
    full = build_prompt(config, "Which organ makes insulin?", documents, ["Liver", "Pancreas"])
    assert len(generator_tokenizer(full)["input_ids"]) > 2 * config.max_length  # much too long
    prompt = fit_prompt(
        generator_tokenizer, config, "Which organ makes insulin?", documents, ["Liver", "Pancreas"], target
    )
    batch = tokenize_for_lm(generator_tokenizer, [prompt], [target], config.max_length)
    text = generator_tokenizer.decode(batch["input_ids"][0])
    assert batch["input_ids"].shape[1] <= config.max_length
    assert "BEST: beta cells of the pancreas secrete insulin." in text
    assert "THIRD" not in text  # the lowest-ranked document went first
    assert "Question: Which organ makes insulin?" in text


def test_left_cut_keeps_bos(generator_tokenizer):
    tokenizer = BosTokenizer(generator_tokenizer)
    prompt = "word " * 200 + "Question: why?"
    batch = tokenize_for_lm(tokenizer, [prompt], ["because"], 64)
    assert batch["input_ids"].shape[1] == 64
    assert batch["input_ids"][0, 0].item() == tokenizer.bos_token_id
    assert batch["input_ids"][0, 1].item() != tokenizer.bos_token_id  # the cut is right after BOS
    target = tokenizer(" because", add_special_tokens=False)["input_ids"]  # as tokenize_for_lm joins it
    assert batch["labels"][0, -len(target) - 1 : -1].tolist() == target  # the answer is kept whole


def test_training_prompts_are_fitted(tmp_path, monkeypatch, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    """The joint step builds its prompts with `fit_prompt`: a long vignette keeps its best documents."""
    rows = [dict(row, candidates=[c + " " + LONG_DOCUMENT for c in row["candidates"]]) for row in TOY_ROWS]
    model = make_tiny_model(0, max_length=96, max_document_length=64)
    prompts: list[str] = []
    original = trainer_module.tokenize_for_lm

    def spy(tokenizer, batch_prompts, targets, max_length, **kwargs):
        for prompt, target in zip(batch_prompts, targets, strict=True):
            ids = tokenizer(prompt)["input_ids"] + tokenizer(" " + target, add_special_tokens=False)["input_ids"]
            assert len(ids) + 1 <= max_length, "a prompt was left for tokenize_for_lm to cut"
        prompts.extend(batch_prompts)
        return original(tokenizer, batch_prompts, targets, max_length, **kwargs)

    monkeypatch.setattr(trainer_module, "tokenize_for_lm", spy)
    make_trainer(model, make_args(tmp_path), generator_tokenizer, retriever_tokenizer, rows=rows * 2).train()
    assert prompts and all("Document [1]" in prompt for prompt in prompts)


def test_document_order_is_validated(make_tiny_model):
    with pytest.raises(ValueError, match="document_order must be 'best_first' or 'best_last'"):
        make_tiny_model(0, document_order="random")


def test_best_last_puts_the_best_document_next_to_the_question(make_tiny_model):
    config = make_tiny_model(0, document_order="best_last").config
    prompt = build_prompt(config, "Q?", ["best", "second"])
    assert prompt.index("second") < prompt.index("best") < prompt.index("Question: Q?")


# ---------------------------------------------------------------------------------------------------------------------
# Per-question min-max score scaling
# ---------------------------------------------------------------------------------------------------------------------


def test_minmax_scaling_maps_each_questions_candidates_to_zero_to_one_over_tau(make_tiny_model):
    config = make_tiny_model(0, score_scaling="minmax", retrieval_temperature=0.1).config
    scores = torch.tensor([[0.2, 0.5, 0.3, 0.4], [0.9, 0.1, 0.5, 0.1]])
    logits = trainer_module.scores_to_logits(scores, scores, config)
    torch.testing.assert_close(logits, torch.tensor([[0.0, 10.0, 10 / 3, 20 / 3], [10.0, 0.0, 5.0, 0.0]]))
    # In-batch negatives are rescaled by their question's own minimum and span.
    all_pairs = torch.cat([scores, torch.tensor([[0.8, 0.2, 0.0, 0.6], [0.3, 0.3, 0.7, 0.2]])], dim=1)
    torch.testing.assert_close(trainer_module.scores_to_logits(all_pairs, scores, config)[:, :4], logits)
    plain = make_tiny_model(0, retrieval_temperature=0.1).config
    torch.testing.assert_close(trainer_module.scores_to_logits(scores, scores, plain), scores / 0.1)


def test_training_with_minmax_scaling(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    model = make_tiny_model(0, score_scaling="minmax")
    trainer = make_trainer(model, make_args(tmp_path, max_steps=2), generator_tokenizer, retriever_tokenizer)
    before = snapshot(model)
    trainer.train()
    after = snapshot(model)
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("retriever."))
    assert all(
        entry["retrieval_loss"] == entry["retrieval_loss"]
        for entry in trainer.state.log_history
        if "retrieval_loss" in entry
    )
    with pytest.raises(ValueError, match="score_scaling must be 'temperature' or 'minmax'"):
        make_tiny_model(0, score_scaling="softmax")


# ---------------------------------------------------------------------------------------------------------------------
# Query-side-only training: the document tower is frozen, so the index stays valid
# ---------------------------------------------------------------------------------------------------------------------


def test_query_side_only_training_keeps_the_index_fresh(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    model = make_tiny_model(0, train_document_encoder=False, projection_dim=16)
    retriever = model.retriever
    assert retriever.document_encoder is not None and retriever.document_linear is not None
    torch.testing.assert_close(retriever.document_linear.weight, retriever.linear.weight, atol=0, rtol=0)
    fingerprint = retriever.weights_fingerprint()
    before = snapshot(model)
    make_trainer(model, make_args(tmp_path, max_steps=2), generator_tokenizer, retriever_tokenizer).train()
    after = snapshot(model)
    query_side = [n for n in before if n.startswith(("retriever.encoder.", "retriever.linear."))]
    assert any(not torch.equal(before[n], after[n]) for n in query_side)
    document_side = [
        name
        for name, _ in model.named_parameters()
        if name.startswith(("retriever.document_encoder.", "retriever.document_linear."))
    ]
    assert document_side and not any(model.get_parameter(n).requires_grad for n in document_side)
    assert retriever.weights_fingerprint() == fingerprint  # the index built before training is still valid

    shared = make_tiny_model(0, projection_dim=16)
    shared_fingerprint = shared.retriever.weights_fingerprint()
    # The same initial weights in one tower: the base retriever's index serves the query-side model started from it.
    assert shared_fingerprint == fingerprint
    make_trainer(shared, make_args(tmp_path / "shared", max_steps=2), generator_tokenizer, retriever_tokenizer).train()
    assert shared.retriever.weights_fingerprint() != shared_fingerprint


def test_query_side_only_model_saves_and_loads_its_document_tower(tmp_path, make_tiny_model, retriever_tokenizer):
    model = make_tiny_model(0, train_document_encoder=False).eval()
    with torch.no_grad():  # make the towers differ, as after training
        for param in model.retriever.encoder.parameters():
            param.add_(0.01)
    model.save_pretrained(tmp_path / "model")
    from jmlr_hf import JMLRForCausalLM

    loaded = JMLRForCausalLM.from_pretrained(tmp_path / "model").eval()
    assert loaded.retriever.weights_fingerprint() == model.retriever.weights_fingerprint()
    questions, documents = ["Which organ makes insulin?"], [["The pancreas makes insulin.", "Bones hold calcium."]]
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.score_documents(questions, documents, retriever_tokenizer),
            model.score_documents(questions, documents, retriever_tokenizer),
        )


@pytest.mark.parametrize("setting", [None, True], ids=["auto", "on"])
def test_a_model_that_ignores_packing_is_caught_on_the_first_pass(
    tmp_path, monkeypatch, caplog, make_tiny_model, generator_tokenizer, retriever_tokenizer, setting
):
    """Padding-free NLLs from a model whose attention ignores packed position ids would let each sequence see its
    neighbours. The first pass compares them with padded ones: automatic packing falls back (with a warning),
    packing asked for explicitly is an error."""
    transform_packed_nlls(monkeypatch, trainer_module, lambda nll: nll + 0.5)
    model = make_tiny_model(0)
    trainer = make_trainer(
        model, make_args(tmp_path, nll_padding_free=setting), generator_tokenizer, retriever_tokenizer
    )
    inputs = JointRetrievalCollator(model.config, retriever_tokenizer, generator_tokenizer)(TOY_ROWS)
    if setting:
        with pytest.raises(ValueError, match="does not follow packed sequences.*nll_padding_free=False"):
            trainer.compute_loss(model, inputs)
        return
    with caplog.at_level("WARNING", logger=trainer_module.logger.name):
        trainer.compute_loss(model, inputs)
    assert "pads its sequences instead" in caplog.text
    assert trainer._padding_free(model, torch.device("cpu")) is False
