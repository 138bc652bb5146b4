"""One rank of a multi-process joint-training run on CPU (gloo), for tests/trainer/test_multiprocess.py.

    accelerate launch --multi_gpu --num_processes 2 tests/testing_utils/ddp_worker.py OUT_DIR [--retrieval_loss_weight 0]
        [--num_context_documents 0] [--tie_nlls_on_rank 1] [--gradient_checkpointing] [--peft] [--refresh_every 1]
        [--gradient_accumulation_steps 2 --nonfinite_loss skip_step --nan_at_micro_batch 2 --nan_on_rank 0]
        [--output_dir_per_rank] [--integer_ids] [--index_refresh]

Every rank builds the same tiny random JMLR model (same seed), trains a few steps on the toy rows with the
`JointRetrievalTrainer`, and writes `OUT_DIR/rank{r}.pt`: its final trainable weights, the documents it sampled at
each step, and its logged metrics. The test compares the ranks.

With `--index_refresh` the candidates come from the recipe's own code (`jmlr_hf.scripts.train`): the initial index
(`build_or_load_index`), the prepared questions sent to the other ranks (`share_prepared_splits`) and the
`--refresh_index_steps` refresh (`candidate_refresh`), over a 15-passage corpus in `<output dir>/index`; every rank
records how many corpus rows its retriever encoded.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `tests.testing_utils`

from jmlr_hf import JMLRForCausalLM, JointRetrievalTrainer  # noqa: E402
from jmlr_hf.trainer import CandidateRefreshCallback  # noqa: E402
from jmlr_hf.trainer import joint_retrieval_trainer as trainer_module  # noqa: E402
from jmlr_hf.utils.demo_models import minilm_path, smollm2_path  # noqa: E402
from tests.testing_utils.models import RECIPE_CORPUS, TOY_ROWS, tiny_config  # noqa: E402
from tests.testing_utils.training import make_args  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--retrieval_loss_weight", type=float, default=1.0)
    parser.add_argument("--num_context_documents", type=int, default=2)
    parser.add_argument("--tie_nlls_on_rank", type=int, default=None)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--peft", action="store_true")
    parser.add_argument("--max_steps", type=int, default=3)
    parser.add_argument("--refresh_every", type=int, default=None, help="CandidateRefreshCallback every N steps")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--nonfinite_loss", default="error")
    parser.add_argument(
        "--nan_at_micro_batch", type=int, default=None, help="the retrieval loss is NaN at this (1-based) micro-batch"
    )
    parser.add_argument("--nan_on_rank", type=int, default=0, help="... on this rank only")
    parser.add_argument(
        "--output_dir_per_rank",
        action="store_true",
        help="each rank writes under OUT_DIR/rank{r}: nodes that share no filesystem (one node per rank)",
    )
    parser.add_argument("--integer_ids", action="store_true", help="the rows' ids are integers")
    parser.add_argument("--index_refresh", action="store_true", help="the recipe's index, prepared rows and refresh")
    args = parser.parse_args()
    torch.set_num_threads(1)

    generator_tokenizer = AutoTokenizer.from_pretrained(smollm2_path())
    generator_tokenizer.pad_token = generator_tokenizer.eos_token
    retriever_tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    model = JMLRForCausalLM(
        tiny_config(
            generator_tokenizer,
            retriever_tokenizer,
            retrieval_loss_weight=args.retrieval_loss_weight,
            num_context_documents=args.num_context_documents,
        )
    )
    rank_env = int(os.environ.get("RANK", "0"))
    out_dir = Path(args.out_dir) / f"rank{rank_env}" if args.output_dir_per_rank else Path(args.out_dir)
    training_args = make_args(
        out_dir,
        max_steps=args.max_steps,
        retriever_learning_rate=1e-3,
        gradient_checkpointing=args.gradient_checkpointing,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        nonfinite_loss=args.nonfinite_loss,
    )
    rows = [{**row, "id": index} for index, row in enumerate(TOY_ROWS)] if args.integer_ids else TOY_ROWS
    peft_config = None
    if args.peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    callbacks = []
    recipe: dict = {}
    if args.index_refresh:
        callbacks.append(recipe_refresh(model, retriever_tokenizer, rows, out_dir, args.refresh_every, recipe))
    elif args.refresh_every:
        # A stand-in for "rebuild the index, re-retrieve": each question's candidates in the opposite order.
        def refresh(jmlr):
            return {row["id"]: list(reversed(row["candidates"])) for row in rows}

        callbacks.append(CandidateRefreshCallback(refresh, args.refresh_every))
    trainer = JointRetrievalTrainer(
        model,
        training_args,
        callbacks=callbacks,
        train_dataset=Dataset.from_list(rows * 8),
        processing_class=generator_tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        peft_config=peft_config,
    )
    rank = trainer.accelerator.process_index

    sampled: list[list[list[int]]] = []
    original_sample = trainer_module.sample_without_replacement

    def recording_sample(logits, num_samples, generator=None):
        indices = original_sample(logits, num_samples, generator=generator)
        sampled.append(indices.tolist())
        return indices

    trainer_module.sample_without_replacement = recording_sample
    if args.nan_at_micro_batch is not None and args.nan_on_rank == rank:
        real_loss = JointRetrievalTrainer._retrieval_loss
        calls = []

        def nan_once(cfg, sampled_logits, lm_nll, negative_logits):
            calls.append(1)
            loss = real_loss(cfg, sampled_logits, lm_nll, negative_logits)
            return loss * float("nan") if len(calls) == args.nan_at_micro_batch else loss

        JointRetrievalTrainer._retrieval_loss = staticmethod(nan_once)
    if args.tie_nlls_on_rank == rank:
        # Every sampled document gives the same answer NLL: this rank's pairwise agreement is undefined.
        trainer_module.answer_nll = lambda causal_lm, input_ids, *a, **k: torch.ones(input_ids.shape[0])
    initial = {name: param.detach().cpu().clone() for name, param in model.named_parameters() if param.requires_grad}
    trainer.train()

    weights = {name: param.detach().cpu().clone() for name, param in model.named_parameters() if param.requires_grad}
    torch.save(
        {
            "weights": weights,
            "sampled": sampled,
            "overrides": trainer.data_collator.candidate_overrides,
            "log_history": trainer.state.log_history,
            "world": trainer.args.world_size,
            "initial": initial,
            **recipe,
            "index_on_disk": (out_dir / "index" / "index_config.json").exists(),
        },
        os.path.join(args.out_dir, f"rank{rank}.pt"),
    )


def recipe_refresh(
    model, retriever_tokenizer, rows, out_dir: Path, every: int, recipe: dict
) -> CandidateRefreshCallback:
    """The recipe's initial index and prepared rows, and its refresh callback; `recipe` receives what the test checks:
    the corpus rows this rank's retriever encoded, the prepared rows it got, and where it found an index folder."""
    from jmlr_hf.retrieval.sharded import process_group
    from jmlr_hf.scripts.arguments import DataArguments
    from jmlr_hf.scripts.train import build_or_load_index, candidate_refresh, share_prepared_splits

    texts = list(dict.fromkeys([text for row in rows for text in row["candidates"]] + RECIPE_CORPUS))
    passages = [{"id": f"p{i}", "text": text} for i, text in enumerate(texts + ["The thyroid makes thyroxine."])]
    assert len(passages) == 15  # odd: the ranks' shares differ by one row

    encoded: list[int] = []
    real_encode = model.retriever.encode_dense_texts

    def counting_encode(texts, *encode_args, is_query=False, **kwargs):
        if not is_query:
            encoded.append(len(texts))
        return real_encode(texts, *encode_args, is_query=is_query, **kwargs)

    model.retriever.encode_dense_texts = counting_encode
    data_args = DataArguments(index_kind="flat")
    index_dir = str(out_dir / "index")
    questions = Dataset.from_list(rows)
    questions = questions.add_column("candidate_ids", [[f"x{i}" for i in range(4)] for _ in rows])
    questions = questions.add_column("candidate_scores", [[0.0] * 4 for _ in rows])

    def corpus():
        return Dataset.from_list(passages)

    index = build_or_load_index(model, retriever_tokenizer, corpus, data_args, index_dir)
    recipe["initial_encoded"] = sum(encoded)
    recipe["initial_index"] = type(index).__name__
    prepared_dir = out_dir / "prepared"

    def prepare() -> None:  # the recipe pre-retrieves here; the rows themselves are what the ranks must share
        for split in ("train", "eval"):
            questions.save_to_disk(str(prepared_dir / split))

    prepared = share_prepared_splits(process_group(), prepare, str(prepared_dir))
    recipe["prepared"] = {split: data.to_list() for split, data in prepared.items()}
    recipe["prepared_on_disk"] = prepared_dir.exists()
    recipe["encoded"] = encoded
    refresh = candidate_refresh(retriever_tokenizer, corpus, data_args, index_dir, questions, 4, 32)
    return CandidateRefreshCallback(refresh, every, refresh_on_every_process=True)


if __name__ == "__main__":
    main()
