"""What a new user hits on the documented path (issue 26), through the real entry points (`jmlr_hf.cli.main`, or the
console script in a subprocess): everything checkable is checked before a model loads, every mistake is one line
with exit status 1 (with the closest name for a typo), `--options` does not swallow the question, `jmlr train
--help` is quick and says `jmlr train`, a GPU launch configuration does not run on CPU silently, and an index that
a saved model records is not rebuilt without a word."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jmlr_hf.cli.commands as commands
import jmlr_hf.scripts.train as train_script
from jmlr_hf.cli import main
from jmlr_hf.models import save_model
from jmlr_hf.retrieval.index import DocumentIndex
from tests.testing_utils.models import RECIPE_CORPUS

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "recipes" / "demo.yaml")
MEDQA = str(ROOT / "tests" / "fixtures" / "medqa_tiny.jsonl")
CORPUS = [{"id": f"d{i}", "text": text} for i, text in enumerate(RECIPE_CORPUS)]


class Loaded(Exception):
    """Raised in place of loading a model: a test that expects a check before loading fails when it is raised."""


@pytest.fixture
def no_loading(monkeypatch):
    """Loading a model (the recipe's `load_model`, the `jmlr` commands' `load_retriever`) raises [`Loaded`]."""

    def refuse(*args, **kwargs):
        raise Loaded("a model was loaded before the check")

    monkeypatch.setattr(train_script, "load_model", refuse)
    monkeypatch.setattr(commands, "load_retriever", refuse)


def jmlr(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`jmlr ARGV` as the console script runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("JMLR_DEBUG", None)
    code = "from jmlr_hf.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=timeout, env=env
    )


def train_error(capsys, *flags: str) -> str:
    """`jmlr train FLAGS` must stop with exit status 1 and one line on stderr, which is returned."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *flags])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("jmlr train: error: "), err
    return err


# ------------------------------------------------------------------------------ item 2: checks before loading


def test_an_unknown_task_stops_train_before_anything_loads(no_loading, capsys, tmp_path):
    """`--task pubmed` used to load both models and encode the corpus (minutes) before failing, leaving an index."""
    err = train_error(capsys, "--config", DEMO, "--task", "pubmed", "--output_dir", str(tmp_path / "run"))
    assert "invalid choice 'pubmed'" in err and "did you mean 'pubmedqa'?" in err
    assert not (tmp_path / "run" / "index").exists()


def test_report_to_without_its_package_stops_train_before_anything_loads(no_loading, capsys, tmp_path):
    """The Trainer finds a missing `--report_to` package only when it builds its callbacks, after loading and
    indexing; the recipe checks it at parse time and names the package to install."""
    missing = [
        name for name in ("tensorboard", "wandb", "mlflow", "dvclive") if importlib.util.find_spec(name) is None
    ]
    assert missing, "every reporting package tried is installed: nothing to test with"
    err = train_error(capsys, "--config", DEMO, "--report_to", missing[0], "--output_dir", str(tmp_path / "run"))
    assert f"--report_to {missing[0]} needs the {missing[0]} package" in err


def test_a_missing_corpus_file_stops_train_before_anything_loads(no_loading, capsys, tmp_path):
    missing = tmp_path / "corpus.jsonl"
    err = train_error(capsys, "--config", DEMO, "--corpus", str(missing), "--output_dir", str(tmp_path / "run"))
    assert f"--corpus: {missing} does not exist" in err


def test_a_missing_questions_file_stops_train_before_anything_loads(no_loading, capsys, tmp_path):
    missing = tmp_path / "train.jsonl"
    flags = ["--task", "medqa", "--train_file", str(missing), "--eval_file", MEDQA]
    err = train_error(capsys, "--config", DEMO, *flags, "--output_dir", str(tmp_path / "run"))
    assert f"--train_file: {missing} does not exist" in err


def test_index_with_a_missing_corpus_file_fails_before_the_retriever_loads(no_loading, tmp_path):
    missing = tmp_path / "corpus.jsonl"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["index", "--corpus", str(missing), "--output", str(tmp_path / "index")])
    assert not (tmp_path / "index").exists()


# ------------------------------------------------------------------------------ item 8: --options and the question


@pytest.fixture
def checkpoint_with_index(make_tiny_model, generator_tokenizer, retriever_tokenizer, tmp_path) -> Path:
    """A tiny JMLR checkpoint whose config records its index, as `jmlr answer` reads it."""
    model = make_tiny_model()
    index_dir = tmp_path / "index"
    DocumentIndex.from_retriever(CORPUS, model.retriever, retriever_tokenizer, max_length=32).save(index_dir)
    model.config.index_repo_id = str(index_dir)
    save_model(model, generator_tokenizer, retriever_tokenizer, tmp_path / "model")
    return tmp_path / "model"


def test_options_before_the_question_leave_the_question_alone(checkpoint_with_index, capsys):
    """`--options Liver Pancreas Kidney "Which organ...?"` used to end in "the following arguments are required:
    question": argparse gave the question to `--options`. The same answer as with the question first."""
    question, options = "Which organ makes insulin?", ["Liver", "Pancreas", "Kidney"]
    common = ["answer", "--model", str(checkpoint_with_index), "--max_new_tokens", "2"]
    main([*common, "--options", *options, question])
    after = capsys.readouterr().out
    main([*common, question, "--options", *options])
    before = capsys.readouterr().out
    assert after.startswith("Answer: ") and after == before
    with pytest.raises(SystemExit, match="required: question"):
        main([*common, "--options", "Liver"])  # one word after --options is an option, not a question


# ------------------------------------------------------------------------------ item 9: one line, exit status 1


def test_an_invalid_choice_is_one_line_with_the_closest_choice():
    done = jmlr("evaluate", "--model", "m", "--task", "MedQA")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jmlr evaluate: error: argument --task: invalid choice"), lines
    assert "did you mean 'medqa'?" in lines[0]


def test_a_trl_parser_error_carries_the_commands_prefix(no_loading, capsys):
    err = train_error(capsys, "--config", DEMO, "--max_steps", "four")
    assert "--max_steps" in err and "invalid int value: 'four'" in err
    err = train_error(capsys, "--config", DEMO, "--num_candiates", "4")
    assert "unrecognized argument --num_candiates (did you mean '--num_candidates'?)" in err


def test_a_yaml_key_typo_names_the_key_it_meant(no_loading, capsys, tmp_path):
    """TRL's own message ("add them to the dataclass, or set fail_with_unknown_args=False") is for developers."""
    config = tmp_path / "run.yaml"
    config.write_text(Path(DEMO).read_text(encoding="utf-8").replace("num_candidates:", "num_candiates:"))
    err = train_error(capsys, "--config", str(config), "--output_dir", str(tmp_path / "run"))
    assert f"{config}: unknown key 'num_candiates' (did you mean 'num_candidates'?)" in err
    assert "fail_with_unknown_args" not in err


def test_recipe_errors_are_one_line_on_the_console(tmp_path):
    """The same through `python recipes/train.py`, in a fresh process: one line named after the script, status 1."""
    config = tmp_path / "run.yaml"
    config.write_text(Path(DEMO).read_text(encoding="utf-8").replace("num_candidates:", "num_candiates:"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "train.py"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"train.py: error: {config}: unknown key 'num_candiates' (did you mean 'num_candidates'?)"
    ]


# ------------------------------------------------------------------------------ item 13: jmlr train --help


def test_train_help_is_quick_and_names_the_command():
    """`jmlr train --help` used to import torch, transformers and TRL (13 s) and print `usage: jmlr`."""
    started = time.perf_counter()
    done = jmlr("train", "--help")
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: jmlr train ")
    for flag in ("--train_limit", "--eval_limit", "--no_evaluate_before", "--no_refresh_index", "--help-all"):
        assert flag in done.stdout
    assert elapsed < 5, elapsed  # ~0.3 s on an idle 2-core machine; the full parser took 13 s


# ------------------------------------------------------------------------------ item 14: a GPU config on CPU


def test_a_gpu_accelerate_config_without_a_gpu_is_refused(no_loading, capsys, monkeypatch, tmp_path):
    """What `accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml` sets in the environment
    (use_cpu false, gpu_ids 0, bf16): on a machine without a GPU the run used to go on on CPU without a word."""
    monkeypatch.setattr(train_script.torch.cuda, "is_available", lambda: False)
    for name, value in {"ACCELERATE_USE_CPU": "False", "CUDA_VISIBLE_DEVICES": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    err = train_error(capsys, "--config", DEMO, "--output_dir", str(tmp_path / "run"))
    assert "GPU configuration" in err and "no GPU is visible" in err and "cpu.yaml" in err
    monkeypatch.setattr(train_script.torch.cuda, "is_available", lambda: True)
    err = train_error(capsys, "--config", DEMO, "--output_dir", str(tmp_path / "run"))
    assert "--use_cpu true" in err  # demo.yaml's, which would train on CPU beside an idle GPU


def test_single_gpu_config_on_this_cpu_machine_is_refused_under_accelerate(tmp_path):
    """The real launcher, on a machine without a GPU (the test suite's): exit status 1 and the recipe's line."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the single-GPU configuration is the right one here")
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    command = [
        accelerate, "launch", "-q", "--config_file", str(ROOT / "recipes/accelerate_configs/single_gpu.yaml"),
        str(ROOT / "recipes/train.py"), "--config", DEMO, "--output_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1
    assert [line for line in done.stderr.splitlines() if "error" in line.lower()] == [
        line for line in done.stderr.splitlines() if line.startswith("train.py: error: accelerate launch was given")
    ], done.stderr
    assert not (tmp_path / "run" / "index").exists()


# ------------------------------------------------------------------------------ item 11: an index a model records


def recipe_flags(tiny_checkpoint: Path, corpus: Path, out: Path, index_dir: Path) -> list[str]:
    return [
        "--task", "medqa", "--train_file", MEDQA, "--eval_file", MEDQA, "--corpus", str(corpus),
        "--model_name_or_path", str(tiny_checkpoint), "--output_dir", str(out), "--index_dir", str(index_dir),
        "--num_candidates", "4", "--num_sampled", "2", "--num_context_documents", "1",
        "--max_document_length", "32", "--evaluate_before", "false", "--eval_answer_limit", "1",
        "--max_steps", "1", "--save_strategy", "no", "--use_cpu", "true", "--bf16", "false",
        "--report_to", "none", "--disable_tqdm", "true", "--learning_rate", "1e-2", "--retriever_learning_rate", "1e-2",
    ]  # fmt: skip


def test_an_index_a_saved_model_records_is_not_overwritten_silently(
    tmp_path, make_tiny_model, generator_tokenizer, retriever_tokenizer, capsys, monkeypatch
):
    """Two runs sharing `--index_dir`: the second would rebuild the index the first run's saved model records as
    its own (its retriever weights differ), leaving that model with a stale index. It stops before loading, naming
    the model; `--overwrite_index true` lets it go on, with a warning."""
    tiny = tmp_path / "tiny"
    save_model(make_tiny_model(0, max_length=256), generator_tokenizer, retriever_tokenizer, tiny)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    shared = tmp_path / "shared_index"
    main(["train", *recipe_flags(tiny, corpus, tmp_path / "first", shared)])
    first_model = tmp_path / "first" / "final"
    fingerprint = DocumentIndex.load(shared).fingerprint
    capsys.readouterr()

    second = recipe_flags(tiny, corpus, tmp_path / "second", shared)
    monkeypatch.setattr(train_script, "load_model", lambda *a, **k: (_ for _ in ()).throw(Loaded()))
    err = train_error(capsys, *second)
    assert f"holds the index of the saved model {first_model.resolve()}" in err and "--overwrite_index" in err
    assert DocumentIndex.load(shared).fingerprint == fingerprint  # untouched

    with pytest.raises(Loaded):  # allowed: the run goes on to load the model
        main(["train", *second, "--overwrite_index", "true"])
    assert f"leaves {first_model.resolve()} with a stale index" in capsys.readouterr().err
    # The first run's own output folder may run again: its final model is replaced with the index.
    with pytest.raises(Loaded):
        main(["train", *recipe_flags(tiny, corpus, tmp_path / "first", shared)])


# ------------------------------------------------------------------------------ item 10: a quiet console


def test_retrieve_and_train_keep_library_noise_off_the_console(tmp_path, checkpoint_with_index):
    """`jmlr retrieve` used to print "Loading weights" and "Creating json" bars, `jmlr train` `INFO:jmlr_hf...`
    lines that repeat its summary lines, a FutureWarning about `gradient_checkpointing` (even with it off) and the
    loading bars. The commands' own lines stay; `--verbose` brings the libraries' lines back."""
    index = checkpoint_with_index.parent / "index"
    done = jmlr(
        "retrieve", "--index", str(index), "--retriever", str(checkpoint_with_index), "--task", "medqa",
        "--questions", MEDQA, "--num_candidates", "2", "--output", str(tmp_path / "q.jsonl"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Wrote 4 questions" in done.stdout and "questions: " in done.stdout
    assert "Loading weights" not in done.stderr and "Creating json" not in done.stderr, done.stderr

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    flags = recipe_flags(checkpoint_with_index, corpus, tmp_path / "run", tmp_path / "run_index")
    done = jmlr("train", *flags)
    assert done.returncode == 0, done.stderr
    assert "Saved the model to" in done.stdout
    for noise in ("INFO:", "FutureWarning", "Loading weights", "Writing model shards"):
        assert noise not in done.stderr, done.stderr
