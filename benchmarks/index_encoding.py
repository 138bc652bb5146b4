"""Building a document index: documents encoded in corpus order vs shortest first within windows (what
`DocumentIndex.build` does) vs the bare encoder forward on the same batches (the floor).

    python benchmarks/index_encoding.py [--documents 1000] [--repeats 3]

One process, the three variants interleaved (A B C A B C ...): all-MiniLM-L6-v2 (the demo's retriever) encoding the
first `--documents` passages of the demo's corpus (PubMedQA-L abstract sections, then MedQuAD passages), batch size
64, documents cut at 128 tokens as in the demo. The bare forward is the tokenizer and `AutoModel` forward alone, on
the batches `build` makes (shortest first within windows), without pooling, normalisation, the index or the corpus
checks: what `build` adds on top of it is its overhead. Prints each variant's median time and spread, the medians
of the paired ratios, and whether each document's vector is found at its own row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import demo_retriever_model  # noqa: E402

from jmlr_hf.data import load_named_corpus  # noqa: E402
from jmlr_hf.retrieval import DocumentIndex, document_text, encode_documents_with  # noqa: E402

BATCH_SIZE, MAX_LENGTH = 64, 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model, tokenizer = demo_retriever_model()
    encode = encode_documents_with(model.retriever, tokenizer, max_length=MAX_LENGTH)
    corpus = load_named_corpus("pubmedqa", distractor_passages=500)
    corpus = corpus.select(range(min(args.documents, len(corpus))))
    texts = [document_text(row) for row in corpus]

    def in_corpus_order() -> np.ndarray:
        return np.concatenate([encode(texts[i : i + BATCH_SIZE]) for i in range(0, len(texts), BATCH_SIZE)])

    def build() -> DocumentIndex:
        return DocumentIndex.build(corpus, encode, "benchmark", batch_size=BATCH_SIZE, show_progress=False)

    window = BATCH_SIZE * 32  # DocumentIndex.build's sorting window (32 batches)
    order = [
        i
        for start in range(0, len(texts), window)
        for i in sorted(range(start, min(start + window, len(texts))), key=lambda i: len(texts[i]))
    ]
    encoder = model.retriever.encoder

    @torch.no_grad()
    def bare_forward() -> None:
        for start in range(0, len(order), BATCH_SIZE):
            batch = tokenizer(
                [texts[i] for i in order[start : start + BATCH_SIZE]],
                max_length=MAX_LENGTH,
                truncation=True,
                padding=True,
                return_tensors="pt",
            )
            encoder(**batch)

    variants = {"corpus order": in_corpus_order, "shortest first (build)": build, "bare forward": bare_forward}
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
    for numerator, denominator in (
        ("corpus order", "shortest first (build)"),
        ("shortest first (build)", "bare forward"),
    ):
        ratios = [a / b for a, b in zip(times[numerator], times[denominator], strict=True)]
        print(
            f"{'paired ratio':>24}: {numerator} / {denominator} median {statistics.median(ratios):.2f}x "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
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
