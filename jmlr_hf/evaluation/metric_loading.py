"""The project's metrics as Hugging Face `evaluate` modules, shipped inside the package and loaded from their local
folder, so that they work offline (`evaluate.load("accuracy")` fetches its script from the Hub at run time).

Each module (`metric_modules/<name>/<name>.py`) calls the functions of [`jmlr_hf.evaluation.metrics`] and
[`jmlr_hf.evaluation.retrieval`]: one definition of each formula, reachable through the `evaluate` API as well
(`evaluate.load(str(metric_module_path("jmlr_accuracy")))`, `.add_batch`, `.compute`, `evaluate.combine`). A
module folder can also be published as an `evaluate` Space; loading it there needs `jmlr_hf` installed.

* `jmlr_accuracy`: answer accuracy (`None` predictions are wrong);
* `jmlr_macro_f1`: macro-averaged F1 (PubMedQA's decisions);
* `jmlr_ranking`: recall@k, hit@k, nDCG@k and MRR of retrieved ids against gold ids;
* `jmlr_rouge_l`: ROUGE-L of generated open answers (MedQuAD) against their reference.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import evaluate

METRIC_MODULES = ("jmlr_accuracy", "jmlr_macro_f1", "jmlr_ranking", "jmlr_rouge_l")
MODULES_DIR = Path(__file__).resolve().parent / "metric_modules"


def metric_module_path(name: str) -> Path:
    """The folder of a shipped metric module: what `evaluate.load` takes to load it without the Hub."""
    if name not in METRIC_MODULES:
        raise ValueError(f"Unknown metric module {name!r}: the package ships {', '.join(METRIC_MODULES)}")
    return MODULES_DIR / name


@cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """`evaluate.load` of a shipped module, from its local folder (no network), its data kept in memory.

    In memory, because a metric computed once per evaluation does not need `evaluate`'s on-disk cache (and its lock
    files); cached per process, since the module is copied and imported at each `evaluate.load`.
    """
    import evaluate

    return evaluate.load(str(metric_module_path(name)), keep_in_memory=True)


__all__ = ["METRIC_MODULES", "load_metric", "metric_module_path"]
