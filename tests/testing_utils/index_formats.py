"""Index folders in the formats older code saved, for the tests that check they still load."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jmlr_hf.models.retrieval_jmlr import (
    CONFIG_FILE,
    DOCUMENTS_FILE,
    INDEX_FILE,
    PARQUET_DOCUMENTS_FILE,
    file_sha256,
    index_config_sha256,
)


def as_format_1(folder: Path) -> Path:
    """Rewrite a saved index folder as format 1 wrote it: the same table as parquet (with the `datasets` features
    in its schema metadata, as `pq.ParquetWriter(path, features.arrow_schema)` wrote them), `format_version` 1, the
    checksums of that folder."""
    table = pa.ipc.open_stream(pa.memory_map(str(folder / DOCUMENTS_FILE))).read_all()
    with pq.ParquetWriter(folder / PARQUET_DOCUMENTS_FILE, table.schema) as writer:
        writer.write_table(table)
    del table
    (folder / DOCUMENTS_FILE).unlink()
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["format_version"] = 1
    config["sha256"] = {name: file_sha256(folder / name) for name in (INDEX_FILE, PARQUET_DOCUMENTS_FILE)}
    config["config_sha256"] = index_config_sha256(config)
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    return folder
