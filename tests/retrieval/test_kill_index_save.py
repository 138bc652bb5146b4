"""A process SIGKILLed in the middle of `DocumentIndex.save` leaves the previous index whole, and the next save
removes what it left behind (a real process, killed at a fixed point of the save:
tests/testing_utils/kill_save_worker.py). The swap itself leaves no moment without an index: one exchange on Linux;
elsewhere a kill between its two renames is undone by the next save."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jmlr_hf.models.retrieval_jmlr import DOCUMENTS_FILE
from jmlr_hf.retrieval import index as index_module
from jmlr_hf.retrieval.index import DocumentIndex
from jmlr_hf.utils import atomic
from tests.testing_utils.kill_save_worker import (
    NEW_DOCUMENTS,
    OLD_DOCUMENTS,
    encode,
    kill_when_paused,
    new_index,
    old_index,
)

pytest.importorskip("faiss")


def assert_index(folder: Path, fingerprint: str, documents: list[dict]) -> None:
    loaded = DocumentIndex.load(folder, expected_fingerprint=fingerprint)
    assert loaded.documents["id"][:] == [doc["id"] for doc in documents]
    assert loaded.documents["text"][:] == [doc["text"] for doc in documents]
    # The vectors are the documents' own: each document is its own nearest neighbour.
    _, ids = loaded.search(encode([doc["text"] for doc in documents]), k=1)
    assert ids[:, 0].tolist() == list(range(len(documents)))


def hidden_entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


@pytest.mark.integration
def test_sigkill_during_an_index_save_keeps_the_previous_index(tmp_path):
    out = tmp_path / "index"
    old_index().save(out)

    # The worker builds another index and is killed with its document store half-written.
    half_written = kill_when_paused("index-save", out)
    assert half_written.name == DOCUMENTS_FILE and half_written.stat().st_size > 0

    assert_index(out, "fp-old", OLD_DOCUMENTS)
    new_index().save(out)
    assert_index(out, "fp-new", NEW_DOCUMENTS)
    assert not half_written.exists() and hidden_entries(tmp_path) == []


def test_the_swap_is_a_single_exchange_where_the_system_has_one(tmp_path, monkeypatch):
    """On Linux the old index is never renamed aside: no moment without an index for a kill to land in."""
    out = tmp_path / "index"
    old_index().save(out)
    probe_a, probe_b = tmp_path / "a", tmp_path / "b"
    probe_a.mkdir(), probe_b.mkdir()
    if not atomic.exchange_paths(probe_a, probe_b):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here: the rename fallback is tested below")
    probe_a.rmdir(), probe_b.rmdir()
    real_replace = os.replace

    def no_rename_of_the_index(src, dst):
        assert Path(src) != out, "the old index was renamed aside"
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", no_rename_of_the_index)
    new_index().save(out)
    assert_index(out, "fp-new", NEW_DOCUMENTS)
    assert hidden_entries(tmp_path) == []


def test_a_kill_between_the_fallbacks_two_renames_is_undone_by_the_next_save(tmp_path, monkeypatch):
    """Without the exchange, the old index is renamed aside before the new one is renamed in. A kill between the two
    leaves no index at the path, the old one aside and the complete new one in its temporary folder: loading says
    where the old one is, and the next save puts it back first (so that a save failing then still leaves it)."""
    out = tmp_path / "index"
    old_index().save(out)
    # The state such a kill leaves, made by hand: SIGKILL runs no handler, so none of the code's clean-up ran.
    os.replace(out, tmp_path / ".index.old-k1ll3d")
    new_index().save(tmp_path / ".index.tmp-k1ll3d")
    with pytest.raises(FileNotFoundError, match=r"interrupted; the previous index is in .*\.index\.old-k1ll3d"):
        DocumentIndex.load(out)

    monkeypatch.setattr(atomic, "exchange_paths", lambda first, second: False)

    def failing_write(documents, path):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(index_module, "_write_documents", failing_write)
        with pytest.raises(OSError, match="disk full"):
            new_index().save(out)
    assert_index(out, "fp-old", OLD_DOCUMENTS)
    assert hidden_entries(tmp_path) == []

    new_index().save(out)  # through the rename fallback
    assert_index(out, "fp-new", NEW_DOCUMENTS)
    assert hidden_entries(tmp_path) == []
