"""Property-based test of the joint collator: generated training rows, valid or broken field by field.

A broken field is one of the shapes seen in real data sets: missing, null, the wrong type, empty or blank text,
`candidates` as one string, a null or blank candidate, too few candidates, an answer letter that is not an option.
The collator must batch a valid row and stop a broken one with a `ValueError` that names the row and the field —
never another exception, never a batch. About 2,000 generated rows per run.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jmlr_hf.trainer import JointRetrievalCollator
from tests.testing_utils.reliability import record

NUM_CANDIDATES = 4
WORDS = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N", "Zs", "P")), min_size=1, max_size=40
).filter(str.strip)
NOT_TEXT = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.booleans(), st.lists(WORDS, max_size=2))
BLANK = st.sampled_from(["", "  ", "\n"])
FIELDS = ("question", "answer", "candidates", "options")


@st.composite
def training_row(draw, index: int) -> tuple[dict, str | None, str]:
    """A row, the field that breaks it (`None`: valid) and the fault class (tests/testing_utils/reliability.py)."""
    options = draw(st.lists(WORDS, min_size=2, max_size=4))
    row = {
        "id": f"row-{index}",
        "question": draw(WORDS),
        "options": options,
        "answer": draw(st.sampled_from("ABCD"[: len(options)])),
        "rationale": draw(st.one_of(st.none(), WORDS)),
        "candidates": draw(st.lists(WORDS, min_size=NUM_CANDIDATES, max_size=NUM_CANDIDATES + 3)),
    }
    broken = draw(st.one_of(st.none(), st.sampled_from(FIELDS)))
    fault = "valid row"
    if broken in ("question", "answer"):
        fault, row[broken] = draw(
            st.one_of(
                NOT_TEXT.map(lambda value: ("missing, null or wrong type", value)),
                BLANK.map(lambda value: ("blank text", value)),
            )
        )
    elif broken == "candidates":
        candidates = row["candidates"]
        fault, row["candidates"] = draw(
            st.one_of(
                st.just(("candidates as one string", " ".join(candidates))),  # would be split into characters
                st.just(("missing, null or wrong type", None)),
                st.lists(WORDS, max_size=NUM_CANDIDATES - 1).map(lambda few: ("bad candidate", few)),  # too few
                st.tuples(st.integers(0, NUM_CANDIDATES - 1), st.one_of(st.none(), BLANK, st.integers())).map(
                    lambda spec: ("bad candidate", [*candidates[: spec[0]], spec[1], *candidates[spec[0] + 1 :]])
                ),
            )
        )
    elif broken == "options":  # the answer letter is not among the options
        row["answer"] = "ABCDE"[len(options)]
        fault = "answer letter not an option"
    return row, broken, fault


@pytest.fixture
def collator(make_tiny_model, generator_tokenizer, retriever_tokenizer) -> JointRetrievalCollator:
    config = make_tiny_model(0, num_candidates=NUM_CANDIDATES, num_sampled=2).config
    return JointRetrievalCollator(config, retriever_tokenizer, generator_tokenizer)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), size=st.integers(1, 9))
def test_collator_batches_valid_rows_and_names_the_first_broken_one(collator, data, size):
    generated = [data.draw(training_row(index)) for index in range(size)]
    rows = [row for row, _, _ in generated]
    broken = [(row["id"], field) for row, field, _ in generated if field is not None]
    if not broken:
        batch = collator(rows)
        assert batch["questions"] == [row["question"] for row in rows]
        assert [len(documents) for documents in batch["documents"]] == [NUM_CANDIDATES] * size
        assert batch["row_ids"] == [row["id"] for row in rows]
    else:
        row_id, field = broken[0]
        named = "answer" if field == "options" else field
        with pytest.raises(ValueError, match=rf"row '{row_id}'(: field '{named}'| has no '{named}')"):
            collator(rows)
    # Rows up to the first broken one were checked (and batched when none is): record those.
    first_broken = next((i for i, (_, field, _) in enumerate(generated) if field is not None), len(generated) - 1)
    checked = generated[: first_broken + 1]
    for _, _, fault in checked:
        record("collator", fault, "batched" if fault == "valid row" else "ValueError naming the row and the field")
