"""Bad input left over from the previous rounds (issue 24): an id holding a lone surrogate, a MedMCQA file whose every
row lacks an explanation, and a directory given where a questions file is expected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jmlr_hf.cli import load_questions, parse_command
from jmlr_hf.data import DataFormatError, LoadReport, load_corpus, load_medmcqa, load_task


def medmcqa_row(row_id: str, exp: str | None = "Because.") -> dict:
    return {"id": row_id, "question": "Which organ makes insulin?", "opa": "Liver", "opb": "Pancreas", "opc": "Kidney",
            "opd": "Spleen", "cop": 2, "exp": exp}  # fmt: skip


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")  # \ud800 is escaped by JSON
    return path


def test_a_lone_surrogate_in_an_id_is_a_bad_row_not_a_crash(tmp_path, capsys):
    """Before: `jmlr retrieve` crashed with `UnicodeEncodeError` (ids were never checked as text is)."""
    path = write_rows(tmp_path / "dev.json", [medmcqa_row("m0"), medmcqa_row("m1\ud800"), medmcqa_row("m2")])
    with pytest.raises(DataFormatError, match=r"dev.json, line 2: field 'id': not valid UTF-8"):
        load_medmcqa(str(path))
    _, _, args, _ = parse_command(["retrieve", "--index", "i", "--task", "medmcqa", "--questions", str(path),
                                   "--output", "o"])  # fmt: skip
    assert load_questions(args, None)["id"] == ["m0", "m2"]
    assert "skipped 1 invalid row(s) (first: line 2: field 'id': not valid UTF-8" in capsys.readouterr().out
    corpus = write_rows(tmp_path / "corpus.jsonl", [{"id": "d\x00", "text": "t"}])  # and a NUL, in a corpus id
    with pytest.raises(DataFormatError, match=r"corpus.jsonl, line 1: field 'id': contains a NUL character"):
        load_corpus(str(corpus))


def test_a_file_whose_rows_all_lack_an_explanation_says_so(tmp_path):
    """Before: "no valid row (it holds no rows)" for a file of three valid rows dropped for lacking `exp`."""
    path = write_rows(tmp_path / "dev.json", [medmcqa_row(f"m{i}", exp=None) for i in range(3)])
    report = LoadReport()
    with pytest.raises(DataFormatError, match=r"no valid row \(all 3 rows were dropped: without_rationale 3\)"):
        load_medmcqa(str(path), require_rationale=True, report=report)
    assert report.counts == {"without_rationale": 3}
    with pytest.raises(DataFormatError, match=r"all 3 rows were dropped: without_rationale 3"):
        load_task("medmcqa", None, path=str(path))


@pytest.mark.parametrize("task", ["medmcqa", "medqa", "pubmedqa", "medquad"])
def test_a_directory_given_as_a_questions_file_is_called_a_directory(tmp_path, task):
    """Before: "dev.json does not exist (it is not a Hub dataset id either)" (or a raw `[Errno 21]`)."""
    folder = tmp_path / "dev.json"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"dev.json is a directory, not a data file"):
        load_task(task, None, path=str(folder))
