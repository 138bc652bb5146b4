"""Property-based test of the `jmlr` command's question loading: generated MedMCQA files (the rows of
`tests/data/test_loader_properties.py`: valid, broken field by field, or without an explanation) go through the
command's parser and loader (`jmlr retrieve --task medmcqa --questions FILE`), and the one summary line it prints must
count exactly the rows kept, the invalid rows skipped (naming the first), the rows dropped for want of an explanation,
and the rows kept with a repeated wrong option. About 250 generated rows per run.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from jmlr_hf.cli import load_questions, parse_command
from jmlr_hf.data import DataFormatError
from tests.data.test_loader_properties import VALID, json_line, medmcqa_files, write_lines
from tests.testing_utils.reliability import record


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(generated=medmcqa_files(extra_valid=10))
def test_retrieve_prints_exact_counts_for_generated_medmcqa_files(generated, capsys):
    with tempfile.TemporaryDirectory() as folder:
        path = write_lines(Path(folder) / "dev.json", [json_line(row.content) for row in generated])
        argv = ["retrieve", "--index", "unused", "--task", "medmcqa", "--questions", str(path), "--output", "unused"]
        _, _, args, _ = parse_command(argv)
        valid = [row for row in generated if row.fault in (VALID, "repeated wrong option")]
        explained = [row for row in valid if (row.content.get("exp") or "").strip()]
        broken = [i for i, row in enumerate(generated) if row.fault not in (VALID, "repeated wrong option")]
        capsys.readouterr()
        if not explained:
            with pytest.raises(DataFormatError, match="no valid row"):
                load_questions(args, None)
            outcome = "no row to keep: DataFormatError (the summary is not printed)"
        else:
            questions = load_questions(args, None)
            assert questions["id"] == [row.key for row in explained]
            out = capsys.readouterr().out
            assert out.count("\n") == 1 and out.startswith(f"questions: {path}: kept {len(explained)} row(s); ")
            if broken:
                skipped = re.search(r"; skipped (\d+) invalid row\(s\) \(first: line (\d+):", out)
                assert skipped and (int(skipped[1]), int(skipped[2])) == (len(broken), broken[0] + 1), out
            else:
                assert "; skipped 0 invalid rows" in out
            assert f"dropped: without_rationale {len(valid) - len(explained)}" in out
            repeated = sum(row.fault == "repeated wrong option" for row in explained)
            assert out.rstrip().endswith(f"noted: duplicate_options {repeated}")
            outcome = "one line; kept, skipped (first line named), dropped and noted counts exact"
        record("CLI", "summary line per load", outcome)
