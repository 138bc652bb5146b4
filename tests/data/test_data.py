"""Tests of `jmlr_hf.data`: the loaders, their validation, chunking and the hash split.

The tests marked `integration` read the real files of the shared data folder (`default_data_dir()`, i.e.
`$JMLR_DATA_DIR` or `../shared/data`) and fail, not skip, when it is missing. The others use tiny files written here.
"""

from __future__ import annotations

import collections
import gzip
import json
import logging
import pickle
import time
from pathlib import Path

import pytest

from jmlr_hf.data import (
    CORPUS_FEATURES,
    MEDQUAD_FILE,
    QA_FEATURES,
    DataFormatError,
    LoadReport,
    build_from_medqa_reason_csv,
    chunk_text,
    default_data_dir,
    load_corpus,
    load_medmcqa,
    load_medqa,
    load_medquad_corpus,
    load_mmlu,
    load_named_corpus,
    load_pubmedqa,
    load_pubmedqa_corpus,
    load_task,
    split_by_hash,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MEDQA_TINY = FIXTURES / "medqa_tiny.jsonl"


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    """Write rows as JSON lines; a str row is written verbatim (for malformed or blank lines)."""
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def medqa_row(**overrides) -> dict:
    row = {
        "question": "Which vitamin deficiency causes scurvy?",
        "options": {"A": "Vitamin A", "B": "Vitamin C", "C": "Vitamin D", "D": "Vitamin K"},
        "answer_idx": "B",
    }
    row.update(overrides)
    return row


# --------------------------------------------------------------------------------------------------------------------
# Configuration and small fixtures
# --------------------------------------------------------------------------------------------------------------------


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("JMLR_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("JMLR_DATA_DIR")
    project_root = Path(__file__).resolve().parents[2]
    assert default_data_dir() == project_root.parent / "shared" / "data"


def test_load_medqa_fixture():
    report = LoadReport()
    dataset = load_medqa(str(MEDQA_TINY), report=report)

    assert dataset.features == QA_FEATURES
    assert dataset["id"] == ["medqa-0", "medqa-1", "custom-7", "medqa-3"]
    assert [len(options) for options in dataset["options"]] == [4, 5, 5, 4]
    assert dataset["answer"] == ["B", "D", "B", "A"]
    assert dataset["subject"] == ["step1", "step2&3", "", ""]
    assert dataset[1]["options"][3] == "Intramuscular epinephrine"
    assert dataset[0]["rationale"] == "" and dataset[0]["gold_doc_ids"] == [] == dataset[0]["evidence_doc_ids"]
    assert (report.num_rows, report.num_skipped, report.reasons) == (4, 0, [])


def test_hub_branch_validates_like_local_files(tmp_path):
    # "json" + data_files goes through datasets.load_dataset, the same branch as a Hub id. Arrow merges the 4- and
    # 5-option dicts into one struct (4-option rows get "E": None), which must not count as a fifth option.
    local = load_medqa(str(MEDQA_TINY))
    hub = load_medqa("json", data_files=str(MEDQA_TINY), cache_dir=str(tmp_path / "cache"))
    assert hub.to_list() == local.to_list()

    bad = write_jsonl(tmp_path / "bad.jsonl", [medqa_row(), medqa_row(answer_idx="E")])
    with pytest.raises(DataFormatError, match=r"row 2: field 'answer_idx'") as excinfo:
        load_medqa("json", data_files=str(bad), cache_dir=str(tmp_path / "cache"))
    assert "bad.jsonl" in str(excinfo.value)


def test_missing_local_file_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_medqa(str(tmp_path / "missing.jsonl"))


# --------------------------------------------------------------------------------------------------------------------
# Invalid rows
# --------------------------------------------------------------------------------------------------------------------

BAD_MEDQA_ROWS = {
    "missing field": ({k: v for k, v in medqa_row().items() if k != "answer_idx"}, "field 'answer_idx': missing"),
    "answer not among options": (medqa_row(answer_idx="E"), "field 'answer_idx': answer 'E' is not among"),
    "empty question": (medqa_row(question="   "), "field 'question': empty"),
    "malformed json": ('{"question": "Truncated', "malformed JSON"),
    "answer text mismatch": (medqa_row(answer="Vitamin K"), "field 'answer'"),
}


@pytest.mark.parametrize("case", sorted(BAD_MEDQA_ROWS))
def test_bad_row_error_names_file_row_and_field(tmp_path, case):
    bad_row, expected = BAD_MEDQA_ROWS[case]
    # The blank line makes the bad row line 3 but record 2: messages must count lines.
    path = write_jsonl(tmp_path / "medqa_bad.jsonl", [medqa_row(), "", bad_row])
    with pytest.raises(DataFormatError) as excinfo:
        load_medqa(str(path))
    message = str(excinfo.value)
    assert "medqa_bad.jsonl" in message and "line 3" in message and expected in message
    assert isinstance(excinfo.value, ValueError)
    assert excinfo.value.location == "line 3"


def test_skip_invalid_skips_counts_and_warns_once(tmp_path, caplog):
    rows = [medqa_row(question="Good one?")] + [row for row, _ in BAD_MEDQA_ROWS.values()] + [medqa_row()]
    path = write_jsonl(tmp_path / "medqa_bad.jsonl", rows)
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="jmlr_hf.data"):
        dataset = load_medqa(str(path), skip_invalid=True, report=report)

    assert dataset["question"] == ["Good one?", "Which vitamin deficiency causes scurvy?"]
    assert dataset["id"] == ["medqa-0", f"medqa-{len(rows) - 1}"]  # ids stay tied to the source row
    assert report.num_rows == 2 and report.num_skipped == len(BAD_MEDQA_ROWS) == len(report.reasons)
    assert "line 2" in report.reasons[0] and "medqa_bad.jsonl" in report.reasons[0]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"Skipped {len(BAD_MEDQA_ROWS)} invalid row(s)" in warnings[0].getMessage()


def test_broken_text_is_reported_per_row_and_field_and_skippable(tmp_path):
    """Undecodable bytes, a lone surrogate escape, NUL and a missing-value marker as the question: each names the
    file, the line and the field, and `skip_invalid=True` skips exactly those rows; a stray (invisible) byte-order
    mark is removed."""
    good = json.dumps(medqa_row(question="Good one?")).encode()
    lines = [
        good,
        json.dumps(medqa_row()).encode().replace(b"scurvy", b"scurv\xff\xfe"),  # not UTF-8
        json.dumps(medqa_row(question="Lone \ud800 surrogate")).encode(),  # JSON escape of a lone surrogate
        json.dumps(medqa_row(question="NUL\x00inside")).encode(),
        json.dumps(medqa_row(options={"A": "\ufeffVitamin A", "B": "Vitamin C", "C": "D", "D": "K"})).encode(),
        json.dumps(medqa_row(question="NaN")).encode(),
        good.replace(b"Good one?", b"Last one?"),
    ]
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = [
        ("line 2", "question", "not valid UTF-8 text"),
        ("line 3", "question", "not valid UTF-8 text"),
        ("line 4", "question", "contains a NUL character"),
        ("line 6", "question", "'NaN' is a missing-value marker, not a question"),
    ]
    report = LoadReport()
    dataset = load_medqa(str(path), skip_invalid=True, report=report)
    assert dataset["question"] == ["Good one?", medqa_row()["question"], "Last one?"] and report.num_skipped == 4
    assert dataset["options"][1][0] == "Vitamin A"
    for reason, (line, field, problem) in zip(report.reasons, expected, strict=True):
        assert f"broken.jsonl, {line}: field {field!r}: {problem}" in reason
    # Without skip_invalid the first broken row stops the load, named.
    with pytest.raises(DataFormatError, match=r"broken.jsonl, line 2: field 'question': not valid UTF-8 text"):
        load_medqa(str(path))


def test_broken_files_name_the_file(tmp_path):
    rows = [json.dumps(medqa_row(question=f"Question {i}?")) for i in range(200)]
    whole = gzip.compress(("\n".join(rows) + "\n").encode())
    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataFormatError, match=r"truncated.jsonl.gz, line \d+: the gzip stream is truncated"):
        load_medqa(str(truncated), skip_invalid=True)
    not_gzip = tmp_path / "plain.jsonl.gz"
    not_gzip.write_text("\n".join(rows))
    with pytest.raises(DataFormatError, match=r"plain.jsonl.gz, line 1: the gzip stream is truncated or not gzip"):
        load_medqa(str(not_gzip))
    # A CSV field over the csv module's limit (128 KiB): named, not a bare _csv.Error.
    subject = tmp_path / "mmlu" / "anatomy_test.csv"
    subject.parent.mkdir()
    subject.write_text('"Which bone?",A,B,C,D,A\n"' + "x" * 200_000 + '",A,B,C,D,A\n')
    with pytest.raises(DataFormatError, match=r"anatomy_test.csv, line 2: malformed CSV \(field larger than"):
        load_mmlu(str(subject.parent))


def test_a_source_without_one_valid_row_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataFormatError, match=r"empty.jsonl, the whole source: no valid row \(it holds no rows\)"):
        load_medqa(str(empty))
    invalid = write_jsonl(tmp_path / "invalid.jsonl", [medqa_row(question=""), medqa_row(answer_idx="Z")])
    with pytest.raises(DataFormatError, match=r"no valid row \(all 2 rows are invalid; first: .*line 1"):
        load_medqa(str(invalid), skip_invalid=True)


def test_data_format_error_pickles():
    error = DataFormatError("file.jsonl", "line 3", "question", "empty")
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error) == "file.jsonl, line 3: field 'question': empty"


def medmcqa_row(**overrides) -> dict:
    row = {
        "id": "q1",
        "question": "Drug of choice for absence seizures?",
        "opa": "Phenytoin",
        "opb": "Ethosuximide",
        "opc": "Carbamazepine",
        "opd": "Phenobarbital",
        "cop": 2,
        "exp": None,
        "subject_name": "Pharmacology",
    }
    row.update(overrides)
    return row


def test_load_medmcqa_small(tmp_path):
    path = write_jsonl(
        tmp_path / "dev.json",
        [medmcqa_row(), medmcqa_row(id="q2", cop=4, exp="  Because.  "), medmcqa_row(id="q3", cop=1, exp="")],
    )
    dataset = load_medmcqa(str(path))
    assert dataset["answer"] == ["B", "D", "A"]
    assert dataset["rationale"] == ["", "Because.", ""]
    assert dataset["subject"] == ["Pharmacology"] * 3

    report = LoadReport()
    with_rationale = load_medmcqa(str(path), require_rationale=True, report=report)
    assert with_rationale["id"] == ["q2"]
    assert report.counts == {"without_rationale": 2, "duplicate_options": 0} and report.num_skipped == 0


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"cop": 0}, "field 'cop': answer 0 is not among the options 1..4"),
        ({"cop": 5}, "field 'cop': answer 5"),
        ({"cop": "2"}, "field 'cop'"),
        ({"opc": None}, "field 'opc': null"),
        ({"id": "q1"}, "field 'id': duplicate id 'q1'"),
    ],
)
def test_medmcqa_bad_rows(tmp_path, bad, expected):
    path = write_jsonl(tmp_path / "dev.json", [medmcqa_row(), medmcqa_row(**{"id": "q2", **bad})])
    with pytest.raises(DataFormatError, match="line 2") as excinfo:
        load_medmcqa(str(path))
    assert expected in str(excinfo.value) and "dev.json" in str(excinfo.value)


def test_load_mmlu_csv_quoting_glob_and_line_numbers(tmp_path):
    (tmp_path / "anatomy_test.csv").write_text(
        '"Which bone, of these, is\nin the arm?",Femur,Humerus,"Tibia, left",Fibula,B\n'
        '"The ""dished face"" profile?",a,b,c,d,D\n'
    )
    (tmp_path / "virology_test.csv").write_text("What causes AIDS?,HIV,HPV,HBV,HCV,A\n")
    (tmp_path / "notes.csv").write_text("ignored,by,the,directory,loader\n")

    dataset = load_mmlu(str(tmp_path))
    assert dataset["id"] == ["mmlu-anatomy-0", "mmlu-anatomy-1", "mmlu-virology-0"]
    assert dataset[0]["question"] == "Which bone, of these, is\nin the arm?"
    assert dataset[0]["options"] == ["Femur", "Humerus", "Tibia, left", "Fibula"]
    assert dataset[1]["question"] == 'The "dished face" profile?'
    assert dataset["subject"] == ["anatomy", "anatomy", "virology"]
    assert len(load_mmlu(str(tmp_path / "viro*_test.csv"))) == 1

    # The first record spans lines 1-2, so the bad record starts on line 4.
    (tmp_path / "anatomy_test.csv").write_text(
        '"Multi\nline?",a,b,c,d,A\nFine?,a,b,c,d,C\nBad?,a,b,c,d,E\nShort?,a,b,A\n'
    )
    with pytest.raises(DataFormatError, match=r"anatomy_test\.csv, line 4: field 'answer'"):
        load_mmlu(str(tmp_path))
    report = LoadReport()
    dataset = load_mmlu(str(tmp_path), skip_invalid=True, report=report)
    assert len(dataset) == 3 and report.num_skipped == 2
    assert "line 5: expected 6 columns" in report.reasons[1]


def test_load_mmlu_hub_layout(tmp_path):
    path = write_jsonl(
        tmp_path / "mmlu.jsonl",
        [{"question": "Q?", "subject": "anatomy", "choices": ["w", "x", "y", "z"], "answer": 2}],
    )
    dataset = load_mmlu("json", data_files=str(path), cache_dir=str(tmp_path / "cache"))
    assert dataset[0]["answer"] == "C" and dataset[0]["options"] == ["w", "x", "y", "z"]
    assert dataset[0]["id"] == "mmlu-anatomy-0"


# --------------------------------------------------------------------------------------------------------------------
# PubMedQA (synthetic)
# --------------------------------------------------------------------------------------------------------------------


def pubmedqa_item(labels: list[str], decision: str = "yes") -> dict:
    return {
        "QUESTION": "Does it work?",
        "CONTEXTS": [f"Section {i} text." for i in range(len(labels))],
        "LABELS": labels,
        "MESHES": [],
        "final_decision": decision,
        "LONG_ANSWER": "It works.",
    }


@pytest.fixture()
def pubmedqa_dir(tmp_path) -> Path:
    items = {
        "101": pubmedqa_item(["BACKGROUND", "METHODS", "RESULTS"]),
        "102": pubmedqa_item(["AIMS", "METHODS AND RESULTS"], "no"),
        "103": pubmedqa_item(["PURPOSE", "METHODS", "PRINCIPAL FINDINGS"], "maybe"),
        "104": pubmedqa_item(["BACKGROUND", "CASE REPORTS"]),
    }
    (tmp_path / "items.json").write_text(json.dumps(items))
    (tmp_path / "test_ground_truth.json").write_text(json.dumps({"102": "no", "104": "yes"}))
    return tmp_path


def test_pubmedqa_schema_evidence_rules_and_split(pubmedqa_dir):
    report = LoadReport()
    dataset = load_pubmedqa(str(pubmedqa_dir / "items.json"), report=report)
    assert dataset.features == QA_FEATURES
    rows = {row["id"]: row for row in dataset}
    assert rows["101"]["options"] == [] and rows["101"]["answer"] == "yes" and rows["101"]["rationale"] == "It works."
    assert rows["101"]["gold_doc_ids"] == ["101-0", "101-1", "101-2"]
    assert rows["101"]["evidence_doc_ids"] == ["101-2"]  # RESULTS
    assert rows["102"]["evidence_doc_ids"] == ["102-1"]  # results-like label
    assert rows["103"]["evidence_doc_ids"] == ["103-2"]  # FINDINGS
    assert rows["104"]["evidence_doc_ids"] == ["104-1"]  # no results label: last section
    assert report.counts == {"evidence_results": 1, "evidence_results_like": 2, "evidence_last_section": 1}

    assert load_pubmedqa(str(pubmedqa_dir / "items.json"), split="test")["id"] == ["102", "104"]
    assert load_pubmedqa(str(pubmedqa_dir / "items.json"), split="train")["id"] == ["101", "103"]
    with pytest.raises(ValueError, match="split"):
        load_pubmedqa(str(pubmedqa_dir / "items.json"), split="dev")
    (pubmedqa_dir / "test_ground_truth.json").unlink()
    with pytest.raises(FileNotFoundError, match="test_ground_truth.json"):
        load_pubmedqa(str(pubmedqa_dir / "items.json"), split="train")


def test_pubmedqa_bad_item_names_pmid(pubmedqa_dir):
    items = json.loads((pubmedqa_dir / "items.json").read_text())
    items["103"]["final_decision"] = "probably"
    items["104"]["LABELS"] = ["BACKGROUND"]
    path = pubmedqa_dir / "bad.json"
    path.write_text(json.dumps(items))
    with pytest.raises(DataFormatError, match=r"bad\.json, PMID 103: field 'final_decision'"):
        load_pubmedqa(str(path))
    report = LoadReport()
    corpus = load_pubmedqa_corpus(str(path), skip_invalid=True, report=report)
    assert report.num_skipped == 2 and "PMID 104: field 'LABELS'" in report.reasons[1]
    assert corpus["article_id"] == ["101"] * 3 + ["102"] * 2


def test_pubmedqa_duplicate_pmid_is_an_error_not_a_lost_item(tmp_path):
    """JSON keeps the last of two equal keys without a word: a duplicated PMID would silently lose an item."""
    first, second = json.dumps(pubmedqa_item(["RESULTS"])), json.dumps(pubmedqa_item(["RESULTS"], "no"))
    path = tmp_path / "items.json"
    path.write_text(f'{{"101": {first}, "102": {first}, "101": {second}}}')
    with pytest.raises(DataFormatError, match=r"items.json, PMID 101: the key appears twice"):
        load_pubmedqa(str(path))


def test_medqa_answer_text_must_be_text(tmp_path):
    path = write_jsonl(tmp_path / "medqa.jsonl", [medqa_row(answer=3)])
    with pytest.raises(DataFormatError, match=r"medqa.jsonl, line 1: field 'answer': expected a string, got int"):
        load_medqa(str(path))


def test_duplicate_options_twin_of_the_answer_is_invalid_other_twins_are_counted(tmp_path):
    """Two options with one text: ambiguous when one of them is the answer (two correct letters), a harmless quirk
    of the source when both are wrong. Case and spacing do not make two options different."""
    rows = [
        medmcqa_row(id="ok"),
        medmcqa_row(id="wrong-twins", opd="phenytoin "),  # A and D equal, answer B: one correct letter, kept
        medmcqa_row(id="answer-twin", opd="ETHOSUXIMIDE"),  # B (the answer) and D equal: invalid, named by D's field
    ]
    path = write_jsonl(tmp_path / "dev.json", rows)
    with pytest.raises(DataFormatError) as excinfo:
        load_medmcqa(str(path))
    assert str(excinfo.value) == (
        f"{path}, line 3: field 'opd': option D has the same text as the answer B ('Ethosuximide'): B, D would all be "
        "correct; expected one"
    )
    report = LoadReport()
    dataset = load_medmcqa(str(path), skip_invalid=True, report=report)
    assert dataset["id"] == ["ok", "wrong-twins"] and dataset["options"][1][3] == "phenytoin"
    assert report.num_skipped == 1 and report.counts == {"duplicate_options": 1}
    assert report.summary() == (
        f"{path}: kept 2 row(s); skipped 1 invalid row(s) (first: line 3: field 'opd': option D has the same text as "
        "the answer B ('Ethosuximide'): B, D would all be correct; expected one); noted: duplicate_options 1"
    )

    # The same check for every multiple-choice layout: it lives in the shared validator.
    medqa = write_jsonl(tmp_path / "medqa.jsonl", [medqa_row(options={"A": "x", "B": "Vitamin C", "C": "vitamin c"})])
    with pytest.raises(DataFormatError, match=r"medqa.jsonl, line 1: field 'options': option C has the same text"):
        load_medqa(str(medqa))
    (tmp_path / "anatomy_test.csv").write_text("Q?,same,other,Same,x,C\n")
    with pytest.raises(DataFormatError, match=r"anatomy_test.csv, line 1: field 'A': option A has the same text"):
        load_mmlu(str(tmp_path / "anatomy_test.csv"))
    reason = tmp_path / "reason.csv"
    reason.write_text("question,opa,opb,opc,answer,rationale\nQ?,x,y,Y,B,R.\n")
    with pytest.raises(DataFormatError, match=r"reason.csv, line 2: field 'opc': option C has the same text"):
        build_from_medqa_reason_csv(str(reason))


def test_load_task_skips_and_reports_one_summary_per_load(tmp_path):
    questions = write_jsonl(tmp_path / "medqa.jsonl", [medqa_row(), medqa_row(answer_idx="F"), "{not json"])
    reports: list[LoadReport] = []
    dataset = load_task("medqa", None, path=str(questions), reports=reports)
    assert len(dataset) == 1 and len(reports) == 1
    assert reports[0].summary().startswith(f"{questions}: kept 1 row(s); skipped 2 invalid row(s) (first: line 2:")
    with pytest.raises(DataFormatError, match="medqa.jsonl, line 2: field 'answer_idx'"):
        load_task("medqa", None, path=str(questions), skip_invalid=False)

    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "d1", "text": "x"}, {"id": "d2", "text": ""}])
    reports = []
    assert len(load_named_corpus(str(corpus), reports=reports)) == 1
    assert [report.summary() for report in reports] == [
        f"{corpus}: kept 1 row(s); skipped 1 invalid row(s) (first: line 2: field 'text': empty)"
    ]


def test_pubmedqa_hub_layout(pubmedqa_dir):
    items = json.loads((pubmedqa_dir / "items.json").read_text())
    hub_rows = [
        {
            "pubid": int(pmid),
            "question": item["QUESTION"],
            "context": {"contexts": item["CONTEXTS"], "labels": item["LABELS"], "meshes": []},
            "long_answer": item["LONG_ANSWER"],
            "final_decision": item["final_decision"],
        }
        for pmid, item in items.items()
    ]
    path = write_jsonl(pubmedqa_dir / "hub.jsonl", hub_rows)
    cache = str(pubmedqa_dir / "cache")
    local = load_pubmedqa(str(pubmedqa_dir / "items.json"))
    assert load_pubmedqa("json", data_files=str(path), cache_dir=cache).to_list() == local.to_list()
    test = load_pubmedqa(
        "json", split="test", test_ids_path=str(pubmedqa_dir / "test_ground_truth.json"), data_files=str(path)
    )
    assert test["id"] == ["102", "104"]
    assert len(load_pubmedqa_corpus("json", data_files=str(path), cache_dir=cache)) == 10


# --------------------------------------------------------------------------------------------------------------------
# Corpora and chunking
# --------------------------------------------------------------------------------------------------------------------


def test_load_corpus_chunks_ids_limit_and_layouts(tmp_path):
    long_text = " ".join(f"w{i}" for i in range(25))
    rows = [
        {"id": "a", "title": "Short", "text": "A short passage."},
        {"id": "b", "text": long_text},
        {"id": 7, "title": None, "content": "MedRAG content column.", "contents": "Title. MedRAG content column."},
    ]
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)

    dataset = load_corpus(str(path), max_tokens=10)
    assert dataset.features == CORPUS_FEATURES
    assert dataset["id"] == ["a", "b#0", "b#1", "b#2", "7"]
    assert dataset["text"][1:4] == [" ".join(f"w{i}" for i in range(s, min(s + 10, 25))) for s in (0, 10, 20)]
    assert dataset["title"] == ["Short", "", "", "", ""]
    assert dataset["text"][4] == "MedRAG content column."

    overlapping = load_corpus(str(path), max_tokens=10, stride=4)
    assert overlapping["text"][2].split()[:4] == overlapping["text"][1].split()[-4:]
    assert load_corpus(str(path), max_tokens=10, limit=3)["id"] == ["a", "b#0", "b#1"]
    assert len(load_corpus(str(path))) == 3
    with pytest.raises(ValueError, match="stride"):
        load_corpus(str(path), max_tokens=10, stride=10)


def test_load_corpus_duplicate_ids(tmp_path, caplog):
    path = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"id": "x", "text": "one"},
            {"id": "y", "text": "two"},
            {"id": "x", "text": "three"},
            {"id": "z", "text": ""},
        ],
    )
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl, line 3: field 'id': duplicate id 'x'"):
        load_corpus(str(path))
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="jmlr_hf.data"):
        dataset = load_corpus(str(path), skip_invalid=True, report=report)
    assert dataset["id"] == ["x", "y"] and report.num_skipped == 2
    assert "line 4: field 'text': empty" in report.reasons[1]
    assert sum(record.levelno == logging.WARNING for record in caplog.records) == 1


def test_chunk_text_with_retriever_tokenizer(retriever_tokenizer):
    text = ("Hyperkalemia, i.e. a serum potassium above 5.5 mmol/L, causes peaked T-waves. " * 40).strip()
    assert len(retriever_tokenizer.tokenize(text)) > 64

    for stride in (0, 8):
        chunks = chunk_text(text, 64, tokenizer=retriever_tokenizer, stride=stride)
        assert len(chunks) > 1
        # Chunks end on word boundaries, so each re-tokenizes to at most max_tokens tokens.
        assert all(len(retriever_tokenizer.tokenize(chunk)) <= 64 for chunk in chunks)
        assert chunks[0].startswith("Hyperkalemia") and text.endswith(chunks[-1])
        assert all(chunk in text for chunk in chunks)
    no_overlap = chunk_text(text, 64, tokenizer=retriever_tokenizer)
    assert " ".join(no_overlap).split() == text.split()  # nothing lost, nothing repeated
    assert chunk_text("Short text.", 64, tokenizer=retriever_tokenizer) == ["Short text."]


def test_load_corpus_with_tokenizer(tmp_path, retriever_tokenizer):
    path = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "p", "text": "Potassium regulates the heart. " * 30}])
    dataset = load_corpus(str(path), tokenizer=retriever_tokenizer, max_tokens=32)
    assert dataset["id"][:2] == ["p#0", "p#1"]
    assert all(len(retriever_tokenizer.tokenize(text)) <= 32 for text in dataset["text"])


# --------------------------------------------------------------------------------------------------------------------
# split_by_hash
# --------------------------------------------------------------------------------------------------------------------


def test_split_by_hash_is_deterministic_disjoint_and_stable():
    from datasets import Dataset

    dataset = Dataset.from_dict({"id": [f"q{i}" for i in range(2000)], "x": list(range(2000))})
    train, test = split_by_hash(dataset, 0.2)
    train_again, test_again = split_by_hash(dataset, 0.2)
    assert train["id"] == train_again["id"] and test["id"] == test_again["id"]
    assert set(train["id"]).isdisjoint(test["id"]) and len(train) + len(test) == len(dataset)
    assert 0.17 < len(test) / len(dataset) < 0.23
    assert test["x"] == sorted(test["x"])  # original order kept

    # A row's side depends only on its id: a subset splits the same way.
    sub_train, sub_test = split_by_hash(dataset.select(range(500)), 0.2)
    assert set(sub_test["id"]) == set(test["id"]) & {f"q{i}" for i in range(500)}
    assert split_by_hash(dataset, 0.2, salt="other")[1]["id"] != test["id"]
    assert len(split_by_hash(dataset, 0.0)[1]) == 0 and len(split_by_hash(dataset, 1.0)[0]) == 0
    with pytest.raises(ValueError):
        split_by_hash(dataset, 1.5)


# --------------------------------------------------------------------------------------------------------------------
# Real shared data
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir() -> Path:
    folder = default_data_dir()
    if not (folder / "README.md").is_file():
        pytest.fail(
            f"The shared data folder {folder} is missing. Set JMLR_DATA_DIR to the folder with qa/ and corpus/ "
            "(see its README.md), or place it at ../shared/data next to the project root."
        )
    return folder


@pytest.fixture(scope="module")
def ori_pqal(data_dir) -> str:
    return str(data_dir / "corpus" / "pubmedqa_pqal" / "ori_pqal.json")


@pytest.mark.integration
def test_real_medmcqa(data_dir):
    path = str(data_dir / "qa" / "medmcqa" / "dev.json")
    # 4 of the 4,183 rows have an answer whose text another option repeats (two correct letters): invalid.
    with pytest.raises(DataFormatError, match=r"dev.json, line 989: field 'opc': option C has the same text"):
        load_medmcqa(path)
    report = LoadReport()
    dataset = load_medmcqa(path, skip_invalid=True, report=report)
    assert len(dataset) == 4179 and len(set(dataset["id"])) == 4179
    assert report.num_skipped == 4 and [reason.split(": field")[0].split(", ")[-1] for reason in report.reasons] == [
        "line 989",
        "line 1342",
        "line 1407",
        "line 2734",
    ]
    # 21 rows repeat an option; in 17 the repeated text is a wrong option (one correct letter): kept, counted.
    assert report.counts == {"duplicate_options": 17}
    assert all(len(options) == 4 for options in dataset["options"])
    assert set(dataset["answer"]) == set("ABCD")
    with_rationale = load_medmcqa(path, require_rationale=True, skip_invalid=True, report=report)
    # 2,206 rows have an explanation (the data README); the 4 invalid rows are among them.
    assert len(with_rationale) == 2202 and report.counts == {"without_rationale": 4179 - 2202, "duplicate_options": 8}
    assert all(with_rationale["rationale"])
    assert report.summary().endswith("dropped: without_rationale 1977; noted: duplicate_options 8")


@pytest.mark.integration
def test_real_mmlu(data_dir):
    report = LoadReport()
    dataset = load_mmlu(str(data_dir / "qa" / "mmlu_med"), report=report)
    assert len(dataset) == 1089
    assert collections.Counter(dataset["subject"]) == {
        "anatomy": 135,
        "clinical_knowledge": 265,
        "college_biology": 144,
        "college_medicine": 173,
        "medical_genetics": 100,
        "professional_medicine": 272,
    }
    assert all(len(options) == 4 for options in dataset["options"]) and set(dataset["answer"]) == set("ABCD")
    assert report.counts == {"duplicate_options": 0}


@pytest.mark.integration
def test_real_pubmedqa(data_dir, ori_pqal):
    test_set = load_pubmedqa(str(data_dir / "qa" / "pubmedqa" / "test_set.json"))
    assert len(test_set) == 500
    assert collections.Counter(test_set["answer"]) == {"yes": 276, "no": 169, "maybe": 55}
    assert all(options == [] for options in test_set["options"]) and all(test_set["rationale"])

    train, test = load_pubmedqa(ori_pqal, split="train"), load_pubmedqa(ori_pqal, split="test")
    assert (len(train), len(test)) == (500, 500)
    assert set(train["id"]).isdisjoint(test["id"]) and set(test["id"]) == set(test_set["id"])

    report = LoadReport()
    everything = load_pubmedqa(ori_pqal, report=report)
    assert report.counts == {"evidence_results": 938, "evidence_results_like": 44, "evidence_last_section": 18}

    corpus = load_pubmedqa_corpus(ori_pqal)
    assert len(corpus) == 3358
    corpus_ids = set(corpus["id"])
    assert len(corpus_ids) == 3358
    for row in everything:
        assert row["gold_doc_ids"] and set(row["gold_doc_ids"]) <= corpus_ids
        assert row["evidence_doc_ids"] and set(row["evidence_doc_ids"]) <= set(row["gold_doc_ids"])
    sections = dict(zip(corpus["id"], corpus["section"]))
    assert sum(sections[doc] == "RESULTS" for row in everything for doc in row["evidence_doc_ids"]) == 938


@pytest.mark.integration
def test_real_medquad_with_limit(data_dir, retriever_tokenizer):
    start = time.perf_counter()
    report = LoadReport()
    dataset = load_medquad_corpus(data_dir / MEDQUAD_FILE, max_tokens=150, limit=1000, report=report)
    assert time.perf_counter() - start < 5
    assert len(dataset) == 1000 and len(set(dataset["id"])) == 1000
    assert all(len(text.split()) <= 150 for text in dataset["text"])
    assert any("#" in passage_id for passage_id in dataset["id"])
    assert report.counts["duplicate_texts"] == 598
    # The hash sample mixes topics and sources; the first 1,000 passages of the file cover 29 CancerGov topics.
    assert len(set(dataset["title"])) > 300
    again = load_medquad_corpus(max_tokens=150, limit=1000)
    assert again["id"] == dataset["id"]
    assert set(load_medquad_corpus(max_tokens=150, limit=300)["id"]) <= set(dataset["id"])

    by_tokens = load_medquad_corpus(max_tokens=128, limit=100, tokenizer=retriever_tokenizer)
    assert len(by_tokens) == 100
    assert all(len(retriever_tokenizer.tokenize(text)) <= 128 for text in by_tokens["text"])
