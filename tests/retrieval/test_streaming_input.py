"""Bad input through the streaming index (`jmlr index --streaming`, `stream_corpus`, `DocumentIndex.build_streaming`):
a streamed corpus file must be refused exactly as the in-memory loader refuses it (issue 24).

The in-memory corpus loader (`load_corpus`) names the file, the line and the field of the first bad row of a file
(`DataFormatError`); the streamed path used to hand the file to the `datasets` JSON reader, which crashed with
`StopIteration`, `UnicodeDecodeError`, `ArrowInvalid` or `EOFError` on the same files. The property test feeds both
paths the generated files of `tests/data/test_loader_properties.py` (plus whole-file faults: an empty file, a
truncated gzip, a CSV file named as JSON lines) and compares their outcomes: the same rows indexed, or the same
error, word for word.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jmlr_hf.cli import main as jmlr_main
from jmlr_hf.data import DataFormatError, load_corpus, stream_corpus
from jmlr_hf.retrieval import DocumentIndex
from tests.data.test_loader_properties import VALID, corpus_files, json_line
from tests.testing_utils.reliability import record

WORDS = ["insulin", "pancreas", "aspirin", "heart", "kidney", "liver", "bone", "nerve"]


def encode(texts: list[str]) -> np.ndarray:
    """A deterministic bag-of-words encoder (no model needed to index)."""
    return np.array([[text.lower().count(word) + 1e-3 for word in WORDS] for text in texts], "float32")


def build(path: Path, folder: Path) -> DocumentIndex:
    return DocumentIndex.build_streaming(
        stream_corpus(str(path)), encode, "bow", folder / "index", chunk_size=3, show_progress=False
    )


def good_lines(n: int = 3) -> list[bytes]:
    return [json.dumps({"id": f"d{i}", "text": f"the {WORDS[i]} passage"}).encode() for i in range(n)]


# --------------------------------------------------------------------------------------------------------------------
# The cases of the issue: each crashed with a library exception, or ignored an argument
# --------------------------------------------------------------------------------------------------------------------

MALFORMED_FILES = {
    "empty file": (lambda: b"", r"corpus.jsonl, the whole source: no valid row \(it holds no rows\)"),
    "non-UTF-8 bytes": (
        lambda: b"\n".join([*good_lines(1), b'{"id": "d9", "text": "caf\xe9 au lait"}']),
        r"corpus.jsonl, line 2: field 'text': not valid UTF-8",
    ),
    "truncated line": (
        lambda: b"\n".join([*good_lines(2), b'{"id": "d9", "text": "cut of']),
        r"corpus.jsonl, line 3: malformed JSON",
    ),
    "CSV given as JSON lines": (
        lambda: b"id,text\nd0,the insulin passage\n",
        r"corpus.jsonl, line 1: malformed JSON",
    ),
    "ids 1 and '1'": (
        lambda: b'{"id": 1, "text": "the insulin passage"}\n{"id": "1", "text": "the heart passage"}\n',
        r"corpus.jsonl, line 2: field 'id': duplicate id '1'",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED_FILES))
def test_a_malformed_corpus_file_is_named_as_the_in_memory_loader_names_it(tmp_path, case):
    """Before: StopIteration / UnicodeDecodeError / ArrowInvalid from the datasets JSON reader, mid-build."""
    content, message = MALFORMED_FILES[case]
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(content())
    with pytest.raises(DataFormatError, match=message):
        load_corpus(str(path))
    with pytest.raises(DataFormatError, match=message):
        build(path, tmp_path)
    assert not (tmp_path / "index").exists()


def test_a_truncated_gzip_corpus_is_named(tmp_path):
    """Before: `EOFError` (the in-memory loader named the file and the line it reached)."""
    whole = gzip.compress(b"\n".join(good_lines(8)) + b"\n")
    path = tmp_path / "corpus.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    message = r"corpus.jsonl.gz, line \d+: the gzip stream is truncated or not gzip"
    with pytest.raises(DataFormatError, match=message):
        load_corpus(str(path))
    with pytest.raises(DataFormatError, match=message):
        build(path, tmp_path)


def test_jmlr_index_streaming_names_the_bad_line(tmp_path, capsys):
    """The command line (`jmlr index --streaming`) goes through the same reader: before, `error: StopIteration`."""
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"\n".join([*good_lines(2), b'{"id": "d9", "text": "cut of']))
    argv = ["index", "--streaming", "--corpus", str(path), "--output", str(tmp_path / "index")]
    with pytest.raises(DataFormatError, match=r"corpus.jsonl, line 3: malformed JSON"):
        jmlr_main(argv)


def test_stream_corpus_refuses_a_split_for_a_local_file(tmp_path):
    """`stream_corpus(file, split="test")` used to read the whole file as if no split had been asked."""
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"\n".join(good_lines()))
    for split in ("test", "train"):  # a file has no splits: it is read whole, as load_corpus reads it
        with pytest.raises(TypeError, match=r"\['split'\] are only used for Hub datasets"):
            stream_corpus(str(path), split=split)
    assert [row["id"] for row in stream_corpus(str(path))] == ["d0", "d1", "d2"]


def test_build_streaming_names_ids_of_two_types(tmp_path):
    """An iterable of dicts with ids `1` and `"1"` crashed inside Arrow (`ArrowInvalid`); the row is named."""
    rows = [{"id": 1, "text": "the insulin passage"}, {"id": "1", "text": "the heart passage"}]
    with pytest.raises(ValueError, match=r"Document row 1: id '1' is a str, the ids before it are int"):
        DocumentIndex.build_streaming(iter(rows), encode, "bow", tmp_path / "index", show_progress=False)
    mixed_title = [{"id": "a", "text": "the insulin passage", "title": "T"}, {"id": "b", "text": "t", "title": 3}]
    with pytest.raises(ValueError, match=r"Document 'b' \(row 1\) has a title of type int"):
        DocumentIndex.build_streaming(iter(mixed_title), encode, "bow", tmp_path / "index", show_progress=False)


# --------------------------------------------------------------------------------------------------------------------
# Property: streamed and in-memory outcomes are the same, file for file
# --------------------------------------------------------------------------------------------------------------------

WHOLE_FILE_FAULTS = ("empty file", "truncated gzip", "CSV given as JSON lines")


@st.composite
def corpus_file(draw) -> tuple[str, bytes, str]:
    """`(file name, content, fault class)`: the rows of the in-memory loader's generator, or a whole-file fault."""
    kind = draw(st.sampled_from(["rows"] * 6 + list(WHOLE_FILE_FAULTS)))
    generated = draw(corpus_files())
    content = b"\n".join(json_line(row.content) for row in generated) + b"\n"
    if kind == "empty file":
        return "corpus.jsonl", draw(st.sampled_from([b"", b"\n\n", b"  \n"])), kind
    if kind == "truncated gzip":
        whole = gzip.compress(content)
        return "corpus.jsonl.gz", whole[: draw(st.integers(1, len(whole) - 1))], kind
    if kind == "CSV given as JSON lines":
        return "corpus.jsonl", b"id,text\n" + b"".join(f"d{i},passage {i}\n".encode() for i in range(3)), kind
    broken = [row.fault for row in generated if row.fault != VALID]
    name = draw(st.sampled_from(["corpus.jsonl", "corpus.jsonl.gz"]))
    return name, gzip.compress(content) if name.endswith(".gz") else content, broken[0] if broken else VALID


def outcome(load) -> tuple[str, object]:
    """`("rows", [(id, title, text), ...])` or `("error", message)`; any other exception fails the test."""
    try:
        documents = load()
    except DataFormatError as error:
        return "error", str(error)
    return "rows", list(zip(documents["id"], documents["title"], documents["text"], strict=True))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus_file())
def test_streamed_and_in_memory_loads_have_the_same_outcome(generated):
    name, content, fault = generated
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        in_memory = outcome(lambda: load_corpus(str(path)))
        streamed = outcome(lambda: build(path, Path(folder)).documents)
        assert streamed == in_memory
        if fault != VALID:
            assert in_memory[0] == "error", fault
    area_fault = fault if fault in WHOLE_FILE_FAULTS else ("valid file" if fault == VALID else "bad row")
    result = "indexed: the rows the in-memory loader keeps" if in_memory[0] == "rows" else "the same DataFormatError"
    record("streaming index", area_fault, result)
