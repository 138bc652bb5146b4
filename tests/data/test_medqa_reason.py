"""Tests of `jmlr_hf.reason_data`: the MedQA-Reason-style schema, its builders, the dataset card and the Hub layout.

The test marked `integration` reads the real MedMCQA file of the shared data folder (`default_data_dir()`) and fails,
not skips, when it is missing. The others use tiny files written to `tmp_path`.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import datasets
import pytest
from datasets import Dataset, DatasetDict
from huggingface_hub import DatasetCard

from jmlr_hf.data import QA_FEATURES, DataFormatError, LoadReport, default_data_dir, load_task, split_by_hash
from jmlr_hf.data import medqa_reason as reason_data
from jmlr_hf.data.medqa_reason import (
    REASON_FEATURES,
    build_from_medmcqa,
    build_from_medqa_reason_csv,
    normalize_whitespace,
    save_reason_dataset,
)
from jmlr_hf.hub import render_dataset_card

# --------------------------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------------------------


def medmcqa_row(i: int, **overrides) -> dict:
    row = {
        "id": f"mcq-{i:03d}",
        "question": f"Question {i}: which option is right?",
        "opa": f"alpha {i}",
        "opb": f"beta {i}",
        "opc": f"gamma {i}",
        "opd": f"delta {i}",
        "cop": i % 4 + 1,
        "exp": f"Because  of\treason {i}.\r\n\n\n\n  Second line. ",
        "subject_name": "Anatomy",
        "topic_name": "Bones",
        "choice_type": "single",
    }
    row.update(overrides)
    return row


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


NUM_GOOD = 60
# Lines 61..63 have no explanation (null, empty, whitespace only); line 64 is malformed (cop 5).
NO_EXPLANATION = [medmcqa_row(900, exp=None), medmcqa_row(901, exp=""), medmcqa_row(902, exp=" \n\t ")]
MALFORMED_LINE = NUM_GOOD + len(NO_EXPLANATION) + 1


@pytest.fixture
def medmcqa_file(tmp_path) -> Path:
    rows = [medmcqa_row(i) for i in range(NUM_GOOD)] + NO_EXPLANATION + [medmcqa_row(903, cop=5)]
    return write_jsonl(tmp_path / "data" / reason_data.MEDMCQA_FILE, rows)


@pytest.fixture
def clean_medmcqa_file(tmp_path) -> Path:
    rows = [medmcqa_row(i) for i in range(NUM_GOOD)] + NO_EXPLANATION
    return write_jsonl(tmp_path / "clean" / reason_data.MEDMCQA_FILE, rows)


def all_rows(splits: DatasetDict) -> list[dict]:
    return [row for split in splits.values() for row in split]


# Three questions every CSV layout below encodes: (question, options, answer index, rationale).
QUESTIONS = [
    (
        "Which vitamin deficiency causes scurvy?",
        ["Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K"],
        1,
        "Scurvy is caused by a lack of vitamin C,\nwhich collagen synthesis needs.",
    ),
    (
        "A 30-year-old man has polyuria. Which organ makes insulin?",
        ["Liver", "Kidney", "Spleen", "Heart", "Pancreas"],
        4,
        "Beta cells of the pancreas secrete insulin.",
    ),
    (
        "Which bone is the longest?",
        ["Femur", "Tibia", "Humerus", "Fibula"],
        0,
        "The femur is the longest bone of the body.",
    ),
]
LETTERS = "ABCDE"


def expected_rows() -> list[tuple]:
    return [(q, opts, LETTERS[a], a, normalize_whitespace(r)) for q, opts, a, r in QUESTIONS]


def essentials(rows: list[dict]) -> list[tuple]:
    return [(r["question"], r["options"], r["answer"], r["answer_idx"], r["rationale"]) for r in rows]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def layout_albers():
    """The columns of the JosefAlbers copy of akemiH/MedQA-Reason: options inside `input`, letter in `output`."""
    header = ["input", "output", "output_reason"]
    rows = [
        [f"{q} " + " ".join(f"{LETTERS[k]}: {o}" for k, o in enumerate(opts)), LETTERS[a], r]
        for q, opts, a, r in QUESTIONS
    ]
    return header, rows


def layout_json_dict():
    """jind11 MedQA columns plus a rationale: options as a JSON dict, both answer text and answer letter."""
    header = ["id", "question", "options", "answer", "answer_idx", "meta_info", "reason"]
    rows = [
        [f"q{i}", q, json.dumps(dict(zip(LETTERS, opts))), opts[a], LETTERS[a], "step1", r]
        for i, (q, opts, a, r) in enumerate(QUESTIONS)
    ]
    return header, rows


def layout_python_literal():
    """What pandas writes for a column of dicts (their repr), with its unnamed index column and capitalised names."""
    header = ["", "Question", "Options", "Answer", "Explanation"]
    rows = [
        [i, q, repr(dict(zip(LETTERS, opts))), f"({LETTERS[a]})", r] for i, (q, opts, a, r) in enumerate(QUESTIONS)
    ]
    return header, rows


def layout_letter_columns():
    """One column per option A..E (empty E for 4-option rows), the answer as text, a `GPT4 Rationale` column."""
    header = ["Question", "A", "B", "C", "D", "E", "Answer", "GPT4 Rationale"]
    rows = [[q, *opts, *[""] * (5 - len(opts)), opts[a].upper(), r] for q, opts, a, r in QUESTIONS]
    return header, rows


def layout_medmcqa_columns():
    """MedMCQA-style columns: opa..ope and a 1-based `cop`, the rationale in `exp`."""
    header = ["question", "opa", "opb", "opc", "opd", "ope", "cop", "exp", "subject_name"]
    rows = [[q, *opts, *[""] * (5 - len(opts)), a + 1, r, "Medicine"] for q, opts, a, r in QUESTIONS]
    return header, rows


def layout_options_text():
    """One options column holding 'A. x B. y' text, a 0-based `answer_index` and `gpt4_rationale`."""
    header = ["question", "options", "answer_index", "gpt4_rationale"]
    rows = [[q, " ".join(f"{LETTERS[k]}. {o}" for k, o in enumerate(opts)), a, r] for q, opts, a, r in QUESTIONS]
    return header, rows


def layout_json_list_with_split():
    """Options as a JSON list, a 0-based `label`, `rationale`, and a `split` column (one row left to the hash)."""
    header = ["question", "choices", "label", "rationale", "split"]
    splits = ["test", "", "validation"]
    rows = [[q, json.dumps(opts), a, r, s] for (q, opts, a, r), s in zip(QUESTIONS, splits)]
    return header, rows


LAYOUTS = {
    "albers_input_output": layout_albers,
    "json_dict_jind11": layout_json_dict,
    "python_literal_pandas": layout_python_literal,
    "letter_columns": layout_letter_columns,
    "medmcqa_columns": layout_medmcqa_columns,
    "options_text": layout_options_text,
    "json_list_with_split": layout_json_list_with_split,
}


# --------------------------------------------------------------------------------------------------------------------
# Schema and helpers
# --------------------------------------------------------------------------------------------------------------------


def test_schema_matches_the_multiple_choice_columns_of_the_qa_schema():
    assert list(REASON_FEATURES) == [
        "id",
        "question",
        "options",
        "answer",
        "answer_idx",
        "rationale",
        "subject",
        "source",
    ]
    for name in ("id", "question", "options", "answer", "rationale", "subject"):
        assert REASON_FEATURES[name] == QA_FEATURES[name], name
    assert REASON_FEATURES["answer_idx"] == datasets.Value("int64")


def test_normalize_whitespace_removes_only_whitespace_noise():
    text = "  First\u00a0 line,\tkept.  \r\n\r\n\r\n\r\n  Second   line\rThird line\n\n"
    assert normalize_whitespace(text) == "First line, kept.\n\nSecond line\nThird line"
    assert normalize_whitespace("One line.") == "One line."


# --------------------------------------------------------------------------------------------------------------------
# MedMCQA
# --------------------------------------------------------------------------------------------------------------------


def test_medmcqa_malformed_row_names_file_line_and_field(medmcqa_file):
    with pytest.raises(DataFormatError) as info:
        build_from_medmcqa(medmcqa_file)
    message = str(info.value)
    assert str(medmcqa_file) in message and f"line {MALFORMED_LINE}" in message and "'cop'" in message


def test_medmcqa_keeps_rows_with_an_explanation_and_reports_the_others(medmcqa_file, caplog):
    with caplog.at_level(logging.WARNING):
        splits, report = build_from_medmcqa(medmcqa_file, skip_invalid=True)
    assert isinstance(report, LoadReport)
    assert report.num_rows == NUM_GOOD and report.num_skipped == 1
    assert report.counts == {"without_rationale": len(NO_EXPLANATION), "duplicate_options": 0}
    assert f"line {MALFORMED_LINE}" in report.reasons[0] and "'cop'" in report.reasons[0]
    assert "Skipped 1 invalid row" in caplog.text

    rows = {row["id"]: row for row in all_rows(splits)}
    assert sorted(rows) == [f"mcq-{i:03d}" for i in range(NUM_GOOD)]
    row = rows["mcq-006"]  # cop = 6 % 4 + 1 = 3 (1-based) -> C
    assert row == {
        "id": "mcq-006",
        "question": "Question 6: which option is right?",
        "options": ["alpha 6", "beta 6", "gamma 6", "delta 6"],
        "answer": "C",
        "answer_idx": 2,
        "rationale": "Because of reason 6.\n\nSecond line.",
        "subject": "Anatomy",
        "source": "medmcqa",
    }
    for split in splits.values():
        assert split.features == REASON_FEATURES


def test_medmcqa_split_is_deterministic_disjoint_and_matches_split_by_hash(clean_medmcqa_file):
    splits, _ = build_from_medmcqa(clean_medmcqa_file)
    again, _ = build_from_medmcqa(clean_medmcqa_file)
    assert list(splits) == ["train", "validation", "test"]
    assert {name: split["id"] for name, split in splits.items()} == {
        name: split["id"] for name, split in again.items()
    }
    ids = {name: set(split["id"]) for name, split in splits.items()}
    assert not (ids["train"] & ids["validation"] or ids["train"] & ids["test"] or ids["validation"] & ids["test"])
    assert len(ids["train"] | ids["validation"] | ids["test"]) == NUM_GOOD
    assert all(ids.values())

    # The hash of data.split_by_hash: test = its held-out part at 0.1, test + validation = its held-out part at 0.2.
    full = Dataset.from_list(all_rows(splits), features=REASON_FEATURES)
    assert set(split_by_hash(full, 0.1)[1]["id"]) == ids["test"]
    assert set(split_by_hash(full, 0.2)[1]["id"]) == ids["test"] | ids["validation"]

    salted, _ = build_from_medmcqa(clean_medmcqa_file, salt="another salt")
    assert set(salted["test"]["id"]) != ids["test"]


def test_medmcqa_fractions(clean_medmcqa_file):
    splits, _ = build_from_medmcqa(clean_medmcqa_file, validation_fraction=0.0, test_fraction=0.5)
    assert list(splits) == ["train", "test"]  # the empty validation split is left out
    everything, _ = build_from_medmcqa(clean_medmcqa_file, validation_fraction=0.0, test_fraction=0.0)
    assert list(everything) == ["train"] and len(everything["train"]) == NUM_GOOD
    for bad in (
        {"test_fraction": -0.1},
        {"validation_fraction": 1.5},
        {"validation_fraction": 0.6, "test_fraction": 0.6},
    ):
        with pytest.raises(ValueError, match="fraction"):
            build_from_medmcqa(clean_medmcqa_file, **bad)


def test_medmcqa_default_path_comes_from_the_data_folder(clean_medmcqa_file, tmp_path, monkeypatch):
    data_dir = clean_medmcqa_file.parents[2]
    splits, _ = build_from_medmcqa(data_dir=data_dir)
    assert sum(len(split) for split in splits.values()) == NUM_GOOD
    monkeypatch.setenv("JMLR_DATA_DIR", str(data_dir))
    from_env, _ = build_from_medmcqa()
    assert all_rows(from_env) == all_rows(splits)
    with pytest.raises(FileNotFoundError, match="JMLR_DATA_DIR"):
        build_from_medmcqa(data_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not both"):
        build_from_medmcqa(clean_medmcqa_file, data_dir=data_dir)


# --------------------------------------------------------------------------------------------------------------------
# CSV layouts
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_accepted_csv_layout_gives_the_same_rows(layout, tmp_path):
    header, rows = LAYOUTS[layout]()
    path = write_csv(tmp_path / f"{layout}.csv", header, rows)
    report = LoadReport()
    splits = build_from_medqa_reason_csv(path, test_fraction=0.0, validation_fraction=0.0, report=report)
    if layout == "json_list_with_split":
        assert sorted(splits) == ["test", "train", "validation"]
        assert [len(splits[name]) for name in ("train", "validation", "test")] == [1, 1, 1]
        by_question = {row["question"]: row for row in all_rows(splits)}
        assert splits["test"][0]["question"] == QUESTIONS[0][0]
        assert splits["validation"][0]["question"] == QUESTIONS[2][0]
        produced = [by_question[q] for q, *_ in QUESTIONS]
    else:
        assert list(splits) == ["train"]
        produced = list(splits["train"])
    assert essentials(produced) == expected_rows()
    assert all(row["source"] == "medqa-reason" for row in produced)
    assert (report.num_rows, report.num_skipped, report.counts) == (
        3,
        0,
        {"without_rationale": 0, "duplicate_options": 0},
    )
    if layout == "json_dict_jind11":
        assert [row["id"] for row in produced] == ["q0", "q1", "q2"]
        assert {row["subject"] for row in produced} == {"step1"}
    if layout == "albers_input_output":
        assert [row["id"] for row in produced] == ["medqa-reason-0", "medqa-reason-1", "medqa-reason-2"]


def test_embedded_options_use_the_last_run_of_markers_and_drop_an_options_label(tmp_path):
    question = "Patient A: a 40-year-old with vitamin B: low levels. Which drug? Options: (A) Aspirin, (B) Heparin, (C) Warfarin"
    path = write_csv(tmp_path / "q.csv", ["input", "output", "output_reason"], [[question, "b", "Because."]])
    row = build_from_medqa_reason_csv(path, test_fraction=0.0, validation_fraction=0.0)["train"][0]
    assert row["question"] == "Patient A: a 40-year-old with vitamin B: low levels. Which drug?"
    assert row["options"] == ["Aspirin", "Heparin", "Warfarin"]
    assert (row["answer"], row["answer_idx"]) == ("B", 1)


def test_answer_given_as_letter_and_text(tmp_path):
    header = ["question", "A", "B", "C", "answer", "rationale"]
    rows = [["Q1?", "x", "y", "z", "C: z", "R."], ["Q2?", "x", "y", "z", "b.", "R."]]
    path = write_csv(tmp_path / "q.csv", header, rows)
    splits = build_from_medqa_reason_csv(path, test_fraction=0.0, validation_fraction=0.0)
    assert splits["train"]["answer"] == ["C", "B"]


def test_csv_split_column_and_hash_split(tmp_path):
    header = ["id", "question", "A", "B", "answer", "rationale", "split"]
    rows = [[f"r{i}", f"Q{i}?", "yes", "no", "A", "R.", "dev" if i == 0 else ""] for i in range(40)]
    path = write_csv(tmp_path / "q.csv", header, rows)
    splits = build_from_medqa_reason_csv(path, validation_fraction=0.0, test_fraction=0.3)
    assert "r0" in splits["validation"]["id"] and len(splits["validation"]) == 1
    hashed = Dataset.from_list([row for row in all_rows(splits) if row["id"] != "r0"], features=REASON_FEATURES)
    assert set(split_by_hash(hashed, 0.3)[1]["id"]) == set(splits["test"]["id"])
    again = build_from_medqa_reason_csv(path, validation_fraction=0.0, test_fraction=0.3)
    assert {n: s["id"] for n, s in splits.items()} == {n: s["id"] for n, s in again.items()}


def test_csv_rows_without_rationale_are_dropped_and_counted(tmp_path):
    header = ["question", "A", "B", "answer", "rationale"]
    rows = [["Q1?", "x", "y", "A", "R."], ["Q2?", "x", "y", "B", "  "], ["Q3?", "x", "y", "B", ""]]
    path = write_csv(tmp_path / "q.csv", header, rows)
    report = LoadReport()
    splits = build_from_medqa_reason_csv(path, test_fraction=0.0, validation_fraction=0.0, report=report)
    assert splits["train"]["question"] == ["Q1?"]
    assert report.counts == {"without_rationale": 2, "duplicate_options": 0} and report.num_skipped == 0


GOOD_ROW = ["Q1?", "x", "y", "z", "w", "A", "Reason."]
BASE_HEADER = ["question", "A", "B", "C", "D", "answer", "rationale"]
BAD_ROWS = {
    "answer_not_an_option": (BASE_HEADER, ["Q?", "x", "y", "z", "w", "F", "R."], "answer", "neither an option"),
    "answer_text_unknown": (BASE_HEADER, ["Q?", "x", "y", "z", "w", "v", "R."], "answer", "neither an option"),
    "answer_letter_text_mismatch": (BASE_HEADER, ["Q?", "x", "y", "z", "w", "B: z", "R."], "answer", "differs"),
    "ambiguous_integer_answer": (BASE_HEADER, ["Q?", "x", "y", "z", "w", "2", "R."], "answer", "ambiguous"),
    "empty_question": (BASE_HEADER, [" ", "x", "y", "z", "w", "A", "R."], "question", "empty"),
    "gap_in_options": (BASE_HEADER, ["Q?", "x", "", "z", "w", "A", "R."], "B", "later option"),
    "one_option": (BASE_HEADER, ["Q?", "x", "", "", "", "A", "R."], "A", "2 to 5 options"),
    "wrong_field_count": (BASE_HEADER, ["Q?", "x", "y", "z", "w", "A", "R.", "extra"], None, "expected 7 columns"),
    "unknown_split": (
        [*BASE_HEADER, "split"],
        ["Q?", "x", "y", "z", "w", "A", "R.", "holdout"],
        "split",
        "unknown split",
    ),
    "answers_disagree": (
        ["question", "options", "answer", "answer_idx", "rationale"],
        ["Q?", '{"A": "x", "B": "y"}', "x", "B", "R."],
        "answer_idx",
        "differs",
    ),
    "options_unreadable": (
        ["question", "options", "answer", "rationale"],
        ["Q?", "x or y", "A", "R."],
        "options",
        "expected a dict",
    ),
    "options_bad_json": (
        ["question", "options", "answer", "rationale"],
        ["Q?", '{"A": "x", "B": }', "A", "R."],
        "options",
        "neither JSON",
    ),
    "options_keys_not_letters": (
        ["question", "options", "answer", "rationale"],
        ["Q?", '{"A": "x", "C": "y"}', "A", "R."],
        "options",
        "option keys",
    ),
    "embedded_options_missing": (
        ["input", "output", "output_reason"],
        ["Which one?", "A", "R."],
        "input",
        "no options",
    ),
    "duplicate_id": (["id", *BASE_HEADER], ["same", "Q?", "x", "y", "z", "w", "A", "R."], "id", "duplicate id"),
}


def good_row_for(header: list[str], *, example_id: str = "same", multiline: bool = False) -> list:
    """A valid row for the headers used in BAD_ROWS; `multiline` puts a line break into its rationale."""
    if header[0] == "id":
        row = [example_id, *GOOD_ROW]
    elif "options" in header:
        row = ["Q0?", '{"A": "x", "B": "y"}', *(["A", "A"] if "answer_idx" in header else ["A"]), "R."]
    elif header[0] == "input":
        row = ["Q0? A: x B: y", "A", "R."]
    else:
        row = GOOD_ROW + ([""] if "split" in header else [])
    if multiline:
        rationale = next(header.index(name) for name in ("rationale", "output_reason") if name in header)
        row[rationale] = "Line one.\nLine two."
    return row


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_malformed_csv_row_names_file_line_and_field(case, tmp_path):
    header, bad, field, problem = BAD_ROWS[case]
    # The first row's rationale spans two lines, so the bad row starts on line 4, not 3.
    rows = [good_row_for(header, multiline=True), bad, good_row_for(header, example_id="other")]
    path = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(DataFormatError) as info:
        build_from_medqa_reason_csv(path)
    error = info.value
    assert error.source == str(path) and error.location == "line 4" and error.field == field, str(error)
    assert problem in error.problem
    assert str(path) in str(error) and "line 4" in str(error)

    report = LoadReport()
    splits = build_from_medqa_reason_csv(path, skip_invalid=True, report=report)
    assert report.num_skipped == 1 and "line 4" in report.reasons[0]
    assert sum(len(split) for split in splits.values()) == 2 == report.num_rows


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (["question", "A", "B", "answer"], "no rationale column"),
        (["A", "B", "answer", "rationale"], "no question column"),
        (["question", "A", "B", "rationale"], "no answer column"),
        (["question", "Question", "A", "B", "answer", "rationale"], "same role"),
    ],
)
def test_csv_header_without_a_required_column(header, problem, tmp_path):
    path = write_csv(tmp_path / "h.csv", header, [["x"] * len(header)])
    with pytest.raises(DataFormatError, match=problem) as info:
        build_from_medqa_reason_csv(path)
    assert info.value.location == "header" and str(path) in str(info.value)


def test_empty_csv_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataFormatError, match="no header"):
        build_from_medqa_reason_csv(path)


# --------------------------------------------------------------------------------------------------------------------
# Dataset card and Hub layout
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def medmcqa_splits(clean_medmcqa_file) -> DatasetDict:
    return build_from_medmcqa(clean_medmcqa_file)[0]


def make_card(splits: DatasetDict, **overrides) -> DatasetCard:
    kwargs = {
        "repo_id": "someone/medmcqa-reason",
        "source_description": "MedMCQA questions with their expert explanations.",
        "license": "mit",
        "build_command": "python -c 'from jmlr_hf.reason_data import build_from_medmcqa; build_from_medmcqa()'",
    }
    kwargs.update(overrides)
    return render_dataset_card(splits, **kwargs)


def test_card_has_metadata_split_sizes_sources_and_loading(medmcqa_splits):
    card = make_card(medmcqa_splits)
    text = str(card)
    metadata = card.data.to_dict()
    assert metadata["license"] == "mit" and metadata["language"] == ["en"]
    assert metadata["task_categories"] == ["question-answering", "multiple-choice"]
    assert metadata["tags"] == ["medical", "jmlr", "medqa-reason"]
    assert metadata["size_categories"] == ["n<1K"] and metadata["pretty_name"] == "medmcqa-reason"
    assert metadata["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-*.parquet"},
                {"split": "validation", "path": "data/validation-*.parquet"},
                {"split": "test", "path": "data/test-*.parquet"},
            ],
        }
    ]
    info = metadata["dataset_info"]
    assert [s["num_examples"] for s in info["splits"]] == [len(s) for s in medmcqa_splits.values()]
    assert {"name": "options", "list": "string"} in info["features"]
    assert "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*.parquet" in text
    for name, split in medmcqa_splits.items():
        assert f"| {name} | {len(split)} | `data/{name}-00000-of-00001.parquet` |" in text
    assert f"| **total** | **{NUM_GOOD}** | |" in text
    assert "| `answer_idx` | int64 |" in text and "| `options` | list of strings |" in text
    assert f'**MedMCQA** (<https://medmcqa.github.io>), `source = "medmcqa"`: {NUM_GOOD} rows. MIT.' in text
    assert "build_from_medmcqa()'\n```" in text
    assert 'load_dataset("someone/medmcqa-reason")' in text
    assert "MedMCQA questions with their expert explanations." in text
    # The card parses back from its text.
    assert DatasetCard(text).data.to_dict()["configs"] == metadata["configs"]


def test_card_for_medqa_reason_rows_asks_to_check_the_licence(tmp_path):
    header, rows = layout_albers()
    splits = build_from_medqa_reason_csv(write_csv(tmp_path / "a.csv", header, rows), test_fraction=0.0)
    card = make_card(splits, license="other", build_command=None, pretty_name="Tiny MedQA-Reason")
    text = str(card)
    assert "# Tiny MedQA-Reason" in text and "license: other" in text
    assert "**akemiH/MedQA-Reason**" in text and "Licence not verified" in text
    assert "the exact command was not recorded" in text


def test_card_rejects_rows_of_another_schema(medmcqa_splits):
    other = DatasetDict({"train": medmcqa_splits["train"].remove_columns("source")})
    with pytest.raises(ValueError, match="REASON_FEATURES"):
        make_card(other)


def files_under(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file())


def test_save_writes_the_hub_layout_and_reads_back(medmcqa_splits, tmp_path):
    directory = save_reason_dataset(medmcqa_splits, tmp_path / "out", make_card(medmcqa_splits))
    assert directory == tmp_path / "out"
    assert files_under(directory) == [
        "README.md",
        "data/test-00000-of-00001.parquet",
        "data/train-00000-of-00001.parquet",
        "data/validation-00000-of-00001.parquet",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "out"]  # no temporary siblings left
    assert DatasetCard.load(directory / "README.md").data.to_dict()["license"] == "mit"

    files = {name: str(directory / f"data/{name}-00000-of-00001.parquet") for name in medmcqa_splits}
    as_parquet = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache1"))
    as_repo = datasets.load_dataset(str(directory), cache_dir=str(tmp_path / "cache2"))
    for loaded in (as_parquet, as_repo):
        assert list(loaded) == list(medmcqa_splits)
        for name, split in medmcqa_splits.items():
            assert loaded[name].features == REASON_FEATURES
            assert loaded[name].to_list() == split.to_list()


def test_saved_rows_read_back_through_the_hub_route_of_the_csv_builder(medmcqa_splits, tmp_path):
    directory = save_reason_dataset(medmcqa_splits, tmp_path / "out", make_card(medmcqa_splits))
    test_file = str(directory / "data/test-00000-of-00001.parquet")
    reread = build_from_medqa_reason_csv(
        "parquet", data_files=test_file, cache_dir=str(tmp_path / "cache"), test_fraction=1.0, validation_fraction=0.0
    )
    assert reread["test"].to_list() == medmcqa_splits["test"].to_list()


def test_save_replaces_an_existing_directory_and_survives_a_crash(medmcqa_splits, tmp_path, monkeypatch):
    directory = tmp_path / "out"
    directory.mkdir()
    (directory / "stale.txt").write_text("old")
    card = make_card(medmcqa_splits)

    calls = []
    original = Dataset.to_parquet

    def crash_on_second_split(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Dataset, "to_parquet", crash_on_second_split)
    with pytest.raises(RuntimeError, match="disk full"):
        save_reason_dataset(medmcqa_splits, directory, card)
    assert files_under(directory) == ["stale.txt"]  # untouched, and no half-written copy next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "out"]

    monkeypatch.setattr(Dataset, "to_parquet", original)
    save_reason_dataset(medmcqa_splits, directory, card)
    assert "stale.txt" not in files_under(directory) and "README.md" in files_under(directory)


def test_save_checks_the_card_against_the_splits(medmcqa_splits, tmp_path):
    card = make_card(DatasetDict({"train": medmcqa_splits["train"]}))
    with pytest.raises(ValueError, match="configs name the splits"):
        save_reason_dataset(medmcqa_splits, tmp_path / "out", card)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_real_medmcqa_dev(tmp_path):
    path = default_data_dir() / reason_data.MEDMCQA_FILE
    assert path.exists(), f"{path} is missing: set JMLR_DATA_DIR to the shared data folder"
    with pytest.raises(
        DataFormatError, match=r"dev.json, line 989: field 'opc': option C has the same text as the answer D"
    ):
        build_from_medmcqa()
    splits, report = build_from_medmcqa(skip_invalid=True)
    sizes = {name: len(split) for name, split in splits.items()}
    # 4,183 questions, 2,206 with a non-empty explanation (the data README); 4 of them have an answer whose text
    # another option repeats (two correct letters: lines 989, 1342, 1407, 2734), all four in the train split.
    assert (report.num_rows, report.num_skipped) == (2202, 4)
    assert report.counts == {"without_rationale": 1977, "duplicate_options": 8}
    lines = [int(reason.split(", line ")[1].split(":")[0]) for reason in report.reasons]
    assert lines == [989, 1342, 1407, 2734] and all("would all be correct" in reason for reason in report.reasons)
    assert sum(sizes.values()) == 2202
    assert sizes == {"train": 1748, "validation": 241, "test": 213}
    rows = all_rows(splits)
    assert len({row["id"] for row in rows}) == 2202
    assert all(row["rationale"] and row["rationale"] == normalize_whitespace(row["rationale"]) for row in rows)
    assert all(row["options"][row["answer_idx"]] and "ABCD"[row["answer_idx"]] == row["answer"] for row in rows)

    # The train split is the train split of the `medmcqa` task (20% held out, same salt): no leakage into it.
    task_train = load_task("medmcqa", "train")
    task_held_out = load_task("medmcqa", "test")
    assert set(splits["train"]["id"]) == set(task_train["id"])
    assert set(splits["validation"]["id"]) | set(splits["test"]["id"]) == set(task_held_out["id"])

    card = make_card(splits)
    assert "| train | 1748 |" in str(card) and "size_categories:\n- 1K<n<10K" in str(card)
    directory = save_reason_dataset(splits, tmp_path / "medmcqa-reason", card)
    reloaded = datasets.load_dataset(str(directory), cache_dir=str(tmp_path / "cache"))
    assert {name: len(split) for name, split in reloaded.items()} == sizes
