"""Crash-safe writes of whole directories (indices, converted and final checkpoints) and of single files.

A directory is written completely under a temporary sibling name, flushed, and only then swapped into place, so an
interrupted save (an exception, a SIGKILL, a power cut) never leaves a half-written directory where a complete one is
expected: the path holds the old directory whole or the new one whole.

On Linux the swap is one system call (`renameat2(RENAME_EXCHANGE)`), so there is no moment at which the path is
missing. Elsewhere (or on a filesystem without it) the old directory is renamed aside and the new one renamed into
place; a process killed between those two renames leaves no directory at the path, and the next save into it
renames the old one back before it starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# What renameat2 answers where it or RENAME_EXCHANGE is not available (old kernel or libc, some filesystems).
_EXCHANGE_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


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


def exchange_paths(first: Path, second: Path) -> bool:
    """Atomically swap two existing paths (Linux `renameat2` with `RENAME_EXCHANGE`): after the call each name points
    to what the other pointed to. Returns False, having changed nothing, where the exchange is not supported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _EXCHANGE_UNSUPPORTED:
        return False
    raise OSError(code, f"cannot swap {first} and {second}: {os.strerror(code)}", str(first))


def swap_into_place(tmp: Path, directory: Path) -> None:
    """Replace ``directory`` with the complete directory ``tmp``, keeping the old one until the new one is in place."""
    if not directory.exists():
        os.replace(tmp, directory)
        fsync_dir(directory.parent)
        return
    if exchange_paths(tmp, directory):
        fsync_dir(directory.parent)
        shutil.rmtree(tmp, ignore_errors=True)  # now the old directory
        return
    # A directory cannot be atomically replaced by another non-empty one with rename, so the old one is renamed aside
    # first; if the second rename fails, it is renamed back (and a kill in between is undone by the next save, see
    # `recover_interrupted_swap`).
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


def recover_interrupted_swap(directory: Path) -> None:
    """Undo what a save killed inside [`swap_into_place`]'s rename fallback left: with ``directory`` missing, its
    newest ``.NAME.old-*`` backup (the complete previous directory) is renamed back; with ``directory`` present,
    backups are leftovers of a save that finished its swap, and are removed."""
    backups = sorted(
        (path for path in directory.parent.glob(f".{directory.name}.old-*") if path.is_dir()),
        key=lambda path: path.stat().st_mtime,
    )
    if backups and not directory.exists() and not directory.is_symlink():
        logger.warning("Restoring %s from %s: a save into it was interrupted while swapping", directory, backups[-1])
        os.replace(backups.pop(), directory)
        fsync_dir(directory.parent)
    for stale in backups:
        logger.info("Removing %s, left by an interrupted save", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _link_or_copy(source: str, target: str) -> None:
    # A hard link costs no copy and leaves the original where it is; where links are refused (another filesystem,
    # protected_hardlinks, FAT), the file is copied.
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)


def link_entry(source: Path, target: Path) -> None:
    """Recreate the file, symlink or directory tree ``source`` at ``target`` from hard links (copies where a link is
    refused): the files are shared, not duplicated, and ``source`` is left untouched."""
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(source), str(target))


@contextlib.contextmanager
def atomic_directory(
    directory: str | os.PathLike[str], *, keep: Callable[[str], bool] | None = None
) -> Iterator[Path]:
    """Yield a temporary sibling of ``directory`` to write into; on success it replaces ``directory`` (every file
    flushed first), on failure it is removed and ``directory`` is left as it was.

    Args:
        directory: The directory to write. A symlink to a directory is followed: its target is replaced, the link
            stays.
        keep: Entries of the existing ``directory`` to carry over into the new one. Called with the name of each
            top-level entry that the new save did not write; those it accepts are hard-linked into the new directory
            before the swap (subfolders link file by file), so they are at the path before, during and after the swap
            and cost no copy. ``None`` (the default): the new directory replaces the old one whole.
    """
    directory = Path(os.path.realpath(directory))
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory: cannot save a directory there")
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_swap(directory)
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
            if path.is_file() and not path.is_symlink():
                fsync_file(path)
        # mkdtemp makes its folder private (0700): the new directory gets the old one's mode, or the usual one.
        os.chmod(tmp, stat.S_IMODE(directory.stat().st_mode) if directory.is_dir() else 0o777 & ~_umask())
        if keep is not None and directory.is_dir():
            written = {path.name for path in tmp.iterdir()}
            for entry in sorted(directory.iterdir()):
                if entry.name not in written and keep(entry.name):
                    link_entry(entry, tmp / entry.name)
        cwd = _cwd_inside(directory)
        swap_into_place(tmp, directory)
        if cwd is not None:  # the process stood in the old directory, which is gone: it moves to the same place
            os.chdir(cwd if os.path.isdir(cwd) else directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _cwd_inside(directory: Path) -> str | None:
    """The current directory if it is ``directory`` or inside it, else None."""
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    return cwd if Path(cwd) == directory or directory in Path(cwd).parents else None


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
