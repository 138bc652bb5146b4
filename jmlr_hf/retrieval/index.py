"""A dense document index on faiss for JMLR's pre-retrieval step.

JMLR trains the retriever jointly with the LLM, so scoring the whole corpus with the training retriever at every step
is out of the question. Instead, the top-N candidate documents of every question are fetched once from a faiss index
built with a (frozen) encoder, and the joint trainer re-scores only those N with the retriever being trained.

The index holds one L2-normalised vector per document, so inner product is cosine similarity. It is decoupled from the
model: it is built from an ``encode_fn`` (``list[str] -> float32 [n, d]``) and a ``fingerprint`` string that
identifies the encoder weights, which is stored next to the index so that a copy built by other weights is caught at
load time (:class:`StaleIndexError`) instead of silently returning poor candidates.

On disk an index is a directory with three files, written atomically by :meth:`DocumentIndex.save`:

* ``index.faiss``: the faiss index (always a CPU index);
* ``documents.arrow``: the document store (``id``, ``text``, optional ``title`` and any other columns), an Arrow IPC
  stream that loading memory-maps, so that opening an index of millions of passages does not read their text
  (:mod:`jmlr_hf.retrieval.document_store`; indexes of format 1, with ``documents.parquet``, are still read, whole);
* ``index_config.json``: kind, dimension, search parameters, encoder fingerprint and sha256 checksums of the other two.

Example:

```python
from jmlr_hf.retrieval import DocumentIndex, encode_queries_with, load_index

index = DocumentIndex.from_retriever(corpus, retriever, tokenizer, kind="ivf")
index.save("outputs/index")

# A corpus too large for memory, streamed (e.g. load_dataset(..., streaming=True)): written into the folder as it goes.
index = DocumentIndex.from_retriever(streamed_corpus, retriever, tokenizer, directory="outputs/big-index")

# Under `accelerate launch` / torchrun, with `distributed=None`, every process runs the same call and encodes its share
# of the corpus; the main process gets the index (the one a single process builds), the others None
# (`jmlr_hf.retrieval.sharded`). Without it (the default) each process that calls it builds the whole index alone.
index = DocumentIndex.from_retriever(corpus, retriever, tokenizer, distributed=None)
if index is not None:
    index.save("outputs/index")

index = DocumentIndex.load("outputs/index", expected_fingerprint=retriever.weights_fingerprint())
index = load_index("org/my-index", revision="main")  # a published index, downloaded once into the Hub cache
hits = index.retrieve(questions, encode_queries_with(retriever, tokenizer), k=32)
```

faiss is an optional dependency, imported only when an index is built or loaded: install ``jmlr_hf[faiss-cpu]`` or
``jmlr_hf[faiss-gpu]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from datasets import Dataset, Features, IterableDataset
from tqdm.auto import tqdm

from ..models.configuration_jmlr import check_count, check_text_argument
from ..models.retrieval_jmlr import (
    CONFIG_FILE,
    DOCUMENTS_FILE,
    INDEX_FILE,
    INDEX_FORMAT_VERSION,
    INDEX_KINDS,
    INDEX_METRIC,
    INDEX_REPO_TYPE,
    CorruptIndexError,
    StaleIndexError,
    StaleIndexWarning,
    download_index,
    file_sha256,
    index_config_sha256,
    read_index_folder,
)
from ..utils.atomic import atomic_directory
from . import faiss_kinds
from ._corpus import check_document_rows, columns_dataset, document_text, prepare_documents

# Under the names the build and save code (and tests that interrupt a save) use.
from .document_store import DocumentStoreWriter as _DocumentWriter
from .document_store import documents_dataset, gather_column
from .document_store import write_documents as _write_documents
from .faiss_kinds import DEFAULT_PQ_BITS, IVF_KINDS
from .sharded import ShardGroup, encode_blocks, encode_stream, process_group, run_on_main

if TYPE_CHECKING:
    from types import ModuleType

logger = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]
IndexKind = Literal["flat", "ivf", "ivfpq", "hnsw"]

# The file names and the format of a saved index are defined with the remote code (`jmlr_hf.models.retrieval_jmlr`),
# which reads indexes without jmlr_hf; this module writes them and reads them through the same `read_index_folder`.
FORMAT_VERSION = INDEX_FORMAT_VERSION
METRIC = INDEX_METRIC
_KINDS = INDEX_KINDS
_MIN_POINTS_PER_CENTROID = faiss_kinds.MIN_POINTS_PER_CENTROID
_MAX_POINTS_PER_CENTROID = faiss_kinds.MAX_POINTS_PER_CENTROID
_TRAIN_SAMPLE_SEED = 0
# Rows per chunk of a streamed corpus: read, encoded, added to faiss and written out before the next one is read.
_STREAM_CHUNK = 10_000
# Documents are encoded shortest first within windows of this many batches (less padding, bounded memory).
_SORT_WINDOW_BATCHES = 32


def _import_faiss() -> ModuleType:
    """Import faiss on first use, so that the rest of ``jmlr_hf`` works without it."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "DocumentIndex needs faiss, which is not installed. Install it with `pip install jmlr_hf[faiss-cpu]` or, "
            "for CUDA, `pip install jmlr_hf[faiss-gpu]` (both provide the same `faiss` module: install only one)."
        ) from err
    return faiss


def _retriever_encode_fn(retriever: Any, tokenizer: Any, max_length: int, is_query: bool) -> EncodeFn:
    def encode(texts: list[str]) -> np.ndarray:
        # The index (or `retrieve`) already batches the texts, so the retriever encodes each call in one go.
        embeddings = retriever.encode_dense_texts(
            list(texts), tokenizer, max_length=max_length, batch_size=max(1, len(texts)), is_query=is_query
        )
        return _to_numpy(embeddings)

    return encode


def encode_documents_with(retriever: Any, tokenizer: Any, max_length: int = 256) -> EncodeFn:
    """An ``encode_fn`` for :meth:`DocumentIndex.build` that encodes documents with a JMLR retriever.

    Args:
        retriever: An object with ``encode_dense_texts(texts, tokenizer, *, max_length, batch_size, is_query)``
            returning a float32 ``[n, d]`` tensor (the retriever of ``jmlr_hf``).
        tokenizer: The retriever's tokenizer.
        max_length: Maximum number of tokens per document.
    """
    return _retriever_encode_fn(retriever, tokenizer, max_length, is_query=False)


def encode_queries_with(retriever: Any, tokenizer: Any, max_length: int = 256) -> EncodeFn:
    """An ``encode_query_fn`` for :meth:`DocumentIndex.retrieve` that encodes questions with a JMLR retriever.

    Args:
        retriever: An object with ``encode_dense_texts(texts, tokenizer, *, max_length, batch_size, is_query)``
            returning a float32 ``[n, d]`` tensor (the retriever of ``jmlr_hf``).
        tokenizer: The retriever's tokenizer.
        max_length: Maximum number of tokens per question.
    """
    return _retriever_encode_fn(retriever, tokenizer, max_length, is_query=True)


def _to_numpy(embeddings: Any) -> np.ndarray:
    # Accept torch tensors too (on any device, with or without grad) without importing torch here.
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().float().cpu().numpy()
    return np.asarray(embeddings, dtype=np.float32)


def _normalize_embeddings(embeddings: Any, *, expected_rows: int | None = None, dim: int | None = None) -> np.ndarray:
    """Check shape and values, and return a float32, C-contiguous, L2-normalised copy.

    Normalising here keeps inner product equal to cosine even when an ``encode_fn`` forgets to; all-zero rows stay
    zero rather than becoming NaN.
    """
    array = _to_numpy(embeddings)
    if array.ndim != 2:
        raise ValueError(f"Embeddings must be a 2-D array [n, d], got shape {tuple(array.shape)}.")
    if expected_rows is not None and array.shape[0] != expected_rows:
        raise ValueError(f"The encoder returned {array.shape[0]} embeddings for {expected_rows} texts.")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"Embeddings have dimension {array.shape[1]}, but the index has dimension {dim}.")
    if not np.isfinite(array).all():
        raise ValueError("Embeddings contain NaN or infinite values.")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, np.finfo(np.float32).tiny), dtype=np.float32)


def _default_nlist(num_vectors: int) -> int:
    """About ``4 * sqrt(n)`` inverted lists, but never more than k-means can train well (39 points per list)."""
    return max(1, min(round(4 * math.sqrt(num_vectors)), num_vectors // _MIN_POINTS_PER_CENTROID))


def _gpu_available(faiss: ModuleType) -> bool:
    return faiss_kinds.gpu_count(faiss) > 0


def _resolve_use_gpu(faiss: ModuleType, use_gpu: bool | None, kind: str) -> bool:
    """``None`` means "GPU when faiss can use one". HNSW has no faiss GPU implementation and always stays on CPU."""
    if kind == "hnsw":
        if use_gpu:
            logger.warning("faiss has no GPU HNSW index; the HNSW index stays on CPU.")
        return False
    if use_gpu is None:
        return _gpu_available(faiss)
    if use_gpu and not _gpu_available(faiss):
        raise RuntimeError(
            "use_gpu=True, but the installed faiss has no GPU support or sees no GPU. Install jmlr_hf[faiss-gpu] "
            "(instead of faiss-cpu) on a machine with a CUDA GPU, or pass use_gpu=None/False."
        )
    return use_gpu


def _default_gpu_device(faiss: ModuleType) -> int:
    # Under torchrun every process sees all GPUs: put each process's index on its own GPU rather than all on GPU 0.
    return int(os.environ.get("LOCAL_RANK", 0)) % max(1, faiss.get_num_gpus())


def _to_gpu(faiss: ModuleType, cpu_index: Any, kind: str) -> tuple[Any, Any, int]:
    """`cpu_index` copied to this process's GPU: `(gpu index, its GPU resources, device)`. The one place an index
    goes to one GPU (building and loading both do), so that the device choice and the resources are set up once. The
    resources are returned to be kept alive as long as the index: faiss does not own them."""
    device = _default_gpu_device(faiss)
    resources = faiss.StandardGpuResources()
    options = faiss_kinds.cloner_options(faiss, kind, shards=False)
    try:
        if options is None:
            return faiss.index_cpu_to_gpu(resources, device, cpu_index), resources, device
        return faiss.index_cpu_to_gpu(resources, device, cpu_index, options), resources, device
    except RuntimeError as err:
        raise RuntimeError(faiss_kinds.gpu_copy_error(kind, err)) from err


class DocumentIndex:
    """A faiss index over one dense, L2-normalised vector per document, plus the document store.

    Create one with :meth:`build`, :meth:`from_retriever` or :meth:`load`, not with the constructor.

    Search with :meth:`search` (embeddings in, scores and row indices out) or :meth:`retrieve` (texts in, document
    dicts out). Indices are read-only once built: rebuild the index when the encoder weights change (see
    :meth:`is_stale`).

    Example (any ``encode_fn`` from texts to vectors works; :meth:`from_retriever` uses a model's retriever):

    ```python
    >>> import numpy as np
    >>> from jmlr_hf import DocumentIndex

    >>> vocabulary = ["insulin", "pancreas", "aspirin", "heart", "kidney"]
    >>> def encode(texts):
    ...     return np.array([[float(word in text.lower()) + 1e-3 for word in vocabulary] for text in texts], "float32")
    >>> documents = [
    ...     {"id": "d1", "text": "The pancreas makes insulin."},
    ...     {"id": "d2", "text": "Aspirin lowers the risk of a heart attack."},
    ...     {"id": "d3", "text": "The kidney filters blood."},
    ... ]
    >>> index = DocumentIndex.build(documents, encode, fingerprint="bag-of-words", show_progress=False)
    >>> hits = index.retrieve(["Which organ makes insulin?", "Aspirin after a heart attack?"], encode, k=1)
    >>> [[hit["id"] for hit in row] for row in hits]
    [['d1'], ['d2']]

    ```
    """

    def __init__(
        self,
        index: Any,
        documents: Dataset,
        *,
        kind: IndexKind,
        fingerprint: str,
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int | None = None,
        ef_search: int | None = None,
        pq_m: int | None = None,
        pq_bits: int | None = None,
        opq: bool | None = None,
        gpu_resources: Any = None,
        gpu_device: int | tuple[int, ...] | None = None,
    ) -> None:
        if index.ntotal != len(documents):
            raise ValueError(f"The faiss index holds {index.ntotal} vectors but there are {len(documents)} documents.")
        self._index = index
        self._documents = documents
        self._kind: IndexKind = kind
        self._fingerprint = fingerprint
        self._nlist = nlist
        self._nprobe = nprobe
        self._hnsw_m = hnsw_m
        self._ef_search = ef_search
        self._pq_m, self._pq_bits, self._opq = pq_m, pq_bits, opq
        # faiss GPU indexes do not own their resources: keep them alive as long as the index.
        self._gpu_resources = gpu_resources
        self._gpu_device = gpu_device

    # ------------------------------------------------------------------ properties

    @property
    def documents(self) -> Dataset:
        """The document store; row ``i`` is the document of faiss vector ``i``. Backed by the memory-mapped
        ``documents.arrow`` for a loaded (or streamed) index: reading a column or rows reads only those from disk."""
        return self._documents

    @property
    def dim(self) -> int:
        """Dimension of the document vectors."""
        return int(self._index.d)

    @property
    def kind(self) -> IndexKind:
        """``"flat"`` (exact), ``"ivf"``, ``"ivfpq"`` (compressed) or ``"hnsw"`` (approximate)."""
        return self._kind

    @property
    def fingerprint(self) -> str:
        """Identifies the encoder weights that produced the document vectors."""
        return self._fingerprint

    @property
    def device(self) -> str:
        """``"cpu"``, ``"cuda:N"`` when the faiss index lives on GPU ``N``, or ``"cuda:0,1,..."`` when it is sharded
        over those GPUs (``load(..., gpu_shards=True)``)."""
        if self._gpu_device is None:
            return "cpu"
        if isinstance(self._gpu_device, tuple):
            return "cuda:" + ",".join(map(str, self._gpu_device))
        return f"cuda:{self._gpu_device}"

    @property
    def faiss_index(self) -> Any:
        """The underlying faiss index (for inspection, e.g. ``faiss.serialize_index``; searching goes through
        :meth:`search` and :meth:`retrieve`)."""
        return self._index

    def set_search_parameters(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change how an approximate index searches, without rebuilding: ``nprobe`` (IVF and IVF-PQ, capped at
        ``nlist``) or ``ef_search`` (HNSW). Saved with the index. A parameter of the other kind is an error."""
        if nprobe is not None:
            if self._kind not in IVF_KINDS or nprobe < 1:
                raise ValueError(
                    f"nprobe must be >= 1 and needs an IVF index (ivf or ivfpq; this one is {self._kind!r})."
                )
            self._nprobe = min(nprobe, self._nlist)
            faiss_kinds.set_nprobe(_import_faiss(), self._index, self._nprobe, on_gpu=self._gpu_device is not None)
        if ef_search is not None:
            if self._kind != "hnsw" or ef_search < 1:
                raise ValueError(f"ef_search must be >= 1 and needs an HNSW index (this one is {self._kind!r}).")
            self._ef_search = ef_search
            self._index.hnsw.efSearch = ef_search

    def __len__(self) -> int:
        return len(self._documents)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self._kind!r}, num_documents={len(self)}, dim={self.dim}, "
            f"fingerprint={self._fingerprint!r}, device={self.device!r})"
        )

    def is_stale(self, fingerprint: str) -> bool:
        """Whether the index was built by encoder weights other than the ones identified by ``fingerprint``."""
        return fingerprint != self._fingerprint

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        documents: Dataset | Sequence[Mapping[str, Any]],
        encode_fn: EncodeFn,
        fingerprint: str,
        *,
        kind: IndexKind = "flat",
        batch_size: int = 64,
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
        train_points_per_list: int = _MAX_POINTS_PER_CENTROID,
        pq_m: int | None = None,
        pq_bits: int = DEFAULT_PQ_BITS,
        opq: bool = False,
        use_gpu: bool | None = None,
        show_progress: bool = True,
        distributed: bool | None = False,
    ) -> DocumentIndex | None:
        """Encode a corpus and index it.

        Under `accelerate launch` / torchrun (several processes), every process encodes its own contiguous block of
        the corpus and the main process assembles the index from the vectors the others send it over
        `torch.distributed` (see `jmlr_hf.retrieval.sharded`): the same index as one process builds (same vectors,
        rows and IVF training sample). Every process must then call this with the same corpus; the main process gets
        the index and the others `None`.

        Args:
            documents: A ``datasets.Dataset`` or a list of dicts, with at least ``id`` (unique) and ``text``
                (non-empty) and optionally ``title``. Other columns (``article_id``, ``section``, ...) are stored and
                returned with search results. The encoder sees :func:`document_text` of each row.
            encode_fn: Maps a list of texts to a float32 array ``[n, d]``. Vectors are L2-normalised by the index.
            fingerprint: Identifies the encoder weights; stored with the index to detect stale indexes.
            kind: ``"flat"`` (exact search), ``"ivf"`` (inverted lists, trained by k-means on the embeddings),
                ``"ivfpq"`` (inverted lists of product-quantised vectors: ``pq_m`` bytes per vector at 8 bits, e.g.
                96 instead of 1,536 for 384-d; see :mod:`jmlr_hf.retrieval.faiss_kinds`) or ``"hnsw"`` (graph,
                CPU only).
            batch_size: Number of documents per ``encode_fn`` call.
            nlist: IVF and IVF-PQ: number of inverted lists. Defaults to about ``4 * sqrt(n)``, limited so that every
                list has at least 39 training points.
            nprobe: IVF and IVF-PQ: number of lists visited per query (capped at ``nlist``). Higher is slower and
                more accurate.
            hnsw_m: HNSW only: number of graph neighbours per node.
            ef_search: HNSW only: size of the search queue. Higher is slower and more accurate.
            train_points_per_list: IVF and IVF-PQ: k-means trains on at most this many vectors per centroid (a
                seeded sample). 256, faiss's own cap, by default; fewer trains faster on millions of vectors (64 per
                list kept recall@10 at 0.98 on 1M clustered vectors, see docs/PERFORMANCE.md). IVF-PQ's sample is
                this many times ``max(nlist, 2**pq_bits)`` (its product quantiser trains ``2**pq_bits`` centroids
                per sub-vector, on the same sample): 65,536 vectors at the defaults, and at least ``2**pq_bits``
                documents are needed (fewer than 39 per centroid, 9,984 at 8 bits, logs a warning).
            pq_m: IVF-PQ only: sub-quantisers, i.e. bytes per vector at 8 bits; must divide the dimension. Defaults to
                the largest divisor of the dimension not above a quarter of it (96 for 384-d).
            pq_bits: IVF-PQ only: bits per sub-quantiser code (8: one byte, what GPU faiss supports best).
            opq: IVF-PQ only: learn an OPQ rotation in front of the quantiser (faiss's ``IndexPreTransform``):
                better recall on real embeddings, at a slower training.
            use_gpu: Put a flat, IVF or IVF-PQ index on a GPU (this process's, ``LOCAL_RANK``). ``None`` uses a GPU
                when faiss has GPU support and sees one; ``True`` without one is an error; an HNSW index stays on
                CPU (faiss has no GPU HNSW). To shard an index over all GPUs, load it with ``gpu_shards=True``.
            show_progress: Show a progress bar while encoding (the main process's).
            distributed: ``False`` (the default): encode in this process alone and return the index, whether or
                not other processes run (what code that builds on one process of a group needs). ``None``: share the
                encoding among the processes when this is one of several (a ``torch.distributed`` group, or
                ``WORLD_SIZE`` > 1 from the launcher) — every process of the group must then call this, and only
                the main process gets the index (the others ``None``); what `jmlr index` and the training recipe
                do. ``True``: as ``None``, but several processes are required. Opt-in, because a shared build is a
                collective: one process calling it alone would wait for the others forever.

        Raises:
            ValueError: On an invalid corpus (the message names the offending row or id) or invalid arguments.
            ImportError: When faiss is not installed.
            RuntimeError: When another process of a shared build failed (its error is named).
        """
        if isinstance(documents, IterableDataset):
            raise TypeError(
                "documents is a streamed IterableDataset: build it with DocumentIndex.build_streaming(documents, "
                "encode_fn, fingerprint, directory) (or from_retriever(..., directory=...)), which encodes it chunk by "
                "chunk and writes the index into the folder as it goes"
            )
        faiss = _import_faiss()
        _check_build_arguments(kind, fingerprint, batch_size, nlist, train_points_per_list, nprobe, hnsw_m, ef_search)
        faiss_kinds.check_kind_arguments(kind, pq_m, pq_bits, opq)

        dataset = prepare_documents(documents)
        num_documents = len(dataset)
        faiss_kinds.check_training_size(kind, num_documents, pq_bits, opq)
        if kind in IVF_KINDS:
            if nlist is None:
                nlist = _default_nlist(num_documents)
            elif nlist > num_documents:
                raise ValueError(f"nlist={nlist} is larger than the number of documents ({num_documents}).")
            elif num_documents < _MIN_POINTS_PER_CENTROID * nlist:
                logger.warning(
                    "nlist=%d is large for %d documents (k-means wants >= %d points per list); expect lower recall.",
                    nlist,
                    num_documents,
                    _MIN_POINTS_PER_CENTROID,
                )
            nprobe = min(nprobe, nlist)
        group = process_group(distributed)
        if group is None:
            on_gpu = _resolve_use_gpu(faiss, use_gpu, kind)
            batches = _encode_in_batches(dataset, encode_fn, batch_size, show_progress)
        else:
            on_gpu = bool(run_on_main(group, lambda: _resolve_use_gpu(faiss, use_gpu, kind)))
            shown = show_progress and group.is_main
            received = encode_blocks(
                dataset, lambda block: _encode_in_batches(block, encode_fn, batch_size, shown), group
            )
            if received is None:  # not the main process: its block went to the main process, which builds
                return None
            batches = received
        first = next(batches)
        dim = first.shape[1]
        if kind == "ivfpq":
            pq_m = faiss_kinds.resolve_pq_m(dim, pq_m)
        index, resources, device = _new_faiss_index(
            faiss, kind, dim, nlist, nprobe, hnsw_m, ef_search, on_gpu, pq_m=pq_m, pq_bits=pq_bits, opq=opq
        )

        if kind in IVF_KINDS:
            # k-means needs every vector before anything is added, so IVF keeps all embeddings in memory once.
            embeddings = np.empty((num_documents, dim), dtype=np.float32)
            embeddings[: len(first)] = first
            offset = len(first)
            for batch in batches:
                embeddings[offset : offset + len(batch)] = _check_dim(batch, dim)
                offset += len(batch)
            centroids = faiss_kinds.training_centroids(kind, nlist, pq_bits, opq)
            index.train(_training_sample(embeddings, centroids, train_points_per_list))
            index.add(embeddings)
            del embeddings
        else:
            index.add(first)
            for batch in batches:
                index.add(_check_dim(batch, dim))

        logger.info("Built a %s index of %d documents (dim=%d) on %s.", kind, num_documents, dim, device or "cpu")
        return cls(
            index,
            dataset,
            kind=kind,
            fingerprint=fingerprint,
            nlist=nlist if kind in IVF_KINDS else None,
            nprobe=nprobe if kind in IVF_KINDS else None,
            hnsw_m=hnsw_m if kind == "hnsw" else None,
            ef_search=ef_search if kind == "hnsw" else None,
            **_pq_fields(kind, pq_m, pq_bits, opq),
            gpu_resources=resources,
            gpu_device=device,
        )

    @classmethod
    def from_retriever(
        cls,
        documents: Dataset | Sequence[Mapping[str, Any]],
        retriever: Any,
        tokenizer: Any,
        *,
        max_length: int = 256,
        **build_kwargs: Any,
    ) -> DocumentIndex | None:
        """Build an index with a JMLR retriever's dense encoder, fingerprinted with its current weights.

        Under `accelerate launch` / torchrun every process calls it and encodes its share (see :meth:`build`); the
        main process gets the index, the others `None`.

        Args:
            documents: The corpus, as in :meth:`build`.
            retriever: An object with ``encode_dense_texts(texts, tokenizer, *, max_length, batch_size, is_query)``
                and ``weights_fingerprint()`` (the retriever of ``jmlr_hf``).
            tokenizer: The retriever's tokenizer.
            max_length: Maximum number of tokens per document.
            **build_kwargs: Passed to :meth:`build` (``kind``, ``batch_size``, ``nlist``, ...).
        """
        encode_fn = encode_documents_with(retriever, tokenizer, max_length=max_length)
        if isinstance(documents, IterableDataset) or "directory" in build_kwargs:
            if build_kwargs.get("directory") is None:
                raise TypeError("a streamed corpus is written into a folder as it is indexed: pass directory=...")
            directory = build_kwargs.pop("directory")
            return cls.build_streaming(
                documents, encode_fn, retriever.weights_fingerprint(), directory, **build_kwargs
            )
        return cls.build(documents, encode_fn, retriever.weights_fingerprint(), **build_kwargs)

    @classmethod
    def build_streaming(
        cls,
        documents: IterableDataset | Iterable[Mapping[str, Any]],
        encode_fn: EncodeFn,
        fingerprint: str,
        directory: str | os.PathLike[str],
        *,
        kind: IndexKind = "flat",
        batch_size: int = 64,
        chunk_size: int = _STREAM_CHUNK,
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
        train_points_per_list: int = _MAX_POINTS_PER_CENTROID,
        pq_m: int | None = None,
        pq_bits: int = DEFAULT_PQ_BITS,
        opq: bool = False,
        use_gpu: bool | None = None,
        show_progress: bool = True,
        distributed: bool | None = False,
    ) -> DocumentIndex | None:
        """Index a corpus that does not fit in memory, e.g. a Hub corpus read with `load_dataset(..., streaming=True)`
        (MedRAG's PubMed has 23.9M snippets), straight into `directory`.

        The corpus is read `chunk_size` rows at a time; each chunk is checked, encoded (`batch_size` texts per
        `encode_fn` call, shortest first), added to the faiss index and appended to the document store on disk
        before the next is read, so memory holds one chunk of texts and the faiss index itself, never the corpus.
        The folder is written like [`save`] writes it, crash-safely: into a temporary sibling swapped in at the
        end, with the config last; a failure or a kill leaves `directory` as it was. The result is the same index,
        file for file in content, as `build` on the same rows followed by `save` (same vectors in the same order,
        same document rows and features).

        The rows need `id` (unique) and `text` (non-empty), as for [`build`], and the same fields in every row.
        Unique ids are checked within each chunk as it is read, and across chunks at the end (8 bytes of hash per
        document are kept for that). An IVF index needs `nlist` up front (a stream has no length): k-means trains on
        the first `nlist * train_points_per_list` documents, so shuffle a corpus sorted by topic (IterableDataset
        `.shuffle(buffer_size=...)`) before indexing it as IVF.

        Under `accelerate launch` / torchrun (`distributed`, as in [`build`]) every process reads the stream and
        encodes every `world_size`-th chunk of it (keeping no other rows); the main process writes the documents and
        the index from the vectors the others send it over `torch.distributed`, and is the only one to touch
        `directory` (the nodes need not share a filesystem). The folder is the one a single process writes.

        Returns the index, loaded from `directory` (the document store memory-mapped, as by [`load`]); `None` on the
        processes other than the main one of a shared build.
        """
        faiss = _import_faiss()
        _check_build_arguments(kind, fingerprint, batch_size, nlist, train_points_per_list, nprobe, hnsw_m, ef_search)
        faiss_kinds.check_kind_arguments(kind, pq_m, pq_bits, opq)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
        if kind in IVF_KINDS and nlist is None:
            raise ValueError(
                f"a streamed corpus has no length up front: pass nlist for an {kind} index (about 4 * sqrt(number of "
                "documents)), or build a flat or HNSW index"
            )
        group = process_group(distributed)
        if group is None:
            on_gpu = _resolve_use_gpu(faiss, use_gpu, kind)
            directory = _check_index_directory(directory)
        else:
            checked = run_on_main(
                group, lambda: (_resolve_use_gpu(faiss, use_gpu, kind), _check_index_directory(directory))
            )
            if not group.is_main:  # encodes its chunks for the main process, which alone writes the folder
                with tqdm(disable=True) as progress:
                    encode = _chunk_encoder(encode_fn, batch_size, progress)
                    for _ in encode_stream(_stream_chunks(documents, chunk_size), encode, group):
                        pass
                return None
            on_gpu, directory = checked
        centroids = faiss_kinds.training_centroids(kind, nlist or 0, pq_bits, opq)
        train_size = centroids * train_points_per_list
        with atomic_directory(directory) as tmp, _DocumentWriter(tmp / DOCUMENTS_FILE) as writer:
            index = resources = device = None
            pending: list[np.ndarray] = []  # IVF: the vectors k-means trains on, until there are enough
            id_hashes: list[np.ndarray] = []

            def keep_documents(chunk: Dataset) -> None:
                id_hashes.append(_hash_ids(chunk["id"]))
                writer.write(chunk)

            with tqdm(desc="Encoding documents", unit="doc", disable=not show_progress) as progress:
                # Each chunk is checked as it is read, its documents written, and its vectors come in stream order.
                vectors = _stream_vectors(
                    _stream_chunks(documents, chunk_size),
                    _chunk_encoder(encode_fn, batch_size, progress),
                    keep_documents,
                    group,
                )
                for embeddings in vectors:
                    if index is None:
                        if kind == "ivfpq":
                            pq_m = faiss_kinds.resolve_pq_m(embeddings.shape[1], pq_m)
                        index, resources, device = _new_faiss_index(
                            faiss, kind, embeddings.shape[1], nlist, nprobe, hnsw_m, ef_search, on_gpu,
                            pq_m=pq_m, pq_bits=pq_bits, opq=opq,
                        )  # fmt: skip
                    embeddings = _check_dim(embeddings, index.d)
                    if kind in IVF_KINDS and not index.is_trained:
                        pending.append(embeddings)
                        if sum(len(part) for part in pending) >= train_size:
                            _train_and_add(index, pending, centroids, train_points_per_list, kind, pq_bits, opq)
                            pending = []
                    else:
                        index.add(embeddings)
            if writer.num_rows == 0:
                raise ValueError("Cannot build an index from an empty corpus.")
            if pending:
                if writer.num_rows < nlist:
                    raise ValueError(f"nlist={nlist} is larger than the number of documents ({writer.num_rows}).")
                _train_and_add(index, pending, centroids, train_points_per_list, kind, pq_bits, opq)
            writer.close()
            _check_unique_ids(np.concatenate(id_hashes), tmp / DOCUMENTS_FILE)
            cpu_index = index if device is None else faiss.index_gpu_to_cpu(index)
            config = _index_config(
                kind,
                int(index.d),
                writer.num_rows,
                fingerprint,
                nlist if kind in IVF_KINDS else None,
                min(nprobe, nlist) if kind in IVF_KINDS else None,
                hnsw_m if kind == "hnsw" else None,
                ef_search if kind == "hnsw" else None,
                **_pq_fields(kind, pq_m, pq_bits, opq),
            )
            _finish_index_directory(faiss, cpu_index, tmp, config)
        logger.info("Built a %s index of %d streamed documents into %s.", kind, writer.num_rows, directory)
        # Every reference to the built index goes before the folder is loaded (`cpu_index` is the same index on CPU):
        # otherwise the faiss index is held twice at the end of the build (benchmarks/index_memory.py saw 2x).
        del index, resources, cpu_index
        return cls.load(directory, use_gpu=use_gpu, verify_checksums=False)

    # ------------------------------------------------------------------ search

    def search(self, query_embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` documents of each query embedding.

        Args:
            query_embeddings: ``[q, d]`` (or a single ``[d]``) query vectors; they are L2-normalised here.
            k: Number of documents per query, clipped to the number of documents.

        Returns:
            ``(scores, indices)``: float32 cosine similarities ``[q, k]`` in decreasing order and int64 row indices
            into :attr:`documents` ``[q, k]``. IVF and HNSW can find fewer than ``k`` documents: the missing
            slots (at the end of a row) have index ``-1`` and score ``-inf``.

        faiss GPU indexes accept ``k`` up to 2048.
        """
        check_count(k, "k")
        queries = _to_numpy(query_embeddings)
        if queries.ndim == 1:
            queries = queries[None, :]
        return self._search(_normalize_embeddings(queries, dim=self.dim), k)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # `queries` are already normalised float32 [q, d].
        k = min(k, len(self))
        if len(queries) == 0:
            return np.empty((0, k), dtype=np.float32), np.empty((0, k), dtype=np.int64)
        scores, indices = self._index.search(queries, k)
        scores = np.asarray(scores, dtype=np.float32)
        indices = np.asarray(indices, dtype=np.int64)
        # faiss marks missing results with -1 and -FLT_MAX; -inf cannot be mistaken for a real similarity.
        scores[indices < 0] = -np.inf
        return scores, indices

    def retrieve(
        self,
        queries: Sequence[str],
        encode_query_fn: EncodeFn,
        k: int,
        *,
        batch_size: int = 64,
        show_progress: bool = True,
    ) -> list[list[dict[str, Any]]]:
        """Top-``k`` documents of each query, as dicts.

        Args:
            queries: Query texts (e.g. questions, with their options).
            encode_query_fn: Maps a list of texts to a float32 array ``[n, d]``, e.g. :func:`encode_queries_with`.
            k: Number of documents per query (clipped to the number of documents).
            batch_size: Number of queries per ``encode_query_fn`` call and per faiss search.
            show_progress: Show a progress bar.

        Returns:
            For each query, its hits by decreasing score. A hit has the stored columns of the document (``id``,
            ``text``, ``article_id``, ...), ``title`` (``""`` when the document has none) and ``score`` (cosine).
        """
        queries = check_queries(queries)
        check_count(k, "k")
        check_count(batch_size, "batch_size")
        results: list[list[dict[str, Any]]] = []
        with tqdm(total=len(queries), desc="Retrieving", unit="query", disable=not show_progress) as progress:
            for start in range(0, len(queries), batch_size):
                batch = queries[start : start + batch_size]
                embeddings = _normalize_embeddings(encode_query_fn(batch), expected_rows=len(batch), dim=self.dim)
                scores, indices = self._search(embeddings, k)
                results.extend(self._hits(scores, indices))
                progress.update(len(batch))
        return results

    def _hits(self, scores: np.ndarray, indices: np.ndarray) -> list[list[dict[str, Any]]]:
        # One gather for the whole batch (datasets row access has a large per-call overhead), and one dict per distinct
        # document, copied per hit: queries of a batch often share documents. `datasets` gathers rows as one-row
        # slices of their record batches (`fast_gather`), so a memory-mapped store reads only the hits' rows.
        rows = np.unique(indices[indices >= 0]).tolist()
        columns = self._documents[rows] if rows else {}
        documents: dict[int, dict[str, Any]] = {}
        for position, row in enumerate(rows):
            document = {name: values[position] for name, values in columns.items()}
            if document.get("title") is None:
                document["title"] = ""
            documents[row] = document
        return [
            [{**documents[row], "score": score} for score, row in zip(row_scores, row_indices) if row >= 0]
            for row_scores, row_indices in zip(scores.tolist(), indices.tolist())
        ]

    # ------------------------------------------------------------------ persistence

    def config(self) -> dict[str, Any]:
        """The index's metadata as written to ``index_config.json`` (without the checksums)."""
        return _index_config(
            self._kind,
            self.dim,
            len(self),
            self._fingerprint,
            self._nlist,
            self._nprobe,
            self._hnsw_m,
            self._ef_search,
            pq_m=self._pq_m,
            pq_bits=self._pq_bits,
            opq=self._opq,
        )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the index to ``directory`` atomically.

        Everything is written to a temporary sibling directory, which then replaces ``directory`` (one atomic
        exchange on Linux; elsewhere the old directory is renamed aside, the new one renamed into place, and a kill
        between the two is undone by the next save), and the old one is deleted. If anything fails or the process
        is killed before the swap, ``directory`` is untouched; the temporary directory is removed at once, or by
        the next save after a kill (:func:`jmlr_hf.utils.atomic.atomic_directory`). Only an existing
        index directory (or an empty directory) is replaced; any other non-empty directory is refused. Call this
        from a single process (e.g. the main process under ``accelerate``).

        Returns:
            The directory.
        """
        faiss = _import_faiss()
        directory = _check_index_directory(directory)
        with atomic_directory(directory) as tmp:
            cpu_index = self._index if self._gpu_device is None else faiss.index_gpu_to_cpu(self._index)
            _write_documents(self._documents, tmp / DOCUMENTS_FILE)
            _finish_index_directory(faiss, cpu_index, tmp, self.config())
        logger.info("Saved the %s index of %d documents to %s.", self._kind, len(self), directory)
        return directory

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        expected_fingerprint: str | None = None,
        on_stale: Literal["raise", "warn"] = "raise",
        use_gpu: bool | None = None,
        verify_checksums: bool = True,
        nprobe: int | None = None,
        ef_search: int | None = None,
        gpu_shards: bool = False,
    ) -> DocumentIndex:
        """Load an index written by :meth:`save`.

        Args:
            directory: The index directory.
            expected_fingerprint: Fingerprint of the retriever weights the index will be used with. When it differs
                from the one the index was built with, the index is stale (it must be rebuilt).
            on_stale: ``"raise"`` a :class:`StaleIndexError` or ``"warn"`` (:class:`StaleIndexWarning`) and load
                anyway.
            use_gpu: As in :meth:`build`.
            gpu_shards: Shard the index over all the GPUs faiss sees (each holds 1/n of the vectors; faiss merges
                the results), for an index too large for one GPU's memory. Needs GPU faiss and at least one GPU
                (a `RuntimeError` otherwise) and a flat, IVF or IVF-PQ index (HNSW has no GPU version: a
                `ValueError`); ``use_gpu=False`` with it is a contradiction (a `ValueError`).
            verify_checksums: Check the sha256 of the files (reads them once more; disable for very large indexes
                that are known to be intact).
            nprobe: Override the stored IVF / IVF-PQ ``nprobe``.
            ef_search: Override the stored HNSW ``ef_search``.

        Raises:
            FileNotFoundError: When the directory or one of its files is missing.
            CorruptIndexError: When a file does not match its checksum or the files are inconsistent.
            StaleIndexError: When the index is stale and ``on_stale="raise"``.
        """
        # The checks and the reading are the remote code's (`read_index_folder`): one reader for both.
        saved = read_index_folder(
            directory,
            expected_fingerprint=expected_fingerprint,
            on_stale=on_stale,
            verify_checksums=verify_checksums,
            nprobe=nprobe,
            ef_search=ef_search,
        )
        faiss = _import_faiss()
        cpu_index, config, kind = saved.faiss_index, saved.config, saved.config["kind"]
        # Wrapped as opened (memory-mapped, or read whole for format 1), not copied into the HF datasets cache.
        documents = documents_dataset(saved)
        nprobe, ef_search = config.get("nprobe"), config.get("ef_search")
        index, resources, device = cpu_index, None, None
        if gpu_shards:
            if use_gpu is False:
                raise ValueError(
                    "gpu_shards=True puts the index on the GPUs; use_gpu=False keeps it on CPU: pick one."
                )
            index, resources, device = faiss_kinds.shard_over_gpus(faiss, cpu_index, kind)
        elif _resolve_use_gpu(faiss, use_gpu, kind):
            index, resources, device = _to_gpu(faiss, cpu_index, kind)

        return cls(
            index,
            documents,
            kind=kind,
            fingerprint=config["fingerprint"],
            nlist=config.get("nlist"),
            nprobe=nprobe if kind in IVF_KINDS else None,
            hnsw_m=config.get("hnsw_m"),
            ef_search=ef_search if kind == "hnsw" else None,
            **_pq_fields(kind, config.get("pq_m"), config.get("pq_bits"), config.get("opq")),
            gpu_resources=resources,
            gpu_device=device,
        )


def load_index(
    index: str | os.PathLike[str],
    *,
    revision: str | None = None,
    expected_fingerprint: str | None = None,
    on_stale: Literal["raise", "warn"] = "warn",
    token: str | None = None,
    cache_dir: str | None = None,
    **load_kwargs: Any,
) -> DocumentIndex:
    """A `DocumentIndex` from a local folder or a Hub index repository (downloaded once into the Hub cache).

    Like `RagRetriever` loading its index beside the model, this is how a model finds the index its config records
    (`JMLRForCausalLM.load_index`); publishing one is `jmlr_hf.hub.push_index`.
    """
    local_files_only = load_kwargs.pop("local_files_only", False)
    folder = download_index(str(index), revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only)
    return DocumentIndex.load(folder, expected_fingerprint=expected_fingerprint, on_stale=on_stale, **load_kwargs)


def check_queries(queries: Any) -> list[str]:
    """`queries` as a list of texts, or a `TypeError` / `ValueError` naming `queries` (one string where the list is
    meant) or `queries[i]` (null, not a string, blank, NUL, undecodable): the rule of both indexes' `retrieve`."""
    if isinstance(queries, (str, bytes)) or not isinstance(queries, Iterable):
        raise TypeError(f"queries must be a list of strings, not a single {type(queries).__name__}.")
    return [check_text_argument(query, f"queries[{i}]") for i, query in enumerate(queries)]


def _text_columns(dataset: Dataset) -> list[str]:
    return [name for name in ("title", "text") if name in dataset.column_names]


def _encode_in_batches(
    dataset: Dataset, encode_fn: EncodeFn, batch_size: int, show_progress: bool
) -> Iterator[np.ndarray]:
    """Yield normalised embeddings in document order, window by window, so flat and HNSW indexes never hold a second
    copy of the corpus.

    Within each window of `_SORT_WINDOW_BATCHES` batches the texts are encoded shortest first: a batch of texts of
    similar length wastes little on padding (`benchmarks/index_encoding.py` measures the gain), and the window keeps
    the memory bounded. The vectors go back to document order before they are yielded.
    """
    window = batch_size * _SORT_WINDOW_BATCHES
    with tqdm(total=len(dataset), desc="Encoding documents", unit="doc", disable=not show_progress) as progress:
        for chunk in dataset.select_columns(_text_columns(dataset)).iter(batch_size=window):
            rows = [dict(zip(chunk, values)) for values in zip(*chunk.values())]
            yield _encode_window([document_text(row) for row in rows], encode_fn, batch_size, progress)


def _chunk_encoder(encode_fn: EncodeFn, batch_size: int, progress: tqdm) -> Callable[[Dataset], np.ndarray]:
    """`chunk -> its normalised vectors`: how a streamed build encodes each chunk of rows it reads."""

    def encode(chunk: Dataset) -> np.ndarray:
        columns = chunk.select_columns(_text_columns(chunk)).to_dict()
        texts = [document_text(dict(zip(columns, values))) for values in zip(*columns.values())]
        return _encode_window(texts, encode_fn, batch_size, progress)

    return encode


def _stream_vectors(
    chunks: Iterable[Dataset],
    encode: Callable[[Dataset], np.ndarray],
    keep_documents: Callable[[Dataset], None],
    group: ShardGroup | None,
) -> Iterator[np.ndarray]:
    """The vectors of a stream's chunks, one array per chunk in stream order, `keep_documents` called on every chunk
    as it is read: encoded here, or, in a shared build's main process, by the processes each chunk belongs to."""
    if group is not None:
        yield from encode_stream(chunks, encode, group, keep_documents)
        return
    for chunk in chunks:
        keep_documents(chunk)
        yield encode(chunk)


def _encode_window(texts: list[str], encode_fn: EncodeFn, batch_size: int, progress: tqdm) -> np.ndarray:
    """The normalised embeddings `[len(texts), d]` of `texts`, in their order, encoded shortest first in batches of
    `batch_size` (a batch of similar lengths wastes little on padding)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    embeddings = None
    for start in range(0, len(order), batch_size):
        positions = order[start : start + batch_size]
        batch = _normalize_embeddings(encode_fn([texts[i] for i in positions]), expected_rows=len(positions))
        if embeddings is None:
            embeddings = np.empty((len(texts), batch.shape[1]), dtype=np.float32)
        embeddings[positions] = _check_dim(batch, embeddings.shape[1])
        progress.update(len(positions))
    return embeddings


def _check_build_arguments(
    kind: str,
    fingerprint: str,
    batch_size: int,
    nlist: int | None,
    train_points_per_list: int,
    nprobe: int,
    hnsw_m: int,
    ef_search: int,
) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}.")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError("fingerprint must be a non-empty string identifying the encoder weights.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if nlist is not None and nlist < 1:
        raise ValueError(f"nlist must be >= 1, got {nlist}.")
    if train_points_per_list < _MIN_POINTS_PER_CENTROID:
        raise ValueError(f"train_points_per_list must be >= {_MIN_POINTS_PER_CENTROID}, got {train_points_per_list}.")
    if nprobe < 1 or hnsw_m < 2 or ef_search < 1:
        raise ValueError(f"Invalid search parameters: nprobe={nprobe}, hnsw_m={hnsw_m}, ef_search={ef_search}.")


def _new_faiss_index(
    faiss: ModuleType,
    kind: str,
    dim: int,
    nlist: int | None,
    nprobe: int,
    hnsw_m: int,
    ef_search: int,
    on_gpu: bool,
    *,
    pq_m: int | None = None,
    pq_bits: int = DEFAULT_PQ_BITS,
    opq: bool = False,
) -> tuple[Any, Any, int | None]:
    """An empty faiss index of `kind` (on the GPU when `on_gpu`), with its GPU resources and device."""
    cpu_index = faiss_kinds.new_cpu_index(
        faiss, kind, dim, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search,
        pq_m=pq_m, pq_bits=pq_bits, opq=opq,
    )  # fmt: skip
    if not on_gpu:
        return cpu_index, None, None
    # The GPU copies nprobe, and IVF trains (k-means) on the GPU too, which is where it is slow on CPU.
    return _to_gpu(faiss, cpu_index, kind)


def _train_and_add(
    index: Any, parts: list[np.ndarray], centroids: int, per_centroid: int, kind: str, pq_bits: int, opq: bool
) -> None:
    """Train an IVF or IVF-PQ index on (a seeded sample of) the buffered vectors, then add them."""
    embeddings = np.concatenate(parts)
    faiss_kinds.check_training_size(kind, len(embeddings), pq_bits, opq)
    index.train(_training_sample(embeddings, centroids, per_centroid))
    index.add(embeddings)


def _pq_fields(kind: str, pq_m: int | None, pq_bits: int | None, opq: bool | None) -> dict[str, Any]:
    """The IVF-PQ settings an index records: `None` for the other kinds."""
    if kind != "ivfpq":
        return {"pq_m": None, "pq_bits": None, "opq": None}
    return {"pq_m": pq_m, "pq_bits": pq_bits, "opq": bool(opq)}


def _index_config(
    kind: str,
    dim: int,
    num_documents: int,
    fingerprint: str,
    nlist: int | None,
    nprobe: int | None,
    hnsw_m: int | None,
    ef_search: int | None,
    *,
    pq_m: int | None = None,
    pq_bits: int | None = None,
    opq: bool | None = None,
) -> dict[str, Any]:
    """An index's metadata as written to ``index_config.json`` (without the checksums)."""
    faiss = _import_faiss()
    return {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "metric": METRIC,
        "dim": dim,
        "num_documents": num_documents,
        "fingerprint": fingerprint,
        "nlist": nlist,
        "nprobe": nprobe,
        "hnsw_m": hnsw_m,
        "ef_search": ef_search,
        "pq_m": pq_m,
        "pq_bits": pq_bits,
        "opq": opq,
        "faiss_version": getattr(faiss, "__version__", None),
    }


def _check_index_directory(directory: str | os.PathLike[str]) -> Path:
    """`directory` as a path, when an index may be written there: absent, empty, or an index folder."""
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise FileExistsError(f"{directory} exists and is not a directory.")
        if any(directory.iterdir()) and not (directory / CONFIG_FILE).exists():
            raise FileExistsError(
                f"{directory} is a non-empty directory without {CONFIG_FILE}: refusing to replace it with an index."
            )
    return directory


def _finish_index_directory(faiss: ModuleType, cpu_index: Any, folder: Path, config: dict[str, Any]) -> None:
    """Write the faiss index and, last, the config with the files' checksums: a folder with a config is complete.
    `folder` is the temporary directory `atomic_directory` renames into place, so plain writes are enough."""
    faiss.write_index(cpu_index, str(folder / INDEX_FILE))
    config = dict(config)
    config["sha256"] = {name: file_sha256(folder / name) for name in (INDEX_FILE, DOCUMENTS_FILE)}
    config["config_sha256"] = index_config_sha256(config)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _stream_chunks(documents: IterableDataset | Iterable[Mapping[str, Any]], chunk_size: int) -> Iterator[Dataset]:
    """The rows of a streamed corpus, `chunk_size` at a time, each chunk a small in-memory `Dataset` with the
    features of the first chunk (or of the `IterableDataset`, when it knows them)."""
    if isinstance(documents, Dataset):
        raise TypeError("documents is an in-memory Dataset: use DocumentIndex.build (then save)")
    features: Features | None = None
    if isinstance(documents, IterableDataset):
        features = documents.features
        batches: Iterable[dict[str, list[Any]]] = documents.iter(batch_size=chunk_size)
    elif isinstance(documents, Iterable) and not isinstance(documents, (str, bytes, Mapping)):
        batches = _row_batches(documents, chunk_size)
    else:
        raise TypeError(
            f"documents must be a datasets.IterableDataset or an iterable of dicts, got {type(documents).__name__}."
        )
    row = 0
    id_type: type | None = None
    for columns in batches:
        missing = [name for name in ("id", "text") if name not in columns]
        if missing:
            raise ValueError(
                f"Document rows {row} to {row + len(next(iter(columns.values()), []))} have no "
                f"{' or '.join(repr(m) for m in missing)} field (fields: {sorted(columns)})."
            )
        if "score" in columns:
            raise ValueError("Documents cannot have a 'score' column: search results use that key. Rename the column.")
        if features is not None and set(columns) != set(features):
            raise ValueError(
                f"Document rows from {row} on have the fields {sorted(columns)}, the first rows {sorted(features)}: "
                "a streamed corpus needs the same fields in every row."
            )
        # Before Arrow sees the rows (a non-string text, ids of two types would fail inside it, unnamed).
        id_type = check_document_rows(
            columns["id"], columns["text"], start=row, titles=columns.get("title"), id_type=id_type
        )
        chunk = columns_dataset({name: columns[name] for name in (features or columns)}, features, start=row)
        features = chunk.features
        row += len(chunk)
        yield chunk


def _row_batches(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[dict[str, list[Any]]]:
    """Columns of `size` rows at a time from an iterable of dicts (the union of their keys, in first-seen order;
    a key a row lacks is None there)."""
    batch: list[Mapping[str, Any]] = []
    for number, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"Document row {number} is a {type(row).__name__}, expected a dict.")
        batch.append(row)
        if len(batch) == size:
            yield _columns(batch)
            batch = []
    if batch:
        yield _columns(batch)


def _columns(rows: list[Mapping[str, Any]]) -> dict[str, list[Any]]:
    names = list(dict.fromkeys(key for row in rows for key in row))
    return {name: [row.get(name) for row in rows] for name in names}


def _hash_ids(ids: Sequence[Any]) -> np.ndarray:
    """8 bytes of blake2b per id (of its type and value, so `1` and `"1"` differ): enough to find duplicate ids
    among millions of documents without keeping the ids themselves."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(repr(doc_id).encode("utf-8"), digest_size=8).digest(), "little")
            for doc_id in ids
        ],
        dtype=np.uint64,
    )


def _check_unique_ids(hashes: np.ndarray, documents_path: Path) -> None:
    """Raise `ValueError` naming a duplicate id and its rows. Equal hashes are confirmed on the ids themselves,
    read back from the written document store (only the rows whose hashes collide), so a hash collision is never
    reported as a duplicate."""
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    same = np.nonzero(ordered[1:] == ordered[:-1])[0]
    if not len(same):
        return
    pairs = [tuple(sorted((int(order[position]), int(order[position + 1])))) for position in same]
    ids = gather_column(documents_path, "id", [row for pair in pairs for row in pair])
    for number, (first, second) in enumerate(pairs):
        if ids[2 * number] == ids[2 * number + 1]:
            raise ValueError(f"Duplicate document id {ids[2 * number]!r} at rows {first} and {second}.")


def _check_dim(embeddings: np.ndarray, dim: int) -> np.ndarray:
    if embeddings.shape[1] != dim:
        raise ValueError(f"The encoder returned dimension {embeddings.shape[1]} after returning dimension {dim}.")
    return embeddings


def _training_sample(embeddings: np.ndarray, nlist: int, per_list: int = _MAX_POINTS_PER_CENTROID) -> np.ndarray:
    """All embeddings, or a seeded sample of `per_list` per centroid when there are more (k-means subsamples above 256
    anyway). `nlist` is the largest number of centroids one k-means trains (`faiss_kinds.training_centroids`)."""
    limit = per_list * nlist
    if len(embeddings) <= limit:
        return embeddings
    rows = np.sort(np.random.default_rng(_TRAIN_SAMPLE_SEED).choice(len(embeddings), size=limit, replace=False))
    return embeddings[rows]


__all__ = [
    "CONFIG_FILE",
    "DOCUMENTS_FILE",
    "INDEX_FILE",
    "INDEX_REPO_TYPE",
    "CorruptIndexError",
    "DocumentIndex",
    "StaleIndexError",
    "StaleIndexWarning",
    "document_text",
    "encode_documents_with",
    "encode_queries_with",
    "load_index",
]
