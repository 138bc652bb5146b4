"""JMLR macro-F1 (PubMedQA's yes/no/maybe decisions) as a Hugging Face `evaluate` metric module, loadable offline.

The formula is [`jmlr_hf.evaluation.metrics.macro_f1`] (one definition, called here): the unweighted mean over labels
of 2·TP / (2·TP + FP + FN), as scikit-learn's `f1_score(average="macro")`, except that a prediction `None` or `""`
(no answer) counts as wrong and scikit-learn is not needed.

    import evaluate
    from jmlr_hf.evaluation import metric_module_path
    f1 = evaluate.load(str(metric_module_path("jmlr_macro_f1")))
    f1.compute(predictions=["yes", "no", None], references=["yes", "maybe", "no"], labels=["yes", "no", "maybe"])
"""

import datasets
import evaluate

from jmlr_hf.evaluation.metrics import macro_f1


class JMLRMacroF1(evaluate.Metric):
    """Macro-averaged F1 over string labels; `labels` fixes the label set (default: the labels seen)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Macro-averaged F1 of a classification (e.g. PubMedQA's yes/no/maybe): the unweighted mean "
            "over labels of 2TP / (2TP + FP + FN); a missing (None) prediction counts as wrong.",
            citation="",
            inputs_description="predictions: list of predicted labels (str; '' or None: no answer); references: list of gold "
            "labels (str); labels (optional): the labels to average over. Returns {'macro_f1': float}.",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["jmlr_hf/evaluation/metrics.py"],
        )

    def _compute(
        self, predictions: list[str | None], references: list[str], labels: list[str] | None = None
    ) -> dict[str, float]:
        # `""` (no answer) as `None`, as in jmlr_accuracy: not a label of its own, a wrong prediction.
        return {"macro_f1": macro_f1([prediction or None for prediction in predictions], references, labels)}
