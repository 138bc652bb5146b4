"""The metric functions against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from jmlr_hf.evaluation.metrics import (
    accuracy,
    f1_per_label,
    hit_at_k,
    macro_f1,
    mean,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
)


def test_accuracy_counts_unparseable_as_wrong():
    # Right: 1st and 4th; the 3rd is unparseable (None), so wrong.
    assert accuracy(["A", "B", None, "C"], ["A", "C", "B", "C"]) == 0.5
    assert math.isnan(accuracy([], []))
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        accuracy(["A", "B"], ["A"])


# references  yes yes yes no  no    maybe
# predictions yes yes no  no  maybe None
REFERENCES = ["yes", "yes", "yes", "no", "no", "maybe"]
PREDICTIONS = ["yes", "yes", "no", "no", "maybe", None]


def test_f1_per_label_on_a_small_confusion():
    scores = f1_per_label(PREDICTIONS, REFERENCES)
    # yes:   TP 2 (rows 1, 2), FP 0, FN 1 (row 3)              -> 2*2 / (2*2 + 0 + 1) = 4/5
    # no:    TP 1 (row 4), FP 1 (row 3), FN 1 (row 5)          -> 2 / (2 + 1 + 1)     = 1/2
    # maybe: TP 0, FP 1 (row 5), FN 1 (row 6, unparseable)     -> 0 / (0 + 1 + 1)     = 0
    assert scores == pytest.approx({"yes": 0.8, "no": 0.5, "maybe": 0.0})
    # Labels default to those seen (references and non-None predictions), sorted.
    assert list(scores) == ["maybe", "no", "yes"]


def test_macro_f1_on_a_small_confusion():
    # (4/5 + 1/2 + 0) / 3 = 1.3 / 3
    assert macro_f1(PREDICTIONS, REFERENCES) == pytest.approx(1.3 / 3)
    # An explicit label that never occurs has F1 0 (0/0 taken as 0): (0.8 + 0.5 + 0 + 0) / 4.
    assert macro_f1(PREDICTIONS, REFERENCES, labels=["yes", "no", "maybe", "unsure"]) == pytest.approx(0.325)
    # All right: every label has F1 1.
    assert macro_f1(REFERENCES, REFERENCES) == 1.0
    # All unparseable: TP 0 everywhere.
    assert macro_f1([None] * 6, REFERENCES) == 0.0


# One query: five ranked documents, three relevant ones of which two are ranked (2nd and 4th), g3 is not.
RANKED = ["x", "g1", "y", "g2", "z"]
RELEVANT = {"g1", "g2", "g3"}


def test_recall_and_hit_at_k():
    # recall@k = |R ∩ top-k| / |R| with |R| = 3.
    assert recall_at_k(RANKED, RELEVANT, 1) == 0.0
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, RELEVANT, 4) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, RELEVANT, 10) == pytest.approx(2 / 3)
    assert hit_at_k(RANKED, RELEVANT, 1) == 0.0
    assert hit_at_k(RANKED, RELEVANT, 2) == 1.0


def test_reciprocal_rank_and_mrr():
    assert reciprocal_rank(RANKED, RELEVANT) == 0.5  # first relevant at rank 2
    assert reciprocal_rank(["g1", "x"], {"g1"}) == 1.0
    assert reciprocal_rank(["x", "y"], {"g1"}) == 0.0  # not ranked at all
    # MRR over the three queries: (1/2 + 1 + 0) / 3.
    assert mean([0.5, 1.0, 0.0]) == 0.5
    assert math.isnan(mean([]))


def test_ndcg_at_k_binary_relevance():
    log2 = math.log2
    # k = 5: DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161 (ranks 2 and 4);
    #        IDCG = 1/log2(2) + 1/log2(3) + 1/log2(4) = 1 + 0.63093 + 0.5 = 2.13093 (three relevant first);
    #        nDCG@5 = 1.06161 / 2.13093 = 0.49819.
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.49819, abs=1e-5)
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx((1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3) + 0.5))
    # k = 2: DCG = 1/log2(3) = 0.63093; IDCG = 1 + 1/log2(3) = 1.63093; nDCG@2 = 0.38685.
    assert ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.38685, abs=1e-5)
    # k = 1: nothing relevant first.
    assert ndcg_at_k(RANKED, RELEVANT, 1) == 0.0
    # One relevant document at rank 3: DCG = 1/log2(4) = 0.5, IDCG = 1, nDCG@5 = 0.5.
    assert ndcg_at_k(["x", "y", "g", "z"], {"g"}, 5) == 0.5
    # An ideal ranking scores 1.
    assert ndcg_at_k(["g1", "g2", "x"], {"g1", "g2"}, 3) == pytest.approx(1.0)


def test_retrieval_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="relevant"):
        recall_at_k(RANKED, set(), 1)
    with pytest.raises(ValueError, match="relevant"):
        reciprocal_rank(RANKED, [])
    with pytest.raises(ValueError, match="k must be at least 1"):
        ndcg_at_k(RANKED, RELEVANT, 0)
