"""The summary line that the `jmlr` command and the training script print after each load: rows kept, invalid rows
skipped (with the first reasons), and rows a loader drops on purpose (MedMCQA questions without an explanation), so
that no row disappears without a word where the run was started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jmlr_hf.cli import main
from jmlr_hf.data import DataFormatError
from jmlr_hf.scripts.train import DataArguments, load_split_questions

pytestmark = pytest.mark.integration  # `jmlr index` / `retrieve` load the real all-MiniLM-L6-v2


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def medmcqa_row(i: int, **overrides) -> dict:
    row = {
        "id": f"m{i}",
        "question": f"Which vitamin deficiency causes disease {i}?",
        "opa": "Vitamin A",
        "opb": "Vitamin C",
        "opc": "Vitamin D",
        "opd": "Vitamin K",
        "cop": 2,
        "exp": f"Explanation {i}.",
    }
    row.update(overrides)
    return row


@pytest.fixture
def medmcqa_file(tmp_path) -> Path:
    """6 rows: 3 valid with an explanation, 1 valid without (dropped by the task), 2 invalid (skipped)."""
    rows = [
        medmcqa_row(0),
        medmcqa_row(1, exp=None),
        medmcqa_row(2, opd="vitamin c"),  # the answer's text twice: two correct letters
        medmcqa_row(3),
        "{broken json",
        medmcqa_row(5, opa="Vitamin K"),  # two equal wrong options: kept, counted
    ]
    return write_jsonl(tmp_path / "dev.json", rows)


@pytest.fixture
def index_dir(tmp_path, capsys) -> Path:
    corpus = [
        {"id": "d1", "text": "Vitamin C deficiency causes scurvy."},
        {"id": "d2", "text": ""},  # invalid: empty text
        {"id": "d3", "text": "Vitamin D deficiency causes rickets."},
        {"id": "d4", "text": "Vitamin K is needed for clotting."},
    ]
    corpus_path = write_jsonl(tmp_path / "corpus.jsonl", corpus)
    output = tmp_path / "index"
    main(["index", "--corpus", str(corpus_path), "--retriever", "all-minilm-l6-v2", "--output", str(output)])
    out = capsys.readouterr().out
    assert (
        f"corpus: {corpus_path}: kept 3 row(s); skipped 1 invalid row(s) (first: line 2: field 'text': empty)\n" in out
    )
    assert "Indexed 3 documents" in out
    return output


def test_retrieve_prints_kept_skipped_and_dropped_medmcqa_rows(index_dir, medmcqa_file, tmp_path, capsys):
    output = tmp_path / "questions.jsonl"
    common = ["retrieve", "--index", str(index_dir), "--task", "medmcqa", "--questions", str(medmcqa_file)]
    main([*common, "--num-candidates", "2", "--output", str(output)])
    lines = capsys.readouterr().out.splitlines()
    summary = [line for line in lines if line.startswith("questions: ")]
    assert summary == [
        f"questions: {medmcqa_file}: kept 3 row(s); skipped 2 invalid row(s) (first: line 3: field 'opd': option D "
        "has the same text as the answer B ('Vitamin C'): B, D would all be correct; expected one | line 5: malformed "
        "JSON (Expecting property name enclosed in double quotes, column 2)); dropped: without_rationale 1; noted: "
        "duplicate_options 1"
    ]
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == ["m0", "m3", "m5"]

    with pytest.raises(DataFormatError, match=r"dev.json, line 3: field 'opd': option D has the same text"):
        main([*common, "--no-skip-invalid", "--output", str(tmp_path / "strict.jsonl")])


def test_a_file_without_a_valid_row_fails_even_when_skipping(index_dir, tmp_path):
    broken = write_jsonl(tmp_path / "broken.json", [medmcqa_row(0, cop=7), "[]"])
    with pytest.raises(DataFormatError, match=r"broken.json, the whole source: no valid row \(all 2 rows are invalid"):
        main(["retrieve", "--index", str(index_dir), "--task", "medmcqa", "--questions", str(broken), "--output", "x"])


def test_training_script_prints_one_line_per_question_load(medmcqa_file, capsys):
    args = DataArguments(task="medmcqa", train_file=str(medmcqa_file), eval_file=str(medmcqa_file))
    assert load_split_questions(args, "test")["id"] == ["m0", "m3", "m5"]  # an explicit evaluation file is read whole
    out = capsys.readouterr().out
    assert out.startswith(f"test questions: {medmcqa_file}: kept 3 row(s); skipped 2 invalid row(s)")
    assert out.endswith("; dropped: without_rationale 1; noted: duplicate_options 1\n") and out.count("\n") == 1

    with pytest.raises(DataFormatError, match="dev.json, line 3"):
        load_split_questions(DataArguments(task="medmcqa", train_file=str(medmcqa_file), skip_invalid=False), "train")
