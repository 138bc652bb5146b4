"""Retrieval beside the model, as `retrieval_rag.py` is beside RAG: the faiss [`DocumentIndex`] (build, save, load
from a folder or the Hub with [`load_index`]) and pre-retrieval ([`add_candidates`]: each question's top-N
candidates, which the joint trainer re-scores with the retriever it trains)."""

from .candidates import add_candidates
from .index import (
    CorruptIndexError,
    DocumentIndex,
    StaleIndexError,
    StaleIndexWarning,
    document_text,
    encode_documents_with,
    encode_queries_with,
    load_index,
)

__all__ = [
    "CorruptIndexError",
    "DocumentIndex",
    "StaleIndexError",
    "StaleIndexWarning",
    "add_candidates",
    "document_text",
    "encode_documents_with",
    "encode_queries_with",
    "load_index",
]
