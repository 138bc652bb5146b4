"""Building a flat index of the MedQuAD passages in one process vs several, each encoding its share of the corpus
(`jmlr_hf.retrieval.sharded`).

    OMP_NUM_THREADS=1 python benchmarks/sharded_index_build.py --documents 3000 --output /tmp/one
    OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 benchmarks/sharded_index_build.py \\
        --documents 3000 --output /tmp/two --compare /tmp/one

The retriever is all-MiniLM-L6-v2, loaded as `jmlr index` loads it (its config's document length), batch size 64;
`--documents` keeps the first passages of the corpus (0: all 29.6k). The time is the build alone (corpus and model
already loaded in every process, which start it together after a barrier): encoding, sending the vectors to the main
process and assembling the faiss index. One run per call: on a machine shared with other jobs, read it as such.
`--compare` checks the new index against another build's folder (same documents, vectors within float rounding).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's jmlr_hf

from jmlr_hf.cli.commands import load_retriever  # noqa: E402
from jmlr_hf.data import load_named_corpus  # noqa: E402
from jmlr_hf.retrieval import DocumentIndex  # noqa: E402
from jmlr_hf.retrieval.sharded import process_group  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=3000, help="the first N passages (0: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", help="save the index here (main process)")
    parser.add_argument("--compare", help="an index folder built from the same passages to compare with")
    args = parser.parse_args()

    group = process_group()
    processes = 1 if group is None else group.world_size
    retriever, tokenizer, config = load_retriever("all-minilm-l6-v2")
    corpus = load_named_corpus("medquad")
    if args.documents:
        corpus = corpus.select(range(min(args.documents, len(corpus))))
    if group is not None:
        import torch.distributed as dist

        dist.barrier()
    start = time.perf_counter()
    index = DocumentIndex.from_retriever(
        corpus,
        retriever,
        tokenizer,
        max_length=config.max_document_length,
        batch_size=args.batch_size,
        show_progress=False,
    )
    seconds = time.perf_counter() - start
    if index is None:
        return
    print(
        f"{processes} process(es): {len(index)} passages, max_length {config.max_document_length}, "
        f"built in {seconds:.1f} s ({len(index) / seconds:.1f} passages/s)"
    )
    if args.output:
        index.save(args.output)
    if args.compare:
        other = DocumentIndex.load(args.compare)
        assert other.documents["id"] == index.documents["id"], "the two indexes hold other passages"
        difference = np.abs(
            other.faiss_index.reconstruct_n(0, len(other)) - index.faiss_index.reconstruct_n(0, len(index))
        ).max()
        print(f"largest difference from {args.compare}'s vectors: {difference:.2e}")


if __name__ == "__main__":
    main()
