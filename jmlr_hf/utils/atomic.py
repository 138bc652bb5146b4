"""Crash-safe writes of whole directories (indices, converted and final checkpoints) and of single files.

A directory is written completely under a temporary sibling name, flushed, and only then swapped into place, so an
interrupted save (an exception, a SIGKILL, a power cut) never leaves a half-written directory where a complete one is
expected: the path holds the old directory whole or the new one whole.

On Linux the swap is one system call (`renameat2(RENAME_EXCHANGE)`), so there is no moment at which the path is
missing. Elsewhere (or on a filesystem without it) the old directory is renamed aside and the new one renamed into
place; a process killed between those two renames leaves no directory at the path, and the next save into it
renames the old one back before it starts ([`recover_interrupted_swap`], which `JointRetrievalTrainer` also runs
before it resumes).

Where no swap is possible — the directory is a mount point (a container or Kubernetes volume: renaming it fails with
EBUSY, and its parent is another filesystem), or its parent is not writable — the directory is saved in place
instead, with a warning: everything is written and flushed in a staging folder inside it first, then each entry is
renamed over its old version (each file appears whole; a kill during the renames can leave old and new files side
by side, or a weights file missing, never a half-written file).

Several processes may save one directory at once (`save_on_each_node` on a shared filesystem): a temporary folder
is named after its owner (`<pid>@<host>`), and a save removes only the leftovers of dead processes of its own host.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import shutil
import socket
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
    """Undo what a save killed inside [`swap_into_place`]'s rename fallback left: with ``directory`` missing — or
    empty, as a program that found it missing recreates it (the Trainer makes its `output_dir` when it starts) — its
    newest ``.NAME.old-*`` backup (the complete previous directory) is renamed back; with ``directory`` holding
    something, backups are leftovers of a save that finished its swap, and are removed.

    Without the empty case, a run restarted after such a kill found an empty `output_dir` (no checkpoint to resume
    from), and its first save then removed the backup, the previous checkpoints with it."""
    directory = Path(directory)
    backups = sorted(
        (path for path in directory.parent.glob(f".{directory.name}.old-*") if path.is_dir()),
        key=lambda path: path.stat().st_mtime,
    )
    empty = directory.is_dir() and not directory.is_symlink() and not any(directory.iterdir())
    if backups and empty:
        directory.rmdir()
    if backups and not directory.exists() and not directory.is_symlink():
        logger.warning("Restoring %s from %s: a save into it was interrupted while swapping", directory, backups[-1])
        os.replace(backups.pop(), directory)
        fsync_dir(directory.parent)
    for stale in backups:
        logger.info("Removing %s, left by an interrupted save", stale)
        shutil.rmtree(stale, ignore_errors=True)


# The staging folder of an in-place save, inside the directory it saves.
IN_PLACE_PREFIX = ".in-place-save-"
# What a refused rename answers on a mount point (EBUSY), across filesystems (EXDEV), or under some FUSE and network
# filesystems (EPERM, EACCES, EROFS on the parent).
_SWAP_REFUSED = {errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES, errno.EROFS}
_OWNED = re.compile(r"(?P<pid>\d+)@(?P<host>.+)-[^-]+")


def _owner() -> str:
    """`<pid>@<host>`: who writes a temporary folder, in its name."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _in_use(suffix: str) -> bool:
    """Whether a temporary folder (the part of its name after its prefix) may still be written by its owner: a live
    process of this host, or any process of another host (which cannot be checked from here; that host's next save
    of the same directory removes it). A name without an owner is an earlier version's leftover."""
    match = _OWNED.fullmatch(suffix)
    if match is None:
        return False
    if match["host"] != socket.gethostname():
        return True
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # alive, another user's; or not a pid
        return True
    return True


def remove_stale_temporaries(folder: Path, prefix: str) -> None:
    """Remove the folders `prefix*` of `folder` left by interrupted saves, and only those: a folder of a save still in
    progress in another process (see [`_in_use`]) is left alone."""
    for stale in folder.glob(f"{prefix}*"):
        if stale.is_dir() and not stale.is_symlink() and not _in_use(stale.name[len(prefix) :]):
            logger.info("Removing %s, left by an interrupted save", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _mount_points() -> set[str]:
    """The mount points of this process's mount namespace (Linux `/proc/self/mountinfo`; empty elsewhere)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            fields = [line.split() for line in handle]
    except OSError:
        return set()
    # Field 5 is the mount point, with spaces and other bytes written as octal escapes (\040).
    return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), row[4]) for row in fields if len(row) > 4}


def is_mount_point(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a mount point: another filesystem than its parent's (`os.path.ismount`), or a bind mount of
    the same one, which only the mount table shows. Either way renaming it fails with EBUSY."""
    path = os.path.realpath(path)
    return os.path.ismount(path) or path in _mount_points()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _install_in_place(staging: Path, directory: Path, keep: Callable[[str], bool] | None) -> None:
    """Make `directory` hold what `staging` (a complete, flushed save inside it) holds, renaming entry by entry.

    First the old entries that the new save neither rewrites nor keeps are removed (so that a kill afterwards leaves
    a model that fails to load, never one that loads a previous save's weights beside the new ones), then each new
    entry is renamed over its old version: a file in one atomic rename, a folder after its old version is removed.
    """
    written = {path.name for path in staging.iterdir()}
    for entry in sorted(directory.iterdir()):
        if entry == staging or entry.name.startswith(IN_PLACE_PREFIX) or entry.name in written:
            continue
        if keep is None or not keep(entry.name):
            _remove(entry)
    for name in sorted(written):
        source, target = staging / name, directory / name
        if source.is_dir() and not source.is_symlink() and (target.exists() or target.is_symlink()):
            _remove(target)
        os.replace(source, target)
    fsync_dir(directory)
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _in_place_directory(directory: Path, keep: Callable[[str], bool] | None, reason: str) -> Iterator[Path]:
    """[`atomic_directory`]'s fallback where no swap is possible: a staging folder inside `directory` to write into,
    installed entry by entry on success ([`_install_in_place`]), removed on failure (`directory` untouched)."""
    logger.warning(
        "Saving %s in place: %s, so it cannot be swapped whole. Each file is written completely before it replaces "
        "its old version, but a kill during the replacement can leave old and new files side by side.",
        directory,
        reason,
    )
    remove_stale_temporaries(directory, IN_PLACE_PREFIX)
    staging = Path(tempfile.mkdtemp(prefix=f"{IN_PLACE_PREFIX}{_owner()}-", dir=directory))
    try:
        yield staging
        _fsync_tree(staging)
        _install_in_place(staging, directory, keep)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fsync_file(path)


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

    Where ``directory`` cannot be swapped (a mount point, an unwritable parent, a rename refused with EBUSY or
    EXDEV), the context yields a staging folder inside it instead and saves in place, with a warning (see the
    module's docstring); ``keep`` means the same there.
    """
    directory = Path(os.path.realpath(directory))
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory: cannot save a directory there")
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_swap(directory)
    # A save killed before its swap leaves its temporary sibling behind: the next save of the same directory removes
    # it, unless its owner is still writing it (another node saving the same shared folder).
    remove_stale_temporaries(directory.parent, f".{directory.name}.tmp-")
    reason = "it is a mount point" if directory.is_dir() and is_mount_point(directory) else None
    tmp = None
    if reason is None:
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-{_owner()}-", dir=directory.parent))
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not directory.is_dir():
                raise
            reason = f"its parent folder is not writable ({err.strerror})"
    if tmp is None:
        with _in_place_directory(directory, keep, reason) as staging:
            yield staging
        return
    try:
        yield tmp
        _fsync_tree(tmp)
        # mkdtemp makes its folder private (0700): the new directory gets the old one's mode, or the usual one.
        os.chmod(tmp, stat.S_IMODE(directory.stat().st_mode) if directory.is_dir() else 0o777 & ~_umask())
        written = {path.name for path in tmp.iterdir()}
        if keep is not None and directory.is_dir():
            for entry in sorted(directory.iterdir()):
                if entry.name not in written and not entry.name.startswith(IN_PLACE_PREFIX) and keep(entry.name):
                    link_entry(entry, tmp / entry.name)
        cwd = _cwd_inside(directory)
        try:
            swap_into_place(tmp, directory)
        except OSError as err:
            # Refused although no mount point was seen (a bind mount on some kernels, FUSE, network filesystems):
            # the complete save is installed in place rather than lost.
            if err.errno not in _SWAP_REFUSED or not directory.is_dir():
                raise
            with _in_place_directory(directory, keep, f"swapping it failed ({err.strerror})") as staging:
                for name in written:
                    source = tmp / name
                    if source.is_dir() and not source.is_symlink():
                        shutil.copytree(source, staging / name, symlinks=True, copy_function=_link_or_copy)
                    else:
                        _link_or_copy(str(source), str(staging / name))
            shutil.rmtree(tmp, ignore_errors=True)
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
