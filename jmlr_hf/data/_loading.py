"""The machinery every loader of `jmlr_hf.data` shares (internal to the subpackage; the public names are re-exported
by `jmlr_hf.data`).

* the two schemas: [`QA_FEATURES`] for questions and [`CORPUS_FEATURES`] for retrieval corpora;
* reading records from a local file or a Hub dataset (`open_records`, `iter_json_lines`, PubMedQA's two layouts);
* turning parsed rows into a `Dataset` (`collect`, `finish`), with a [`DataFormatError`] that names the file, the row
  and the field, or (`skip_invalid=True`) a count in one warning and in a [`LoadReport`];
* field validators shared by every loader (`text_field`, `identifier`, `option_list`, `multiple_choice`).

Every QA loader returns a `datasets.Dataset` with the columns of [`QA_FEATURES`]:

* `id`: a stable identifier (also the key of [`jmlr_hf.data.split_by_hash`]),
* `question`, `options` (the option texts in letter order; `[]` for open questions such as PubMedQA),
* `answer`: the option letter `"A"`..`"E"` for multiple choice, the decision `"yes"`/`"no"`/`"maybe"` for PubMedQA,
* `rationale` (`""` when none), `subject` (`""` when none),
* `gold_doc_ids` / `evidence_doc_ids`: corpus passage ids known to hold / to carry the answer (`[]` when unknown).

Every corpus loader returns the columns of [`CORPUS_FEATURES`] (`id`, `title`, `text`); the PubMedQA corpus adds
`article_id` and `section`.

Each loader takes a local file, or otherwise a Hub dataset id that is read with `datasets.load_dataset` (extra
keyword arguments are passed through; the split defaults to `"train"`). Both routes go through the same row parser,
so a Hub copy is validated exactly like a local file.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import datasets
from datasets import Dataset, Features, List, Value

from ..models.configuration_jmlr import MISSING_MARKERS, OPTION_LETTERS, text_problem

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


QA_FEATURES = Features(
    {
        "id": Value("string"),
        "question": Value("string"),
        "options": List(Value("string")),
        "answer": Value("string"),
        "rationale": Value("string"),
        "subject": Value("string"),
        "gold_doc_ids": List(Value("string")),
        "evidence_doc_ids": List(Value("string")),
    }
)
CORPUS_FEATURES = Features({"id": Value("string"), "title": Value("string"), "text": Value("string")})
PUBMEDQA_CORPUS_FEATURES = Features({**CORPUS_FEATURES, "article_id": Value("string"), "section": Value("string")})

# QA rows have 2 to 5 options, lettered A..E (the prefix of the prompt's option letters).
MAX_OPTIONS = 5
ANSWER_LETTERS = OPTION_LETTERS[:MAX_OPTIONS]
# The answers of a decision question (PubMedQA).
DECISIONS = ("yes", "no", "maybe")

# A missing path that ends like a data file is a typo, not a Hub id: fail here instead of inside the Hub client.
_FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".gz", ".parquet", ".txt")
_MAX_REASONS_SHOWN = 5
# `LoadReport.counts` entries that count valid rows a loader left out on purpose (the others count rows kept).
DROPPING_COUNTS = frozenset(
    {
        "without_rationale",
        "duplicate_texts",
        # MedQuAD QA (jmlr_hf.data.medquad)
        "duplicate_questions",
        "short_target",
        "target_in_several_passages",
        "target_not_found",
    }
)


def shorten(text: str, limit: int = 160) -> str:
    """`text`, cut to `limit` characters with an ellipsis: summary lines quote reasons that hold whole field values."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_load_summaries(reports: Sequence[LoadReport], what: str) -> None:
    """Print each report's [`LoadReport.summary`] line, prefixed by `what` (e.g. `"questions"`): what the `jmlr`
    command and the training script show for every file they read, so that no skipped or dropped row goes
    unnoticed."""
    for report in reports:
        print(f"{what}: {report.summary()}", flush=True)


def default_data_dir() -> Path:
    """The shared data folder: `$JMLR_DATA_DIR` if set, else `<project root>/../shared/data`.

    The project root is the folder that holds the `jmlr_hf` package, so the default only makes sense for a source
    checkout; an installed package should set `JMLR_DATA_DIR`.
    """
    from_env = os.environ.get("JMLR_DATA_DIR")
    if from_env:
        return Path(from_env).expanduser()
    project_root = Path(__file__).resolve().parents[2]
    return project_root.parent / "shared" / "data"


@dataclass
class LoadReport:
    """What one loader call kept and dropped; pass an instance as `report=` and read it afterwards.

    Args:
        num_rows: rows in the returned dataset.
        num_skipped: invalid rows dropped because of `skip_invalid=True`.
        reasons: one [`DataFormatError`] message per dropped row.
        counts: loader-specific tallies that are not errors, e.g. `"without_rationale"` (MedMCQA with
            `require_rationale=True`), `"duplicate_texts"` / `"renamed_ids"` (MedQuAD), `"evidence_results"` /
            `"evidence_results_like"` / `"evidence_last_section"` (PubMedQA, see [`load_pubmedqa`]),
            `"duplicate_options"` (multiple-choice rows kept although two wrong options have the same text; see
            [`multiple_choice`]).
        source: the file or Hub dataset the counts are about (set by the loader).
    """

    num_rows: int = 0
    num_skipped: int = 0
    reasons: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def summary(self, max_reasons: int = 3) -> str:
        """One line for a person: what was kept, what was skipped as invalid (the first `max_reasons` reasons) and
        the loader's tallies, those that dropped rows (`DROPPING_COUNTS`) apart from those that only note them.

        The `jmlr` command and the training script print it after every load, so rows that never reach training or
        evaluation are visible where the run is started, not only in a log.
        """
        parts = [f"kept {self.num_rows} row(s)"]
        if self.num_skipped:
            shown = [shorten(reason.removeprefix(f"{self.source}, ")) for reason in self.reasons[:max_reasons]]
            more = f" | ... {self.num_skipped - len(shown)} more" if self.num_skipped > len(shown) else ""
            parts.append(f"skipped {self.num_skipped} invalid row(s) (first: {' | '.join(shown)}{more})")
        else:
            parts.append("skipped 0 invalid rows")
        dropped = {name: count for name, count in self.counts.items() if name in DROPPING_COUNTS}
        noted = {name: count for name, count in self.counts.items() if name not in DROPPING_COUNTS}
        for label, tallies in (("dropped", dropped), ("noted", noted)):
            if tallies:
                parts.append(f"{label}: " + ", ".join(f"{name} {count}" for name, count in tallies.items()))
        return f"{self.source or 'data'}: " + "; ".join(parts)


class DataFormatError(ValueError):
    """A row of a data file does not fit the expected format.

    The message names the source (file path or Hub dataset), the row (`line N` for JSON lines and CSV, `row N` for a
    Hub dataset, `PMID N` for PubMedQA; all 1-based) and the offending field when there is one.
    """

    def __init__(self, source: str, location: str, field: str | None, problem: str) -> None:
        self.source = source
        self.location = location
        self.field = field
        self.problem = problem
        what = f"field {field!r}: {problem}" if field else problem
        super().__init__(f"{source}, {location}: {what}")

    def __reduce__(self):
        # The default pickling replays `args` (the message) into `__init__`, which takes four arguments; worker
        # processes (e.g. `Dataset.map(num_proc=...)`) need the error to survive the round trip.
        return (self.__class__, (self.source, self.location, self.field, self.problem))


class RowError(Exception):
    """Raised by row parsers; the driver adds the source and the row to turn it into a `DataFormatError`."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


# One record as read from a source: (location for messages, 0-based record index, the record or why it is unreadable).
Row = tuple[str, int, "Mapping[str, Any] | RowError"]
Parser = Callable[[Mapping[str, Any], int], list[dict[str, Any]]]


# --------------------------------------------------------------------------------------------------------------------
# Reading records
# --------------------------------------------------------------------------------------------------------------------


def check_hub_id(path_or_id: str) -> None:
    """Refuse, before the Hub client is asked, a name that ends like a data file: a directory of that name is named
    as one ([`check_not_a_directory`]), anything else does not exist."""
    if path_or_id.lower().endswith(_FILE_SUFFIXES):
        check_not_a_directory(path_or_id)
        raise FileNotFoundError(f"{path_or_id} does not exist (it is not a Hub dataset id either).")


def check_not_a_directory(path: str) -> None:
    """An `IsADirectoryError` naming `path` when it is a directory where a data file is expected (instead of a
    "does not exist", or a bare `[Errno 21]` from `open`)."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a data file: give the file itself.")


def load_hub_dataset(path_or_id: str, load_kwargs: dict[str, Any]) -> tuple[str, Iterable[Mapping[str, Any]]]:
    """`datasets.load_dataset(path_or_id, split="train", **load_kwargs)` and a readable name for messages."""
    check_hub_id(path_or_id)
    kwargs = {"split": "train", **load_kwargs}
    dataset = datasets.load_dataset(path_or_id, **kwargs)
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ValueError(f"{path_or_id}: pass a single split (split=...), got the splits {list(dataset)}.")
    source = f"{path_or_id} (split={kwargs['split']!r}"
    if "data_files" in kwargs:
        source += f", data_files={kwargs['data_files']!r}"
    return source + ")", dataset


def iter_hub_rows(dataset: Iterable[Mapping[str, Any]]) -> Iterator[Row]:
    for index, record in enumerate(dataset):
        yield f"row {index + 1}", index, record


def iter_json_lines(path: str) -> Iterator[Row]:
    """Records of a JSON-lines file (gzip-compressed when the name ends in `.gz`); blank lines are ignored.

    Bytes that are not UTF-8 are kept as surrogate escapes, so the field that holds them is reported (see
    [`check_text`]) instead of the whole file failing without a line number; a truncated or corrupt gzip stream
    raises a [`DataFormatError`] naming the file and the line it reached.
    """
    check_not_a_directory(path)
    opener = gzip.open if path.endswith(".gz") else open
    index = 0
    line_number = 0
    try:
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as handle:
            for line_number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                record: Mapping[str, Any] | RowError
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    record = RowError(None, f"malformed JSON ({err.msg}, column {err.colno})")
                else:
                    if not isinstance(record, dict):
                        record = RowError(None, f"expected a JSON object, got {type(record).__name__}")
                yield f"line {line_number}", index, record
                index += 1
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataFormatError(
            path, f"line {line_number + 1}", None, f"the gzip stream is truncated or not gzip ({err})"
        ) from None


def iter_csv(path: str, *, header: bool) -> Iterator[tuple[int, list[str]]]:
    """`(line number, values)` of each non-empty CSV record (quoted fields may span lines: the number is the line
    where the record starts), after the header row when `header`. A BOM is dropped; bytes that are not UTF-8 are
    kept as surrogate escapes (reported per field by [`check_text`]); malformed CSV (an unclosed quote, a field over
    the csv module's size limit) raises a [`DataFormatError`] naming the file and the line."""
    check_not_a_directory(path)
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        next_line = 1
        first = True
        while True:
            line_number = next_line
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise DataFormatError(path, f"line {line_number}", None, f"malformed CSV ({err})") from None
            next_line = reader.line_num + 1
            if first and header:
                first = False
                continue
            first = False
            if values:
                yield line_number, values


def open_records(path_or_id: str, load_kwargs: dict[str, Any]) -> tuple[str, Iterable[Row]]:
    """The records of a local JSON-lines file or of a data set `datasets.load_dataset` reads (a Hub id, or a local
    folder of JSON-lines/parquet files, e.g. `--dataset_name` of the training script), with the source name used in
    messages."""
    if os.path.exists(path_or_id) and not os.path.isdir(path_or_id):
        if load_kwargs:
            raise TypeError(
                f"{path_or_id} is a local file; the keyword arguments {sorted(load_kwargs)} are only used for Hub "
                "datasets (datasets.load_dataset)."
            )
        return path_or_id, iter_json_lines(path_or_id)
    source, dataset = load_hub_dataset(path_or_id, load_kwargs)
    return source, iter_hub_rows(dataset)


# --------------------------------------------------------------------------------------------------------------------
# Building datasets
# --------------------------------------------------------------------------------------------------------------------


def collect(
    rows: Iterable[Row],
    parse: Parser,
    *,
    source: str,
    skip_invalid: bool,
    reasons: list[str],
    unique_ids: bool = True,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Parse `rows` into examples; invalid rows raise, or are skipped and appended to `reasons`.

    A parser returns a list because one record can give several examples (corpus chunks, PubMedQA sections).
    Reading stops once `limit` examples are collected, so a capped load does not parse the whole source.
    """
    examples: list[dict[str, Any]] = []
    seen_ids: set[str] = set()
    for location, index, record in rows:
        if limit is not None and len(examples) >= limit:
            break
        try:
            if isinstance(record, RowError):
                raise record
            parsed = parse(record, index)
            if unique_ids:
                # Duplicate ids would silently merge examples downstream (split_by_hash, gold passage lookups).
                new_ids = [example["id"] for example in parsed]
                duplicates = [i for i in new_ids if i in seen_ids] or [i for i, n in Counter(new_ids).items() if n > 1]
                if duplicates:
                    raise RowError("id", f"duplicate id {duplicates[0]!r}")
                seen_ids.update(new_ids)
        except RowError as err:
            error = DataFormatError(source, location, err.field, err.problem)
            if not skip_invalid:
                raise error from None
            reasons.append(str(error))
            continue
        examples.extend(parsed)
    if limit is not None:
        del examples[limit:]
    return examples


def finish(
    examples: list[dict[str, Any]],
    features: Features,
    *,
    source: str,
    reasons: list[str],
    report: LoadReport | None,
    counts: Mapping[str, int] | None = None,
) -> Dataset:
    """Turn examples into a `Dataset` with explicit features, warn once about skipped rows and fill `report`.

    A source with no valid row is an error (a `DataFormatError`, after `report` is filled), not an empty data set
    that trains or evaluates on nothing."""
    counts = dict(counts or {})
    if "options" in features and any(example["options"] for example in examples):
        # Kept on purpose (one correct letter; a wrong option twice is the source's quirk, not ambiguity), but
        # counted: a user comparing option-level statistics should know.
        counts["duplicate_options"] = sum(duplicate_options(example["options"]) for example in examples)
    if report is not None:
        report.source = source
        report.num_rows = len(examples)
        report.num_skipped = len(reasons)
        report.reasons = list(reasons)
        report.counts = counts
    if not examples:
        dropped = {name: count for name, count in counts.items() if name in DROPPING_COUNTS and count}
        if reasons:
            why = f"all {len(reasons)} rows are invalid; first: {reasons[0]}"
            if dropped:
                why += "; the valid ones were dropped: " + ", ".join(f"{k} {v}" for k, v in dropped.items())
        elif dropped:
            total = sum(dropped.values())
            why = f"all {total} rows were dropped: " + ", ".join(f"{name} {count}" for name, count in dropped.items())
        else:
            why = "it holds no rows"
        raise DataFormatError(source, "the whole source", None, f"no valid row ({why})")
    if reasons:
        logger.warning(
            "Skipped %d invalid row(s) of %s (skip_invalid=True). First: %s",
            len(reasons),
            source,
            " | ".join(reasons[:_MAX_REASONS_SHOWN]),
        )
    # from_dict (not from_list) with the declared features: the columns' types do not depend on the values.
    columns = {name: [example[name] for example in examples] for name in features}
    return Dataset.from_dict(columns, features=features)


# --------------------------------------------------------------------------------------------------------------------
# Field validation (shared by every loader)
# --------------------------------------------------------------------------------------------------------------------


def check_text(value: str, key: str) -> None:
    """Reject text no downstream tool can take, or that betrays a broken file: undecodable bytes or lone surrogates
    (Arrow and tokenizers need valid UTF-8) and NUL characters. The rule is the model's own
    ([`jmlr_hf.models.modeling_jmlr.text_problem`]), which `answer`, the indexes and the CLI apply to their input."""
    problem = text_problem(value)
    if problem:
        raise RowError(key, problem)


def text_field(record: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    """The stripped string under `key`; a missing/null optional field gives `""`, a required one must be non-empty."""
    value = record.get(key)
    if value is None:
        if required:
            raise RowError(key, "missing" if key not in record else "null")
        return ""
    if not isinstance(value, str):
        raise RowError(key, f"expected a string, got {type(value).__name__}")
    check_text(value, key)
    value = clean_text(value)
    if required and not value:
        raise RowError(key, "empty")
    return value


def clean_text(value: str) -> str:
    """`value` stripped, without byte-order marks (U+FEFF, invisible: MMLU's college_medicine has one inside a
    question, line 59), which would otherwise reach the tokenizer as a token of their own."""
    return value.replace("\ufeff", "").strip()


def question_field(record: Mapping[str, Any], key: str) -> str:
    """A question's text ([`text_field`], required), which must not be a missing-value marker: `"nan"`, `"None"`,
    ... are what spreadsheets and pandas write for an empty cell, not a question. (Options may be `"None"`.)"""
    value = text_field(record, key)
    if value.lower() in MISSING_MARKERS:
        raise RowError(key, f"{value!r} is a missing-value marker, not a question")
    return value


def identifier(record: Mapping[str, Any], key: str, default: str | None) -> str:
    """An id field as a string (ints are accepted: Hub copies often store numeric ids); `default` when absent."""
    value = record.get(key)
    if value is None:
        if default is None:
            raise RowError(key, "missing")
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(key, f"expected a string or an integer, got {type(value).__name__}")
    value = str(value)
    check_text(value, key)  # an id is text too: Arrow, JSON output and the console all need valid UTF-8
    value = value.strip()
    if not value:
        raise RowError(key, "empty")
    return value


def option_list(value: Any, key: str) -> list[str]:
    """Option texts from a `{"A": text, "B": text, ...}` mapping (keys must be consecutive letters) or a list."""
    if isinstance(value, Mapping):
        # Arrow stores a column of option dicts as one struct with the union of the keys, so the 4-option rows of a
        # Hub MedQA copy come back with "E": None; absent and null mean the same here.
        letters = sorted(letter for letter, text in value.items() if text is not None)
        expected = list(ANSWER_LETTERS[: len(letters)])
        if letters != expected:
            raise RowError(key, f"option keys must be {', '.join(expected) or 'letters'}, got {', '.join(letters)}")
        texts = [value[letter] for letter in letters]
    elif isinstance(value, (list, tuple)):
        texts = list(value)
    else:
        raise RowError(key, "missing" if value is None else f"expected options, got {type(value).__name__}")
    for position, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise RowError(
                key, f"option {ANSWER_LETTERS[position : position + 1] or position} is empty or not a string"
            )
    for text in texts:
        check_text(text, key)
    return [clean_text(text) for text in texts]


def option_key(text: str) -> str:
    """What makes two option texts the same option: case and spacing ignored (`"Petechial rash"` and
    `"petechial  Rash"` read the same to a student, and to a model scoring the letters)."""
    return " ".join(text.split()).casefold()


def duplicate_options(options: Sequence[str]) -> bool:
    """Whether two options of a row have the same text ([`option_key`])."""
    keys = [option_key(text) for text in options]
    return len(set(keys)) < len(keys)


def multiple_choice(
    *,
    example_id: str,
    question: str,
    options: list[str],
    answer: Any,
    answer_field: str,
    rationale: str = "",
    subject: str = "",
    options_field: str = "options",
    option_fields: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The one validator behind every multiple-choice loader: 2..5 options, an answer letter among them, and an
    answer whose text no other option repeats.

    An answer whose text is also another option's (MedMCQA dev, line 989: options C and D both read "It mostly
    affects the matrix protein", `cop` = 4) makes two letters correct: training on it teaches the model that C is
    wrong, and evaluating on it marks a right answer wrong. Such a row is invalid (`RowError` naming the twin's field:
    `option_fields[i]` when the options come from one field per letter, else `options_field`). Two equal options
    that are both wrong leave one correct letter: the row is kept, and [`finish`] counts it in
    `LoadReport.counts["duplicate_options"]`.
    """
    if not 2 <= len(options) <= len(ANSWER_LETTERS):
        raise RowError(options_field, f"expected 2 to {len(ANSWER_LETTERS)} options, got {len(options)}")
    letters = ANSWER_LETTERS[: len(options)]
    letter = answer.strip().upper() if isinstance(answer, str) else answer
    if not isinstance(letter, str) or len(letter) != 1 or letter not in letters:
        raise RowError(answer_field, f"answer {answer!r} is not among the options {', '.join(letters)}")
    answer_index = letters.index(letter)
    answer_key = option_key(options[answer_index])
    twins = [i for i, text in enumerate(options) if i != answer_index and option_key(text) == answer_key]
    if twins:
        twin_field = option_fields[twins[0]] if option_fields is not None else options_field
        raise RowError(
            twin_field,
            f"option {letters[twins[0]]} has the same text as the answer {letter} ({options[answer_index]!r}): "
            f"{', '.join(sorted([letter, *(letters[i] for i in twins)]))} would all be correct; expected one",
        )
    return {
        "id": example_id,
        "question": question,
        "options": options,
        "answer": letter,
        "rationale": rationale,
        "subject": subject,
        "gold_doc_ids": [],
        "evidence_doc_ids": [],
    }


# --------------------------------------------------------------------------------------------------------------------
# PubMedQA
# --------------------------------------------------------------------------------------------------------------------


class PubMedQAArticle(NamedTuple):
    pmid: str
    question: str
    contexts: list[str]
    labels: list[str]
    decision: str
    long_answer: str


def iter_pubmedqa(path_or_id: str, hub_split: str, load_kwargs: dict[str, Any]) -> tuple[str, Iterable[Row]]:
    """PubMedQA items: a local JSON object keyed by PMID, or a Hub dataset in the `qiaojin/PubMedQA` layout."""
    if os.path.exists(path_or_id):
        check_not_a_directory(path_or_id)
        if load_kwargs:
            raise TypeError(f"The keyword arguments {sorted(load_kwargs)} are only used for Hub datasets.")
        duplicates: list[str] = []

        def keep_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            # json.load keeps the last of two equal keys without a word: a duplicated PMID would lose an item.
            keys = [key for key, _ in pairs]
            duplicates.extend(key for key, count in Counter(keys).items() if count > 1)
            return dict(pairs)

        with open(path_or_id, encoding="utf-8", errors="surrogateescape") as handle:
            try:
                items = json.load(handle, object_pairs_hook=keep_pairs)
            except json.JSONDecodeError as err:
                raise DataFormatError(path_or_id, f"line {err.lineno}", None, f"malformed JSON ({err.msg})") from None
        if not isinstance(items, dict):
            raise DataFormatError(path_or_id, "top level", None, "expected a JSON object keyed by PMID")
        if duplicates:
            where = f"PMID {duplicates[0]}" if duplicates[0] in items else "an item"
            raise DataFormatError(
                path_or_id, where, duplicates[0] if where == "an item" else None, "the key appears twice"
            )

        def local_rows() -> Iterator[Row]:
            for index, (pmid, item) in enumerate(items.items()):
                record = {**item, "pubid": pmid} if isinstance(item, dict) else RowError(None, "expected an object")
                yield f"PMID {pmid}", index, record

        return path_or_id, local_rows()

    source, dataset = load_hub_dataset(path_or_id, {**load_kwargs, "split": hub_split})

    def hub_rows() -> Iterator[Row]:
        for index, record in enumerate(dataset):
            pmid = record.get("pubid")
            yield (f"PMID {pmid}" if pmid is not None else f"row {index + 1}"), index, record

    return source, hub_rows()


def pubmedqa_article(record: Mapping[str, Any]) -> PubMedQAArticle:
    """Validate one item in either layout: the original upper-case file fields or the Hub's nested `context`."""
    pmid = identifier(record, "pubid", default=None)
    if "QUESTION" in record or "CONTEXTS" in record:
        question_key, decision_key, answer_key = "QUESTION", "final_decision", "LONG_ANSWER"
        contexts_key, labels_key = "CONTEXTS", "LABELS"
        sections: Mapping[str, Any] = record
    else:
        question_key, decision_key, answer_key = "question", "final_decision", "long_answer"
        contexts_key, labels_key = "contexts", "labels"
        sections = record.get("context")
        if not isinstance(sections, Mapping):
            raise RowError("context", "missing (expected QUESTION/CONTEXTS/LABELS or question/context)")
    contexts = sections.get(contexts_key)
    labels = sections.get(labels_key)
    if not isinstance(contexts, list) or not contexts:
        raise RowError(contexts_key, "missing" if contexts is None else "expected a non-empty list of sections")
    if any(not isinstance(text, str) or not clean_text(text) for text in contexts):
        raise RowError(contexts_key, "a section text is empty or not a string")
    if not isinstance(labels, list) or len(labels) != len(contexts):
        problem = "missing" if labels is None else f"expected one label per section ({len(contexts)})"
        raise RowError(labels_key, problem)
    if any(not isinstance(label, str) for label in labels):
        raise RowError(labels_key, "labels must be strings")
    # Section texts become corpus passages: the same checks as any text field (NUL, undecodable bytes, surrogates).
    for key, texts in ((contexts_key, contexts), (labels_key, labels)):
        for text in texts:
            check_text(text, key)
    decision = text_field(record, decision_key).lower()
    if decision not in DECISIONS:
        raise RowError(decision_key, f"{decision!r} is not one of {', '.join(DECISIONS)}")
    return PubMedQAArticle(
        pmid=pmid,
        question=question_field(record, question_key),
        contexts=[clean_text(text) for text in contexts],
        labels=[clean_text(label) for label in labels],
        decision=decision,
        long_answer=text_field(record, answer_key, required=False),
    )
