"""Tests of jmlr_hf.index: exactness and recall, persistence (atomic save, checksums, staleness) and validation."""

from __future__ import annotations

import builtins
import json
import math
import os
import re
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from jmlr_hf.models.retrieval_jmlr import index_config_sha256
from jmlr_hf.retrieval import index as index_module
from jmlr_hf.retrieval.index import (
    CONFIG_FILE,
    DOCUMENTS_FILE,
    INDEX_FILE,
    CorruptIndexError,
    DocumentIndex,
    StaleIndexError,
    StaleIndexWarning,
    document_text,
    encode_queries_with,
)
from jmlr_hf.utils import atomic as atomic_module

pytest.importorskip("faiss")

DIM = 64


def hashed_bow(texts: list[str]) -> np.ndarray:
    """Deterministic toy encoder: signed hashed bag of words in DIM dimensions (crc32, unlike hash(), is unsalted)."""
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        for token in re.findall(r"\w+", text.lower()):
            code = zlib.crc32(token.encode())
            out[row, code % DIM] += 1.0 if (code >> 16) & 1 else -1.0
    return out


class VectorEncoder:
    """Encodes the texts "doc-<i>" / "query-<i>" to given vectors, counting calls, so tests control the geometry."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.calls: list[int] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.vectors[[int(text.rsplit("-", 1)[1]) for text in texts]]


def normalized(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def vector_docs(n: int) -> list[dict]:
    return [{"id": f"d{i}", "text": f"doc-{i}"} for i in range(n)]


def clustered(n: int, dim: int, centers: int, seed: int) -> np.ndarray:
    """Gaussian blobs, so that IVF's inverted lists are meaningful."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centers, dim))
    return (means[rng.integers(centers, size=n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


MEDICAL_DOCS = [
    {
        "id": "p1",
        "title": "Aspirin",
        "text": "Aspirin inhibits platelet aggregation.",
        "article_id": 10,
        "section": "a",
    },
    {"id": "p2", "title": "", "text": "Insulin lowers blood glucose levels.", "article_id": 11, "section": "b"},
    {"id": "p3", "title": "Warfarin", "text": "Warfarin is a vitamin K antagonist.", "article_id": 12, "section": "c"},
    {
        "id": "p4",
        "title": None,
        "text": "Metformin is first line for type 2 diabetes.",
        "article_id": 13,
        "section": "d",
    },
    {"id": "p5", "title": "Statins", "text": "Statins lower LDL cholesterol.", "article_id": 14, "section": "e"},
]


@pytest.fixture(scope="module")
def flat_index() -> DocumentIndex:
    return DocumentIndex.build(MEDICAL_DOCS, hashed_bow, "fp-a", show_progress=False)


@pytest.fixture(scope="module")
def random_setup() -> tuple[np.ndarray, np.ndarray, DocumentIndex]:
    rng = np.random.default_rng(0)
    docs, queries = rng.normal(size=(500, 32)), rng.normal(size=(20, 32))
    index = DocumentIndex.build(vector_docs(500), VectorEncoder(docs), "fp", show_progress=False)
    return docs, queries, index


# ---------------------------------------------------------------------- basics


def test_document_text():
    assert document_text({"text": "body", "title": "Head"}) == "Head. body"
    assert document_text({"text": "body", "title": "  Head "}) == "Head. body"
    assert document_text({"text": "body", "title": ""}) == "body"
    assert document_text({"text": "body", "title": None}) == "body"
    assert document_text({"text": "body"}) == "body"


def test_properties(flat_index):
    assert len(flat_index) == 5
    assert flat_index.dim == DIM
    assert flat_index.kind == "flat"
    assert flat_index.fingerprint == "fp-a"
    assert flat_index.device == "cpu"
    assert isinstance(flat_index.documents, Dataset)
    assert flat_index.documents["id"][:] == [d["id"] for d in MEDICAL_DOCS]
    assert not flat_index.is_stale("fp-a")
    assert flat_index.is_stale("fp-b")
    assert "flat" in repr(flat_index)


def test_flat_search_matches_brute_force(random_setup):
    docs, queries, index = random_setup
    scores, indices = index.search(queries, k=10)
    assert scores.shape == indices.shape == (20, 10)
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    brute = normalized(queries) @ normalized(docs).T
    expected = np.argsort(-brute, axis=1)[:, :10]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, axis=1), atol=1e-5)


def test_search_normalizes_and_clips_k(random_setup):
    docs, queries, index = random_setup
    # Scaling queries does not change cosine scores.
    s1, i1 = index.search(queries, k=5)
    s2, i2 = index.search(queries * 7.5, k=5)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    assert np.all(s1 <= 1.0 + 1e-6)
    # A single 1-D query, and k larger than the corpus.
    scores, indices = index.search(queries[0], k=10_000)
    assert indices.shape == (1, 500)
    assert sorted(indices[0].tolist()) == list(range(500))
    with pytest.raises(ValueError, match="dimension 16"):
        index.search(np.ones((2, 16), dtype=np.float32), k=3)
    with pytest.raises(ValueError, match="k must be"):
        index.search(queries, k=0)


def test_build_normalizes_document_vectors():
    vectors = np.array([[3.0, 4.0], [0.0, 10.0]], dtype=np.float32)
    index = DocumentIndex.build(vector_docs(2), VectorEncoder(vectors), "fp", show_progress=False)
    scores, indices = index.search(np.array([[0.0, 1.0]]), k=2)
    assert indices[0].tolist() == [1, 0]
    np.testing.assert_allclose(scores[0], [1.0, 0.8], atol=1e-6)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_against_flat(kind):
    data = clustered(3100, 32, centers=40, seed=1)
    docs, queries = data[:3000], data[3000:]
    flat = DocumentIndex.build(vector_docs(3000), VectorEncoder(docs), "fp", batch_size=512, show_progress=False)
    approx = DocumentIndex.build(
        vector_docs(3000), VectorEncoder(docs), "fp", kind=kind, batch_size=512, show_progress=False
    )
    _, exact = flat.search(queries, k=10)
    _, found = approx.search(queries, k=10)
    recall = np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact.tolist(), found.tolist())])
    assert recall >= 0.9, f"{kind} recall@10 = {recall:.3f}"
    if kind == "ivf":
        config = approx.config()
        assert config["nlist"] == min(round(4 * math.sqrt(3000)), 3000 // 39)
        assert config["nprobe"] == 16


def test_ivf_missing_results_are_marked_and_dropped():
    docs = clustered(400, 16, centers=8, seed=2)
    index = DocumentIndex.build(
        vector_docs(400), VectorEncoder(docs), "fp", kind="ivf", nlist=8, nprobe=1, show_progress=False
    )
    scores, indices = index.search(docs[:3], k=400)
    assert (indices == -1).any()
    assert np.all(np.isneginf(scores[indices == -1]))
    assert np.all(np.isfinite(scores[indices >= 0]))
    queries = [f"query-{i}" for i in range(3)]
    hits = index.retrieve(queries, VectorEncoder(docs), k=400, show_progress=False)
    for row_hits, row_indices in zip(hits, indices):
        assert len(row_hits) == int((row_indices >= 0).sum()) < 400


def test_ivf_training_defaults():
    assert index_module._default_nlist(100_000) == round(4 * math.sqrt(100_000))
    assert index_module._default_nlist(3000) == 3000 // 39  # limited by training points per list
    assert index_module._default_nlist(10) == 1
    embeddings = np.arange(3000 * 2, dtype=np.float32).reshape(3000, 2)
    assert index_module._training_sample(embeddings, nlist=20) is embeddings
    sample = index_module._training_sample(embeddings, nlist=4)
    assert sample.shape == (4 * 256, 2)
    np.testing.assert_array_equal(sample, index_module._training_sample(embeddings, nlist=4))


# ---------------------------------------------------------------------- retrieve


def test_retrieve_returns_columns_and_is_batched(flat_index):
    encoder_calls: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        encoder_calls.append(len(texts))
        return hashed_bow(texts)

    queries = ["aspirin platelet", "insulin glucose", "vitamin K warfarin", "LDL statins", "metformin diabetes"] * 3
    hits = flat_index.retrieve(queries, encode, k=2, batch_size=4, show_progress=False)
    assert len(encoder_calls) == math.ceil(len(queries) / 4)
    assert sum(encoder_calls) == len(queries)
    assert len(hits) == len(queries)
    assert [h[0]["id"] for h in hits[:5]] == ["p1", "p2", "p3", "p5", "p4"]
    top = hits[0][0]
    assert set(top) == {"id", "text", "title", "score", "article_id", "section"}
    assert (top["title"], top["article_id"], top["section"]) == ("Aspirin", 10, "a")
    assert hits[1][0]["title"] == "" and hits[4][0]["title"] == ""
    for query_hits in hits:
        assert len(query_hits) == 2
        assert query_hits[0]["score"] >= query_hits[1]["score"]
    # The same as searching the embeddings directly.
    scores, indices = flat_index.search(hashed_bow(queries), k=2)
    assert [[h["id"] for h in q] for q in hits] == [[MEDICAL_DOCS[i]["id"] for i in row] for row in indices.tolist()]
    np.testing.assert_allclose([[h["score"] for h in q] for q in hits], scores, atol=1e-6)
    assert flat_index.retrieve([], encode, k=2, show_progress=False) == []
    with pytest.raises(TypeError):
        flat_index.retrieve("aspirin", encode, k=2)


def test_build_batches_and_encodes_title(flat_index):
    seen: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return hashed_bow(texts)

    docs = [{"id": i, "text": f"text {i}", "title": "T" if i % 2 else None} for i in range(10)]
    index = DocumentIndex.build(docs, encode, "fp", batch_size=4, show_progress=False)
    assert [len(batch) for batch in seen] == [4, 4, 2]
    # Every text once, titles joined in, each batch of similar lengths (shortest first, to pad little).
    expected = [f"T. text {i}" if i % 2 else f"text {i}" for i in range(10)]
    assert sorted(text for batch in seen for text in batch) == sorted(expected)
    flat = [len(text) for batch in seen for text in batch]
    assert flat == sorted(flat)
    # ... and the vectors still sit at their documents' rows.
    for i, text in enumerate(expected):
        scores, rows = index.search(hashed_bow([text]), k=1)
        assert rows[0][0] == i


def test_build_from_dataset_keeps_columns():
    dataset = Dataset.from_list(MEDICAL_DOCS)
    index = DocumentIndex.build(dataset.with_format("numpy"), hashed_bow, "fp", show_progress=False)
    assert index.documents.column_names == dataset.column_names
    assert index.documents[0]["article_id"] == 10  # the input's numpy format is dropped


def test_from_retriever_uses_the_retriever():
    torch = pytest.importorskip("torch")

    class FakeRetriever:
        def __init__(self) -> None:
            self.calls: list[dict] = []

        def encode_dense_texts(self, texts, tokenizer, *, max_length, batch_size, is_query):
            self.calls.append(
                {"n": len(texts), "tokenizer": tokenizer, "max_length": max_length, "is_query": is_query}
            )
            assert batch_size >= len(texts)
            return torch.nn.functional.normalize(torch.from_numpy(hashed_bow(texts)), dim=-1)

        def weights_fingerprint(self) -> str:
            return "sha-of-weights"

    retriever = FakeRetriever()
    index = DocumentIndex.from_retriever(
        MEDICAL_DOCS, retriever, "tok", max_length=32, batch_size=2, show_progress=False
    )
    assert index.fingerprint == "sha-of-weights"
    assert retriever.calls == [{"n": n, "tokenizer": "tok", "max_length": 32, "is_query": False} for n in (2, 2, 1)]

    retriever.calls.clear()
    hits = index.retrieve(["warfarin"], encode_queries_with(retriever, "tok", max_length=16), k=1, show_progress=False)
    assert hits[0][0]["id"] == "p3"
    assert retriever.calls == [{"n": 1, "tokenizer": "tok", "max_length": 16, "is_query": True}]


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([], "empty corpus"),
        ([{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"id": "a", "text": "z"}], "'a' at rows 0 and 2"),
        ([{"id": "a", "text": "x"}, {"id": "b", "text": "   "}], "'b' \\(row 1\\) has an empty text"),
        ([{"id": "a", "text": "x"}, {"id": "b", "text": None}], "'b' \\(row 1\\) has a non-string text"),
        ([{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"text": "z"}], "row 2 has no 'id'"),
        ([{"id": "a", "text": "x"}, {"id": "b"}], "row 1 has no 'text'"),
        ([{"id": "a", "text": "x"}, {"id": None, "text": "y"}], "row 1 has no id"),
        ([{"id": "a", "text": "x", "score": 1.0}], "'score' column"),
        (Dataset.from_dict({"id": ["a"], "body": ["x"]}), "no 'text' column"),
        (Dataset.from_dict({"id": ["a", "b", "b"], "text": ["x", "y", "z"]}), "'b' at rows 1 and 2"),
    ],
)
def test_validation_errors_name_the_row(documents, message):
    with pytest.raises(ValueError, match=message):
        DocumentIndex.build(documents, hashed_bow, "fp", show_progress=False)


def test_invalid_arguments():
    docs = MEDICAL_DOCS
    with pytest.raises(ValueError, match="kind"):
        DocumentIndex.build(docs, hashed_bow, "fp", kind="lsh", show_progress=False)
    with pytest.raises(ValueError, match="fingerprint"):
        DocumentIndex.build(docs, hashed_bow, "", show_progress=False)
    with pytest.raises(ValueError, match="nlist"):
        DocumentIndex.build(docs, hashed_bow, "fp", kind="ivf", nlist=6, show_progress=False)
    with pytest.raises(ValueError, match="2 embeddings for 5 texts"):
        DocumentIndex.build(docs, lambda texts: hashed_bow(texts)[:2], "fp", batch_size=8, show_progress=False)
    with pytest.raises(ValueError, match="NaN"):
        DocumentIndex.build(docs, lambda texts: hashed_bow(texts) * np.nan, "fp", show_progress=False)
    with pytest.raises(TypeError):
        DocumentIndex.build("not documents", hashed_bow, "fp", show_progress=False)


# ---------------------------------------------------------------------- persistence


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    docs = clustered(400, 16, centers=8, seed=3)
    rows = [{**d, "section": f"s{i % 3}"} for i, d in enumerate(vector_docs(400))]
    index = DocumentIndex.build(rows, VectorEncoder(docs), "fp-1", kind=kind, nprobe=4, show_progress=False)
    path = index.save(tmp_path / "index")
    assert sorted(p.name for p in path.iterdir()) == sorted([INDEX_FILE, DOCUMENTS_FILE, CONFIG_FILE])
    assert [p.name for p in tmp_path.iterdir()] == ["index"]

    config = json.loads((path / CONFIG_FILE).read_text())
    assert config["kind"] == kind and config["dim"] == 16 and config["num_documents"] == 400
    assert config["fingerprint"] == "fp-1" and config["metric"] == "inner_product" and config["format_version"] == 2
    assert set(config["sha256"]) == {INDEX_FILE, DOCUMENTS_FILE}
    assert (config["nprobe"] is not None) == (kind == "ivf")
    assert (config["ef_search"] is not None) == (kind == "hnsw")

    loaded = DocumentIndex.load(path, expected_fingerprint="fp-1")
    assert (loaded.kind, loaded.dim, len(loaded), loaded.fingerprint) == (kind, 16, 400, "fp-1")
    assert loaded.config() == index.config()
    assert loaded.documents.to_list() == index.documents.to_list()
    queries = docs[::37] + 0.1
    for before, after in zip(index.search(queries, k=10), loaded.search(queries, k=10)):
        np.testing.assert_array_equal(before, after)


def test_load_overrides_search_parameters(tmp_path):
    docs = clustered(400, 16, centers=8, seed=3)
    index = DocumentIndex.build(vector_docs(400), VectorEncoder(docs), "fp", kind="ivf", show_progress=False)
    path = index.save(tmp_path / "index")
    assert DocumentIndex.load(path, nprobe=2).config()["nprobe"] == 2
    assert DocumentIndex.load(path, nprobe=10_000).config()["nprobe"] == index.config()["nlist"]


def test_search_parameters_change_without_rebuilding(tmp_path):
    docs = clustered(400, 16, centers=8, seed=3)
    ivf = DocumentIndex.build(vector_docs(400), VectorEncoder(docs), "fp", kind="ivf", nlist=8, show_progress=False)
    ivf.set_search_parameters(nprobe=1)
    assert ivf.faiss_index.nprobe == 1 and ivf.config()["nprobe"] == 1
    few = (ivf.search(docs[:20], k=400)[1] >= 0).sum()
    ivf.set_search_parameters(nprobe=100)  # capped at nlist: every list
    assert ivf.faiss_index.nprobe == 8 and (ivf.search(docs[:20], k=400)[1] >= 0).sum() > few
    assert DocumentIndex.load(ivf.save(tmp_path / "ivf")).config()["nprobe"] == 8
    hnsw = DocumentIndex.build(vector_docs(400), VectorEncoder(docs), "fp", kind="hnsw", show_progress=False)
    hnsw.set_search_parameters(ef_search=7)
    assert hnsw.faiss_index.hnsw.efSearch == 7 and hnsw.config()["ef_search"] == 7
    with pytest.raises(ValueError, match="needs an IVF index"):
        hnsw.set_search_parameters(nprobe=4)
    with pytest.raises(ValueError, match="needs an HNSW index"):
        ivf.set_search_parameters(ef_search=4)


def test_ivf_trains_on_the_asked_sample_size(monkeypatch):
    docs = clustered(1000, 16, centers=8, seed=4)
    trained = []
    original = index_module._training_sample
    monkeypatch.setattr(
        index_module, "_training_sample", lambda *args: trained.append(original(*args).shape[0]) or original(*args)
    )
    for per_list in (40, 256):
        DocumentIndex.build(
            vector_docs(1000),
            VectorEncoder(docs),
            "fp",
            kind="ivf",
            nlist=4,
            train_points_per_list=per_list,
            show_progress=False,
        )
    assert trained == [160, 1000]
    with pytest.raises(ValueError, match="train_points_per_list must be >= 39"):
        DocumentIndex.build(
            vector_docs(10), hashed_bow, "fp", kind="ivf", train_points_per_list=8, show_progress=False
        )


def test_stale_index(tmp_path, flat_index):
    flat_index.save(tmp_path / "index")
    with pytest.raises(StaleIndexError, match="(?s)different retriever weights.*Rebuild"):
        DocumentIndex.load(tmp_path / "index", expected_fingerprint="fp-b")
    assert issubclass(StaleIndexError, RuntimeError)
    with pytest.warns(StaleIndexWarning, match="different retriever weights"):
        loaded = DocumentIndex.load(tmp_path / "index", expected_fingerprint="fp-b", on_stale="warn")
    assert loaded.is_stale("fp-b") and not loaded.is_stale("fp-a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DocumentIndex.load(tmp_path / "index", expected_fingerprint="fp-a")
        DocumentIndex.load(tmp_path / "index")
    with pytest.raises(ValueError, match="on_stale"):
        DocumentIndex.load(tmp_path / "index", on_stale="ignore")


@pytest.mark.parametrize("name", [INDEX_FILE, DOCUMENTS_FILE])
def test_corrupted_file_is_detected(tmp_path, flat_index, name):
    path = flat_index.save(tmp_path / "index")
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptIndexError, match=re.escape(str(path / name))):
        DocumentIndex.load(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"kind": "hnsw"}, "was changed after the index was saved"),
        ({"dim": 7}, "was changed after the index was saved"),
        ({"nprobe": 64}, "not by editing the file"),
    ],
)
def test_a_hand_edited_config_is_caught_by_its_checksum(tmp_path, flat_index, edit, message):
    path = flat_index.save(tmp_path / "index")
    config = json.loads((path / CONFIG_FILE).read_text())
    (path / CONFIG_FILE).write_text(json.dumps({**config, **edit}))
    with pytest.raises(CorruptIndexError, match=message):
        DocumentIndex.load(path)


def test_a_config_that_disagrees_with_the_faiss_file_is_corrupt(tmp_path):
    """Consistent checksums, inconsistent contents (a config copied from another index): named, not a faiss crash."""
    docs = clustered(400, 16, centers=8, seed=5)
    ivf = DocumentIndex.build(vector_docs(400), VectorEncoder(docs), "fp", kind="ivf", nlist=8, show_progress=False)
    path = ivf.save(tmp_path / "index")
    config = json.loads((path / CONFIG_FILE).read_text())
    for edit, message in [({"kind": "flat"}, "holds an index of kind 'ivf' with nlist=8"), ({"nlist": 9}, "nlist=9")]:
        edited = {key: value for key, value in {**config, **edit}.items() if key != "config_sha256"}
        edited["config_sha256"] = index_config_sha256(edited)
        (path / CONFIG_FILE).write_text(json.dumps(edited))
        with pytest.raises(CorruptIndexError, match=re.escape(message)):
            DocumentIndex.load(path)


def test_a_save_cleans_up_what_an_interrupted_save_left(tmp_path, flat_index):
    leftover = tmp_path / ".index.tmp-abc123"
    (leftover / "sub").mkdir(parents=True)
    (leftover / INDEX_FILE).write_bytes(b"half")
    other = tmp_path / ".other.tmp-abc123"  # another directory's: not ours to remove
    other.mkdir()
    flat_index.save(tmp_path / "index")
    assert not leftover.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-abc123", "index"]


def test_missing_file_is_detected(tmp_path, flat_index):
    path = flat_index.save(tmp_path / "index")
    (path / DOCUMENTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=DOCUMENTS_FILE):
        DocumentIndex.load(path)
    with pytest.raises(FileNotFoundError, match="No index directory"):
        DocumentIndex.load(tmp_path / "nowhere")


def test_save_replaces_an_existing_index(tmp_path, flat_index):
    flat_index.save(tmp_path / "index")
    other = DocumentIndex.build(MEDICAL_DOCS[:3], hashed_bow, "fp-new", show_progress=False)
    other.save(tmp_path / "index")
    assert len(DocumentIndex.load(tmp_path / "index", expected_fingerprint="fp-new")) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["index"]


def test_save_refuses_to_replace_a_foreign_directory(tmp_path, flat_index):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        flat_index.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    flat_index.save(tmp_path / "empty")
    assert len(DocumentIndex.load(tmp_path / "empty")) == len(flat_index)


def _assert_previous_index_intact(tmp_path: Path) -> None:
    loaded = DocumentIndex.load(tmp_path / "index", expected_fingerprint="fp-a")
    assert loaded.documents["id"][:] == [d["id"] for d in MEDICAL_DOCS]
    assert [p.name for p in tmp_path.iterdir()] == ["index"], "a temporary directory was left behind"


def test_crash_while_writing_keeps_the_previous_index(tmp_path, flat_index, monkeypatch):
    flat_index.save(tmp_path / "index")

    def crash_halfway(documents, path):
        path.write_bytes(b"\xff\xff\xff\xff half an Arrow stream")
        raise KeyboardInterrupt("killed while writing documents.arrow")

    monkeypatch.setattr(index_module, "_write_documents", crash_halfway)
    other = DocumentIndex.build(MEDICAL_DOCS[:2], hashed_bow, "fp-new", show_progress=False)
    with pytest.raises(KeyboardInterrupt):
        other.save(tmp_path / "index")
    _assert_previous_index_intact(tmp_path)


def test_crash_during_swap_keeps_the_previous_index(tmp_path, flat_index, monkeypatch):
    flat_index.save(tmp_path / "index")
    # The rename fallback (where renameat2's RENAME_EXCHANGE swaps in one call, nothing is renamed aside).
    monkeypatch.setattr(atomic_module, "exchange_paths", lambda first, second: False)
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the old index has been moved aside; moving the new one into place fails
            raise OSError("disk went away")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    other = DocumentIndex.build(MEDICAL_DOCS[:2], hashed_bow, "fp-new", show_progress=False)
    with pytest.raises(OSError, match="disk went away"):
        other.save(tmp_path / "index")
    monkeypatch.undo()
    assert calls[0][0] == "index" and calls[1][1] == "index"
    _assert_previous_index_intact(tmp_path)


# ---------------------------------------------------------------------- optional faiss


def test_missing_faiss_has_an_install_hint(monkeypatch):
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss" or name.startswith("faiss."):
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    monkeypatch.delitem(sys.modules, "faiss", raising=False)
    with pytest.raises(ImportError, match=re.escape("jmlr_hf[faiss-cpu]")) as info:
        DocumentIndex.build(MEDICAL_DOCS, hashed_bow, "fp", show_progress=False)
    assert "jmlr_hf[faiss-gpu]" in str(info.value)


def test_module_imports_without_faiss(monkeypatch):
    import importlib.util

    # Execute a private copy of the module, so the classes the other tests imported stay the module's classes.
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    spec = importlib.util.spec_from_file_location("jmlr_hf.retrieval._index_without_faiss", index_module.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ImportError, match=re.escape("jmlr_hf[faiss-cpu]")):
        module._import_faiss()


def test_gpu_resolution():
    class CpuFaiss:
        pass

    class GpuFaiss:
        StandardGpuResources = object

        def __init__(self, gpus: int) -> None:
            self.gpus = gpus

        def get_num_gpus(self) -> int:
            return self.gpus

    resolve = index_module._resolve_use_gpu
    assert resolve(CpuFaiss(), None, "flat") is False
    assert resolve(GpuFaiss(0), None, "ivf") is False
    assert resolve(GpuFaiss(1), None, "ivf") is True
    assert resolve(GpuFaiss(1), None, "hnsw") is False
    assert resolve(GpuFaiss(1), True, "hnsw") is False
    assert resolve(GpuFaiss(1), False, "flat") is False
    with pytest.raises(RuntimeError, match="faiss-gpu"):
        resolve(CpuFaiss(), True, "flat")


def test_load_index_names_a_missing_folder_instead_of_asking_the_hub(tmp_path, monkeypatch, flat_index):
    """A path that is not an index folder is reported as such, not sent to the Hub as a repository id."""
    from jmlr_hf.retrieval import load_index

    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    (tmp_path / "a-file").write_text("x")
    for missing, message in [
        ("outputs/index", "index folder 'outputs/index' does not exist"),
        ("./index", "index folder './index' does not exist"),
        (str(tmp_path / "nowhere" / "index"), "does not exist"),
        ("a-file", "is a file; expected an index folder"),
        ("not a repo id!", "neither an existing folder nor a Hub repository id"),
    ]:
        with pytest.raises(FileNotFoundError, match=re.escape(message)):
            load_index(missing)
    assert len(load_index(flat_index.save(tmp_path / "outputs" / "index"))) == len(flat_index)


def test_building_and_loading_put_an_index_on_a_gpu_the_same_way(tmp_path, monkeypatch):
    """One GPU set-up (`_to_gpu`) for both paths: each process's own GPU (LOCAL_RANK modulo the GPUs), resources kept
    with the index. A stand-in GPU API on the CPU faiss: its "GPU index" is the CPU index itself."""
    import faiss

    moves = []

    def index_cpu_to_gpu(resources, device, cpu_index):
        moves.append((resources, device))
        return cpu_index

    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: "resources", raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", index_cpu_to_gpu, raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda index: index, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    built = DocumentIndex.build(MEDICAL_DOCS, hashed_bow, "fp-a", use_gpu=True, show_progress=False)
    built.save(tmp_path / "index")
    loaded = DocumentIndex.load(tmp_path / "index", use_gpu=True)
    assert moves == [("resources", 1), ("resources", 1)]
    assert built._gpu_device == loaded._gpu_device == 1
    assert loaded._gpu_resources == "resources"
