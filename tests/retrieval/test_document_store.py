"""The document store of an index folder (format 2, `documents.arrow`): written in record batches, memory-mapped when
opened (opening does not read the text), rows gathered one by one; folders of format 1 (`documents.parquet`) still
load and retrieve the same hits; a damaged store is a `CorruptIndexError` naming the file."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jmlr_hf.models.retrieval_jmlr import CONFIG_FILE, DOCUMENTS_FILE, CorruptIndexError, JMLRIndex, index_file_names
from jmlr_hf.retrieval import document_store
from jmlr_hf.retrieval.index import DocumentIndex
from tests.testing_utils.index_formats import as_format_1

pytest.importorskip("faiss")

WORDS = ["insulin", "pancreas", "aspirin", "heart", "kidney", "liver", "bone", "nerve", "lung", "skin"]
QUERIES = ["insulin and the pancreas", "aspirin for the heart", "the kidney and the liver", "bone and nerve"]


def encode(texts: list[str]) -> np.ndarray:
    """Bag of words with a small text-dependent offset, so that ties are rare and hits deterministic."""
    return np.array(
        [[text.lower().count(word) + 1e-3 * (zlib.crc32(text.encode()) % 97) for word in WORDS] for text in texts],
        "float32",
    )


def corpus(n: int, filler: int = 0) -> list[dict]:
    """`n` documents (`filler` extra characters of text each, to make the text dominate the file)."""
    return [
        {
            "id": f"d{i}",
            "title": "" if i % 3 else f"Title {i}",
            "text": f"{WORDS[i % 10]} {WORDS[(i * 7) % 10]} note {i}. " + "x" * filler,
            "section": i % 4,
        }
        for i in range(n)
    ]


@pytest.fixture
def saved(tmp_path, monkeypatch) -> tuple[DocumentIndex, Path]:
    """An index of 60 documents saved in record batches of 7 rows (so that gathers cross batches)."""
    monkeypatch.setattr(document_store, "ROWS_PER_BATCH", 7)
    index = DocumentIndex.build(corpus(60), encode, "bow", show_progress=False)
    return index, index.save(tmp_path / "index")


def test_a_format_2_folder_round_trips_and_both_readers_return_the_same_hits(saved):
    built, folder = saved
    assert sorted(path.name for path in folder.iterdir()) == sorted(index_file_names())
    assert json.loads((folder / CONFIG_FILE).read_text())["format_version"] == 2
    stream = pa.ipc.open_stream(pa.memory_map(str(folder / DOCUMENTS_FILE)))
    assert [batch.num_rows for batch in stream] == [7] * 8 + [4]

    loaded = DocumentIndex.load(folder, expected_fingerprint="bow")
    assert loaded.documents.features == built.documents.features
    assert loaded.documents.to_list() == built.documents.to_list() == corpus(60)
    expected = built.retrieve(QUERIES, encode, k=9, show_progress=False)
    assert loaded.retrieve(QUERIES, encode, k=9, show_progress=False) == expected
    assert JMLRIndex.load(folder).retrieve(QUERIES, encode, k=9) == expected  # the remote code's reader
    # Rows in any order, repeated, across record batches: what a search asks of the store.
    assert loaded.documents[[59, 0, 13, 0, 14]]["id"] == ["d59", "d0", "d13", "d0", "d14"]


def test_a_format_1_folder_still_loads_retrieves_the_same_hits_and_is_saved_as_format_2(saved, tmp_path):
    built, folder = saved
    expected = built.retrieve(QUERIES, encode, k=9, show_progress=False)
    old = as_format_1(folder)

    loaded = DocumentIndex.load(old, expected_fingerprint="bow")
    assert loaded.documents.to_list() == built.documents.to_list()
    assert loaded.retrieve(QUERIES, encode, k=9, show_progress=False) == expected
    assert JMLRIndex.load(old).retrieve(QUERIES, encode, k=9) == expected
    resaved = loaded.save(tmp_path / "resaved")
    assert sorted(path.name for path in resaved.iterdir()) == sorted(index_file_names(2))
    assert DocumentIndex.load(resaved).retrieve(QUERIES, encode, k=9, show_progress=False) == expected


_POOLS: list[pa.MemoryPool] = []


@contextmanager
def arrow_pool() -> Iterator[pa.MemoryPool]:
    """A fresh Arrow memory pool as the default one, so that its `max_memory()` is the peak of what Arrow allocated
    inside the block, freed or not (`pyarrow.Table.take` concatenates a column, then frees it)."""
    previous = pa.default_memory_pool()
    pool = pa.proxy_memory_pool(previous)
    _POOLS.append(pool)  # buffers allocated in it may outlive the block, and free through it
    pa.set_memory_pool(pool)
    try:
        yield pool
    finally:
        pa.set_memory_pool(previous)


def test_opening_maps_the_store_instead_of_reading_its_text(tmp_path, monkeypatch):
    """Arrow allocates nothing when the store is opened, nor beyond the hits' rows when it is searched (in a store
    of several record batches, which `pyarrow.Table.take` would concatenate); a format-1 folder of the same documents
    allocates their whole text (so the measure is one that can fail)."""
    monkeypatch.setattr(document_store, "ROWS_PER_BATCH", 50)
    index = DocumentIndex.build(corpus(400, filler=5_000), encode, "bow", show_progress=False)
    folder = index.save(tmp_path / "index")
    text_bytes = 400 * 5_000
    del index

    with arrow_pool() as pool:
        loaded = DocumentIndex.load(folder)
        remote = JMLRIndex.load(folder)
        opened = pool.max_memory()
        hits = loaded.retrieve(QUERIES, encode, k=5, show_progress=False)
        assert remote.retrieve(QUERIES, encode, k=5) == hits
        searched = pool.max_memory()
    assert opened < text_bytes / 100, f"opening allocated {opened} bytes for {text_bytes} bytes of text"
    assert searched < text_bytes / 20, f"searching allocated {searched} bytes for {text_bytes} bytes of text"

    old = as_format_1(folder)
    with arrow_pool() as pool:
        read_whole = DocumentIndex.load(old)
        assert pool.max_memory() > text_bytes
    assert read_whole.retrieve(QUERIES, encode, k=5, show_progress=False) == hits


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "is not a readable Arrow IPC stream document store"),
        (lambda data: b"not an arrow stream at all" + data[40:], "is not a readable Arrow IPC stream document store"),
    ],
    ids=["truncated", "overwritten"],
)
def test_a_damaged_store_is_a_corrupt_index_naming_the_file(saved, damage, message):
    _, folder = saved
    path = folder / DOCUMENTS_FILE
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptIndexError, match=re.escape(str(path))):
        DocumentIndex.load(folder)  # the checksum
    for load in (DocumentIndex.load, JMLRIndex.load):  # without it, the reader itself
        with pytest.raises(CorruptIndexError, match=re.escape(str(path)) + ".*" + message):
            load(folder, verify_checksums=False)


def test_a_store_cut_at_a_batch_boundary_is_caught_by_its_row_count(saved):
    _, folder = saved
    path = folder / DOCUMENTS_FILE
    with pa.ipc.open_stream(pa.memory_map(str(path))) as stream:
        first = next(iter(stream))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, first.schema) as writer:
        writer.write_batch(first)
    path.write_bytes(sink.getvalue().to_pybytes())
    with pytest.raises(CorruptIndexError, match=f"{DOCUMENTS_FILE} has 7 rows"):
        DocumentIndex.load(folder, verify_checksums=False)


def test_offsets_that_point_outside_their_buffer_are_a_corrupt_index_not_a_crash(saved):
    """A well-formed stream whose text offsets run past the text (checksums not verified): refused at open."""
    _, folder = saved
    path = folder / DOCUMENTS_FILE
    with pa.memory_map(str(path)) as source:
        base = source.read_buffer(source.size()).address
        source.seek(0)
        table = pa.ipc.open_stream(source).read_all()
        offsets = table.column("text").chunk(0).buffers()[1]
        position = offsets.address - base + 7 * 4  # the 8th (last) int32 offset of the first batch's 7 texts
        del table, offsets
    data = bytearray(path.read_bytes())
    data[position : position + 4] = (2**30).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    for load in (DocumentIndex.load, JMLRIndex.load):
        with pytest.raises(CorruptIndexError, match=re.escape(str(path))):
            load(folder, verify_checksums=False)
