"""Answer and retrieval metrics as pure functions of predictions and references.

They are the one definition of each formula. `jmlr evaluate` computes them through the `evaluate` library, by the
metric modules shipped in the package (`jmlr_hf/evaluation/metric_modules/`, loaded offline from their folder with
[`jmlr_hf.evaluation.load_metric`]), which call these functions: `evaluate.load("accuracy")` and `evaluate.load("f1")`
would fetch their scripts from the Hugging Face Hub at run time, and `f1` needs scikit-learn besides. The definitions
below are those of `evaluate`'s `accuracy` and of its `f1` with `average="macro"` (scikit-learn's `f1_score`), except
that a prediction may be `None` (an unparseable reply), which is counted as wrong.

Answer metrics:
    * [`accuracy`]: the fraction of predictions equal to their reference;
    * [`macro_f1`]: the unweighted mean over labels of the per-label F1 = 2·TP / (2·TP + FP + FN);
    * [`rouge_l`]: for open answers (MedQuAD), ROUGE-L (Lin 2004) between a generated reply and the reference:
      with LCS the longest common subsequence of their tokens, P = LCS / |reply|, R = LCS / |reference| and
      F = 2PR / (P + R), averaged over the questions. Tokens are lower-cased alphanumeric words, Porter-stemmed, as
      in Google's `rouge-score` package (the implementation behind `evaluate`'s `rouge`), which computes it here.

Retrieval metrics, for one query with a ranked list of document ids and a set R of relevant (gold) ids, binary
relevance rel_i = 1 if the i-th ranked document is in R, else 0 (i is 1-based):
    * [`recall_at_k`] = |R ∩ top-k| / |R|;
    * [`hit_at_k`] = 1 if R ∩ top-k is non-empty, else 0 (what [`jmlr_hf.evaluation.retrieval_metrics`] reports
      as `recall@k`: "a gold document among the top k");
    * [`reciprocal_rank`] = 1 / (rank of the first relevant document), 0 when none is ranked (MRR is its mean);
    * [`ndcg_at_k`] = DCG@k / IDCG@k, DCG@k = Σ_{i=1..k} rel_i / log2(i + 1), and IDCG@k the DCG@k of an ideal
      ranking, with all of R first: Σ_{i=1..min(k, |R|)} 1 / log2(i + 1).
Each is averaged over the queries that have relevant documents ([`mean`]).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Sequence

__all__ = [
    "accuracy",
    "f1_per_label",
    "hit_at_k",
    "macro_f1",
    "mean",
    "ndcg_at_k",
    "reciprocal_rank",
    "recall_at_k",
    "rouge_l",
]


def mean(values: Iterable[float]) -> float:
    """The arithmetic mean, `nan` for no values."""
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def accuracy(predictions: Sequence[Hashable | None], references: Sequence[Hashable]) -> float:
    """The fraction of `predictions` equal to their reference (`None`, an unparseable answer, is wrong).

    `nan` when there are no predictions.
    """
    _check_lengths(predictions, references)
    return mean(float(p is not None and p == r) for p, r in zip(predictions, references))


def rouge_l(predictions: Sequence[str | None], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-L F, precision and recall of `predictions` against `references` (see the module docstring); a `None`
    or empty prediction scores 0. NaN for no predictions."""
    from rouge_score import rouge_scorer

    _check_lengths(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [
        scorer.score(reference, prediction or "")["rougeL"] for prediction, reference in zip(predictions, references)
    ]
    return {
        "rouge_l": mean(score.fmeasure for score in scores),
        "rouge_l_precision": mean(score.precision for score in scores),
        "rouge_l_recall": mean(score.recall for score in scores),
    }


def f1_per_label(
    predictions: Sequence[Hashable | None],
    references: Sequence[Hashable],
    labels: Sequence[Hashable] | None = None,
) -> dict[Hashable, float]:
    """F1 of each label, 2·TP / (2·TP + FP + FN), 0 where that denominator is 0.

    For a label ℓ: TP counts the pairs with prediction = reference = ℓ, FP those predicted ℓ with another reference,
    FN those with reference ℓ predicted otherwise (including `None`). `labels` defaults to the sorted set of the
    references and the non-`None` predictions, as in scikit-learn.
    """
    _check_lengths(predictions, references)
    if labels is None:
        labels = sorted({*references, *(p for p in predictions if p is not None)}, key=str)
    scores = {}
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(predictions, references))
        fp = sum(p == label and r != label for p, r in zip(predictions, references))
        fn = sum(p != label and r == label for p, r in zip(predictions, references))
        scores[label] = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0
    return scores


def macro_f1(
    predictions: Sequence[Hashable | None],
    references: Sequence[Hashable],
    labels: Sequence[Hashable] | None = None,
) -> float:
    """The unweighted mean of [`f1_per_label`] over `labels` (default: the labels seen); `nan` with no labels."""
    return mean(f1_per_label(predictions, references, labels).values())


def recall_at_k(ranked_ids: Sequence[str], relevant_ids: Collection[str], k: int) -> float:
    """|R ∩ top-k| / |R|: the fraction of the relevant documents ranked among the first `k`."""
    relevant = _relevant_set(relevant_ids, k)
    return len(relevant.intersection(ranked_ids[:k])) / len(relevant)


def hit_at_k(ranked_ids: Sequence[str], relevant_ids: Collection[str], k: int) -> float:
    """1.0 if a relevant document is ranked among the first `k`, else 0.0 (success@k)."""
    relevant = _relevant_set(relevant_ids, k)
    return float(any(doc_id in relevant for doc_id in ranked_ids[:k]))


def reciprocal_rank(ranked_ids: Sequence[str], relevant_ids: Collection[str]) -> float:
    """1 / rank of the first relevant document (ranks are 1-based), 0.0 when no relevant document is ranked."""
    relevant = _relevant_set(relevant_ids)
    for rank, doc_id in enumerate(ranked_ids, start=1):
        if doc_id in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked_ids: Sequence[str], relevant_ids: Collection[str], k: int) -> float:
    """nDCG@k with binary relevance: DCG@k / IDCG@k (see the module docstring for both sums)."""
    relevant = _relevant_set(relevant_ids, k)
    dcg = sum(1.0 / math.log2(i + 1) for i, doc_id in enumerate(ranked_ids[:k], start=1) if doc_id in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal


def _relevant_set(relevant_ids: Collection[str], k: int = 1) -> set[str]:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    relevant = set(relevant_ids)
    if not relevant:
        raise ValueError("a retrieval metric needs at least one relevant document id")
    return relevant


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
