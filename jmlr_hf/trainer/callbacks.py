"""Trainer callbacks for watching the retriever learn during joint training.

The trainer logs what it sees on the *training* batches (losses, retriever/LLM agreement on the sampled documents),
which says little about whether the retriever gets better at finding the right passage. [`RetrievalRecallCallback`]
measures that directly on a small fixed held-out set, every few steps, so a run's log history has recall over steps
next to its losses (and the experiment's training-curve plot can draw it).
"""

from __future__ import annotations

import math
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..evaluation.retrieval import rank_candidates, retrieval_metrics

#: Prefix of the keys this callback adds to the log history (`eval_recall@1`, `eval_evidence@1`).
LOG_PREFIX = "eval_"


class RetrievalRecallCallback(TrainerCallback):
    """Every `every_steps` optimizer steps (and once before the first), rank the pre-retrieved candidates of
    `dataset` with the current retriever and append `eval_recall@1` (and `eval_evidence@1` where the rows have
    evidence labels) to the trainer's log history.

    The candidates are the fixed N pre-retrieved ones, so the numbers are directly comparable with the end-of-run
    `recall@1` / `evidence@1` of [`jmlr_hf.evaluation.evaluate_model`] on the same rows. Scoring runs without
    gradient in eval mode (no dropout), and the model's previous train/eval mode is restored afterwards, so the
    callback does not change training: it consumes no random numbers and touches no parameters.

    Args:
        dataset: held-out rows with `question`, `candidates`, `candidate_ids` and `gold_doc_ids` (and optionally
            `evidence_doc_ids`). Metrics that no row can measure (no gold ids) are not logged.
        retriever_tokenizer: the retriever's tokenizer.
        every_steps: the logging interval in optimizer steps (> 0).
        batch_size: questions per retriever forward.
    """

    def __init__(
        self,
        dataset: Dataset,
        retriever_tokenizer: PreTrainedTokenizerBase,
        every_steps: int,
        batch_size: int = 16,
    ):
        if every_steps <= 0:
            raise ValueError(f"every_steps must be positive, got {every_steps}")
        missing = {"question", "candidates", "candidate_ids", "gold_doc_ids"} - set(dataset.column_names)
        if missing:
            raise ValueError(f"the held-out rows need the columns {sorted(missing)} (pre-retrieved candidates)")
        self.dataset = dataset
        self.retriever_tokenizer = retriever_tokenizer
        self.every_steps = every_steps
        self.batch_size = batch_size

    def measure(self, model: Any) -> dict[str, float]:
        """`recall@1` and `evidence@1` of `model`'s retriever on the held-out rows (NaN where unmeasurable)."""
        model = getattr(model, "module", model)  # a DDP/accelerate wrapper holds the JMLR model as `.module`
        was_training = model.training
        try:
            rankings = rank_candidates(
                model, self.retriever_tokenizer, self.dataset, self.batch_size, show_progress=False
            )
        finally:
            model.train(was_training)
        metrics = retrieval_metrics(self.dataset, rankings, k=1)
        return {key: metrics[key] for key in ("recall@1", "evidence@1")}

    def _log(self, state: TrainerState, model: Any) -> None:
        entry: dict[str, float] = {
            LOG_PREFIX + key: value for key, value in self.measure(model).items() if not math.isnan(value)
        }
        if entry:
            entry["step"] = state.global_step
            state.log_history.append(entry)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        # Step 0: the starting point of the curve (the off-the-shelf retriever).
        if state.global_step == 0 and model is not None:
            self._log(state, model)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ) -> None:
        if model is not None and (state.global_step % self.every_steps == 0 or state.global_step == state.max_steps):
            self._log(state, model)
