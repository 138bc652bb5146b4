"""jmlr_hf: JMLR (Joint Medical LLM and Retrieval Training) for the Hugging Face stack.

Layout (imports go one way: models ← retrieval, data, evaluation ← trainer, hub ← scripts, cli):

* `models`: `JMLRConfig`, `JMLRForCausalLM` (the remote code) and helpers (PEFT, saving, loading);
* `losses`: the retrieval losses (`llm_rank`, `lsr`, `ppl_distill`);
* `trainer`: `JointRetrievalConfig` + `JointRetrievalTrainer` (TRL), the collator, callbacks;
* `retrieval`: the faiss `DocumentIndex` and pre-retrieval;
* `data`: QA sets, corpora, MedQA-Reason-style data sets, splits and named tasks;
* `evaluation`: the recipe's metrics and the `jmlr evaluate` harness;
* `hub`: publishing models, indices and data sets, and their cards;
* `utils`: crash-safe writes, the offline demo models, plots;
* `cli`, `scripts`: the `jmlr` command and the training script behind `recipes/train.py`.

Every public name loads on first use, so `import jmlr_hf` imports neither torch nor transformers (the `jmlr` command
answers `--help` in a fraction of a second). Importing `jmlr_hf.models` — which any model class, loader or trainer
does — registers the `jmlr` model type with the transformers Auto classes; a saved model also loads without this
package through its remote code (`trust_remote_code=True`).
"""

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public names that live in heavier subpackages (TRL, faiss, datasets), imported when first used. What a user needs
# for the whole workflow, from the top: load or build a model, index a corpus, pre-retrieve candidates, train,
# watch the retriever, evaluate, save and publish (the README's quickstart imports only from here).
_LAZY = {
    # models: the model (importing it registers the Auto classes), saving and loading with both tokenizers
    "JMLRConfig": "models",
    "JMLRForCausalLM": "models",
    "JMLRRetriever": "models",
    "JMLRAnswer": "models",
    "JMLRIndex": "models",
    "save_model": "models",
    "load_jmlr_checkpoint": "models",
    "merge_generator_adapter": "models",
    # trainer
    "JointRetrievalConfig": "trainer",
    "JointRetrievalTrainer": "trainer",
    "JointRetrievalCollator": "trainer",
    "RetrievalRecallCallback": "trainer",
    "CandidateRefreshCallback": "trainer",
    "NonFiniteLossError": "trainer",
    # retrieval: the index, the lexical first stage, pre-retrieval
    "DocumentIndex": "retrieval",
    "BM25Index": "retrieval",
    "StaleIndexError": "retrieval",
    "add_candidates": "retrieval",
    "encode_documents_with": "retrieval",
    "encode_queries_with": "retrieval",
    "load_index": "retrieval",
    # data
    "DataFormatError": "data",
    "load_corpus": "data",
    "load_named_corpus": "data",
    "load_task": "data",
    "stream_corpus": "data",
    # evaluation
    "EvaluationModel": "evaluation",
    "evaluate_dataset": "evaluation",
    "evaluate_model": "evaluation",
    "rank_candidates": "evaluation",
    "retrieval_metrics": "evaluation",
    # hub
    "pull": "hub",
    "push_model": "hub",
    "push_index": "hub",
}

if TYPE_CHECKING:
    from .data import DataFormatError, load_corpus, load_named_corpus, load_task, stream_corpus
    from .evaluation import EvaluationModel, evaluate_dataset, evaluate_model, rank_candidates, retrieval_metrics
    from .hub import pull, push_index, push_model
    from .models import (
        JMLRAnswer,
        JMLRConfig,
        JMLRForCausalLM,
        JMLRIndex,
        JMLRRetriever,
        load_jmlr_checkpoint,
        merge_generator_adapter,
        save_model,
    )
    from .retrieval import (
        BM25Index,
        DocumentIndex,
        StaleIndexError,
        add_candidates,
        encode_documents_with,
        encode_queries_with,
        load_index,
    )
    from .trainer import (
        CandidateRefreshCallback,
        JointRetrievalCollator,
        JointRetrievalConfig,
        JointRetrievalTrainer,
        NonFiniteLossError,
        RetrievalRecallCallback,
    )


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BM25Index",
    "CandidateRefreshCallback",
    "DataFormatError",
    "DocumentIndex",
    "EvaluationModel",
    "JMLRAnswer",
    "JMLRConfig",
    "JMLRForCausalLM",
    "JMLRIndex",
    "JMLRRetriever",
    "JointRetrievalCollator",
    "JointRetrievalConfig",
    "JointRetrievalTrainer",
    "NonFiniteLossError",
    "RetrievalRecallCallback",
    "StaleIndexError",
    "__version__",
    "add_candidates",
    "encode_documents_with",
    "encode_queries_with",
    "evaluate_dataset",
    "evaluate_model",
    "load_corpus",
    "load_index",
    "load_jmlr_checkpoint",
    "load_named_corpus",
    "load_task",
    "merge_generator_adapter",
    "pull",
    "push_index",
    "push_model",
    "rank_candidates",
    "retrieval_metrics",
    "save_model",
    "stream_corpus",
]
