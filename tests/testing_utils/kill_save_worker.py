"""A process to SIGKILL in the middle of a save, for tests/trainer/test_kill_final_save.py and
tests/retrieval/test_kill_index_save.py.

    python tests/testing_utils/kill_save_worker.py final-save OUT [--via trainer|script] [--pause]
    python tests/testing_utils/kill_save_worker.py index-save OUT [--pause]

`final-save` trains the tiny random JMLR model (seed 1, full fine-tuning, one thread) for one step and saves it to
OUT: with `--via trainer` as a user of the trainer does (`JointRetrievalTrainer.save_model(OUT)`), with `--via script`
as the training script saves its final model (`jmlr_hf.models.save_model`). `index-save` builds [`new_index`] and
saves it to OUT (`DocumentIndex.save`).

With `--pause`, the save stops half-way through writing its largest file — the model's `model.safetensors`, the
index's `documents.arrow` — as a kill during the write would find it: the file is cut to half its length, the
worker prints `PAUSED <path of the file>` and sleeps until the test kills it. The pause comes from a patched writer,
not from timing, so the kill always lands at the same point of the save.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `tests.testing_utils`

PAUSED = "PAUSED"

OLD_DOCUMENTS = [{"id": f"old-{i}", "text": f"Old document {i} about the pancreas and insulin."} for i in range(6)]
NEW_DOCUMENTS = [{"id": f"new-{i}", "text": f"New document {i} about the kidney filtering blood."} for i in range(9)]


def encode(texts: list[str]) -> np.ndarray:
    """Deterministic 16-dimensional vectors, one per text (the index normalises them)."""
    return np.stack(
        [np.random.default_rng(zlib.crc32(text.encode())).standard_normal(16).astype(np.float32) for text in texts]
    )


def old_index():
    from jmlr_hf.retrieval.index import DocumentIndex

    return DocumentIndex.build(OLD_DOCUMENTS, encode, "fp-old", show_progress=False)


def new_index():
    from jmlr_hf.retrieval.index import DocumentIndex

    return DocumentIndex.build(NEW_DOCUMENTS, encode, "fp-new", show_progress=False)


def cut_and_pause(path: str | os.PathLike[str]) -> None:
    """Leave the file just written half-written, say where, and wait for the SIGKILL."""
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    print(f"{PAUSED} {os.path.abspath(path)}", flush=True)
    time.sleep(600)
    raise SystemExit("the test did not kill this worker")


def pause_in_weights_write() -> None:
    import transformers.modeling_utils as modeling_utils

    real_save_file = modeling_utils.safe_save_file

    def save_file_then_pause(tensors, filename, *args, **kwargs):
        real_save_file(tensors, filename, *args, **kwargs)
        cut_and_pause(filename)

    modeling_utils.safe_save_file = save_file_then_pause


def pause_in_documents_write() -> None:
    from jmlr_hf.retrieval import index as index_module

    real_write = index_module._write_documents

    def write_then_pause(documents, path):
        real_write(documents, path)
        cut_and_pause(path)

    index_module._write_documents = write_then_pause


def final_save(out: Path, via: str, pause: bool) -> None:
    import torch
    from transformers import AutoTokenizer

    from jmlr_hf import JMLRForCausalLM
    from jmlr_hf.models import save_model
    from jmlr_hf.utils.demo_models import minilm_path, smollm2_path
    from tests.testing_utils.models import TOY_ROWS, tiny_config
    from tests.testing_utils.training import make_args, make_trainer

    torch.set_num_threads(1)
    generator_tokenizer = AutoTokenizer.from_pretrained(smollm2_path())
    generator_tokenizer.pad_token = generator_tokenizer.pad_token or generator_tokenizer.eos_token
    retriever_tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(1)
    model = JMLRForCausalLM(tiny_config(generator_tokenizer, retriever_tokenizer))
    args = make_args(out.parent, output_dir=str(out.parent / "run"), max_steps=1)
    trainer = make_trainer(model, args, generator_tokenizer, retriever_tokenizer, rows=TOY_ROWS)
    trainer.train()
    if pause:
        pause_in_weights_write()
    if via == "trainer":
        trainer.save_model(str(out))
    else:
        save_model(model, generator_tokenizer, retriever_tokenizer, out)
    print("SAVED", flush=True)


def index_save(out: Path, pause: bool) -> None:
    if pause:
        pause_in_documents_write()
    new_index().save(out)
    print("SAVED", flush=True)


def kill_when_paused(*args: str | os.PathLike[str]) -> Path:
    """Run this worker with `args` and `--pause`, SIGKILL it once it has paused in the middle of its save, and return
    the half-written file it reported. Called by the tests."""
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, __file__, *map(str, args), "--pause"], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            line = process.stdout.readline()
            while line and not line.startswith(PAUSED):
                line = process.stdout.readline()
            if line.startswith(PAUSED):
                os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
            process.stdout.close()
        stderr.seek(0)
        assert line.startswith(PAUSED), f"the worker never paused inside its save:\n{stderr.read()[-3000:]}"
    assert process.returncode == -signal.SIGKILL
    return Path(line.split(" ", 1)[1].strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["final-save", "index-save"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--via", choices=["trainer", "script"], default="trainer")
    parser.add_argument("--pause", action="store_true")
    args = parser.parse_args()
    if args.what == "final-save":
        final_save(args.out, args.via, args.pause)
    else:
        index_save(args.out, args.pause)


if __name__ == "__main__":
    main()
