"""JMLR retrieval metrics (recall@k, hit@k, nDCG@k, MRR) as a Hugging Face `evaluate` metric module, loadable
offline from its folder.

The formulas are those of [`jmlr_hf.evaluation.retrieval.ranking_metrics`] (called here, one definition): binary
relevance, averaged over the queries that have gold ids (queries without any are left out and not counted).

    import evaluate
    from jmlr_hf.evaluation import metric_module_path
    ranking = evaluate.load(str(metric_module_path("jmlr_ranking")))
    ranking.compute(predictions=[["d3", "d1"]], references=[["d1"]], k_values=[1, 2])
    # {"num_questions": 1, "mrr": 0.5, "recall@1": 0.0, "hit@1": 0.0, "ndcg@1": 0.0, "recall@2": 1.0, ...}
"""

import datasets
import evaluate

from jmlr_hf.evaluation.retrieval import ranking_metrics


class JMLRRanking(evaluate.Metric):
    """Ranking quality of retrieved document ids against each query's gold ids."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Retrieval quality with binary relevance: recall@k (share of the gold documents in the top "
            "k), hit@k (a gold document in the top k), nDCG@k and MRR, averaged over the queries with gold ids.",
            citation="",
            inputs_description="predictions: per query, the retrieved document ids, best first; references: per "
            "query, the gold document ids (empty: the query is left out); k_values: the cut-offs (default [1]). "
            "Returns num_questions, mrr and recall@k, hit@k, ndcg@k for each k (num_questions 0 alone when no "
            "query has gold ids).",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            codebase_urls=["jmlr_hf/evaluation/retrieval.py", "jmlr_hf/evaluation/metrics.py"],
        )

    def _compute(
        self, predictions: list[list[str]], references: list[list[str]], k_values: list[int] | None = None
    ) -> dict[str, float]:
        return ranking_metrics(predictions, references, k_values or [1]) or {"num_questions": 0}
