"""A short joint training on the dependency floors (run by `make check-floors`, in the venv of `tools/check_floors.sh`).

Two steps of `JointRetrievalTrainer` on a tiny random JMLR model (a 2-layer Llama generator, a 2-layer BERT retriever)
with the packed NLL pass forced on (a boolean `logits_to_keep`, the newest transformers feature the trainer uses),
then `save_model` and a reload through `from_pretrained` that must give the same logits. It exercises the parts of
torch, transformers, trl, peft, accelerate, datasets and safetensors that a training run needs, on the oldest
versions pyproject.toml allows, and prints those versions.
"""

from __future__ import annotations

import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `tests.testing_utils`

from jmlr_hf import JMLRForCausalLM, JointRetrievalTrainer  # noqa: E402
from jmlr_hf.models import save_model  # noqa: E402
from jmlr_hf.utils.demo_models import minilm_path, smollm2_path  # noqa: E402
from tests.testing_utils.models import TOY_ROWS, tiny_config  # noqa: E402
from tests.testing_utils.training import make_args  # noqa: E402

DISTRIBUTIONS = (
    "torch transformers trl peft accelerate datasets huggingface-hub evaluate numpy pyarrow safetensors tokenizers"
)


def main() -> None:
    torch.set_num_threads(1)
    print("versions:", ", ".join(f"{name} {version(name)}" for name in DISTRIBUTIONS.split()))
    generator_tokenizer = AutoTokenizer.from_pretrained(smollm2_path())
    generator_tokenizer.pad_token = generator_tokenizer.eos_token
    retriever_tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    model = JMLRForCausalLM(tiny_config(generator_tokenizer, retriever_tokenizer))
    with tempfile.TemporaryDirectory() as tmp:
        args = make_args(Path(tmp), max_steps=2, nll_padding_free=True)
        trainer = JointRetrievalTrainer(
            model,
            args,
            train_dataset=Dataset.from_list(TOY_ROWS * 4),
            processing_class=generator_tokenizer,
            retriever_tokenizer=retriever_tokenizer,
            peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        )
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses))), trainer.state.log_history
        saved = save_model(model, generator_tokenizer, retriever_tokenizer, Path(tmp) / "final")
        reloaded = JMLRForCausalLM.from_pretrained(saved).eval()
        model.eval()
        ids = torch.tensor([[1, 5, 42, 300, 7]])
        with torch.no_grad():
            torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)
    print(f"floor training: 2 steps, losses {[round(loss, 4) for loss in losses]}, saved and reloaded: OK")


if __name__ == "__main__":
    main()
