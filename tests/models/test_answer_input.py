"""Bad input to `JMLRForCausalLM.answer` and `jmlr answer` (issue 24): the question and the options are checked
where they come in, by the rules the loaders apply to a data file's questions and options, and a question that cannot
fit the model's `max_length` is refused instead of being generated from at full length.

Before, an empty question was answered, a string as `options` was split into letters (`A. L / B. i / C. v ...`), a
list of questions was joined into one prompt, 27 options raised `IndexError`, a number raised `'int' object is not
iterable`, and a 1M-character question went whole into the prompt (123 s). The validators live in the remote code
(`jmlr_hf/models/modeling_jmlr.py`), so a model loaded from the Hub without `jmlr_hf` checks the same way.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jmlr_hf.cli import main as jmlr_main
from jmlr_hf.models import OPTION_LETTERS
from jmlr_hf.retrieval import DocumentIndex
from tests.testing_utils.models import RECIPE_CORPUS
from tests.testing_utils.reliability import record

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def answering(generator_tokenizer, retriever_tokenizer):
    """A tiny JMLR model (max_length 256) with an index over six passages, and a call of its `answer`."""
    import torch

    from jmlr_hf import JMLRForCausalLM
    from tests.testing_utils.models import tiny_config

    torch.manual_seed(0)
    model = JMLRForCausalLM(tiny_config(generator_tokenizer, retriever_tokenizer)).eval()
    documents = [{"id": f"d{i}", "text": text} for i, text in enumerate(RECIPE_CORPUS)]
    index = DocumentIndex.from_retriever(documents, model.retriever, retriever_tokenizer, max_length=32)

    def answer(question, options=None):
        return model.answer(
            question, generator_tokenizer, retriever_tokenizer, options=options, index=index, max_new_tokens=2
        )

    return answer


@pytest.mark.parametrize(
    ("question", "options", "error", "message"),
    [
        ("", None, ValueError, r"^question: empty"),
        ("   \n", None, ValueError, r"^question: empty"),
        ("Which organ makes insulin?", "Liver", TypeError, r"^options must be a list of option texts, got a str"),
        (["Which organ?", "What treats it?"], None, TypeError, r"^question must be one question as a string"),
        ("Pick one.", [f"option {i}" for i in range(27)], ValueError, r"^options: expected 2 to 10 options, got 27"),
        (7, None, TypeError, r"^question must be one question as a string, got int"),
        ("word " * 2000 + "?", None, ValueError, r"^question: .* tokens, more than max_length=256"),
    ],
    ids=["empty", "blank", "options as one string", "list of questions", "27 options", "a number", "too long"],
)
def test_answer_refuses_each_case_of_the_issue(answering, question, options, error, message):
    with pytest.raises(error, match=message):
        answering(question, options)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["   "], r"^question: empty"),
        (["Which organ makes insulin?", "--options", "Liver"], r"^--options: expected 2 to 10 options, got 1"),
        (["Which organ makes insulin?", "--options", "Liver", "  "], r"^--options\[1\] \(option B\) is empty"),
        (["Which organ makes insulin?", "--max_new_tokens", "0"], r"^--max_new_tokens must be an integer >= 1"),
    ],
)
def test_jmlr_answer_checks_its_arguments_before_loading_the_model(tmp_path, argv, message):
    """Before: the model was loaded (here: does not exist, so an OSError) and an empty question answered."""
    with pytest.raises(ValueError, match=message):
        jmlr_main(["answer", "--model", str(tmp_path / "no-model"), *argv])


# --------------------------------------------------------------------------------------------------------------------
# Property
# --------------------------------------------------------------------------------------------------------------------

TEXT = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N", "Zs", "P")), min_size=1, max_size=40
).filter(lambda text: text.strip() and text.strip().lower() not in ("nan", "none", "null", "n/a"))
LONG = "word " * 400  # more than max_length=256 tokens


@st.composite
def answer_call(draw) -> tuple[object, object, str, type | None, str]:
    """`(question, options, fault class, error type, what the message starts with)`; error type None: valid."""
    question: object = draw(TEXT)
    options: object = draw(st.none() | st.just([]) | st.lists(TEXT, min_size=2, max_size=len(OPTION_LETTERS)))
    fault = draw(st.sampled_from(["valid call"] * 3 + ["bad question", "bad options"]))
    if fault == "bad question":
        question, error, start = draw(
            st.sampled_from(
                [
                    (None, TypeError, "question must be one question as a string"),
                    (3, TypeError, "question must be one question as a string"),
                    (["a", "b"], TypeError, "question must be one question as a string"),
                    ("", ValueError, "question: empty"),
                    ("\t ", ValueError, "question: empty"),
                    ("nan", ValueError, "question: 'nan' is a missing-value marker"),
                    ("None", ValueError, "question: 'None' is a missing-value marker"),
                    (f"{question}\x00", ValueError, "question: contains a NUL character"),
                    (f"{question}\ud800", ValueError, "question: not valid UTF-8"),
                    (LONG + str(question), ValueError, "question: "),
                ]
            )
        )
        return question, options, fault, error, start
    if fault == "bad options":
        good = draw(st.lists(TEXT, min_size=2, max_size=4))
        options, error, start = draw(
            st.sampled_from(
                [
                    (" / ".join(good), TypeError, "options must be a list of option texts"),
                    ({"A": "x", "B": "y"}, TypeError, "options must be a list of option texts"),
                    (good[:1], ValueError, "options: expected 2 to 10 options, got 1"),
                    (good * 6, ValueError, f"options: expected 2 to 10 options, got {len(good) * 6}"),
                    ([*good, None], ValueError, f"options[{len(good)}]"),
                    ([*good, 4], ValueError, f"options[{len(good)}]"),
                    ([*good, "  "], ValueError, f"options[{len(good)}]"),
                    ([*good, "a\x00"], ValueError, f"options[{len(good)}]"),
                ]
            )
        )
        return question, options, fault, error, start
    return question, options, fault, None, ""


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer_call())
def test_answer_refuses_broken_questions_and_options_by_name(answering, call):
    question, options, fault, error, start = call
    if error is not None:
        with pytest.raises(error) as raised:
            answering(question, options)
        assert str(raised.value).startswith(start), (start, str(raised.value))
        record("answer arguments", fault, f"{error.__name__} naming question / options (and the option)")
        return
    reply = answering(question, options)
    assert question.strip() in reply.prompt
    for letter, text in zip(OPTION_LETTERS, options or []):
        assert f"{letter}. {text}" in reply.prompt
    record("answer arguments", fault, "answered: the prompt holds the question and every option, lettered")
