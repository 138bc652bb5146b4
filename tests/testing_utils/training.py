"""Building blocks of trainer tests: tiny training arguments, a LoRA config, a trainer on the toy rows."""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig

from jmlr_hf.trainer import JointRetrievalConfig, JointRetrievalTrainer

from .models import TOY_ROWS


def make_args(tmp_path: Path, **overrides) -> JointRetrievalConfig:
    kwargs = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "retriever_learning_rate": 1e-4,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "bf16": False,
        "use_cpu": True,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "gradient_checkpointing": False,
        "seed": 0,
    }
    kwargs.update(overrides)
    return JointRetrievalConfig(**kwargs)


def lora_config() -> LoraConfig:
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def make_trainer(model, args, generator_tokenizer, retriever_tokenizer, rows=None, **kwargs):
    return JointRetrievalTrainer(
        model,
        args,
        train_dataset=Dataset.from_list(rows if rows is not None else TOY_ROWS * 4),
        processing_class=generator_tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        **kwargs,
    )


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def transform_packed_nlls(monkeypatch, trainer_module, transform) -> None:
    """Make the trainer's NLL pass return `transform(nll)` where it packs (`packed=True`), the real NLLs where it
    pads: a stand-in for a model whose packed NLLs differ from its padded ones (one that ignores packing, or rounds)."""
    original = trainer_module.answer_nll

    def stand_in(*args, **kwargs):
        nll = original(*args, **kwargs)
        return transform(nll) if kwargs.get("packed") else nll

    monkeypatch.setattr(trainer_module, "answer_nll", stand_in)
