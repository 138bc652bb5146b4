"""Reading the answer a language model chose out of its free-text reply.

* [`extract_choice`]: the option letter of a multiple-choice question (MedQA, MedMCQA, MMLU);
* [`extract_decision`]: the decision `"yes"` / `"no"` / `"maybe"` of a PubMedQA question;
* [`extract_answer`]: one or the other, depending on whether the question has options.

All three return `None` when the reply does not name exactly one answer: nothing recognisable, a refusal, several
answers (`"C or D"`), or a letter that is not among the options. An evaluation counts `None` as a wrong answer and
reports how many replies were unparseable.

Before any rule, the reply is cleaned: Markdown emphasis (`**`, `__`, backticks) is removed, curly apostrophes are
straightened, and the text is cut where the model starts a new question (`"\\nQuestion:"`, `"\\nQ:"`): small models
often continue the prompt's pattern, and the continuation's `"Answer: A"` is not their answer. Then, for a letter,
the first of these rules that finds something decides:

1. the whole reply is one letter, maybe bracketed or followed by punctuation: `"B"`, `"(b)"`, `"B."`, `"**B**"`;
2. explicit statements: `"Answer: B"`, `"The correct answer is (B)"`, `"answer is option b"`, `"Option C is
   correct"`; statements that name different letters make the reply ambiguous;
3. the reply starts with a letter label: `"B) Iron deficiency"`, `"B. Iron deficiency"`, `"(B) ..."`, `"B: ..."`;
4. a refusal (`"I cannot answer"`, `"As an AI ..."`, `"I don't know"`, `"none of the above"`) makes the reply
   unparseable from here on;
5. verb phrases: `"I think it's C because ..."`, `"I would choose D"`, `"C is the correct answer"`;
6. a bracketed letter anywhere: `"... most likely iron deficiency (B)."`;
7. the reply names the text of exactly one option: `"Iron deficiency"` (an option whose text is part of another
   named option's text, `"Iron deficiency"` in `"Iron deficiency anemia"`, gives way to the longer one).

Within a rule, two different letters, or one letter followed by `"or"` / `"and"` / `","` / `"/"` and another letter,
make the reply ambiguous (`None`) and stop the search. A lower-case letter counts only where it cannot be the
article "a" or another word: bracketed, after "option"/"choice"/"letter", or followed by punctuation or the end of
the reply (so `"The answer is a bit unclear"` is unparseable, `"answer: c"` is C).

Decisions follow the same shape: the whole reply or its first word (followed by punctuation) is yes/no/maybe, then
explicit statements (`"The answer is no"`), then refusals, then exactly one of the three words anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from ..models.configuration_jmlr import OPTION_LETTERS

__all__ = ["extract_answer", "extract_choice", "extract_decision"]


# Where a model that continues the prompt's pattern starts a new item.
_CONTINUATION = re.compile(r"\n\s*(?:question|q)\s*\d*\s*[:.]|\n\s*document\s*\[", re.IGNORECASE)
_MARKDOWN = re.compile(r"\*\*|__|`")
_REFUSAL = re.compile(
    r"\bi\s*(?:cannot|can\s*not|can't|am unable to|'m unable to|am not able to|'m not able to|won't|will not)"
    r"(?:\s+(?:answer|provide|give|help|assist|determine|choose|select|pick|respond|offer|diagnose)\b|\s*[.,!]|\s*$)"
    r"|\bas an ai\b"
    r"|\bi (?:do not|don't) know\b"
    r"|\b(?:not enough|insufficient) information\b"
    r"|\bnot (?:possible|able) to (?:determine|answer|say)\b"
    r"|\bcannot be determined\b"
    r"|\bnone of the (?:above|options|choices|answers)\b",
    re.IGNORECASE,
)
_NEGATED = r"(?!\s+(?:is|are)\s+(?:not|wrong|incorrect|false)\b)"


def _clean(text: str) -> str:
    text = _MARKDOWN.sub("", text or "").replace("\u2019", "'").replace("\u2018", "'")
    match = _CONTINUATION.search(text)
    if match:
        text = text[: match.start()]
    return text.strip()


class _Ambiguous(Exception):
    """Raised inside a rule when the reply names several answers."""


class _LetterRules:
    """The letter rules for one number of options (the valid letters are part of every pattern)."""

    def __init__(self, num_options: int):
        if not 1 <= num_options <= len(OPTION_LETTERS):
            raise ValueError(f"expected 1 to {len(OPTION_LETTERS)} options, got {num_options}")
        self.letters = OPTION_LETTERS[:num_options]
        last = self.letters[-1]
        letter = f"[A-{last}a-{last.lower()}]"
        # A letter, maybe bracketed, that is not the start of a word ("Cardiac", "B12", "A's").
        self.token = rf"(?P<open>[\(\[])?(?P<letter>{letter})(?P<close>[\)\]])?(?![\w'])"
        self.whole = re.compile(rf"^[\(\[]?({letter})[\)\]]?[.:)!]?$")
        self.explicit = re.compile(
            r"\b(?P<kw>answer|option|choice|letter)s?\b"
            r"(?P<sep>\s+(?:is|would be|will be|should be|must be|=)\b|\s*[:=\-\u2013])?"
            r"\s*(?:(?:probably|likely|definitely|clearly|then)\s+)?"
            r"(?:(?P<kw2>option|choice|letter)\s+)?" + self.token + _NEGATED,
            re.IGNORECASE,
        )
        self.leading = re.compile(
            rf"^(?P<open>[\(\[])?(?P<letter>{letter})(?:(?P<close>[\)\]])|\s*[.:](?=\s|$)|\s*[-\u2013]\s|\s*\n|\s*$)"
        )
        self.verb = re.compile(
            r"(?:\b(?:it's|it is|is|would be|choose|chose|pick|picked|select|selected|go with|going with)\s+"
            r"(?:(?P<kw2>option|choice|letter)\s+)?" + self.token + _NEGATED + ")",
            re.IGNORECASE,
        )
        self.verb_after = re.compile(
            rf"(?<![\w'])(?P<letter>[A-{last}])\s+(?:is|would be|seems)\s+(?:the\s+)?"
            r"(?:correct|right|best|most likely|answer)\b"
        )
        self.bracketed = re.compile(rf"[\(\[](?P<letter>{letter})[\)\]]")
        self.another = re.compile(
            rf"^\s*(?:,|/|&|\bor\b|\band\b)\s*(?:(?:option|choice)\s+)?[\(\[]?[A-{last}](?![\w'])", re.IGNORECASE
        )

    def _accept(self, text: str, match: re.Match, *, keyword_before: bool = False) -> str | None:
        """The upper-case letter of `match`, or `None` when a lower-case letter could be a word ("a")."""
        letter = match.group("letter")
        groups = match.groupdict()
        if letter.islower():
            bracketed = bool(groups.get("open") or groups.get("close"))
            followed_by_end = re.match(r"\s*(?:$|[.,;:!?)\]])", text[match.end("letter") :]) is not None
            if not (bracketed or keyword_before or groups.get("kw2") or followed_by_end):
                return None
        if self.another.match(text[match.end() :]):
            raise _Ambiguous
        return letter.upper()

    def _single(self, letters: list[str]) -> str | None:
        distinct = set(letters)
        if len(distinct) > 1:
            raise _Ambiguous
        return distinct.pop() if distinct else None

    def explicit_statements(self, text: str) -> str | None:
        found = []
        for match in self.explicit.finditer(text):
            keyword_before = match.group("kw").lower() != "answer" and not match.group("sep")
            letter = self._accept(text, match, keyword_before=keyword_before)
            if letter:
                found.append(letter)
        return self._single(found)

    def leading_label(self, text: str) -> str | None:
        match = self.leading.match(text)
        if not match:
            return None
        letter = match.group("letter")
        # A bare lower-case letter at the start ("a 24-year-old ...") is the article; "a)" or "a." is a label.
        if letter.islower() and not (match.group("open") or match.group("close") or text[1:2] in (".", ":")):
            return None
        if self.another.match(text[match.end("letter") + (1 if match.group("close") else 0) :]):
            raise _Ambiguous
        return letter.upper()

    def verb_phrases(self, text: str) -> str | None:
        found = [letter for match in self.verb.finditer(text) if (letter := self._accept(text, match))]
        found += [match.group("letter") for match in self.verb_after.finditer(text)]
        return self._single(found)

    def bracketed_letters(self, text: str) -> str | None:
        return self._single([match.group("letter").upper() for match in self.bracketed.finditer(text)])


@lru_cache(maxsize=len(OPTION_LETTERS))
def _letter_rules(num_options: int) -> _LetterRules:
    return _LetterRules(num_options)


def _normalize(text: str) -> str:
    return " " + " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split()) + " "


def _option_text(text: str, options: Sequence[str]) -> str | None:
    """The letter of the one option whose text the reply contains (as whole words)."""
    reply = _normalize(text)
    named = [(i, _normalize(option)) for i, option in enumerate(options)]
    named = [(i, option) for i, option in named if option.strip() and option in reply]
    # "Iron deficiency" inside "Iron deficiency anemia": the longer option is the one named.
    named = [(i, option) for i, option in named if not any(option != other and option in other for _, other in named)]
    letters = {OPTION_LETTERS[i] for i, _ in named}
    if len(letters) > 1:
        raise _Ambiguous
    return letters.pop() if letters else None


def extract_choice(text: str, options: Sequence[str] | int) -> str | None:
    """The option letter (`"A"`, `"B"`, ...) that `text` chooses, or `None` when it names none or several.

    Args:
        text: the model's reply (the generated continuation only, not the prompt).
        options: the option texts in letter order, or just their number (then rule 7, the option text, is skipped).
    """
    option_texts = [] if isinstance(options, int) else list(options)
    rules = _letter_rules(options if isinstance(options, int) else len(option_texts))
    text = _clean(text)
    if not text:
        return None
    whole = rules.whole.match(text)
    if whole:
        return whole.group(1).upper()
    try:
        for rule in (rules.explicit_statements, rules.leading_label):
            letter = rule(text)
            if letter:
                return letter
        if _REFUSAL.search(text):
            return None
        for rule in (rules.verb_phrases, rules.bracketed_letters):
            letter = rule(text)
            if letter:
                return letter
        return _option_text(text, option_texts) if option_texts else None
    except _Ambiguous:
        return None


_DECISION = r"(?P<decision>yes|no|maybe)"
_DECISION_WHOLE = re.compile(rf"^{_DECISION}[.!]?$", re.IGNORECASE)
_DECISION_LEADING = re.compile(rf"^{_DECISION}(?=\s*(?:$|[.,;:!\n]|\s[-\u2013]))", re.IGNORECASE)
_DECISION_EXPLICIT = re.compile(
    r"\b(?:answer|decision|conclusion|verdict)s?\b(?:\s+(?:is|would be|will be|should be)\b|\s*[:=\-\u2013])?\s*"
    + _DECISION
    + r"\b",
    re.IGNORECASE,
)
_DECISION_WORD = re.compile(rf"\b{_DECISION}\b", re.IGNORECASE)
_DECISION_ANOTHER = re.compile(r"^\s*(?:,|/|\bor\b|\band\b)\s*(?:yes|no|maybe)\b", re.IGNORECASE)


def extract_decision(text: str) -> str | None:
    """The PubMedQA decision (`"yes"`, `"no"` or `"maybe"`) of `text`, or `None` when it names none or several."""
    text = _clean(text)
    if not text:
        return None
    for pattern in (_DECISION_WHOLE, _DECISION_LEADING):
        match = pattern.match(text)
        if match:
            return match.group("decision").lower()
    explicit = list(_DECISION_EXPLICIT.finditer(text))
    if any(_DECISION_ANOTHER.match(text[match.end() :]) for match in explicit):
        return None
    decisions = {match.group("decision").lower() for match in explicit}
    if not decisions:
        if _REFUSAL.search(text):
            return None
        decisions = {match.group("decision").lower() for match in _DECISION_WORD.finditer(text)}
    return decisions.pop() if len(decisions) == 1 else None


def extract_answer(text: str, options: Sequence[str] | None = None) -> str | None:
    """[`extract_choice`] for a question with options, [`extract_decision`] for one without (PubMedQA)."""
    return extract_choice(text, options) if options else extract_decision(text)
