"""MedQuAD as open-book consumer-health QA: the question of each NIH answer, its opening sentences as the target, and
the one passage of the `--corpus medquad` passages that holds them as the gold passage.

Why this task: the answer to "What are the symptoms of X?" is in one passage of a 30k-passage corpus, and the other
passages about X (its treatment, its inheritance, ...) look alike to a retriever trained on general text but do not
help the LLM write the answer. What a retriever must learn to rank the gold passage first (match the question type,
not only the topic) carries across topics, so a held-out-by-topic split measures whether it generalises.

Each row ([`MEDQUAD_QA_FEATURES`]): `id`, `question`, `options` = `[]`, `answer` = the target (below), `rationale` =
`""`, `subject` = the question type, `gold_doc_ids` = `evidence_doc_ids` = the id of the one corpus passage that holds
the target, and `focus` (the topic), `source` (the NIH site) and `qtype` (the question type, e.g. `"symptoms"`); `focus` may be `""` (a few rows of the
shipped file), and such a question is a topic of its own.

Rules, in this order (each drop is counted in the [`LoadReport`]):

1. **Target**: the answer's first one or two sentences, at most [`MEDQUAD_TARGET_WORDS`] words (a longer first
   sentence is cut at a word). Leading sentences that end with "?" are skipped first: many GARD answers open by
   repeating the question ("What are the signs and symptoms of X?"), which would make the LLM copy its prompt. The
   target is a slice of the answer text, so it appears word for word in the passage that holds it.
2. **Repeated questions**: a (question, target) pair seen before is dropped (`duplicate_questions`).
3. **Too short**: targets of fewer than [`MEDQUAD_MIN_TARGET_WORDS`] words are dropped (`short_target`).
4. **Ambiguous gold**: the target must occur in exactly one passage (as whole words, whitespace-insensitive).
   Boilerplate openings ("This condition is inherited in an autosomal recessive pattern ...") occur in hundreds of
   passages, so no passage is *the* answer: dropped (`target_in_several_passages`). A target found in no passage
   (`target_not_found`; 0 in the shipped file) is dropped too.
5. **Splits by topic**: questions are grouped so that a group shares no focus (case-insensitive) and no answer text
   with another; each group goes to train / validation / test by a salted hash of its first focus
   ([`jmlr_hf.data.hash_split`]). No test topic appears in training, and a text repeated under two topics stays on
   one side.
6. **Order**: the rows of a split come in the order of a salted hash of their id, so that the first N of a split
   (`train_limit`, `eval_limit`, `--limit --no_sample`) are a sample over every NIH source and question type (the
   file is sorted by source).

On the shipped file: 14,916 questions kept — 11,966 train / 1,456 validation / 1,494 test (4,054 / 520 / 507 topics)
— after dropping 74 repeated questions, 15 short targets and 1,402 targets found in several passages.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from datasets import Dataset, Features, Value

from ._loading import (
    QA_FEATURES,
    LoadReport,
    collect,
    default_data_dir,
    finish,
    identifier,
    iter_json_lines,
    question_field,
    text_field,
)
from .corpus import MEDQUAD_FILE, load_medquad_corpus
from .splits import check_fractions, hash_split, hash_unit

logger = logging.getLogger(__name__)

MEDQUAD_QA_FEATURES = Features(
    {**QA_FEATURES, "focus": Value("string"), "source": Value("string"), "qtype": Value("string")}
)
#: The target: the answer's first one or two sentences, cut to at most this many words.
MEDQUAD_TARGET_WORDS = 40
#: Shorter targets are dropped: a few words ("Yes.", a title) say nothing and are found in many passages.
MEDQUAD_MIN_TARGET_WORDS = 6
#: Held-out shares of the topic groups (about 1,000 questions each on the shipped file).
MEDQUAD_VALIDATION_FRACTION = 0.1
MEDQUAD_TEST_FRACTION = 0.1
#: The passage size of `--corpus medquad` (words), which the gold passage ids refer to.
MEDQUAD_PASSAGE_WORDS = 150
MEDQUAD_SPLITS = ("train", "validation", "test")

# A sentence ends at . ! or ? followed by whitespace (the answers are plain prose and bullet lists).
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def medquad_target(text: str, max_words: int = MEDQUAD_TARGET_WORDS) -> str:
    """The target of an answer: its first one or two sentences after any leading question sentences, at most
    `max_words` words; a slice of `text` (so it is found word for word in the passage that holds it)."""
    sentences: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        sentences.append((start, match.end()))
        start = match.end()
    if start < len(text) and text[start:].strip():
        sentences.append((start, len(text)))
    while len(sentences) > 1 and text[sentences[0][0] : sentences[0][1]].rstrip().endswith("?"):
        sentences.pop(0)
    if not sentences:
        return ""
    first_start = sentences[0][0]
    end = sentences[0][1]
    if len(sentences) > 1 and len(text[first_start : sentences[1][1]].split()) <= max_words:
        end = sentences[1][1]
    words = list(re.finditer(r"\S+", text[first_start:end]))
    if len(words) > max_words:
        end = first_start + words[max_words - 1].end()
    return text[first_start:end].strip()


def _passages_holding(targets: Sequence[str], passages: Sequence[str], min_words: int) -> list[list[int]]:
    """For each target, the indices of the passages whose words contain the target's words consecutively.

    One pass over the passages: every run of `min_words` words is looked up among the targets' first `min_words`
    words, and only those hits are compared in full (a plain substring test would be |targets| x |passages|)."""
    target_words = [target.split() for target in targets]
    by_prefix: dict[str, list[int]] = {}
    for t, words in enumerate(target_words):
        if len(words) >= min_words:
            by_prefix.setdefault(" ".join(words[:min_words]), []).append(t)
    found: list[set[int]] = [set() for _ in targets]
    for p, passage in enumerate(passages):
        words = passage.split()
        for i in range(len(words) - min_words + 1):
            hits = by_prefix.get(" ".join(words[i : i + min_words]))
            if not hits:
                continue
            for t in hits:
                wanted = target_words[t]
                if words[i : i + len(wanted)] == wanted:
                    found[t].add(p)
    return [sorted(indices) for indices in found]


class _TopicGroups:
    """Union-find over focus keys and answer texts: a question joins its focus to its answer text."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:  # the smaller key names the group, so the result does not depend on the order
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def _parse(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    return [
        {
            "id": identifier(record, "id", default=f"medquad-{index}"),
            "question": question_field(record, "question"),
            "text": text_field(record, "text"),
            "focus": text_field(record, "focus", required=False),
            "source": text_field(record, "source", required=False),
            "qtype": text_field(record, "qtype", required=False),
        }
    ]


def _focus_key(question: Mapping[str, Any]) -> str:
    """The topic of a question for the split: its focus, case-folded (a few MedQuAD rows have none: their question)."""
    return "focus:" + (question["focus"] or question["question"]).casefold()


@lru_cache(maxsize=4)
def _medquad_questions(
    path: str,
    target_words: int,
    min_target_words: int,
    validation_fraction: float,
    test_fraction: float,
    passage_words: int,
    salt: str,
    skip_invalid: bool,
) -> tuple[tuple[tuple[str, dict[str, Any]], ...], tuple[str, ...], tuple[tuple[str, int], ...]]:
    """Every kept question with its split, the skipped rows' reasons and the counts (cached: the three splits of
    one experiment read the file once)."""
    reasons: list[str] = []
    records = collect(
        iter_json_lines(path), _parse, source=path, skip_invalid=skip_invalid, reasons=reasons, unique_ids=False
    )
    counts = {"duplicate_questions": 0, "short_target": 0, "target_in_several_passages": 0, "target_not_found": 0}
    questions: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    times_seen: dict[str, int] = {}
    for record in records:
        target = medquad_target(record["text"], target_words)
        if (record["question"], target) in seen:
            counts["duplicate_questions"] += 1
            continue
        seen.add((record["question"], target))
        if len(target.split()) < min_target_words:
            counts["short_target"] += 1
            continue
        # MedQuAD reuses an id for the answers of several topics of one page: the n-th use gets `~n`.
        times_seen[record["id"]] = times_seen.get(record["id"], 0) + 1
        if times_seen[record["id"]] > 1:
            record["id"] = f"{record['id']}~{times_seen[record['id']]}"
        questions.append({**record, "target": target})

    corpus = load_medquad_corpus(path, max_tokens=passage_words, skip_invalid=True)
    holders = _passages_holding([q["target"] for q in questions], corpus["text"], min_target_words)
    passage_ids = corpus["id"]
    located: list[dict[str, Any]] = []
    for question, found in zip(questions, holders, strict=True):
        if not found:
            counts["target_not_found"] += 1
        elif len(found) > 1:
            counts["target_in_several_passages"] += 1
        else:
            located.append({**question, "gold": passage_ids[found[0]]})

    groups = _TopicGroups()
    for question in located:
        groups.union(_focus_key(question), "text:" + " ".join(question["text"].split()))
    rows: list[tuple[str, dict[str, Any]]] = []
    for question in sorted(located, key=lambda q: hash_unit(q["id"], salt)):
        group = groups.find(_focus_key(question))
        split = hash_split(group, validation_fraction, test_fraction, salt)
        rows.append(
            (
                split,
                {
                    "id": question["id"],
                    "question": question["question"],
                    "options": [],
                    "answer": question["target"],
                    "rationale": "",
                    "subject": question["qtype"],
                    "gold_doc_ids": [question["gold"]],
                    "evidence_doc_ids": [question["gold"]],
                    "focus": question["focus"],
                    "source": question["source"],
                    "qtype": question["qtype"],
                },
            )
        )
    for split in MEDQUAD_SPLITS:
        counts[f"split_{split}"] = sum(side == split for side, _ in rows)
    logger.info("%s: MedQuAD QA %s", path, counts)
    return tuple(rows), tuple(reasons), tuple(counts.items())


def load_medquad_qa(
    path: str | os.PathLike[str] | None = None,
    split: str | None = None,
    *,
    target_words: int = MEDQUAD_TARGET_WORDS,
    min_target_words: int = MEDQUAD_MIN_TARGET_WORDS,
    validation_fraction: float = MEDQUAD_VALIDATION_FRACTION,
    test_fraction: float = MEDQUAD_TEST_FRACTION,
    passage_words: int = MEDQUAD_PASSAGE_WORDS,
    salt: str = "jmlr",
    skip_invalid: bool = False,
    report: LoadReport | None = None,
) -> Dataset:
    """MedQuAD's questions as open-book QA (see the module docstring for the rules), one split or all.

    Args:
        path: the MedQuAD answers file (`corpus/medquad/medquad_answers.jsonl.gz` of the data folder by default).
        split: `"train"`, `"validation"`, `"test"` or `None` (all; every split in hash order, see rule 6).
        target_words: the target's word cap.
        min_target_words: shorter targets are dropped; also the length of the word runs that locate a target.
        validation_fraction, test_fraction: shares of the topic groups held out.
        passage_words: the passage size of the corpus the gold ids refer to (`--corpus medquad`: 150).
        salt: salt of the split hash.
        skip_invalid: drop invalid rows (one warning, counted in `report`) instead of raising [`DataFormatError`].
        report: filled with the counts of this load: the drops of the rules above and `split_<name>` for each split.
    """
    path = str(path) if path is not None else str(default_data_dir() / MEDQUAD_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist; set JMLR_DATA_DIR to the shared data folder or pass path=.")
    if split is not None and split not in MEDQUAD_SPLITS:
        raise ValueError(f"split must be one of {MEDQUAD_SPLITS} or None, got {split!r}")
    check_fractions(validation_fraction, test_fraction)
    if not 1 <= min_target_words <= target_words:
        raise ValueError(f"need 1 <= min_target_words <= target_words, got {min_target_words} and {target_words}")
    rows, reasons, counts = _medquad_questions(
        path, target_words, min_target_words, validation_fraction, test_fraction, passage_words, salt, skip_invalid
    )
    examples = [dict(row) for side, row in rows if split is None or side == split]
    if rows and not examples:
        raise ValueError(
            f"{path}: the {split} split is empty (validation_fraction={validation_fraction}, "
            f"test_fraction={test_fraction} of {len(rows)} questions)"
        )
    return finish(
        examples, MEDQUAD_QA_FEATURES, source=path, reasons=list(reasons), report=report, counts=dict(counts)
    )


__all__ = [
    "MEDQUAD_MIN_TARGET_WORDS",
    "MEDQUAD_QA_FEATURES",
    "MEDQUAD_SPLITS",
    "MEDQUAD_TARGET_WORDS",
    "load_medquad_qa",
    "medquad_target",
]
