"""Evaluation of medical QA models: answer accuracy, and retrieval quality where the gold passages are known.

* `qa`: the recipe's evaluation of a JMLR model on pre-retrieved candidates ([`evaluate_model`]) and the scoring
  shared by both harnesses ([`EvaluationModel`]);
* `harness`: the general harness behind `jmlr evaluate` ([`evaluate_dataset`] → [`EvaluationResult`]);
* `retrieval`: ranking candidates and recall / evidence / nDCG / MRR, agreement with the LLM's own preferences, and
  search of the whole corpus;
* `answer_parsing`: the answer in a generated reply; `metrics`: accuracy, F1 and ranking metrics;
* `metric_loading`: those metrics as Hugging Face `evaluate` modules shipped in the package, loaded offline
  ([`load_metric`], [`metric_module_path`]).
"""

from .answer_parsing import extract_answer, extract_choice, extract_decision
from .harness import EvaluationResult, evaluate_dataset
from .metric_loading import METRIC_MODULES, load_metric, metric_module_path
from .qa import (
    EvaluationModel,
    answer_metrics,
    evaluate_model,
    format_comparison,
    generative_metrics,
    single_document_nlls,
    target_nll,
    target_nlls,
)
from .retrieval import (
    corpus_retrieval_metrics,
    llm_preference_metrics,
    rank_candidates,
    ranking_metrics,
    retrieval_metrics,
)
from .settings import check_evaluation_settings

__all__ = [
    "METRIC_MODULES",
    "EvaluationModel",
    "EvaluationResult",
    "answer_metrics",
    "check_evaluation_settings",
    "corpus_retrieval_metrics",
    "evaluate_dataset",
    "evaluate_model",
    "extract_answer",
    "extract_choice",
    "extract_decision",
    "format_comparison",
    "generative_metrics",
    "llm_preference_metrics",
    "load_metric",
    "metric_module_path",
    "rank_candidates",
    "ranking_metrics",
    "retrieval_metrics",
    "single_document_nlls",
    "target_nll",
    "target_nlls",
]
