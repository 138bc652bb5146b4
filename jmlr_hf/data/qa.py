"""Loaders of the medical QA sets into the QA schema ([`QA_FEATURES`]): MedQA (jind11 JSON lines), MedMCQA, the
MMLU medical subsets (CSV) and PubMedQA-L (with the gold and evidence passages of its own abstract).

A bad row raises a [`DataFormatError`] that names the file, the row and the field; with `skip_invalid=True` such rows
are dropped and counted in one warning and in an optional [`LoadReport`].
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from datasets import Dataset

from ._loading import (
    ANSWER_LETTERS,
    QA_FEATURES,
    LoadReport,
    Row,
    RowError,
    collect,
    finish,
    identifier,
    iter_csv,
    iter_hub_rows,
    iter_pubmedqa,
    load_hub_dataset,
    multiple_choice,
    open_records,
    option_list,
    pubmedqa_article,
    question_field,
    text_field,
)

# The bundled QA files, relative to the data folder (see its README).
PUBMEDQA_FILE = "corpus/pubmedqa_pqal/ori_pqal.json"  # all 1,000 PubMedQA-L items; the test ids are beside it
MEDMCQA_FILE = "qa/medmcqa/dev.json"
MMLU_DIR = "qa/mmlu_med"

# PubMedQA section labels that name the results part of an abstract when no section is labelled exactly RESULTS
# ("METHODS AND RESULTS", "MEASUREMENTS AND MAIN RESULTS", "PRINCIPAL FINDINGS", "RESULT", ...).
_RESULTS_LIKE_LABEL = re.compile(r"\b(?:RESULTS?|FINDINGS)\b")

logger = logging.getLogger(__name__)


def _parse_medqa(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    options = option_list(record.get("options"), "options")
    example = multiple_choice(
        example_id=identifier(record, "id", default=f"medqa-{index}"),
        question=question_field(record, "question"),
        options=options,
        answer=text_field(record, "answer_idx"),
        answer_field="answer_idx",
        subject=text_field(record, "meta_info", required=False),
    )
    # jind11 rows repeat the answer text; a mismatch means the options were shuffled without updating answer_idx.
    answer_text = text_field(record, "answer", required=False)
    if answer_text:
        chosen = options[ANSWER_LETTERS.index(example["answer"])]
        if answer_text.strip() != chosen:
            raise RowError("answer", f"{answer_text!r} differs from option {example['answer']} ({chosen!r})")
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
    source, rows = open_records(path_or_id, load_kwargs)
    reasons: list[str] = []
    examples = collect(rows, _parse_medqa, source=source, skip_invalid=skip_invalid, reasons=reasons)
    return finish(examples, QA_FEATURES, source=source, reasons=reasons, report=report)


_MEDMCQA_OPTION_FIELDS = ("opa", "opb", "opc", "opd")


def _parse_medmcqa(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    cop = record.get("cop")
    # `cop` is 1-based in the released JSON files. Only ints 1..4 are accepted: guessing the base from the value
    # would silently shift every answer of a 0-based copy by one letter.
    if isinstance(cop, bool) or not isinstance(cop, int) or not 1 <= cop <= len(_MEDMCQA_OPTION_FIELDS):
        problem = "missing" if cop is None else f"answer {cop!r} is not among the options 1..4 (1-based: 1=A ... 4=D)"
        raise RowError("cop", problem)
    return [
        multiple_choice(
            example_id=identifier(record, "id", default=f"medmcqa-{index}"),
            question=question_field(record, "question"),
            options=[text_field(record, key) for key in _MEDMCQA_OPTION_FIELDS],
            answer=ANSWER_LETTERS[cop - 1],
            answer_field="cop",
            option_fields=_MEDMCQA_OPTION_FIELDS,
            rationale=text_field(record, "exp", required=False),
            subject=text_field(record, "subject_name", required=False),
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
    source, rows = open_records(path_or_id, load_kwargs)
    reasons: list[str] = []
    examples = collect(rows, _parse_medmcqa, source=source, skip_invalid=skip_invalid, reasons=reasons)
    counts: dict[str, int] = {}
    if require_rationale:
        kept = [example for example in examples if example["rationale"]]
        counts["without_rationale"] = len(examples) - len(kept)
        logger.info("%s: kept %d of %d questions with an explanation.", source, len(kept), len(examples))
        examples = kept
    return finish(examples, QA_FEATURES, source=source, reasons=reasons, report=report, counts=counts)


_MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")


def _iter_mmlu_csv(path: str, subject: str) -> Iterator[Row]:
    """Records of one MMLU CSV file (no header: question, A, B, C, D, answer); locations name the starting line."""
    for index, (line_number, values) in enumerate(iter_csv(path, header=False)):
        record: Mapping[str, Any] | RowError
        if len(values) != len(_MMLU_COLUMNS):
            record = RowError(None, f"expected {len(_MMLU_COLUMNS)} columns {_MMLU_COLUMNS}, got {len(values)}")
        else:
            record = {**dict(zip(_MMLU_COLUMNS, values)), "subject": subject}
        yield f"line {line_number}", index, record


def _parse_mmlu(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    subject = text_field(record, "subject", required=False)
    option_fields: tuple[str, ...] | None = None
    if "choices" in record:
        # The Hub layout (cais/mmlu): `choices` is a list and `answer` a 0-based index.
        options = option_list(record.get("choices"), "choices")
        answer = record.get("answer")
        if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(options):
            answer = ANSWER_LETTERS[answer]
        options_field = "choices"
    else:
        option_fields = tuple(ANSWER_LETTERS[:4])
        options = [text_field(record, letter) for letter in option_fields]
        answer = text_field(record, "answer")
        options_field = "A"
    return [
        multiple_choice(
            example_id=identifier(record, "id", default=f"mmlu-{subject or 'all'}-{index}"),
            question=question_field(record, "question"),
            options=options,
            answer=answer,
            answer_field="answer",
            subject=subject,
            options_field=options_field,
            option_fields=option_fields,
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
        source, dataset = load_hub_dataset(path_or_glob, load_kwargs)
        examples = collect(
            iter_hub_rows(dataset), _parse_mmlu, source=source, skip_invalid=skip_invalid, reasons=reasons
        )
        return finish(examples, QA_FEATURES, source=source, reasons=reasons, report=report)

    if not files:
        raise FileNotFoundError(f"No MMLU CSV files found for {path_or_glob!r} (a directory loads '*_test.csv').")
    if load_kwargs:
        raise TypeError(f"The keyword arguments {sorted(load_kwargs)} are only used for Hub datasets.")
    for path in files:
        examples += collect(
            _iter_mmlu_csv(str(path), _mmlu_subject(path)),
            _parse_mmlu,
            source=str(path),
            skip_invalid=skip_invalid,
            reasons=reasons,
        )
    return finish(examples, QA_FEATURES, source=path_or_glob, reasons=reasons, report=report)


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
    source, rows = iter_pubmedqa(path_or_id, hub_split, load_kwargs)
    rule_of: dict[str, str] = {}

    def parse(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        article = pubmedqa_article(record)
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
    examples = collect(rows, parse, source=source, skip_invalid=skip_invalid, reasons=reasons)
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
    return finish(examples, QA_FEATURES, source=source, reasons=reasons, report=report, counts=counts)


__all__ = ["MEDMCQA_FILE", "MMLU_DIR", "PUBMEDQA_FILE", "load_medmcqa", "load_medqa", "load_mmlu", "load_pubmedqa"]
