"""Searching the document index: exact (flat) vs IVF, IVF-PQ (optionally with OPQ) and HNSW at a few search
settings, for queries/s, bytes per vector and recall@10.

    python benchmarks/index_search.py [--vectors 1000000] [--dim 128] [--centres 4096] [--spread 1.0]
                                      [--corpus-documents N] [--queries 1000] [--repeats 3]
                                      [--kinds ivf ivfpq hnsw [opq]] [--pq-m M ...] [--opq-pq-m M ...]
                                      [--nprobe 1 4 16 64] [--ef-search 16 32 64 128 256] [--hnsw-m 16]
                                      [--nlist N] [--ivf-train-per-list 64]
                                      [--flat-index FOLDER --medquad-questions] [--json PATH]

Up to three data sets, one after the other, in one process:

1. the demo corpus (PubMedQA-L abstract sections, then 500 MedQuAD distractor passages: 3,858 passages, or the first
   `--corpus-documents`; 0 skips it) encoded by the demo's retriever all-MiniLM-L6-v2 (384-d, documents cut at 128
   tokens), searched by the PubMedQA test questions encoded as queries (64 tokens), at most `--queries` of them;
2. `--vectors` synthetic vectors (0 skips them) of `--dim` dimensions (128: ColBERTv2's) drawn, seeded, from a
   Gaussian mixture: `--centres` unit centres, each vector its centre plus isotropic noise of norm about `--spread`,
   then L2-normalised; `--queries` held-out queries drawn from the same mixture;
3. with `--flat-index FOLDER`: the vectors of a saved flat index (copied out with `reconstruct_n`; e.g. the MedQuAD
   passages' 29,578 MiniLM vectors of the joint-training experiment), searched by `--queries` MedQuAD questions
   (a seeded sample of the distinct questions of `corpus/medquad/medquad_answers.jsonl.gz` in the data folder,
   whose answers are the passages) encoded as queries by the demo's retriever, which must be the index's (its
   fingerprint is checked).

`--kinds` picks the approximate indexes: `ivf`, `ivfpq` (one index per `--pq-m`, default the project's pq_m, a
quarter of the dimension; skipped on a set of fewer than 256 vectors, which cannot train 8-bit codes), `opq` (OPQ +
IVF-PQ, one per `--opq-pq-m`; not by default: its rotation trains for minutes on 30k vectors on 2 cores), `hnsw`.

Every index is built by `DocumentIndex.build`, as users build one (its corpus checks included; the vectors, computed
once per data set, reach it through the `encode_fn`, so the build time excludes encoding; the flat row's build time
is about that overhead). Each index is built once; then all the settings are searched interleaved (A B C ... A B C),
`--repeats` rounds after a warm-up, each a batch search of all the queries through `DocumentIndex.search`, top 10.
Per setting: build time, the index's size (bytes of `faiss.serialize_index`, which is about what it holds in memory),
queries/s (median round), its ratio to exact search's (median of the paired per-round ratios), and recall@10 against
the flat index's exact top 10 (by document id; the demo corpus has a few identical passages, whose ties can cost an
approximate index a little recall it does not deserve). Bytes per vector is the serialized size over the vectors:
it includes the inverted lists' ids (8 bytes per vector) and the coarse centroids, so IVF-PQ's is `pq_m` + 8 + a
little, not `pq_m`. It marks the settings that meet the project's target: recall@10
>= 0.95 at >= 20x exact search's queries/s on 1M vectors. `--json PATH` writes the figures.

Two departures from the project's defaults, both for the build time on small machines:

* HNSW uses `--hnsw-m` 16 (the project's default is 32); `DocumentIndex.build` sets efConstruction to max(40, 2M)
  itself (not a parameter), so 40 here;
* the IVF k-means is trained on at most `--ivf-train-per-list` (64) vectors per list; the project samples up to 256
  per list by default, which for 1M vectors at its default nlist (~4,000) is every vector; this is
  `train_points_per_list` of `DocumentIndex.build` (256 restores the project's default, at about 4x the k-means
  time). IVF-PQ's sample is that many per centroid too: 64 x max(nlist, 256).

IVF's and IVF-PQ's nprobe and HNSW's efSearch change between settings through `DocumentIndex.set_search_parameters`.

The synthetic set is a caricature of real embeddings, in ways that favour IVF over HNSW: at 1M vectors the project's
nlist (~4,000) is about the number of mixture components, so each inverted list is about one component and a
query's neighbours are in the list it probes first; within a component the offsets are isotropic noise in all 128
dimensions, the hardest case for a graph. The demo corpus is real but small (3,858 vectors: exact search is cheap).

On this project's 2-core CPU machine, shared with other work (load average ~3), the full default run took 10.5
minutes: 2.3 encoding the demo corpus, 6 building the 1M-vector indexes (IVF 3.3 of them, HNSW 2.6), 2 searching
(exact search: about 24 s for the 1,000 queries on 1M vectors, and four such searches). IVF-PQ (pq_m = 32) adds
about 5 minutes to the 1M set (a 284 s build, measured on one faiss thread of a shared 2-core AMD EPYC).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from datasets import Dataset
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Timing, demo_retriever_model, interleave, machine, paired_ratios  # noqa: E402

from jmlr_hf.retrieval import DocumentIndex  # noqa: E402
from jmlr_hf.retrieval.faiss_kinds import default_pq_m  # noqa: E402

K = 10
TARGET_RECALL, TARGET_SPEEDUP, TARGET_VECTORS = 0.95, 20.0, 1_000_000
DOCUMENT_MAX_LENGTH, QUERY_MAX_LENGTH, ENCODE_BATCH = 128, 64, 64
CHUNK = 65_536  # synthetic vectors drawn per chunk (float32, so memory stays bounded)
BUILD_BATCH = 8_192  # vectors per `encode_fn` call while building from precomputed vectors
PQ_MIN_VECTORS = 256  # 8-bit product quantisation trains 256 centroids per sub-vector


# ---------------------------------------------------------------------------------------------------- data


def mixture_vectors(
    count: int, centres: np.ndarray, spread: float, rng: np.random.Generator, desc: str, progress: bool = True
) -> np.ndarray:
    """`count` L2-normalised draws from the mixture: a uniformly chosen centre plus N(0, spread^2/d) per dimension."""
    dim = centres.shape[1]
    out = np.empty((count, dim), dtype=np.float32)
    scale = np.float32(spread / np.sqrt(dim))
    for start in tqdm(range(0, count, CHUNK), desc=desc, unit="chunk", disable=not progress or count <= CHUNK):
        rows = min(CHUNK, count - start)
        chunk = centres[rng.integers(len(centres), size=rows)]
        chunk += scale * rng.standard_normal((rows, dim), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start : start + rows] = chunk
    return out


def synthetic_set(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.centres, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = mixture_vectors(args.vectors, centres, args.spread, rng, "Drawing vectors")
    queries = mixture_vectors(args.queries, centres, args.spread, np.random.default_rng(args.seed + 1), "Queries")
    return vectors, queries


def demo_corpus_set(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The demo corpus and PubMedQA test questions, encoded by the demo's retriever (as in index_encoding.py)."""
    import torch

    from jmlr_hf.data import load_named_corpus, load_task
    from jmlr_hf.retrieval import document_text, encode_documents_with, encode_queries_with

    model, tokenizer = demo_retriever_model()
    corpus = load_named_corpus("pubmedqa", distractor_passages=500)
    if args.corpus_documents is not None:
        corpus = corpus.select(range(min(args.corpus_documents, len(corpus))))
    texts = [document_text(row) for row in corpus]
    questions = list(load_task("pubmedqa", "test")["question"])[: args.queries]

    def encode_all(encode: Callable[[list[str]], np.ndarray], items: list[str], desc: str) -> np.ndarray:
        # Shortest first (less padding), then back to corpus order.
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        out = None
        for start in tqdm(range(0, len(order), ENCODE_BATCH), desc=desc, unit="batch"):
            rows = order[start : start + ENCODE_BATCH]
            batch = encode([items[i] for i in rows])
            if out is None:
                out = np.empty((len(items), batch.shape[1]), dtype=np.float32)
            out[rows] = batch
        return out

    with torch.inference_mode():
        vectors = encode_all(
            encode_documents_with(model.retriever, tokenizer, max_length=DOCUMENT_MAX_LENGTH), texts, "Encoding corpus"
        )
        queries = encode_all(
            encode_queries_with(model.retriever, tokenizer, max_length=QUERY_MAX_LENGTH), questions, "Encoding queries"
        )
    del model
    gc.collect()
    return vectors, queries


def flat_index_set(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The vectors of a saved flat index (read, never written) and MedQuAD questions encoded by the demo's retriever."""
    import gzip
    import random

    import torch

    from jmlr_hf.data import default_data_dir
    from jmlr_hf.data.corpus import MEDQUAD_FILE
    from jmlr_hf.retrieval import encode_queries_with

    folder = Path(args.flat_index)
    config = json.loads((folder / "index_config.json").read_text())
    if config["kind"] != "flat":
        raise SystemExit(f"--flat-index {folder} is a {config['kind']} index; its vectors are exact only when flat")
    stored = faiss.read_index(str(folder / "index.faiss"))
    vectors = stored.reconstruct_n(0, stored.ntotal)
    del stored
    path = Path(default_data_dir()) / MEDQUAD_FILE
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        questions = sorted({json.loads(line)["question"].strip() for line in handle} - {""})
    questions = random.Random(args.seed).sample(questions, min(args.queries, len(questions)))
    model, tokenizer = demo_retriever_model()
    if model.retriever.weights_fingerprint() != config["fingerprint"]:
        raise SystemExit(
            f"--flat-index {folder} was built by another retriever than the demo's: its queries would not match"
        )
    encode = encode_queries_with(model.retriever, tokenizer, max_length=QUERY_MAX_LENGTH)
    with torch.inference_mode():
        queries = np.concatenate(
            [
                encode(questions[i : i + ENCODE_BATCH])
                for i in tqdm(range(0, len(questions), ENCODE_BATCH), desc="Queries")
            ]
        )
    del model
    gc.collect()
    return vectors, queries


# ---------------------------------------------------------------------------------------------------- indexes


def precomputed(vectors: np.ndarray) -> tuple[Dataset, Callable[[list[str]], np.ndarray]]:
    """A corpus whose document `i` has the text `str(i)`, and an `encode_fn` that returns row `i` of `vectors` for it:
    `DocumentIndex.build` then indexes `vectors` as it would the output of an encoder."""
    documents = Dataset.from_dict({"id": np.arange(len(vectors)), "text": [str(i) for i in range(len(vectors))]})

    def encode(texts: list[str]) -> np.ndarray:
        return vectors[np.fromiter(map(int, texts), dtype=np.int64, count=len(texts))]

    return documents, encode


def build_indexes(vectors: np.ndarray, args: argparse.Namespace) -> dict[str, tuple[DocumentIndex, float]]:
    """Every index of `--kinds`, by name: `flat`, `ivf`, `ivfpq m=M`, `opq m=M`, `hnsw`."""
    documents, encode = precomputed(vectors)
    common = {"batch_size": BUILD_BATCH, "use_gpu": False, "show_progress": False}
    ivf = {"nlist": args.nlist, "nprobe": args.nprobe[0], "train_points_per_list": args.ivf_train_per_list}
    dim = vectors.shape[1]
    builders = {"flat": lambda: DocumentIndex.build(documents, encode, "benchmark", kind="flat", **common)}
    if "ivf" in args.kinds:
        builders["ivf"] = lambda: DocumentIndex.build(documents, encode, "benchmark", kind="ivf", **ivf, **common)
    pq_kinds = [kind for kind in ("ivfpq", "opq") if kind in args.kinds]
    if pq_kinds and len(vectors) < PQ_MIN_VECTORS:
        print(f"(IVF-PQ skipped: {len(vectors)} vectors cannot train 8-bit codes, which need {PQ_MIN_VECTORS})")
        pq_kinds = []
    for kind in pq_kinds:
        for pq_m in dict.fromkeys(args.pq_m if kind == "ivfpq" else args.opq_pq_m):
            pq_m = pq_m or default_pq_m(dim)
            builders[f"{kind} m={pq_m}"] = lambda pq_m=pq_m, opq=kind == "opq": DocumentIndex.build(
                documents, encode, "benchmark", kind="ivfpq", pq_m=pq_m, opq=opq, **ivf, **common
            )
    if "hnsw" in args.kinds:
        builders["hnsw"] = lambda: DocumentIndex.build(
            documents, encode, "benchmark", kind="hnsw", hnsw_m=args.hnsw_m, ef_search=args.ef_search[0], **common
        )
    built = {}
    with tqdm(builders.items(), desc="Building", unit="index") as progress:
        for name, build in progress:
            progress.set_postfix_str(name)
            start = time.perf_counter()
            index = build()
            built[name] = (index, time.perf_counter() - start)
    return built


def settings(built: dict[str, tuple[DocumentIndex, float]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One entry per (index, search setting): its index's name, kind, setting and search parameters."""
    entries = [{"index": "flat", "kind": "flat", "setting": "exact", "params": {}}]
    for name, (index, _) in built.items():
        if index.kind in ("ivf", "ivfpq"):
            nlist = index.config()["nlist"]
            variant = {"ivf": "", "ivfpq": "PQ", "opq": "OPQ+PQ"}[name.split()[0]]
            variant += str(index.config()["pq_m"]) + " " if variant else ""
            for nprobe in dict.fromkeys(min(p, nlist) for p in args.nprobe):  # capped at nlist, as the project does
                setting = f"{variant}nlist={nlist} nprobe={nprobe}"
                entries.append({"index": name, "kind": index.kind, "setting": setting, "params": {"nprobe": nprobe}})
        elif index.kind == "hnsw":
            for ef in dict.fromkeys(args.ef_search):
                setting = f"M={args.hnsw_m} efSearch={ef}"
                entries.append({"index": name, "kind": "hnsw", "setting": setting, "params": {"ef_search": ef}})
    return entries


def searcher(index: DocumentIndex, params: dict[str, int], queries: np.ndarray) -> Callable[[], np.ndarray]:
    def search() -> np.ndarray:
        index.set_search_parameters(**params)
        return index.search(queries, K)[1]

    return search


def with_progress(variants: dict[str, Callable[[], Any]], calls: int, desc: str) -> dict[str, Callable[[], Any]]:
    bar = tqdm(total=calls, desc=desc, unit="search")

    def wrap(fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            result = fn()
            bar.update()
            if bar.n >= calls:
                bar.close()
            return result

        return call

    return {name: wrap(fn) for name, fn in variants.items()}


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(found, exact)]))


def benchmark(name: str, vectors: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"\n== {name}: {len(vectors):,} vectors of {vectors.shape[1]} dimensions, {len(queries):,} queries", flush=True
    )
    built = build_indexes(vectors, args)
    entries = settings(built, args)
    variants = {f"{e['kind']} {e['setting']}": searcher(built[e["index"]][0], e["params"], queries) for e in entries}
    timings: dict[str, Timing] = interleave(
        with_progress(variants, (args.repeats + 1) * len(variants), "Searching"), args.repeats, warmup=1
    )
    exact_timing = timings["flat exact"]
    exact = exact_timing.result
    sizes = {name: faiss.serialize_index(index.faiss_index).nbytes for name, (index, _) in built.items()}
    rows = []
    for entry, (label, timing) in zip(entries, timings.items(), strict=True):
        kind, name = entry["kind"], entry["index"]
        speedups = paired_ratios(exact_timing, timing)
        speedup = float(np.median(speedups))
        recall = recall_at_k(timing.result, exact)
        rows.append(
            {
                **entry,
                "label": label,
                "build_s": built[name][1],
                "index_bytes": sizes[name],
                "bytes_per_vector": sizes[name] / len(vectors),
                "search_s": timing.seconds,
                "search_s_median": timing.median,
                "queries_per_s": len(queries) / timing.median,
                "speedup_vs_exact": speedup,
                "speedup_min": min(speedups),
                "speedup_max": max(speedups),
                f"recall_at_{K}": recall,
                "meets_target": kind != "flat" and recall >= TARGET_RECALL and speedup >= TARGET_SPEEDUP,
            }
        )
    print_table(rows)
    meeting = [row["label"] for row in rows if row["meets_target"]]
    note = "" if len(vectors) >= TARGET_VECTORS else f"; it is set for {TARGET_VECTORS:,} vectors, this set has fewer"
    print(
        f"Settings meeting the target (recall@{K} >= {TARGET_RECALL} at >= {TARGET_SPEEDUP:.0f}x exact queries/s"
        f"{note}): " + (", ".join(meeting) if meeting else "none")
    )
    return {"name": name, "vectors": len(vectors), "dim": int(vectors.shape[1]), "queries": len(queries), "rows": rows}


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'index':<5} {'setting':<32} {'build s':>8} {'size MiB':>9} {'B/vector':>8} {'queries/s':>10} "
        f"{'x exact (min-max)':>20} {'recall@10':>9}  target"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        spread = f"{row['speedup_vs_exact']:.1f}x ({row['speedup_min']:.1f}-{row['speedup_max']:.1f})"
        print(
            f"{row['kind']:<5} {row['setting']:<32} {row['build_s']:>8.1f} {row['index_bytes'] / 2**20:>9.1f} "
            f"{row['bytes_per_vector']:>8.0f} {row['queries_per_s']:>10,.0f} {spread:>20} "
            f"{row[f'recall_at_{K}']:>9.3f}  {'meets' if row['meets_target'] else ''}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=1_000_000, help="synthetic vectors (0: skip the set)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--centres", type=int, default=4096, help="components of the synthetic mixture")
    parser.add_argument("--spread", type=float, default=1.0, help="norm of a vector's offset from its unit centre")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--corpus-documents", type=int, default=None, help="first N passages of the demo corpus (0: skip the set)"
    )
    parser.add_argument("--queries", type=int, default=1000, help="synthetic queries; at most this many questions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--kinds", nargs="+", default=["ivf", "ivfpq", "hnsw"], choices=["ivf", "ivfpq", "opq", "hnsw"],
        help="approximate indexes beside exact search (opq: OPQ + IVF-PQ)",
    )  # fmt: skip
    parser.add_argument("--pq-m", type=int, nargs="+", default=[0], help="IVF-PQ sub-quantisers (0: dim/4)")
    parser.add_argument("--opq-pq-m", type=int, nargs="+", default=[0], help="OPQ + IVF-PQ sub-quantisers (0: dim/4)")
    parser.add_argument(
        "--flat-index", type=Path, default=None, help="a saved flat index folder: its vectors as a set"
    )
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default: the project's, ~4 sqrt(n))")
    parser.add_argument("--ivf-train-per-list", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=0,
        help="faiss threads (0: one per core); 1 on a machine shared with other work, where OpenMP's many short "
        "parallel regions (k-means over 4-d PQ sub-vectors) wait on threads the other work holds",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    faiss.omp_set_num_threads(args.threads or os.cpu_count() or 1)
    started = time.perf_counter()
    print(f"{machine()}; faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    results = []
    if args.corpus_documents != 0:
        vectors, queries = demo_corpus_set(args)
        results.append(benchmark("demo corpus (all-MiniLM-L6-v2)", vectors, queries, args))
        del vectors, queries
    if args.flat_index is not None:
        vectors, queries = flat_index_set(args)
        results.append(benchmark(f"{args.flat_index} (MedQuAD questions)", vectors, queries, args))
        del vectors, queries
    if args.vectors > 0:
        vectors, queries = synthetic_set(args)
        name = f"synthetic mixture ({args.centres} centres, spread {args.spread})"
        results.append(benchmark(name, vectors, queries, args))
        del vectors, queries
    total = time.perf_counter() - started
    print(f"\nTotal time: {total / 60:.1f} min")
    if args.json:
        figures = {
            "machine": machine(),
            "faiss": faiss.__version__,
            "threads": faiss.omp_get_max_threads(),
            "args": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
            "target": {"recall_at_10": TARGET_RECALL, "speedup_vs_exact": TARGET_SPEEDUP, "vectors": TARGET_VECTORS},
            "datasets": results,
            "total_s": total,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
