"""Bad input to `BM25Index` (issue 24): documents, queries, `k`, `k1` and `b` are checked where they come in, with a
`ValueError` / `TypeError` that names the argument (or the document row), never an Arrow or attribute error from deep
inside, and nothing that changes the result (a fractional `k`, `k1=nan`) is accepted silently.

The property test draws corpora, queries and settings that are valid or broken one way at a time: a valid draw must
give `min(k, len(corpus))` hits per query with finite scores; a broken one must raise the project's error naming what
is wrong. About 1,000 generated cases per run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jmlr_hf.retrieval import BM25Index, DocumentIndex
from tests.testing_utils.reliability import record

CORPUS = [
    {"id": "d0", "text": "vitamin deficiency scurvy bleeding gums", "title": ""},
    {"id": "d1", "text": "vitamin deficiency rickets bones bones", "title": ""},
    {"id": "d2", "text": "insulin glucose diabetes", "title": "endocrine"},
]


# --------------------------------------------------------------------------------------------------------------------
# The cases of the issue
# --------------------------------------------------------------------------------------------------------------------


def test_a_non_string_text_names_the_document():
    """Before: `ArrowTypeError` from building the document store."""
    with pytest.raises(ValueError, match=r"Document 'd1' \(row 1\) has a non-string text of type int"):
        BM25Index([CORPUS[0], {"id": "d1", "text": 42}])


def test_a_query_that_is_not_text_is_named():
    """Before: `retrieve([None])` raised `AttributeError: 'NoneType' object has no attribute 'lower'`."""
    index = BM25Index(CORPUS)
    with pytest.raises(TypeError, match=r"queries\[1\] is a NoneType"):
        index.retrieve(["scurvy", None], k=2, show_progress=False)
    with pytest.raises(ValueError, match=r"queries\[0\] is empty"):
        index.retrieve(["   "], k=2, show_progress=False)


@pytest.mark.parametrize("k", [1.5, 2.0, True, "2", float("nan")])
def test_k_must_be_a_whole_number(k):
    """Before: `k=1.5` was accepted (and sliced a NumPy array with a float bound)."""
    with pytest.raises((TypeError, ValueError), match=r"\bk must be an integer >= 1"):
        BM25Index(CORPUS).retrieve(["scurvy"], k=k, show_progress=False)


@pytest.mark.parametrize(("k1", "b"), [(float("nan"), 0.75), (float("inf"), 0.75), (1.2, float("nan")), ("1", 0.5)])
def test_k1_and_b_must_be_finite_numbers(k1, b):
    """Before: `k1=nan` passed the `k1 <= 0` check (every comparison with NaN is false) and scored NaN."""
    with pytest.raises((TypeError, ValueError), match=r"k1|b "):
        BM25Index(CORPUS, k1=k1, b=b)


def test_the_dense_index_checks_k_and_queries_with_the_same_rules():
    """One validator per kind of input: `DocumentIndex.retrieve` / `search` take `k` and queries as BM25 does."""
    index = DocumentIndex.build(CORPUS, lambda texts: np.ones((len(texts), 4), "float32"), "ones", show_progress=False)
    with pytest.raises(TypeError, match=r"\bk must be an integer >= 1"):
        index.search(np.ones(4, "float32"), k=2.5)
    with pytest.raises(TypeError, match=r"queries\[0\] is a int"):
        index.retrieve([3], lambda texts: np.ones((len(texts), 4), "float32"), k=1, show_progress=False)


# --------------------------------------------------------------------------------------------------------------------
# Property
# --------------------------------------------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(codec="ascii", categories=("L", "N", "Zs")), min_size=1, max_size=30).filter(
    str.strip
)


@st.composite
def bm25_case(draw) -> tuple[list[dict], list, object, object, object, str, str]:
    """`(documents, queries, k, k1, b, fault class, what the error must name)`; the class is "valid call" when
    nothing is broken."""
    n = draw(st.integers(1, 6))
    documents = [{"id": f"d{i}", "text": draw(TEXT), "title": draw(st.none() | TEXT)} for i in range(n)]
    queries: list = draw(st.lists(TEXT, min_size=1, max_size=3))
    k, k1, b = draw(st.integers(1, 8)), draw(st.floats(0.1, 3.0)), draw(st.floats(0.0, 1.0))
    fault = draw(st.sampled_from(["valid call"] * 3 + ["bad document", "bad query", "bad k", "bad k1 or b"]))
    named = ""
    if fault == "bad document":
        row = draw(st.integers(0, n - 1))
        field, value, named = draw(
            st.sampled_from(
                [
                    ("text", None, "non-string text"),
                    ("text", 3, "non-string text"),
                    ("text", ["a list"], "non-string text"),
                    ("text", "  ", "empty text"),
                    ("text", "nul\x00", "NUL character"),
                    ("text", "lone \ud800", "not valid UTF-8"),
                    ("id", None, "has no id"),
                    ("id", True, "id True is a bool"),
                    ("id", 1.5, "id 1.5 is a float"),
                    ("title", 7, "title of type int"),
                ]
            )
        )
        documents[row][field] = value
        if draw(st.booleans()) and n > 1 and row > 0:  # or an id seen before
            documents[row] = {**documents[row], "id": documents[0]["id"], "text": "fine text"}
            named = "Duplicate document id"
    elif fault == "bad query":
        position = draw(st.integers(0, len(queries)))
        bad, named = draw(
            st.sampled_from(
                [
                    (None, "is a NoneType"),
                    (5, "is a int"),
                    (["nested"], "is a list"),
                    ("", "is empty"),
                    (" ", "is empty"),
                ]
            )
        )
        queries.insert(position, bad)
        named = f"queries[{position}] {named}"
        if draw(st.booleans()):
            queries, named = draw(TEXT), "queries must be a list"  # one string where a list is meant
    elif fault == "bad k":
        k = draw(st.sampled_from([0, -1, 1.5, 2.0, True, "3", None, float("nan")]))
        named = "k must be an integer >= 1"
    elif fault == "bad k1 or b":
        k1, b = draw(
            st.sampled_from(
                [(0.0, b), (-1.0, b), (float("nan"), b), (float("inf"), b), (k1, -0.1), (k1, 1.5), (k1, float("nan"))]
                + [("1.2", b), (True, b), (k1, None)]
            )
        )
        named = "k1" if not isinstance(k1, float) or not (0 < k1 < math.inf) else "b "
    return documents, queries, k, k1, b, fault, named


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bm25_case())
def test_bm25_refuses_each_broken_input_by_name_and_answers_valid_ones(case):
    documents, queries, k, k1, b, fault, named = case
    try:
        index = BM25Index(documents, k1=k1, b=b)
        hits = index.retrieve(queries, k=k, show_progress=False)
    except (TypeError, ValueError) as error:
        assert fault != "valid call", error
        assert named in str(error), (named, str(error))
        record("BM25", fault, "TypeError / ValueError naming the argument or the document row")
        return
    assert fault == "valid call", f"{fault} accepted: {named}"
    assert len(hits) == len(queries)
    assert all(len(row) == min(k, len(documents)) and all(math.isfinite(hit["score"]) for hit in row) for row in hits)
    record("BM25", fault, "min(k, N) hits per query, finite scores")
