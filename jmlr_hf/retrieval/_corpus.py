"""Internals shared by the dense (faiss) and lexical (BM25) indexes: what a corpus row is, and the text each
document is searched by."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
from datasets import Dataset, Features

# What a document's text is (title and text) is the remote code's: a model answering without jmlr_hf writes its
# documents into the prompt exactly as they were encoded here.
from ..models.configuration_jmlr import text_problem
from ..models.retrieval_jmlr import document_text

# Batched reads: iterating `dataset[name]` goes through the formatter row by row, ~15x slower on large corpora.
_COLUMN_BATCH = 10_000


def prepare_documents(documents: Dataset | Sequence[Mapping[str, Any]]) -> Dataset:
    """Validate the corpus and return it as an unformatted ``Dataset``.

    Raises:
        ValueError: On an empty corpus, a missing ``id``/``text``, a bad or duplicate id, a bad text or title (see
            [`check_document_rows`]), a column whose rows hold values of different types, or a ``score`` column
            (the name is reserved for the similarity in search results).
    """
    if isinstance(documents, Dataset):
        missing = [name for name in ("id", "text") if name not in documents.column_names]
        if missing:
            raise ValueError(
                f"The documents dataset has no {' or '.join(repr(m) for m in missing)} column "
                f"(columns: {documents.column_names})."
            )
        dataset = documents.with_format(None)
        titles = iter_column(dataset, "title") if "title" in dataset.column_names else None
        check_document_rows(iter_column(dataset, "id"), iter_column(dataset, "text"), titles=titles)
    elif isinstance(documents, Sequence) and not isinstance(documents, (str, bytes)):
        for row_number, row in enumerate(documents):
            if not isinstance(row, Mapping):
                raise TypeError(f"Document row {row_number} is a {type(row).__name__}, expected a dict.")
            for key in ("id", "text"):
                if key not in row:
                    raise ValueError(f"Document row {row_number} has no {key!r} field (fields: {sorted(row)}).")
        if not documents:
            raise ValueError("Cannot build an index from an empty corpus.")
        # Union of the keys in first-seen order: `Dataset.from_list` would keep only the keys of the first row.
        column_names = list(dict.fromkeys(key for row in documents for key in row))
        columns = {name: [row.get(name) for row in documents] for name in column_names}
        # Checked before Arrow sees them: a non-string text or ids of two types would fail inside Arrow, unnamed.
        check_document_rows(columns["id"], columns["text"], titles=columns.get("title"))
        dataset = columns_dataset(columns)
    else:
        raise TypeError(f"documents must be a datasets.Dataset or a list of dicts, got {type(documents).__name__}.")

    if len(dataset) == 0:
        raise ValueError("Cannot build an index from an empty corpus.")
    if "score" in dataset.column_names:
        raise ValueError("Documents cannot have a 'score' column: search results use that key. Rename the column.")
    return dataset


def check_document_rows(
    ids: Iterable[Any],
    texts: Iterable[Any],
    *,
    start: int = 0,
    titles: Iterable[Any] | None = None,
    id_type: type | None = None,
) -> type | None:
    """Raise a `ValueError` naming the row (numbered from `start`) and the id of the first invalid document: a
    missing id, an id that is not a string or an integer (or not of the type of the ids before it, `id_type` for the
    rows of earlier chunks), an id seen before among these rows, a text that is not a non-blank string of valid text
    (no NUL, no undecodable bytes or lone surrogate: the rules of the loaders), a title that is neither null nor such a
    string. Shared by the in-memory builds (dense and BM25) and each chunk of a streamed one, so all refuse the same
    rows with the same words. Returns the type of the ids, for the next chunk."""
    seen: dict[Any, int] = {}
    title_values = iter(titles) if titles is not None else None
    for row_number, (doc_id, text) in enumerate(zip(ids, texts), start=start):
        title = next(title_values, None) if title_values is not None else None
        if doc_id is None:
            raise ValueError(f"Document row {row_number} has no id (id is None).")
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
            raise ValueError(
                f"Document row {row_number}: id {doc_id!r} is a {type(doc_id).__name__}; ids are strings or integers."
            )
        if id_type is not None and type(doc_id) is not id_type:
            raise ValueError(
                f"Document row {row_number}: id {doc_id!r} is a {type(doc_id).__name__}, the ids before it are "
                f"{id_type.__name__}: give every id as a string, or every id as an integer."
            )
        id_type = type(doc_id)
        if isinstance(doc_id, str):
            if not doc_id.strip():
                raise ValueError(f"Document row {row_number}: id {doc_id!r} is empty.")
            problem = text_problem(doc_id)
            if problem:
                raise ValueError(f"Document row {row_number}, field 'id': {problem}.")
        if doc_id in seen:
            raise ValueError(f"Duplicate document id {doc_id!r} at rows {seen[doc_id]} and {row_number}.")
        seen[doc_id] = row_number
        if not isinstance(text, str):
            raise ValueError(
                f"Document {doc_id!r} (row {row_number}) has a non-string text of type {type(text).__name__}."
            )
        if not text.strip():
            raise ValueError(f"Document {doc_id!r} (row {row_number}) has an empty text.")
        problem = text_problem(text)
        if problem:
            raise ValueError(f"Document {doc_id!r} (row {row_number}), field 'text': {problem}.")
        if title is not None:
            if not isinstance(title, str):
                raise ValueError(
                    f"Document {doc_id!r} (row {row_number}) has a title of type {type(title).__name__}; expected a "
                    "string or null."
                )
            problem = text_problem(title)
            if problem:
                raise ValueError(f"Document {doc_id!r} (row {row_number}), field 'title': {problem}.")
    return id_type


def columns_dataset(columns: dict[str, list[Any]], features: Features | None = None, *, start: int = 0) -> Dataset:
    """`Dataset.from_dict(columns, features=features)`, or a `ValueError` naming the column and the row (numbered
    from `start`) whose value Arrow cannot store with the others (a number among strings, a list among numbers, a
    value that does not fit `features`), instead of Arrow's own error without either."""
    try:
        return Dataset.from_dict(columns, features=features)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, UnicodeEncodeError, TypeError) as err:
        for name, values in columns.items():
            try:
                Dataset.from_dict({name: values}, features=Features({name: features[name]}) if features else None)
            except Exception:  # noqa: BLE001 - the column that fails is the one to name; its error is `err`'s kind
                present = [(row, value) for row, value in enumerate(values) if value is not None]
                first_type = type(present[0][1]) if present else type(None)
                odd = next(((row, value) for row, value in present if type(value) is not first_type), None)
                if odd is None or features is not None:
                    where = f"rows {start} to {start + len(values) - 1}"
                    raise ValueError(f"Document {where}: field {name!r} cannot be stored ({err}).") from None
                row, value = odd
                raise ValueError(
                    f"Document row {start + row}: field {name!r} is a {type(value).__name__} ({value!r:.60}), the "
                    f"rows before it hold {first_type.__name__}: every row needs one type per field."
                ) from None
        raise


def iter_column(dataset: Dataset, name: str) -> Iterator[Any]:
    # Batched reads: iterating `dataset[name]` goes through the formatter row by row, ~15x slower on large corpora.
    for batch in dataset.select_columns([name]).iter(batch_size=_COLUMN_BATCH):
        yield from batch[name]


__all__ = ["check_document_rows", "columns_dataset", "document_text", "iter_column", "prepare_documents"]
