"""Retrieval corpora in the corpus schema ([`CORPUS_FEATURES`]: `id`, `title`, `text`): every abstract section of
PubMedQA, MedQuAD answers chunked into passages, or any file / Hub dataset with `id` and `text`; and the chunking
they share ([`chunk_text`]).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from datasets import Dataset, IterableDataset

from ._loading import (
    CORPUS_FEATURES,
    PUBMEDQA_CORPUS_FEATURES,
    DataFormatError,
    LoadReport,
    RowError,
    check_hub_id,
    collect,
    default_data_dir,
    finish,
    identifier,
    iter_json_lines,
    iter_pubmedqa,
    open_records,
    pubmedqa_article,
    text_field,
)
from .splits import hash_unit

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MEDQUAD_FILE = "corpus/medquad/medquad_answers.jsonl.gz"

logger = logging.getLogger(__name__)


def load_pubmedqa_corpus(
    path_or_id: str,
    *,
    skip_invalid: bool = False,
    report: LoadReport | None = None,
    hub_split: str = "train",
    **load_kwargs: Any,
) -> Dataset:
    """Every abstract section of every PubMedQA item as one passage (3,358 for `ori_pqal.json`).

    Columns: `id` = `f"{pmid}-{i}"` (`i` the section index, matching `gold_doc_ids` of [`load_pubmedqa`]),
    `title` = `""`, `text` = the section text, `article_id` = the PMID, `section` = its label (e.g. `"RESULTS"`).
    Long answers are left out on purpose: they state the answer. Arguments as for [`load_pubmedqa`].
    """
    source, rows = iter_pubmedqa(path_or_id, hub_split, load_kwargs)

    def parse(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        article = pubmedqa_article(record)
        return [
            {"id": f"{article.pmid}-{i}", "title": "", "text": text, "article_id": article.pmid, "section": label}
            for i, (text, label) in enumerate(zip(article.contexts, article.labels))
        ]

    reasons: list[str] = []
    examples = collect(rows, parse, source=source, skip_invalid=skip_invalid, reasons=reasons)
    return finish(examples, PUBMEDQA_CORPUS_FEATURES, source=source, reasons=reasons, report=report)


# --------------------------------------------------------------------------------------------------------------------
# Corpora and chunking
# --------------------------------------------------------------------------------------------------------------------


def _token_spans(text: str, tokenizer: PreTrainedTokenizerBase | None) -> tuple[list[tuple[int, int]], list[bool]]:
    """Character spans of the tokens of `text`, and for each token whether it starts a whitespace-separated word."""
    if tokenizer is None:
        spans = [match.span() for match in re.finditer(r"\S+", text)]
        return spans, [True] * len(spans)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("Chunking by tokenizer tokens needs a fast tokenizer (it maps tokens back to characters).")
    # verbose=False: long passages exceed the encoder's max length on purpose; that is why they are chunked.
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    spans = [(int(start), int(end)) for start, end in encoding["offset_mapping"]]
    # Words are whitespace-separated (not the tokenizer's pre-tokens, which split "T-waves" at the hyphen). Some
    # tokenizers put the preceding space inside the token's span, hence the second test.
    starts = [start == 0 or text[start - 1].isspace() or text[start].isspace() for start, _ in spans]
    return spans, starts


def _check_chunking(max_tokens: int | None, stride: int) -> None:
    """Fail on bad chunking arguments before any file is read."""
    if max_tokens is None:
        return
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if not 0 <= stride < max_tokens:
        raise ValueError(f"stride must be in [0, max_tokens), got {stride} with max_tokens={max_tokens}")


def chunk_text(
    text: str, max_tokens: int, *, tokenizer: PreTrainedTokenizerBase | None = None, stride: int = 0
) -> list[str]:
    """Split `text` into pieces of at most `max_tokens` tokens; a text that fits is returned unchanged.

    Tokens are the tokenizer's (without special tokens) when one is given, else whitespace-separated words. Chunk
    borders are moved back to whitespace so that no word is cut in two (unless a single word is longer than
    `max_tokens`): for WordPiece tokenizers, which split on whitespace first, a chunk then re-tokenizes to the same
    tokens, hence to at most `max_tokens` of them; byte-level BPE tokenizers may differ by a token at the start of a
    chunk. Each chunk is a slice of the original text, so its inner whitespace is kept.

    Args:
        text: the passage.
        max_tokens: the largest chunk, in tokens.
        tokenizer: a fast tokenizer; `None` counts whitespace-separated words.
        stride: how many tokens consecutive chunks share (`0 <= stride < max_tokens`).
    """
    _check_chunking(max_tokens, stride)
    spans, word_start = _token_spans(text, tokenizer)
    if len(spans) <= max_tokens:
        return [text]
    chunks = []
    start, total = 0, len(spans)
    while True:
        end = min(start + max_tokens, total)
        if end < total:
            boundary = end
            while boundary > start and not word_start[boundary]:
                boundary -= 1
            if boundary > start:
                end = boundary
        chunks.append(text[spans[start][0] : spans[end - 1][1]])
        if end == total:
            return chunks
        # Step forward, keeping `stride` tokens of overlap, and start the next chunk on a word too.
        start = max(end - stride, start + 1)
        while start < end and not word_start[start]:
            start += 1


def _chunk_passage(
    passage: dict[str, Any],
    max_tokens: int | None,
    tokenizer: PreTrainedTokenizerBase | None,
    stride: int,
) -> list[dict[str, Any]]:
    """The passage itself when it fits (or no chunking is asked), else its chunks with ids `f"{id}#{k}"`."""
    if max_tokens is None:
        return [passage]
    pieces = chunk_text(passage["text"], max_tokens, tokenizer=tokenizer, stride=stride)
    if len(pieces) == 1:
        return [passage]
    return [{**passage, "id": f"{passage['id']}#{k}", "text": piece} for k, piece in enumerate(pieces)]


def _text_column(record: Mapping[str, Any]) -> str:
    # MedRAG corpora (e.g. MedRAG/textbooks) have `content` and `contents` (= title + content); prefer the text
    # without the title, which has its own column.
    return next((key for key in ("text", "content", "contents") if key in record), "text")


def load_corpus(
    path_or_id: str,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_tokens: int | None = None,
    stride: int = 0,
    limit: int | None = None,
    skip_invalid: bool = False,
    *,
    report: LoadReport | None = None,
    **load_kwargs: Any,
) -> Dataset:
    """Load a retrieval corpus (`id`, `title`, `text`) from JSON lines or a Hub dataset, chunking long passages.

    Rows need `id` and a text column: `text`, or `content` / `contents` as in the MedRAG corpora; `title` is
    optional. Duplicate ids are an error (after chunking, so a chunk id cannot collide with another passage).

    Args:
        path_or_id: a local JSON-lines file (`.gz` allowed) or a Hub dataset id.
        tokenizer: a fast tokenizer whose tokens `max_tokens` counts; `None` counts whitespace-separated words.
        max_tokens: chunk passages longer than this (see [`chunk_text`]); chunk ids are `f"{id}#{k}"` with `k`
            from 0, passages that fit keep their id. `None` keeps passages whole.
        stride: tokens shared by consecutive chunks.
        limit: keep the first `limit` passages (after chunking, in source order); reading stops there.
        skip_invalid: drop invalid rows (one warning, counted in `report`) instead of raising [`DataFormatError`].
        report: filled with the counts of this load.
        load_kwargs: passed to `datasets.load_dataset` for a Hub id (`split` defaults to `"train"`).
    """
    _check_chunking(max_tokens, stride)
    source, rows = open_records(path_or_id, load_kwargs)

    def parse(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        return _chunk_passage(_corpus_passage(record), max_tokens, tokenizer, stride)

    reasons: list[str] = []
    examples = collect(rows, parse, source=source, skip_invalid=skip_invalid, reasons=reasons, limit=limit)
    return finish(examples, CORPUS_FEATURES, source=source, reasons=reasons, report=report)


def _corpus_passage(record: Mapping[str, Any]) -> dict[str, Any]:
    """One corpus row by [`load_corpus`]'s rules (before chunking), for the in-memory and the streamed reader alike."""
    return {
        "id": identifier(record, "id", default=None),
        "title": text_field(record, "title", required=False),
        "text": text_field(record, _text_column(record)),
    }


class _SeenIds:
    """The ids a stream has given so far, as 16-byte digests (a corpus streamed because it does not fit in memory
    must not be held as a set of its ids): new digests in a set, merged into a sorted array every `flush_at` of them,
    so that memory is 16 bytes per id plus one set of at most `flush_at`. 16 bytes make a false duplicate as likely
    as a collision of two random 128-bit numbers among 24M ids: about 1e-24."""

    def __init__(self, flush_at: int = 1 << 20) -> None:
        self._recent: set[bytes] = set()
        self._sorted = np.empty(0, dtype="S16")
        self._flush_at = flush_at
        self.count = 0

    def add(self, value: str) -> bool:
        """Record `value`; whether it was seen before."""
        # Without trailing NUL bytes, as NumPy's fixed-width bytes hand them back (the same 16-byte value either way).
        digest = hashlib.blake2b(value.encode("utf-8"), digest_size=16).digest().rstrip(b"\0")
        if digest in self._recent:
            return True
        position = int(np.searchsorted(self._sorted, digest))
        if position < len(self._sorted) and self._sorted[position] == digest:
            return True
        self._recent.add(digest)
        self.count += 1
        if len(self._recent) >= self._flush_at:
            self._sorted = np.sort(np.concatenate([self._sorted, np.array(sorted(self._recent), dtype="S16")]))
            self._recent.clear()
        return False


def _stream_local_corpus(path: str) -> Iterator[dict[str, Any]]:
    """The rows of a local corpus file read as [`load_corpus`] reads it (the same reader, the same row parser, the
    same duplicate-id rule), one at a time: the first invalid row, an unreadable file or a file without a row raises
    the `DataFormatError` that `load_corpus(path)` raises, word for word."""
    seen = _SeenIds()
    for location, _, record in iter_json_lines(path):
        try:
            if isinstance(record, RowError):
                raise record
            passage = _corpus_passage(record)
            if seen.add(passage["id"]):
                raise RowError("id", f"duplicate id {passage['id']!r}")
        except RowError as err:
            raise DataFormatError(path, location, err.field, err.problem) from None
        yield passage
    if not seen.count:
        raise DataFormatError(path, "the whole source", None, "no valid row (it holds no rows)")


def stream_corpus(path_or_id: str, **load_kwargs: Any) -> IterableDataset:
    """A retrieval corpus read lazily, for corpora larger than memory (MedRAG's PubMed: 23.9M snippets): the rows
    `id`, `title`, `text` of a JSON-lines file (`.gz` allowed) or a Hub data set, nothing downloaded or held
    beforehand. Index it with `DocumentIndex.build_streaming` (or `DocumentIndex.from_retriever(...,
    directory=...)`).

    The rows follow [`load_corpus`]'s rules (`content` / `contents` as in the MedRAG corpora, ids as strings,
    unique, texts cleaned), without chunking. A local file is read by `load_corpus`'s own reader, so a bad file stops
    the stream with the `DataFormatError` that `load_corpus` raises for it (file, line and field; an empty file, a
    truncated gzip, a line that is not JSON, undecodable bytes, a duplicate id, ...), when the stream reaches it (a
    stream cannot skip and count rows before it is read). A Hub data set is read through `datasets.load_dataset(...,
    streaming=True)` (`load_kwargs` go there, `split` defaults to `"train"`), its rows named `row N`; a local file
    has no splits or loading options, and passing any is an error.
    """
    import datasets

    if os.path.isfile(path_or_id):
        if load_kwargs:
            raise TypeError(
                f"{path_or_id} is a local file: {sorted(load_kwargs)} are only used for Hub datasets (a file has no "
                "split; it is read whole)."
            )
        return IterableDataset.from_generator(
            _stream_local_corpus, features=CORPUS_FEATURES, gen_kwargs={"path": path_or_id}
        )
    split = load_kwargs.pop("split", "train")
    check_hub_id(path_or_id)
    stream = datasets.load_dataset(path_or_id, split=split, streaming=True, **load_kwargs)

    def parse(record: Mapping[str, Any], index: int) -> dict[str, str]:
        try:
            # A streamed data set's rows share one schema: a column another row has is present here as None.
            return _corpus_passage({k: v for k, v in record.items() if v is not None or k == "id"})
        except RowError as error:
            raise DataFormatError(path_or_id, f"row {index + 1}", error.field, error.problem) from None

    return stream.map(parse, with_indices=True).select_columns(list(CORPUS_FEATURES)).cast(CORPUS_FEATURES)


def load_medquad_corpus(
    path: str | os.PathLike[str] | None = None,
    max_tokens: int | None = 150,
    limit: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    stride: int = 0,
    salt: str = "jmlr",
    skip_invalid: bool = False,
    report: LoadReport | None = None,
) -> Dataset:
    """Load the MedQuAD answers (NIH consumer-health texts) as a corpus, e.g. as distractors for PubMedQA.

    Reads `corpus/medquad/medquad_answers.jsonl.gz` (fields `id`, `source`, `url`, `focus`, `question`, `qtype`,
    `text`) into `id`, `title` (= `focus`), `text`, then:

    1. drops answers whose text repeats an earlier one (598 in the shipped file), counted in
       `report.counts["duplicate_texts"]`;
    2. makes ids unique: MedQuAD reuses an id for the answers about several topics of one page, so the n-th
       distinct answer with an id (n >= 2, in file order) gets `f"{id}~{n}"` (`report.counts["renamed_ids"]`);
    3. chunks answers longer than `max_tokens` (see [`load_corpus`]).

    With `limit`, answers are visited in the order of a salted SHA-256 hash of their id and chunked until `limit`
    passages are collected, then returned in file order. The sample is deterministic, mixes all NIH sources (the
    file is sorted by source, so its first rows are all CancerGov), and a larger limit gives a superset of passages.

    Args:
        path: the `.jsonl.gz` file; defaults to `default_data_dir() / MEDQUAD_FILE`.
        max_tokens: chunk size in tokens (`None`: keep answers whole).
        limit: the number of passages to keep (`None`: all, about 30k at 150 words).
        tokenizer: a fast tokenizer whose tokens `max_tokens` counts; `None` counts words.
        stride: tokens shared by consecutive chunks.
        salt: salt of the sampling hash.
        skip_invalid: drop invalid rows (one warning, counted in `report`) instead of raising [`DataFormatError`].
        report: filled with the counts of this load.
    """
    path = str(path) if path is not None else str(default_data_dir() / MEDQUAD_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist; set JMLR_DATA_DIR to the shared data folder or pass path=.")
    _check_chunking(max_tokens, stride)

    def parse(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        return [
            {
                "id": identifier(record, "id", default=None),
                "title": text_field(record, "focus", required=False),
                "text": text_field(record, "text"),
            }
        ]

    reasons: list[str] = []
    answers = collect(
        iter_json_lines(path), parse, source=path, skip_invalid=skip_invalid, reasons=reasons, unique_ids=False
    )

    unique: list[dict[str, Any]] = []
    seen_texts: set[str] = set()
    times_seen: Counter[str] = Counter()
    renamed = 0
    for answer in answers:
        if answer["text"] in seen_texts:
            continue
        seen_texts.add(answer["text"])
        times_seen[answer["id"]] += 1
        if times_seen[answer["id"]] > 1:
            answer["id"] = f"{answer['id']}~{times_seen[answer['id']]}"
            renamed += 1
        unique.append(answer)
    counts = {"duplicate_texts": len(answers) - len(unique), "renamed_ids": renamed}
    logger.info(
        "%s: %d answers, %d repeated texts dropped, %d ids made unique.",
        path,
        len(answers),
        counts["duplicate_texts"],
        renamed,
    )

    order = list(range(len(unique)))
    if limit is not None:
        order.sort(key=lambda position: hash_unit(unique[position]["id"], salt))
    keyed: list[tuple[int, int, dict[str, Any]]] = []
    for position in order:
        if limit is not None and len(keyed) >= limit:
            break
        chunks = _chunk_passage(unique[position], max_tokens, tokenizer, stride)
        keyed.extend((position, k, chunk) for k, chunk in enumerate(chunks))
    if limit is not None:
        del keyed[limit:]
        keyed.sort(key=lambda item: item[:2])
    passages = [chunk for _, _, chunk in keyed]
    return finish(passages, CORPUS_FEATURES, source=path, reasons=reasons, report=report, counts=counts)


__all__ = [
    "MEDQUAD_FILE",
    "chunk_text",
    "load_corpus",
    "load_medquad_corpus",
    "load_pubmedqa_corpus",
    "stream_corpus",
]
