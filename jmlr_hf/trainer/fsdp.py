"""FSDP2 (`torch.distributed.fsdp.fully_shard`, through accelerate's `fsdp_version: 2`) for the two-part JMLR model.

What is sharded, and why:

* **The generator** is sharded: each decoder layer (its `_no_split_modules`, e.g. `LlamaDecoderLayer`) is its own
  FSDP unit, the embeddings and the LM head another (accelerate's grouping), the rest the root. This is the part
  that does not fit one GPU (a 70B LLM), and every use of it during training goes through the wrapped model, on
  every process, in the same order (the no-gradient NLL pass included), as FSDP's all-gathers need.
* **The retriever is kept whole** on every process (FSDP2's `ignored_params`): it is small (MiniLM 22M, ColBERT's
  BERT 110M parameters: float32 weights + AdamW state ≈ 1.8 GB, beside 70B × 2 bytes / N for the generator's shard),
  and it is used outside the training forward, by one process or with a different amount of work per process:
  encoding the corpus for an index (re)build, pre-retrieving questions, ranking evaluation candidates. A sharded
  retriever would turn each of these into collectives that every process must enter the same number of times; a
  whole one runs anywhere, alone. Its gradients are averaged across processes after the backward of each optimizer
  step's last micro-batch ([`all_reduce_retriever_gradients`]), as DDP would average them.

Saving gathers a full state dict the way accelerate does it (`Accelerator.get_state_dict`: torch's
`get_model_state_dict(full_state_dict=True, cpu_offload=True, broadcast_from_rank0=True)`), to the main process's
CPU memory; FSDP1 is refused (its flat parameters and `use_orig_params` constraints with LoRA's mixed
`requires_grad` are what FSDP2 replaces).
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


def generator_layer_classes(model: nn.Module) -> list[str]:
    """The class names of the generator's decoder layers: its `_no_split_modules` that it instantiates."""
    generator = model.generator
    names = set(getattr(generator, "_no_split_modules", None) or [])
    present = {type(module).__name__ for module in generator.modules()}
    return sorted(name for name in names if name in present)


def configure_fsdp2(plugin, model: nn.Module) -> None:
    """Set accelerate's FSDP plugin for a `JMLRForCausalLM` before `Accelerator.prepare` shards it: the retriever
    ignored (kept whole), the generator's decoder layers as the units of the transformer-based wrap.

    Raises a `ValueError` naming the fix for FSDP1 (`fsdp_version: 1`), for a size-based wrap (it would make units
    of the retriever's layers), for layer classes to wrap that are not the generator's, and for `ignored_modules`
    given as a pattern (the retriever is added to a list of modules).
    """
    from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy, transformer_auto_wrap_policy

    version = getattr(plugin, "fsdp_version", 1)
    if version != 2:
        raise ValueError(
            f"JointRetrievalTrainer trains under FSDP2 only (this run has fsdp_version {version}): set "
            "`fsdp_version: 2` in the accelerate config (see recipes/accelerate_configs/fsdp2.yaml)"
        )
    policy = plugin.auto_wrap_policy
    policy = getattr(policy, "func", policy)
    if policy is size_based_auto_wrap_policy:
        raise ValueError(
            "fsdp_auto_wrap_policy SIZE_BASED_WRAP would shard the retriever's layers, which JointRetrievalTrainer "
            "keeps whole: use TRANSFORMER_BASED_WRAP (the generator's decoder layers)"
        )
    generator_classes = generator_layer_classes(model)
    if policy is transformer_auto_wrap_policy:
        names = plugin.transformer_cls_names_to_wrap
        if isinstance(names, str):  # transformers' `fsdp_config` passes them comma-separated
            names = [name.strip() for name in names.split(",") if name.strip()]
            plugin.transformer_cls_names_to_wrap = names
        if names is None:
            plugin.transformer_cls_names_to_wrap = generator_classes
        else:
            present = {type(module).__name__ for module in model.generator.modules()}
            foreign = [name for name in names if name not in present]
            if foreign:
                raise ValueError(
                    f"fsdp_transformer_layer_cls_to_wrap names {foreign}, which the generator "
                    f"({type(model.generator).__name__}) does not have (the retriever is kept whole under FSDP2): "
                    f"name the generator's decoder layers, {generator_classes}"
                )
    ignored = plugin.ignored_modules
    if isinstance(ignored, str):
        raise ValueError(
            f"fsdp_ignored_modules {ignored!r}: JointRetrievalTrainer ignores the retriever itself; give no pattern"
        )
    ignored = list(ignored or [])
    if not any(module is model.retriever for module in ignored):
        ignored.append(model.retriever)
    plugin.ignored_modules = ignored


def retriever_gradients(model: nn.Module) -> list[torch.Tensor]:
    """The gradients of the retriever's trainable parameters, in a fixed order (the same on every process)."""
    return [param.grad for param in model.retriever.parameters() if param.requires_grad and param.grad is not None]


def all_reduce_retriever_gradients(model: nn.Module, num_processes: int) -> None:
    """Average the whole (FSDP-ignored) retriever's gradients over the processes, as DDP does for its replicas.

    One all-reduce of a flat buffer per dtype. A collective: every process calls it at the same optimizer step, with
    gradients for the same parameters (the same graph runs everywhere); a mismatch fails in the collective, loudly.
    """
    grads = retriever_gradients(model)
    if num_processes <= 1 or not grads:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for grad in grads:
        by_dtype.setdefault(grad.dtype, []).append(grad)
    for group in by_dtype.values():
        flat = torch.cat([grad.reshape(-1) for grad in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(num_processes)
        for grad, reduced in zip(group, flat.split([grad.numel() for grad in group]), strict=True):
            grad.copy_(reduced.view_as(grad))


def load_gathered_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Load a full state dict gathered from an FSDP2 run (`Accelerator.get_state_dict`) into an unsharded model of
    the same structure (the same PEFT adapters applied), every key required: a model built otherwise fails here,
    naming the keys, not later with wrong weights."""
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            "the gathered FSDP2 state dict does not fit the model: missing "
            f"{result.missing_keys[:5]}{'...' if len(result.missing_keys) > 5 else ''}, unexpected "
            f"{result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}"
        )
    return model


__all__ = [
    "all_reduce_retriever_gradients",
    "configure_fsdp2",
    "generator_layer_classes",
    "load_gathered_state_dict",
    "retriever_gradients",
]
