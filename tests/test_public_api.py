"""The package's top level: every public name a user needs for the whole workflow imports from `jmlr_hf`, is the
object its subpackage defines, and `import jmlr_hf` stays as light as the model (TRL, faiss load on first use)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import jmlr_hf

WORKFLOW = [
    # build or load a model, and save it with both tokenizers
    "JMLRConfig", "JMLRForCausalLM", "save_model", "load_jmlr_checkpoint", "merge_generator_adapter",
    # index a corpus and pre-retrieve candidates
    "DocumentIndex", "BM25Index", "add_candidates", "encode_queries_with", "encode_documents_with", "load_index",
    # data
    "load_task", "load_corpus", "load_named_corpus", "stream_corpus",
    # train and watch the retriever
    "JointRetrievalConfig", "JointRetrievalTrainer", "RetrievalRecallCallback", "CandidateRefreshCallback",
    # evaluate, publish
    "evaluate_model", "rank_candidates", "retrieval_metrics", "push_model", "push_index", "pull",
]  # fmt: skip


@pytest.mark.parametrize("name", WORKFLOW)
def test_the_workflow_imports_from_the_top_level(name):
    assert name in jmlr_hf.__all__ and name in dir(jmlr_hf)
    value = getattr(jmlr_hf, name)
    module = importlib.import_module(value.__module__)
    assert getattr(module, name) is value


def test_all_lists_every_public_name_and_star_import_works():
    assert jmlr_hf.__all__ == sorted(jmlr_hf.__all__)
    namespace: dict = {}
    exec("from jmlr_hf import *", namespace)
    assert set(jmlr_hf.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="no attribute 'NotAName'"):
        jmlr_hf.NotAName  # noqa: B018


def test_import_jmlr_hf_stays_light():
    """`import jmlr_hf` (which the `jmlr` command does first) loads no ML library: every public name is lazy."""
    heavy = ("torch", "transformers", "trl", "faiss", "peft", "datasets")
    code = f"import sys, jmlr_hf; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]"


def test_the_first_model_import_registers_the_auto_classes():
    """A JMLR checkpoint loads through the Auto classes without remote code once a model class is imported."""
    code = (
        "import jmlr_hf\n"
        "from transformers import CONFIG_MAPPING, AutoModelForCausalLM\n"
        "before = 'jmlr' in CONFIG_MAPPING\n"
        "model_class = jmlr_hf.JMLRForCausalLM\n"
        "from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING\n"
        "print(before, MODEL_FOR_CAUSAL_LM_MAPPING[jmlr_hf.JMLRConfig] is model_class)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "False True"
