"""The `>>>` examples in the public classes' docstrings run, and print what they say (offline: tiny or demo models)."""

from __future__ import annotations

import doctest
import os

import pytest

from jmlr_hf import DocumentIndex, JMLRConfig, JMLRForCausalLM, JointRetrievalConfig, JointRetrievalTrainer

EXAMPLES = [JMLRConfig, JMLRForCausalLM, JointRetrievalConfig, DocumentIndex]


def run_examples(obj, tmp_path) -> doctest.TestResults:
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    (test,) = finder.find(obj)
    assert test.examples, f"{obj.__name__} has no >>> example"
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the examples write `out/`
    try:
        runner.run(test)
    finally:
        os.chdir(cwd)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("obj", EXAMPLES, ids=lambda obj: obj.__name__)
def test_docstring_example(obj, tmp_path, single_thread):
    result = run_examples(obj, tmp_path)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.integration
def test_trainer_docstring_example(tmp_path, single_thread):
    """One step of joint training on the demo models (SmolLM2-135M + MiniLM)."""
    result = run_examples(JointRetrievalTrainer, tmp_path)
    assert result.failed == 0 and result.attempted > 0
