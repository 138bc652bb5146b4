"""End to end on the real small models (SmolLM2-135M-Instruct, all-MiniLM-L6-v2) and the real PubMedQA data."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from jmlr_hf import data as jdata
from jmlr_hf.evaluation import evaluate_model
from jmlr_hf.models import JMLRForCausalLM, merge_generator_adapter
from jmlr_hf.retrieval import add_candidates
from jmlr_hf.retrieval.index import DocumentIndex
from jmlr_hf.trainer import JointRetrievalConfig, JointRetrievalTrainer
from jmlr_hf.utils.demo_models import minilm_path, smollm2_path

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pubmedqa_small():
    data_dir = jdata.default_data_dir()
    path = data_dir / "corpus/pubmedqa_pqal/ori_pqal.json"
    assert path.exists(), f"PubMedQA data not found at {path}: set JMLR_DATA_DIR to the shared data folder"
    train = jdata.load_pubmedqa(str(path), split="train").select(range(6))
    test = jdata.load_pubmedqa(str(path), split="test").select(range(6))
    corpus = jdata.load_pubmedqa_corpus(str(path))
    wanted = set(sum(train["gold_doc_ids"], []) + sum(test["gold_doc_ids"], []))
    # The gold sections of these questions plus 60 other sections as distractors keep the test fast.
    others = [i for i, doc_id in enumerate(corpus["id"]) if doc_id not in wanted][:60]
    keep = [i for i, doc_id in enumerate(corpus["id"]) if doc_id in wanted] + others
    return train, test, corpus.select(keep)


def test_joint_training_with_real_models(pubmedqa_small, generator_tokenizer, retriever_tokenizer, tmp_path):
    train, test, corpus = pubmedqa_small
    model = JMLRForCausalLM.from_components(
        str(smollm2_path()),
        str(minilm_path()),
        num_candidates=4,
        num_sampled=3,
        num_context_documents=1,
        max_document_length=64,
        max_length=384,
    )
    index = DocumentIndex.from_retriever(corpus, model.retriever, retriever_tokenizer, max_length=64)
    train = add_candidates(train, index, model.retriever, retriever_tokenizer, 4, show_progress=False)
    test = add_candidates(test, index, model.retriever, retriever_tokenizer, 4, show_progress=False)
    # Off-the-shelf MiniLM already finds the gold article for these questions.
    assert all(any(c in g for c in cand) for cand, g in zip(train["candidate_ids"], train["gold_doc_ids"]))

    before_retriever = {k: v.clone() for k, v in model.retriever.state_dict().items()}
    args = JointRetrievalConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=1,
        learning_rate=1e-3,
        retriever_learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        disable_tqdm=True,
    )
    trainer = JointRetrievalTrainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=generator_tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "lm_loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        assert torch.isfinite(torch.tensor([entry["lm_loss"], entry["retrieval_loss"]])).all()
        # A real LM conditioned on the real abstract: far below the uniform 10.8 nats over 49k tokens.
        assert entry["lm_loss"] < 5.0
    changed = [not torch.equal(before_retriever[k], v) for k, v in model.retriever.state_dict().items()]
    assert all(changed), "every retriever tensor must have trained"

    merge_generator_adapter(model)
    metrics = evaluate_model(
        model, generator_tokenizer, retriever_tokenizer, test, answer_limit=2, show_progress=False
    )
    assert 0.0 <= metrics["recall@1"] <= 1.0 and metrics["num_answered"] == 2
    assert 0.0 < metrics["answer_nll"] < 10.0

    model.save_pretrained(tmp_path / "final")
    reloaded = JMLRForCausalLM.from_pretrained(tmp_path / "final", dtype=torch.float32).eval()
    model.eval()
    questions, docs = test["question"][:2], [c[:4] for c in test["candidates"][:2]]
    with torch.no_grad():
        assert torch.equal(
            model.score_documents(questions, docs, retriever_tokenizer),
            reloaded.score_documents(questions, docs, retriever_tokenizer),
        )
        ids = generator_tokenizer(["Question: is aspirin useful?"], return_tensors="pt")["input_ids"]
        assert torch.equal(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)
