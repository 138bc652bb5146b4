"""A lexical first stage: Okapi BM25 over the corpus, and its fusion with the dense index.

JMLR re-scores a fixed pool of N candidates per question with the retriever it trains, so what the trained retriever
can learn is bounded by the pool. A pool built by the *same* dense encoder that is being trained ranks its own
favourites first, which leaves little to re-rank; a lexical first stage brings in passages that share the question's
words but not its embedding — the first stage of medical RAG systems such as MedRAG (Xiong et al. 2024), which fuse
BM25 with dense retrievers.

* [`BM25Index`]: BM25 scores (Robertson & Zaragoza 2009; as Lucene computes them, k1 = 1.2, b = 0.75 by default:
  ``Σ_terms ln(1 + (n − df + 0.5)/(df + 0.5)) · tf / (tf + k1 (1 − b + b·dl/avgdl))``) of every document for a
  query, on the word tokens of ``document_text`` (lower-cased, English stop words removed, Snowball-stemmed so that
  "causes" meets "caused"), with the same hit format as [`DocumentIndex.retrieve`]. Built in memory in seconds for
  corpora of this project's size; it is not saved (build it again from the corpus).
* [`reciprocal_rank_fusion`]: merges ranked lists by ``Σ_lists 1 / (k + rank)`` (Cormack, Clarke & Büttcher 2009,
  k = 60), which needs no calibration between BM25 scores and cosine similarities.

BM25 is computed by the `bm25s` package and words are stemmed by `PyStemmer` (install ``jmlr_hf[lexical]``), both
imported when an index is built.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from datasets import Dataset
from tqdm.auto import tqdm

from ..models.configuration_jmlr import check_count
from ._corpus import document_text, iter_column, prepare_documents
from .index import check_queries

#: Cormack et al. (2009)'s constant: large enough that a first place in one list does not outweigh the rest.
RRF_K = 60


def _import_bm25s():
    try:
        import bm25s
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("The BM25 first stage needs the `bm25s` package: `pip install jmlr_hf[lexical]`.") from err
    return bm25s


def _stemmer(language: str | None):
    if language is None:
        return None
    try:
        import Stemmer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("Stemming needs the `PyStemmer` package: `pip install jmlr_hf[lexical]`.") from err
    return Stemmer.Stemmer(language)


def _check_parameter(value: Any, name: str, expected: str, valid: Callable[[float], bool]) -> None:
    """A BM25 parameter: a real number (not a bool, not a string) for which `valid` holds, else a `TypeError` /
    `ValueError` starting with `name`. NaN fails every comparison, so `valid` written as a range refuses it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if not valid(float(value)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


class BM25Index:
    """Okapi BM25 over a corpus (`id`, `text`, optional `title` and other columns, as for [`DocumentIndex`]).

    Args:
        documents: The corpus, a `datasets.Dataset` or a list of dicts.
        k1: Term-frequency saturation.
        b: Document-length normalisation.
        stemmer: Snowball stemmer language for corpus and queries alike, or `None` for exact words.
        show_progress: Show progress bars while tokenizing and indexing.

    Example:

    ```python
    index = BM25Index(corpus)
    hits = index.retrieve(["What causes scurvy?"], k=16)  # [[{"id", "text", "title", ..., "score"}, ...]]
    ```
    """

    def __init__(
        self,
        documents: Dataset | Sequence[Mapping[str, Any]],
        *,
        k1: float = 1.2,
        b: float = 0.75,
        stemmer: str | None = "english",
        show_progress: bool = False,
    ) -> None:
        _check_parameter(k1, "k1", "a finite number > 0", lambda value: 0 < value < math.inf)
        _check_parameter(b, "b", "a number in [0, 1]", lambda value: 0 <= value <= 1)
        bm25s = _import_bm25s()
        self._documents = prepare_documents(documents)
        self.k1, self.b = k1, b
        self._stemmer = _stemmer(stemmer)
        texts = [document_text({"text": text, "title": title}) for text, title in self._texts_and_titles()]
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=self._stemmer, show_progress=show_progress)
        self._vocabulary = tokens.vocab
        self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        # A corpus without one indexable word (stop words and one-letter tokens only) cannot be indexed by bm25s
        # ("max() arg is an empty sequence"); every query then scores 0 everywhere, as one whose words it never uses.
        if self._vocabulary:
            self._bm25.index(tokens, show_progress=show_progress)

    def _texts_and_titles(self):
        texts = iter_column(self._documents, "text")
        if "title" not in self._documents.column_names:
            return ((text, None) for text in texts)
        return zip(texts, iter_column(self._documents, "title"))

    @property
    def documents(self) -> Dataset:
        """The document store, in index order."""
        return self._documents

    def __len__(self) -> int:
        return len(self._documents)

    def __repr__(self) -> str:
        return f"BM25Index(num_documents={len(self)}, k1={self.k1}, b={self.b})"

    def _query_tokens(self, queries: list[str]) -> list[list[str]]:
        bm25s = _import_bm25s()
        tokenized = bm25s.tokenize(
            queries, stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False
        )
        # Words the corpus never uses score nothing; bm25s wants them gone rather than unknown.
        return [[word for word in words if word in self._vocabulary] for words in tokenized]

    def retrieve(
        self, queries: Sequence[str], k: int, *, batch_size: int = 256, show_progress: bool = True
    ) -> list[list[dict[str, Any]]]:
        """Top-``k`` documents of each query by BM25 score, best first, as dicts with the stored columns of the
        document, ``title`` (``""`` when it has none) and ``score`` (the BM25 score).

        A query none of whose words occur in the corpus scores 0 everywhere; its hits are then the first ``k``
        documents in corpus order (ties are broken by position), with score 0.
        """
        queries = check_queries(queries)
        k = min(check_count(k, "k"), len(self))
        check_count(batch_size, "batch_size")
        results: list[list[dict[str, Any]]] = []
        with tqdm(total=len(queries), desc="BM25", unit="query", disable=not show_progress) as progress:
            for start in range(0, len(queries), batch_size):
                for words in self._query_tokens(queries[start : start + batch_size]):
                    scores = self._bm25.get_scores(words) if words else np.zeros(len(self), dtype=np.float32)
                    # A stable sort of the negated scores: equal scores keep corpus order, run after run.
                    top = np.argsort(-scores, kind="stable")[:k]
                    results.append(self._hits(top.tolist(), scores[top].tolist()))
                progress.update(min(batch_size, len(queries) - start))
        return results

    def _hits(self, rows: list[int], scores: list[float]) -> list[dict[str, Any]]:
        columns = self._documents[rows]
        hits = []
        for position, score in enumerate(scores):
            hit = {name: values[position] for name, values in columns.items()}
            if hit.get("title") is None:
                hit["title"] = ""
            hits.append({**hit, "score": float(score)})
        return hits


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Mapping[str, Any]]], k: int, *, rrf_k: int = RRF_K) -> list:
    """One ranked list from several rankings of hits (dicts with an ``id``) of the same query.

    Each document scores ``Σ 1 / (rrf_k + rank)`` over the lists it appears in (rank from 1); the fused hit is its
    first occurrence with ``score`` replaced by the fused score. Ties keep the order of first appearance, list by list.
    """
    check_count(k, "k")
    fused: dict[Any, float] = {}
    first_seen: dict[Any, Mapping[str, Any]] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            fused[hit["id"]] = fused.get(hit["id"], 0.0) + 1.0 / (rrf_k + rank)
            first_seen.setdefault(hit["id"], hit)
    order = sorted(fused, key=lambda doc_id: -fused[doc_id])  # sorted() is stable: ties keep first appearance
    return [{**first_seen[doc_id], "score": fused[doc_id]} for doc_id in order[:k]]


__all__ = ["RRF_K", "BM25Index", "reciprocal_rank_fusion"]
