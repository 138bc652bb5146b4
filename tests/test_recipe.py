"""`accelerate launch recipes/train.py` end to end on the real small models and PubMedQA, then `jmlr answer`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from jmlr_hf import JMLRForCausalLM
from jmlr_hf.data import default_data_dir
from jmlr_hf.retrieval import DocumentIndex
from tests.testing_utils.models import RECIPE_CORPUS as CORPUS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_under_accelerate_then_answer(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--config_file", str(ROOT / "recipes/accelerate_configs/cpu.yaml"),
        str(ROOT / "recipes/train.py"), "--config", str(ROOT / "recipes/demo.yaml"),
        "--output_dir", str(out), "--data_dir", str(default_data_dir()),
        "--distractor_passages", "20", "--corpus_limit", "300", "--train_limit", "4", "--eval_limit", "6",
        "--eval_answer_limit", "2",
        "--max_steps", "2", "--save_steps", "1", "--logging_steps", "1",
        "--num_candidates", "4", "--num_sampled", "2", "--max_document_length", "48",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "| evidence@1 |" in run.stdout  # the before/after table
    assert "faiss.loader" not in run.stderr  # the script's INFO lines, not faiss's
    # --corpus_limit: the first 300 of the 3,378 passages, at the start and in the final index alike.
    assert "corpus: using the first 300 of 3378 passages (--corpus_limit)" in run.stdout

    results = json.loads((out / "results.json").read_text())
    for phase in ("before", "after"):
        assert set(results[phase]) >= {"recall@1", "recall@2", "evidence@1", "accuracy", "answer_nll"}
        assert results[phase]["num_questions"] == 6 and results[phase]["num_answered"] == 2
    assert [e["step"] for e in results["train"] if "lm_loss" in e] == [1, 2]
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"

    final = out / "final"
    config = json.loads((final / "config.json").read_text())
    # The index is recorded relative to the model folder (never an absolute path of this machine).
    assert config["model_type"] == "jmlr" and config["index_repo_id"] == "../index"
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}
    assert (final / "retriever_tokenizer" / "tokenizer.json").exists()
    assert "| answer_nll |" in (final / "README.md").read_text()  # the card carries the measured results
    card = ModelCard.load(final / "README.md")
    assert {r.metric_name for r in card.data.eval_results} >= {"accuracy", "answer_nll", "recall@1", "evidence@1"}
    assert card.data.base_model == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert not list(out.glob(".final.tmp-*")), "the atomic save left a temporary directory"
    # After training the corpus was re-encoded by the trained retriever: the saved model and its index agree.
    trained = JMLRForCausalLM.from_pretrained(final)
    index = DocumentIndex.load(
        out / "index", expected_fingerprint=trained.retriever.weights_fingerprint(), on_stale="raise"
    )
    assert len(index) == 300

    # `jmlr answer` finds the index through the saved config and prints the documents it used.
    answer = subprocess.run(
        [str(Path(sys.executable).with_name("jmlr")), "answer", "--model", str(final), "--max-new-tokens", "8",
         "Do mitochondria play a role in remodelling lace plant leaves during programmed cell death?"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-4000:]
    assert "StaleIndexWarning" not in answer.stderr
    assert answer.stdout.startswith("Answer:") and "Documents used:" in answer.stdout
    assert answer.stdout.count("  [") == 2  # K = 2 documents, as demo.yaml sets


def small_recipe_command(tmp_path: Path, *launcher: str) -> tuple[list[str], Path, str]:
    """The demo recipe on 5 MedQA questions and a 6-passage corpus, refreshing the candidates after step 1."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": f"d{i}", "title": "", "text": t}) + "\n" for i, t in enumerate(CORPUS))
    )
    out = tmp_path / "run"
    fixture = str(ROOT / "tests/fixtures/medqa_tiny.jsonl")
    command = [
        *launcher, str(ROOT / "recipes/train.py"), "--config", str(ROOT / "recipes/demo.yaml"),
        "--task", "medqa", "--train_file", fixture, "--eval_file", fixture, "--corpus", str(corpus),
        "--distractor_passages", "0", "--output_dir", str(out), "--evaluate_before", "false",
        "--eval_answer_limit", "1", "--max_steps", "2", "--save_strategy", "no", "--logging_steps", "1",
        "--num_candidates", "4", "--num_sampled", "2", "--max_document_length", "48", "--refresh_index_steps", "1",
    ]  # fmt: skip
    return command, out, fixture


def check_small_recipe_run(out: Path, fixture: str) -> None:
    refreshed = json.loads((out / "refreshed_candidates" / "step-1.json").read_text())
    questions = [line for line in Path(fixture).read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(refreshed) == len(questions)
    assert all(len(texts) == 4 and set(texts) <= set(CORPUS) for texts in refreshed.values())
    assert not (out / "refreshed_candidates" / "step-2.json").exists()  # no refresh after the last step
    trained = JMLRForCausalLM.from_pretrained(out / "final")
    DocumentIndex.load(out / "index", expected_fingerprint=trained.retriever.weights_fingerprint(), on_stale="raise")


def test_recipe_refreshes_the_candidates_during_training(tmp_path):
    """`--refresh_index_steps 1`: after step 1 the corpus is re-encoded and the training questions re-retrieved."""
    command, out, fixture = small_recipe_command(tmp_path, sys.executable)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    check_small_recipe_run(out, fixture)


def test_recipe_in_two_processes(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` (gloo on CPU): index and pre-retrieval once, training in both
    processes with a candidate refresh, then the evaluation, the final index and the save once, from the main one."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    launcher = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]  # fmt: skip
    command, out, fixture = small_recipe_command(tmp_path, *launcher)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    check_small_recipe_run(out, fixture)
    assert run.stdout.count("Saved the model to") == 1  # the main process alone saves
    results = json.loads((out / "results.json").read_text())
    assert [e["step"] for e in results["train"] if "lm_loss" in e] == [1, 2]
    assert sorted(p.name for p in (out / "refreshed_candidates").iterdir()) == ["step-1.json"]
