"""Bad cached NLLs and option fields of training rows (issue 24).

A frozen LLM's answer NLLs can be cached in the rows (`candidate_nlls`, one per candidate of the row, with
`freeze_generator=True`). Before, a list one longer than the row's candidates was accepted (the last value dropped, so
every NLL could belong to the wrong document) and negative values — log-probabilities passed by mistake, which invert
the preference the retriever learns — were trained on. A row with `options=None` and an answer letter trained as an
open question whose answer is the letter.

The property test draws rows whose cached NLLs are valid or broken one way at a time; the collator must batch the
valid ones with exactly their NLLs and refuse the broken ones with a `ValueError` naming the row and the field.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jmlr_hf.trainer import JointRetrievalCollator
from tests.testing_utils.models import TOY_ROWS
from tests.testing_utils.reliability import record

NUM_CANDIDATES = 4


@pytest.fixture
def collator(make_tiny_model, generator_tokenizer, retriever_tokenizer) -> JointRetrievalCollator:
    config = make_tiny_model(0, num_candidates=NUM_CANDIDATES, num_sampled=2).config
    return JointRetrievalCollator(config, retriever_tokenizer, generator_tokenizer)


def test_one_nll_too_many_is_refused(collator):
    """Before: `[1, 2, 3, 4, 5]` for 4 candidates was batched as `[1, 2, 3, 4]`."""
    row = {**TOY_ROWS[0], "candidate_nlls": [1.0, 2.0, 3.0, 4.0, 5.0]}
    with pytest.raises(
        ValueError, match=r"row 'q1': field 'candidate_nlls' holds 5 values for the row's 4 candidates"
    ):
        collator([row])


def test_negative_nlls_are_refused(collator):
    """Before: log-probabilities (`[-1.2, ...]`) were trained on as NLLs."""
    row = {**TOY_ROWS[0], "candidate_nlls": [-1.2, -0.4, -2.0, -3.1]}
    with pytest.raises(ValueError, match=r"row 'q1': field 'candidate_nlls'\[0\] is -1.2; .* >= 0 .*log-probabilit"):
        collator([row])


def test_options_none_with_an_answer_letter_is_refused(collator):
    """Before: `options=None, answer="B"` trained silently as an open question whose answer is "B"."""
    row = {**TOY_ROWS[1], "options": None}
    with pytest.raises(ValueError, match=r"row 'q2': field 'options' is None"):
        collator([row])
    no_options = {key: value for key, value in TOY_ROWS[1].items() if key != "options"}
    with pytest.raises(
        ValueError, match=r"row 'q2': field 'answer' 'B' is an option letter, but the row has no options"
    ):
        collator([no_options])
    with pytest.raises(ValueError, match=r"row 'q2': field 'options' is a str"):
        collator([{**TOY_ROWS[1], "options": "Liver Pancreas"}])
    with pytest.raises(ValueError, match=r"row 'q2': field 'options'\[1\] is None"):
        collator([{**TOY_ROWS[1], "options": ["Liver", None, "Kidney", "Spleen"]}])


# --------------------------------------------------------------------------------------------------------------------
# Property
# --------------------------------------------------------------------------------------------------------------------

NLL = st.floats(0.0, 50.0)


@st.composite
def cached_row(draw, index: int) -> tuple[dict, str]:
    base = TOY_ROWS[draw(st.integers(0, 1))]
    extra = draw(st.lists(st.text("abcdef ", min_size=3, max_size=20).filter(str.strip), max_size=3))
    candidates = [*base["candidates"], *extra]
    nlls: object = draw(st.lists(NLL, min_size=len(candidates), max_size=len(candidates)))
    fault = draw(st.sampled_from(["valid row"] * 3 + ["wrong length", "negative", "not a finite number"]))
    if fault == "wrong length":
        nlls = draw(
            st.sampled_from(
                [nlls[:-1], [*nlls, 1.0], nlls[: NUM_CANDIDATES - 1], [], " ".join(map(str, nlls)), None, 3.0]
            )
        )
        if nlls is None:  # a row without cached NLLs among rows with them
            fault = "missing in one row"
    elif fault == "negative":
        position = draw(st.integers(0, len(nlls) - 1))
        nlls[position] = -draw(st.floats(1e-6, 20.0))
    elif fault == "not a finite number":
        position = draw(st.integers(0, len(nlls) - 1))
        nlls[position] = draw(st.sampled_from([math.nan, math.inf, -math.inf, None, "1.0", True, [1.0]]))
    return {**base, "id": f"row-{index}", "candidates": candidates, "candidate_nlls": nlls}, fault


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), size=st.integers(1, 4))
def test_cached_nlls_are_batched_exactly_or_refused_by_row_and_field(collator, data, size):
    generated = [data.draw(cached_row(index)) for index in range(size)]
    rows = [row for row, _ in generated]
    faults = [fault for _, fault in generated]
    missing = [i for i, fault in enumerate(faults) if fault == "missing in one row"]
    broken = [i for i, fault in enumerate(faults) if fault != "valid row"]
    if len(missing) == len(rows):  # no row has cached NLLs: nothing to check, the LLM measures them
        collator(rows)
        return
    if missing:  # checked first: a batch either has cached NLLs in every row or in none
        with pytest.raises(ValueError, match=rf"row 'row-{missing[0]}': field 'candidate_nlls' is missing where"):
            collator(rows)
        record("cached NLLs", "missing in one row", "ValueError naming the row and the field")
        return
    if not broken:
        batch = collator(rows)
        expected = [row["candidate_nlls"][:NUM_CANDIDATES] for row in rows]
        assert torch.equal(batch["candidate_nlls"], torch.tensor(expected, dtype=torch.float32))
        for fault in faults:
            record("cached NLLs", fault, "batched with exactly the row's first num_candidates NLLs")
        return
    with pytest.raises(ValueError, match=rf"row 'row-{broken[0]}': field 'candidate_nlls'"):
        collator(rows)
    record("cached NLLs", faults[broken[0]], "ValueError naming the row and the field")
