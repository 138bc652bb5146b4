"""`CandidateRefreshCallback`: the training questions' candidates re-retrieved every few steps (Atlas' refresh)."""

from __future__ import annotations

import json

import pytest

from jmlr_hf.trainer import CandidateRefreshCallback, JointRetrievalTrainer
from tests.testing_utils.models import TOY_ROWS
from tests.testing_utils.training import make_args, make_trainer

pytestmark = pytest.mark.usefixtures("single_thread")


def reversed_candidates(model) -> dict[str, list[str]]:
    """A stand-in for "rebuild the index and re-retrieve": every question's candidates in the opposite order."""
    return {row["id"]: list(reversed(row["candidates"])) for row in TOY_ROWS}


ORIGINAL = {tuple(row["candidates"]) for row in TOY_ROWS}
REFRESHED = {tuple(reversed(row["candidates"])) for row in TOY_ROWS}


def as_set(batch_documents: list[list[str]]) -> set[tuple[str, ...]]:
    """A batch's candidate lists, whatever order the sampler put its rows in (the toy texts are never cut)."""
    return {tuple(documents) for documents in batch_documents}


@pytest.fixture
def seen_documents(monkeypatch):
    """The candidate texts of every training batch, in order."""
    batches: list[list[list[str]]] = []
    original = JointRetrievalTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        if model.training:
            batches.append(inputs["documents"])
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(JointRetrievalTrainer, "compute_loss", recording)
    return batches


def test_candidates_are_refreshed_every_n_steps(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, seen_documents
):
    calls = []

    def refresh(model):
        calls.append(model.retriever.weights_fingerprint())
        return reversed_candidates(model)

    model = make_tiny_model(0)
    args = make_args(tmp_path, max_steps=3, per_device_train_batch_size=2)
    trainer = make_trainer(
        model,
        args,
        generator_tokenizer,
        retriever_tokenizer,
        rows=TOY_ROWS,
        callbacks=[CandidateRefreshCallback(refresh, every_steps=1)],
    )
    trainer.train()
    assert len(calls) == 2 and calls[0] != calls[1]  # after steps 1 and 2 (not after the last), each time retrained
    first, *later = seen_documents
    assert as_set(first) == ORIGINAL
    assert later and all(as_set(docs) == REFRESHED for docs in later)  # after a refresh: the refreshed candidates
    saved = json.loads((tmp_path / "out" / "refreshed_candidates" / "step-2.json").read_text())
    assert saved == reversed_candidates(model)


def test_a_resumed_run_continues_with_the_refreshed_candidates(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, seen_documents
):
    args = make_args(tmp_path, max_steps=2, per_device_train_batch_size=2, save_strategy="steps", save_steps=1)
    callback = CandidateRefreshCallback(reversed_candidates, every_steps=1)
    make_trainer(
        make_tiny_model(0), args, generator_tokenizer, retriever_tokenizer, rows=TOY_ROWS, callbacks=[callback]
    ).train()
    seen_documents.clear()
    resumed = make_trainer(
        make_tiny_model(0), args, generator_tokenizer, retriever_tokenizer, rows=TOY_ROWS, callbacks=[callback]
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-1"))
    assert len(seen_documents) == 1  # step 2 again, with the candidates refreshed after step 1
    assert as_set(seen_documents[0]) == REFRESHED


def test_refresh_needs_the_dataloader_in_the_training_process(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer
):
    args = make_args(tmp_path, dataloader_num_workers=1)
    trainer = make_trainer(
        make_tiny_model(0),
        args,
        generator_tokenizer,
        retriever_tokenizer,
        callbacks=[CandidateRefreshCallback(reversed_candidates, every_steps=1)],
    )
    with pytest.raises(ValueError, match="dataloader_num_workers=0"):
        trainer.train()
    with pytest.raises(ValueError, match="every_steps must be positive"):
        CandidateRefreshCallback(reversed_candidates, every_steps=0)


def test_a_refresh_applies_to_rows_with_integer_ids(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, seen_documents
):
    """Row ids are often integers (a data set's row numbers); the refreshed candidates, saved as JSON, have string
    keys. A refresh must reach such rows, not be looked up under the integer and silently ignored."""
    rows = [{**row, "id": index} for index, row in enumerate(TOY_ROWS)]

    def refresh(model) -> dict[int, list[str]]:
        return {row["id"]: list(reversed(row["candidates"])) for row in rows}

    args = make_args(tmp_path, max_steps=2, per_device_train_batch_size=2)
    trainer = make_trainer(
        make_tiny_model(0),
        args,
        generator_tokenizer,
        retriever_tokenizer,
        rows=rows,
        callbacks=[CandidateRefreshCallback(refresh, every_steps=1)],
    )
    trainer.train()
    assert [as_set(docs) for docs in seen_documents] == [ORIGINAL, REFRESHED]


def test_the_micro_batch_after_a_refresh_uses_the_refreshed_candidates_as_a_resumed_run_does(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, seen_documents
):
    """An epoch of several batches: the dataloader has already collated the next micro-batch (accelerate fetches one
    ahead) when a refresh happens at the end of a step. That micro-batch must train on the refreshed candidates too,
    as it does in a run resumed from the checkpoint of that step; otherwise the two runs differ by one micro-batch."""
    rows = TOY_ROWS * 4  # 4 batches of 2 per epoch
    args = make_args(tmp_path, max_steps=3, per_device_train_batch_size=2, save_strategy="steps", save_steps=1)

    def which(batch_documents: list[list[str]]) -> str:
        documents = as_set(batch_documents)  # a batch may hold one row twice
        return "original" if documents <= ORIGINAL else "refreshed" if documents <= REFRESHED else "mixed"

    def run(resume_from_checkpoint: str | None = None) -> list[str]:
        seen_documents.clear()
        trainer = make_trainer(
            make_tiny_model(0),
            args,
            generator_tokenizer,
            retriever_tokenizer,
            rows=rows,
            callbacks=[CandidateRefreshCallback(reversed_candidates, every_steps=1)],
        )
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        return [which(docs) for docs in seen_documents]

    uninterrupted = run()
    assert uninterrupted == ["original", "refreshed", "refreshed"]
    resumed = run(str(tmp_path / "out" / "checkpoint-1"))
    assert resumed == uninterrupted[1:]
