"""The README's Python code runs as written: every ```python block is executed, in order, in one namespace (as a
reader pastes them into one session), in a fresh folder. A block that needs what a test cannot have (a 7B model, a
published Hub repository) is marked just above its fence with `<!-- readme-test: skip (reason) -->`, visibly in the
README's source, and the test counts what it ran and what it skipped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
FENCE = re.compile(r"^```python\s*$")


def python_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """`(line number, code, skip reason or None)` of every ```python block."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            start = i
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            marker = SKIP.search(lines[start - 1]) if start > 0 else None
            blocks.append((start + 1, "\n".join(lines[start + 1 : end]) + "\n", marker["reason"] if marker else None))
            i = end
        i += 1
    return blocks


def test_the_skip_markers_are_well_formed():
    """A marker must sit on the line right above a ```python fence: one anywhere else skips nothing, and one with a
    typo would leave its block to fail; both are errors here."""
    lines = README.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "readme-test" in line:
            assert SKIP.search(line), f"README line {number + 1}: malformed marker {line!r}"
            assert number + 1 < len(lines) and FENCE.match(lines[number + 1]), (
                f"README line {number + 1}: the marker is not right above a ```python block"
            )


def test_the_readme_python_runs_as_written(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    executed = [(line, code) for line, code, reason in blocks if reason is None]
    skipped = [(line, reason) for line, _, reason in blocks if reason is not None]
    # The quickstart (joint training with the demo models) and, visibly marked, the blocks needing a 7B model or Hub
    # repositories; a new block is executed unless it is marked.
    assert len(executed) >= 1 and any("JointRetrievalTrainer(" in code for _, code in executed)
    assert len(skipped) == len(blocks) - len(executed)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for line, code in executed:
        try:
            exec(compile(code, f"README.md (block at line {line})", "exec"), namespace)
        except Exception as error:  # noqa: BLE001 - name the block, keep the cause
            pytest.fail(f"README.md's python block at line {line} failed: {type(error).__name__}: {error}")
    # What the quickstart promised: a trained model with both tokenizers, and its index, saved.
    assert (tmp_path / "quickstart" / "final" / "retriever_tokenizer").is_dir()
    assert (tmp_path / "quickstart" / "index" / "index_config.json").is_file()
    assert namespace["trainer"].state.global_step == 2
    # The saved index is the trained retriever's (issue 26: the quickstart saved the index built before training,
    # which the saved model found stale on first use).
    from jmlr_hf import DocumentIndex, JMLRForCausalLM

    saved = JMLRForCausalLM.from_pretrained(tmp_path / "quickstart" / "final")
    fingerprint = saved.retriever.weights_fingerprint()
    DocumentIndex.load(tmp_path / "quickstart" / "index", expected_fingerprint=fingerprint, on_stale="raise")
    # ... and answered from the index's documents.
    assert namespace["reply"].documents and namespace["reply"].documents[0]["text"] in namespace["corpus"]
