"""Crash-safe directory writes."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from jmlr_hf.utils import atomic as atomic_module
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


# ---------------------------------------------------------------------------------------------------------------------
# Where no swap is possible (issue 23): a mount point, an unwritable parent. A safe in-place save, with a warning.
# ---------------------------------------------------------------------------------------------------------------------


def _old_save(target):
    target.mkdir()
    (target / "weights.bin").write_text("v1")
    (target / "stale.bin").write_text("old format")
    (target / "checkpoint-2").mkdir()
    (target / "checkpoint-2" / "optimizer.pt").write_text("state")
    return os.stat(target / "checkpoint-2" / "optimizer.pt").st_ino


def _new_save(target, caplog):
    with (
        caplog.at_level("WARNING", logger=atomic_module.logger.name),
        atomic_directory(target, keep=lambda name: name.startswith("checkpoint-")) as tmp,
    ):
        (tmp / "weights.bin").write_text("v2")
        (tmp / "tokenizer").mkdir()
        (tmp / "tokenizer" / "vocab.txt").write_text("a b")


def _check_in_place(tmp_path, target, inode, caplog, reason):
    assert (target / "weights.bin").read_text() == "v2"
    assert (target / "tokenizer" / "vocab.txt").read_text() == "a b"
    assert not (target / "stale.bin").exists()  # dropped, as the swap drops it
    # Kept in place, not copied (a checkpoint across devices is gigabytes).
    assert os.stat(target / "checkpoint-2" / "optimizer.pt").st_ino == inode
    assert sorted(p.name for p in target.iterdir()) == ["checkpoint-2", "tokenizer", "weights.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert reason in caplog.text and "in place" in caplog.text


def test_a_mount_point_is_saved_in_place(tmp_path, monkeypatch, caplog):
    """`output_dir` a volume mounted in a container: its parent is another filesystem (every kept entry was copied
    across devices into the temporary sibling) and the mount point cannot be renamed (EBUSY): the save failed."""
    target = tmp_path / "model"
    inode = _old_save(target)
    monkeypatch.setattr(atomic_module, "is_mount_point", lambda path: os.fspath(path) == os.fspath(target))
    _new_save(target, caplog)
    _check_in_place(tmp_path, target, inode, caplog, "mount point")


def test_a_swap_refused_with_ebusy_falls_back_to_an_in_place_save(tmp_path, monkeypatch, caplog):
    """A bind mount on the same filesystem is no mount point to `os.path.ismount`, but renaming it fails with EBUSY
    (renameat2 and rename alike): the model, written in full, is installed in place instead of being lost."""
    target = tmp_path / "model"
    inode = _old_save(target)

    def busy(first, second):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(second))

    monkeypatch.setattr(atomic_module, "exchange_paths", busy)
    _new_save(target, caplog)
    _check_in_place(tmp_path, target, inode, caplog, "Device or resource busy")


def test_an_unwritable_parent_is_saved_in_place(tmp_path, monkeypatch, caplog):
    """`output_dir` writable, its parent not (a volume's root owned by another user): `mkdtemp` beside it raised
    PermissionError and nothing was saved."""
    target = tmp_path / "model"
    inode = _old_save(target)
    mkdtemp = tempfile.mkdtemp

    def refused(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == tmp_path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return mkdtemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(atomic_module.tempfile, "mkdtemp", refused)
    _new_save(target, caplog)
    _check_in_place(tmp_path, target, inode, caplog, "not writable")


def test_a_failed_in_place_save_leaves_the_previous_one(tmp_path, monkeypatch):
    target = tmp_path / "model"
    _old_save(target)
    monkeypatch.setattr(atomic_module, "is_mount_point", lambda path: True)
    with pytest.raises(RuntimeError, match="disk full"), atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_text("half of v2")
        raise RuntimeError("disk full")
    assert (target / "weights.bin").read_text() == "v1"
    assert sorted(p.name for p in target.iterdir()) == ["checkpoint-2", "stale.bin", "weights.bin"]


def test_mount_points_are_read_from_the_mount_table():
    assert atomic_module.is_mount_point("/")
    assert atomic_module.is_mount_point("/proc")
    assert not atomic_module.is_mount_point("/proc/self")


# ---------------------------------------------------------------------------------------------------------------------
# Concurrent saves of one directory (`save_on_each_node` on a shared filesystem)
# ---------------------------------------------------------------------------------------------------------------------


def test_a_save_leaves_the_temporary_folder_of_a_save_in_progress_alone(tmp_path):
    """Each save removed every `.NAME.tmp-*` sibling as a leftover, also one another process was writing into."""
    target = tmp_path / "model"
    with atomic_directory(target) as first:
        (first / "weights.bin").write_text("first")
        with atomic_directory(target) as second:  # another node's main process, same shared folder
            (second / "weights.bin").write_text("second")
        assert first.is_dir() and (first / "weights.bin").read_text() == "first"
    assert (target / "weights.bin").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_leftover_of_a_dead_process_is_removed(tmp_path):
    target = tmp_path / "model"
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead = int(done.stdout)
    leftover = tmp_path / f".model.tmp-{dead}@{socket.gethostname()}-abcd1234"
    leftover.mkdir()
    legacy = tmp_path / ".model.tmp-x1y2z3ab"  # an earlier version's name, which says no owner
    legacy.mkdir()
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_text("v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
