"""MedQA-Reason-style data sets: multiple-choice medical questions, each with its answer and a worked rationale.

JMLR (arXiv 2402.17887) trains on MedQA questions whose answers come with a GPT-4 rationale, published as
`akemiH/MedQA-Reason` on the Hub. This module builds data sets of that kind in one fixed schema, [`REASON_FEATURES`],
from two sources and writes them in the Hub layout with a dataset card (the card is rendered by
`jmlr_hf.hub.render_dataset_card`, the upload is `jmlr_hf.hub.push_dataset_folder`).

Schema (one row per question):

| column | type | meaning |
|---|---|---|
| `id` | string | stable identifier; the key of the hash split |
| `question` | string | the question stem, without the options |
| `options` | list of strings | the option texts in letter order (2 to 5: A..E) |
| `answer` | string | the correct option letter, `"A"`..`"E"` |
| `answer_idx` | int64 | the same answer as a 0-based index into `options` (`"A"` = 0) |
| `rationale` | string | why that answer is right; never empty |
| `subject` | string | subject or exam part when the source has one, else `""` |
| `source` | string | where the row comes from: `"medmcqa"`, `"medqa-reason"`, ... |

`id`, `question`, `options`, `answer`, `rationale` and `subject` mean exactly what they mean in
[`jmlr_hf.data.QA_FEATURES`] (the multiple-choice rows of `load_medqa` / `load_medmcqa`), with the same types, so
the joint trainer and `jmlr evaluate` take these rows wherever they take those (the trainer's `candidates` column is
added by retrieval, as for any task); the corpus-gold columns (`gold_doc_ids`, `evidence_doc_ids`) are left out
because no source here knows them (evaluation treats them as optional), and `answer_idx` and `source` are added.

Sources:

* [`build_from_medmcqa`]: MedMCQA (MIT; Pal et al., CHIL 2022) rows with a non-empty expert explanation (`exp`),
  read with [`jmlr_hf.data.load_medmcqa`]; the explanation becomes the rationale after [`normalize_whitespace`].
  The shared `qa/medmcqa/dev.json` has 4,183 questions, 2,206 of them with an explanation; 4 of those are invalid
  (the answer's text is also another option's: two correct letters), which leaves 2,202 with `skip_invalid=True`.
* [`build_from_medqa_reason_csv`]: a CSV file (or Hub dataset) in the layout of `akemiH/MedQA-Reason` (MedQA
  questions + GPT-4 rationales) or one of the related layouts listed there.

Splits: rows that do not name their split get one from a salted SHA-256 hash of `id` (the hash of
[`jmlr_hf.data.split_by_hash`], see [`jmlr_hf.data.hash_split`]): `test` when the hash is below `test_fraction`, `validation` when it is below
`test_fraction + validation_fraction`, `train` otherwise. The test split is therefore exactly the held-out part of
`split_by_hash(rows, test_fraction, salt)`, test + validation that of `split_by_hash(rows, test_fraction +
validation_fraction, salt)`; with the defaults (0.1, 0.1, salt `"jmlr"`) the train split of MedMCQA is the train
split of the `jmlr` task `medmcqa` (20% held out), so nothing trained on here leaks into that evaluation. An example's
split depends only on its id and the salt. Splits that come out empty are left out of the returned `DatasetDict`.

Publishing: `jmlr_hf.hub.render_dataset_card` renders `model_cards/dataset_card_template.md` into a `DatasetCard` whose
metadata lists the parquet files of each split (`configs`), and [`save_reason_dataset`] writes
`data/{split}-00000-of-00001.parquet` plus `README.md` crash-safely, ready for `load_dataset(directory)` or an upload.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Features, List, Value
from huggingface_hub import DatasetCard

from ..utils.atomic import atomic_directory
from ._loading import (
    ANSWER_LETTERS,
    DataFormatError,
    LoadReport,
    Row,
    RowError,
    collect,
    default_data_dir,
    finish,
    identifier,
    iter_csv,
    iter_hub_rows,
    load_hub_dataset,
    multiple_choice,
    option_list,
    question_field,
    text_field,
)
from .qa import MEDMCQA_FILE, load_medmcqa
from .splits import check_fractions, hash_split

logger = logging.getLogger(__name__)

__all__ = [
    "REASON_FEATURES",
    "SPLITS",
    "build_from_medmcqa",
    "build_from_medqa_reason_csv",
    "check_reason_splits",
    "data_file",
    "load_reason_split",
    "normalize_whitespace",
    "save_reason_dataset",
]

REASON_FEATURES = Features(
    {
        "id": Value("string"),
        "question": Value("string"),
        "options": List(Value("string")),
        "answer": Value("string"),
        "answer_idx": Value("int64"),
        "rationale": Value("string"),
        "subject": Value("string"),
        "source": Value("string"),
    }
)

SPLITS = ("train", "validation", "test")

# --------------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------------


def normalize_whitespace(text: str) -> str:
    """`text` with whitespace noise removed and nothing else changed.

    Line breaks become `\\n`; runs of other whitespace (spaces, tabs, non-breaking spaces) become one space; lines are
    stripped; more than one blank line in a row becomes one; the ends are stripped. Words, punctuation and line
    structure are kept.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [re.sub(r"[^\S\n]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _reason_row(example: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A validated multiple-choice row of `jmlr_hf.data` in the reason schema."""
    return {
        "id": example["id"],
        "question": example["question"],
        "options": list(example["options"]),
        "answer": example["answer"],
        "answer_idx": ANSWER_LETTERS.index(example["answer"]),
        "rationale": normalize_whitespace(example["rationale"]),
        "subject": example["subject"],
        "source": source,
    }


def _split_dataset(
    dataset: Dataset, explicit: Sequence[str | None], validation_fraction: float, test_fraction: float, salt: str
) -> DatasetDict:
    """Group the rows of `dataset` into splits: `explicit[i]` when given, else the hash split of the row's id."""
    indices: dict[str, list[int]] = {split: [] for split in SPLITS}
    for position, (example_id, split) in enumerate(zip(dataset["id"], explicit)):
        indices[split or hash_split(example_id, validation_fraction, test_fraction, salt)].append(position)
    empty = [split for split in SPLITS if not indices[split]]
    if empty:
        logger.info("No rows fell into the split(s) %s; they are left out.", ", ".join(empty))
    return DatasetDict(
        {split: dataset.select(rows).flatten_indices(keep_in_memory=True) for split, rows in indices.items() if rows}
    )


def _log_splits(source: str, splits: DatasetDict) -> None:
    sizes = ", ".join(f"{name} {len(split)}" for name, split in splits.items())
    logger.info("%s: %s.", source, sizes or "no rows")


# --------------------------------------------------------------------------------------------------------------------
# MedMCQA
# --------------------------------------------------------------------------------------------------------------------


def build_from_medmcqa(
    path_or_id: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    salt: str = "jmlr",
    skip_invalid: bool = False,
    **load_kwargs: Any,
) -> tuple[DatasetDict, LoadReport]:
    """A MedQA-Reason-style data set from the MedMCQA questions that have an expert explanation.

    Rows are read and validated by [`jmlr_hf.data.load_medmcqa`] (`cop` is 1-based); rows whose `exp` is null, empty
    or only whitespace are dropped and counted in `report.counts["without_rationale"]` (1,977 of the 4,183 rows of the
    shared `dev.json`). That file also holds 4 invalid rows, whose answer's text another option repeats (lines 989,
    1342, 1407 and 2734): read it with `skip_invalid=True` (2,202 rows kept, 4 skipped; `jmlr push dataset` does by
    default). The rationale is the explanation after [`normalize_whitespace`]; `source` is `"medmcqa"`, `subject` the
    `subject_name`. Splits as in the module docstring.

    Args:
        path_or_id: a MedMCQA JSON-lines file or a Hub dataset id with the same columns; defaults to
            `qa/medmcqa/dev.json` in `data_dir`.
        data_dir: the shared data folder used when `path_or_id` is `None`; defaults to
            [`jmlr_hf.data.default_data_dir`].
        validation_fraction: the share of hash-split rows that go to `validation`.
        test_fraction: the share that goes to `test`.
        salt: the salt of the split hash.
        skip_invalid: drop malformed rows (counted in `report.num_skipped`, reasons in `report.reasons`) instead of
            raising [`jmlr_hf.data.DataFormatError`].
        load_kwargs: passed to `datasets.load_dataset` for a Hub id.

    Returns:
        The splits, and the [`jmlr_hf.data.LoadReport`] of the load (`num_rows` = rows kept).
    """
    check_fractions(validation_fraction, test_fraction)
    if path_or_id is None:
        path = Path(data_dir) if data_dir is not None else default_data_dir()
        path_or_id = path / MEDMCQA_FILE
        if not path_or_id.exists():
            raise FileNotFoundError(
                f"{path_or_id} does not exist; set JMLR_DATA_DIR to the shared data folder or pass data_dir= or a "
                "file / Hub id."
            )
    elif data_dir is not None:
        raise ValueError("pass either path_or_id or data_dir, not both")
    source = str(path_or_id)
    report = LoadReport()
    questions = load_medmcqa(source, require_rationale=True, skip_invalid=skip_invalid, report=report, **load_kwargs)
    rows = [_reason_row(question, "medmcqa") for question in questions]
    dataset = Dataset.from_dict({name: [row[name] for row in rows] for name in REASON_FEATURES}, REASON_FEATURES)
    splits = _split_dataset(dataset, [None] * len(dataset), validation_fraction, test_fraction, salt)
    _log_splits(source, splits)
    return splits, report


# --------------------------------------------------------------------------------------------------------------------
# MedQA-Reason CSV files and related layouts
# --------------------------------------------------------------------------------------------------------------------

# Accepted column names, compared after lower-casing and turning spaces and hyphens into underscores. The first one
# present is used, except for answers, where every present column is read and they must agree.
_ID_COLUMNS = ("id", "qid", "question_id", "uid")
_QUESTION_COLUMNS = ("question", "input", "prompt")
_OPTIONS_COLUMNS = ("options", "choices", "answer_choices")
_OPTION_COLUMN_FAMILIES = (
    tuple(letter.lower() for letter in ANSWER_LETTERS),
    tuple(f"op{letter.lower()}" for letter in ANSWER_LETTERS),
    tuple(f"option_{letter.lower()}" for letter in ANSWER_LETTERS),
)
_ANSWER_COLUMNS = (
    "answer",
    "answer_idx",
    "answer_index",
    "answer_letter",
    "correct_answer",
    "correct_option",
    "output",
    "label",
    "cop",
)
_ZERO_BASED_ANSWER_COLUMNS = ("answer_idx", "answer_index", "label")
_ONE_BASED_ANSWER_COLUMNS = ("cop",)
_RATIONALE_COLUMNS = (
    "rationale",
    "reason",
    "reasoning",
    "explanation",
    "exp",
    "gpt4_rationale",
    "gpt_4_rationale",
    "gpt4_reason",
    "output_reason",
)
_SUBJECT_COLUMNS = ("subject", "subject_name", "meta_info", "topic")
_SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation"}
_SPLIT_NAMES.update({"dev": "validation", "test": "test"})

# An option marker inside text: "A:", "A.", "A)" or "(A)" at the start or after whitespace / a comma / a semicolon.
_OPTION_MARKER = re.compile(r"(?:^|(?<=[\s,;]))(?:\((?P<paren>[A-E])\)\s*|(?P<letter>[A-E])(?P<punct>:\s*|[.)]\s+))")
_OPTIONS_LABEL = re.compile(r"(?:answer\s+)?(?:options|choices)\s*:?\s*$", re.IGNORECASE)
_SINGLE_LETTER = re.compile(r"\(?([A-Ea-e])\)?[.:)]?")
_LETTER_AND_TEXT = re.compile(r"\(?([A-E])\)?\s*[.:)]\s*(.+)", re.DOTALL)


def _normalize_column(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


@dataclass(frozen=True)
class _Layout:
    """Which column of a file plays which role (original column names)."""

    question: str
    rationale: str
    answers: tuple[tuple[str, str], ...]  # (column, normalized name)
    options: str | None  # one column holding every option
    option_columns: tuple[str, ...]  # one column per option letter
    id: str | None
    subject: str | None
    split: str | None
    source: str | None


def _resolve_layout(columns: Iterable[str], source: str) -> _Layout:
    """Map the columns of a file onto the schema, or raise a `DataFormatError` at the header."""
    by_name: dict[str, str] = {}
    for column in columns:
        normalized = _normalize_column(column)
        if not normalized or normalized.startswith("unnamed:"):  # pandas' index column
            continue
        if normalized in by_name:
            raise DataFormatError(
                source, "header", column, f"the columns {by_name[normalized]!r} and {column!r} have the same role"
            )
        by_name[normalized] = column

    def first(candidates: Sequence[str]) -> str | None:
        return next((by_name[name] for name in candidates if name in by_name), None)

    def required(candidates: Sequence[str], role: str) -> str:
        column = first(candidates)
        if column is None:
            raise DataFormatError(
                source, "header", None, f"no {role} column (accepted: {', '.join(candidates)}; got {list(by_name)})"
            )
        return column

    question = required(_QUESTION_COLUMNS, "question")
    rationale = required(_RATIONALE_COLUMNS, "rationale")
    answers = tuple((by_name[name], name) for name in _ANSWER_COLUMNS if name in by_name)
    if not answers:
        raise DataFormatError(
            source, "header", None, f"no answer column (accepted: {', '.join(_ANSWER_COLUMNS)}; got {list(by_name)})"
        )
    option_columns: tuple[str, ...] = ()
    for family in _OPTION_COLUMN_FAMILIES:
        present = []
        for name in family:
            if name not in by_name:
                break
            present.append(by_name[name])
        if len(present) >= 2:
            option_columns = tuple(present)
            break
    return _Layout(
        question=question,
        rationale=rationale,
        answers=answers,
        options=None if option_columns else first(_OPTIONS_COLUMNS),
        option_columns=option_columns,
        id=first(_ID_COLUMNS),
        subject=first(_SUBJECT_COLUMNS),
        split=first(("split",)),
        source=first(("source",)),
    )


def _embedded_options(text: str, *, at_start: bool) -> tuple[str, list[str]] | None:
    """Split `"<question> A: x B: y C: z"` into the question and the option texts, or `None` if there is no list.

    A list is a run of markers A, B, C, ... in this order with one style (`A:`, `A.`, `A)` or `(A)`); the last `A`
    that starts a run of at least two is used, so letters inside the question do not count. With `at_start` the run
    must start the text. Option texts lose one trailing comma or semicolon.
    """
    markers = [
        (match.start(), match.end(), match["paren"] or match["letter"], "()" if match["paren"] else match["punct"][0])
        for match in _OPTION_MARKER.finditer(text)
    ]
    chosen: list[tuple[int, int, str, str]] | None = None
    for position, (start, _, letter, style) in enumerate(markers):
        if letter != "A" or (at_start and start != 0):
            continue
        run = [markers[position]]
        for later in markers[position + 1 :]:
            if len(run) == len(ANSWER_LETTERS):
                break
            if later[2] == ANSWER_LETTERS[len(run)] and later[3] == style:
                run.append(later)
        if len(run) >= 2:
            chosen = run
    if chosen is None:
        return None
    ends = [start for start, _, _, _ in chosen[1:]] + [len(text)]
    options = [re.sub(r"[,;]$", "", text[marker[1] : end].strip()).strip() for marker, end in zip(chosen, ends)]
    question = _OPTIONS_LABEL.sub("", text[: chosen[0][0]].strip()).strip()
    return question, options


def _options_from_cell(value: Any, column: str) -> list[str]:
    """The options held in one cell: a mapping or list (Hub rows), or text holding JSON, a Python literal or a list
    in the `"A. x B. y"` style."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise RowError(column, "empty")
        if text[0] in "{[":
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                try:  # pandas writes a column of dicts as their Python repr: {'A': '...', ...}
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    raise RowError(column, "starts like JSON but is neither JSON nor a Python literal") from None
        else:
            embedded = _embedded_options(text, at_start=True)
            if embedded is None:
                raise RowError(column, "expected a dict, a list, JSON, or text like 'A. ... B. ...'")
            return option_list(embedded[1], column)
    if isinstance(value, Mapping):
        value = {key.strip().upper() if isinstance(key, str) else key: text for key, text in value.items()}
    return option_list(value, column)


def _options_from_columns(record: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    """One column per letter; trailing empty cells are absent options (4-option rows of a 5-option file)."""
    values = [record.get(column) for column in columns]
    values = [None if isinstance(value, str) and not value.strip() else value for value in values]
    while values and values[-1] is None:
        values.pop()
    for column, value in zip(columns, values):
        if value is None:
            raise RowError(column, "empty, but a later option is not")
        if not isinstance(value, str):
            raise RowError(column, f"expected a string, got {type(value).__name__}")
    return [value.strip() for value in values]


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _answer_from_int(value: int, column: str, normalized: str, options: Sequence[str]) -> int:
    if normalized in _ONE_BASED_ANSWER_COLUMNS:
        index, base = value - 1, "1-based"
    elif normalized in _ZERO_BASED_ANSWER_COLUMNS:
        index, base = value, "0-based"
    else:
        raise RowError(
            column,
            f"integer answer {value} is ambiguous (0- or 1-based?); name the column answer_idx / answer_index / "
            "label (0-based) or cop (1-based), or give the letter",
        )
    if not 0 <= index < len(options):
        raise RowError(column, f"answer {value} ({base}) is not among the {len(options)} options")
    return index


def _answer_index(value: Any, column: str, normalized: str, options: Sequence[str]) -> int:
    """The 0-based answer from a letter, an index (base given by the column name) or an option text."""
    letters = ANSWER_LETTERS[: len(options)]
    if isinstance(value, float) and value.is_integer():  # pandas turns an int column with gaps into floats
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RowError(column, "missing" if value is None else f"expected a letter, index or text, got {value!r}")
    if isinstance(value, int):
        return _answer_from_int(value, column, normalized, options)
    text = value.strip()
    if not text:
        raise RowError(column, "empty")
    letter = _SINGLE_LETTER.fullmatch(text)
    if letter:
        index = ANSWER_LETTERS.index(letter[1].upper())
        if index >= len(options):
            raise RowError(column, f"answer {text!r} is not among the options {', '.join(letters)}")
        return index
    if text.isdigit() and normalized in _ZERO_BASED_ANSWER_COLUMNS + _ONE_BASED_ANSWER_COLUMNS:
        return _answer_from_int(int(text), column, normalized, options)
    matches = [index for index, option in enumerate(options) if _same_text(option, text)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RowError(column, f"answer {text!r} matches several options: {', '.join(letters[i] for i in matches)}")
    with_text = _LETTER_AND_TEXT.fullmatch(text)
    if with_text and ANSWER_LETTERS.index(with_text[1]) < len(options):
        index = ANSWER_LETTERS.index(with_text[1])
        if _same_text(options[index], with_text[2]):
            return index
        raise RowError(column, f"answer {text!r} differs from option {with_text[1]} ({options[index]!r})")
    if text.isdigit():  # an integer in a column whose base is unknown: raises
        return _answer_from_int(int(text), column, normalized, options)
    raise RowError(column, f"answer {text!r} is neither an option letter ({', '.join(letters)}) nor an option text")


def _split_name(record: Mapping[str, Any], column: str) -> str | None:
    value = record.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or value.strip().lower() not in _SPLIT_NAMES:
        raise RowError(column, f"unknown split {value!r} (expected train, validation / valid / val / dev, or test)")
    return _SPLIT_NAMES[value.strip().lower()]


def _csv_header(path: str) -> list[str]:
    header = next((values for _, values in iter_csv(path, header=False)), None)
    if not header:
        raise DataFormatError(path, "line 1", None, "no header row (the file is empty)")
    return header


def _iter_csv_records(path: str, header: Sequence[str]) -> Iterator[Row]:
    """Records of a CSV file with a header row; locations name the line where a record starts (1-based)."""
    for index, (line_number, values) in enumerate(iter_csv(path, header=True)):
        record: Mapping[str, Any] | RowError
        if len(values) != len(header):
            record = RowError(None, f"expected {len(header)} columns, got {len(values)}")
        else:
            record = dict(zip(header, values))
        yield f"line {line_number}", index, record


def build_from_medqa_reason_csv(
    path: str | os.PathLike[str],
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    salt: str = "jmlr",
    source: str = "medqa-reason",
    id_prefix: str = "medqa-reason",
    skip_invalid: bool = False,
    report: LoadReport | None = None,
    **load_kwargs: Any,
) -> DatasetDict:
    """A MedQA-Reason-style data set from a CSV file with a header row (or a Hub dataset with the same columns).

    `akemiH/MedQA-Reason` on the Hub is one CSV (`medqa_reason.csv`, about 10.2k MedQA training questions with GPT-4
    rationales). Its copy `JosefAlbers/akemiH_MedQA_Reason` has the columns `input` (the question followed by its
    options, `"... A: x B: y ..."`), `output` (the answer letter), `output_reason` (the rationale) and `summary`;
    the original header was not checked by jmlr_hf, so every layout below is accepted. Column names are compared
    after lower-casing and turning spaces and hyphens into underscores (`Question` = `question`); an unnamed or
    `Unnamed: 0` column (a pandas index) is ignored, and so is any column not named here.

    * question (required): `question`, `input` or `prompt`, the first present.
    * options, one of:
        - one column per option: `A`..`E`, `opa`..`ope` or `option_a`..`option_e` (at least A and B; a trailing
          empty cell means the row has fewer options);
        - one `options` / `choices` / `answer_choices` column holding a `{"A": ..., "B": ...}` dict or a list, as
          JSON, as a Python literal (what pandas writes) or, from a Hub dataset, as a real dict or list; or the
          text `"A. x B. y ..."` (markers `A.`, `A:`, `A)` or `(A)`);
        - none: the options follow the question in its own column, `"<question> A: x B: y C: z D: w"` (any of the
          marker styles; an `Options:` label before them is dropped). The last run of markers A, B, ... counts.
    * answer (required): every present column of `answer`, `answer_idx`, `answer_index`, `answer_letter`,
      `correct_answer`, `correct_option`, `output`, `label`, `cop` is read and they must agree. A value is an option
      letter (`C`, `c`, `(C)`, `C.`), an option's text (case and spacing ignored), `"C: <text of C>"`, or an integer:
      0-based in `answer_idx` / `answer_index` / `label`, 1-based in `cop`, an error elsewhere (ambiguous).
    * rationale (required column): `rationale`, `reason`, `reasoning`, `explanation`, `exp`, `gpt4_rationale`,
      `gpt_4_rationale`, `gpt4_reason` or `output_reason`. Rows whose rationale is empty are dropped and counted in
      `report.counts["without_rationale"]`; the rest go through [`normalize_whitespace`].
    * optional: `id` / `qid` / `question_id` / `uid` (default `f"{id_prefix}-{index}"`, the 0-based record index),
      `subject` / `subject_name` / `meta_info` / `topic`, `source` (default: the `source` argument), and `split`
      (`train`, `validation` / `valid` / `val` / `dev`, `test`). Rows without a split value get the hash split.

    The rows written by [`save_reason_dataset`] (read back as a Hub dataset) are in one of these layouts too.

    A row that cannot be read (missing or empty field, unreadable options, an answer that is not among the options,
    answers that disagree, a duplicate id, a wrong number of CSV fields) raises [`jmlr_hf.data.DataFormatError`]
    naming the file, the line and the column; with `skip_invalid=True` it is dropped and reported instead. A file
    without a question, answer or rationale column fails at its header.

    Args:
        path: a CSV file, or a Hub dataset id read with `datasets.load_dataset(path, split="train", **load_kwargs)`.
        validation_fraction, test_fraction, salt: the hash split (see the module docstring).
        source: the `source` of rows without a `source` column.
        id_prefix: the prefix of the ids of rows without an id column.
        skip_invalid: drop unreadable rows (one warning, counted in `report`) instead of raising.
        report: filled with the counts of this load.
        load_kwargs: passed to `datasets.load_dataset` for a Hub id.
    """
    check_fractions(validation_fraction, test_fraction)
    path = str(path)
    rows: Iterable[Row]
    if os.path.exists(path):
        if load_kwargs:
            raise TypeError(f"{path} is a local file; the keyword arguments {sorted(load_kwargs)} are for Hub ids.")
        header = _csv_header(path)
        source_name, rows = path, _iter_csv_records(path, header)
    else:
        source_name, dataset = load_hub_dataset(path, load_kwargs)
        header = list(dataset.column_names or [])
        rows = iter_hub_rows(dataset)
    layout = _resolve_layout(header, source_name)
    without_rationale = 0

    def parse(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        nonlocal without_rationale
        question = question_field(record, layout.question)
        options_field = layout.question
        if layout.option_columns:
            options, options_field = _options_from_columns(record, layout.option_columns), layout.option_columns[0]
        elif layout.options is not None:
            options, options_field = _options_from_cell(record.get(layout.options), layout.options), layout.options
        else:
            embedded = _embedded_options(question, at_start=False)
            if embedded is None:
                raise RowError(layout.question, "no options: expected 'A: ... B: ...' after the question")
            question, options = embedded
            if not question:
                raise RowError(layout.question, "empty question before the options")
        if not 2 <= len(options) <= len(ANSWER_LETTERS):
            raise RowError(options_field, f"expected 2 to {len(ANSWER_LETTERS)} options, got {len(options)}")
        (answer_column, normalized), *others = layout.answers
        answer = _answer_index(record.get(answer_column), answer_column, normalized, options)
        for column, other_normalized in others:
            value = record.get(column)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            other = _answer_index(value, column, other_normalized, options)
            if other != answer:
                raise RowError(
                    column,
                    f"answer {ANSWER_LETTERS[other]} differs from {ANSWER_LETTERS[answer]} in column {answer_column!r}",
                )
        example_id = (
            identifier(record, layout.id, default=f"{id_prefix}-{index}") if layout.id else f"{id_prefix}-{index}"
        )
        example = multiple_choice(
            example_id=example_id,
            question=question,
            options=options,
            answer=ANSWER_LETTERS[answer],
            answer_field=answer_column,
            rationale=text_field(record, layout.rationale, required=False),
            subject=text_field(record, layout.subject, required=False) if layout.subject else "",
            options_field=options_field,
            option_fields=layout.option_columns[: len(options)] or None,
        )
        split = _split_name(record, layout.split) if layout.split else None
        row_source = (text_field(record, layout.source, required=False) if layout.source else "") or source
        if not example["rationale"]:
            without_rationale += 1
            return []
        # "_split" is not a column: `finish` keeps only the columns of REASON_FEATURES.
        return [{**_reason_row(example, row_source), "_split": split}]

    reasons: list[str] = []
    examples = collect(rows, parse, source=source_name, skip_invalid=skip_invalid, reasons=reasons)
    if without_rationale:
        logger.info("%s: dropped %d row(s) with an empty rationale.", source_name, without_rationale)
    counts = {"without_rationale": without_rationale}
    dataset = finish(examples, REASON_FEATURES, source=source_name, reasons=reasons, report=report, counts=counts)
    explicit = [example["_split"] for example in examples]
    splits = _split_dataset(dataset, explicit, validation_fraction, test_fraction, salt)
    _log_splits(source_name, splits)
    return splits


# --------------------------------------------------------------------------------------------------------------------
# Dataset card and Hub layout
# --------------------------------------------------------------------------------------------------------------------


def check_reason_splits(dataset_dict: DatasetDict) -> None:
    """Raise a `ValueError` unless every split is named in `\\w+` and has [`REASON_FEATURES`]."""
    if not len(dataset_dict):
        raise ValueError("the DatasetDict has no splits")
    for name, split in dataset_dict.items():
        if not re.fullmatch(r"\w+", name):
            raise ValueError(f"split names must be letters, digits and underscores, got {name!r}")
        if split.features != REASON_FEATURES:
            raise ValueError(f"split {name!r} does not have REASON_FEATURES: {split.features}")


def data_file(split: str) -> str:
    """Where a split's rows go in the Hub layout."""
    return f"data/{split}-00000-of-00001.parquet"


def save_reason_dataset(dataset_dict: DatasetDict, directory: str | os.PathLike[str], card: DatasetCard) -> Path:
    """Write `dataset_dict` and its card in the Hub layout: `data/{split}-00000-of-00001.parquet` and `README.md`.

    The directory is written under a temporary sibling name and renamed into place at the end
    ([`jmlr_hf.atomic.atomic_directory`]), so a crash never leaves a half-written directory; an existing `directory`
    is replaced as a whole (anything else in it is removed). The card's `configs`, when present, must name exactly
    the splits of `dataset_dict`, so that `load_dataset(directory)` and the Hub find every file.

    Returns:
        `directory` as a `Path`.
    """
    check_reason_splits(dataset_dict)
    configs = card.data.to_dict().get("configs")
    if configs:
        declared = sorted(
            entry["split"] for config in configs for entry in config.get("data_files", []) if isinstance(entry, dict)
        )
        if declared != sorted(dataset_dict):
            raise ValueError(f"the card's configs name the splits {declared}, the data has {sorted(dataset_dict)}")
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / "data").mkdir()
        for name, split in dataset_dict.items():
            split.to_parquet(str(tmp / data_file(name)))
        card.save(tmp / "README.md")
    logger.info("Wrote %s (%s).", directory, ", ".join(f"{n} {len(s)}" for n, s in dataset_dict.items()))
    return directory


def load_reason_split(path_or_id: str | os.PathLike[str], split: str, **load_kwargs: Any) -> Dataset:
    """One split of a MedQA-Reason-style data set: a Hub id, or a folder written by [`save_reason_dataset`].

    `split` is `"train"`, `"validation"` or `"test"`; the rows come back with [`REASON_FEATURES`], ready for the
    trainer and `jmlr evaluate` (the task `medqa-reason`). A data set without the schema's columns raises a
    [`jmlr_hf.data.DataFormatError`] that names the missing columns.
    """
    import datasets

    source = str(path_or_id)
    loaded = datasets.load_dataset(source, split=split, **load_kwargs)
    if not isinstance(loaded, Dataset):  # streaming: materialise, the trainer needs random access
        loaded = Dataset.from_list(list(loaded))
    missing = [name for name in REASON_FEATURES if name not in loaded.column_names]
    if missing:
        raise DataFormatError(source, f"split {split!r}", ", ".join(missing), "missing column(s) of REASON_FEATURES")
    return loaded.select_columns(list(REASON_FEATURES)).cast(REASON_FEATURES)
