"""jmlr_hf: JMLR (Joint Medical LLM and Retrieval Training) for the Hugging Face stack."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_jmlr import JMLRConfig
from .modeling_jmlr import JMLRForCausalLM, JMLRRetriever

__version__ = "0.1.0"

# With jmlr_hf installed, the Auto classes know the model type without remote code.
AutoConfig.register("jmlr", JMLRConfig, exist_ok=True)
AutoModel.register(JMLRConfig, JMLRForCausalLM, exist_ok=True)
AutoModelForCausalLM.register(JMLRConfig, JMLRForCausalLM, exist_ok=True)

__all__ = ["JMLRConfig", "JMLRForCausalLM", "JMLRRetriever", "__version__"]
