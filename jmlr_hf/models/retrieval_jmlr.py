# Copyright 2026 The jmlr_hf developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Reading a JMLR document index: its on-disk format, where it is (a folder or a Hub repository), and CPU search.

Remote code, like `modeling_jmlr` (which imports it, so `save_pretrained` copies it into every checkpoint): a model
loaded with `trust_remote_code` retrieves with only faiss, pyarrow and huggingface_hub installed, not `jmlr_hf`.
The format is defined here once: `jmlr_hf.retrieval.index` writes it, and reads it through `read_index_folder`.

On disk an index is a folder with `index.faiss` (a CPU faiss index of L2-normalised vectors, inner product),
the document store (row i is the document of vector i: `id`, `text`, optional `title` and other columns) and
`index_config.json` (kind, dimension, search parameters, encoder fingerprint, sha256 checksums). On the Hub it is a
data set repository with these three files.

The document store depends on the config's `format_version`:

* 2 (written now): `documents.arrow`, an Arrow IPC *stream* (the format of `datasets`' own cache files), written in
  record batches. Opening it memory-maps the file (`pyarrow.memory_map`) and reads only the batches' metadata: no
  text is read until a search returns rows, and then only the hits' rows are touched (`DocumentRows`). An index of
  tens of millions of passages opens in every process at the cost of its page tables, not of its text.
* 1 (indexes saved before, some already on the Hub): `documents.parquet`, still read, as before: whole, into memory
  (parquet pages are compressed, so they cannot be mapped). Such a folder is not converted in place; saving the
  loaded index (`DocumentIndex.save`) writes format 2.
"""

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

# The on-disk format of a document index lives here, in the remote code, so that a model loaded with
# `trust_remote_code` can retrieve with only faiss, pyarrow and huggingface_hub installed. `jmlr_hf.retrieval.index`
# writes this format and reads it through `read_index_folder` (one reader, not two).

# A saved index is a folder with these three files (a data set repository on the Hub: the Hub has no index type).
INDEX_FILE = "index.faiss"
DOCUMENTS_FILE = "documents.arrow"  # format 2: an Arrow IPC stream, memory-mapped when opened
PARQUET_DOCUMENTS_FILE = "documents.parquet"  # format 1: read whole
CONFIG_FILE = "index_config.json"
INDEX_REPO_TYPE = "dataset"
INDEX_FORMAT_VERSION = 2  # the version written
# The versions read, with the name of their document file.
DOCUMENTS_FILES: dict[int, str] = {1: PARQUET_DOCUMENTS_FILE, 2: DOCUMENTS_FILE}
INDEX_METRIC = "inner_product"
INDEX_KINDS: tuple[str, ...] = ("flat", "ivf", "ivfpq", "hnsw")
# The kinds with inverted lists, whose config records nlist and nprobe (the IVF part of an OPQ index is behind it).
IVF_INDEX_KINDS: tuple[str, ...] = ("ivf", "ivfpq")
INDEX_CONFIG_KEYS = ("kind", "metric", "dim", "num_documents", "fingerprint")
# How a config records an index folder next to (or inside) the model folder: relative to the model folder, so that
# the pair can be moved together. Hub ids never start with a dot, so the two cannot be confused.
RELATIVE_PATH_PREFIXES = ("./", "../")
_HASH_CHUNK_BYTES = 1 << 20


class StaleIndexError(RuntimeError):
    """The index was built by different retriever weights than the ones it is used with."""


class StaleIndexWarning(UserWarning):
    """Warning counterpart of `StaleIndexError`, emitted when loading with `on_stale="warn"`."""


class CorruptIndexError(ValueError):
    """A file of a saved index does not match the checksum recorded when it was saved, or cannot be read."""


def index_file_names(format_version: int = INDEX_FORMAT_VERSION) -> tuple[str, str, str]:
    """The three files of an index folder of `format_version`: faiss index, document store, config (the files a
    push uploads and a download fetches)."""
    if format_version not in DOCUMENTS_FILES:
        raise ValueError(f"Unknown index format_version {format_version!r}; known: {sorted(DOCUMENTS_FILES)}.")
    return INDEX_FILE, DOCUMENTS_FILES[format_version], CONFIG_FILE


def document_text(row: dict) -> str:
    """The text of a document row as the retriever encodes it and the prompt shows it.

    `"{title}. {text}"` when the row has a non-empty `title` (surrounding whitespace removed), else `text`. Index
    building, re-scoring in the trainer and answering all use this, so that one document always gets one text.
    """
    text = row["text"]
    title = row.get("title")
    if isinstance(title, str) and title.strip():
        return f"{title.strip()}. {text}"
    return text


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in chunks (index files can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def index_config_sha256(config: dict) -> str:
    """sha256 of an index config's canonical JSON, its own checksum left out."""
    import json

    body = {key: value for key, value in config.items() if key != "config_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def is_local_path(name: str | os.PathLike) -> bool:
    """Whether `name` names a local file or folder rather than a Hub repository id: the package's one rule (saving an
    index location, loading a model or an index, telling a checkpoint folder from a Hub id all use it).

    Local: it exists; or it is spelled as a path, which no Hub id is (absolute, starting with `.` or `~`, a
    backslash, or more than one `/`: a Hub id has one at most); or its parent folder exists (`outputs/finall` where
    `outputs/` exists: a typo, or a folder not built yet).
    """
    name = os.fspath(name)
    if os.path.exists(name) or name.startswith((".", "~")) or os.path.isabs(name):
        return True
    if name.count("/") > 1 or "\\" in name:
        return True
    parent = os.path.dirname(os.path.expanduser(name))
    return bool(parent) and os.path.isdir(parent)


def check_path_or_hub_id(name: str | os.PathLike, what: str) -> None:
    """Raise `FileNotFoundError` when `name`, which is not an existing folder, is not a Hub id either.

    A local path ([`is_local_path`]) that is not a folder is a missing folder, and saying so beats the Hub client's
    "Repo id must be in the form ..." or a network error about a repository nobody meant.
    """
    name = os.fspath(name)
    if os.path.isdir(name):
        return
    if os.path.isfile(name):
        article = "an" if what[:1] in "aeiou" else "a"
        raise FileNotFoundError(f"{what} {name!r} is a file; expected {article} {what} folder")
    if is_local_path(name):
        raise FileNotFoundError(f"{what} folder {name!r} does not exist (it is not a Hub repository id either)")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as error:
        raise FileNotFoundError(
            f"{what} {name!r} is neither an existing folder nor a Hub repository id ({error})"
        ) from None


def resolve_index_location(index: str, base_dir: str | os.PathLike | None) -> str:
    """An index location as a config records it, made usable: a path relative to the model folder (`./index`,
    `../index`) is joined to `base_dir`, the folder the model was loaded from; anything else is returned as is."""
    index = os.fspath(index)
    if index.startswith(RELATIVE_PATH_PREFIXES):
        if base_dir is None or not os.path.isdir(base_dir):
            raise ValueError(
                f"This model records its index as {index!r}, a folder relative to the model folder, but the model "
                "was not loaded from a local folder: the index was never published. Publish model and index "
                "together with `jmlr push model <folder> --repo-id ...` (or `jmlr_hf.hub.push_model`), or pass an "
                "index: load_index('org/index', revision=...)"
            )
        return os.path.normpath(os.path.join(os.fspath(base_dir), index))
    return index


def download_index(
    index: str,
    revision: str | None = None,
    *,
    token: str | bool | None = None,
    cache_dir: str | None = None,
    local_files_only: bool = False,
) -> str:
    """The local folder of an index: `index` itself when it is a folder, else the snapshot of the Hub index
    repository `index` at `revision` (downloaded once into the Hub cache, only the index's three files: the
    document store of either format, so that indexes published before format 2 still download)."""
    check_path_or_hub_id(index, "index")
    if os.path.isdir(index):
        return index
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    where = f"{index}@{revision}" if revision else index
    try:
        return snapshot_download(
            index,
            repo_type=INDEX_REPO_TYPE,
            revision=revision,
            allow_patterns=[INDEX_FILE, CONFIG_FILE, *DOCUMENTS_FILES.values()],
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
    except RepositoryNotFoundError:
        raise FileNotFoundError(
            f"There is no index repository {index} on the Hub (a data set repository), or your token cannot see it"
        ) from None
    except RevisionNotFoundError:
        raise FileNotFoundError(f"The index repository {index} has no revision {revision!r}") from None
    except LocalEntryNotFoundError as err:
        raise OSError(
            f"Cannot download the index {where}: the Hub is unreachable (offline, HF_HUB_OFFLINE=1, or no network) "
            "and the index is not in the local Hub cache. Connect once to download it, or pass a local index folder."
        ) from err


@dataclass
class SavedIndex:
    """The contents of a saved index folder, checked: the CPU faiss index, the document store (a pyarrow table,
    row i = vector i: memory-mapped from `documents_path` for format 2, in memory for format 1) and
    `index_config.json` (with the search parameters in effect)."""

    faiss_index: object
    documents: object
    config: dict
    directory: str
    documents_path: str = ""
    memory_mapped: bool = False


def open_documents(path: str | os.PathLike, format_version: int = INDEX_FORMAT_VERSION, *, validate: bool = True):
    """The document store at `path` as a pyarrow table: memory-mapped, zero-copy, for format 2 (an Arrow IPC
    stream: reading it walks the record batches' metadata, the text stays on disk until rows are gathered), read
    whole for format 1 (parquet).

    Raises `CorruptIndexError` naming the file when it cannot be read as such (truncated, not Arrow). With
    `validate`, also when its buffers do not hold what their offsets say (`Table.validate()`, which reads a page or
    two per column and record batch: ~30 MB of a mapped 1M-passage store, benchmarks/index_memory.py), so that a
    damaged store is an error here, not a crash inside a later gather. `read_index_folder` skips it when the
    file's sha256 was verified: the bytes are then the ones written. A byte changed inside the text is only found
    by the sha256."""
    pa = import_pyarrow()
    path = os.fspath(path)
    try:
        if format_version == 1:
            table = import_parquet().read_table(path)
        else:
            # Not closed here: the table's buffers point into the mapping and keep it alive as long as they live.
            table = pa.ipc.open_stream(pa.memory_map(path, "r")).read_all()
        if validate:
            table.validate()
    except (pa.ArrowException, OSError) as err:
        kind = "parquet" if format_version == 1 else "Arrow IPC stream"
        raise CorruptIndexError(f"{path} is not a readable {kind} document store: {err}") from err
    return table


class DocumentRows:
    """Gathers rows of a document table by position, batch by batch, so that only the rows asked for are read.

    `pyarrow.Table.take` on a table of many record batches concatenates each column first: on a memory-mapped
    store that reads (and copies) the whole text to return ten rows. Here each row is a zero-copy one-row slice of
    its record batch, found by binary search over the batch offsets, as `datasets` gathers rows."""

    def __init__(self, table) -> None:
        import numpy as np

        self._schema = table.schema
        self._batches = [batch for batch in table.to_batches() if batch.num_rows]
        self._offsets = np.cumsum([0] + [batch.num_rows for batch in self._batches], dtype=np.int64)

    def take(self, rows: Sequence[int]) -> list[dict]:
        """The rows at positions `rows` (in that order, repeats allowed) as dicts of their columns."""
        import numpy as np

        pa = import_pyarrow()
        positions = np.asarray(rows, dtype=np.int64).reshape(-1)
        if not len(positions):
            return []
        if positions.min() < 0 or positions.max() >= self._offsets[-1]:
            raise IndexError(
                f"row positions must be in [0, {int(self._offsets[-1])}), got {int(positions.min())} to "
                f"{int(positions.max())}."
            )
        batches = np.searchsorted(self._offsets, positions, side="right") - 1
        slices = [
            self._batches[batch].slice(position - self._offsets[batch], 1)
            for batch, position in zip(batches.tolist(), positions.tolist())
        ]
        return pa.Table.from_batches(slices, schema=self._schema).to_pylist()


def read_index_folder(
    directory: str | os.PathLike,
    *,
    expected_fingerprint: str | None = None,
    on_stale: str = "raise",
    verify_checksums: bool = True,
    nprobe: int | None = None,
    ef_search: int | None = None,
) -> SavedIndex:
    """Read and check an index folder written by `jmlr_hf.retrieval.DocumentIndex.save`.

    Args:
        expected_fingerprint: the `weights_fingerprint()` of the retriever the index will be used with; another
            one means the vectors were computed by other weights (stale).
        on_stale: `"raise"` a `StaleIndexError` or `"warn"` (`StaleIndexWarning`) and read anyway.
        verify_checksums: check the files' sha256 (reads them once more).
        nprobe, ef_search: override the stored IVF / HNSW search parameters.

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        CorruptIndexError: a file does not match its checksum, or the files disagree.
        StaleIndexError: the index is stale and `on_stale="raise"`.
    """
    import glob
    import json
    import warnings

    if on_stale not in ("raise", "warn"):
        raise ValueError(f"on_stale must be 'raise' or 'warn', got {on_stale!r}.")
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        hint = ""
        parent, name = os.path.split(os.path.normpath(directory))
        backups = sorted(glob.glob(os.path.join(glob.escape(parent or "."), f".{glob.escape(name)}.old-*")))
        if backups:
            hint = (
                f" A save into it was interrupted; the previous index is in {backups[-1]} (rename it back; the "
                "next save into it does so first)."
            )
        raise FileNotFoundError(f"No index directory at {directory}.{hint}")
    paths = {name: os.path.join(directory, name) for name in (CONFIG_FILE, INDEX_FILE)}
    for name, path in paths.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"The index directory {directory} has no {name}.")

    config_path = paths[CONFIG_FILE]
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptIndexError(f"{config_path} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise CorruptIndexError(f"{config_path} does not hold a JSON object.")
    version = config.get("format_version")
    if version not in DOCUMENTS_FILES:
        raise CorruptIndexError(
            f"{config_path} has format_version={version!r}; this code reads format_version "
            f"{' or '.join(map(str, sorted(DOCUMENTS_FILES)))}."
        )
    documents_file = DOCUMENTS_FILES[version]
    paths[documents_file] = os.path.join(directory, documents_file)
    if not os.path.isfile(paths[documents_file]):
        raise FileNotFoundError(
            f"The index directory {directory} has no {documents_file} (the document store of index format {version})."
        )
    # The config's own checksum (indexes saved before it existed have none): a hand-edited config is caught here,
    # not deep inside faiss.
    recorded = config.get("config_sha256")
    if verify_checksums and recorded is not None and recorded != index_config_sha256(config):
        raise CorruptIndexError(
            f"{config_path} was changed after the index was saved (its checksum no longer matches); "
            "change search settings with `load_index(..., nprobe=..., ef_search=...)` or "
            "`DocumentIndex.set_search_parameters`, not by editing the file."
        )
    missing = [key for key in INDEX_CONFIG_KEYS if key not in config]
    if missing:
        raise CorruptIndexError(f"{config_path} lacks the keys {missing}.")
    if config["kind"] not in INDEX_KINDS or config["metric"] != INDEX_METRIC:
        raise CorruptIndexError(
            f"{config_path} has kind={config['kind']!r} and metric={config['metric']!r}; "
            f"expected a kind in {INDEX_KINDS} and metric {INDEX_METRIC!r}."
        )

    # Checked before the (possibly long) checksums, so that a stale index fails fast.
    if expected_fingerprint is not None and expected_fingerprint != config["fingerprint"]:
        message = (
            f"The index in {directory} was built by different retriever weights (fingerprint "
            f"{config['fingerprint']!r}, expected {expected_fingerprint!r}); its document vectors do not match "
            "the retriever. Rebuild the index with the current retriever."
        )
        if on_stale == "raise":
            raise StaleIndexError(message)
        warnings.warn(message, StaleIndexWarning, stacklevel=2)

    if verify_checksums:
        # `file_sha256` streams each file in 1 MiB reads: the check costs one pass of disk I/O (page cache, not this
        # process's memory), and the document store is mapped, not read, afterwards.
        checksums = config.get("sha256") or {}
        for name in (INDEX_FILE, documents_file):
            expected = checksums.get(name)
            if expected is None:
                raise CorruptIndexError(f"{config_path} records no sha256 for {name}.")
            actual = file_sha256(paths[name])
            if actual != expected:
                raise CorruptIndexError(
                    f"{paths[name]} is corrupted: its sha256 is {actual}, but {expected} was recorded when "
                    "the index was saved. Rebuild or re-copy the index."
                )

    faiss = import_faiss()

    try:
        cpu_index = faiss.read_index(paths[INDEX_FILE])
    except RuntimeError as err:
        raise CorruptIndexError(f"faiss cannot read {paths[INDEX_FILE]}: {err}") from err
    documents = open_documents(paths[documents_file], version, validate=not verify_checksums)
    if cpu_index.ntotal != config["num_documents"] or documents.num_rows != config["num_documents"]:
        raise CorruptIndexError(
            f"{directory} is inconsistent: {CONFIG_FILE} says {config['num_documents']} documents, "
            f"{INDEX_FILE} has {cpu_index.ntotal} vectors and {documents_file} has {documents.num_rows} rows."
        )
    if cpu_index.d != config["dim"]:
        raise CorruptIndexError(f"{paths[INDEX_FILE]} has dimension {cpu_index.d}, not {config['dim']}.")
    stored = faiss_index_layout(faiss, cpu_index)
    recorded = {key: config.get(key) for key in stored}
    if stored != recorded:
        raise CorruptIndexError(
            f"{directory} is inconsistent: {CONFIG_FILE} says {_describe_layout(recorded)}; {INDEX_FILE} holds an "
            f"index of {_describe_layout(stored)}."
        )

    config = dict(config)
    nprobe = nprobe if nprobe is not None else config.get("nprobe")
    ef_search = ef_search if ef_search is not None else config.get("ef_search")
    if config["kind"] in IVF_INDEX_KINDS and nprobe is not None:
        ivf = faiss.extract_index_ivf(cpu_index)
        ivf.nprobe = min(nprobe, config["nlist"])
        config["nprobe"] = ivf.nprobe
    if config["kind"] == "hnsw" and ef_search is not None:
        cpu_index.hnsw.efSearch = ef_search
        config["ef_search"] = ef_search
    return SavedIndex(
        faiss_index=cpu_index,
        documents=documents,
        config=config,
        directory=directory,
        documents_path=paths[documents_file],
        memory_mapped=version != 1,
    )


def faiss_index_layout(faiss, cpu_index) -> dict:
    """What a CPU faiss index is, in `index_config.json`'s terms: `kind`, and `nlist` (IVF kinds), `pq_m`, `pq_bits`
    and `opq` (IVF-PQ). An index of no known kind has `kind` set to its faiss class name, which then matches no config.

    OPQ is recognised as a square linear transform in front of an IVF-PQ index (faiss writes an `OPQMatrix` as a
    plain `LinearTransform`, so the file does not say more)."""
    inner, opq = cpu_index, False
    if isinstance(cpu_index, faiss.IndexPreTransform):
        chain = [faiss.downcast_VectorTransform(cpu_index.chain.at(i)) for i in range(cpu_index.chain.size())]
        inner = faiss.downcast_index(cpu_index.index)
        opq = len(chain) == 1 and isinstance(chain[0], faiss.LinearTransform) and chain[0].d_in == chain[0].d_out
        if not (opq and isinstance(inner, faiss.IndexIVFPQ)):
            names = "+".join(type(part).__name__ for part in (*chain, inner))
            return {"kind": f"IndexPreTransform({names})"}
    if isinstance(inner, faiss.IndexIVFPQ):
        return {"kind": "ivfpq", "nlist": inner.nlist, "pq_m": inner.pq.M, "pq_bits": inner.pq.nbits, "opq": opq}
    if isinstance(inner, faiss.IndexIVFFlat):
        return {"kind": "ivf", "nlist": inner.nlist}
    if isinstance(inner, faiss.IndexHNSW):
        return {"kind": "hnsw"}
    if isinstance(inner, faiss.IndexFlat):
        return {"kind": "flat"}
    return {"kind": type(inner).__name__}


def _describe_layout(layout: dict) -> str:
    details = ", ".join(f"{key}={value!r}" for key, value in layout.items() if key != "kind")
    return f"kind {layout['kind']!r}" + (f" with {details}" if details else "")


def import_faiss():
    """faiss, imported on first use: only retrieval needs it, never loading or running the model."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "Retrieval needs faiss, which is not installed: `pip install faiss-cpu` (or `faiss-gpu`; both provide "
            "the same `faiss` module: install only one)."
        ) from err
    return faiss


def import_pyarrow():
    """`pyarrow`, imported on first use inside a `try`, for the reason given in [`import_parquet`]."""
    try:
        import pyarrow as pa
    except ImportError as err:
        raise ImportError(
            "Reading a document index needs pyarrow (its documents are an Arrow file), which is not installed: "
            "`pip install pyarrow`."
        ) from err
    return pa


def import_parquet():
    """`pyarrow.parquet`, imported on first use, inside a `try`: transformers' `check_imports`, which runs before a
    model is loaded by Hub id with `trust_remote_code`, counts every import of the remote code, function-level ones
    included, except those in a `try` block. A plain `import pyarrow.parquet` here would make pyarrow a requirement of
    *loading* the model, which needs only torch and transformers; retrieval alone needs pyarrow."""
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError(
            "Reading a format-1 document index needs pyarrow (its documents are a parquet file), which is not "
            "installed: `pip install pyarrow`."
        ) from err
    return pq


class JMLRIndex:
    """A saved document index, searched on CPU, with only faiss and pyarrow: what `JMLRForCausalLM.load_index`
    gives where `jmlr_hf` is not installed (with it, `jmlr_hf.retrieval.DocumentIndex`, which adds building, GPU
    search and saving). `search` and `retrieve` behave as `DocumentIndex`'s."""

    def __init__(self, saved: SavedIndex):
        self._index = saved.faiss_index
        self.documents = saved.documents  # a pyarrow table, memory-mapped for a format-2 index
        self._rows = DocumentRows(saved.documents)
        self.config = saved.config
        self.directory = saved.directory

    @classmethod
    def load(cls, directory: str | os.PathLike, **read_kwargs) -> "JMLRIndex":
        """Read an index folder (see `read_index_folder` for the keyword arguments)."""
        return cls(read_index_folder(directory, **read_kwargs))

    @property
    def fingerprint(self) -> str:
        """Identifies the retriever weights that computed the document vectors."""
        return self.config["fingerprint"]

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def __len__(self) -> int:
        return self.documents.num_rows

    def __repr__(self) -> str:
        return f"JMLRIndex(kind={self.config['kind']!r}, num_documents={len(self)}, dim={self.dim})"

    def search(self, query_embeddings, k: int):
        """`(scores, indices)` `[q, k]` of the top-k documents of each query vector (normalised here): cosine
        similarities by decreasing score and row indices into `documents` (-1 and -inf where fewer were found)."""
        import numpy as np

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        if hasattr(query_embeddings, "detach"):
            query_embeddings = query_embeddings.detach().float().cpu().numpy()
        queries = np.asarray(query_embeddings, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"query embeddings must be [q, {self.dim}], got shape {tuple(queries.shape)}.")
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        queries = np.ascontiguousarray(queries / np.maximum(norms, np.finfo(np.float32).tiny), dtype=np.float32)
        k = min(k, len(self))
        if len(queries) == 0:
            return np.empty((0, k), dtype=np.float32), np.empty((0, k), dtype=np.int64)
        scores, indices = self._index.search(queries, k)
        scores, indices = np.asarray(scores, dtype=np.float32), np.asarray(indices, dtype=np.int64)
        scores[indices < 0] = -np.inf
        return scores, indices

    def retrieve(self, queries: Sequence[str], encode_query_fn, k: int, *, batch_size: int = 64, **_) -> list:
        """For each query text, its top-k documents as dicts (the stored columns, `title` `""` when missing, and
        `score`, the cosine), best first. `encode_query_fn` maps a list of texts to vectors `[n, d]`."""
        if isinstance(queries, str):
            raise TypeError("queries must be a list of strings, not a single string.")
        results = []
        queries = list(queries)
        for start in range(0, len(queries), batch_size):
            scores, indices = self.search(encode_query_fn(queries[start : start + batch_size]), k)
            for row_scores, row_indices in zip(scores.tolist(), indices.tolist()):
                kept = [(score, row) for score, row in zip(row_scores, row_indices) if row >= 0]
                rows = self._rows.take([row for _, row in kept])
                hits = []
                for (score, _), document in zip(kept, rows):
                    if document.get("title") is None:
                        document["title"] = ""
                    hits.append({**document, "score": score})
                results.append(hits)
        return results


__all__ = [
    "CONFIG_FILE",
    "DOCUMENTS_FILE",
    "DOCUMENTS_FILES",
    "INDEX_FILE",
    "INDEX_FORMAT_VERSION",
    "INDEX_KINDS",
    "IVF_INDEX_KINDS",
    "INDEX_METRIC",
    "INDEX_REPO_TYPE",
    "PARQUET_DOCUMENTS_FILE",
    "RELATIVE_PATH_PREFIXES",
    "CorruptIndexError",
    "DocumentRows",
    "JMLRIndex",
    "SavedIndex",
    "StaleIndexError",
    "StaleIndexWarning",
    "check_path_or_hub_id",
    "document_text",
    "download_index",
    "faiss_index_layout",
    "file_sha256",
    "import_faiss",
    "import_parquet",
    "import_pyarrow",
    "index_config_sha256",
    "index_file_names",
    "is_local_path",
    "open_documents",
    "read_index_folder",
    "resolve_index_location",
]
