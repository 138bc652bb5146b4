"""Crash-safe writes of whole directories (indices, converted and final checkpoints) and of single files.

A directory is written completely under a temporary sibling name, flushed, and only then renamed into place, so an
interrupted save never leaves a half-written directory where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    # Makes renames durable on POSIX; directories cannot be opened for fsync on Windows, where it is skipped.
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_into_place(tmp: Path, directory: Path) -> None:
    """Replace ``directory`` with the complete directory ``tmp``, keeping the old one until the new one is in place."""
    if not directory.exists():
        os.replace(tmp, directory)
        fsync_dir(directory.parent)
        return
    # A directory cannot be atomically replaced by another non-empty one on POSIX, so the old one is renamed aside
    # first; if the second rename fails, it is renamed back.
    backup = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
    backup.rmdir()
    os.replace(directory, backup)
    try:
        os.replace(tmp, directory)
    except BaseException:
        os.replace(backup, directory)
        raise
    fsync_dir(directory.parent)
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``directory`` to write into; on success it replaces ``directory`` (every file
    flushed first), on failure it is removed and ``directory`` is left as it was."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    # A save killed before its swap leaves its temporary sibling behind: the next save of the same directory removes
    # it (saves of one directory come from one process, so no other save is writing into it).
    for stale in directory.parent.glob(f".{directory.name}.tmp-*"):
        if stale.is_dir():
            logger.info("Removing %s, left by an interrupted save", stale)
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                fsync_file(path)
        swap_into_place(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that the file appears whole or not at all (temporary sibling, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(path: str | os.PathLike[str], value: Any, *, sort_keys: bool = False) -> None:
    """`value` as indented JSON (one trailing newline) at `path`, through [`write_text`]: whole or not at all."""
    write_text(path, json.dumps(value, indent=2, sort_keys=sort_keys) + "\n")
