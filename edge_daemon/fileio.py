"""Whole-file writes shared by the status file and the event snapshots."""

from __future__ import annotations

import os


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
