"""One process of a 2-process index build on CPU (gloo), for tests/retrieval/test_sharded_build.py.

    accelerate launch --multi_gpu --num_processes 2 tests/testing_utils/sharded_build_worker.py OUT_DIR {memory,stream}

Every process builds the same corpora with `DocumentIndex` under the launcher (each encodes its share); the main
process then builds them again alone (`distributed=False`) and saves both, `OUT_DIR/<case>/{sharded,single}`, for the
test to compare. Each process writes `OUT_DIR/rank{r}.json`: the rows its encoder saw per case, what its shared build
returned, and the errors of the failure cases (a corpus that differs between the processes, an encoder that fails on
one process), which must reach every process rather than leave one waiting.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from datasets import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: this checkout's jmlr_hf

from jmlr_hf.retrieval import DocumentIndex  # noqa: E402
from jmlr_hf.retrieval.sharded import close_process_group, process_group  # noqa: E402

DIM = 16
encoded: Counter[str] = Counter()


def encoder(case: str, fail_on_rank: int | None = None, rank: int = 0):
    """A deterministic encoder (each text's vector depends on the text alone, not on its batch) that counts the rows
    it encodes under `case`."""

    def encode(texts: list[str]) -> np.ndarray:
        if fail_on_rank == rank:
            raise RuntimeError("the encoder broke on this process")
        encoded[case] += len(texts)
        seeds = [int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") for text in texts]
        return np.stack([np.random.default_rng(seed).standard_normal(DIM) for seed in seeds]).astype(np.float32)

    return encode


def corpus(n: int) -> list[dict]:
    return [{"id": f"d{i}", "title": f"Topic {i % 7}" if i % 3 else None, "text": f"passage {i}"} for i in range(n)]


def main() -> None:
    out_dir, scenario = Path(sys.argv[1]), sys.argv[2]
    group = process_group()
    assert group is not None and group.world_size == 2
    rank = group.rank
    report: dict = {"returned": {}, "errors": {}}
    ivf = {"kind": "ivf", "nlist": 4, "train_points_per_list": 39}  # k-means trains on a sample of 156 rows

    def both(case: str, build) -> None:
        """`build(encode, distributed)` shared by the processes, then by the main process alone."""
        shared = build(encoder(case), None)
        report["returned"][case] = type(shared).__name__
        if rank == 0:
            shared.save(out_dir / case / "sharded")
            single = build(encoder(case + "/single"), False)
            single.save(out_dir / case / "single")

    if scenario == "memory":
        for n, options in ((201, {"kind": "flat"}), (201, ivf), (1, {"kind": "flat"}), (2, {"kind": "flat"})):
            case = f"{options['kind']}-{n}"
            rows = Dataset.from_list(corpus(n))
            both(case, lambda encode, distributed, rows=rows, options=options: DocumentIndex.build(
                rows, encode, "fp", batch_size=8, show_progress=False, distributed=distributed, **options
            ))  # fmt: skip
        try:  # process 1 passes other documents: both processes refuse before encoding anything
            DocumentIndex.build(corpus(10 + rank), encoder("mismatch"), "fp", show_progress=False, distributed=None)
        except ValueError as err:
            report["errors"]["mismatch"] = str(err)
        try:  # the encoder fails on process 1: process 0 learns it instead of waiting for vectors that never come
            DocumentIndex.build(
                corpus(10), encoder("broken", fail_on_rank=1, rank=rank), "fp", show_progress=False, distributed=None
            )
        except RuntimeError as err:
            report["errors"]["broken"] = str(err)
    else:
        for n, options in ((205, {"kind": "flat"}), (205, {"kind": "ivf", "nlist": 2}), (7, {"kind": "flat"})):
            case = f"stream-{options['kind']}-{n}"
            rows = corpus(n)
            folders = {None: out_dir / f"rank{rank}" / case, False: out_dir / case / "single"}

            def build(encode, distributed, rows=rows, options=options, folders=folders):
                stream = Dataset.from_list(rows).to_iterable_dataset(num_shards=3)
                return DocumentIndex.build_streaming(
                    stream, encode, "fp", folders[distributed], chunk_size=30, batch_size=8, show_progress=False,
                    distributed=distributed, train_points_per_list=39, **options,
                )  # fmt: skip

            shared = build(encoder(case), None)
            report["returned"][case] = type(shared).__name__
            if rank == 0:
                build(encoder(case + "/single"), False)
    report["encoded"] = dict(encoded)
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report, indent=1))
    close_process_group(group)


if __name__ == "__main__":
    main()
