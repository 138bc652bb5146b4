"""Answer extraction from free-text replies, on the shapes that real models produce."""

from __future__ import annotations

import pytest

from jmlr_hf.evaluation.answer_parsing import extract_answer, extract_choice, extract_decision

ANEMIA = ["Vitamin B12 deficiency", "Iron deficiency", "Hemolysis", "Folate deficiency"]
ANAPHYLAXIS = [
    "Oral antihistamine",
    "Intravenous corticosteroid",
    "Inhaled salbutamol",
    "Intramuscular epinephrine",
    "Intravenous fluids alone",
]

CHOICE_CASES = [
    # The bare letter, as short replies give it.
    ("B", "B"),
    (" B", "B"),
    ("\n\nB", "B"),
    ("b", "B"),
    ("B.", "B"),
    ("(B)", "B"),
    ("[B]", "B"),
    ("**B**", "B"),
    # Explicit statements.
    ("Answer: B", "B"),
    ("answer: b", "B"),
    ("ANSWER: D", "D"),
    ("Hmm, Answer:B", "B"),
    ("**Answer:** B", "B"),
    ("The answer is B.", "B"),
    ("The answer is: (c)", "C"),
    ("The correct answer is (B) Iron deficiency.", "B"),
    ("The correct answer is **B. Iron deficiency**", "B"),
    ("Correct answer: option C", "C"),
    ("option b", "B"),
    ("Option C is correct.", "C"),
    ("The answer is B, iron deficiency, not D.", "B"),
    ("Option A is wrong; the answer is C", "C"),
    ("Vitamin B12 deficiency is unlikely; the answer is B", "B"),
    # A letter label at the start.
    ("B) Iron deficiency", "B"),
    ("B. Iron deficiency", "B"),
    ("a) Vitamin B12 deficiency", "A"),
    ("D: Folate deficiency", "D"),
    ("B - Iron deficiency", "B"),
    ("B\n\nExplanation: Microcytic anemia with low ferritin means iron deficiency.", "B"),
    # The model goes on with a new question of its own: only the first answer counts.
    (" B\nQuestion: Which drug is first-line?\nA. Epinephrine\nAnswer: A", "B"),
    ("\nQuestion: Which drug is first-line?\nA. Epinephrine\nAnswer: A", None),
    # Verb phrases.
    ("I think it's C because hemolysis causes anemia", "C"),
    ("I would choose option B.", "B"),
    ("It's D.", "D"),
    ("C is the correct answer", "C"),
    ("I can't be sure, but I think it's C", "C"),
    # The option's text instead of its letter.
    ("Iron deficiency", "B"),
    ("The most likely cause is iron deficiency.", "B"),
    ("A 24-year-old woman with microcytic anemia most likely has iron deficiency", "B"),
    # Unparseable: nothing, several answers, refusals, a letter that is not an option, a word that starts with one.
    ("", None),
    ("   ", None),
    ("Answer: C or D", None),
    ("Answer: B and C", None),
    ("B or C", None),
    ("B, C", None),
    ("The answer is (A) or (B)", None),
    ("Iron deficiency or folate deficiency", None),
    ("I'm sorry, but I cannot provide medical advice.", None),
    ("As an AI language model, I can't answer this question.", None),
    ("I don't know", None),
    ("None of the above", None),
    ("The answer is a bit unclear", None),
    ("Answer: E", None),
    ("Answer: Cardiac", None),
    ("The answer is B12", None),
]


@pytest.mark.parametrize(("reply", "expected"), CHOICE_CASES)
def test_extract_choice(reply, expected):
    assert extract_choice(reply, ANEMIA) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("E. Intravenous fluids alone", "E"),
        ("Answer: E", "E"),
        # "E.g." is not the label E; the option text decides.
        ("E.g. intramuscular epinephrine", "D"),
        # Part of two option texts ("Intravenous ..."), whole words of none.
        ("Intravenous", None),
    ],
)
def test_extract_choice_five_options(reply, expected):
    assert extract_choice(reply, ANAPHYLAXIS) == expected


def test_extract_choice_longer_option_text_wins():
    options = ["Iron deficiency", "Iron deficiency anemia of chronic disease", "Hemolysis", "Folate deficiency"]
    assert extract_choice("It is iron deficiency anemia of chronic disease.", options) == "B"
    assert extract_choice("It is iron deficiency.", options) == "A"


def test_extract_choice_with_a_number_of_options():
    assert extract_choice("The answer is C.", 3) == "C"
    assert extract_choice("The answer is D.", 3) is None
    # Without the option texts, the text rule cannot apply.
    assert extract_choice("Iron deficiency", 4) is None
    with pytest.raises(ValueError, match="options"):
        extract_choice("A", 0)


DECISION_CASES = [
    ("yes", "yes"),
    ("Yes.", "yes"),
    (" MAYBE", "maybe"),
    ("Maybe. The results are inconclusive", "maybe"),
    ("No, mitochondria do not play a role.", "no"),
    ("**Yes**, mitochondria play a role", "yes"),
    ("The answer is no.", "no"),
    ("Answer: yes", "yes"),
    ("Based on the results, the answer is yes.", "yes"),
    ("Yes\nQuestion: Is the liver an organ?\nAnswer: no", "yes"),
    ("", None),
    ("Yes or no", None),
    ("yes/no", None),
    ("The answer is yes or no", None),
    ("I cannot answer this question.", None),
    ("The evidence suggests that statins reduce mortality", None),
]


@pytest.mark.parametrize(("reply", "expected"), DECISION_CASES)
def test_extract_decision(reply, expected):
    assert extract_decision(reply) == expected


def test_extract_answer_dispatches_on_options():
    assert extract_answer("Answer: B", ANEMIA) == "B"
    assert extract_answer("No.", []) == "no"
    assert extract_answer("No.", None) == "no"
    assert extract_answer("Yes", ANEMIA) is None
