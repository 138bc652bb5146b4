"""Retrieval beside the model, as `retrieval_rag.py` is beside RAG: the faiss [`DocumentIndex`] (build, save, load
from a folder or the Hub with [`load_index`]), the lexical [`BM25Index`] and [`reciprocal_rank_fusion`] for a BM25 or
hybrid first stage, and pre-retrieval ([`add_candidates`]: each question's top-N candidates, which the joint trainer
re-scores with the retriever it trains)."""

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
from .lexical import RRF_K, BM25Index, reciprocal_rank_fusion

__all__ = [
    "RRF_K",
    "BM25Index",
    "CorruptIndexError",
    "DocumentIndex",
    "StaleIndexError",
    "StaleIndexWarning",
    "add_candidates",
    "document_text",
    "encode_documents_with",
    "encode_queries_with",
    "load_index",
    "reciprocal_rank_fusion",
]
