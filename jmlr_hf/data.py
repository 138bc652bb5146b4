"""Loaders that turn medical QA sets and retrieval corpora into the two schemas the JMLR trainer reads.

Every QA loader returns a `datasets.Dataset` with the columns of [`QA_FEATURES`]:

* `id`: a stable identifier (also the key of [`split_by_hash`]),
* `question`, `options` (the option texts in letter order; `[]` for open questions such as PubMedQA),
* `answer`: the option letter `"A"`..`"E"` for multiple choice, the decision `"yes"`/`"no"`/`"maybe"` for PubMedQA,
* `rationale` (`""` when none), `subject` (`""` when none),
* `gold_doc_ids` / `evidence_doc_ids`: corpus passage ids known to hold / to carry the answer (`[]` when unknown).

Every corpus loader returns the columns of [`CORPUS_FEATURES`] (`id`, `title`, `text`); the PubMedQA corpus adds
`article_id` and `section`.

Each loader takes a local file, or otherwise a Hub dataset id that is read with `datasets.load_dataset` (extra
keyword arguments are passed through; the split defaults to `"train"`). Both routes go through the same row parser,
so a Hub copy is validated exactly like a local file. A bad row (a missing or empty field, an answer that is not
among the options, malformed JSON, a duplicate id) raises [`DataFormatError`] naming the file, the row and the
field; with `skip_invalid=True` such rows are dropped and reported in one warning and in an optional [`LoadReport`].

The shared data folder that tests and demos read is [`default_data_dir`]; see its README for the files.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import datasets
from datasets import Dataset, Features, List, Value

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

__all__ = [
    "CORPUS_FEATURES",
    "MEDQUAD_FILE",
    "PUBMEDQA_CORPUS_FEATURES",
    "QA_FEATURES",
    "DataFormatError",
    "LoadReport",
    "chunk_text",
    "default_data_dir",
    "load_corpus",
    "load_medmcqa",
    "load_medqa",
    "load_medquad_corpus",
    "load_mmlu",
    "load_pubmedqa",
    "load_pubmedqa_corpus",
    "split_by_hash",
]

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

OPTION_LETTERS = "ABCDE"
PUBMEDQA_DECISIONS = ("yes", "no", "maybe")
MEDQUAD_FILE = "corpus/medquad/medquad_answers.jsonl.gz"

# A missing path that ends like a data file is a typo, not a Hub id: fail here instead of inside the Hub client.
_FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".gz", ".parquet", ".txt")
_MAX_REASONS_SHOWN = 5
# PubMedQA section labels that name the results part of an abstract when no section is labelled exactly RESULTS
# ("METHODS AND RESULTS", "MEASUREMENTS AND MAIN RESULTS", "PRINCIPAL FINDINGS", "RESULT", ...).
_RESULTS_LIKE_LABEL = re.compile(r"\b(?:RESULTS?|FINDINGS)\b")


def default_data_dir() -> Path:
    """The shared data folder: `$JMLR_DATA_DIR` if set, else `<project root>/../shared/data`.

    The project root is the folder that holds the `jmlr_hf` package, so the default only makes sense for a source
    checkout; an installed package should set `JMLR_DATA_DIR`.
    """
    from_env = os.environ.get("JMLR_DATA_DIR")
    if from_env:
        return Path(from_env).expanduser()
    project_root = Path(__file__).resolve().parent.parent
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
            `"evidence_results_like"` / `"evidence_last_section"` (PubMedQA, see [`load_pubmedqa`]).
    """

    num_rows: int = 0
    num_skipped: int = 0
    reasons: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


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


class _RowError(Exception):
    """Raised by row parsers; the driver adds the source and the row to turn it into a `DataFormatError`."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


# One record as read from a source: (location for messages, 0-based record index, the record or why it is unreadable).
_Row = tuple[str, int, "Mapping[str, Any] | _RowError"]
_Parser = Callable[[Mapping[str, Any], int], list[dict[str, Any]]]


# --------------------------------------------------------------------------------------------------------------------
# Reading records
# --------------------------------------------------------------------------------------------------------------------


def _check_hub_id(path_or_id: str) -> None:
    if path_or_id.lower().endswith(_FILE_SUFFIXES):
        raise FileNotFoundError(f"{path_or_id} does not exist (it is not a Hub dataset id either).")


def _load_hub_dataset(path_or_id: str, load_kwargs: dict[str, Any]) -> tuple[str, Iterable[Mapping[str, Any]]]:
    """`datasets.load_dataset(path_or_id, split="train", **load_kwargs)` and a readable name for messages."""
    _check_hub_id(path_or_id)
    kwargs = {"split": "train", **load_kwargs}
    dataset = datasets.load_dataset(path_or_id, **kwargs)
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ValueError(f"{path_or_id}: pass a single split (split=...), got the splits {list(dataset)}.")
    source = f"{path_or_id} (split={kwargs['split']!r}"
    if "data_files" in kwargs:
        source += f", data_files={kwargs['data_files']!r}"
    return source + ")", dataset


def _iter_hub_rows(dataset: Iterable[Mapping[str, Any]]) -> Iterator[_Row]:
    for index, record in enumerate(dataset):
        yield f"row {index + 1}", index, record


def _iter_json_lines(path: str) -> Iterator[_Row]:
    """Records of a JSON-lines file (gzip-compressed when the name ends in `.gz`); blank lines are ignored."""
    opener = gzip.open if path.endswith(".gz") else open
    index = 0
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            record: Mapping[str, Any] | _RowError
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                record = _RowError(None, f"malformed JSON ({err.msg}, column {err.colno})")
            else:
                if not isinstance(record, dict):
                    record = _RowError(None, f"expected a JSON object, got {type(record).__name__}")
            yield f"line {line_number}", index, record
            index += 1


def _open_records(path_or_id: str, load_kwargs: dict[str, Any]) -> tuple[str, Iterable[_Row]]:
    """The records of a local JSON-lines file or of a Hub dataset, with the source name used in messages."""
    if os.path.exists(path_or_id):
        if load_kwargs:
            raise TypeError(
                f"{path_or_id} is a local file; the keyword arguments {sorted(load_kwargs)} are only used for Hub "
                "datasets (datasets.load_dataset)."
            )
        return path_or_id, _iter_json_lines(path_or_id)
    source, dataset = _load_hub_dataset(path_or_id, load_kwargs)
    return source, _iter_hub_rows(dataset)


# --------------------------------------------------------------------------------------------------------------------
# Building datasets
# --------------------------------------------------------------------------------------------------------------------


def _collect(
    rows: Iterable[_Row],
    parse: _Parser,
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
            if isinstance(record, _RowError):
                raise record
            parsed = parse(record, index)
            if unique_ids:
                # Duplicate ids would silently merge examples downstream (split_by_hash, gold passage lookups).
                new_ids = [example["id"] for example in parsed]
                duplicates = [i for i in new_ids if i in seen_ids] or [i for i, n in Counter(new_ids).items() if n > 1]
                if duplicates:
                    raise _RowError("id", f"duplicate id {duplicates[0]!r}")
                seen_ids.update(new_ids)
        except _RowError as err:
            error = DataFormatError(source, location, err.field, err.problem)
            if not skip_invalid:
                raise error from None
            reasons.append(str(error))
            continue
        examples.extend(parsed)
    if limit is not None:
        del examples[limit:]
    return examples


def _finish(
    examples: list[dict[str, Any]],
    features: Features,
    *,
    source: str,
    reasons: list[str],
    report: LoadReport | None,
    counts: Mapping[str, int] | None = None,
) -> Dataset:
    """Turn examples into a `Dataset` with explicit features, warn once about skipped rows and fill `report`."""
    if reasons:
        logger.warning(
            "Skipped %d invalid row(s) of %s (skip_invalid=True). First: %s",
            len(reasons),
            source,
            " | ".join(reasons[:_MAX_REASONS_SHOWN]),
        )
    if report is not None:
        report.num_rows = len(examples)
        report.num_skipped = len(reasons)
        report.reasons = list(reasons)
        report.counts = dict(counts or {})
    # from_dict (not from_list) so that an empty result still gets the declared columns.
    columns = {name: [example[name] for example in examples] for name in features}
    return Dataset.from_dict(columns, features=features)


# --------------------------------------------------------------------------------------------------------------------
# Field validation (shared by every loader)
# --------------------------------------------------------------------------------------------------------------------


def _text(record: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    """The stripped string under `key`; a missing/null optional field gives `""`, a required one must be non-empty."""
    value = record.get(key)
    if value is None:
        if required:
            raise _RowError(key, "missing" if key not in record else "null")
        return ""
    if not isinstance(value, str):
        raise _RowError(key, f"expected a string, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise _RowError(key, "empty")
    return value


def _identifier(record: Mapping[str, Any], key: str, default: str | None) -> str:
    """An id field as a string (ints are accepted: Hub copies often store numeric ids); `default` when absent."""
    value = record.get(key)
    if value is None:
        if default is None:
            raise _RowError(key, "missing")
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _RowError(key, f"expected a string or an integer, got {type(value).__name__}")
    value = str(value).strip()
    if not value:
        raise _RowError(key, "empty")
    return value


def _option_list(value: Any, key: str) -> list[str]:
    """Option texts from a `{"A": text, "B": text, ...}` mapping (keys must be consecutive letters) or a list."""
    if isinstance(value, Mapping):
        # Arrow stores a column of option dicts as one struct with the union of the keys, so the 4-option rows of a
        # Hub MedQA copy come back with "E": None; absent and null mean the same here.
        letters = sorted(letter for letter, text in value.items() if text is not None)
        expected = list(OPTION_LETTERS[: len(letters)])
        if letters != expected:
            raise _RowError(key, f"option keys must be {', '.join(expected) or 'letters'}, got {', '.join(letters)}")
        texts = [value[letter] for letter in letters]
    elif isinstance(value, (list, tuple)):
        texts = list(value)
    else:
        raise _RowError(key, "missing" if value is None else f"expected options, got {type(value).__name__}")
    for position, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise _RowError(
                key, f"option {OPTION_LETTERS[position : position + 1] or position} is empty or not a string"
            )
    return [text.strip() for text in texts]


def _multiple_choice(
    *,
    example_id: str,
    question: str,
    options: list[str],
    answer: Any,
    answer_field: str,
    rationale: str = "",
    subject: str = "",
    options_field: str = "options",
) -> dict[str, Any]:
    """The one validator behind every multiple-choice loader: 2..5 options and an answer letter among them."""
    if not 2 <= len(options) <= len(OPTION_LETTERS):
        raise _RowError(options_field, f"expected 2 to {len(OPTION_LETTERS)} options, got {len(options)}")
    letters = OPTION_LETTERS[: len(options)]
    letter = answer.strip().upper() if isinstance(answer, str) else answer
    if not isinstance(letter, str) or len(letter) != 1 or letter not in letters:
        raise _RowError(answer_field, f"answer {answer!r} is not among the options {', '.join(letters)}")
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
# Multiple-choice QA
# --------------------------------------------------------------------------------------------------------------------


def _parse_medqa(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    options = _option_list(record.get("options"), "options")
    example = _multiple_choice(
        example_id=_identifier(record, "id", default=f"medqa-{index}"),
        question=_text(record, "question"),
        options=options,
        answer=_text(record, "answer_idx"),
        answer_field="answer_idx",
        subject=_text(record, "meta_info", required=False),
    )
    # jind11 rows repeat the answer text; a mismatch means the options were shuffled without updating answer_idx.
    answer_text = record.get("answer")
    if isinstance(answer_text, str) and answer_text.strip():
        chosen = options[OPTION_LETTERS.index(example["answer"])]
        if answer_text.strip() != chosen:
            raise _RowError("answer", f"{answer_text!r} differs from option {example['answer']} ({chosen!r})")
    return [example]


def load_medqa(
    path_or_id: str,
    *,
    skip_invalid: bool = False,
    report: LoadReport | None = None,
    **load_kwargs: Any,
) -> Dataset:
    """Load MedQA (USMLE) in the jind11 JSON-lines layout into the QA schema.

    Each row has `question`, `options` (`{"A": ..., "B": ...}`, 4 or 5 options), `answer_idx` (the letter), optionally
    `answer` (the answer text, checked against the option it names), `meta_info` (kept as `subject`, e.g. `"step1"`)
    and `id`. Rows without an id get `f"medqa-{index}"` with the 0-based record index.

    Args:
        path_or_id: a local JSON-lines file (`.gz` allowed) or a Hub dataset id with the same columns.
        skip_invalid: drop invalid rows (one warning, counted in `report`) instead of raising [`DataFormatError`].
        report: filled with the counts of this load.
        load_kwargs: passed to `datasets.load_dataset` for a Hub id (`split` defaults to `"train"`).
    """
    source, rows = _open_records(path_or_id, load_kwargs)
    reasons: list[str] = []
    examples = _collect(rows, _parse_medqa, source=source, skip_invalid=skip_invalid, reasons=reasons)
    return _finish(examples, QA_FEATURES, source=source, reasons=reasons, report=report)


_MEDMCQA_OPTION_FIELDS = ("opa", "opb", "opc", "opd")


def _parse_medmcqa(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    cop = record.get("cop")
    # `cop` is 1-based in the released JSON files. Only ints 1..4 are accepted: guessing the base from the value
    # would silently shift every answer of a 0-based copy by one letter.
    if isinstance(cop, bool) or not isinstance(cop, int) or not 1 <= cop <= len(_MEDMCQA_OPTION_FIELDS):
        problem = "missing" if cop is None else f"answer {cop!r} is not among the options 1..4 (1-based: 1=A ... 4=D)"
        raise _RowError("cop", problem)
    return [
        _multiple_choice(
            example_id=_identifier(record, "id", default=f"medmcqa-{index}"),
            question=_text(record, "question"),
            options=[_text(record, key) for key in _MEDMCQA_OPTION_FIELDS],
            answer=OPTION_LETTERS[cop - 1],
            answer_field="cop",
            rationale=_text(record, "exp", required=False),
            subject=_text(record, "subject_name", required=False),
        )
    ]


def load_medmcqa(
    path_or_id: str,
    *,
    require_rationale: bool = False,
    skip_invalid: bool = False,
    report: LoadReport | None = None,
    **load_kwargs: Any,
) -> Dataset:
    """Load MedMCQA JSON lines into the QA schema.

    Rows have `question`, `opa`..`opd`, `cop` (the correct option, **1-based**: 1=A ... 4=D, as in the released
    files; only the integers 1..4 are accepted), `exp` (the explanation, may be null or empty; becomes `rationale`),
    `subject_name` (becomes `subject`) and `id`.

    Note: check the answer base of any other copy before loading it here; a copy that stores `cop` 0-based (0=A)
    fails on its 0 answers and would shift the others by one letter.

    Args:
        path_or_id: a local JSON-lines file or a Hub dataset id with the same columns.
        require_rationale: keep only rows with a non-empty explanation. Dropped rows are not errors; they are
            logged and counted in `report.counts["without_rationale"]`.
        skip_invalid: drop invalid rows (one warning, counted in `report`) instead of raising [`DataFormatError`].
        report: filled with the counts of this load.
        load_kwargs: passed to `datasets.load_dataset` for a Hub id (`split` defaults to `"train"`).
    """
    source, rows = _open_records(path_or_id, load_kwargs)
    reasons: list[str] = []
    examples = _collect(rows, _parse_medmcqa, source=source, skip_invalid=skip_invalid, reasons=reasons)
    counts: dict[str, int] = {}
    if require_rationale:
        kept = [example for example in examples if example["rationale"]]
        counts["without_rationale"] = len(examples) - len(kept)
        logger.info("%s: kept %d of %d questions with an explanation.", source, len(kept), len(examples))
        examples = kept
    return _finish(examples, QA_FEATURES, source=source, reasons=reasons, report=report, counts=counts)


_MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")


def _iter_mmlu_csv(path: str, subject: str) -> Iterator[_Row]:
    """Records of one MMLU CSV file (no header: question, A, B, C, D, answer); locations name the starting line."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        index = 0
        next_line = 1
        for values in reader:
            # Quoted fields may span lines, so the record starts where the previous one ended.
            line_number, next_line = next_line, reader.line_num + 1
            if not values:
                continue
            record: Mapping[str, Any] | _RowError
            if len(values) != len(_MMLU_COLUMNS):
                record = _RowError(None, f"expected {len(_MMLU_COLUMNS)} columns {_MMLU_COLUMNS}, got {len(values)}")
            else:
                record = {**dict(zip(_MMLU_COLUMNS, values)), "subject": subject}
            yield f"line {line_number}", index, record
            index += 1


def _parse_mmlu(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    subject = _text(record, "subject", required=False)
    if "choices" in record:
        # The Hub layout (cais/mmlu): `choices` is a list and `answer` a 0-based index.
        options = _option_list(record.get("choices"), "choices")
        answer = record.get("answer")
        if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(options):
            answer = OPTION_LETTERS[answer]
        options_field = "choices"
    else:
        options = [_text(record, letter) for letter in OPTION_LETTERS[:4]]
        answer = _text(record, "answer")
        options_field = "A"
    return [
        _multiple_choice(
            example_id=_identifier(record, "id", default=f"mmlu-{subject or 'all'}-{index}"),
            question=_text(record, "question"),
            options=options,
            answer=answer,
            answer_field="answer",
            subject=subject,
            options_field=options_field,
        )
    ]


def _mmlu_subject(path: Path) -> str:
    name = path.name
    return name[: -len("_test.csv")] if name.endswith("_test.csv") else path.stem


def load_mmlu(
    path_or_glob: str,
    *,
    skip_invalid: bool = False,
    report: LoadReport | None = None,
    **load_kwargs: Any,
) -> Dataset:
    """Load MMLU multiple-choice CSV files (no header: `question,A,B,C,D,answer`) into the QA schema.

    Args:
        path_or_glob: a directory (every `*_test.csv` in it, sorted by name), a glob pattern, a single CSV file, or
            a Hub dataset id in the `cais/mmlu` layout (`question`, `subject`, `choices`, 0-based `answer`; pass
            e.g. `name="anatomy", split="test"`). The subject of a CSV file is its name without `_test.csv`; ids
            are `f"mmlu-{subject}-{index}"` with the 0-based row index in the file.
        skip_invalid: drop invalid rows (one warning, counted in `report`) instead of raising [`DataFormatError`].
        report: filled with the counts of this load.
        load_kwargs: passed to `datasets.load_dataset` for a Hub id (`split` defaults to `"train"`).
    """
    reasons: list[str] = []
    examples: list[dict[str, Any]] = []
    if os.path.isdir(path_or_glob):
        files = sorted(Path(path_or_glob).glob("*_test.csv"))
    elif any(char in path_or_glob for char in "*?["):
        parent, pattern = os.path.split(path_or_glob)
        files = sorted(Path(parent or ".").glob(pattern))
    elif os.path.isfile(path_or_glob):
        files = [Path(path_or_glob)]
    else:
        source, dataset = _load_hub_dataset(path_or_glob, load_kwargs)
        examples = _collect(
            _iter_hub_rows(dataset), _parse_mmlu, source=source, skip_invalid=skip_invalid, reasons=reasons
        )
        return _finish(examples, QA_FEATURES, source=source, reasons=reasons, report=report)

    if not files:
        raise FileNotFoundError(f"No MMLU CSV files found for {path_or_glob!r} (a directory loads '*_test.csv').")
    if load_kwargs:
        raise TypeError(f"The keyword arguments {sorted(load_kwargs)} are only used for Hub datasets.")
    for path in files:
        examples += _collect(
            _iter_mmlu_csv(str(path), _mmlu_subject(path)),
            _parse_mmlu,
            source=str(path),
            skip_invalid=skip_invalid,
            reasons=reasons,
        )
    return _finish(examples, QA_FEATURES, source=path_or_glob, reasons=reasons, report=report)


# --------------------------------------------------------------------------------------------------------------------
# PubMedQA
# --------------------------------------------------------------------------------------------------------------------


class _PubMedQAArticle(NamedTuple):
    pmid: str
    question: str
    contexts: list[str]
    labels: list[str]
    decision: str
    long_answer: str


def _iter_pubmedqa(path_or_id: str, hub_split: str, load_kwargs: dict[str, Any]) -> tuple[str, Iterable[_Row]]:
    """PubMedQA items: a local JSON object keyed by PMID, or a Hub dataset in the `qiaojin/PubMedQA` layout."""
    if os.path.exists(path_or_id):
        if load_kwargs:
            raise TypeError(f"The keyword arguments {sorted(load_kwargs)} are only used for Hub datasets.")
        with open(path_or_id, encoding="utf-8") as handle:
            try:
                items = json.load(handle)
            except json.JSONDecodeError as err:
                raise DataFormatError(path_or_id, f"line {err.lineno}", None, f"malformed JSON ({err.msg})") from None
        if not isinstance(items, dict):
            raise DataFormatError(path_or_id, "top level", None, "expected a JSON object keyed by PMID")

        def local_rows() -> Iterator[_Row]:
            for index, (pmid, item) in enumerate(items.items()):
                record = {**item, "pubid": pmid} if isinstance(item, dict) else _RowError(None, "expected an object")
                yield f"PMID {pmid}", index, record

        return path_or_id, local_rows()

    source, dataset = _load_hub_dataset(path_or_id, {**load_kwargs, "split": hub_split})

    def hub_rows() -> Iterator[_Row]:
        for index, record in enumerate(dataset):
            pmid = record.get("pubid")
            yield (f"PMID {pmid}" if pmid is not None else f"row {index + 1}"), index, record

    return source, hub_rows()


def _pubmedqa_article(record: Mapping[str, Any]) -> _PubMedQAArticle:
    """Validate one item in either layout: the original upper-case file fields or the Hub's nested `context`."""
    pmid = _identifier(record, "pubid", default=None)
    if "QUESTION" in record or "CONTEXTS" in record:
        question_key, decision_key, answer_key = "QUESTION", "final_decision", "LONG_ANSWER"
        contexts_key, labels_key = "CONTEXTS", "LABELS"
        sections: Mapping[str, Any] = record
    else:
        question_key, decision_key, answer_key = "question", "final_decision", "long_answer"
        contexts_key, labels_key = "contexts", "labels"
        sections = record.get("context")
        if not isinstance(sections, Mapping):
            raise _RowError("context", "missing (expected QUESTION/CONTEXTS/LABELS or question/context)")
    contexts = sections.get(contexts_key)
    labels = sections.get(labels_key)
    if not isinstance(contexts, list) or not contexts:
        raise _RowError(contexts_key, "missing" if contexts is None else "expected a non-empty list of sections")
    if any(not isinstance(text, str) or not text.strip() for text in contexts):
        raise _RowError(contexts_key, "a section text is empty or not a string")
    if not isinstance(labels, list) or len(labels) != len(contexts):
        problem = "missing" if labels is None else f"expected one label per section ({len(contexts)})"
        raise _RowError(labels_key, problem)
    if any(not isinstance(label, str) for label in labels):
        raise _RowError(labels_key, "labels must be strings")
    decision = _text(record, decision_key).lower()
    if decision not in PUBMEDQA_DECISIONS:
        raise _RowError(decision_key, f"{decision!r} is not one of {', '.join(PUBMEDQA_DECISIONS)}")
    return _PubMedQAArticle(
        pmid=pmid,
        question=_text(record, question_key),
        contexts=[text.strip() for text in contexts],
        labels=[label.strip() for label in labels],
        decision=decision,
        long_answer=_text(record, answer_key, required=False),
    )


def _evidence_sections(labels: list[str]) -> tuple[list[int], str]:
    """Indices of the sections that carry the answer, and which rule picked them (see `load_pubmedqa`)."""
    upper = [label.upper() for label in labels]
    exact = [i for i, label in enumerate(upper) if label == "RESULTS"]
    if exact:
        return exact, "evidence_results"
    results_like = [i for i, label in enumerate(upper) if _RESULTS_LIKE_LABEL.search(label)]
    if results_like:
        return results_like, "evidence_results_like"
    return [len(labels) - 1], "evidence_last_section"


def _pubmedqa_test_ids(path_or_id: str, test_ids_path: str | None) -> set[str]:
    if test_ids_path is None:
        if not os.path.exists(path_or_id):
            raise ValueError(f"{path_or_id} is not a local file: pass test_ids_path= to select a split.")
        test_ids_path = str(Path(path_or_id).parent / "test_ground_truth.json")
    if not os.path.exists(test_ids_path):
        raise FileNotFoundError(f"The PubMedQA test ids file {test_ids_path} does not exist; pass test_ids_path=.")
    with open(test_ids_path, encoding="utf-8") as handle:
        ids = json.load(handle)
    # test_ground_truth.json maps PMID -> decision; a plain list of PMIDs works the same way.
    return {str(pmid) for pmid in ids}


def load_pubmedqa(
    path_or_id: str,
    split: str | None = None,
    test_ids_path: str | None = None,
    *,
    skip_invalid: bool = False,
    report: LoadReport | None = None,
    hub_split: str = "train",
    **load_kwargs: Any,
) -> Dataset:
    """Load PubMedQA-L (yes/no/maybe questions about an abstract) into the QA schema.

    The file is a JSON object keyed by PMID with `QUESTION`, `CONTEXTS` (the abstract sections without the
    conclusion), `LABELS` (one section label per context), `final_decision` and `LONG_ANSWER` (the conclusion).
    Each item becomes: `id` = PMID, `options` = `[]`, `answer` = the decision, `rationale` = `LONG_ANSWER`, and

    * `gold_doc_ids`: every section of the article, `f"{pmid}-{i}"` with `i` the section index, i.e. the ids of
      [`load_pubmedqa_corpus`];
    * `evidence_doc_ids`: the section(s) that report the results, chosen by the first rule that matches:

      1. sections labelled exactly `RESULTS` (938 of the 1,000 `ori_pqal.json` articles; never more than one);
      2. otherwise sections whose label contains the word `RESULT`, `RESULTS` or `FINDINGS`, e.g.
         `METHODS AND RESULTS`, `MEASUREMENTS AND MAIN RESULTS`, `PRINCIPAL FINDINGS` (44 articles);
      3. otherwise the last section (18 articles: case reports, reviews with `DATA SYNTHESIS`, abstracts labelled
         only `OBJECTIVE`/`METHODS`, ...). PubMedQA moved each abstract's conclusion into `LONG_ANSWER`, so the last
         remaining section is the one just before the conclusion, where structured abstracts put their results.

      The number of articles per rule is logged and stored in `report.counts` (`"evidence_results"`,
      `"evidence_results_like"`, `"evidence_last_section"`).

    The long answer is not a corpus passage: it states the answer, so retrieving it would leak the label.

    Args:
        path_or_id: a local JSON file, or a Hub dataset id in the `qiaojin/PubMedQA` layout (`pubid`, `question`,
            `context` = {`contexts`, `labels`}, `long_answer`, `final_decision`; pass e.g. `name="pqa_labeled"`).
        split: `"train"` keeps the items that are not test items, `"test"` the test items, `None` keeps all.
        test_ids_path: JSON file whose keys (or list items) are the test PMIDs; defaults to `test_ground_truth.json`
            next to `path_or_id`. For `ori_pqal.json` this gives the official 500 / 500 split.
        skip_invalid: drop invalid items (one warning, counted in `report`) instead of raising [`DataFormatError`].
        report: filled with the counts of this load.
        hub_split: the split read from a Hub dataset (`split` above selects by test ids instead).
        load_kwargs: passed to `datasets.load_dataset` for a Hub id.
    """
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    test_ids = _pubmedqa_test_ids(path_or_id, test_ids_path) if split is not None else set()
    source, rows = _iter_pubmedqa(path_or_id, hub_split, load_kwargs)
    rule_of: dict[str, str] = {}

    def parse(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        article = _pubmedqa_article(record)
        evidence, rule = _evidence_sections(article.labels)
        rule_of[article.pmid] = rule
        return [
            {
                "id": article.pmid,
                "question": article.question,
                "options": [],
                "answer": article.decision,
                "rationale": article.long_answer,
                "subject": "",
                "gold_doc_ids": [f"{article.pmid}-{i}" for i in range(len(article.contexts))],
                "evidence_doc_ids": [f"{article.pmid}-{i}" for i in evidence],
            }
        ]

    reasons: list[str] = []
    examples = _collect(rows, parse, source=source, skip_invalid=skip_invalid, reasons=reasons)
    if split is not None:
        examples = [example for example in examples if (example["id"] in test_ids) == (split == "test")]
    counts = {"evidence_results": 0, "evidence_results_like": 0, "evidence_last_section": 0}
    counts.update(Counter(rule_of[example["id"]] for example in examples))
    logger.info(
        "%s: %d items; evidence = RESULTS section for %d, a results-like section for %d, the last section for %d.",
        source,
        len(examples),
        counts["evidence_results"],
        counts["evidence_results_like"],
        counts["evidence_last_section"],
    )
    return _finish(examples, QA_FEATURES, source=source, reasons=reasons, report=report, counts=counts)


def load_pubmedqa_corpus(
    path_or_id: str,
    *,
    skip_invalid: bool = False,
    report: LoadReport | None = None,
    hub_split: str = "train",
    **load_kwargs: Any,
) -> Dataset:
    """Every abstract section of every PubMedQA item as one passage (3,358 for `ori_pqal.json`).

    Columns: `id` = `f"{pmid}-{i}"` (`i` the section index, matching `gold_doc_ids` of [`load_pubmedqa`]),
    `title` = `""`, `text` = the section text, `article_id` = the PMID, `section` = its label (e.g. `"RESULTS"`).
    Long answers are left out on purpose: they state the answer. Arguments as for [`load_pubmedqa`].
    """
    source, rows = _iter_pubmedqa(path_or_id, hub_split, load_kwargs)

    def parse(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        article = _pubmedqa_article(record)
        return [
            {"id": f"{article.pmid}-{i}", "title": "", "text": text, "article_id": article.pmid, "section": label}
            for i, (text, label) in enumerate(zip(article.contexts, article.labels))
        ]

    reasons: list[str] = []
    examples = _collect(rows, parse, source=source, skip_invalid=skip_invalid, reasons=reasons)
    return _finish(examples, PUBMEDQA_CORPUS_FEATURES, source=source, reasons=reasons, report=report)


# --------------------------------------------------------------------------------------------------------------------
# Corpora and chunking
# --------------------------------------------------------------------------------------------------------------------


def _token_spans(text: str, tokenizer: PreTrainedTokenizerBase | None) -> tuple[list[tuple[int, int]], list[bool]]:
    """Character spans of the tokens of `text`, and for each token whether it starts a whitespace-separated word."""
    if tokenizer is None:
        spans = [match.span() for match in re.finditer(r"\S+", text)]
        return spans, [True] * len(spans)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("Chunking by tokenizer tokens needs a fast tokenizer (it maps tokens back to characters).")
    # verbose=False: long passages exceed the encoder's max length on purpose; that is why they are chunked.
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    spans = [(int(start), int(end)) for start, end in encoding["offset_mapping"]]
    # Words are whitespace-separated (not the tokenizer's pre-tokens, which split "T-waves" at the hyphen). Some
    # tokenizers put the preceding space inside the token's span, hence the second test.
    starts = [start == 0 or text[start - 1].isspace() or text[start].isspace() for start, _ in spans]
    return spans, starts


def _check_chunking(max_tokens: int | None, stride: int) -> None:
    """Fail on bad chunking arguments before any file is read."""
    if max_tokens is None:
        return
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if not 0 <= stride < max_tokens:
        raise ValueError(f"stride must be in [0, max_tokens), got {stride} with max_tokens={max_tokens}")


def chunk_text(
    text: str, max_tokens: int, *, tokenizer: PreTrainedTokenizerBase | None = None, stride: int = 0
) -> list[str]:
    """Split `text` into pieces of at most `max_tokens` tokens; a text that fits is returned unchanged.

    Tokens are the tokenizer's (without special tokens) when one is given, else whitespace-separated words. Chunk
    borders are moved back to whitespace so that no word is cut in two (unless a single word is longer than
    `max_tokens`): for WordPiece tokenizers, which split on whitespace first, a chunk then re-tokenizes to the same
    tokens, hence to at most `max_tokens` of them; byte-level BPE tokenizers may differ by a token at the start of a
    chunk. Each chunk is a slice of the original text, so its inner whitespace is kept.

    Args:
        text: the passage.
        max_tokens: the largest chunk, in tokens.
        tokenizer: a fast tokenizer; `None` counts whitespace-separated words.
        stride: how many tokens consecutive chunks share (`0 <= stride < max_tokens`).
    """
    _check_chunking(max_tokens, stride)
    spans, word_start = _token_spans(text, tokenizer)
    if len(spans) <= max_tokens:
        return [text]
    chunks = []
    start, total = 0, len(spans)
    while True:
        end = min(start + max_tokens, total)
        if end < total:
            boundary = end
            while boundary > start and not word_start[boundary]:
                boundary -= 1
            if boundary > start:
                end = boundary
        chunks.append(text[spans[start][0] : spans[end - 1][1]])
        if end == total:
            return chunks
        # Step forward, keeping `stride` tokens of overlap, and start the next chunk on a word too.
        start = max(end - stride, start + 1)
        while start < end and not word_start[start]:
            start += 1


def _chunk_passage(
    passage: dict[str, Any],
    max_tokens: int | None,
    tokenizer: PreTrainedTokenizerBase | None,
    stride: int,
) -> list[dict[str, Any]]:
    """The passage itself when it fits (or no chunking is asked), else its chunks with ids `f"{id}#{k}"`."""
    if max_tokens is None:
        return [passage]
    pieces = chunk_text(passage["text"], max_tokens, tokenizer=tokenizer, stride=stride)
    if len(pieces) == 1:
        return [passage]
    return [{**passage, "id": f"{passage['id']}#{k}", "text": piece} for k, piece in enumerate(pieces)]


def _text_column(record: Mapping[str, Any]) -> str:
    # MedRAG corpora (e.g. MedRAG/textbooks) have `content` and `contents` (= title + content); prefer the text
    # without the title, which has its own column.
    return next((key for key in ("text", "content", "contents") if key in record), "text")


def load_corpus(
    path_or_id: str,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_tokens: int | None = None,
    stride: int = 0,
    limit: int | None = None,
    skip_invalid: bool = False,
    *,
    report: LoadReport | None = None,
    **load_kwargs: Any,
) -> Dataset:
    """Load a retrieval corpus (`id`, `title`, `text`) from JSON lines or a Hub dataset, chunking long passages.

    Rows need `id` and a text column: `text`, or `content` / `contents` as in the MedRAG corpora; `title` is
    optional. Duplicate ids are an error (after chunking, so a chunk id cannot collide with another passage).

    Args:
        path_or_id: a local JSON-lines file (`.gz` allowed) or a Hub dataset id.
        tokenizer: a fast tokenizer whose tokens `max_tokens` counts; `None` counts whitespace-separated words.
        max_tokens: chunk passages longer than this (see [`chunk_text`]); chunk ids are `f"{id}#{k}"` with `k`
            from 0, passages that fit keep their id. `None` keeps passages whole.
        stride: tokens shared by consecutive chunks.
        limit: keep the first `limit` passages (after chunking, in source order); reading stops there.
        skip_invalid: drop invalid rows (one warning, counted in `report`) instead of raising [`DataFormatError`].
        report: filled with the counts of this load.
        load_kwargs: passed to `datasets.load_dataset` for a Hub id (`split` defaults to `"train"`).
    """
    _check_chunking(max_tokens, stride)
    source, rows = _open_records(path_or_id, load_kwargs)

    def parse(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        passage = {
            "id": _identifier(record, "id", default=None),
            "title": _text(record, "title", required=False),
            "text": _text(record, _text_column(record)),
        }
        return _chunk_passage(passage, max_tokens, tokenizer, stride)

    reasons: list[str] = []
    examples = _collect(rows, parse, source=source, skip_invalid=skip_invalid, reasons=reasons, limit=limit)
    return _finish(examples, CORPUS_FEATURES, source=source, reasons=reasons, report=report)


def _hash_unit(key: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) for `key` (unlike `hash()`, identical across runs and machines)."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def load_medquad_corpus(
    path: str | os.PathLike[str] | None = None,
    max_tokens: int | None = 150,
    limit: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    stride: int = 0,
    salt: str = "jmlr",
    skip_invalid: bool = False,
    report: LoadReport | None = None,
) -> Dataset:
    """Load the MedQuAD answers (NIH consumer-health texts) as a corpus, e.g. as distractors for PubMedQA.

    Reads `corpus/medquad/medquad_answers.jsonl.gz` (fields `id`, `source`, `url`, `focus`, `question`, `qtype`,
    `text`) into `id`, `title` (= `focus`), `text`, then:

    1. drops answers whose text repeats an earlier one (598 in the shipped file), counted in
       `report.counts["duplicate_texts"]`;
    2. makes ids unique: MedQuAD reuses an id for the answers about several topics of one page, so the n-th
       distinct answer with an id (n >= 2, in file order) gets `f"{id}~{n}"` (`report.counts["renamed_ids"]`);
    3. chunks answers longer than `max_tokens` (see [`load_corpus`]).

    With `limit`, answers are visited in the order of a salted SHA-256 hash of their id and chunked until `limit`
    passages are collected, then returned in file order. The sample is deterministic, mixes all NIH sources (the
    file is sorted by source, so its first rows are all CancerGov), and a larger limit gives a superset of passages.

    Args:
        path: the `.jsonl.gz` file; defaults to `default_data_dir() / MEDQUAD_FILE`.
        max_tokens: chunk size in tokens (`None`: keep answers whole).
        limit: the number of passages to keep (`None`: all, about 30k at 150 words).
        tokenizer: a fast tokenizer whose tokens `max_tokens` counts; `None` counts words.
        stride: tokens shared by consecutive chunks.
        salt: salt of the sampling hash.
        skip_invalid: drop invalid rows (one warning, counted in `report`) instead of raising [`DataFormatError`].
        report: filled with the counts of this load.
    """
    path = str(path) if path is not None else str(default_data_dir() / MEDQUAD_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist; set JMLR_DATA_DIR to the shared data folder or pass path=.")
    _check_chunking(max_tokens, stride)

    def parse(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        return [
            {
                "id": _identifier(record, "id", default=None),
                "title": _text(record, "focus", required=False),
                "text": _text(record, "text"),
            }
        ]

    reasons: list[str] = []
    answers = _collect(
        _iter_json_lines(path), parse, source=path, skip_invalid=skip_invalid, reasons=reasons, unique_ids=False
    )

    unique: list[dict[str, Any]] = []
    seen_texts: set[str] = set()
    times_seen: Counter[str] = Counter()
    renamed = 0
    for answer in answers:
        if answer["text"] in seen_texts:
            continue
        seen_texts.add(answer["text"])
        times_seen[answer["id"]] += 1
        if times_seen[answer["id"]] > 1:
            answer["id"] = f"{answer['id']}~{times_seen[answer['id']]}"
            renamed += 1
        unique.append(answer)
    counts = {"duplicate_texts": len(answers) - len(unique), "renamed_ids": renamed}
    logger.info(
        "%s: %d answers, %d repeated texts dropped, %d ids made unique.",
        path,
        len(answers),
        counts["duplicate_texts"],
        renamed,
    )

    order = list(range(len(unique)))
    if limit is not None:
        order.sort(key=lambda position: _hash_unit(unique[position]["id"], salt))
    keyed: list[tuple[int, int, dict[str, Any]]] = []
    for position in order:
        if limit is not None and len(keyed) >= limit:
            break
        chunks = _chunk_passage(unique[position], max_tokens, tokenizer, stride)
        keyed.extend((position, k, chunk) for k, chunk in enumerate(chunks))
    if limit is not None:
        del keyed[limit:]
        keyed.sort(key=lambda item: item[:2])
    passages = [chunk for _, _, chunk in keyed]
    return _finish(passages, CORPUS_FEATURES, source=path, reasons=reasons, report=report, counts=counts)


# --------------------------------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------------------------------


def split_by_hash(dataset: Dataset, test_fraction: float, salt: str = "jmlr") -> tuple[Dataset, Dataset]:
    """Split `dataset` into `(train, test)` by a salted SHA-256 hash of its `id` column.

    An example's side depends only on its id and the salt, so the split is the same on every run and machine, and
    adding or removing other rows never moves an example across it. The test part holds about `test_fraction` of
    the rows; both parts keep the original order.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if "id" not in dataset.column_names:
        raise ValueError(f"split_by_hash needs an 'id' column, got {dataset.column_names}")
    train_indices: list[int] = []
    test_indices: list[int] = []
    for index, example_id in enumerate(dataset["id"]):
        (test_indices if _hash_unit(str(example_id), salt) < test_fraction else train_indices).append(index)
    return dataset.select(train_indices), dataset.select(test_indices)
