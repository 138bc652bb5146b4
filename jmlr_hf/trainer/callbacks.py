"""Trainer callbacks for joint training: watching the retriever learn, and refreshing the candidates it learns from.

The trainer logs what it sees on the *training* batches (losses, retriever/LLM agreement on the sampled documents),
which says little about whether the retriever gets better at finding the right passage. [`RetrievalRecallCallback`]
measures that directly on a small fixed held-out set, every few steps, so a run's log history has recall over steps
next to its losses (and the experiment's training-curve plot can draw it).

[`CandidateRefreshCallback`] re-retrieves the training questions' candidates with the retriever being trained every
few steps (Atlas' index refresh), so that it keeps learning from the documents it would retrieve now.
"""

from __future__ import annotations

import json
import math
import os
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..evaluation.retrieval import llm_preference_metrics, rank_candidates, retrieval_metrics
from ..models import eval_mode
from ..utils.atomic import write_json

#: Prefix of the keys this callback adds to the log history (`eval_recall@1`, `eval_evidence@1`).
LOG_PREFIX = "eval_"


class RetrievalRecallCallback(TrainerCallback):
    """Every `every_steps` optimizer steps (and once before the first), rank the pre-retrieved candidates of
    `dataset` with the current retriever and log `eval_recall@1` (and `eval_evidence@1` where the rows have
    evidence labels) through the trainer, as an entry of their own with its `step`.

    The entry goes through [`JointRetrievalTrainer.log_measurement`], so it reaches the log history *and* every
    callback's `on_log`, among them the `report_to` integrations (W&B, TensorBoard, ...). Transformers gives callbacks
    no trainer: [`JointRetrievalTrainer`] binds itself to this callback when it is passed in `callbacks` or added with
    `add_callback` (`bind_trainer`).

    The candidates are the fixed N pre-retrieved ones, so the numbers are directly comparable with the end-of-run
    `recall@1` / `evidence@1` of [`jmlr_hf.evaluation.evaluate_model`] on the same rows. Scoring runs without
    gradient in eval mode (no dropout), and the model's previous train/eval mode is restored afterwards, so the
    callback does not change training: it consumes no random numbers and touches no parameters.

    With `reference_nlls` (each row's answer NLL with each candidate alone in the prompt, from a reference LLM such
    as the base generator) it also logs `eval_llm_top1_agreement` and `eval_llm_pairwise_agreement`
    ([`jmlr_hf.evaluation.llm_preference_metrics`]): whether the retriever is learning what the LLM finds useful,
    the quantity JMLR's retrieval losses train for, measurable without gold passages.

    Args:
        dataset: held-out rows with `question`, `candidates`, `candidate_ids` and, for recall, `gold_doc_ids` (and
            optionally `evidence_doc_ids`). Metrics that no row can measure (no gold ids) are not logged.
        retriever_tokenizer: the retriever's tokenizer.
        every_steps: the logging interval in optimizer steps (> 0).
        batch_size: questions per retriever forward.
        reference_nlls: per row of `dataset`, the reference NLL of each candidate (same order).
    """

    def __init__(
        self,
        dataset: Dataset,
        retriever_tokenizer: PreTrainedTokenizerBase,
        every_steps: int,
        batch_size: int = 16,
        reference_nlls: Sequence[Sequence[float]] | None = None,
    ):
        if every_steps <= 0:
            raise ValueError(f"every_steps must be positive, got {every_steps}")
        missing = {"question", "candidates", "candidate_ids"} - set(dataset.column_names)
        if missing:
            raise ValueError(f"the held-out rows need the columns {sorted(missing)} (pre-retrieved candidates)")
        if "gold_doc_ids" not in dataset.column_names and reference_nlls is None:
            raise ValueError("nothing to measure: the held-out rows have no gold_doc_ids and no reference_nlls given")
        if reference_nlls is not None:
            sizes = [len(row) for row in dataset["candidates"]]
            if [len(row) for row in reference_nlls] != sizes:
                raise ValueError("reference_nlls needs one NLL per candidate of each held-out row, in the same order")
        self.reference_nlls = reference_nlls
        self._trainer: Callable[[], Any] | None = None
        self.dataset = dataset
        self.retriever_tokenizer = retriever_tokenizer
        self.every_steps = every_steps
        self.batch_size = batch_size

    def measure(self, model: Any) -> dict[str, float]:
        """`recall@1` and `evidence@1` of `model`'s retriever on the held-out rows (NaN where unmeasurable), and the
        LLM-preference agreements when there are reference NLLs."""
        model = getattr(model, "module", model)  # a DDP/accelerate wrapper holds the JMLR model as `.module`
        with eval_mode(model):  # every submodule back in its own mode afterwards
            rankings = rank_candidates(
                model, self.retriever_tokenizer, self.dataset, self.batch_size, show_progress=False
            )
        measured: dict[str, float] = {}
        if "gold_doc_ids" in self.dataset.column_names:
            metrics = retrieval_metrics(self.dataset, rankings, k=1)
            measured.update({key: metrics[key] for key in ("recall@1", "evidence@1")})
        if self.reference_nlls is not None:
            measured.update(llm_preference_metrics(rankings, self.reference_nlls))
        return measured

    def bind_trainer(self, trainer: Any) -> None:
        """Log through `trainer` (its `log_measurement`); [`JointRetrievalTrainer`] calls this itself. Held weakly:
        the trainer owns its callbacks, not the other way round."""
        self._trainer = weakref.ref(trainer)

    def _log(self, state: TrainerState, model: Any) -> None:
        entry: dict[str, float] = {
            LOG_PREFIX + key: value for key, value in self.measure(model).items() if not math.isnan(value)
        }
        if not entry:
            return
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is None:
            raise RuntimeError(
                "RetrievalRecallCallback logs through its trainer (so that report_to receives the figures): pass it "
                "to JointRetrievalTrainer(callbacks=[...]) or trainer.add_callback, which bind it"
            )
        trainer.log_measurement(entry)

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


class CandidateRefreshCallback(TrainerCallback):
    """Every `every_steps` optimizer steps, re-retrieve the training questions' candidates with the current retriever.

    The joint trainer re-scores a fixed list of N pre-retrieved candidates per question; as the retriever trains, the
    documents it would retrieve from the whole corpus drift away from that list. This callback calls `refresh_fn`
    (the main process only, or every process with `refresh_on_every_process`: typically re-encode the corpus,
    rebuild the index, re-retrieve), saves what the main process's returns to
    `<output_dir>/refreshed_candidates/step-<N>.json` (on the main process), sends it to every other process over
    `torch.distributed` (nodes need not share a filesystem), and every process trains on those candidates from the
    next micro-batch on (the collator's `set_candidate_overrides`, by row id, integer ids included), also one the
    dataloader had already collated. A run resumed from a checkpoint reloads, on the main process, the latest refresh
    made at or before its step and sends it to the others the same way, so it continues with the candidates the
    uninterrupted run had, from the same micro-batch on.

    Args:
        refresh_fn: `model -> {row id: [candidate texts]}` for the training rows (at least `num_candidates` each).
        every_steps: the refresh interval in optimizer steps (> 0). No refresh after the last step.
        refresh_on_every_process: call `refresh_fn` on every process, not only the main one, for a refresh whose
            work the processes share (the recipe's: each process re-encodes its share of the corpus, see
            `jmlr_hf.retrieval.sharded`); only the main process's result is used, the others may return `None`.

    The dataloader must run in the training processes (`dataloader_num_workers=0`): worker processes would keep their
    own copy of the collator and never see a refresh. A refresh costs what `refresh_fn` costs, on the main process,
    while the others wait, unless they share the work (`refresh_on_every_process`): on the demo, re-encoding its
    3,858 passages took 88 s and re-retrieving its 500 training questions 3.6 s on 2 CPU cores, in one process.
    """

    def __init__(
        self,
        refresh_fn: Callable[[Any], dict[Any, list[str]] | None],
        every_steps: int,
        *,
        refresh_on_every_process: bool = False,
    ):
        if every_steps <= 0:
            raise ValueError(f"every_steps must be positive, got {every_steps}")
        self.refresh_fn = refresh_fn
        self.every_steps = every_steps
        self.refresh_on_every_process = refresh_on_every_process

    @staticmethod
    def _folder(args: TrainingArguments) -> str:
        return os.path.join(args.output_dir, "refreshed_candidates")

    @staticmethod
    def _collator(train_dataloader: Any):
        collator = getattr(train_dataloader, "collate_fn", None)
        if not hasattr(collator, "set_candidate_overrides"):
            raise TypeError("CandidateRefreshCallback needs the JointRetrievalTrainer's JointRetrievalCollator")
        return collator

    @staticmethod
    def _from_main_process(overrides: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        """The main process's `overrides`, on every process: sent over `torch.distributed` rather than read from
        `output_dir`, which the nodes of a multi-node run need not share. The others wait here for the main
        process's refresh."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return overrides
        message = [overrides]
        dist.broadcast_object_list(message, src=0)
        return message[0]

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs) -> None:
        if args.dataloader_num_workers:
            raise ValueError(
                "CandidateRefreshCallback needs dataloader_num_workers=0: worker processes keep their own copy of the "
                "collator and would never train on refreshed candidates"
            )
        # Resuming: the latest refresh made at or before the step the run continues from, which only the main
        # process wrote.
        overrides = None
        folder = self._folder(args)
        if state.is_world_process_zero and os.path.isdir(folder):
            steps = [int(m.group(1)) for f in os.listdir(folder) if (m := re.fullmatch(r"step-(\d+)\.json", f))]
            earlier = [step for step in steps if step <= state.global_step]
            if earlier:
                with open(os.path.join(folder, f"step-{max(earlier)}.json"), encoding="utf-8") as handle:
                    overrides = json.load(handle)
        overrides = self._from_main_process(overrides)
        if overrides is not None:
            self._collator(train_dataloader).set_candidate_overrides(overrides)

    def on_step_end(self, args, state, control, model=None, train_dataloader=None, **kwargs) -> None:
        if state.global_step % self.every_steps or state.global_step >= state.max_steps:
            return
        overrides = None
        if state.is_world_process_zero or self.refresh_on_every_process:
            refreshed = self.refresh_fn(getattr(model, "module", model))
            if state.is_world_process_zero:
                if refreshed is None:
                    raise ValueError("refresh_fn returned None on the main process: return the refreshed candidates")
                # String keys: what the JSON file keeps, and what the collator looks rows up by.
                overrides = {str(key): list(value) for key, value in refreshed.items()}
                write_json(os.path.join(self._folder(args), f"step-{state.global_step}.json"), overrides)
        self._collator(train_dataloader).set_candidate_overrides(self._from_main_process(overrides))
