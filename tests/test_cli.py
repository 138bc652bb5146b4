"""The `jmlr` command end to end on the real retriever (all-MiniLM-L6-v2) and small local files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import load_from_disk

from jmlr_hf.cli import main
from jmlr_hf.retrieval.index import DocumentIndex

pytestmark = pytest.mark.integration

CORPUS = [
    {
        "id": "d1",
        "title": "Anaphylaxis",
        "text": "Intramuscular epinephrine is the first-line treatment of anaphylaxis.",
    },
    {"id": "d2", "title": "Iron", "text": "Iron deficiency causes a microcytic anemia with a low ferritin."},
    {"id": "d3", "title": "Potassium", "text": "Hyperkalemia produces peaked T waves on the ECG."},
    {"id": "d4", "title": "Humerus", "text": "A midshaft humerus fracture can injure the radial nerve."},
    {"id": "d5", "title": "Kidney", "text": "The kidney filters the blood and makes urine."},
]


def test_index_then_retrieve(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    main(["index", "--corpus", str(corpus), "--retriever", "all-minilm-l6-v2", "--output", str(tmp_path / "index")])
    assert "Indexed 5 documents" in capsys.readouterr().out
    assert len(DocumentIndex.load(tmp_path / "index")) == 5

    out = tmp_path / "questions"
    main(
        [
            "retrieve",
            "--index",
            str(tmp_path / "index"),
            "--task",
            "medqa",
            "--questions",
            "tests/fixtures/medqa_tiny.jsonl",
            "--num-candidates",
            "3",
            "--output",
            str(out),
        ]
    )
    rows = load_from_disk(str(out))
    assert all(len(c) == 3 and len(ids) == 3 for c, ids in zip(rows["candidates"], rows["candidate_ids"]))
    top = {row["question"]: row["candidate_ids"][0] for row in rows}
    # The off-the-shelf retriever finds the passage that answers each of these questions.
    assert top["Which drug is first-line treatment for anaphylaxis?"] == "d1"
    assert top["Which electrolyte abnormality produces peaked T waves on ECG?"] == "d3"


def test_index_streaming_equals_the_in_memory_build(tmp_path, capsys):
    """`jmlr index --streaming` indexes a corpus file chunk by chunk into the output folder: the same documents and
    vectors as the in-memory build; the named corpora (which fit in memory) are refused with the reason."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(row) + "\n" for row in CORPUS))
    common = ["index", "--corpus", str(corpus), "--retriever", "all-minilm-l6-v2"]
    main([*common, "--output", str(tmp_path / "memory")])
    main([*common, "--output", str(tmp_path / "streamed"), "--streaming", "true"])
    assert "Indexed 5 streamed documents" in capsys.readouterr().out
    memory, streamed = DocumentIndex.load(tmp_path / "memory"), DocumentIndex.load(tmp_path / "streamed")
    assert streamed.documents["id"] == memory.documents["id"] and streamed.fingerprint == memory.fingerprint
    vectors = np.random.default_rng(0).standard_normal((3, memory.dim)).astype("float32")
    for got, want in zip(streamed.search(vectors, k=5), memory.search(vectors, k=5)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="--corpus <file or Hub id>"):
        main(["index", "--corpus", "pubmedqa", "--streaming", "--output", str(tmp_path / "x")])


def test_a_plain_encoder_loaded_for_jmlr_index_encodes_a_text_alike_padded_or_alone():
    """`jmlr index` / `jmlr retrieve` wrap a plain encoder in a `JMLRRetriever`: its attention must still honour the
    padding mask. (Wrapping it in a new composite config once reset the encoder's attention implementation to None,
    and a passage's vector changed with the longest text of its batch: cosine down to 0.90.)"""
    import torch

    from jmlr_hf.cli.commands import load_retriever

    retriever, tokenizer, _ = load_retriever("all-minilm-l6-v2")
    assert retriever.encoder.config._attn_implementation == "sdpa"  # as AutoModel loaded it
    texts = ["What causes gout?", "How many people are affected by familial Mediterranean fever in the world today?"]
    padded = tokenizer(texts, padding=True, return_tensors="pt")
    alone = tokenizer(texts[:1], return_tensors="pt")
    with torch.no_grad():
        for is_query in (True, False):
            together = retriever.encode_dense(padded["input_ids"], padded["attention_mask"], is_query=is_query)
            single = retriever.encode_dense(alone["input_ids"], alone["attention_mask"], is_query=is_query)
            torch.testing.assert_close(together[0], single[0], atol=1e-5, rtol=0)


def test_python_m_jmlr_hf_cli_is_the_jmlr_command():
    """`accelerate launch -m jmlr_hf.cli index …` (a sharded build) needs the package to run as a module."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "jmlr_hf.cli", "--help"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("usage: jmlr ") and "index" in run.stdout
