"""Crash-safe directory writes."""

from __future__ import annotations

import pytest

from jmlr_hf.utils.atomic import atomic_directory


def test_atomic_directory_replaces_only_on_success(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_text("v1")
    assert (target / "weights.bin").read_text() == "v1"

    with pytest.raises(RuntimeError, match="disk full"), atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_text("half of v2")
        raise RuntimeError("disk full")
    assert (target / "weights.bin").read_text() == "v1"  # the old version survives a crash mid-save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary directory left behind

    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_text("v2")
    assert (target / "weights.bin").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
