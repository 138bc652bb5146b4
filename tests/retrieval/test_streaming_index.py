"""`DocumentIndex.build_streaming`: a corpus streamed chunk by chunk (an `IterableDataset`, as
`load_dataset(..., streaming=True)` gives) is indexed into a folder in bounded memory, and the folder is the index an
in-memory build would have saved."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset, IterableDataset

import jmlr_hf.retrieval.index as index_module
from jmlr_hf.models.retrieval_jmlr import DOCUMENTS_FILE, open_documents
from jmlr_hf.retrieval import DocumentIndex

WORDS = ["insulin", "pancreas", "aspirin", "heart", "kidney", "liver", "bone", "nerve"]


def encode(texts: list[str]) -> np.ndarray:
    """A deterministic bag-of-words encoder: each text's vector does not depend on the batch it is in."""
    return np.array(
        [[text.lower().count(word) + 0.01 * (len(text) % 7) + 1e-3 for word in WORDS] for text in texts], "float32"
    )


def corpus_rows(n: int) -> list[dict]:
    return [
        {
            "id": f"d{i}",
            "title": f"Topic {i % 5}" if i % 3 else "",
            "text": f"Document {i}: the {WORDS[i % len(WORDS)]} and the {WORDS[(i * 3) % len(WORDS)]}.",
            "section": i % 4,
        }
        for i in range(n)
    ]


def streamed(rows: list[dict]) -> IterableDataset:
    return Dataset.from_list(rows).to_iterable_dataset(num_shards=3)


def vectors(index: DocumentIndex) -> np.ndarray:
    return index.faiss_index.reconstruct_n(0, index.faiss_index.ntotal)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_streamed_corpus_larger_than_a_chunk_gives_the_in_memory_index(tmp_path, kind):
    rows = corpus_rows(53)
    chunks = []
    original = index_module._stream_chunks

    def counted(documents, chunk_size):
        for chunk in original(documents, chunk_size):
            chunks.append(len(chunk))
            yield chunk

    index_module._stream_chunks = counted
    try:
        built = DocumentIndex.build_streaming(
            streamed(rows), encode, "bow", tmp_path / "streamed", kind=kind, chunk_size=10, batch_size=4,
            show_progress=False,
        )  # fmt: skip
    finally:
        index_module._stream_chunks = original
    assert chunks == [10, 10, 10, 10, 10, 3]  # read a chunk at a time, never the whole corpus

    reference = DocumentIndex.build(rows, encode, "bow", kind=kind, batch_size=4, show_progress=False)
    reference.save(tmp_path / "in_memory")
    assert np.array_equal(vectors(built), vectors(reference))
    assert built.documents.features == reference.documents.features
    assert built.documents.to_list() == reference.documents.to_list() == rows
    configs = [json.loads((tmp_path / name / "index_config.json").read_text()) for name in ("streamed", "in_memory")]
    checksum_free = [{k: v for k, v in c.items() if k not in ("sha256", "config_sha256")} for c in configs]
    assert checksum_free[0] == checksum_free[1]
    # A flat index is the same bytes (an HNSW graph depends on how the vectors were added: in chunks here); the
    # document stores hold the same table (their record batches may differ).
    if kind == "flat":
        assert configs[0]["sha256"]["index.faiss"] == configs[1]["sha256"]["index.faiss"]
    tables = [open_documents(tmp_path / name / DOCUMENTS_FILE) for name in ("streamed", "in_memory")]
    assert tables[0].equals(tables[1]) and tables[0].schema.metadata == tables[1].schema.metadata
    # What was written is a complete, checked index: it loads, and both find the same documents.
    loaded = DocumentIndex.load(tmp_path / "streamed", expected_fingerprint="bow")
    queries = ["insulin from the pancreas", "aspirin for the heart"]
    if kind == "flat":
        assert loaded.retrieve(queries, encode, k=5) == reference.retrieve(queries, encode, k=5)
    else:  # the same documents and scores, tied ones possibly in another order
        found = [loaded.retrieve(queries, encode, k=len(rows)), reference.retrieve(queries, encode, k=len(rows))]
        a, b = ([sorted((round(hit["score"], 5), hit["id"]) for hit in row) for row in hits] for hits in found)
        assert a == b


def test_ivf_from_a_stream_trains_on_the_first_documents(tmp_path):
    rows = corpus_rows(120)
    built = DocumentIndex.build_streaming(
        streamed(rows), encode, "bow", tmp_path / "ivf", kind="ivf", nlist=2, train_points_per_list=40,
        chunk_size=25, show_progress=False,
    )  # fmt: skip
    assert (built.kind, len(built), built.faiss_index.nlist) == ("ivf", 120, 2)
    assert built.documents["id"] == [row["id"] for row in rows]
    with pytest.raises(ValueError, match="pass nlist"):
        DocumentIndex.build_streaming(streamed(rows), encode, "bow", tmp_path / "x", kind="ivf")


def test_plain_iterables_of_dicts_stream_too(tmp_path):
    rows = corpus_rows(23)
    built = DocumentIndex.build_streaming(
        iter(rows), encode, "bow", tmp_path / "it", chunk_size=7, show_progress=False
    )
    assert built.documents.to_list() == rows


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (corpus_rows(12) + [{**corpus_rows(1)[0], "title": "again"}], r"Duplicate document id 'd0' at rows 0 and 12"),
        (corpus_rows(3) + [{"id": "x", "title": "", "text": "  ", "section": 0}], r"'x' \(row 3\) has an empty text"),
        ([], "empty corpus"),
    ],
)
def test_invalid_streams_are_refused_and_leave_the_folder_as_it_was(tmp_path, rows, message):
    target = tmp_path / "index"
    DocumentIndex.build(corpus_rows(4), encode, "old", show_progress=False).save(target)
    before = {path.name: path.read_bytes() for path in target.iterdir()}
    stream = streamed(rows) if rows else iter([])
    with pytest.raises(ValueError, match=message):
        DocumentIndex.build_streaming(stream, encode, "bow", target, chunk_size=5, show_progress=False)
    assert {path.name: path.read_bytes() for path in target.iterdir()} == before
    assert [path.name for path in tmp_path.iterdir()] == ["index"]  # no temporary folder left behind


def test_a_crash_mid_stream_keeps_the_previous_index(tmp_path):
    target = tmp_path / "index"
    DocumentIndex.build(corpus_rows(4), encode, "old", show_progress=False).save(target)

    def failing_stream():
        yield from corpus_rows(15)
        raise ConnectionError("the Hub went away")

    with pytest.raises(ConnectionError):
        DocumentIndex.build_streaming(failing_stream(), encode, "bow", target, chunk_size=5, show_progress=False)
    assert DocumentIndex.load(target).fingerprint == "old"


def test_build_points_a_stream_to_build_streaming(retriever_tokenizer):
    with pytest.raises(TypeError, match="build_streaming"):
        DocumentIndex.build(streamed(corpus_rows(3)), encode, "bow")
    with pytest.raises(TypeError, match="directory="):
        DocumentIndex.from_retriever(streamed(corpus_rows(3)), object(), retriever_tokenizer)


def test_from_retriever_streams_into_the_folder(tmp_path, make_tiny_model, retriever_tokenizer):
    model = make_tiny_model(0)
    rows = corpus_rows(12)
    built = DocumentIndex.from_retriever(
        streamed(rows), model.retriever, retriever_tokenizer, max_length=32, directory=tmp_path / "index",
        chunk_size=5, show_progress=False,
    )  # fmt: skip
    reference = DocumentIndex.from_retriever(rows, model.retriever, retriever_tokenizer, max_length=32)
    assert built.fingerprint == model.retriever.weights_fingerprint()
    assert np.allclose(vectors(built), vectors(reference), atol=1e-5)


def test_stream_corpus_reads_a_corpus_file_lazily_into_an_index(tmp_path):
    """`jmlr_hf.data.stream_corpus`: a corpus file (MedRAG's `content` column, numeric ids) as an IterableDataset
    of `id`, `title`, `text`, indexed chunk by chunk; a bad row is named when the stream reaches it."""
    from jmlr_hf.data import DataFormatError, stream_corpus

    path = tmp_path / "corpus.jsonl"
    rows = [{"id": i, "title": f"T{i}" if i % 2 else None, "content": f"passage {i} about the {WORDS[i % 8]}"} for i in range(23)]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    stream = stream_corpus(str(path))
    assert isinstance(stream, IterableDataset)
    built = DocumentIndex.build_streaming(stream, encode, "bow", tmp_path / "index", chunk_size=5, show_progress=False)
    expected = [{"id": str(r["id"]), "title": r["title"] or "", "text": r["content"]} for r in rows]
    assert built.documents.to_list() == expected
    path.write_text(path.read_text() + json.dumps({"id": 99, "content": "   "}) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"corpus.jsonl, line 24: field 'content': empty"):  # load_corpus's words
        list(stream_corpus(str(path)))
