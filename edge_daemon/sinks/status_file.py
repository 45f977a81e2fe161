"""The JSON status file, replaced atomically: readers see the old or the new, never half."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from typing import Any

from ..errors import OutputError


class StatusFile:
    """Writes the daemon's status object to ``path`` by temp file + fsync + rename."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._prefix = f".{os.path.basename(path)}."
        self._swept = False

    def _sweep(self, folder: str) -> None:
        """Remove temporary files a killed process left behind (once, before the first write)."""
        self._swept = True
        for name in os.listdir(folder):
            if name.startswith(self._prefix) and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))

    def write(self, status: dict[str, Any]) -> None:
        """Replace the file with ``status``. Raises OutputError; the old file stays intact."""
        folder = os.path.dirname(self.path) or "."
        data = (json.dumps(status, indent=1, ensure_ascii=False) + "\n").encode()
        tmp = None
        try:
            os.makedirs(folder, exist_ok=True)
            if not self._swept:
                self._sweep(folder)
            fd, tmp = tempfile.mkstemp(prefix=self._prefix, suffix=".tmp", dir=folder)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                # fsync before rename: after a power cut the name points at
                # complete contents, not at an empty inode.
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
            tmp = None
        except OSError as exc:
            reason = (
                "the disk is full; free some space (writing resumes by itself)"
                if exc.errno == errno.ENOSPC
                else f"{exc.strerror}; make the folder writable for the service user"
            )
            raise OutputError(f"{self.path}: cannot write the status file: {reason}") from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def read_status(path: str) -> dict[str, Any]:
    """The status object at ``path``. Raises OSError or ValueError."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data
