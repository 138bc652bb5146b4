"""The tally behind `docs/RELIABILITY.md`: each fault injected and each class of bad input the tests try, how many
cases, and what happened.

Every class is declared here, once, with what it means ([`CLASSES`]); property tests record each generated case with
[`record`] (an undeclared class is an error, so the table cannot drift from the tests), and the fault-injection
tests that predate the tally (kill-and-resume, interrupted checkpoints, index corruption) are recorded from their
outcome by [`pytest_runtest_logreport`], keyed by test name ([`OUTCOME_TESTS`]).

The table is written only on request, so a test run never touches the tree:

    .venv/bin/python -m tests.testing_utils.reliability_report   # runs the tests below, rewrites docs/RELIABILITY.md

or `pytest --reliability-report docs/RELIABILITY.md <tests>`. `tests/test_reliability_report.py` checks that the
committed file lists every declared class. Hypothesis draws the same examples on every run (see `fixtures.py`), so
the counts are those of any run of the suite.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

# area -> class -> what the cases are. Areas are the table's sections, in this order.
CLASSES: dict[str, dict[str, str]] = {
    "loaders": {
        "valid row": "a row every field of which is valid (must be kept unchanged, in order)",
        "missing or null field": "a required field left out of the row, or null",
        "wrong type": "a number, boolean or list where text or an answer is expected",
        "empty or blank text": "an empty or whitespace-only required field",
        "missing-value marker": "a question that reads nan / None / NULL (a spreadsheet's empty cell)",
        "NUL character": "a NUL character inside a text field",
        "lone surrogate": "a lone UTF-16 surrogate (`\\ud800`) inside a text field",
        "undecodable bytes": "bytes that are not UTF-8 in the line",
        "malformed record": "a line that is not a JSON object, or a CSV record with the wrong number of fields",
        "bad option count": "fewer than 2 or more than 5 options, or option keys that are not consecutive letters",
        "answer not an option": "an answer letter, index or decision outside the options",
        "answer text contradicts letter": "MedQA's answer text differs from the option its letter names",
        "answer repeated by another option": "the answer's text is also another option's (two correct letters)",
        "repeated wrong option": "two wrong options with one text (kept, counted as duplicate_options)",
        "duplicate id": "an id (or PMID) that an earlier row already has",
        "labels do not match sections": "PubMedQA: a LABELS list whose length differs from CONTEXTS",
        "no valid row": "a whole file of broken rows (must be an error even with skip_invalid)",
    },
    "CLI": {
        "summary line per load": "a generated file through `jmlr retrieve`'s loader: the printed line must count "
        "kept, skipped and dropped rows exactly",
    },
    "collator": {
        "valid row": "a training row every field of which is valid (batched)",
        "missing, null or wrong type": "question or answer missing, null, a number or a list",
        "blank text": "question or answer empty or whitespace",
        "candidates as one string": "`candidates` given as a string (would be split into characters)",
        "bad candidate": "a null, blank or non-string candidate, or fewer than num_candidates",
        "answer letter not an option": "an answer letter beyond the row's options",
    },
    "losses": {
        "finite scores and NLLs": "random finite logits and NLLs, random masks, S = 1..6",
        "all NLLs equal": "no preference among the documents",
        "all scores equal": "a retriever that cannot tell the documents apart",
        "S = 1": "one sampled document",
        "NaN or inf input": "a NaN or ±inf retriever logit or NLL at a valid position",
        "NaN or inf under the mask": "a NaN or ±inf value at a padded position (must be ignored)",
    },
    "configuration": {
        "generated retrieval settings": "N, S, K, λ, τ, β and the loss drawn at random, valid or not",
    },
    "training": {
        "non-finite loss, nonfinite_loss=error": "a NaN weight in the generator: the run must stop naming step and rows",
        "non-finite loss, nonfinite_loss=skip_step": "a NaN retrieval loss at one step: skipped, counted, logged, "
        "weights unchanged by it",
        "SIGKILL between checkpoints": "a training process killed after checkpoint-3, resumed with other initial "
        "weights",
        "interrupted checkpoint write": "a checkpoint without trainer_state.json (killed while saving)",
        "SIGKILL during the final save": "a process killed with half of its final model.safetensors written, over a "
        "previous model: `save_model` into a folder that also holds checkpoints, an index and a README, and the "
        "training script's save of output_dir/final",
        "resume restores both models": "resume from a checkpoint, full fine-tuning and LoRA",
    },
    "index": {
        "corrupted data file": "a byte of index.faiss or documents.arrow changed",
        "hand-edited config": "index_config.json edited (kind, nlist, dim, ...)",
        "config disagrees with faiss file": "a config consistent with its checksum but not with the faiss file",
        "missing file": "a file of the index folder deleted",
        "interrupted save": "a crash while writing, or while swapping the new folder in",
        "SIGKILL during an index save": "a process killed with half of documents.arrow written, over an existing "
        "index",
        "stale temporary folders": "what an interrupted save left behind, at the next save",
        "missing local folder": "a local --index path that does not exist (not a Hub id)",
    },
    "streaming index": {
        "valid file": "a generated corpus file of valid rows, streamed into an index (`stream_corpus` + "
        "`build_streaming`)",
        "bad row": "a file holding a row of a loader fault class (missing, wrong type, blank, NUL, surrogate, "
        "undecodable bytes, malformed JSON, duplicate id, ...), compared with the in-memory loader",
        "empty file": "an empty or blank file",
        "truncated gzip": "a .jsonl.gz file cut short",
        "CSV given as JSON lines": "a CSV file named .jsonl",
    },
    "BM25": {
        "valid call": "a generated corpus, queries, k, k1 and b, all valid",
        "bad document": "a document with a missing, non-string, blank, NUL or surrogate text, a bad id or title, or a "
        "duplicate id",
        "bad query": "a query that is null, a number, a list, blank, or one string where the list is meant",
        "bad k": "k of 0, negative, fractional, a bool, a string, None or NaN",
        "bad k1 or b": "k1 <= 0, NaN or inf, b outside [0, 1] or NaN, or either not a number",
    },
    "evaluate arguments": {
        "valid settings": "--batch_size, --num_candidates, --num_documents, --max_new_tokens (and --closed_book) "
        "drawn valid (command line and evaluate_dataset)",
        "count below its minimum": "a batch size, candidate count or token count below 1, or documents below 0",
        "more documents than candidates": "--num_documents above --num_candidates (or the model config's)",
    },
    "answer arguments": {
        "valid call": "`model.answer` with a valid question and 0 or 2-10 options",
        "bad question": "a question that is null, a number, a list, blank, a missing-value marker, holds NUL or a "
        "surrogate, or cannot fit max_length",
        "bad options": "options as one string or a mapping, 1 or more than 10 of them, or a null, non-string, blank "
        "or NUL option",
    },
    "cached NLLs": {
        "valid row": "a row whose `candidate_nlls` hold one finite NLL >= 0 per candidate",
        "wrong length": "one value too few or too many, fewer than num_candidates, none, a string or a number",
        "negative": "a negative value (a log-probability passed by mistake)",
        "not a finite number": "NaN, ±inf, null, a string, a bool or a list among the values",
        "missing in one row": "a row without cached NLLs in a batch whose other rows have them",
    },
}

# Fault-injection tests recorded from their outcome: test function -> (area, class, outcome when it passes).
OUTCOME_TESTS: dict[str, tuple[str, str, str]] = {
    "test_sigkill_after_a_checkpoint_then_resume_is_bit_identical": (
        "training",
        "SIGKILL between checkpoints",
        "resumed run bit-identical to an uninterrupted one (weights and log)",
    ),
    "test_resume_true_skips_a_checkpoint_whose_writing_was_interrupted": (
        "training",
        "interrupted checkpoint write",
        "resume falls back to the last complete checkpoint, with a warning",
    ),
    "test_sigkill_during_the_final_save_keeps_the_previous_model": (
        "training",
        "SIGKILL during the final save",
        "the previous model loads, weights bit-identical, the folder's other files kept; the next save cleans up",
    ),
    "test_resume_restores_retriever_and_generator": (
        "training",
        "resume restores both models",
        "retriever and generator restored exactly",
    ),
    "test_corrupted_file_is_detected": ("index", "corrupted data file", "CorruptIndexError naming the file"),
    "test_a_hand_edited_config_is_caught_by_its_checksum": (
        "index",
        "hand-edited config",
        "CorruptIndexError (checksum)",
    ),
    "test_a_config_that_disagrees_with_the_faiss_file_is_corrupt": (
        "index",
        "config disagrees with faiss file",
        "CorruptIndexError naming the field",
    ),
    "test_missing_file_is_detected": ("index", "missing file", "CorruptIndexError naming the file"),
    "test_crash_while_writing_keeps_the_previous_index": (
        "index",
        "interrupted save",
        "the previous index stays whole",
    ),
    "test_crash_during_swap_keeps_the_previous_index": ("index", "interrupted save", "the previous index stays whole"),
    "test_a_kill_between_the_fallbacks_two_renames_is_undone_by_the_next_save": (
        "index",
        "interrupted save",
        "killed between the rename fallback's renames: the next save puts the previous index back first",
    ),
    "test_sigkill_during_an_index_save_keeps_the_previous_index": (
        "index",
        "SIGKILL during an index save",
        "the previous index loads whole; the next save cleans up",
    ),
    "test_a_save_cleans_up_what_an_interrupted_save_left": (
        "index",
        "stale temporary folders",
        "removed by the next save",
    ),
    "test_load_index_names_a_missing_folder_instead_of_asking_the_hub": (
        "index",
        "missing local folder",
        "FileNotFoundError naming the path",
    ),
}

# The files to run to regenerate the table (the report script's default).
REPORT_TESTS = (
    "tests/data/test_properties.py",
    "tests/data/test_loader_properties.py",
    "tests/test_cli_properties.py",
    "tests/trainer/test_collator_properties.py",
    "tests/losses/test_loss_properties.py",
    "tests/trainer/test_nonfinite_loss.py",
    "tests/trainer/test_kill_and_resume.py",
    "tests/trainer/test_trainer.py::test_resume_true_skips_a_checkpoint_whose_writing_was_interrupted",
    "tests/trainer/test_trainer.py::test_resume_restores_retriever_and_generator",
    "tests/retrieval/test_index.py",
    "tests/trainer/test_kill_final_save.py::test_sigkill_during_the_final_save_keeps_the_previous_model",
    "tests/retrieval/test_kill_index_save.py",
    "tests/retrieval/test_streaming_input.py",
    "tests/retrieval/test_bm25_input.py",
    "tests/evaluation/test_evaluate_input.py",
    "tests/models/test_answer_input.py",
    "tests/trainer/test_cached_nll_input.py",
)

TALLY: Counter[tuple[str, str, str]] = Counter()


def record(area: str, fault: str, outcome: str, cases: int = 1) -> None:
    """Count `cases` cases of the declared class `fault` of `area` that ended in `outcome`."""
    if fault not in CLASSES.get(area, {}):
        raise KeyError(f"{area!r} / {fault!r} is not declared in tests/testing_utils/reliability.py CLASSES")
    TALLY[(area, fault, outcome)] += cases


def render(tally: Counter[tuple[str, str, str]]) -> str:
    """The Markdown of `docs/RELIABILITY.md`: one table per area, one row per (class, outcome)."""
    total = sum(tally.values())
    bad_inputs = sum(count for (area, fault, _), count in tally.items() if not fault.startswith("valid"))
    lines = [
        "# Reliability: faults injected and bad inputs tried",
        "",
        "Generated by the tests (`.venv/bin/python -m tests.testing_utils.reliability_report`; the classes are declared",
        "in `tests/testing_utils/reliability.py`). Property tests draw the same examples on every run, so these are",
        "the counts of every run of the suite. An outcome names the project's own error (`DataFormatError`,",
        "`ValueError`, `NonFiniteLossError`, `CorruptIndexError`) or what was checked; any other exception, and any",
        "invalid input that was accepted, fails the test.",
        "",
        f"{total:,} cases in all, {bad_inputs:,} of them faults or bad inputs.",
        "",
    ]
    for area, classes in CLASSES.items():
        rows = [(fault, outcome, count) for (a, fault, outcome), count in tally.items() if a == area]
        if not rows:
            continue
        order = list(classes)
        rows.sort(key=lambda row: (order.index(row[0]), row[1]))
        lines += [f"## {area}", "", "| class | what | cases | outcome |", "|---|---|---:|---|"]
        lines += [f"| {fault} | {classes[fault]} | {count:,} | {outcome} |" for fault, outcome, count in rows]
        lines.append("")
    return "\n".join(lines)


def listed_classes(markdown: str) -> set[tuple[str, str]]:
    """The (area, class) pairs a rendered table lists."""
    found: set[tuple[str, str]] = set()
    area = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            area = line[3:].strip()
        elif area and (match := re.match(r"\| ([^|]+?) \| ", line)) and match[1] not in ("class", "---"):
            found.add((area, match[1]))
    return found


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        default=None,
        metavar="PATH",
        help="write the table of faults and bad inputs tried in this run (docs/RELIABILITY.md) to PATH",
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    name = report.nodeid.split("::")[-1].split("[")[0]
    if name in OUTCOME_TESTS:
        area, fault, outcome = OUTCOME_TESTS[name]
        record(area, fault, outcome if report.passed else f"FAILED ({report.outcome})")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--reliability-report", default=None)
    if path and TALLY:
        Path(path).write_text(render(TALLY), encoding="utf-8")
