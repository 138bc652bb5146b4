"""Property-based tests of the loaders: generated files whose every row is valid or broken by construction.

Each generated row takes, field by field, either a valid value or one of the ways that field is seen broken in real
files (missing, null, the wrong type, empty, a missing-value marker, NUL, a lone surrogate, undecodable bytes,
too few or too many options, an answer letter out of range, an answer text that contradicts the letter). With
`skip_invalid=True` the loader must keep exactly the valid rows, in order and unchanged, and report each broken one
with its line; without it, it must stop at the first broken one with a `DataFormatError` naming that line. No other
exception is allowed. About 1,500 generated rows per run (see `ROWS_PER_RUN`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jmlr_hf.data import DataFormatError, LoadReport, load_medqa
from tests.testing_utils.reliability import record

LETTERS = "ABCDE"
EXAMPLES, MAX_ROWS = 150, 20
ROWS_PER_RUN = EXAMPLES * (MAX_ROWS + 1) // 2  # the mean number of generated rows, for the docstring's count

SAFE_TEXT = st.text(alphabet=st.characters(codec="ascii", categories=("L", "N", "Zs", "P")), min_size=1, max_size=30)
WORDS = SAFE_TEXT.filter(lambda text: text.strip() and text.strip().lower() not in ("nan", "none", "null", "n/a"))
NOT_A_STRING = st.one_of(st.integers(), st.floats(allow_nan=True), st.booleans(), st.lists(st.integers(), max_size=2))
# Broken as any text field; "nan", "None", ... are broken only as a question (an option "None" is a real answer).
# Each broken value comes with its fault class (tests/testing_utils/reliability.py), recorded for docs/RELIABILITY.md.
BROKEN_OPTION_TEXT = st.one_of(
    st.just(("missing or null field", None)),
    NOT_A_STRING.map(lambda value: ("wrong type", value)),
    st.sampled_from(["", "   "]).map(lambda value: ("empty or blank text", value)),
    WORDS.map(lambda text: ("NUL character", text + "\x00")),
    WORDS.map(lambda text: ("lone surrogate", text + "\ud800")),
)
BROKEN_TEXT = st.one_of(
    BROKEN_OPTION_TEXT, st.sampled_from(["nan", "None", "NULL"]).map(lambda value: ("missing-value marker", value))
)
MISSING = object()  # the field is left out of the row


@st.composite
def rows(draw) -> tuple[dict | bytes, list[str]]:
    """A row (a JSON object, or raw bytes for a line that is not UTF-8) and the fault classes that break it (`[]`:
    valid)."""
    broken = set(draw(st.sets(st.sampled_from(["question", "options", "answer_idx", "answer", "bytes"]), max_size=2)))
    faults: list[str] = []
    if "bytes" in broken:
        line = json.dumps({"question": "UNDECODABLE", "options": ["a", "b"], "answer_idx": "A"}).encode()
        return line.replace(b"UNDECODABLE", draw(st.sampled_from([b"\xff\xfe", b"caf\xe9", b"\xc3"]))), [
            "undecodable bytes"
        ]
    # Distinct as the loaders compare options (case and spacing ignored): equal texts are another fault class.
    options = draw(st.lists(WORDS, min_size=2, max_size=5, unique_by=lambda text: " ".join(text.split()).casefold()))
    letter = draw(st.sampled_from(LETTERS[: len(options)]))
    row: dict = {
        "question": draw(WORDS),
        "options": dict(zip(LETTERS, options)) if draw(st.booleans()) else options,
        "answer_idx": draw(st.sampled_from([letter, letter.lower(), f" {letter} "])),
    }
    if draw(st.booleans()):
        row["answer"] = options[LETTERS.index(letter)]
    missing = ("missing or null field", MISSING)
    if "question" in broken:
        fault, row["question"] = draw(st.one_of(st.just(missing), BROKEN_TEXT))
        faults.append(fault)
    if "options" in broken:
        fault, row["options"] = draw(
            st.one_of(
                st.sampled_from([missing, ("missing or null field", None)]),
                st.lists(WORDS, max_size=1).map(lambda few: ("bad option count", few)),
                st.lists(WORDS, min_size=6, max_size=7).map(lambda many: ("bad option count", many)),
                st.just(("bad option count", {"A": "x", "C": "y"})),
                BROKEN_OPTION_TEXT.map(lambda bad: (bad[0], ["fine", bad[1]])),
            )
        )
        faults.append(fault)
    if "answer_idx" in broken:
        fault, row["answer_idx"] = draw(
            st.one_of(
                st.just(missing),
                BROKEN_TEXT,
                st.sampled_from(["AB", LETTERS[len(options) :] or "F"]).map(lambda bad: ("answer not an option", bad)),
            )
        )
        faults.append(fault)
    if "answer" in broken:
        fault, row["answer"] = draw(
            st.one_of(
                NOT_A_STRING.map(lambda value: ("wrong type", value)),
                WORDS.filter(lambda text: text.strip() != options[LETTERS.index(letter)]).map(
                    lambda text: ("answer text contradicts letter", text)
                ),
            )
        )
        faults.append(fault)
    return {key: value for key, value in row.items() if value is not MISSING}, faults


def write_rows(path: Path, generated: list[tuple[dict | bytes, bool]]) -> None:
    lines = [row if isinstance(row, bytes) else json.dumps(row).encode() for row, _ in generated]
    path.write_bytes(b"\n".join(lines) + b"\n")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows(), min_size=1, max_size=MAX_ROWS))
def test_medqa_loader_keeps_exactly_the_valid_rows(generated):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.jsonl"
        write_rows(path, generated)
        valid_lines = [i + 1 for i, (_, faults) in enumerate(generated) if not faults]
        broken_lines = [i + 1 for i, (_, faults) in enumerate(generated) if faults]

        report = LoadReport()
        if not valid_lines:
            with pytest.raises(DataFormatError, match="no valid row"):
                load_medqa(str(path), skip_invalid=True, report=report)
        else:
            dataset = load_medqa(str(path), skip_invalid=True, report=report)
            assert dataset["id"] == [f"medqa-{line - 1}" for line in valid_lines]
            for example, line in zip(dataset, valid_lines, strict=True):
                row = generated[line - 1][0]
                options = list(row["options"].values()) if isinstance(row["options"], dict) else row["options"]
                assert example["question"] == row["question"].strip()
                assert example["options"] == [text.strip() for text in options]
                assert example["answer"] == row["answer_idx"].strip().upper()
            assert report.num_rows == len(valid_lines)
        assert report.num_skipped == len(broken_lines)
        for reason, line in zip(report.reasons, broken_lines, strict=True):
            assert f"generated.jsonl, line {line}:" in reason

        if broken_lines:
            with pytest.raises(DataFormatError, match=rf"generated.jsonl, line {broken_lines[0]}:"):
                load_medqa(str(path))
        for _, faults in generated:
            if not faults:
                record("loaders", "valid row", "kept unchanged, in order")
            for fault in faults:
                record("loaders", fault, "skipped, named by line/PMID and field (DataFormatError without skip)")
        if not valid_lines:
            record("loaders", "no valid row", "DataFormatError even with skip_invalid=True")
