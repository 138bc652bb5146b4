"""[`JointRetrievalConfig`]: the training arguments of [`JointRetrievalTrainer`] (TRL's `SFTConfig` plus the retriever's
optimiser settings and the micro-batching of the no-gradient NLL pass)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig


@dataclass
class JointRetrievalConfig(SFTConfig):
    r"""Configuration of [`JointRetrievalTrainer`]: everything of [`~trl.SFTConfig`], plus the retriever's optimiser
    settings and the micro-batching of the no-gradient NLL pass.

    The retrieval knobs that describe the model (N, S, K, τ, β, λ, loss, scoring, templates) live in
    [`JMLRConfig`], so that a saved model carries them.
    """

    retriever_learning_rate: float = field(
        default=1e-5,
        metadata={
            "help": "Learning rate of the retriever's parameters. The generator uses `learning_rate`. The paper "
            "trains the retriever at 3e-6 with Llama-2 at 2e-5."
        },
    )
    retriever_weight_decay: float | None = field(
        default=None,
        metadata={"help": "Weight decay of the retriever's parameters; `None` uses `weight_decay`."},
    )
    nll_micro_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Sequences per forward in the no-gradient NLL pass over the B x S sampled documents. `None` "
            "runs them all in one forward; lower it when memory is short."
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: the joint collator needs the raw `question`/`candidates` columns."},
    )
    dataset_kwargs: dict[str, Any] | None = field(
        default_factory=lambda: {"skip_prepare_dataset": True},
        metadata={"help": "Kept with `skip_prepare_dataset=True`: the joint collator tokenises on the fly."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.remove_unused_columns:
            raise ValueError("JointRetrievalConfig needs remove_unused_columns=False (the collator reads raw columns)")
        if not (self.dataset_kwargs or {}).get("skip_prepare_dataset", False):
            raise ValueError("JointRetrievalConfig needs dataset_kwargs={'skip_prepare_dataset': True}")


__all__ = ["JointRetrievalConfig"]
