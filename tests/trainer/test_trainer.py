"""Pinning tests of jmlr_hf.trainer: sampling, collation, the joint step, optimiser groups, logging, ranking,
checkpoint resume and adapter merging, on tiny random models."""

from __future__ import annotations

import shutil

import pytest
import torch
from datasets import Dataset
from peft import PeftModel
from safetensors import safe_open
from transformers import LlamaConfig, LlamaForCausalLM
from trl import SFTConfig

from jmlr_hf import JMLRForCausalLM
from jmlr_hf.models import (
    RETRIEVER_TOKENIZER_DIR,
    build_prompt,
    build_target,
    merge_generator_adapter,
    tokenize_for_lm,
)
from jmlr_hf.trainer import (
    JointRetrievalCollator,
    JointRetrievalTrainer,
    is_retriever_parameter,
    sample_without_replacement,
)
from jmlr_hf.trainer import joint_retrieval_trainer as trainer_module
from jmlr_hf.trainer.joint_retrieval_config import DEFAULT_MAX_PACKED_TOKENS
from tests.testing_utils.models import TOY_ROWS
from tests.testing_utils.training import lora_config, make_args, make_trainer, snapshot

pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------------------


def test_sample_without_replacement_no_duplicates_and_in_range():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5000, 7, generator=gen) * 3
    logits[:10] = torch.tensor([1e4, -1e4, 0.0, 0.0, 0.0, 5.0, -5.0])  # extreme gaps
    for k in (1, 4, 7):
        draws = sample_without_replacement(logits, k, generator=gen)
        assert draws.shape == (5000, k) and draws.dtype == torch.long
        assert draws.min() >= 0 and draws.max() < 7
        sorted_draws = draws.sort(-1).values
        assert (sorted_draws[:, 1:] != sorted_draws[:, :-1]).all()  # no duplicate index in any row
    # k = N: every row is a permutation; the 1e4 logit is always drawn first.
    assert torch.equal(draws.sort(-1).values, torch.arange(7).expand(5000, 7))
    assert (draws[:10, 0] == 0).all()


def test_sample_without_replacement_matches_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    num_draws = 20000
    draws = sample_without_replacement(logits.expand(num_draws, -1), 3, generator=torch.Generator().manual_seed(1234))
    p = torch.softmax(logits, -1)
    first = torch.bincount(draws[:, 0], minlength=5).float() / num_draws
    assert (first - p).abs().max() < 0.02, (first, p)
    # Plackett-Luce: P(first = i, second = j) = p_i * p_j / (1 - p_i).
    pair_counts = torch.zeros(5, 5)
    pair_counts.index_put_((draws[:, 0], draws[:, 1]), torch.ones(num_draws), accumulate=True)
    expected_pairs = p[:, None] * p[None, :] / (1 - p[:, None])
    expected_pairs.fill_diagonal_(0.0)
    assert (pair_counts / num_draws - expected_pairs).abs().max() < 0.02
    # The same generator seed gives the same draws; the logits' gradient is not needed.
    again = sample_without_replacement(logits.expand(num_draws, -1), 3, generator=torch.Generator().manual_seed(1234))
    assert torch.equal(draws, again)


# ---------------------------------------------------------------------------------------------------------------------
# Collator
# ---------------------------------------------------------------------------------------------------------------------


def test_collator_shapes_and_texts(make_tiny_model, generator_tokenizer, retriever_tokenizer):
    config = make_tiny_model(0).config  # N = 4
    collator = JointRetrievalCollator(config, retriever_tokenizer, generator_tokenizer)
    rows = [dict(TOY_ROWS[0]), dict(TOY_ROWS[1]), dict(TOY_ROWS[0], id="q3")]
    rows[2]["candidates"] = ["extra document " * 100] + TOY_ROWS[0]["candidates"]  # 5 candidates, a long first one
    batch = collator(rows)
    lq, ld = batch["query_input_ids"].shape[1], batch["doc_input_ids"].shape[1]
    assert batch["query_input_ids"].shape == (3, lq) and batch["query_attention_mask"].shape == (3, lq)
    assert batch["doc_input_ids"].shape == (3 * 4, ld) and batch["doc_attention_mask"].shape == (3 * 4, ld)
    assert ld <= config.max_document_length and lq <= config.max_query_length
    assert batch["questions"] == [TOY_ROWS[0]["question"], TOY_ROWS[1]["question"], TOY_ROWS[0]["question"]]
    assert batch["targets"][0] == "yes. Aspirin lowers the risk of a first heart attack."
    assert batch["targets"][1] == "B: Pancreas. Beta cells of the pancreas secrete insulin."
    assert batch["options"][1] == ["Liver", "Pancreas", "Kidney", "Spleen"]
    assert [len(docs) for docs in batch["documents"]] == [4, 4, 4]
    assert batch["documents"][0] == TOY_ROWS[0]["candidates"]
    # Only the first N candidates are kept; long ones are cut to max_document_length generator tokens.
    assert batch["documents"][2][1:] == TOY_ROWS[0]["candidates"][:3]
    long_ids = generator_tokenizer(batch["documents"][2][0], add_special_tokens=False)["input_ids"]
    assert len(long_ids) <= config.max_document_length and batch["documents"][2][0].startswith("extra document")
    # The candidates' retriever tokens are grouped per question: row 1's documents are rows 4..7.
    second = retriever_tokenizer(TOY_ROWS[1]["candidates"][0])["input_ids"]
    assert batch["doc_input_ids"][4, : len(second)].tolist() == second


def test_collator_errors_name_the_row(make_tiny_model, generator_tokenizer, retriever_tokenizer):
    collator = JointRetrievalCollator(make_tiny_model(0).config, retriever_tokenizer, generator_tokenizer)
    short = dict(TOY_ROWS[1], id="q-short", candidates=TOY_ROWS[1]["candidates"][:3])
    with pytest.raises(
        ValueError, match=r"'q-short': field 'candidates' has 3 documents, fewer than num_candidates=4"
    ):
        collator([TOY_ROWS[0], short])
    missing = {k: v for k, v in TOY_ROWS[0].items() if k != "candidates"} | {"id": "q-missing"}
    with pytest.raises(ValueError, match="'q-missing' has no 'candidates'"):
        collator([missing])
    bad_rows = [
        ({"candidates": " ".join(TOY_ROWS[0]["candidates"])}, r"field 'candidates' is a str; expected a list"),
        ({"candidates": [None, *TOY_ROWS[0]["candidates"][1:]]}, r"field 'candidates'\[0\] is None"),
        ({"candidates": [*TOY_ROWS[0]["candidates"][:2], "  ", "x"]}, r"field 'candidates'\[2\] is '  '"),
        ({"question": ""}, r"field 'question' is ''; expected a non-empty string"),
        ({"answer": None}, r"field 'answer' is None"),
        ({"answer": 2}, r"field 'answer' is 2"),
        ({"answer": "Z", "options": ["Liver", "Pancreas"]}, r"field 'answer': answer 'Z' is not one of the"),
        ({"rationale": "insulin " * 2000}, r"fields 'answer' \+ 'rationale': the target is \d+ tokens"),
    ]
    for change, message in bad_rows:
        with pytest.raises(ValueError, match=r"row 'q-bad': " + message):
            collator([dict(TOY_ROWS[0], id="q-bad", **change)])


# ---------------------------------------------------------------------------------------------------------------------
# One training step with LoRA: what trains, at which learning rate
# ---------------------------------------------------------------------------------------------------------------------


def test_one_step_with_lora(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    model = make_tiny_model(0)
    args = make_args(
        tmp_path,
        learning_rate=5e-3,
        retriever_learning_rate=2e-3,
        weight_decay=0.1,
        retriever_weight_decay=0.05,
        gradient_checkpointing=True,  # the SFTConfig default, with PEFT's input-grad hook
    )
    trainer = make_trainer(model, args, generator_tokenizer, retriever_tokenizer, peft_config=lora_config())
    assert isinstance(model.generator, PeftModel)
    # PEFT froze the generator's base weights but not the retriever.
    retriever_params = dict(model.retriever.named_parameters())
    assert len(retriever_params) > 10
    assert all(p.requires_grad for p in retriever_params.values())
    named = dict(model.named_parameters())
    lora = {n: p for n, p in named.items() if "lora_" in n}
    base_generator = {n: p for n, p in named.items() if n.startswith("generator.") and "lora_" not in n}
    assert len(lora) == 2 * 2 * 2  # 2 layers x (q_proj, v_proj) x (A, B)
    assert all(p.requires_grad for p in lora.values())
    assert not any(p.requires_grad for p in base_generator.values())

    optimizer = trainer.create_optimizer()
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    assert len(group_of) == sum(len(g["params"]) for g in optimizer.param_groups)  # no parameter twice
    assert set(group_of) == {id(p) for p in (*lora.values(), *retriever_params.values())}
    for name, param in lora.items():
        assert group_of[id(param)]["lr"] == 5e-3, name
    for name, param in retriever_params.items():
        group = group_of[id(param)]
        assert group["lr"] == 2e-3, name
        if name.endswith("bias") or "LayerNorm" in name:
            assert group["weight_decay"] == 0.0, name
        else:
            assert group["weight_decay"] == 0.05, name
    assert {g["name"] for g in optimizer.param_groups} >= {"retriever_decay", "retriever_no_decay"}

    before = snapshot(model)
    trainer.train()
    after = snapshot(model)
    for name in base_generator:
        assert torch.equal(before[name], after[name]), f"base generator weight {name} changed"
    for name in lora:
        if "lora_B" in name:  # B starts at 0, so only B gets a gradient at step 1 (A moves by weight decay)
            assert not torch.equal(before[name], after[name]), f"LoRA weight {name} did not change"
    assert not any(".pooler." in name for name in retriever_params), "the unused BERT pooler must be dropped"
    for name in retriever_params:
        full = f"retriever.{name}"
        assert not torch.equal(before[full], after[full]), f"retriever weight {name} did not change"


def test_is_retriever_parameter():
    assert is_retriever_parameter("retriever.encoder.embeddings.word_embeddings.weight")
    assert is_retriever_parameter("module.retriever.linear.weight")
    assert not is_retriever_parameter("generator.model.layers.0.self_attn.q_proj.weight")
    assert not is_retriever_parameter("generator.model.retriever.weight")  # a generator module named "retriever"


# ---------------------------------------------------------------------------------------------------------------------
# The batched NLL pass and logging
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize(("micro_batch_size", "expected_sizes"), [(None, [8]), (3, [3, 3, 2]), (8, [8])])
def test_nll_pass_is_batched(
    tmp_path,
    monkeypatch,
    make_tiny_model,
    generator_tokenizer,
    retriever_tokenizer,
    micro_batch_size,
    expected_sizes,
    padding_free,
):
    model = make_tiny_model(0, num_candidates=4, num_sampled=4)  # B * S = 2 * 4 = 8 sequences
    calls = []
    original = trainer_module.answer_nll

    def spy(causal_lm, input_ids, attention_mask, labels, micro_batch_size=None, **options):
        shapes = []
        # The NLL pass is the generator's only no-gradient forward of a training step.
        handle = model.generator.register_forward_pre_hook(
            lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
        )
        try:
            result = original(causal_lm, input_ids, attention_mask, labels, micro_batch_size, **options)
        finally:
            handle.remove()
        packed, max_packed_tokens = options.get("packed", False), options.get("max_packed_tokens")
        step = micro_batch_size or input_ids.shape[0]
        tokens = [int(attention_mask[i : i + step].sum()) for i in range(0, input_ids.shape[0], step)]
        calls.append(
            {
                "rows": input_ids.shape[0],
                "micro": micro_batch_size,
                "packed": packed,
                "max_packed_tokens": max_packed_tokens,
                "forwards": shapes,
                "tokens": tokens,
            }
        )
        return result

    monkeypatch.setattr(trainer_module, "answer_nll", spy)
    args = make_args(tmp_path, nll_micro_batch_size=micro_batch_size, nll_padding_free=padding_free)
    make_trainer(model, args, generator_tokenizer, retriever_tokenizer).train()
    # One training step, one NLL pass; padding-free, the first pass is checked against a padded one.
    assert [call["packed"] for call in calls] == ([True, False] if padding_free else [False])
    # Packed rows are capped on this CPU (SDPA computes a packed row's whole attention); the toy rows fit in one.
    assert [call["max_packed_tokens"] for call in calls] == (
        [DEFAULT_MAX_PACKED_TOKENS, None] if padding_free else [None]
    )
    assert all(call["rows"] == 8 and call["micro"] == micro_batch_size for call in calls)
    assert [rows for rows, _ in calls[-1]["forwards"]] == expected_sizes
    if padding_free:  # each micro-batch in one row, exactly as long as its sequences' real tokens
        assert calls[0]["forwards"] == [(1, tokens) for tokens in calls[0]["tokens"]]


def test_logging_and_loss_composition(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    model = make_tiny_model(0, retrieval_loss_weight=0.5)
    trainer = make_trainer(model, make_args(tmp_path), generator_tokenizer, retriever_tokenizer)
    trainer.train()
    log = trainer.state.log_history[0]
    for key in ("loss", "lm_loss", "retrieval_loss", "retrieval_agreement", "sampled_nll_mean"):
        assert key in log, (key, log)
    assert log["step"] == 1
    assert log["retrieval_loss"] > 0.01 and log["lm_loss"] > 5.0
    assert 0.0 <= log["retrieval_agreement"] <= 1.0
    assert log["loss"] == pytest.approx(log["lm_loss"] + 0.5 * log["retrieval_loss"], rel=1e-5)
    assert log["loss"] != pytest.approx(log["lm_loss"] + log["retrieval_loss"], rel=1e-5)


def test_evaluate_reports_the_joint_losses(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    model = make_tiny_model(0, retrieval_loss="lsr", in_batch_negatives=True)
    trainer = make_trainer(
        model,
        make_args(tmp_path, per_device_eval_batch_size=2),
        generator_tokenizer,
        retriever_tokenizer,
        eval_dataset=Dataset.from_list(TOY_ROWS * 2),
    )
    weights = snapshot(model)
    metrics = trainer.evaluate()
    assert set(metrics) >= {"eval_loss", "eval_lm_loss", "eval_retrieval_loss"}
    assert metrics["eval_loss"] > metrics["eval_lm_loss"] > 5.0  # λ = 1 and a positive retrieval loss
    after = snapshot(model)
    assert all(torch.equal(weights[name], after[name]) for name in weights), "evaluation must not train"


@pytest.mark.parametrize("num_context_documents", [0, 2], ids=["sft", "rag-sft"])
def test_baselines_train_the_llm_alone(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, num_context_documents, monkeypatch
):
    # λ = 0 is the RAG-SFT baseline (top-K of a fixed retriever), and with K = 0 the SFT baseline (no documents).
    model = make_tiny_model(0, retrieval_loss_weight=0.0, num_context_documents=num_context_documents)
    prompts: list[str] = []
    original = trainer_module.tokenize_for_lm

    def spy(tokenizer, batch_prompts, *args, **kwargs):
        prompts.extend(batch_prompts)
        return original(tokenizer, batch_prompts, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "tokenize_for_lm", spy)
    monkeypatch.setattr(trainer_module, "answer_nll", lambda *a, **k: pytest.fail("no NLL pass without λ"))
    trainer = make_trainer(model, make_args(tmp_path, max_steps=2), generator_tokenizer, retriever_tokenizer)
    before = snapshot(model)
    trainer.train()
    after = snapshot(model)
    assert all(torch.equal(before[n], after[n]) for n in before if n.startswith("retriever."))
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("generator."))
    logs = [entry for entry in trainer.state.log_history if "lm_loss" in entry]
    assert len(logs) == 2 and all("retrieval_loss" not in entry for entry in logs)
    assert len(prompts) == 4  # 2 steps x batch 2: only the LM batches were built
    assert all(prompt.count("Document [") == num_context_documents for prompt in prompts)


# ---------------------------------------------------------------------------------------------------------------------
# The retriever learns the LLM's preference
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("retrieval_loss", ["llm_rank", "lsr", "ppl_distill"])
def test_ranking_moves_toward_lowest_nll_document(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, retrieval_loss
):
    # Retrieval only: the generator is frozen, so each (question, document) has a fixed answer NLL, and the
    # retriever must learn to put the document with the lowest NLL first.
    row = TOY_ROWS[0]
    model = make_tiny_model(0, retrieval_loss=retrieval_loss)
    cfg = model.config
    for param in model.generator.parameters():
        param.requires_grad_(False)

    def candidate_nll():
        model.eval()
        target = build_target(cfg, row["answer"], row["rationale"], row["options"])
        prompts = [build_prompt(cfg, row["question"], [doc], row["options"]) for doc in row["candidates"]]
        batch = tokenize_for_lm(generator_tokenizer, prompts, [target] * len(prompts), cfg.max_length)
        return model.answer_nll(batch["input_ids"], batch["attention_mask"], batch["labels"])

    def retriever_probs():
        model.eval()
        with torch.no_grad():
            scores = model.score_documents([row["question"]], [row["candidates"]], retriever_tokenizer)[0]
        return torch.softmax(scores / cfg.retrieval_temperature, -1)

    nll = candidate_nll()
    best = int(nll.argmin())
    assert len(set(nll.tolist())) == 4  # no ties: the ranking target is well defined
    # The random generator's NLLs differ by ~1e-3; put Q_LM = softmax(-NLL / beta) on the same scale.
    cfg.lm_temperature = float(nll.max() - nll.min()) / 4
    probs_before = retriever_probs()
    assert int(probs_before.argmax()) != best  # so that there is something to learn

    args = make_args(
        tmp_path,
        max_steps=24,
        per_device_train_batch_size=1,
        learning_rate=0.0,
        retriever_learning_rate=1e-3,
        lr_scheduler_type="constant",
        logging_steps=8,
    )
    make_trainer(model, args, generator_tokenizer, retriever_tokenizer, rows=[row] * 24).train()

    torch.testing.assert_close(candidate_nll(), nll, atol=0, rtol=0)  # the target did not move
    probs_after = retriever_probs()
    assert int(probs_after.argmax()) == best, (probs_before, probs_after, nll)
    assert probs_after[best] > probs_before[best] + 0.3, (probs_before, probs_after)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints: resume, save_model, merge
# ---------------------------------------------------------------------------------------------------------------------


def test_resume_true_skips_a_checkpoint_whose_writing_was_interrupted(
    tmp_path, caplog, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """A kill while checkpoint-4 was being written (its optimizer and a truncated trainer_state.json): resuming with
    `resume_from_checkpoint=True` falls back to checkpoint-2, says so, and ends where the uninterrupted run did."""

    def trainer_for(seed, output_dir, max_steps):
        args = make_args(
            tmp_path, output_dir=str(output_dir), max_steps=max_steps, save_strategy="steps", save_steps=2
        )
        return make_trainer(make_tiny_model(seed), args, generator_tokenizer, retriever_tokenizer)

    straight = trainer_for(0, tmp_path / "straight", 6)
    straight.train()
    interrupted = tmp_path / "interrupted"
    for step in (2, 4):
        shutil.copytree(tmp_path / "straight" / f"checkpoint-{step}", interrupted / f"checkpoint-{step}")
    state = interrupted / "checkpoint-4" / "trainer_state.json"
    state.write_text(state.read_text()[:100])
    (interrupted / "checkpoint-4" / "optimizer.pt").unlink()
    assert trainer_module.last_complete_checkpoint(str(interrupted)) == str(interrupted / "checkpoint-2")

    resumed = trainer_for(1, interrupted, 6)
    with caplog.at_level("WARNING", logger=trainer_module.logger.name):
        resumed.train(resume_from_checkpoint=True)
    assert (
        "checkpoint-4: its writing did not finish (it lacks an optimizer state, a readable trainer_state.json)"
        in caplog.text
    )
    assert "Resuming from" in caplog.text and "checkpoint-2" in caplog.text
    assert resumed.state.global_step == 6
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, atol=1e-6, rtol=0, msg=key)

    empty = tmp_path / "empty"
    (empty / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(ValueError, match="no complete checkpoint: .*checkpoint-2 lacks weights"):
        trainer_module.last_complete_checkpoint(str(empty))


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_resume_restores_retriever_and_generator(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, use_lora
):
    def run(seed, output_dir, resume=None):
        model = make_tiny_model(seed)
        args = make_args(
            tmp_path,
            output_dir=str(output_dir),
            max_steps=4,
            save_strategy="steps",
            save_steps=2,
            learning_rate=5e-3,
            retriever_learning_rate=2e-3,
        )
        peft_config = lora_config() if use_lora else None
        trainer = make_trainer(model, args, generator_tokenizer, retriever_tokenizer, peft_config=peft_config)
        trainer.train(resume_from_checkpoint=resume)
        return model, trainer

    straight, straight_trainer = run(0, tmp_path / "straight")
    checkpoint = tmp_path / "straight" / "checkpoint-2"
    with safe_open(str(checkpoint / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("retriever.") for k in keys)
    assert any(k.startswith("generator.") for k in keys)
    assert any("lora_" in k for k in keys) == use_lora
    assert (checkpoint / RETRIEVER_TOKENIZER_DIR / "tokenizer_config.json").is_file()
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "rng_state.pth").is_file()

    # A new model (other initial weights) resumed from checkpoint-2 must end exactly where the straight run did.
    resumed, resumed_trainer = run(1, tmp_path / "resumed", resume=str(checkpoint))
    assert resumed_trainer.state.global_step == 4
    final_straight, final_resumed = straight.state_dict(), resumed.state_dict()
    assert set(final_straight) == set(final_resumed)
    assert any(k.startswith("retriever.") for k in final_straight)
    for key, value in final_straight.items():
        torch.testing.assert_close(final_resumed[key], value, atol=1e-6, rtol=0, msg=key)
    # ... and training did move the weights away from the checkpoint (so the comparison is not vacuous).
    with safe_open(str(checkpoint / "model.safetensors"), "pt") as f:
        retriever_key = next(k for k in keys if k.startswith("retriever.") and "query.weight" in k)
        assert not torch.equal(f.get_tensor(retriever_key), final_straight[retriever_key])
    # Steps 3 and 4 saw the same batches and sampled the same documents (data order and RNG state restored).
    losses = [
        {log["step"]: log["loss"] for log in t.state.log_history if "loss" in log}
        for t in (straight_trainer, resumed_trainer)
    ]
    assert sorted(losses[1]) == [1, 2, 3, 4]
    for step in (3, 4):
        assert losses[1][step] == pytest.approx(losses[0][step], rel=1e-6, abs=0), step


def test_save_model_then_merge_adapter(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    model = make_tiny_model(0)
    base_q = model.generator.model.layers[0].self_attn.q_proj.weight.detach().clone()
    args = make_args(tmp_path, max_steps=2, learning_rate=2e-2)
    trainer = make_trainer(model, args, generator_tokenizer, retriever_tokenizer, peft_config=lora_config())
    trainer.train()
    final_dir = tmp_path / "final"
    trainer.save_model(str(final_dir))
    with safe_open(str(final_dir / "model.safetensors"), "pt") as f:
        saved_keys = list(f.keys())
    assert any(k.startswith("retriever.") for k in saved_keys)
    assert any("lora_" in k for k in saved_keys)  # save_model keeps the adapter; merging is a separate step
    assert (final_dir / RETRIEVER_TOKENIZER_DIR).is_dir()

    model.eval()
    input_ids = torch.tensor([generator_tokenizer("Question: Which organ makes insulin?\nAnswer: B")["input_ids"]])
    questions, documents = [TOY_ROWS[1]["question"]], [TOY_ROWS[1]["candidates"]]
    with torch.no_grad():
        adapter_logits = model(input_ids=input_ids).logits
    merged = merge_generator_adapter(model)
    assert not isinstance(merged.generator, PeftModel)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    merged_q = merged.generator.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(merged_q, base_q)  # the adapter was trained and merged in
    with torch.no_grad():
        merged_logits = merged(input_ids=input_ids).logits
        merged_scores = merged.score_documents(questions, documents, retriever_tokenizer)
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-4, rtol=1e-4)

    merged_dir = tmp_path / "merged"
    merged.save_pretrained(merged_dir)
    loaded = JMLRForCausalLM.from_pretrained(merged_dir).eval()
    with torch.no_grad():
        loaded_logits = loaded(input_ids=input_ids).logits
        loaded_scores = loaded.score_documents(questions, documents, retriever_tokenizer)
    torch.testing.assert_close(loaded_logits, merged_logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(loaded_scores, merged_scores, atol=1e-6, rtol=0)
    assert torch.equal(loaded.generator.model.layers[0].self_attn.q_proj.weight, merged_q)


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------


def test_trainer_rejects_wrong_model_and_args(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    with pytest.raises(TypeError, match="JMLRForCausalLM"):
        make_trainer(llama, make_args(tmp_path), generator_tokenizer, retriever_tokenizer)
    sft_args = SFTConfig(output_dir=str(tmp_path / "sft"), report_to=[], bf16=False, use_cpu=True)
    with pytest.raises(TypeError, match="JointRetrievalConfig"):
        make_trainer(make_tiny_model(0), sft_args, generator_tokenizer, retriever_tokenizer)
    with pytest.raises(ValueError, match="retriever_tokenizer"):
        JointRetrievalTrainer(make_tiny_model(0), make_args(tmp_path), processing_class=generator_tokenizer)


def test_config_rejects_remove_unused_columns(tmp_path):
    with pytest.raises(ValueError, match="remove_unused_columns"):
        make_args(tmp_path, remove_unused_columns=True)
    with pytest.raises(ValueError, match="skip_prepare_dataset"):
        make_args(tmp_path, dataset_kwargs={})
    args = make_args(tmp_path)
    assert args.remove_unused_columns is False and args.dataset_kwargs == {"skip_prepare_dataset": True}


def test_lm_loss_is_the_causal_lm_loss_computed_from_the_answer_positions_only(make_tiny_model, generator_tokenizer):
    model = make_tiny_model(3).eval()
    prompts = ["Document [1]: " + "The pancreas makes insulin. " * 12 + "\nQuestion: Which organ?\nAnswer:", "Q:"]
    batch = tokenize_for_lm(generator_tokenizer, prompts, ["Pancreas, beta cells", "no"], max_length=256)
    positions = []
    handle = model.generator.lm_head.register_forward_hook(
        lambda module, args, out: positions.append(args[0].shape[:-1])
    )
    try:
        with torch.no_grad():
            reference = model(**batch, use_cache=False).loss  # transformers' own loss, from full logits
            fitted = trainer_module.lm_forward(model, batch).loss
    finally:
        handle.remove()
    torch.testing.assert_close(fitted, reference, atol=1e-6, rtol=0)
    # transformers' loss: logits at every position; the joint step's: at the answer tokens' positions only.
    assert positions[0] == tuple(batch["input_ids"].shape)
    assert positions[1] == (int((batch["labels"] != -100).sum()),)


def test_the_packed_row_cap_defaults_by_attention_kernel(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """`nll_max_packed_tokens=None` caps packed rows at `DEFAULT_MAX_PACKED_TOKENS` where the kernel computes a packed
    row's whole attention (SDPA, eager) and leaves them uncapped with flash attention; a value is taken as given, and
    a non-positive one is refused with the field's name."""
    model = make_tiny_model(0)
    trainer = make_trainer(model, make_args(tmp_path), generator_tokenizer, retriever_tokenizer)
    assert trainer._max_packed_tokens(model) == DEFAULT_MAX_PACKED_TOKENS == 1024
    model.generator.config._attn_implementation = "flash_attention_2"
    assert trainer._max_packed_tokens(model) is None
    explicit = make_trainer(
        model, make_args(tmp_path / "explicit", nll_max_packed_tokens=300), generator_tokenizer, retriever_tokenizer
    )
    assert explicit._max_packed_tokens(model) == 300
    for name, value in (("nll_max_packed_tokens", 0), ("nll_micro_batch_size", -2), ("nll_max_packed_tokens", 1.5)):
        with pytest.raises(ValueError, match=f"{name} must be a positive number"):
            make_args(tmp_path / "bad", **{name: value})


def test_llm_rank_takes_in_batch_negatives(tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer):
    """`in_batch_negatives=True` with `llm_rank` adds the (own document, other question's candidate) pairs, where it
    used to be ignored: on the same batch and the same sampled documents the retrieval loss is the one without
    negatives plus that second mean, computed here from the model's own all-pairs scores."""
    from jmlr_hf.losses import llm_rank_loss

    model = make_tiny_model(0, retrieval_loss="llm_rank", in_batch_negatives=True, num_candidates=4, num_sampled=4)
    trainer = make_trainer(model, make_args(tmp_path), generator_tokenizer, retriever_tokenizer)
    inputs = JointRetrievalCollator(model.config, retriever_tokenizer, generator_tokenizer)(TOY_ROWS)
    model.eval()  # no dropout: the two passes score alike
    losses = {}
    for negatives in (True, False):
        model.config.in_batch_negatives = negatives
        trainer._metrics["eval"].clear()
        trainer.state.global_step = 0
        trainer.__dict__.pop("_sampling_counters", None)  # the same sampled documents in both passes
        with torch.no_grad():
            trainer.compute_loss(model, inputs)
        losses[negatives] = trainer._metrics["eval"]["retrieval_loss"][-1]
    with torch.no_grad():
        retrieval_inputs = {key: inputs[key] for key in trainer_module.RETRIEVAL_INPUT_KEYS}
        scores = model(**retrieval_inputs, score_all_pairs=True).retrieval_scores
        own_scores, _ = trainer_module.split_in_batch_scores(scores, 4)
        logits = trainer_module.scores_to_logits(scores, own_scores, model.config)
        own, negative = trainer_module.split_in_batch_scores(logits, 4)
    # Every own candidate is sampled when S = N, and the negative term does not depend on their order.
    expected_negative_term = llm_rank_loss(own, torch.zeros_like(own), negative_logits=negative).item()
    assert expected_negative_term > 0.05
    assert losses[True] == pytest.approx(losses[False] + expected_negative_term, abs=1e-5)


@pytest.mark.parametrize(
    "shaping",
    [
        {"llm_rank_pair_weighting": "nll_gap"},
        {"llm_rank_min_nll_gap": 0.3},
        {"llm_rank_min_nll_gap": 0.3, "llm_rank_pair_weighting": "nll_gap"},
    ],
)
def test_llm_rank_pair_shaping_reaches_the_training_loss(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, shaping
):
    """`llm_rank_min_nll_gap` / `llm_rank_pair_weighting` set on the config shape the loss the trainer trains on: the
    logged retrieval loss of a step is `llm_rank_loss` with those options, computed here from the model's own scores
    and the rows' cached NLLs (the retriever-only arm's input), and differs from the paper's plain mean."""
    from jmlr_hf.losses import llm_rank_loss

    nlls = [[0.5, 1.5, 1.0, 0.6], [2.0, 2.05, 1.2, 2.4]]  # gaps from 0.05 to 1.2
    rows = [{**row, "candidate_nlls": row_nlls} for row, row_nlls in zip(TOY_ROWS[:2], nlls, strict=True)]
    model = make_tiny_model(0, retrieval_loss="llm_rank", num_candidates=4, num_sampled=4, **shaping)
    trainer = make_trainer(model, make_args(tmp_path, freeze_generator=True), generator_tokenizer, retriever_tokenizer)
    inputs = JointRetrievalCollator(model.config, retriever_tokenizer, generator_tokenizer)(rows)
    model.eval()
    trainer._metrics["eval"].clear()
    with torch.no_grad():
        trainer.compute_loss(model, inputs)
        logged = trainer._metrics["eval"]["retrieval_loss"][-1]
        retrieval_inputs = {key: inputs[key] for key in trainer_module.RETRIEVAL_INPUT_KEYS}
        scores = model(**retrieval_inputs).retrieval_scores
        logits = trainer_module.scores_to_logits(scores, scores, model.config)
    # S = N: every candidate is sampled, and the pairwise loss does not depend on the order they are sampled in.
    options = {
        "min_nll_gap": model.config.llm_rank_min_nll_gap,
        "weight_by_nll_gap": model.config.llm_rank_pair_weighting == "nll_gap",
    }
    expected = llm_rank_loss(logits, torch.tensor(nlls, dtype=logits.dtype), **options).item()
    plain = llm_rank_loss(logits, torch.tensor(nlls, dtype=logits.dtype)).item()
    assert logged == pytest.approx(expected, abs=1e-5)
    assert abs(expected - plain) > 1e-3


def test_one_sampled_document_without_in_batch_negatives_fails_at_start(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    """S = 1 trains only through in-batch negatives, which a batch of one question does not have: refused before
    training, naming the fix; with two questions per batch it is accepted."""
    model = make_tiny_model(0, retrieval_loss="llm_rank", in_batch_negatives=True, num_sampled=1)
    with pytest.raises(ValueError, match="per_device_train_batch_size >= 2"):
        make_trainer(
            model, make_args(tmp_path, per_device_train_batch_size=1), generator_tokenizer, retriever_tokenizer
        )
    make_trainer(
        model, make_args(tmp_path / "two", per_device_train_batch_size=2), generator_tokenizer, retriever_tokenizer
    )
