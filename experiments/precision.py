"""Does bf16 autocast keep the LLM's ranking of the candidates? Before using it for the frozen LLM's NLLs.

The retriever-only arm and the headroom scan learn from (or measure) the order of each question's single-document
answer NLLs. Computing them under `torch.autocast(dtype=torch.bfloat16)` is several times faster on GPUs and on CPUs
with AMX, but rounds the logits; if near-ties flip, the retriever would learn another order. This measures, on the
experiment's prepared validation questions and the base models, per question: the top-1 agreement (the same best
candidate), the pairwise agreement of the two orders over all N(N-1)/2 pairs, the largest NLL difference, and the
wall-clock time of each precision (interleaved question by question, so a busy machine slows both alike).

    python -m experiments.precision --config experiments/configs/joint-medquad.yaml --precision_limit 24

writes `precision.{json,md}` to the experiment's output_dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from jmlr_hf.evaluation import single_document_nlls
from jmlr_hf.utils.atomic import write_text
from jmlr_hf.utils.demo_models import resolve_model_path

from .headroom import candidate_agreement
from .jmlr_vs_rag import ExperimentArguments, build_arm_model, prepared_validation


def compare_precisions(model, tokenizer, rows, *, truncate_documents: bool = True, show_progress: bool = True) -> dict:
    """Per question, the single-document NLLs in float32 and under bf16 autocast, and how their orders agree."""
    model.eval()
    per_question = []
    seconds = {"float32": 0.0, "bf16_autocast": 0.0}
    for row in tqdm(rows, desc="float32 vs bf16", unit="question", disable=not show_progress):
        nlls = {}
        for name, context in (
            ("float32", contextlib.nullcontext()),
            ("bf16_autocast", torch.autocast("cpu", dtype=torch.bfloat16)),
        ):
            start = time.perf_counter()
            with context:
                nlls[name] = single_document_nlls(model, tokenizer, row, truncate_documents)
            seconds[name] += time.perf_counter() - start
        full, low = nlls["float32"], nlls["bf16_autocast"]
        per_question.append(
            {
                "id": row["id"],
                "top1_same": float(
                    min(range(len(full)), key=full.__getitem__) == min(range(len(low)), key=low.__getitem__)
                ),
                # The bf16 NLLs as "scores" (negated: lower NLL = better) against the float32 order.
                "pairwise_agreement": candidate_agreement([-v for v in low], full),
                "max_abs_difference": max(abs(a - b) for a, b in zip(full, low, strict=True)),
                "float32": full,
                "bf16_autocast": low,
            }
        )
    agreements = [q["pairwise_agreement"] for q in per_question if q["pairwise_agreement"] == q["pairwise_agreement"]]
    summary = {
        "questions": len(per_question),
        "candidates_per_question": len(rows[0]["candidates"]) if len(rows) else 0,
        "top1_same": statistics.fmean(q["top1_same"] for q in per_question),
        "pairwise_agreement": statistics.fmean(agreements) if agreements else float("nan"),
        "max_abs_difference": max(q["max_abs_difference"] for q in per_question),
        "mean_abs_difference": statistics.fmean(
            abs(a - b) for q in per_question for a, b in zip(q["float32"], q["bf16_autocast"], strict=True)
        ),
        "seconds_float32": round(seconds["float32"], 1),
        "seconds_bf16_autocast": round(seconds["bf16_autocast"], 1),
        "bf16_speedup": seconds["float32"] / seconds["bf16_autocast"] if seconds["bf16_autocast"] else float("nan"),
    }
    return {"summary": summary, "per_question": per_question}


def precision_table(summary: dict[str, Any]) -> str:
    rows = [
        ("questions x candidates", f"{summary['questions']} x {summary['candidates_per_question']}"),
        ("same best candidate (top-1)", f"{summary['top1_same']:.3f}"),
        ("pairwise agreement of the two orders", f"{summary['pairwise_agreement']:.3f}"),
        ("mean / max abs NLL difference (nats/token)",
         f"{summary['mean_abs_difference']:.4f} / {summary['max_abs_difference']:.4f}"),
        ("seconds float32 / bf16 autocast",
         f"{summary['seconds_float32']} / {summary['seconds_bf16_autocast']} ({summary['bf16_speedup']:.2f}x)"),
    ]  # fmt: skip
    return "\n".join(["| measure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows])


@dataclass
class PrecisionArguments:
    precision_limit: int = field(default=24, metadata={"help": "The first N validation questions."})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from trl import TrlParser

    args, precision_args = TrlParser((ExperimentArguments, PrecisionArguments)).parse_args_and_config(args=argv)
    rows = prepared_validation(args)
    rows = rows.select(range(min(precision_args.precision_limit, len(rows))))
    model = build_arm_model(args, "rag", "none")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.generator))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    result = compare_precisions(model, tokenizer, rows, truncate_documents=args.eval_truncate_documents)
    result["settings"] = {"task": args.task, "generator": args.generator, "threads": torch.get_num_threads()}
    write_text(os.path.join(args.output_dir, "precision.json"), json.dumps(result, indent=2))
    write_text(os.path.join(args.output_dir, "precision.md"), precision_table(result["summary"]) + "\n")
    print(precision_table(result["summary"]))
    return result


if __name__ == "__main__":
    main()
