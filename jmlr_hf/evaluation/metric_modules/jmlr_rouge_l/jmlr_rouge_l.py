"""JMLR ROUGE-L as a Hugging Face `evaluate` metric module, loadable offline from its folder.

The formula is [`jmlr_hf.evaluation.metrics.rouge_l`] (one definition, called here): mean ROUGE-L F, precision and
recall with Porter stemming, by Google's `rouge-score` package; an empty reply scores 0.

    import evaluate
    from jmlr_hf.evaluation import metric_module_path
    rouge = evaluate.load(str(metric_module_path("jmlr_rouge_l")))
    rouge.compute(predictions=["gout is treated"], references=["gout attacks are treated"])
"""

import datasets
import evaluate

from jmlr_hf.evaluation.metrics import rouge_l


class JMLRRougeL(evaluate.Metric):
    """ROUGE-L of generated open answers against reference answers."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="ROUGE-L (longest common subsequence) F, precision and recall of generated answers against "
            "reference answers, averaged over the questions; an empty reply scores 0.",
            citation="Lin, C.-Y. (2004). ROUGE: A Package for Automatic Evaluation of Summaries. ACL Workshop.",
            inputs_description="predictions: list of generated answers (str, '' for none); references: list of "
            "reference answers (str). Returns {'rouge_l', 'rouge_l_precision', 'rouge_l_recall'} (nan for none).",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["jmlr_hf/evaluation/metrics.py"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        return rouge_l(predictions, references)
