"""Likelihood evaluation (`jmlr evaluate --mode likelihood`): one question per forward (as the harness did) vs many
questions per forward (`batched_choice_nll`, what it does now), in float32 and in bfloat16 (`--dtype bfloat16`).

    python benchmarks/evaluation.py [--questions 64] [--batch-size 16] [--repeats 3] [--documents 2]

One process, the three variants interleaved (A B C A B C ...): SmolLM2-135M-Instruct (the demo's generator)
answering `--questions` MMLU-Med questions (option letters) with `--documents` MedQuAD passages of at most 128 tokens
before each question, as the harness builds the prompts for a top-2 retrieval. Prints questions/s of each variant,
the medians of the paired ratios against one question per forward, and how often each gives the same predictions
(and how close the NLLs are). bfloat16 pays on GPUs and on CPUs with AMX (`amx_bf16` in /proc/cpuinfo); on other
CPUs it is emulated and slow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import describe_ratios, interleave, machine, paired_ratios  # noqa: E402

from jmlr_hf.data import load_named_corpus, load_task  # noqa: E402
from jmlr_hf.evaluation import EvaluationModel  # noqa: E402
from jmlr_hf.evaluation.qa import batched_choice_nll, choice_nll  # noqa: E402
from jmlr_hf.models import OPTION_LETTERS, JMLRConfig, build_prompt, truncate_to_tokens  # noqa: E402
from jmlr_hf.utils.demo_models import smollm2_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--documents", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = JMLRConfig(max_document_length=128)
    model, bf16_model = (
        EvaluationModel.from_causal_lm(
            AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval(), tokenizer, config
        )
        for dtype in (torch.float32, torch.bfloat16)
    )
    questions = load_task("mmlu", None).shuffle(seed=0).select(range(args.questions))
    passages = load_named_corpus("medquad")["text"] if args.documents else []
    prompts, choices = [], []
    for i, row in enumerate(questions):
        documents = [
            truncate_to_tokens(tokenizer, passages[(i * args.documents + j) * 7 % len(passages)], 128)
            for j in range(args.documents)
        ]
        prompts.append(build_prompt(config, row["question"], documents, row["options"]))
        choices.append(list(OPTION_LETTERS[: len(row["options"])]))

    def one_at_a_time() -> list[list[float]]:
        return [choice_nll(model, tokenizer, p, c, max_length=config.max_length) for p, c in zip(prompts, choices)]

    def batched(model: EvaluationModel):
        return lambda: batched_choice_nll(model, tokenizer, prompts, choices, config.max_length, args.batch_size)

    variants = {
        "one question per forward": one_at_a_time,
        "batched": batched(model),
        "batched, bfloat16": batched(bf16_model),
    }
    with torch.no_grad():
        timings = interleave(variants, args.repeats)
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    print(f"machine: {machine()}")
    print(
        f"{args.questions} MMLU-Med questions, {args.documents} documents each, prompts of {min(lengths)}-"
        f"{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f}); batch size {args.batch_size}"
    )
    reference = timings["one question per forward"]
    for name, timing in timings.items():
        print(f"{name:>26}: {timing.describe()}, {args.questions / timing.median:.2f} questions/s")
    for name in ("batched", "batched, bfloat16"):
        ratios = paired_ratios(reference, timings[name])
        same = sum(
            min(range(len(a)), key=a.__getitem__) == min(range(len(b)), key=b.__getitem__)
            for a, b in zip(reference.result, timings[name].result, strict=True)
        )
        difference = max(
            abs(x - y)
            for a, b in zip(reference.result, timings[name].result, strict=True)
            for x, y in zip(a, b, strict=True)
        )
        print(f"{'paired ratio':>26}: one question per forward / {name} {describe_ratios(ratios)}")
        print(f"{'same predictions':>26}: {same} of {args.questions}; largest NLL difference {difference:.2e}")


if __name__ == "__main__":
    main()
