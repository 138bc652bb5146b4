"""JMLR's joint retriever + LLM training as a TRL trainer: [`JointRetrievalConfig`] + [`JointRetrievalTrainer`] (one
pair per method, as TRL's `SFTConfig` + `SFTTrainer`), the collator that batches the raw rows, and the callback that
measures the retriever on held-out questions while training."""

from .callbacks import LOG_PREFIX, CandidateRefreshCallback, RetrievalRecallCallback
from .joint_retrieval_config import JointRetrievalConfig
from .joint_retrieval_trainer import (
    JointRetrievalCollator,
    JointRetrievalTrainer,
    NonFiniteLossError,
    is_retriever_parameter,
    sample_without_replacement,
    split_in_batch_scores,
)

__all__ = [
    "LOG_PREFIX",
    "CandidateRefreshCallback",
    "JointRetrievalCollator",
    "JointRetrievalConfig",
    "JointRetrievalTrainer",
    "NonFiniteLossError",
    "RetrievalRecallCallback",
    "is_retriever_parameter",
    "sample_without_replacement",
    "split_in_batch_scores",
]
