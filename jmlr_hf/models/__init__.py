"""The JMLR model: [`JMLRConfig`] and [`JMLRForCausalLM`] (a causal LM that owns the retriever trained with it).

`configuration_jmlr.py` and `modeling_jmlr.py` are the remote code that `save_pretrained` copies into every
checkpoint: they import only `torch`, `transformers` and each other. `utils.py` holds what needs more (PEFT, saving
and loading whole checkpoints with their tokenizers).
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_jmlr import COLBERT_TOKEN_KEYS, OPTION_LETTERS, JMLRConfig
from .modeling_jmlr import (
    RETRIEVER_TOKENIZER_DIR,
    JMLRAnswer,
    JMLRCausalLMOutput,
    JMLRForCausalLM,
    JMLRIndex,
    JMLRPreTrainedModel,
    JMLRRetriever,
    answer_nll,
    answer_positions,
    answer_targets,
    build_prompt,
    build_target,
    chunked_token_nll,
    colbert_token_ids,
    encode_by_length,
    eval_mode,
    fit_prompt,
    format_options,
    kept_logits,
    left_truncate,
    length_groups,
    maxsim,
    pack_sequences,
    target_token_ids,
    tokenize_for_lm,
    tokenize_for_retriever,
    truncate_to_tokens,
)
from .utils import (
    GENERATOR_ADAPTER_DIR,
    apply_peft_to_generator,
    check_jmlr_checkpoint,
    is_jmlr_checkpoint,
    keep_4bit_layers_differentiable_on_cpu,
    load_jmlr_checkpoint,
    merge_generator_adapter,
    save_model,
)

# With jmlr_hf installed, the Auto classes know the model type without remote code, from the first import of a model
# class (`jmlr_hf` itself imports nothing heavy, see its docstring).
AutoConfig.register("jmlr", JMLRConfig, exist_ok=True)
AutoModel.register(JMLRConfig, JMLRForCausalLM, exist_ok=True)
AutoModelForCausalLM.register(JMLRConfig, JMLRForCausalLM, exist_ok=True)

__all__ = [
    "COLBERT_TOKEN_KEYS",
    "GENERATOR_ADAPTER_DIR",
    "OPTION_LETTERS",
    "RETRIEVER_TOKENIZER_DIR",
    "JMLRAnswer",
    "JMLRCausalLMOutput",
    "JMLRConfig",
    "JMLRForCausalLM",
    "JMLRIndex",
    "JMLRPreTrainedModel",
    "JMLRRetriever",
    "answer_nll",
    "answer_positions",
    "answer_targets",
    "apply_peft_to_generator",
    "build_prompt",
    "build_target",
    "check_jmlr_checkpoint",
    "chunked_token_nll",
    "colbert_token_ids",
    "fit_prompt",
    "encode_by_length",
    "eval_mode",
    "kept_logits",
    "left_truncate",
    "length_groups",
    "pack_sequences",
    "format_options",
    "is_jmlr_checkpoint",
    "keep_4bit_layers_differentiable_on_cpu",
    "load_jmlr_checkpoint",
    "maxsim",
    "merge_generator_adapter",
    "save_model",
    "target_token_ids",
    "tokenize_for_lm",
    "tokenize_for_retriever",
    "truncate_to_tokens",
]
