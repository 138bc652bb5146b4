"""One rank of a 2-process FSDP2 (or DDP) joint-training run on CPU over gloo, for tests/trainer/test_fsdp2.py.

    accelerate launch --use_fsdp --fsdp_version 2 ... tests/testing_utils/fsdp2_worker.py OUT_DIR [--resume]
    accelerate launch --multi_gpu ...                 tests/testing_utils/fsdp2_worker.py OUT_DIR

Every rank builds the tiny random JMLR model (same seed), LoRA on the generator, and trains it `--max_steps` steps on
the toy rows with the `JointRetrievalTrainer`, a checkpoint every `--save_steps`. Then, as the training recipe does
after training: the full state dict is gathered to the main process (`Accelerator.get_state_dict`, a collective),
loaded into an unsharded model of the same structure, the adapter merged and the model saved with `save_model`. The
main process writes `OUT_DIR/result.pt`: the gathered trainable weights, the merged weights and the logged losses.
(`gather_trained_model` is the recipe's own step.)

With `--resume` (FSDP2 only) the same process then trains a second model, built from other initial weights,
resumed from `checkpoint-{save_steps}`, and adds its gathered weights (`resumed`): only loading the sharded
checkpoint can bring it to where the first run ended.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `tests.testing_utils`

from jmlr_hf import JMLRForCausalLM  # noqa: E402
from jmlr_hf.models import apply_peft_to_generator, save_model  # noqa: E402
from jmlr_hf.scripts.train import gather_trained_model  # noqa: E402
from jmlr_hf.utils.demo_models import minilm_path, smollm2_path  # noqa: E402
from tests.testing_utils.models import TOY_ROWS, tiny_config  # noqa: E402
from tests.testing_utils.training import lora_config, make_args, make_trainer  # noqa: E402


def apply_fsdp_on_cpu() -> None:
    """Make accelerate shard on CPU as it does on GPUs. accelerate 1.16 applies FSDP to GPU-type runs only: with no
    GPU, `accelerate launch --use_fsdp` starts the processes with FSDP's settings in the environment, and the state
    falls back to DDP over gloo (`MULTI_CPU`). torch's FSDP2 (`fully_shard`) runs on CPU over gloo; this hands the
    state the FSDP plugin that `Accelerator` made from that environment, as accelerate does on a GPU machine, so
    that the Trainer, the `JointRetrievalTrainer` and accelerate take their FSDP2 paths (sharding, saving, loading).
    (The Trainer resets accelerate's state when it sets up its devices: hence a patch of the state's constructor.)"""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            self.distributed_type = DistributedType.FSDP
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as accelerate records it

    AcceleratorState.__init__ = init


def trainable(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in state.items() if "lora_" in k or k.startswith("retriever.")}


def train(out_dir: Path, init_seed: int, max_steps: int, save_steps: int, resume: str | None, tokenizers):
    generator_tokenizer, retriever_tokenizer = tokenizers
    torch.manual_seed(init_seed)
    model = JMLRForCausalLM(tiny_config(generator_tokenizer, retriever_tokenizer))
    args = make_args(
        out_dir,
        output_dir=str(out_dir),
        max_steps=max_steps,
        save_strategy="steps",
        save_steps=save_steps,
        retriever_learning_rate=1e-3,
        max_grad_norm=1.0,
    )
    trainer = make_trainer(
        model, args, generator_tokenizer, retriever_tokenizer, rows=TOY_ROWS * 8, peft_config=lora_config()
    )
    trainer.train(resume_from_checkpoint=resume)
    # The joint loss on held-out rows, through the sharded model on every rank (a distributed evaluation loop).
    trainer.evaluated = trainer.evaluate(eval_dataset=Dataset.from_list(TOY_ROWS * 2))

    def unsharded() -> JMLRForCausalLM:  # the recipe rebuilds the trained model's structure the same way
        torch.manual_seed(1)
        plain = JMLRForCausalLM(tiny_config(generator_tokenizer, retriever_tokenizer))
        apply_peft_to_generator(plain, lora_config())
        return plain

    return trainer, gather_trained_model(trainer, unsharded)  # every rank: a collective under FSDP2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--max_steps", type=int, default=4)
    parser.add_argument("--save_steps", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    apply_fsdp_on_cpu()
    out_dir = Path(args.out_dir)
    generator_tokenizer = AutoTokenizer.from_pretrained(smollm2_path())
    generator_tokenizer.pad_token = generator_tokenizer.pad_token or generator_tokenizer.eos_token
    tokenizers = (generator_tokenizer, AutoTokenizer.from_pretrained(minilm_path()))

    trainer, model = train(out_dir / "run", 0, args.max_steps, args.save_steps, None, tokenizers)
    accelerator = trainer.accelerator
    result = {"world": accelerator.num_processes, "fsdp": trainer.is_fsdp_enabled}
    if accelerator.is_main_process:
        result["sharded_class"] = type(trainer.model).__name__
        result["weights"] = trainable(model.state_dict())
        result["losses"] = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        result["eval_loss"] = trainer.evaluated["eval_loss"]
        # As the recipe saves: the adapter merged, the model saved for `from_pretrained`.
        save_model(model, *tokenizers, out_dir / "final", generator_weights="merged")
        result["merged"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if args.resume:
        checkpoint = str(out_dir / "run" / f"checkpoint-{args.save_steps}")
        resumed, resumed_model = train(out_dir / "resumed", 5, args.max_steps, args.save_steps, checkpoint, tokenizers)
        if accelerator.is_main_process:
            result["resumed"] = trainable(resumed_model.state_dict())
            result["resumed_losses"] = [entry["loss"] for entry in resumed.state.log_history if "loss" in entry]
    if accelerator.is_main_process:
        torch.save(result, out_dir / "result.pt")
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
