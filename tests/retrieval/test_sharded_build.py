"""A `DocumentIndex` built by two processes (`accelerate launch`, gloo on CPU), each encoding its share of the corpus,
is the index one process builds: the saved folders are the same file for file (the configs hold the sha256 of the
faiss index and of the document store), for flat and IVF (same k-means sample, same inverted lists), from memory and
from a stream, for a corpus of an odd size and one where a process has no row. The vectors go through
`torch.distributed`, not files: the streamed build's folder exists only where the main process writes it."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from jmlr_hf.models.retrieval_jmlr import DOCUMENTS_FILE, INDEX_FILE
from jmlr_hf.retrieval.sharded import process_group, shard_bounds
from tests.testing_utils.launch import ROOT, launch_two_processes

WORKER = ROOT / "tests" / "testing_utils" / "sharded_build_worker.py"


def run(out_dir: Path, scenario: str) -> list[dict]:
    launch_two_processes(WORKER, str(out_dir), scenario)
    return [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(2)]


def assert_same_folder(sharded: Path, single: Path) -> dict:
    config = json.loads((sharded / "index_config.json").read_text())
    assert config == json.loads((single / "index_config.json").read_text())  # checksums of both files included
    for name in (INDEX_FILE, DOCUMENTS_FILE):
        assert (sharded / name).read_bytes() == (single / name).read_bytes(), name
    return config


def test_shard_bounds_are_contiguous_blocks_that_differ_by_at_most_one_row():
    for num_rows in (0, 1, 2, 5, 201):
        for world in (1, 2, 3, 8):
            blocks = [shard_bounds(num_rows, world, rank) for rank in range(world)]
            assert blocks[0][0] == 0 and blocks[-1][1] == num_rows
            assert all(blocks[i][1] == blocks[i + 1][0] for i in range(world - 1))
            sizes = [stop - start for start, stop in blocks]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_one_process_builds_alone_and_distributed_true_is_refused_without_a_group():
    assert process_group() is None and process_group(False) is None
    with pytest.raises(RuntimeError, match="needs several processes"):
        process_group(True)


def test_a_two_process_build_from_memory_is_the_one_process_build(tmp_path):
    ranks = run(tmp_path, "memory")
    assert ranks[0]["returned"] == dict.fromkeys(["flat-201", "ivf-201", "flat-1", "flat-2"], "DocumentIndex")
    assert set(ranks[1]["returned"].values()) == {"NoneType"}  # only the main process holds the index
    for case in ranks[0]["returned"]:
        assert_same_folder(tmp_path / case / "sharded", tmp_path / case / "single")
    # Each process encoded its own contiguous block, once: 201 rows = 101 + 100; one row: the main process alone
    # (process 1's block is empty); two rows: one each.
    assert [rank["encoded"].get("flat-201") for rank in ranks] == [101, 100]
    assert [rank["encoded"].get("ivf-201") for rank in ranks] == [101, 100]
    assert [rank["encoded"].get("flat-1") for rank in ranks] == [1, None]
    assert [rank["encoded"].get("flat-2") for rank in ranks] == [1, 1]
    ivf = faiss.read_index(str(tmp_path / "ivf-201" / "sharded" / "index.faiss"))
    sizes = [ivf.invlists.list_size(i) for i in range(ivf.nlist)]
    assert sum(sizes) == 201 and min(sizes) > 0  # k-means on a 156-row sample of the 201: four real lists
    # A failure on one process reaches the other, which raises instead of waiting for it.
    for rank in ranks:
        assert "process 1 indexes another corpus than process 0 (11 rows against 10" in rank["errors"]["mismatch"]
    assert ranks[1]["errors"]["broken"] == "the encoder broke on this process"
    assert ranks[0]["errors"]["broken"].startswith("process 1 failed encoding its 5 rows of the corpus (from row 5)")


def test_a_two_process_build_from_a_stream_is_the_one_process_build(tmp_path):
    ranks = run(tmp_path, "stream")
    for case in ("stream-flat-205", "stream-ivf-205", "stream-flat-7"):
        assert ranks[0]["returned"][case] == "DocumentIndex" and ranks[1]["returned"][case] == "NoneType"
        config = assert_same_folder(tmp_path / "rank0" / case, tmp_path / case / "single")
        assert config["num_documents"] == int(case.rsplit("-", 1)[1])
    assert not (tmp_path / "rank1").exists()  # process 1 wrote nothing: its vectors went over torch.distributed
    # Chunks of 30 rows, every other one per process: 205 rows = chunks 0, 2, 4, 6 (115 rows) + 1, 3, 5 (90 rows);
    # 7 rows are one chunk, the main process's. IVF trained on a sample of the first 3 chunks, from both processes.
    assert [rank["encoded"].get("stream-flat-205") for rank in ranks] == [115, 90]
    assert [rank["encoded"].get("stream-ivf-205") for rank in ranks] == [115, 90]
    assert [rank["encoded"].get("stream-flat-7") for rank in ranks] == [7, None]


@pytest.mark.integration
def test_jmlr_index_under_accelerate_launch_writes_the_one_process_index_once(tmp_path):
    """`accelerate launch --num_processes 2 ... jmlr index`: both processes encode (all-MiniLM-L6-v2), the main
    process alone writes the folder and prints the summary; the index is the one `jmlr index` writes alone, to the
    float rounding of other batch compositions (each process pads its own batches)."""
    from jmlr_hf.cli import main
    from jmlr_hf.retrieval import DocumentIndex

    corpus = tmp_path / "corpus.jsonl"
    rows = [{"id": f"d{i}", "title": f"Topic {i}", "text": f"Passage {i} about organ {i % 4}."} for i in range(7)]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    command = ["index", "--corpus", str(corpus), "--retriever", "all-minilm-l6-v2"]
    run = launch_two_processes(
        ROOT / "tests" / "testing_utils" / "cli_worker.py", *command, "--output", str(tmp_path / "two")
    )
    assert run.stdout.count("Indexed 7") == 1, run.stdout
    main([*command, "--output", str(tmp_path / "one")])
    two, one = DocumentIndex.load(tmp_path / "two"), DocumentIndex.load(tmp_path / "one")
    assert two.documents.to_list() == one.documents.to_list() and two.config() == one.config()
    two_vectors, one_vectors = (index.faiss_index.reconstruct_n(0, 7) for index in (two, one))
    assert np.abs(two_vectors - one_vectors).max() < 1e-5
