"""Building a document index: documents encoded in corpus order vs shortest first within windows (what
`DocumentIndex.build` does).

    python benchmarks/index_encoding.py [--documents 1000] [--repeats 3]

One process, the two variants interleaved (A B A B ...): all-MiniLM-L6-v2 (the demo's retriever) encoding the first
`--documents` passages of the demo's corpus (PubMedQA-L abstract sections, then MedQuAD passages), batch size 64,
documents cut at 128 tokens as in the demo. Prints each variant's median time and spread, the median of the paired
ratios, and whether each document's vector is found at its own row.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from transformers import AutoTokenizer

from jmlr_hf.data import load_named_corpus
from jmlr_hf.models import JMLRForCausalLM
from jmlr_hf.retrieval import DocumentIndex, document_text, encode_documents_with
from jmlr_hf.utils.demo_models import minilm_path, smollm2_path

BATCH_SIZE, MAX_LENGTH = 64, 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = JMLRForCausalLM.from_components(
        str(smollm2_path()), str(minilm_path()), num_candidates=8, num_sampled=4, num_context_documents=2
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    encode = encode_documents_with(model.retriever, tokenizer, max_length=MAX_LENGTH)
    corpus = load_named_corpus("pubmedqa", distractor_passages=500)
    corpus = corpus.select(range(min(args.documents, len(corpus))))
    texts = [document_text(row) for row in corpus]

    def in_corpus_order() -> np.ndarray:
        return np.concatenate([encode(texts[i : i + BATCH_SIZE]) for i in range(0, len(texts), BATCH_SIZE)])

    def build() -> DocumentIndex:
        return DocumentIndex.build(corpus, encode, "benchmark", batch_size=BATCH_SIZE, show_progress=False)

    variants = {"corpus order": in_corpus_order, "shortest first (build)": build}
    times: dict[str, list[float]] = {name: [] for name in variants}
    results = {}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)

    lengths = [len(tokenizer(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]) for text in texts]
    print(f"{len(texts)} documents, {np.mean(lengths):.0f} tokens on average (min {min(lengths)}, max {max(lengths)})")
    for name, values in times.items():
        print(f"{name:>24}: median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})")
    ratios = [a / b for a, b in zip(times["corpus order"], times["shortest first (build)"], strict=True)]
    print(
        f"{'paired ratio':>24}: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
    )
    # Each document's corpus-order vector finds its own row first in the built index: same vectors, same places.
    scores, rows = results["shortest first (build)"].search(results["corpus order"], k=1)
    own = float(np.mean(rows[:, 0] == np.arange(len(texts))))
    print(
        f"{'own row ranked first':>24}: {own:.3f} of the documents, top score at least {scores[:, 0].min():.6f} "
        "(a top score of 1 at another row is an identical passage)"
    )


if __name__ == "__main__":
    main()
