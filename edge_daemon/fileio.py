"""Whole-file writes shared by the status file and the event snapshots."""

from __future__ import annotations

import os
from typing import Optional


def write_synced(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``, then fsync it.

    Callers rename the file into place afterwards: the fsync comes first so
    that after a power cut the name points at complete contents, not at an
    empty inode. Raises OSError (ENOSPC on a full disk).
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def replace_file(
    path: str, data: bytes, mode: int = 0o644, *, sync: bool = True, tmp: Optional[str] = None
) -> None:
    """Put ``data`` at ``path`` whole: a temporary file beside it, fsync, rename.

    After a kill or power cut ``path`` holds the old contents or the new ones,
    never part of either. The temporary name ends in ``.tmp``. ``sync=False``
    skips the fsync, for caches: a kill still leaves old or new contents, a
    power cut may leave an empty file (which a cache reader must treat as
    missing). ``tmp`` names the temporary file (default: ``path`` with the pid
    and ``.tmp``). Raises OSError with nothing left behind.
    """
    import contextlib

    if tmp is None:
        tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            if sync:
                write_synced(fd, data)
            else:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sync_dir(path: str) -> None:
    """fsync a directory, so the names renamed into it survive a power cut."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
