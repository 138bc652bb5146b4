"""A training process to kill, for tests/trainer/test_kill_and_resume.py.

    python tests/testing_utils/resume_worker.py OUT_DIR [--resume] [--pause_after_save STEP] [--init_seed N]

Trains the tiny random JMLR model (LoRA on the generator, the retriever fully) for 6 steps on the toy rows, saving
a checkpoint every step, on one thread (deterministic on CPU). With `--pause_after_save STEP` it sleeps after saving
that step's checkpoint, so that the test can SIGKILL it there; with `--resume` it resumes with
`resume_from_checkpoint=True` (given other initial weights with `--init_seed`, it ends where the uninterrupted run
did only if the checkpoint really was loaded). At the end it writes `OUT_DIR/final.pt`: every trainable weight and the logged
history.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `tests.testing_utils`

from jmlr_hf import JMLRForCausalLM  # noqa: E402
from jmlr_hf.utils.demo_models import minilm_path, smollm2_path  # noqa: E402
from tests.testing_utils.models import TOY_ROWS, tiny_config  # noqa: E402
from tests.testing_utils.training import lora_config, make_args, make_trainer  # noqa: E402


class PauseAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            print(f"saved checkpoint-{self.step}", flush=True)
            time.sleep(600)  # the test kills the process here


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--pause_after_save", type=int, default=None)
    parser.add_argument("--init_seed", type=int, default=0, help="seed of the model's initial weights")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator_tokenizer = AutoTokenizer.from_pretrained(smollm2_path())
    generator_tokenizer.pad_token = generator_tokenizer.pad_token or generator_tokenizer.eos_token
    retriever_tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(args.init_seed)
    model = JMLRForCausalLM(tiny_config(generator_tokenizer, retriever_tokenizer))
    training_args = make_args(
        Path(args.out_dir), output_dir=args.out_dir, max_steps=6, save_strategy="steps", save_steps=1, logging_steps=1
    )
    callbacks = [PauseAfterSave(args.pause_after_save)] if args.pause_after_save else []
    trainer = make_trainer(
        model,
        training_args,
        generator_tokenizer,
        retriever_tokenizer,
        rows=TOY_ROWS * 4,
        peft_config=lora_config(),
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    weights = {name: param.detach().clone() for name, param in model.named_parameters() if param.requires_grad}
    history = [{k: v for k, v in entry.items() if k != "train_runtime"} for entry in trainer.state.log_history]
    torch.save({"weights": weights, "history": history}, Path(args.out_dir) / "final.pt")


if __name__ == "__main__":
    main()
