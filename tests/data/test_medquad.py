"""Tests of `jmlr_hf.data.medquad`: MedQuAD as open-book QA (targets, gold passages, the split by topic).

The `integration` tests read the shipped MedQuAD file of the shared data folder and fail, not skip, when it is
missing; the others use tiny files written here.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from jmlr_hf.data import (
    MEDQUAD_FILE,
    DataFormatError,
    LoadReport,
    default_data_dir,
    load_medquad_corpus,
    load_medquad_qa,
    load_named_corpus,
    load_task,
    medquad_target,
)
from jmlr_hf.data.medquad import MEDQUAD_SPLITS


def write_medquad(path: Path, rows: list[dict]) -> str:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return str(path)


def answer(id_: str, focus: str, qtype: str, text: str, question: str | None = None) -> dict:
    return {
        "id": id_,
        "source": "GARD",
        "url": "https://example.org",
        "focus": focus,
        "question": question or f"What is the {qtype} of {focus} ?",
        "qtype": qtype,
        "text": text,
    }


# --------------------------------------------------------------------------------------------------------------------
# The target
# --------------------------------------------------------------------------------------------------------------------


def test_target_is_the_first_two_sentences_within_the_word_cap():
    text = "Gout is a form of arthritis. It causes sudden pain in the joints. A third sentence is not taken."
    assert medquad_target(text, 40) == "Gout is a form of arthritis. It causes sudden pain in the joints."
    # The two together exceed the cap: the first sentence alone.
    assert medquad_target(text, 8) == "Gout is a form of arthritis."


def test_target_skips_leading_question_sentences_and_cuts_a_long_first_sentence_at_a_word():
    text = "What are the signs and symptoms of Gout? Pain, swelling and redness of one joint often at night. More."
    assert medquad_target(text, 40) == "Pain, swelling and redness of one joint often at night. More."
    assert medquad_target(text, 4) == "Pain, swelling and redness"
    # A question alone stays the target (nothing else to take), and the target is always a slice of the text.
    assert medquad_target("Is gout inherited?", 40) == "Is gout inherited?"
    for cap in (1, 3, 5, 12, 40):
        assert medquad_target(text, cap) in text


# --------------------------------------------------------------------------------------------------------------------
# Rules on a constructed file
# --------------------------------------------------------------------------------------------------------------------

LONG_TAIL = " ".join(f"filler{i}" for i in range(60))
BOILERPLATE = "This condition is inherited in an autosomal recessive pattern, which means both copies are altered."
# A second sentence too long to join the first within the 40-word cap: the target is the boilerplate alone.
SECOND = " ".join(["Carriers"] + [f"word{i}" for i in range(30)]) + "."


@pytest.fixture
def medquad_file(tmp_path: Path) -> str:
    rows = [
        # Kept: a unique target; a long answer, so the corpus chunks it and the gold passage is its first chunk.
        answer(
            "1-1", "Gout", "information", "Gout is a common form of inflammatory arthritis in adults. " + LONG_TAIL
        ),
        answer("1-2", "Gout", "treatment", "Gout attacks are treated with anti-inflammatory medicines quickly."),
        # The same boilerplate opening for two topics: found in two passages, no single gold -> both dropped.
        answer("2-1", "Alpha syndrome", "inheritance", BOILERPLATE + " Alpha " + SECOND),
        answer("3-1", "Beta syndrome", "inheritance", BOILERPLATE + " Beta " + SECOND),
        # Too short a target.
        answer("4-1", "Delta disease", "information", "Delta disease is rare."),
        # The same question and answer twice (the file reuses id 1-2 too): one kept.
        answer("1-2", "Gout", "treatment", "Gout attacks are treated with anti-inflammatory medicines quickly."),
        # Two topics that share one answer text must land in one split.
        answer("5-1", "Epsilon fever", "information", "Epsilon fever is a viral illness spread by mosquito bites."),
        answer("6-1", "Zeta fever", "information", "Epsilon fever is a viral illness spread by mosquito bites."),
        answer("6-2", "Zeta fever", "symptoms", "Zeta fever causes a high temperature, rash and joint pain."),
    ]
    return write_medquad(tmp_path / "medquad.jsonl.gz", rows)


def split_ids(path: str, split: str) -> set[str]:
    """The ids of one split of the constructed file (an empty split is an error of its own)."""
    try:
        return set(load_medquad_qa(path, split, passage_words=30)["id"])
    except ValueError as error:
        assert "split is empty" in str(error)
        return set()


def test_rules_on_a_constructed_file(medquad_file: str):
    report = LoadReport()
    questions = load_medquad_qa(medquad_file, passage_words=30, report=report)
    assert report.counts["duplicate_questions"] == 1
    assert report.counts["short_target"] == 1
    assert report.counts["target_in_several_passages"] == 2
    assert report.counts["target_not_found"] == 0
    assert report.num_rows == len(questions) == 5
    assert sum(report.counts[f"split_{split}"] for split in MEDQUAD_SPLITS) == 5
    assert "dropped: " in report.summary() and "target_in_several_passages 2" in report.summary()
    by_id = {row["id"]: row for row in questions}
    assert set(by_id) == {"1-1", "1-2", "5-1", "6-1", "6-2"}
    # The gold passage is the chunk that holds the target: the first chunk of the long answer.
    assert by_id["1-1"]["gold_doc_ids"] == ["1-1#0"] == by_id["1-1"]["evidence_doc_ids"]
    assert by_id["1-1"]["answer"] == "Gout is a common form of inflammatory arthritis in adults."
    assert by_id["1-2"]["gold_doc_ids"] == ["1-2"]
    # The repeated text of 6-1 is not a passage of its own (the corpus drops repeated texts): 5-1's passage holds it.
    assert by_id["6-1"]["gold_doc_ids"] == ["5-1"]
    row = by_id["6-2"]
    assert (row["options"], row["rationale"], row["subject"], row["qtype"], row["focus"]) == (
        [],
        "",
        "symptoms",
        "symptoms",
        "Zeta fever",
    )
    # Epsilon and Zeta share a text, so all three of their questions are on one side of every split.
    sides = {split: split_ids(medquad_file, split) for split in MEDQUAD_SPLITS}
    assert sum(len(ids) for ids in sides.values()) == 5
    assert any({"5-1", "6-1", "6-2"} <= ids for ids in sides.values())
    assert any({"1-1", "1-2"} <= ids for ids in sides.values())


def test_the_split_moves_whole_topics(medquad_file: str):
    """With every topic held out as test, nothing is left to train on, and the reverse."""
    everything = load_medquad_qa(medquad_file, "test", validation_fraction=0.0, test_fraction=1.0, passage_words=30)
    assert len(everything) == 5
    with pytest.raises(ValueError, match="the train split is empty"):
        load_medquad_qa(medquad_file, "train", validation_fraction=0.0, test_fraction=1.0, passage_words=30)


def test_bad_arguments_and_rows_are_named(tmp_path: Path, medquad_file: str):
    with pytest.raises(ValueError, match="split must be one of"):
        load_medquad_qa(medquad_file, "dev")
    with pytest.raises(ValueError, match="validation_fraction"):
        load_medquad_qa(medquad_file, validation_fraction=-0.1)
    with pytest.raises(ValueError, match="min_target_words"):
        load_medquad_qa(medquad_file, min_target_words=50, target_words=40)
    with pytest.raises(FileNotFoundError, match="JMLR_DATA_DIR"):
        load_medquad_qa(tmp_path / "missing.jsonl.gz")
    bad = write_medquad(
        tmp_path / "bad.jsonl.gz",
        [answer("1", "Gout", "information", "Gout is a common form of arthritis in adults."), {"id": "2", "text": 3}],
    )
    with pytest.raises(DataFormatError, match=r"bad\.jsonl\.gz, line 2: field 'question': missing"):
        load_medquad_qa(bad)
    report = LoadReport()
    assert len(load_medquad_qa(bad, skip_invalid=True, report=report)) == 1
    assert report.num_skipped == 1


def test_validation_split_only_for_tasks_that_have_one(medquad_file: str):
    assert set(load_task("medquad", None, path=medquad_file)["id"]) == {"1-1", "1-2", "5-1", "6-1", "6-2"}
    for split in MEDQUAD_SPLITS:
        try:
            ids = set(load_task("medquad", split, path=medquad_file)["id"])
        except ValueError as error:
            assert f"the {split} split is empty" in str(error)
            ids = set()
        assert ids == split_ids(medquad_file, split)
    with pytest.raises(ValueError, match="has no validation split"):
        load_task("pubmedqa", "validation")


# --------------------------------------------------------------------------------------------------------------------
# The shipped file
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_shipped_medquad_splits_are_disjoint_by_topic_and_each_target_is_in_exactly_one_passage():
    path = str(default_data_dir() / MEDQUAD_FILE)
    report = LoadReport()
    everything = load_medquad_qa(path, report=report)
    splits = {split: load_task("medquad", split) for split in MEDQUAD_SPLITS}
    assert [len(splits[split]) for split in MEDQUAD_SPLITS] == [11966, 1456, 1494]
    assert len(everything) == 14916
    assert report.counts["target_in_several_passages"] == 1402
    # Disjoint by topic (case-insensitive focus; a question without a focus is a topic of its own) and by id.
    topics = {split: {focus.casefold() for focus in splits[split]["focus"]} - {""} for split in MEDQUAD_SPLITS}
    assert not topics["train"] & topics["test"]
    assert not topics["train"] & topics["validation"]
    assert not topics["validation"] & topics["test"]
    ids = [set(splits[split]["id"]) for split in MEDQUAD_SPLITS]
    assert sum(len(s) for s in ids) == len(set().union(*ids)) == 14916
    # Each target is found, by a plain whole-word search, in exactly its gold passage of `--corpus medquad`.
    corpus = load_named_corpus("medquad")
    normalized = [" " + " ".join(text.split()) + " " for text in corpus["text"]]
    for row in splits["test"].select(range(80)):
        target = " " + " ".join(row["answer"].split()) + " "
        holders = [corpus[i]["id"] for i, text in enumerate(normalized) if target in text]
        assert holders == row["gold_doc_ids"], row["id"]
    # The first rows of a split are a sample over the sources, not the file's first source.
    assert len(set(splits["train"].select(range(200))["source"])) >= 7
    assert load_medquad_corpus(path)["id"] == corpus["id"]


def test_targets_of_the_constructed_file_are_found_word_for_word(medquad_file: str):
    questions = load_medquad_qa(medquad_file, passage_words=30)
    corpus = load_medquad_corpus(medquad_file, max_tokens=30)
    texts = dict(zip(corpus["id"], corpus["text"]))
    for row in questions:
        assert re.sub(r"\s+", " ", row["answer"]) in re.sub(r"\s+", " ", texts[row["gold_doc_ids"][0]])
