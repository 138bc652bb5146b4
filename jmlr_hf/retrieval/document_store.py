"""The document store of an index folder, written and wrapped: an Arrow IPC stream (`documents.arrow`, index format 2).

An index of MedRAG's 54M passages holds tens of GB of text. Parquet (format 1) had to be read whole into every
process that opened the index; an Arrow IPC stream is the in-memory layout itself, so opening it maps the file and
reads only the record batches' metadata, and a search touches only the pages of the rows it returns. The format and
the reader are the remote code's (`jmlr_hf.models.retrieval_jmlr.open_documents`, used by `read_index_folder`),
so that a model loaded with `trust_remote_code` reads the same files without `jmlr_hf`; this module holds what only
`jmlr_hf` does: writing the store in record batches (building never holds the corpus: a streamed build appends one
chunk at a time) and wrapping an opened store as a `datasets.Dataset` without a copy.

The stream format (rather than the Arrow "file" format, which adds a footer for random access to batches) is the one
`datasets` writes and maps for its own cache files (`Dataset.from_file`), so the mapped table becomes a `Dataset`
backed by the file, at no copy. Random access does not need the footer: the batch offsets are known once the
metadata is walked at open (`DocumentRows`, `datasets`' `fast_gather`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from datasets import Dataset
from datasets.table import InMemoryTable, MemoryMappedTable

from ..models.retrieval_jmlr import DocumentRows, SavedIndex, open_documents

if TYPE_CHECKING:
    from collections.abc import Sequence

# Rows per record batch. A batch is the unit `open_documents` walks at open (54M passages: ~5,400 batches of
# metadata) and the unit a write holds in memory (10,000 passages of ~60 words: ~4 MB).
ROWS_PER_BATCH = 10_000


class DocumentStoreWriter:
    """Appends rows to a document store, batch by batch, without holding more than one batch.

    The schema is that of the first rows written: a `Dataset` chunk's `features.arrow_schema` (the `datasets`
    features ride in its metadata, so the store reopens as the same `Dataset` features), or a table's own schema
    ([`write_table`], e.g. to concatenate the stores of several shards). Every later write must have the same
    columns and types: Arrow refuses a batch of another schema, and the error names the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.num_rows = 0
        self._sink: Any = None
        self._writer: Any = None

    def write(self, chunk: Dataset) -> None:
        """Append the rows of a `Dataset` (in `ROWS_PER_BATCH` record batches)."""
        self._open(chunk.features.arrow_schema)
        for table in chunk.with_format("arrow").iter(batch_size=ROWS_PER_BATCH):
            self._write(table)

    def write_table(self, table: pa.Table) -> None:
        """Append the rows of a pyarrow table (a mapped store's rows are copied from the mapping batch by batch)."""
        self._open(table.schema)
        for start in range(0, table.num_rows, ROWS_PER_BATCH):
            self._write(table.slice(start, ROWS_PER_BATCH))

    def _open(self, schema: pa.Schema) -> None:
        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_stream(self._sink, schema)

    def _write(self, table: pa.Table) -> None:
        try:
            self._writer.write_table(table, max_chunksize=ROWS_PER_BATCH)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ValueError(
                f"Rows {self.num_rows} to {self.num_rows + table.num_rows} do not fit the schema of {self.path} "
                f"(the first rows written): {err}"
            ) from err
        self.num_rows += table.num_rows

    def close(self) -> None:
        """Write the end-of-stream marker and close the file (a store without it still reads, but is incomplete)."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._sink.close()
                self._writer = self._sink = None

    def __enter__(self) -> DocumentStoreWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def write_documents(documents: Dataset, path: str | os.PathLike[str]) -> None:
    """Write a whole `Dataset` as a document store (what `DocumentIndex.save` writes)."""
    with DocumentStoreWriter(path) as writer:
        writer.write(documents)  # an empty `Dataset` still writes its schema


def documents_dataset(saved: SavedIndex) -> Dataset:
    """The document store of an opened index folder as a `datasets.Dataset`, without a copy: backed by the mapped
    file for format 2 (a `MemoryMappedTable`, which also pickles as its path, not its rows), in memory for format 1.

    Its fingerprint is the file's recorded sha256 (or, when checksums are not recorded, the path), so `datasets`
    need not hash the rows, and a rebuilt store at the same path gets a new fingerprint."""
    table = saved.documents
    checksum = (saved.config.get("sha256") or {}).get(os.path.basename(saved.documents_path))
    fingerprint = checksum[:16] if checksum else None
    if saved.memory_mapped:
        return Dataset(MemoryMappedTable(table, saved.documents_path), fingerprint=fingerprint)
    return Dataset(InMemoryTable(table), fingerprint=fingerprint)


def gather_column(path: str | os.PathLike[str], column: str, rows: Sequence[int]) -> list[Any]:
    """The values of `column` at `rows` of the (format 2) store at `path`, reading only those rows."""
    table = open_documents(path).select([column])
    return [row[column] for row in DocumentRows(table).take(rows)]


__all__ = ["ROWS_PER_BATCH", "DocumentStoreWriter", "documents_dataset", "gather_column", "write_documents"]
