"""Ranking each question's candidates with the retriever (the retrieval metrics of every evaluation): documents
encoded in one padded forward per batch vs in groups of similar length (`encode_by_length`, what the retriever
does now).

    python benchmarks/candidate_ranking.py [--questions 160] [--repeats 3]

One process, the two variants interleaved (A B A B ...): all-MiniLM-L6-v2 (the demo's retriever, MaxSim scoring)
ranking the 8 candidates of `--questions` PubMedQA-L test questions (their abstract's sections, then the next
questions'; passages of a few to 128 tokens), 16 questions (128 documents) per batch, as `rank_candidates` does.
Prints each variant's median time, the median of the paired ratios, and whether the rankings agree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datasets import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import demo_retriever_model, describe_ratios, interleave, machine, paired_ratios  # noqa: E402
from joint_step import benchmark_rows  # noqa: E402

import jmlr_hf.models.modeling_jmlr as modeling  # noqa: E402
from jmlr_hf.evaluation import rank_candidates  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model, tokenizer = demo_retriever_model()
    dataset = Dataset.from_list(benchmark_rows(args.questions, 8, split="test"))
    grouped = modeling.length_groups

    def one_forward() -> list[list[int]]:
        modeling.length_groups = lambda lengths: [list(range(len(lengths)))]
        try:
            return rank_candidates(model, tokenizer, dataset, show_progress=False)
        finally:
            modeling.length_groups = grouped

    def by_length() -> list[list[int]]:
        return rank_candidates(model, tokenizer, dataset, show_progress=False)

    timings = interleave({"one padded forward": one_forward, "grouped by length": by_length}, args.repeats)
    print(f"machine: {machine()}")
    print(f"{args.questions} questions x 8 candidates, 16 questions per batch")
    for name, timing in timings.items():
        print(f"{name:>20}: {timing.describe()}, {args.questions / timing.median:.1f} questions/s")
    ratios = paired_ratios(timings["one padded forward"], timings["grouped by length"])
    print(f"{'paired ratio':>20}: {describe_ratios(ratios)}")
    same = sum(a == b for a, b in zip(timings["one padded forward"].result, timings["grouped by length"].result))
    print(f"{'same rankings':>20}: {same} of {args.questions}")


if __name__ == "__main__":
    main()
