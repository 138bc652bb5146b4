"""Property-based tests of every loader besides MedQA's (that one is `test_properties.py`): MedMCQA, MMLU CSV,
PubMedQA (questions and corpus), retrieval corpora and MedQA-Reason CSV files.

Each generated file holds rows that are valid or broken by construction, one class of fault per broken row (the
classes of `tests/testing_utils/reliability.py`: a missing or null field, a wrong type, blank text, a missing-value
marker, NUL, a lone surrogate, undecodable bytes, a malformed record, an answer that is not an option or whose text
another option repeats, a duplicate id, ...). With `skip_invalid=True` the loader must keep exactly the valid rows, in
order, and report each broken one with its line (or PMID); without it, it must stop at the first broken one with a
`DataFormatError` naming it. No other exception is allowed, and a file without a valid row is an error either way.
About 1,200 generated rows per run.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jmlr_hf.data import (
    DataFormatError,
    LoadReport,
    build_from_medqa_reason_csv,
    load_corpus,
    load_medmcqa,
    load_mmlu,
    load_pubmedqa,
    load_pubmedqa_corpus,
)
from tests.testing_utils.reliability import record

EXAMPLES, MAX_ROWS = 40, 12
WORDS = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N", "Zs", "P")), min_size=1, max_size=24
).filter(lambda text: text.strip() and text.strip().lower() not in ("nan", "none", "null", "n/a"))
NOT_A_STRING = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2))
VALID = "valid row"
KEPT, SKIPPED = "kept unchanged, in order", "skipped, named by line/PMID and field (DataFormatError without skip)"
COUNTED = "kept, counted as duplicate_options"
UNDECODABLE = st.sampled_from([b"\xff\xfe", b"caf\xe9", b"\xc3"])


@dataclass
class Generated:
    """One generated row: what goes into the file, its fault class, and (valid rows) what the loader must return."""

    content: Any  # a record (dict / list of cells), or bytes for a raw line
    fault: str
    key: str | None = None  # the returned id of a valid row
    text: str | None = None  # its question or passage text, stripped


def options_for(draw, count: int) -> list[str]:
    return [f"{draw(WORDS).strip()} {k}" for k in range(count)]  # distinct by construction


def check(
    generated: list[Generated],
    path: Path,
    load: Callable[[bool, LoadReport], tuple[list[str], list[str]]],
    location: Callable[[int], str],
    area_outcomes: bool = True,
) -> None:
    """Load with and without skip_invalid; compare with the generation; record every row's class and outcome."""
    valid = [row for row in generated if row.fault in (VALID, "repeated wrong option")]
    broken = [i for i, row in enumerate(generated) if row.fault not in (VALID, "repeated wrong option")]
    report = LoadReport()
    if not valid:
        with pytest.raises(DataFormatError, match="no valid row"):
            load(True, report)
        record("loaders", "no valid row", "DataFormatError even with skip_invalid=True")
    else:
        keys, texts = load(True, report)
        assert keys == [row.key for row in valid]
        assert texts == [row.text for row in valid]
        assert report.num_rows == len(valid)
    assert report.num_skipped == len(broken)
    for reason, i in zip(report.reasons, broken, strict=True):
        assert f"{path.name}, {location(i)}:" in reason, (reason, generated[i].fault)
    if any(row.fault == "repeated wrong option" for row in valid):
        assert report.counts["duplicate_options"] == sum(row.fault == "repeated wrong option" for row in valid)
    if broken:
        with pytest.raises(DataFormatError, match=rf"{path.name}, {location(broken[0])}:"):
            load(False, LoadReport())
    for row in generated:
        outcome = {VALID: KEPT, "repeated wrong option": COUNTED}.get(row.fault, SKIPPED)
        record("loaders", row.fault, outcome)


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def json_line(content: Any) -> bytes:
    return content if isinstance(content, bytes) else json.dumps(content).encode()


# --------------------------------------------------------------------------------------------------------------------
# MedMCQA
# --------------------------------------------------------------------------------------------------------------------

MEDMCQA_FAULTS = [
    VALID,
    VALID,
    "duplicate id",
    "missing or null field",
    "wrong type",
    "empty or blank text",
    "missing-value marker",
    "NUL character",
    "lone surrogate",
    "undecodable bytes",
    "malformed record",
    "answer not an option",
    "answer repeated by another option",
    "repeated wrong option",
]


@st.composite
def medmcqa_row(draw, index: int, earlier_valid_ids: list[str], extra_valid: int = 0) -> Generated:
    fault = draw(st.sampled_from(MEDMCQA_FAULTS + [VALID] * extra_valid))
    if fault == "duplicate id" and not earlier_valid_ids:
        fault = "answer not an option"
    options = options_for(draw, 4)
    cop = draw(st.integers(1, 4))
    question = draw(WORDS)
    row: dict[str, Any] = {"id": f"m{index}", "question": question, "cop": cop, "exp": draw(st.none() | WORDS)}
    row.update(zip(("opa", "opb", "opc", "opd"), options))
    field = draw(st.sampled_from(["question", "opa", "opd"]))
    if fault == "missing or null field":
        choice = draw(st.sampled_from(["question", "opb", "cop"]))
        if draw(st.booleans()):
            del row[choice]
        else:
            row[choice] = None
    elif fault == "wrong type":
        row.update(draw(st.sampled_from([{"cop": "2"}, {"cop": True}, {"cop": 2.0}, {field: 3}, {"exp": [1]}])))
    elif fault == "empty or blank text":
        row[field] = draw(st.sampled_from(["", "   ", "\n"]))
    elif fault == "missing-value marker":
        row["question"] = draw(st.sampled_from(["nan", "None", "NULL", "n/a"]))
    elif fault == "NUL character":
        row[field] += "\x00"
    elif fault == "lone surrogate":
        row[field] += "\ud800"
    elif fault == "undecodable bytes":
        raw = json.dumps({**row, "question": "UNDECODABLE"}).encode()
        return Generated(raw.replace(b"UNDECODABLE", draw(UNDECODABLE)), fault)
    elif fault == "malformed record":
        return Generated(draw(st.sampled_from([b"{broken", b"[1, 2]", b'"text"', b"null"])), fault)
    elif fault == "answer not an option":
        row["cop"] = draw(st.sampled_from([0, 5, -1]))
    elif fault == "answer repeated by another option":
        twin = draw(st.sampled_from([k for k in range(4) if k != cop - 1]))
        row[("opa", "opb", "opc", "opd")[twin]] = f"  {options[cop - 1].upper()} "
    elif fault == "repeated wrong option":
        wrong = [k for k in range(4) if k != cop - 1]
        first, second = draw(st.permutations(wrong))[:2]
        row[("opa", "opb", "opc", "opd")[second]] = options[first].lower()
    elif fault == "duplicate id":
        row["id"] = draw(st.sampled_from(earlier_valid_ids))
    if fault in (VALID, "repeated wrong option"):
        earlier_valid_ids.append(row["id"])
        return Generated(row, fault, key=row["id"], text=question.strip())
    return Generated(row, fault)


@st.composite
def medmcqa_files(draw, extra_valid: int = 0) -> list[Generated]:
    """A file's rows; `extra_valid` makes valid rows more frequent (callers that need some rows kept)."""
    ids: list[str] = []
    return [draw(medmcqa_row(i, ids, extra_valid)) for i in range(draw(st.integers(1, MAX_ROWS)))]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(medmcqa_files())
def test_medmcqa_loader_keeps_exactly_the_valid_rows(generated):
    with tempfile.TemporaryDirectory() as folder:
        path = write_lines(Path(folder) / "medmcqa.json", [json_line(row.content) for row in generated])

        def load(skip_invalid: bool, report: LoadReport) -> tuple[list[str], list[str]]:
            dataset = load_medmcqa(str(path), skip_invalid=skip_invalid, report=report)
            return dataset["id"], dataset["question"]

        check(generated, path, load, lambda i: f"line {i + 1}")


# --------------------------------------------------------------------------------------------------------------------
# MMLU CSV
# --------------------------------------------------------------------------------------------------------------------

# The faults of a multiple-choice CSV row (MMLU, MedQA-Reason): one list, one way of breaking a row.
CSV_CHOICE_FAULTS = [
    VALID,
    VALID,
    "empty or blank text",
    "missing-value marker",
    "NUL character",
    "undecodable bytes",
    "malformed record",
    "answer not an option",
    "answer repeated by another option",
    "repeated wrong option",
]


def csv_choice_line(
    draw,
    fault: str,
    cells: list[str],
    options: list[str],
    answer_at: int,
    *,
    blank_cells: list[int],
    text_cell: int,
    malformed: list[list[str]],
    bad_answers: list[str],
    twin: Callable[[str], str],
) -> bytes:
    """`cells` (question, options A-D, answer, ...) broken by `fault` and written as one CSV line: `text_cell` is the
    cell that takes a NUL or undecodable bytes, `twin` makes the answer's repeat (case changed: it must still count
    as the same text)."""
    cells = list(cells)
    if fault == "empty or blank text":
        cells[draw(st.sampled_from(blank_cells))] = draw(st.sampled_from(["", "   "]))
    elif fault == "missing-value marker":
        cells[0] = draw(st.sampled_from(["nan", "NaN", "None", "NULL"]))
    elif fault == "NUL character":
        cells[text_cell] += "\x00"
    elif fault == "undecodable bytes":
        cells[text_cell] = "UNDECODABLE"
    elif fault == "malformed record":
        cells = draw(st.sampled_from(malformed))
    elif fault == "answer not an option":
        cells[5] = draw(st.sampled_from(bad_answers))
    elif fault == "answer repeated by another option":
        cells[1 + draw(st.sampled_from([k for k in range(4) if k != answer_at]))] = twin(options[answer_at])
    elif fault == "repeated wrong option":
        first, second = draw(st.permutations([k for k in range(4) if k != answer_at]))[:2]
        cells[1 + second] = f" {options[first]}  "
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    line = buffer.getvalue().encode()
    if fault == "undecodable bytes":
        line = line.replace(b"UNDECODABLE", draw(UNDECODABLE))
    return line


@st.composite
def mmlu_row(draw, index: int) -> Generated:
    fault = draw(st.sampled_from(CSV_CHOICE_FAULTS))
    options = options_for(draw, 4)
    letter = draw(st.sampled_from("ABCD"))
    question = draw(WORDS)
    cells = [question, *options, draw(st.sampled_from([letter, letter.lower(), f" {letter} "]))]
    line = csv_choice_line(
        draw,
        fault,
        cells,
        options,
        "ABCD".index(letter),
        blank_cells=list(range(6)),
        text_cell=draw(st.integers(0, 4)),  # the question or an option
        malformed=[cells[:5], [*cells, "extra"], cells[:1]],
        bad_answers=["E", "AB", "1", "F"],
        twin=str.upper,
    )
    if fault in (VALID, "repeated wrong option"):
        return Generated(line, fault, key=f"mmlu-generated-{index}", text=question.strip())
    return Generated(line, fault)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, MAX_ROWS).flatmap(lambda n: st.tuples(*(mmlu_row(i) for i in range(n)))))
def test_mmlu_csv_loader_keeps_exactly_the_valid_rows(generated):
    with tempfile.TemporaryDirectory() as folder:
        path = write_lines(Path(folder) / "generated_test.csv", [row.content for row in generated])

        def load(skip_invalid: bool, report: LoadReport) -> tuple[list[str], list[str]]:
            dataset = load_mmlu(str(path), skip_invalid=skip_invalid, report=report)
            return dataset["id"], dataset["question"]

        check(list(generated), path, load, lambda i: f"line {i + 1}")


# --------------------------------------------------------------------------------------------------------------------
# PubMedQA: questions and the corpus of their abstract sections, from one generated file
# --------------------------------------------------------------------------------------------------------------------

PUBMEDQA_FAULTS = [
    VALID,
    VALID,
    "missing or null field",
    "wrong type",
    "empty or blank text",
    "missing-value marker",
    "NUL character",
    "lone surrogate",
    "malformed record",
    "labels do not match sections",
    "answer not an option",
]


@st.composite
def pubmedqa_item(draw, pmid: str) -> Generated:
    fault = draw(st.sampled_from(PUBMEDQA_FAULTS))
    sections = draw(st.integers(1, 3))
    question = draw(WORDS)
    item: dict[str, Any] = {
        "QUESTION": question,
        "CONTEXTS": [draw(WORDS) for _ in range(sections)],
        "LABELS": [draw(st.sampled_from(["BACKGROUND", "METHODS", "RESULTS"])) for _ in range(sections)],
        "final_decision": draw(st.sampled_from(["yes", "no", "maybe", "Yes"])),
        "LONG_ANSWER": draw(WORDS),
    }
    if fault == "missing or null field":
        key = draw(st.sampled_from(["QUESTION", "CONTEXTS", "LABELS", "final_decision"]))
        if draw(st.booleans()):
            del item[key]
        else:
            item[key] = None
    elif fault == "wrong type":
        item.update(
            draw(
                st.sampled_from(
                    [{"CONTEXTS": "one string"}, {"LABELS": [1] * sections}, {"QUESTION": 7}, {"final_decision": 1}]
                )
            )
        )
    elif fault == "empty or blank text":
        item.update(draw(st.sampled_from([{"QUESTION": "  "}, {"CONTEXTS": []}, {"CONTEXTS": [" "] * sections}])))
    elif fault == "missing-value marker":
        item["QUESTION"] = draw(st.sampled_from(["nan", "None"]))
    elif fault == "NUL character":
        item["CONTEXTS"][-1] += "\x00"
    elif fault == "lone surrogate":
        key = draw(st.sampled_from(["QUESTION", "CONTEXTS"]))
        if key == "QUESTION":
            item["QUESTION"] += "\udc80"
        else:
            item["CONTEXTS"][0] += "\udc80"
    elif fault == "malformed record":
        return Generated(draw(st.sampled_from([[1, 2], "text", None])), fault)
    elif fault == "labels do not match sections":
        item["LABELS"] = item["LABELS"] + ["RESULTS"]
    elif fault == "answer not an option":
        item["final_decision"] = draw(st.sampled_from(["perhaps", "", "yes!"]))
    if fault == VALID:
        return Generated(item, fault, key=pmid, text=question.strip())
    return Generated(item, fault)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, MAX_ROWS).flatmap(lambda n: st.tuples(*(pubmedqa_item(str(1000 + i)) for i in range(n)))))
def test_pubmedqa_loaders_keep_exactly_the_valid_items(generated):
    generated = list(generated)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pqal.json"
        items = {str(1000 + i): row.content for i, row in enumerate(generated)}
        path.write_text(json.dumps(items), encoding="utf-8", errors="surrogatepass")

        def load(skip_invalid: bool, report: LoadReport) -> tuple[list[str], list[str]]:
            dataset = load_pubmedqa(str(path), skip_invalid=skip_invalid, report=report)
            return dataset["id"], dataset["question"]

        check(generated, path, load, lambda i: f"PMID {1000 + i}")

        # The corpus of the same file: every section of every valid item, nothing of the others.
        valid = [(i, row) for i, row in enumerate(generated) if row.fault == VALID]
        if valid:
            corpus = load_pubmedqa_corpus(str(path), skip_invalid=True)
            assert corpus["id"] == [f"{1000 + i}-{k}" for i, row in valid for k in range(len(row.content["CONTEXTS"]))]
            assert corpus["text"] == [text.strip() for _, row in valid for text in row.content["CONTEXTS"]]


# --------------------------------------------------------------------------------------------------------------------
# Retrieval corpora (JSON lines)
# --------------------------------------------------------------------------------------------------------------------

CORPUS_FAULTS = [
    VALID,
    VALID,
    "duplicate id",
    "missing or null field",
    "wrong type",
    "empty or blank text",
    "NUL character",
    "lone surrogate",
    "undecodable bytes",
    "malformed record",
]


@st.composite
def corpus_row(draw, index: int, earlier_valid_ids: list[str]) -> Generated:
    fault = draw(st.sampled_from(CORPUS_FAULTS))
    if fault == "duplicate id" and not earlier_valid_ids:
        fault = "empty or blank text"
    text = draw(WORDS)
    text_key = draw(st.sampled_from(["text", "content"]))
    row: dict[str, Any] = {"id": draw(st.sampled_from([f"d{index}", index])), text_key: text}
    if draw(st.booleans()):
        row["title"] = draw(st.none() | WORDS)
    if fault == "missing or null field":
        key = draw(st.sampled_from(["id", text_key]))
        if draw(st.booleans()):
            del row[key]
        else:
            row[key] = None
    elif fault == "wrong type":
        row.update(draw(st.sampled_from([{"id": True}, {"id": 1.5}, {"id": ["x"]}, {text_key: 3}, {"title": 4}])))
    elif fault == "empty or blank text":
        row.update(draw(st.sampled_from([{"id": " "}, {text_key: ""}, {text_key: "\t"}])))
    elif fault == "NUL character":
        row[text_key] += "\x00"
    elif fault == "lone surrogate":
        row[text_key] = "\ud83d" + row[text_key]
    elif fault == "undecodable bytes":
        raw = json.dumps({**row, text_key: "UNDECODABLE"}).encode()
        return Generated(raw.replace(b"UNDECODABLE", draw(UNDECODABLE)), fault)
    elif fault == "malformed record":
        return Generated(draw(st.sampled_from([b'{"id": "x", "text": ', b"[]", b"3"])), fault)
    elif fault == "duplicate id":
        row["id"] = draw(st.sampled_from(earlier_valid_ids))
    if fault == VALID:
        earlier_valid_ids.append(str(row["id"]))
        return Generated(row, fault, key=str(row["id"]), text=text.strip())
    return Generated(row, fault)


@st.composite
def corpus_files(draw) -> list[Generated]:
    ids: list[str] = []
    return [draw(corpus_row(i, ids)) for i in range(draw(st.integers(1, MAX_ROWS)))]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus_files())
def test_corpus_loader_keeps_exactly_the_valid_rows(generated):
    with tempfile.TemporaryDirectory() as folder:
        path = write_lines(Path(folder) / "corpus.jsonl", [json_line(row.content) for row in generated])

        def load(skip_invalid: bool, report: LoadReport) -> tuple[list[str], list[str]]:
            dataset = load_corpus(str(path), skip_invalid=skip_invalid, report=report)
            return dataset["id"], dataset["text"]

        check(generated, path, load, lambda i: f"line {i + 1}")


# --------------------------------------------------------------------------------------------------------------------
# MedQA-Reason CSV (header: question, A..D, answer, rationale)
# --------------------------------------------------------------------------------------------------------------------


@st.composite
def reason_row(draw, index: int) -> Generated:
    fault = draw(st.sampled_from(CSV_CHOICE_FAULTS))
    options = options_for(draw, 4)
    answer_at = draw(st.integers(0, 3))
    letter = "ABCD"[answer_at]
    question = draw(WORDS)
    answer = draw(st.sampled_from([letter, f"({letter})", options[answer_at].upper()]))
    cells = [question, *options, answer, draw(WORDS)]
    line = csv_choice_line(
        draw,
        fault,
        cells,
        options,
        answer_at,
        blank_cells=[0, 5],
        text_cell=0,
        malformed=[cells[:6], [*cells, "extra"]],
        bad_answers=["E", "7", "none of these"],
        twin=str.lower,
    )
    if fault in (VALID, "repeated wrong option"):
        return Generated(line, fault, key=f"medqa-reason-{index}", text=question.strip())
    return Generated(line, fault)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, MAX_ROWS).flatmap(lambda n: st.tuples(*(reason_row(i) for i in range(n)))))
def test_medqa_reason_csv_keeps_exactly_the_valid_rows(generated):
    with tempfile.TemporaryDirectory() as folder:
        header = b"question,A,B,C,D,answer,rationale"
        path = write_lines(Path(folder) / "reason.csv", [header, *(row.content for row in generated)])

        def load(skip_invalid: bool, report: LoadReport) -> tuple[list[str], list[str]]:
            splits = build_from_medqa_reason_csv(
                str(path), skip_invalid=skip_invalid, report=report, validation_fraction=0.0, test_fraction=0.0
            )
            return splits["train"]["id"], splits["train"]["question"]

        check(list(generated), path, load, lambda i: f"line {i + 2}")
