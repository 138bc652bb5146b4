"""IVF-PQ (and OPQ + IVF-PQ) indexes, and sharding an index over GPUs: building, recall against exact search,
saving and loading (`nprobe` saved and overridden), the config-vs-file check, the remote-code reader, the CLI flags.

Small corpora (hundreds to 2,000 vectors of 16 to 32 dimensions, 4-bit codes where 8 bits are not the point) keep
this file to seconds: PQ and OPQ training are k-means over every sub-vector.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from jmlr_hf.models.retrieval_jmlr import JMLRIndex, faiss_index_layout, index_config_sha256
from jmlr_hf.retrieval import faiss_kinds
from jmlr_hf.retrieval.index import CONFIG_FILE, CorruptIndexError, DocumentIndex

faiss = pytest.importorskip("faiss")


def clustered(n: int, dim: int, seed: int, centres: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """`n` corpus vectors and 100 queries from one seeded Gaussian mixture (IVF's lists then mean something)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim))
    draw = lambda count: means[rng.integers(centres, size=count)] + 0.35 * rng.normal(size=(count, dim))  # noqa: E731
    return draw(n).astype(np.float32), draw(100).astype(np.float32)


def corpus(vectors: np.ndarray) -> tuple[list[dict], object]:
    """Documents `doc-<i>` and an `encode_fn` that maps them to row i of `vectors`."""
    docs = [{"id": f"d{i}", "text": f"doc-{i}"} for i in range(len(vectors))]
    return docs, lambda texts: vectors[[int(text.rsplit("-", 1)[1]) for text in texts]]


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(found, exact)]))


def test_ivfpq_recall_round_trip_and_nprobe(tmp_path):
    vectors, queries = clustered(2000, 32, seed=0)
    docs, encode = corpus(vectors)
    exact = DocumentIndex.build(docs, encode, "fp", show_progress=False).search(queries, 10)[1]
    index = DocumentIndex.build(docs, encode, "fp", kind="ivfpq", nlist=16, nprobe=4, pq_m=16, show_progress=False)
    config = index.config()
    assert (config["kind"], config["nlist"], config["nprobe"]) == ("ivfpq", 16, 4)
    assert (config["pq_m"], config["pq_bits"], config["opq"]) == (16, 8, False)
    # 16 one-byte codes per 32-d vector (128 bytes flat); recall measured 0.76 with this seed.
    assert faiss.extract_index_ivf(index.faiss_index).code_size == 16
    found = index.search(queries, 10)[1]
    assert recall_at_10(found, exact) >= 0.65

    path = index.save(tmp_path / "index")
    loaded = DocumentIndex.load(path)
    assert loaded.kind == "ivfpq" and loaded.config() == config
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], found)
    # nprobe: overridden at load (capped at nlist), changed without rebuilding, and saved.
    assert DocumentIndex.load(path, nprobe=100).config()["nprobe"] == 16
    assert faiss.extract_index_ivf(DocumentIndex.load(path, nprobe=2).faiss_index).nprobe == 2
    loaded.set_search_parameters(nprobe=16)
    assert faiss.extract_index_ivf(loaded.faiss_index).nprobe == 16
    assert recall_at_10(loaded.search(queries, 10)[1], exact) >= recall_at_10(found, exact)
    assert DocumentIndex.load(loaded.save(tmp_path / "again")).config()["nprobe"] == 16
    with pytest.raises(ValueError, match="needs an HNSW index"):
        loaded.set_search_parameters(ef_search=10)


def test_opq_ivfpq_streamed_equals_built_and_the_remote_reader_loads_it(tmp_path):
    """OPQ puts a rotation in front (IndexPreTransform); the file is recognised as OPQ + IVF-PQ, the stream builds
    the same index as the in-memory build (its training sample is the whole corpus here), and the remote code's
    reader (faiss and pyarrow only) searches it the same way, with the nprobe override reaching the IVF part."""
    vectors, queries = clustered(400, 16, seed=1, centres=8)
    docs, encode = corpus(vectors)
    options = {"kind": "ivfpq", "nlist": 8, "nprobe": 3, "pq_m": 4, "pq_bits": 4, "opq": True}
    built = DocumentIndex.build(docs, encode, "fp", show_progress=False, **options)
    assert isinstance(built.faiss_index, faiss.IndexPreTransform)
    streamed = DocumentIndex.build_streaming(docs, encode, "fp", tmp_path / "streamed", chunk_size=150, **options)
    assert streamed.config() == built.config()
    stored = faiss.read_index(str(tmp_path / "streamed" / "index.faiss"))
    assert faiss_index_layout(faiss, stored) == {"kind": "ivfpq", "nlist": 8, "pq_m": 4, "pq_bits": 4, "opq": True}
    want = built.search(queries, 10)
    for got in (streamed.search(queries, 10), JMLRIndex.load(tmp_path / "streamed").search(queries, 10)):
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    remote = JMLRIndex.load(tmp_path / "streamed", nprobe=8)
    assert remote.config["nprobe"] == 8 and faiss.extract_index_ivf(remote._index).nprobe == 8


def test_a_config_that_disagrees_with_the_ivfpq_file_is_corrupt(tmp_path):
    vectors, _ = clustered(300, 16, seed=2, centres=4)
    docs, encode = corpus(vectors)
    index = DocumentIndex.build(docs, encode, "fp", kind="ivfpq", nlist=4, pq_m=4, pq_bits=4, show_progress=False)
    path = index.save(tmp_path / "index")
    config = json.loads((path / CONFIG_FILE).read_text())
    edits = [
        ({"pq_m": 8}, "says kind 'ivfpq' with nlist=4, pq_m=8"),
        ({"nlist": 5}, "nlist=5"),
        ({"opq": True}, "holds an index of kind 'ivfpq' with nlist=4, pq_m=4, pq_bits=4, opq=False"),
        ({"kind": "ivf"}, "holds an index of kind 'ivfpq'"),
    ]
    for edit, message in edits:
        edited = {key: value for key, value in {**config, **edit}.items() if key != "config_sha256"}
        edited["config_sha256"] = index_config_sha256(edited)
        (path / CONFIG_FILE).write_text(json.dumps(edited))
        with pytest.raises(CorruptIndexError, match=re.escape(message)):
            DocumentIndex.load(path)


def test_ivfpq_arguments_are_checked_with_clear_errors(caplog):
    vectors, _ = clustered(300, 24, seed=3, centres=4)
    docs, encode = corpus(vectors)
    with pytest.raises(ValueError, match=re.escape("pq_m=5 does not divide the vector dimension 24")) as info:
        DocumentIndex.build(docs, encode, "fp", kind="ivfpq", nlist=4, pq_m=5, show_progress=False)
    assert "[1, 2, 3, 4, 6, 8, 12, 24]" in str(info.value) and "default: 6" in str(info.value)
    with pytest.raises(ValueError, match="options of kind='ivfpq', not of kind='ivf'"):
        DocumentIndex.build(docs, encode, "fp", kind="ivf", pq_m=4, show_progress=False)
    with pytest.raises(ValueError, match="pq_bits must be an integer from 1 to 16"):
        DocumentIndex.build(docs, encode, "fp", kind="ivfpq", pq_bits=0, show_progress=False)
    # 8-bit codes train 256 centroids per sub-quantiser: 200 documents cannot, 300 can but are warned about.
    with pytest.raises(ValueError, match="needs at least 256 documents to train on, and has 200"):
        DocumentIndex.build(docs[:200], encode, "fp", kind="ivfpq", nlist=4, show_progress=False)
    with caplog.at_level("WARNING", logger="jmlr_hf.retrieval.faiss_kinds"):
        index = DocumentIndex.build(docs, encode, "fp", kind="ivfpq", nlist=4, show_progress=False)
    assert "fewer than the 9984 (39 per centroid)" in caplog.text
    assert index.config()["pq_m"] == faiss_kinds.default_pq_m(24) == 6
    assert [faiss_kinds.default_pq_m(dim) for dim in (384, 768, 128, 30, 3)] == [96, 192, 32, 6, 1]


class FakeGpuFaiss:
    """The GPU half of faiss's API on top of the CPU faiss: its "GPU indexes" are the CPU ones, and it records what
    it was asked, so that everything up to the GPU call runs here."""

    def __init__(self, gpus: int) -> None:
        self.gpus, self.calls = gpus, []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        class Options:
            shard = False
            useFloat16 = False

        def multiple(resources, index, options, devices):
            self.calls.append(("shards", len(resources), devices, options.shard, options.useFloat16))
            return index

        def single(resources, device, index, options=None):
            self.calls.append(("one", device, options is not None and options.useFloat16))
            return index

        monkeypatch.setattr(faiss, "StandardGpuResources", lambda: "resources", raising=False)
        monkeypatch.setattr(faiss, "GpuMultipleClonerOptions", Options, raising=False)
        monkeypatch.setattr(faiss, "GpuClonerOptions", Options, raising=False)
        monkeypatch.setattr(faiss, "GpuParameterSpace", faiss.ParameterSpace, raising=False)
        monkeypatch.setattr(faiss, "index_cpu_to_gpu_multiple_py", multiple, raising=False)
        monkeypatch.setattr(faiss, "index_cpu_to_gpu", single, raising=False)
        monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda index: index, raising=False)
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: self.gpus)


def test_gpu_shards_up_to_the_gpu_call_and_clear_errors_without_one(tmp_path, monkeypatch):
    vectors, queries = clustered(300, 16, seed=4, centres=4)
    docs, encode = corpus(vectors)
    ivfpq = DocumentIndex.build(docs, encode, "fp", kind="ivfpq", nlist=4, pq_m=4, pq_bits=4, show_progress=False)
    hnsw = DocumentIndex.build(docs, encode, "fp", kind="hnsw", show_progress=False)
    ivfpq.save(tmp_path / "ivfpq")
    hnsw.save(tmp_path / "hnsw")
    if not hasattr(faiss, "StandardGpuResources"):  # faiss-cpu: asking for GPUs is an error that says what to do
        with pytest.raises(RuntimeError, match=re.escape("Install jmlr_hf[faiss-gpu]")):
            DocumentIndex.load(tmp_path / "ivfpq", gpu_shards=True)
        with pytest.raises(RuntimeError, match="faiss-gpu"):
            DocumentIndex.load(tmp_path / "ivfpq", use_gpu=True)
    with pytest.raises(ValueError, match="use_gpu=False keeps it on CPU"):
        DocumentIndex.load(tmp_path / "ivfpq", gpu_shards=True, use_gpu=False)

    fake = FakeGpuFaiss(gpus=3)
    fake.install(monkeypatch)
    sharded = DocumentIndex.load(tmp_path / "ivfpq", gpu_shards=True)
    assert fake.calls == [("shards", 3, [0, 1, 2], True, True)]  # all GPUs, sharded, float16 PQ lookup tables
    assert sharded.device == "cuda:0,1,2" and len(sharded._gpu_resources) == 3
    sharded.set_search_parameters(nprobe=2)  # through the GPU parameter space
    assert faiss.extract_index_ivf(sharded.faiss_index).nprobe == 2
    np.testing.assert_array_equal(
        sharded.search(queries, 5)[1],
        DocumentIndex.load(tmp_path / "ivfpq", nprobe=2, use_gpu=False).search(queries, 5)[1],
    )
    assert DocumentIndex.load(sharded.save(tmp_path / "saved")).config()["nprobe"] == 2
    assert DocumentIndex.load(tmp_path / "ivfpq", use_gpu=True).device == "cuda:0"
    assert fake.calls[-1] == ("one", 0, True)
    with pytest.raises(ValueError, match="faiss has no GPU HNSW index"):
        DocumentIndex.load(tmp_path / "hnsw", gpu_shards=True)


@pytest.mark.integration
def test_jmlr_index_ivfpq_flags(tmp_path, capsys):
    """`jmlr index --kind ivfpq` with its flags (on the real MiniLM retriever), the kind's options refused with
    another kind, a pq_m that does not divide 384 named, and `jmlr retrieve --gpu_shards` without a GPU."""
    from jmlr_hf.cli import main

    rows = [{"id": f"d{i}", "text": f"Passage {i} about organ {i % 5} and drug {i % 7}."} for i in range(12)]
    corpus_file = tmp_path / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    common = ["index", "--corpus", str(corpus_file), "--retriever", "all-minilm-l6-v2"]
    flags = ["--kind", "ivfpq", "--nlist", "2", "--nprobe", "2", "--pq_m", "48", "--pq_bits", "2", "--opq", "false"]
    main([*common, *flags, "--output", str(tmp_path / "index")])
    assert "Indexed 12 documents (ivfpq, dim 384)" in capsys.readouterr().out
    config = DocumentIndex.load(tmp_path / "index").config()
    assert {key: config[key] for key in ("nlist", "nprobe", "pq_m", "pq_bits", "opq")} == {
        "nlist": 2,
        "nprobe": 2,
        "pq_m": 48,
        "pq_bits": 2,
        "opq": False,
    }
    with pytest.raises(ValueError, match="--pq_m apply to --kind ivfpq, not --kind ivf"):
        main([*common, "--kind", "ivf", "--pq_m", "48", "--output", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="--nlist apply to --kind ivf or ivfpq, not --kind flat"):
        main([*common, "--nlist", "2", "--output", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="--streaming --kind ivfpq needs --nlist"):
        main([*common, "--kind", "ivfpq", "--streaming", "--output", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="pq_m=5 does not divide the vector dimension 384"):
        main([*common, "--kind", "ivfpq", "--pq_m", "5", "--pq_bits", "2", "--output", str(tmp_path / "x")])
    if not hasattr(faiss, "StandardGpuResources"):
        retrieve = ["retrieve", "--index", str(tmp_path / "index"), "--task", "medqa"]
        retrieve += ["--questions", "tests/fixtures/medqa_tiny.jsonl", "--output", str(tmp_path / "q")]
        with pytest.raises(RuntimeError, match="gpu_shards=True shards the index over the GPUs"):
            main([*retrieve, "--gpu_shards"])


def test_gpu_search_through_the_remote_code_alone_is_refused_naming_jmlr_hf(tmp_path, monkeypatch, make_tiny_model):
    """Without jmlr_hf (a model loaded with trust_remote_code), `load_index` reads the index with faiss and pyarrow
    alone, which search on CPU: asking for GPUs must say so, not fail deep inside the reader."""
    import sys

    model = make_tiny_model()
    monkeypatch.setitem(sys.modules, "jmlr_hf.retrieval.index", None)  # `from jmlr_hf.retrieval.index ...` fails
    for flag in ("use_gpu", "gpu_shards"):
        with pytest.raises(ValueError, match=rf"GPU search \({flag}\) needs jmlr_hf"):
            model.load_index(str(tmp_path), **{flag: True})
