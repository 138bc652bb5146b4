"""JMLR answer accuracy as a Hugging Face `evaluate` metric module, loadable offline from its folder.

The formula is [`jmlr_hf.evaluation.metrics.accuracy`] (one definition, called here): the fraction of predictions
equal to their reference, where a prediction `None` or `""` (a reply that names no answer) counts as wrong. It differs from
`evaluate.load("accuracy")`, which is fetched from the Hub at run time and takes integer class ids only.

    import evaluate
    from jmlr_hf.evaluation import metric_module_path
    accuracy = evaluate.load(str(metric_module_path("jmlr_accuracy")))
    accuracy.compute(predictions=["A", None, "C"], references=["A", "B", "D"])  # {"accuracy": 0.333...}
"""

import datasets
import evaluate

from jmlr_hf.evaluation.metrics import accuracy


class JMLRAccuracy(evaluate.Metric):
    """Answer accuracy over string labels (option letters, yes/no/maybe); `None` predictions are wrong."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Answer accuracy of a medical QA model: the fraction of predictions equal to their "
            "reference; a missing (None) prediction counts as wrong.",
            citation="",
            inputs_description="predictions: list of predicted labels (str; '' or None: no answer); references: list of gold "
            "labels (str). Returns {'accuracy': float} (nan for no predictions).",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["jmlr_hf/evaluation/metrics.py"],
        )

    def _compute(self, predictions: list[str | None], references: list[str]) -> dict[str, float]:
        return {"accuracy": accuracy(no_answer_as_none(predictions), references)}


def no_answer_as_none(predictions: list[str | None]) -> list[str | None]:
    """`""` (no answer) as `None`, which the formula counts as wrong: `evaluate` rejects a `None` in the first row
    (it checks that row's type), so callers pass `""` for a reply that names no answer."""
    return [prediction or None for prediction in predictions]
