"""The `jmlr` command on the console (a subprocess, as a user runs it): an error is one line on stderr with exit
status 1 and the traceback only behind `--debug` / `JMLR_DEBUG=1`; library log lines (faiss's INFO lines) stay off
the console unless `--verbose`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jmlr_hf import JMLRForCausalLM
from jmlr_hf.models import RETRIEVER_TOKENIZER_DIR
from tests.testing_utils.models import tiny_config

CORPUS = [
    {"id": "d1", "text": "Intramuscular epinephrine is the first-line treatment of anaphylaxis."},
    {"id": "d2", "text": "Iron deficiency causes a microcytic anemia with a low ferritin."},
    {"id": "d3", "text": "Hyperkalemia produces peaked T waves on the ECG."},
]
# What the training script does before it indexes (`logging.basicConfig(level=INFO)`), which let faiss's INFO lines
# ("Loading faiss with AVX2 support.") through to the console; here before the `index` command imports faiss.
ROOT_AT_INFO = "import logging, sys; logging.basicConfig(level=logging.INFO); from jmlr_hf.cli import main; main()"


def jmlr(*argv: str, env: dict[str, str] | None = None, prelude: str | None = None) -> subprocess.CompletedProcess:
    """Run `jmlr ARGV` as the console script does (`main()` reading `sys.argv`)."""
    code = prelude or "from jmlr_hf.cli import main; main()"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    environment.pop("JMLR_DEBUG", None) if env is None or "JMLR_DEBUG" not in env else None
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300, env=environment
    )


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, generator_tokenizer, retriever_tokenizer) -> Path:
    torch.manual_seed(0)
    model = JMLRForCausalLM(tiny_config(generator_tokenizer, retriever_tokenizer))
    folder = tmp_path_factory.mktemp("console") / "model"
    model.save_pretrained(folder)
    generator_tokenizer.save_pretrained(folder)
    retriever_tokenizer.save_pretrained(folder / RETRIEVER_TOKENIZER_DIR)
    return folder


def test_an_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "missing.jsonl"
    argv = ["evaluate", "--model", "m", "--task", "medqa", "--questions", str(missing)]
    done = jmlr(*argv)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jmlr evaluate: error: ") and str(missing) in lines[0], lines
    assert "Traceback" not in done.stderr and "--debug" in lines[0]

    for debug in (jmlr(*argv, "--debug"), jmlr("--debug", *argv), jmlr(*argv, env={"JMLR_DEBUG": "1"})):
        assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_a_usage_mistake_of_a_command_is_one_line_too():
    done = jmlr("evaluate", "--model", "m", "--task", "mmlu", "--split", "train")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "jmlr evaluate: error: MMLU-Med has only test questions: use --split test (or all) "
        "(--debug or JMLR_DEBUG=1 for the traceback)"
    )
    # A flag that fails its dataclass's validation, while the command line is parsed: one line as well.
    done = jmlr("evaluate", "--model", "m", "--task", "mmlu", "--limit", "0")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "jmlr evaluate: error: ValueError: --limit must be at least 1, got 0 (--debug or JMLR_DEBUG=1 for the traceback)"
    ]


def test_faiss_info_lines_stay_off_the_console_unless_verbose(tiny_checkpoint, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    argv = ["index", "--corpus", str(corpus), "--retriever", str(tiny_checkpoint), "--output", str(tmp_path / "i")]
    quiet = jmlr(*argv, prelude=ROOT_AT_INFO)
    assert quiet.returncode == 0, quiet.stderr
    assert "Indexed 3 documents" in quiet.stdout
    assert not [line for line in quiet.stderr.splitlines() if "faiss.loader" in line], quiet.stderr

    verbose = jmlr(*argv, "--verbose", prelude=ROOT_AT_INFO)
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO:faiss.loader:Loading faiss" in verbose.stderr, verbose.stderr


def test_transformers_warnings_are_hidden_unless_verbose():
    """The attention-implementation notices of a model load are transformers warnings: hidden by default."""
    from transformers.utils import logging as transformers_logging

    from jmlr_hf.cli import configure_console

    previous = transformers_logging.get_verbosity()
    try:
        configure_console(verbose=False)
        assert transformers_logging.get_verbosity() == logging.ERROR
        assert not logging.getLogger("faiss.loader").isEnabledFor(logging.INFO)
        configure_console(verbose=True)
        assert transformers_logging.get_verbosity() == logging.WARNING
        assert logging.getLogger("faiss.loader").isEnabledFor(logging.INFO)
    finally:
        transformers_logging.set_verbosity(previous)
        logging.getLogger("faiss").setLevel(logging.NOTSET)
