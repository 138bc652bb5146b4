"""Property-based tests of the retrieval losses and of the retrieval settings that reach them.

Generated cases: batches of 1-3 questions with S = 1..6 documents, random finite logits and NLLs, random padding masks
(at least one valid document per row), and the edge cases the issue names: all NLLs equal, all scores equal, S = 1,
and NaN or ±inf at a valid position (the loss must be NaN, never a finite number made from garbage) or at a padded one
(it must be ignored). Separately, generated retrieval settings (N, S, K with K = N included, λ, τ, β, the loss) must
construct when valid and raise a `ValueError` naming the field when not. About 900 cases per run.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jmlr_hf import JMLRConfig
from jmlr_hf.losses import RETRIEVAL_LOSSES, pairwise_agreement
from jmlr_hf.models.configuration_jmlr import TEMPERATURE_RANGE
from tests.testing_utils.reliability import record

LOSSES = sorted(RETRIEVAL_LOSSES)
FINITE = st.floats(-30, 30, allow_nan=False, width=32)
NON_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])


@st.composite
def batches(draw, min_docs: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(logits, nll, mask)`, `[B, S]`, finite, every row with at least one valid document."""
    rows, docs = draw(st.integers(1, 3)), draw(st.integers(min_docs, 6))
    logits = torch.tensor(draw(st.lists(st.lists(FINITE, min_size=docs, max_size=docs), min_size=rows, max_size=rows)))
    nll = torch.tensor(
        draw(st.lists(st.lists(FINITE.map(abs), min_size=docs, max_size=docs), min_size=rows, max_size=rows))
    )
    mask = torch.tensor(
        draw(st.lists(st.lists(st.booleans(), min_size=docs, max_size=docs), min_size=rows, max_size=rows))
    )
    mask[:, 0] = True
    return logits, nll, mask


def loss_of(name: str, logits: torch.Tensor, nll: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return RETRIEVAL_LOSSES[name](logits, nll, mask=mask)


@settings(max_examples=150, deadline=None)
@given(batch=batches(), name=st.sampled_from(LOSSES))
def test_finite_inputs_give_a_finite_non_negative_loss_with_finite_gradients(batch, name):
    logits, nll, mask = batch
    logits.requires_grad_(True)
    loss = loss_of(name, logits, nll, mask)
    assert loss.shape == () and math.isfinite(loss.item()) and loss.item() >= -1e-5
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[~mask] == 0).all()  # padded documents get no gradient
    record("losses", "finite scores and NLLs", "finite loss >= 0, finite gradients, none on padding")


@settings(max_examples=100, deadline=None)
@given(batch=batches(), name=st.sampled_from(LOSSES), nll_value=FINITE.map(abs))
def test_all_nlls_equal(batch, name, nll_value):
    """No document helps more than another: the pairwise loss has no pair (0, no gradient); the KL losses pull the
    retriever towards the uniform distribution, and are 0 exactly when its scores are equal too."""
    logits, _, mask = batch
    nll = torch.full_like(logits, nll_value)
    loss = loss_of(name, logits, nll, mask)
    assert math.isfinite(loss.item()) and loss.item() >= -1e-5
    if name == "llm_rank":
        assert loss.item() == 0.0
    flat = loss_of(name, torch.zeros_like(logits), nll, mask)
    assert abs(flat.item()) < 1e-5
    record("losses", "all NLLs equal", "finite; 0 for llm_rank and for equal scores")


@settings(max_examples=100, deadline=None)
@given(batch=batches(min_docs=2), name=st.sampled_from(LOSSES), score=FINITE)
def test_all_scores_equal(batch, name, score):
    """A retriever that cannot tell the documents apart: every pair with different NLLs costs log 2 in the pairwise
    loss; the gradient points towards the documents with the lower NLL."""
    _, nll, mask = batch
    logits = torch.full_like(nll, score, requires_grad=True)
    loss = loss_of(name, logits, nll, mask)
    assert math.isfinite(loss.item())
    differing = any(len(set(row[m].tolist())) > 1 for row, m in zip(nll, mask))
    if name == "llm_rank" and differing:
        assert loss.item() == pytest.approx(math.log(2), rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    for row in range(nll.shape[0]):
        valid = mask[row].nonzero().flatten()
        best, worst = valid[nll[row, valid].argmin()], valid[nll[row, valid].argmax()]
        if nll[row, best] < nll[row, worst]:
            assert logits.grad[row, best] <= logits.grad[row, worst]  # descent raises the best document's score
    record("losses", "all scores equal", "finite; log 2 per differing pair (llm_rank); descent favours lower NLL")


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 4), name=st.sampled_from(LOSSES), data=st.data())
def test_one_sampled_document_gives_zero(rows, name, data):
    logits = torch.tensor(data.draw(st.lists(FINITE, min_size=rows, max_size=rows))).reshape(rows, 1)
    nll = torch.tensor(data.draw(st.lists(FINITE.map(abs), min_size=rows, max_size=rows))).reshape(rows, 1)
    assert loss_of(name, logits, nll, None).item() == pytest.approx(0.0, abs=1e-6)
    record("losses", "S = 1", "0: one document carries no preference")


@settings(max_examples=200, deadline=None)
@given(
    batch=batches(),
    name=st.sampled_from([*LOSSES, "pairwise_agreement"]),
    bad=NON_FINITE,
    where=st.sampled_from(["logits", "nll"]),
    padded=st.booleans(),
    data=st.data(),
)
def test_nan_and_inf_are_never_turned_into_a_finite_loss(batch, name, bad, where, padded, data):
    """A non-finite value at a valid position makes the loss NaN (the trainer then stops or skips the step); at a
    padded position it is ignored."""
    logits, nll, mask = batch
    candidates = (~mask if padded else mask).nonzero().tolist()
    if not candidates:  # no padded position in this batch: pad one more document
        logits = torch.cat([logits, torch.zeros_like(logits[:, :1])], dim=1)
        nll = torch.cat([nll, torch.zeros_like(nll[:, :1])], dim=1)
        mask = torch.cat([mask, torch.zeros_like(mask[:, :1])], dim=1)
        candidates = (~mask).nonzero().tolist()
    row, col = data.draw(st.sampled_from(candidates))
    (logits if where == "logits" else nll)[row, col] = bad
    if name == "pairwise_agreement":
        result = pairwise_agreement(logits, nll, mask)
        clean = pairwise_agreement(logits.masked_fill(~mask, 0), nll.masked_fill(~mask, 0), mask)
    else:
        result = loss_of(name, logits, nll, mask)
        clean = loss_of(name, logits.masked_fill(~mask, 0), nll.masked_fill(~mask, 0), mask)
    if padded:
        assert torch.equal(result, clean) or (result.isnan() and clean.isnan())  # agreement: NaN when no pair differs
        record("losses", "NaN or inf under the mask", "ignored: the same result as with a finite value")
    else:
        assert result.isnan(), f"{name} gave {result.item()} for {where}[{row}, {col}] = {bad}"
        record("losses", "NaN or inf input", "NaN loss (never a finite number), caught by the trainer")


@settings(max_examples=250, deadline=None)
@given(
    num_candidates=st.integers(-1, 6),
    num_sampled=st.integers(-1, 7),
    num_context_documents=st.integers(-1, 7),
    retrieval_loss_weight=st.sampled_from([0.0, 0.5, -1.0]),
    retrieval_temperature=st.sampled_from([1e-30, 1e-4, 0.05, 1.0, 1e4, 1e5, float("nan")]),
    lm_temperature=st.sampled_from([1.0, 0.0, 1e6]),
    retrieval_loss=st.sampled_from(["llm_rank", "lsr", "ppl_distill", "ranknet"]),
    in_batch_negatives=st.booleans(),
)
def test_generated_retrieval_settings_construct_or_name_the_field(**settings_):
    expected = expected_error(**settings_)
    if expected is None:
        config = JMLRConfig(**settings_)
        assert config.num_sampled == settings_["num_sampled"]
        record("configuration", "generated retrieval settings", "valid: constructed")
    else:
        with pytest.raises(ValueError, match=expected):
            JMLRConfig(**settings_)
        record("configuration", "generated retrieval settings", "invalid: ValueError naming the field")


def expected_error(
    *,
    num_candidates: int,
    num_sampled: int,
    num_context_documents: int,
    retrieval_loss_weight: float,
    retrieval_temperature: float,
    lm_temperature: float,
    retrieval_loss: str,
    in_batch_negatives: bool,
) -> str | None:
    """The field the first broken rule names (the order of `JMLRConfig.validate_retrieval_settings`), or `None`."""
    low, high = TEMPERATURE_RANGE
    rules = [
        (retrieval_loss not in RETRIEVAL_LOSSES, "retrieval_loss"),
        (num_candidates < 1, "num_candidates"),
        (num_sampled < 1, "num_sampled"),
        (num_context_documents < 0, "num_context_documents"),
        (retrieval_loss_weight < 0, "retrieval_loss_weight"),
        (num_context_documents == 0 and retrieval_loss_weight > 0, "num_context_documents=0"),
        (num_sampled > num_candidates, r"num_sampled \("),
        (num_context_documents > num_candidates, r"num_context_documents \("),
        (not low <= retrieval_temperature <= high, "retrieval_temperature"),
        (not low <= lm_temperature <= high, "lm_temperature"),
        (
            retrieval_loss_weight > 0 and num_sampled < 2 and not in_batch_negatives,
            "num_sampled=",
        ),
    ]
    return next((field for broken, field in rules if broken), None)
