"""Internals shared by the dense (faiss) and lexical (BM25) indexes: what a corpus row is, and the text each
document is searched by."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from datasets import Dataset

# What a document's text is (title and text) is the remote code's: a model answering without jmlr_hf writes its
# documents into the prompt exactly as they were encoded here.
from ..models.retrieval_jmlr import document_text

# Batched reads: iterating `dataset[name]` goes through the formatter row by row, ~15x slower on large corpora.
_COLUMN_BATCH = 10_000


def prepare_documents(documents: Dataset | Sequence[Mapping[str, Any]]) -> Dataset:
    """Validate the corpus and return it as an unformatted ``Dataset``.

    Raises:
        ValueError: On an empty corpus, a missing ``id``/``text``, a duplicate id, an empty text, or a ``score``
            column (the name is reserved for the similarity in search results).
    """
    if isinstance(documents, Dataset):
        missing = [name for name in ("id", "text") if name not in documents.column_names]
        if missing:
            raise ValueError(
                f"The documents dataset has no {' or '.join(repr(m) for m in missing)} column "
                f"(columns: {documents.column_names})."
            )
        dataset = documents.with_format(None)
        ids, texts = iter_column(dataset, "id"), iter_column(dataset, "text")
    elif isinstance(documents, Sequence) and not isinstance(documents, (str, bytes)):
        for row_number, row in enumerate(documents):
            if not isinstance(row, Mapping):
                raise TypeError(f"Document row {row_number} is a {type(row).__name__}, expected a dict.")
            for key in ("id", "text"):
                if key not in row:
                    raise ValueError(f"Document row {row_number} has no {key!r} field (fields: {sorted(row)}).")
        # Union of the keys in first-seen order: `Dataset.from_list` would keep only the keys of the first row.
        column_names = list(dict.fromkeys(key for row in documents for key in row))
        dataset = Dataset.from_dict({name: [row.get(name) for row in documents] for name in column_names})
        ids, texts = (row["id"] for row in documents), (row["text"] for row in documents)
    else:
        raise TypeError(f"documents must be a datasets.Dataset or a list of dicts, got {type(documents).__name__}.")

    if len(dataset) == 0:
        raise ValueError("Cannot build an index from an empty corpus.")
    if "score" in dataset.column_names:
        raise ValueError("Documents cannot have a 'score' column: search results use that key. Rename the column.")

    check_document_rows(ids, texts)
    return dataset


def check_document_rows(ids: Iterable[Any], texts: Iterable[Any], *, start: int = 0) -> None:
    """Raise a `ValueError` naming the row (numbered from `start`) and the id of the first invalid document: a
    missing id, an id seen before among these rows, a non-string or empty text. Shared by the in-memory build and
    each chunk of a streamed one, so both refuse the same rows with the same words."""
    seen: dict[Any, int] = {}
    for row_number, (doc_id, text) in enumerate(zip(ids, texts), start=start):
        if doc_id is None:
            raise ValueError(f"Document row {row_number} has no id (id is None).")
        if doc_id in seen:
            raise ValueError(f"Duplicate document id {doc_id!r} at rows {seen[doc_id]} and {row_number}.")
        seen[doc_id] = row_number
        if not isinstance(text, str):
            raise ValueError(
                f"Document {doc_id!r} (row {row_number}) has a non-string text of type {type(text).__name__}."
            )
        if not text.strip():
            raise ValueError(f"Document {doc_id!r} (row {row_number}) has an empty text.")


def iter_column(dataset: Dataset, name: str) -> Iterator[Any]:
    # Batched reads: iterating `dataset[name]` goes through the formatter row by row, ~15x slower on large corpora.
    for batch in dataset.select_columns([name]).iter(batch_size=_COLUMN_BATCH):
        yield from batch[name]


__all__ = ["document_text", "iter_column", "prepare_documents"]
