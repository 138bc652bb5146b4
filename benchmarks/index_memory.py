"""Opening a large index: the memory a streamed build holds, the memory opening the index adds, and query latency,
for the memory-mapped document store (index format 2, `documents.arrow`) beside format 1's parquet store, read whole.

    python benchmarks/index_memory.py [--passages 1000000] [--words 60] [--dim 384] [--queries 1000] [--k 10]
                                      [--chunk-size 10000] [--query-batch 64] [--build one-process]
                                      [--workdir DIR] [--keep] [--json PATH]

Each step runs in a fresh child process (this script again, with a private stage argument), so that one step's
memory cannot hide in another's:

1. **build**: `DocumentIndex.build_streaming` indexes `--passages` generated passages read from a generator, one
   `--chunk-size` chunk at a time, into a flat index folder. The passages are PubMed-like in shape only: an id, a
   title of 3 to 8 words and a text of about `--words` words drawn (seeded, Zipf-like) from a 4,096-word vocabulary.
   The encoder is a cheap deterministic stand-in, a signed hashing bag of words projected to `--dim` dimensions
   (MiniLM's 384 by default): the point is memory and I/O, not the encoder, whose cost and memory are the same
   whatever the store (`benchmarks/index_encoding.py` measures real encoders). Reported: wall time, passages/s, and
   the child's peak resident memory (`getrusage`'s `ru_maxrss`) beside its resident memory before the build.
2. The format-1 copy of the folder (parquet store, `index.faiss` hard-linked, config rewritten as format 1 wrote
   it), made here, in the parent, batch by batch.
3. **open** (one child per format): resident memory (VmRSS, and its anonymous and file-backed parts, RssAnon and
   RssFile) before and after `DocumentIndex.load` (checksums verified, the default), and Arrow's allocations. Then
   the document file is dropped from the page cache (`posix_fadvise(DONTNEED)`: the checksum pass had just read it)
   and `--queries` gathers of `--k` random rows each are timed, one by one, as `retrieve` gathers its hits
   (`documents[rows]`): the store's cold latency, its pages read from disk. Then `retrieve` end to end, timed, for
   the `--queries` generated questions (encode, search, gather; `--query-batch` queries per call, top `--k`),
   wall clock and this process's CPU time (which other jobs on a shared machine do not inflate); then
   the hits it returned gathered again, one query at a time (warm). Last, the resident memory after all of it.

The faiss index is the same file for both formats; a flat index of 1M x 384 float32 vectors is 1.5 GB, held in
memory by both, so the difference between the two rows is the document store. On a flat index the search itself
dominates a query's time (a scan of every vector); the gather columns are the store's own share. Resident memory
counts a mapped file's pages once they are read, as file-backed (RssFile): pages shared with the page cache, which
the kernel drops under memory pressure, unlike the anonymous memory (RssAnon) a table read whole occupies.

`--build` names the way the index is built (the `BUILDS` table below: one process today). A multi-process, sharded
build adds an entry there with the same signature, run by its launcher, and a row to the table printed.

On this project's 2-core CPU machine, shared (load average 4 to 7), with OMP_NUM_THREADS=1, `--passages 1000000`
took 9 minutes wall clock (the build 2, each open stage 3, nearly all of it the 2 x 1,000 flat searches over 1M
vectors) and 2 GB of disk (1.5 GB of it the faiss index); `--passages 100000` took 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

RESULT = "RESULT "
VOCABULARY_SIZE = 4_096
GENERATION_CHUNK = 10_000  # passages drawn per numpy call


# ---------------------------------------------------------------------------------------------------- data


def vocabulary() -> list[str]:
    """4,096 pronounceable pseudo-words of two or three syllables (seeded), longest ~9 letters."""
    rng = np.random.default_rng(1)
    onsets, vowels, codas = list("bcdfghklmnprstvz") + ["ch", "th", "st"], list("aeiou") + ["ia", "eo"], list("nrslx")
    words: dict[str, None] = {}
    while len(words) < VOCABULARY_SIZE:
        syllables = rng.integers(2, 4)
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables)) + rng.choice(codas + [""])
        words[word] = None
    return list(words)


def zipf_probabilities(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()


def passages(n: int, words: int, seed: int = 0) -> Iterator[dict[str, str]]:
    """`n` passages, generated as they are read (the corpus is never held): `id`, `title`, `text` of
    `words` +- 25% words."""
    vocab = np.array(vocabulary(), dtype=object)
    probabilities = zipf_probabilities(len(vocab))
    rng = np.random.default_rng(seed)
    for start in range(0, n, GENERATION_CHUNK):
        size = min(GENERATION_CHUNK, n - start)
        text_lengths = rng.integers(words * 3 // 4, words * 5 // 4 + 1, size)
        title_lengths = rng.integers(3, 9, size)
        drawn = vocab[rng.choice(len(vocab), size=int(text_lengths.sum() + title_lengths.sum()), p=probabilities)]
        position = 0
        for i in range(size):
            title = drawn[position : position + title_lengths[i]]
            position += title_lengths[i]
            text = drawn[position : position + text_lengths[i]]
            position += text_lengths[i]
            yield {"id": f"p{start + i:09d}", "title": " ".join(title).capitalize(), "text": " ".join(text) + "."}


def queries(n: int, seed: int = 7) -> list[str]:
    """`n` questions of 6 to 14 words from the same vocabulary."""
    vocab = np.array(vocabulary(), dtype=object)
    rng = np.random.default_rng(seed)
    probabilities = zipf_probabilities(len(vocab))
    return [
        " ".join(vocab[rng.choice(len(vocab), size=int(rng.integers(6, 15)), p=probabilities)]) + "?" for _ in range(n)
    ]


class HashingEncoder:
    """A signed hashing bag of words in `dim` dimensions: token -> (crc32 mod dim, sign from another bit of it).
    Deterministic, cheap (a dict look-up per token once the vocabulary is seen), not a model."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._codes = _TokenCodes(dim)

    def __call__(self, texts: list[str]) -> np.ndarray:
        codes: list[int] = []
        lengths = []
        for text in texts:
            tokens = text.lower().replace(".", " ").replace("?", " ").split()
            codes.extend(map(self._codes.__getitem__, tokens))
            lengths.append(len(tokens))
        signed = np.asarray(codes, dtype=np.int64)
        rows = np.repeat(np.arange(len(texts)), lengths)
        flat = np.bincount(
            rows * self.dim + np.abs(signed) - 1, weights=np.sign(signed), minlength=len(texts) * self.dim
        )
        return flat.reshape(len(texts), self.dim).astype(np.float32)


class _TokenCodes(dict):
    """token -> signed (bucket + 1), computed on first sight."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def __missing__(self, token: str) -> int:
        crc = zlib.crc32(token.encode("utf-8"))
        code = self[token] = (crc % self.dim + 1) * (1 if (crc >> 16) & 1 else -1)
        return code


# ---------------------------------------------------------------------------------------------------- memory


def memory_status() -> dict[str, int]:
    """This process's resident memory in bytes: total, anonymous (heap, the process's own) and file-backed (mapped
    files' pages in memory: shared with the page cache, dropped under memory pressure, not the process's own)."""
    fields = {"VmRSS": "rss", "RssAnon": "rss_anon", "RssFile": "rss_file", "VmHWM": "rss_peak"}
    status = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in fields:
                status[fields[name]] = int(value.split()[0]) * 1024
    return status


def peak_rss() -> int:
    """The process's peak resident memory so far, in bytes (`ru_maxrss` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to drop the file's clean pages from the page cache (those no process has mapped)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------- stages


def build_one_process(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """The streamed build in this process: what `jmlr index` does with a streamed corpus."""
    from jmlr_hf.retrieval import DocumentIndex

    index = DocumentIndex.build_streaming(
        passages(args.passages, args.words),
        HashingEncoder(args.dim),
        f"hashing-bow-{args.dim}",
        directory,
        chunk_size=args.chunk_size,
        batch_size=args.chunk_size,  # one encode_fn call per chunk: the encoder is vectorised over a batch
        show_progress=False,
    )
    return {"num_documents": len(index)}


# How the index is built: name -> function(args, directory) run in the build's child process. A sharded build over
# several processes goes here (its function launching them, or run by their launcher), reported the same way.
BUILDS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {"one-process": build_one_process}


def stage_build(args: argparse.Namespace) -> dict[str, Any]:
    import faiss  # noqa: F401  (imported before the baseline, as the build imports it)

    import jmlr_hf.retrieval  # noqa: F401

    before = memory_status()["rss"]
    start = time.perf_counter()
    figures = BUILDS[args.build](args, Path(args.directory))
    seconds = time.perf_counter() - start
    return {**figures, "seconds": seconds, "rss_before": before, "rss_peak": peak_rss()}


def stage_open(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow as pa

    from jmlr_hf.models.retrieval_jmlr import DOCUMENTS_FILES
    from jmlr_hf.retrieval import DocumentIndex

    encoder = HashingEncoder(args.dim)
    texts = queries(args.queries)
    encoder(texts)  # the encoder's token table, built before the baseline
    folder = Path(args.directory)
    config = json.loads((folder / "index_config.json").read_text())
    documents_file = folder / DOCUMENTS_FILES[config["format_version"]]

    before, arrow_before = memory_status(), pa.total_allocated_bytes()
    start = time.perf_counter()
    index = DocumentIndex.load(folder)
    open_seconds = time.perf_counter() - start
    after_open, arrow_after = memory_status(), pa.total_allocated_bytes()
    drop_from_page_cache(documents_file)  # the checksum pass has just read it

    def gather_each(row_lists: list[list[int]]) -> tuple[list[float], list[list[str]]]:
        times, found = [], []
        for rows in row_lists:
            start = time.perf_counter()
            found.append(index.documents[rows]["id"])
            times.append(time.perf_counter() - start)
        return times, found

    # Cold: rows nobody has read since the page cache was dropped (random ones: how a row is found does not matter
    # to the store), before any search has touched the store.
    rng = np.random.default_rng(3)
    random_rows = [rng.choice(len(index), size=args.k, replace=False).tolist() for _ in texts]
    cold, found = gather_each(random_rows)
    assert found == [[f"p{row:09d}" for row in rows] for rows in random_rows]
    start, start_cpu = time.perf_counter(), time.process_time()
    retrieved = index.retrieve(texts, encoder, args.k, batch_size=args.query_batch, show_progress=False)
    retrieve_seconds, retrieve_cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    # Warm: the hits just retrieved, gathered again (a generated passage's id is "p" and its row).
    hit_ids = [[hit["id"] for hit in hits] for hits in retrieved]
    warm, found = gather_each([[int(doc_id[1:]) for doc_id in ids] for ids in hit_ids])
    assert found == hit_ids
    return {
        "format_version": config["format_version"],
        "documents_file_bytes": documents_file.stat().st_size,
        "faiss_file_bytes": (folder / "index.faiss").stat().st_size,
        "open_seconds": open_seconds,
        "opened": {key: after_open[key] - before[key] for key in ("rss", "rss_anon", "rss_file")},
        "arrow_allocated_by_open": arrow_after - arrow_before,
        "retrieve_ms_per_query": 1e3 * retrieve_seconds / len(texts),
        "retrieve_cpu_ms_per_query": 1e3 * retrieve_cpu_seconds / len(texts),
        "gather_ms": {"cold": percentiles(cold), "warm": percentiles(warm)},
        "after_queries": {key: memory_status()[key] - before[key] for key in ("rss", "rss_anon", "rss_file")},
        "rss_peak": peak_rss(),
    }


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median": 1e3 * statistics.median(ordered),
        "p95": 1e3 * ordered[int(0.95 * (len(ordered) - 1))],
        "max": 1e3 * ordered[-1],
        "mean": 1e3 * statistics.fmean(ordered),
    }


STAGES = {"build": stage_build, "open": stage_open}


def run_stage(stage: str, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """Run `stage` in a fresh Python process (this script) and return the figures it printed."""
    arguments = {**vars(args), "directory": str(directory)}
    done = subprocess.run(
        [sys.executable, __file__, "--stage", stage, "--stage-arguments", json.dumps(arguments, default=str)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {stage} stage failed (exit status {done.returncode}); its output:\n{done.stdout}")
    return json.loads(done.stdout.rsplit(RESULT, 1)[1])


def format_1_copy(folder: Path, destination: Path) -> Path:
    """`folder` (format 2) as format 1 saved it: the same rows in `documents.parquet` (written batch by batch from
    the mapped stream), the same `index.faiss` (hard-linked), the config with format_version 1 and its checksums."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jmlr_hf.models.retrieval_jmlr import (
        CONFIG_FILE,
        DOCUMENTS_FILE,
        INDEX_FILE,
        PARQUET_DOCUMENTS_FILE,
        file_sha256,
        index_config_sha256,
    )

    destination.mkdir()
    try:
        os.link(folder / INDEX_FILE, destination / INDEX_FILE)
    except OSError:
        shutil.copyfile(folder / INDEX_FILE, destination / INDEX_FILE)
    with pa.memory_map(str(folder / DOCUMENTS_FILE)) as source:
        stream = pa.ipc.open_stream(source)
        with pq.ParquetWriter(destination / PARQUET_DOCUMENTS_FILE, stream.schema) as writer:
            for batch in stream:
                writer.write_batch(batch)
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["format_version"] = 1
    config["sha256"] = {name: file_sha256(destination / name) for name in (INDEX_FILE, PARQUET_DOCUMENTS_FILE)}
    config["config_sha256"] = index_config_sha256(config)
    (destination / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return destination


# ---------------------------------------------------------------------------------------------------- report


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def report(args: argparse.Namespace, build: dict[str, Any], opened: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{args.passages:,} passages of ~{args.words} words, {args.dim}-d flat index, {args.queries:,} queries, "
        f"k = {args.k}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} cores"
    )
    print(
        f"build ({args.build}): {build['seconds']:.0f} s ({args.passages / build['seconds']:,.0f} passages/s), "
        f"peak RSS {mib(build['rss_peak'])} (RSS before the build {mib(build['rss_before'])}; "
        f"index.faiss {mib(opened['2']['faiss_file_bytes'])})"
    )
    header = (
        "| store | file | open (checksums verified) | RSS added by opening: all (anon / file-backed) | Arrow "
        "allocated | retrieve, per query: wall (CPU) | gather of k rows, cold: median, p95, mean | warm: median, p95, mean | RSS added "
        "after the queries (anon / file-backed) |"
    )
    print(header)
    print("|" + "---|" * (header.count(" | ") + 1))
    for version, name in (("2", "documents.arrow, mapped"), ("1", "documents.parquet, read whole")):
        row = opened[version]
        added, after = row["opened"], row["after_queries"]
        cold, warm = row["gather_ms"]["cold"], row["gather_ms"]["warm"]
        print(
            f"| {name} | {mib(row['documents_file_bytes'])} | {row['open_seconds']:.1f} s | {mib(added['rss'])} "
            f"({mib(added['rss_anon'])} / {mib(added['rss_file'])}) | {mib(row['arrow_allocated_by_open'])} "
            f"| {row['retrieve_ms_per_query']:.1f} ({row['retrieve_cpu_ms_per_query']:.1f}) ms | {cold['median']:.2f}, {cold['p95']:.2f}, {cold['mean']:.2f} ms "
            f"| {warm['median']:.2f}, {warm['p95']:.2f}, {warm['mean']:.2f} ms "
            f"| {mib(after['rss'])} ({mib(after['rss_anon'])} / {mib(after['rss_file'])}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--words", type=int, default=60, help="mean words per passage")
    parser.add_argument("--dim", type=int, default=384, help="dimension of the hashing encoder's vectors")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--chunk-size", type=int, default=10_000, help="passages per streamed chunk")
    parser.add_argument("--query-batch", type=int, default=64, help="queries per retrieve call")
    parser.add_argument("--build", choices=sorted(BUILDS), default="one-process")
    parser.add_argument("--workdir", type=Path, help="where the index folders go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the index folders (default: removed at the end)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--stage-arguments", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        stage_args = argparse.Namespace(**json.loads(args.stage_arguments))
        print(RESULT + json.dumps(STAGES[args.stage](stage_args)), flush=True)
        return
    if args.passages < 1 or args.queries < 1 or args.k < 1:
        parser.error("--passages, --queries and --k must be >= 1")

    workdir = Path(tempfile.mkdtemp(prefix="index-memory-", dir=args.workdir))
    try:
        folder = workdir / "format-2"
        build = run_stage("build", args, folder)
        format_1 = format_1_copy(folder, workdir / "format-1")
        opened = {"2": run_stage("open", args, folder), "1": run_stage("open", args, format_1)}
        report(args, build, opened)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"arguments": {k: str(v) for k, v in vars(args).items()}, "build": build, "open": opened}, indent=2
                )
                + "\n"
            )
    finally:
        if args.keep:
            print(f"index folders kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
