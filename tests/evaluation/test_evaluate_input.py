"""Bad settings of `jmlr evaluate` and `evaluate_dataset` (issue 24): a batch size, candidate or document count that
cannot be meant is refused where it comes in, naming the flag (or the argument), before any model or question is
loaded — instead of `range() arg 3 must not be zero`, an `AttributeError`, or a silent fallback to the model's
default or to closed book.

One validator (`jmlr_hf.evaluation.check_evaluation_settings`) serves the command line and the Python API; the
property test draws flag sets, valid or broken one way at a time, through the real entry point (`jmlr_hf.cli.main`)
and, for valid sets, runs `evaluate_dataset` with them on a tiny model to see that they are the settings used.
"""

from __future__ import annotations

import pytest
from datasets import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jmlr_hf.cli import main as jmlr_main
from jmlr_hf.evaluation import EvaluationModel, check_evaluation_settings, evaluate_dataset
from jmlr_hf.retrieval import DocumentIndex
from tests.testing_utils.models import RECIPE_CORPUS
from tests.testing_utils.reliability import record

pytestmark = pytest.mark.usefixtures("single_thread")


def evaluate_argv(tmp_path, *flags: str) -> list[str]:
    """A `jmlr evaluate` command line whose model and questions do not exist: any flag that passed validation ends
    in a FileNotFoundError / OSError about them, so the flag errors below are raised before anything is loaded."""
    missing = str(tmp_path / "missing.jsonl")
    return ["evaluate", "--model", str(tmp_path / "no-model"), "--task", "medqa", "--questions", missing, *flags]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch_size", "0"], r"--batch_size must be an integer >= 1, got 0"),  # range() arg 3 must not be zero
        (["--batch_size", "-2"], r"--batch_size must be an integer >= 1, got -2"),  # AttributeError
        (["--num_candidates", "0"], r"--num_candidates must be an integer >= 1, got 0"),  # the model's default
        (["--num_documents", "-1"], r"--num_documents must be an integer >= 0, got -1"),  # closed book
        (["--num_documents", "5", "--num_candidates", "2"], r"--num_documents 5 is more than --num_candidates 2"),
        (["--max_new_tokens", "0"], r"--max_new_tokens must be an integer >= 1, got 0"),
    ],
)
def test_jmlr_evaluate_refuses_bad_counts_before_loading_anything(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        jmlr_main(evaluate_argv(tmp_path, *flags))


@pytest.fixture
def tiny(make_tiny_model, generator_tokenizer, retriever_tokenizer) -> EvaluationModel:
    return EvaluationModel.from_jmlr(make_tiny_model(), generator_tokenizer, retriever_tokenizer)


QUESTIONS = Dataset.from_list(
    [
        {"id": "q1", "question": "Which organ makes insulin?", "options": ["Liver", "Pancreas"], "answer": "B"},
        {"id": "q2", "question": "What treats anaphylaxis?", "options": ["Epinephrine", "Iron"], "answer": "A"},
    ]
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, r"^batch_size must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, r"^batch_size must be an integer >= 1, got 2.5"),
        ({"num_candidates": 0}, r"^num_candidates must be an integer >= 1, got 0"),
        ({"num_documents": -1}, r"^num_documents must be an integer >= 0, got -1"),
        ({"num_documents": 3, "num_candidates": 2}, r"^num_documents 3 is more than num_candidates 2"),
        ({"num_documents": 5}, r"^num_documents 5 is more than num_candidates 4 \(the model's config\)"),
    ],
)
def test_evaluate_dataset_refuses_the_same_settings(tiny, kwargs, message):
    """The Python API, with the model's config filling what is not given."""
    with pytest.raises((TypeError, ValueError), match=message):
        evaluate_dataset(tiny, QUESTIONS, show_progress=False, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Property
# --------------------------------------------------------------------------------------------------------------------

COUNT = st.integers(-3, 6)


@st.composite
def evaluate_flags(draw) -> dict[str, int | bool | None]:
    return {
        "batch_size": draw(st.none() | COUNT),
        "num_candidates": draw(st.none() | COUNT),
        "num_documents": draw(st.none() | COUNT),
        "max_new_tokens": draw(st.none() | COUNT),
        "closed_book": draw(st.booleans()),
    }


def expected_error(
    flags: dict, config_candidates: int | None = None, config_documents: int | None = None
) -> tuple[str, str] | None:
    """`(fault class, flag the error names)` for a broken flag set, `None` for a valid one (the rules, spelled out
    independently of the implementation); the model's config fills the counts not given, where it is known."""
    for name, minimum in (("batch_size", 1), ("num_candidates", 1), ("num_documents", 0), ("max_new_tokens", 1)):
        value = flags[name]
        if value is not None and value < minimum:
            return ("count below its minimum", name)
    documents, candidates = flags["num_documents"], flags["num_candidates"]
    documents = documents if documents is not None else config_documents
    candidates = candidates if candidates is not None else config_candidates
    if documents is not None and candidates is not None and documents > candidates:
        return ("more documents than candidates", "num_documents")
    return None


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(flags=evaluate_flags())
def test_evaluate_flags_are_refused_by_name_or_used_as_given(flags, tiny, retriever_tokenizer, tmp_path):
    argv = evaluate_argv(tmp_path)
    for name, value in flags.items():
        if name == "closed_book":
            argv += ["--closed_book"] if value else []
        elif value is not None:
            argv += [f"--{name}", str(value)]
    # The command line checks what it was given (the model's config is not loaded yet).
    cli_expected = expected_error(flags)
    with pytest.raises((ValueError, FileNotFoundError, OSError)) as raised:
        jmlr_main(argv)
    if cli_expected is None:
        assert not isinstance(raised.value, ValueError) or "--" not in str(raised.value), raised.value
    else:
        assert type(raised.value) is ValueError and f"--{cli_expected[1]}" in str(raised.value), raised.value
    # The Python API, with the tiny model's config (num_candidates=4) filling what is not given.
    api_expected = expected_error(flags, tiny.config.num_candidates, tiny.config.num_context_documents)
    kwargs = {name: value for name, value in flags.items() if name != "closed_book" and value is not None}
    index = None
    if not flags["closed_book"]:
        index = DocumentIndex.from_retriever(
            [{"id": f"d{i}", "text": text} for i, text in enumerate(RECIPE_CORPUS)],
            tiny.jmlr.retriever,
            retriever_tokenizer,
            max_length=32,
            show_progress=False,
        )
    if api_expected is not None:
        with pytest.raises((TypeError, ValueError), match=rf"^{api_expected[1]}"):
            evaluate_dataset(tiny, QUESTIONS, index=index, mode="likelihood", show_progress=False, **kwargs)
        record("evaluate arguments", api_expected[0], "ValueError naming the flag (CLI) or argument (Python)")
        return
    result = evaluate_dataset(tiny, QUESTIONS, index=index, mode="likelihood", show_progress=False, **kwargs)
    documents = 0 if index is None else flags["num_documents"]
    documents = tiny.config.num_context_documents if documents is None else documents
    assert result.settings["num_documents"] == documents
    record("evaluate arguments", "valid settings", "evaluated with exactly the settings given")


def test_check_evaluation_settings_is_the_one_rule():
    """What both entry points call: the flag prefix is the only difference in wording."""
    with pytest.raises(ValueError, match=r"^--batch_size must"):
        check_evaluation_settings(batch_size=0, prefix="--")
    check_evaluation_settings(batch_size=1, num_candidates=2, num_documents=2, max_new_tokens=1)
