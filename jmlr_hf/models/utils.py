"""Helpers around a `JMLRForCausalLM` that are not remote code: PEFT on the generator, saving and loading checkpoints.

As in TRL's `trl/models/utils.py`, the PEFT helpers sit beside the model they wrap; the trainer, the Hub module and
the scripts import them from here (never the reverse).

A saved JMLR model is a folder (or Hub repository) with the model's `config.json` and weights, the remote code
(`configuration_jmlr.py`, `modeling_jmlr.py`), the generator's tokenizer at its root and the retriever's tokenizer in
[`RETRIEVER_TOKENIZER_DIR`]. A generator saved as a LoRA adapter lives in [`GENERATOR_ADAPTER_DIR`], and the config
names its base model (see `JMLRConfig.generator_base_model`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from ..utils.atomic import atomic_directory
from .modeling_jmlr import RETRIEVER_TOKENIZER_DIR, JMLRForCausalLM, check_path_or_hub_id
from .retrieval_jmlr import is_local_path

# A saved JMLR model keeps the generator's tokenizer at its root, the retriever's in `RETRIEVER_TOKENIZER_DIR`
# (defined with the remote code, which loads it), and, when its generator is stored as a LoRA adapter, the adapter in this one.
GENERATOR_ADAPTER_DIR = "generator_adapter"
logger = logging.getLogger(__name__)
GeneratorWeights = Literal["merged", "adapter"]


# --------------------------------------------------------------------------------------------------------------------
# PEFT on the generator
# --------------------------------------------------------------------------------------------------------------------


def apply_peft_to_generator(model: JMLRForCausalLM, peft_config) -> None:
    """Wrap the generator (only) with PEFT. The retriever keeps `requires_grad=True` on all its parameters."""
    from peft import get_peft_model

    model.set_generator(get_peft_model(model.generator, peft_config))
    for param in model.retriever.parameters():
        param.requires_grad_(True)


def keep_4bit_layers_differentiable_on_cpu(model: JMLRForCausalLM) -> int:
    """Turn off bitsandbytes' CPU inference repacking of the generator's 4-bit layers; returns how many it turned off.

    On a CPU with AVX-512 BF16 (Intel Xeon with AMX), a bitsandbytes `Linear4bit` repacks its weight for a faster CPU
    kernel at its first eval-mode forward without gradient — which JMLR's NLL pass is, every step — and from then on
    every forward, the training one included, runs that kernel, which has no backward: the loss still falls through
    the LoRA layers of the top, but no gradient reaches the adapters below a quantised layer, and PyTorch only warns
    ("an autograd kernel was not registered"). Training must keep the differentiable path; a CPU without the
    instructions never repacks, so this changes nothing there (nor on a GPU).
    """
    turned_off = 0
    for module in model.generator.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            turned_off += 1
    return turned_off


def has_generator_adapter(model: JMLRForCausalLM) -> bool:
    """Whether the generator is PEFT-wrapped (it has an adapter that can be saved alone or merged)."""
    return hasattr(model.generator, "peft_config") and hasattr(model.generator, "merge_and_unload")


def merge_generator_adapter(model: JMLRForCausalLM) -> JMLRForCausalLM:
    """Merge a PEFT adapter into the generator's weights, so that the saved model is a plain JMLR checkpoint."""
    from peft import PeftModel

    if isinstance(model.generator, PeftModel):
        model.set_generator(model.generator.merge_and_unload())
    return model


def adapter_base_model(model: JMLRForCausalLM, base_model: str | None = None) -> str:
    """The base generator an adapter applies to: `base_model` if given, else what the PEFT config records."""
    return base_model or next(iter(model.generator.peft_config.values())).base_model_name_or_path


def adapter_base_revision(model: JMLRForCausalLM, base_model: str, base_revision: str | None = None) -> str | None:
    """The revision of `base_model` to record with an adapter: `base_revision` if given; for a Hub id, the commit the
    generator was downloaded at when it was loaded from that id (the Hub cache's), else the repository's current
    commit; `None` for a local folder (nothing to pin).

    Unpinned, a checkpoint would load its adapter onto whatever the base repository holds at load time: a later
    commit to the base (new weights, another tokenizer) would silently change the model.
    """
    if base_revision is not None or not base_model or is_local_path(base_model):
        return base_revision
    from huggingface_hub import HfApi, try_to_load_from_cache

    inner = model.generator.get_base_model() if hasattr(model.generator, "get_base_model") else model.generator
    if getattr(inner.config, "name_or_path", None) == base_model:
        # transformers 5 keeps no commit on the model; the cache's snapshot of the revision it resolved does.
        cached = try_to_load_from_cache(base_model, "config.json")
        if isinstance(cached, str):
            return Path(cached).parent.name

    try:
        return HfApi().model_info(base_model).sha
    except Exception as err:  # offline, or no such repository: save unpinned rather than not at all
        logger.warning(
            "Could not pin the adapter's base model %s to a commit (%s): the checkpoint will load the base's "
            "latest revision; pass base_revision to pin it",
            base_model,
            err,
        )
        return None


# --------------------------------------------------------------------------------------------------------------------
# Saving and loading checkpoints
# --------------------------------------------------------------------------------------------------------------------


def save_model(
    model: JMLRForCausalLM,
    tokenizer,
    retriever_tokenizer,
    directory: str | os.PathLike[str],
    *,
    generator_weights: GeneratorWeights = "merged",
    base_model: str | None = None,
    base_revision: str | None = None,
) -> Path:
    """Save a JMLR model as a self-contained folder (crash-safe: all of it or, after a crash, the old one).

    `generator_weights="merged"` writes full generator weights (a PEFT adapter is merged first). `"adapter"` keeps
    the generator's LoRA adapter in `generator_adapter/` and writes only the retriever to `model.safetensors`; the
    config then names the base model the adapter applies to (`base_model`, default: the adapter's own record of it),
    and `from_pretrained` loads base + adapter; a Hub base is pinned to a commit (`base_revision`, default:
    [`adapter_base_revision`]).
    """
    if generator_weights not in ("merged", "adapter"):
        raise ValueError(f"generator_weights must be 'merged' or 'adapter', got {generator_weights!r}")
    config = model.config
    with atomic_directory(directory) as tmp:
        if generator_weights == "merged":
            if has_generator_adapter(model):
                merge_generator_adapter(model)
            model.save_pretrained(tmp)
        else:
            if not has_generator_adapter(model):
                raise ValueError(
                    "generator_weights='adapter' needs a generator with a PEFT adapter, but this model's generator has "
                    "plain (merged) weights: save it with generator_weights='merged'"
                )
            base = adapter_base_model(model, base_model)
            revision = adapter_base_revision(model, base, base_revision)
            previous = (config.generator_base_model, config.generator_base_revision, config.generator_adapter)
            config.generator_base_model, config.generator_base_revision = base, revision
            config.generator_adapter = GENERATOR_ADAPTER_DIR
            try:
                retriever_state = {f"retriever.{k}": v.contiguous() for k, v in model.retriever.state_dict().items()}
                model.save_pretrained(tmp, state_dict=retriever_state)
                model.generator.save_pretrained(os.path.join(tmp, GENERATOR_ADAPTER_DIR))
            finally:
                config.generator_base_model, config.generator_base_revision, config.generator_adapter = previous
        tokenizer.save_pretrained(tmp)
        retriever_tokenizer.save_pretrained(os.path.join(tmp, RETRIEVER_TOKENIZER_DIR))
    return Path(directory)


def is_jmlr_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether `path` — a local folder or a Hub model id — holds a saved JMLR model (a `config.json` with model type
    `"jmlr"`)."""
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        if is_local_path(path):  # a missing folder: not a Hub id to ask about
            return False
        from transformers.utils import cached_file

        try:
            config_file = cached_file(str(path), "config.json")
        except OSError:  # not a model repository, or unreachable: treated as "not a JMLR model" by the callers
            return False
    with open(config_file, encoding="utf-8") as f:
        return json.load(f).get("model_type") == "jmlr"


def check_jmlr_checkpoint(path: str | os.PathLike[str], **hub_kwargs: Any) -> None:
    """Raise an error that says why `path` cannot be loaded as a JMLR model, when it cannot.

    `is_jmlr_checkpoint` answers yes or no; a user who typed a path or an id needs the reason: the folder does not
    exist (`FileNotFoundError`), the Hub is unreachable and the model is not cached (`OSError`), there is no such
    repository (`OSError`), or it is a model of another kind (`ValueError`).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    path = os.fspath(path)
    check_path_or_hub_id(path, "model")
    config_file = os.path.join(path, "config.json")
    if not os.path.isdir(path):
        download = {
            key: hub_kwargs[key] for key in ("revision", "token", "cache_dir", "local_files_only") if key in hub_kwargs
        }
        # LocalEntryNotFoundError (offline or unreachable, and not cached) is an EntryNotFoundError: caught first.
        try:
            config_file = hf_hub_download(path, "config.json", **download)
        except LocalEntryNotFoundError as err:
            raise OSError(
                f"Cannot load {path}: the Hub is unreachable (offline, HF_HUB_OFFLINE=1, or no network) and the model "
                f"is not in the local Hub cache. Connect once to download it, or download it elsewhere (`jmlr pull "
                f"model {path} --output DIR`) and pass the folder"
            ) from err
        except RepositoryNotFoundError:
            raise OSError(f"There is no model repository {path} on the Hub, or your token cannot see it") from None
        except EntryNotFoundError:
            raise ValueError(f"{path} is not a saved JMLR model: the repository has no config.json") from None
    if not os.path.isfile(config_file):
        raise ValueError(f"{path} is not a saved JMLR model: the folder has no config.json")
    with open(config_file, encoding="utf-8") as f:
        model_type = json.load(f).get("model_type")
    if model_type != "jmlr":
        raise ValueError(
            f"{path} is not a saved JMLR model: its config.json has model_type {model_type!r}, not 'jmlr'"
        )


def load_jmlr_checkpoint(path: str | os.PathLike[str], dtype=None, **hub_kwargs: Any):
    """`(model, tokenizer, retriever_tokenizer)` of a saved JMLR model: a local folder or a Hub model id.

    Raises `FileNotFoundError` for a local path that does not exist, `OSError` when a Hub id cannot be fetched
    (unreachable Hub, unknown repository), `ValueError` for a model that is not a JMLR model.
    """
    import torch

    check_jmlr_checkpoint(path, **hub_kwargs)
    model = JMLRForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, **hub_kwargs)
    tokenizer, retriever_tokenizer = model.load_tokenizers()
    return model, tokenizer, retriever_tokenizer


__all__ = [
    "GENERATOR_ADAPTER_DIR",
    "RETRIEVER_TOKENIZER_DIR",
    "GeneratorWeights",
    "adapter_base_model",
    "adapter_base_revision",
    "apply_peft_to_generator",
    "check_jmlr_checkpoint",
    "has_generator_adapter",
    "is_jmlr_checkpoint",
    "load_jmlr_checkpoint",
    "merge_generator_adapter",
    "save_model",
]
