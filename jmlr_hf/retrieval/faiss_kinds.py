"""The faiss side of `DocumentIndex`'s kinds: how each index is made, how big a sample trains it, how its search is
tuned, and how it goes to one GPU or is sharded over all of them.

Kinds (all inner product over L2-normalised vectors, i.e. cosine):

* ``flat``: exact search, 4 bytes per dimension per vector;
* ``ivf``: inverted lists (k-means, ``nlist`` lists), full vectors in the lists;
* ``ivfpq``: inverted lists whose vectors are product-quantised: the vector is cut into ``pq_m`` sub-vectors and each
  is stored as the ``pq_bits``-bit id of its nearest of ``2**pq_bits`` centroids, so a 384-d MiniLM vector takes
  ``pq_m`` bytes (96 by default) instead of 1,536. With ``opq=True`` a learnt rotation (OPQ) is applied first
  (faiss's ``IndexPreTransform``): it balances the variance between the sub-vectors, which costs training time and
  buys recall on real embeddings;
* ``hnsw``: a graph over the full vectors (CPU only: faiss has no GPU HNSW).

The IVF-PQ index is made with the constructors, not `faiss.index_factory`: the factory's ``PQ<m>`` switches on
polysemous training (a code re-ordering used only by polysemous search, which this project does not use), which made
training 50x slower in a measurement on this project's machine (104 s against 1.8 s for 3,000 vectors).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..models.retrieval_jmlr import IVF_INDEX_KINDS

if TYPE_CHECKING:
    from types import ModuleType

logger = logging.getLogger(__name__)

IVF_KINDS = IVF_INDEX_KINDS  # the kinds with inverted lists: nlist, nprobe and a k-means training sample
DEFAULT_PQ_BITS = 8  # 256 centroids per sub-quantiser: one byte per sub-vector, and what GPU faiss supports best
MAX_PQ_BITS = 16
OPQ_CENTROIDS = 256  # faiss's OPQMatrix trains its own 8-bit product quantiser, whatever pq_bits is
# faiss k-means warns below 39 training points per centroid and subsamples above 256 per centroid.
MIN_POINTS_PER_CENTROID = 39
MAX_POINTS_PER_CENTROID = 256


def default_pq_m(dim: int) -> int:
    """The default number of sub-quantisers: the largest divisor of `dim` not above `dim / 4`, so about 4 dimensions
    per one-byte code (96 bytes for a 384-d MiniLM vector, 16x smaller than flat).

    Measured on the MedQuAD passages (29,578 MiniLM vectors, 1,000 MedQuAD questions, nlist 688, nprobe 64; see
    docs/PERFORMANCE.md, "Searching"): recall@10 against exact search 0.824 at pq_m = 96, where IVF without
    compression (the ceiling of any IVF-PQ at that nprobe) reached 0.891; pq_m = 48 lost much more (0.717), pq_m =
    192 little (0.875) for twice the bytes and a search slower than exact search on CPU. dim/4 is the middle."""
    target = max(1, dim // 4)
    return next(m for m in range(target, 0, -1) if dim % m == 0)


def resolve_pq_m(dim: int, pq_m: int | None) -> int:
    """`pq_m`, or the default for `dim`; a `ValueError` listing the valid values when it does not divide `dim`."""
    if pq_m is None:
        return default_pq_m(dim)
    if dim % pq_m:
        divisors = [m for m in range(1, dim + 1) if dim % m == 0]
        raise ValueError(
            f"pq_m={pq_m} does not divide the vector dimension {dim}: product quantisation cuts each vector into "
            f"pq_m equal sub-vectors. Pick one of {divisors} (default: {default_pq_m(dim)})."
        )
    return pq_m


def check_kind_arguments(kind: str, pq_m: int | None, pq_bits: int, opq: bool) -> None:
    """The IVF-PQ options, checked before anything is encoded; given to another kind, they are an error (an accepted
    option must do something)."""
    if kind != "ivfpq":
        if pq_m is not None or pq_bits != DEFAULT_PQ_BITS or opq:
            raise ValueError(f"pq_m, pq_bits and opq are options of kind='ivfpq', not of kind={kind!r}.")
        return
    if pq_m is not None and (not isinstance(pq_m, int) or pq_m < 1):
        raise ValueError(f"pq_m must be a positive integer, got {pq_m!r}.")
    if not isinstance(pq_bits, int) or not 1 <= pq_bits <= MAX_PQ_BITS:
        raise ValueError(f"pq_bits must be an integer from 1 to {MAX_PQ_BITS}, got {pq_bits!r}.")


def training_centroids(kind: str, nlist: int, pq_bits: int, opq: bool) -> int:
    """The largest number of centroids one k-means of this index trains: the training sample is this many times
    `train_points_per_list`. IVF trains `nlist` lists; IVF-PQ also `2**pq_bits` centroids per sub-quantiser (on the
    residuals of the same sample), and OPQ 256."""
    if kind != "ivfpq":
        return nlist
    return max(nlist, 2**pq_bits, OPQ_CENTROIDS if opq else 0)


def check_training_size(kind: str, num_vectors: int, pq_bits: int, opq: bool) -> None:
    """IVF-PQ needs at least as many training vectors as PQ centroids (`2**pq_bits`, 256 with OPQ): fewer is a
    `ValueError`; fewer than 39 per centroid (9,984 at 8 bits) trains poor codes, which is logged as a warning."""
    if kind != "ivfpq":
        return
    centroids = max(2**pq_bits, OPQ_CENTROIDS if opq else 0)
    what = f"IVF-PQ with pq_bits={pq_bits}" + (" and OPQ" if opq else "")
    if num_vectors < centroids:
        raise ValueError(
            f"{what} trains {centroids} centroids per sub-quantiser: it needs at least {centroids} documents to "
            f"train on, and has {num_vectors}. Use kind='flat' or 'ivf' for a corpus this small"
            + ("" if opq else ", or a smaller pq_bits")
            + "."
        )
    if num_vectors < MIN_POINTS_PER_CENTROID * centroids:
        logger.warning(
            "%s trains on %d vectors, fewer than the %d (%d per centroid) that k-means wants: expect poorer codes "
            "and lower recall (a flat or IVF index is exact or near it at this size).",
            what,
            num_vectors,
            MIN_POINTS_PER_CENTROID * centroids,
            MIN_POINTS_PER_CENTROID,
        )


def new_cpu_index(
    faiss: ModuleType,
    kind: str,
    dim: int,
    *,
    nlist: int | None,
    nprobe: int,
    hnsw_m: int,
    ef_search: int,
    pq_m: int | None = None,
    pq_bits: int = DEFAULT_PQ_BITS,
    opq: bool = False,
) -> Any:
    """An empty CPU faiss index of `kind` over `dim`-d vectors, inner product, with its search parameters set."""
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        # faiss's default construction queue (40) is small for wide embeddings; 2*M is a cheap improvement.
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        index.hnsw.efSearch = ef_search
        return index
    if kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = nprobe
        return index
    if kind != "ivfpq":
        raise ValueError(f"Unknown index kind {kind!r}.")
    pq_m = resolve_pq_m(dim, pq_m)
    ivfpq = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m, pq_bits, faiss.METRIC_INNER_PRODUCT)
    ivfpq.nprobe = nprobe
    if not opq:
        return ivfpq
    # faiss's Python wrapper keeps the rotation and the IVF-PQ index alive as long as the IndexPreTransform.
    return faiss.IndexPreTransform(faiss.OPQMatrix(dim, pq_m), ivfpq)


def ivf_part(faiss: ModuleType, index: Any) -> Any:
    """The IVF index inside `index` (itself, or the one behind an OPQ rotation)."""
    return faiss.extract_index_ivf(index)


def set_nprobe(faiss: ModuleType, index: Any, nprobe: int, *, on_gpu: bool) -> None:
    """Set the lists visited per query on a CPU index (plain or behind OPQ), a GPU index or GPU shards (faiss's
    parameter spaces reach the IVF part of each of them)."""
    space = faiss.GpuParameterSpace() if on_gpu else faiss.ParameterSpace()
    space.set_index_parameter(index, "nprobe", nprobe)


def gpu_count(faiss: ModuleType) -> int:
    """GPUs that this faiss can use: 0 with faiss-cpu."""
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def cloner_options(faiss: ModuleType, kind: str, *, shards: bool) -> Any:
    """faiss's options for copying `kind` to GPUs: sharded (each GPU holds 1/n of the vectors, the results are
    merged) when `shards`; IVF-PQ with float16 lookup tables (`useFloat16`), which faiss's GPU IVF-PQ needs once a
    query's `pq_m * 2**pq_bits` float32 table entries outgrow the shared memory of a CUDA block (96 x 256 x 4 bytes =
    96 KiB, the default pq_m for 384-d, does). `None` when faiss's defaults do (one GPU, not IVF-PQ). Not run on a GPU
    here (no GPU on the development machine): the tests stop at this call."""
    if not shards and kind != "ivfpq":
        return None
    options = faiss.GpuMultipleClonerOptions() if shards else faiss.GpuClonerOptions()
    if shards:
        options.shard = True
    if kind == "ivfpq":
        options.useFloat16 = True
    return options


def shard_over_gpus(faiss: ModuleType, cpu_index: Any, kind: str) -> tuple[Any, list[Any], tuple[int, ...]]:
    """`cpu_index` sharded over every GPU faiss sees (`index_cpu_to_all_gpus` with `shard=True`, built from the
    same call with resources made here): `(sharded index, the GPUs' resources, the devices)`. The resources are
    returned to be kept alive as long as the index: faiss does not own them."""
    if kind == "hnsw":
        raise ValueError(
            "faiss has no GPU HNSW index, so an HNSW index cannot be sharded over GPUs: load it with "
            "gpu_shards=False (it searches on CPU), or build a flat, ivf or ivfpq index for GPU search."
        )
    count = gpu_count(faiss)
    if count == 0:
        raise RuntimeError(
            "gpu_shards=True shards the index over the GPUs, but the installed faiss has no GPU support or sees no "
            "GPU. Install jmlr_hf[faiss-gpu] (instead of faiss-cpu) on a machine with CUDA GPUs, or load with "
            "gpu_shards=False."
        )
    devices = tuple(range(count))
    resources = [faiss.StandardGpuResources() for _ in devices]
    options = cloner_options(faiss, kind, shards=True)
    try:
        index = faiss.index_cpu_to_gpu_multiple_py(resources, cpu_index, options, list(devices))
    except RuntimeError as err:
        raise RuntimeError(gpu_copy_error(kind, err)) from err
    return index, resources, devices


def gpu_copy_error(kind: str, err: Exception) -> str:
    """What to say when faiss refuses to copy an index to a GPU."""
    hint = (
        " GPU IVF-PQ supports fewer shapes than the CPU one (bits per code, number of sub-quantisers);"
        if kind == "ivfpq"
        else ""
    )
    return f"faiss cannot put this {kind} index on a GPU: {err}.{hint} Pass use_gpu=False to search it on CPU."


__all__ = [
    "DEFAULT_PQ_BITS",
    "IVF_KINDS",
    "check_kind_arguments",
    "check_training_size",
    "cloner_options",
    "default_pq_m",
    "gpu_copy_error",
    "gpu_count",
    "ivf_part",
    "new_cpu_index",
    "resolve_pq_m",
    "set_nprobe",
    "shard_over_gpus",
    "training_centroids",
]
