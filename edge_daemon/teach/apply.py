"""``teach train --apply``: have the running daemon reload onto the taught model.

The daemon is found through its status file (pid, reloads, last error) and
asked to reload the way ``systemctl reload`` does; this module only waits and
reads the outcome. A reload that fails leaves the daemon on the model it was
running (``Daemon._reload``), and the reason comes back as the error here.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable, Optional

from ..config import Config
from ..errors import TeachError
from ..status import STATUS_DOWN, status_verdict
from . import teach_dir
from .active import installed, names_taught


def _status(path: str) -> Optional[dict[str, Any]]:
    from ..sinks.status_file import read_status

    try:
        return read_status(path)
    except (OSError, ValueError):
        return None


def _when(text: Any) -> float:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def check_can_apply(cfg: Config) -> None:
    """TeachError when the config would not run a taught model (before training for nothing)."""
    if not (cfg.teach.use or names_taught(cfg)):
        where = cfg.file or "the config"
        raise TeachError(
            f"{where} does not run the taught model (teach.use is false and model.path is"
            " another model); set teach.use: true there, once, then reload"
        )


def apply(
    cfg: Config,
    send_reload: Callable[[int], None],
    *,
    model_sha256: str,
    timeout: float = 120.0,
) -> str:
    """Make the running daemon use the installed taught model; a line saying what happened.

    TeachError when the config does not run the taught model, the daemon
    cannot be asked, or its reload failed (it then keeps its model).
    """
    root = teach_dir(cfg)
    if installed(root) is None:
        raise TeachError(f"no taught model in {root}; run `edge-daemon teach train` first")
    check_can_apply(cfg)
    path = cfg.outputs.status_file
    if path is None:
        raise TeachError(
            "outputs.status_file is off, so the running daemon cannot be found; reload it"
            " yourself (sudo systemctl reload edge-daemon)"
        )
    before = _status(path)
    if before is None or status_verdict(before, time.time())[0] == STATUS_DOWN:
        return f"no daemon is running (status {path}); it runs the taught model when it starts"
    if before.get("model_sha256") == model_sha256:
        return f"the daemon (pid {before.get('pid')}) already runs this taught model"
    pid = int(before["pid"])
    reloads = int(before.get("reloads") or 0)
    err_at = _when(before.get("last_error_at"))
    try:
        send_reload(pid)
    except ProcessLookupError:
        return f"no daemon is running (pid {pid} is gone); it runs the taught model when it starts"
    except PermissionError:
        raise TeachError(
            f"the daemon (pid {pid}) runs as another user; ask it to reload with"
            " `sudo systemctl reload edge-daemon`"
        ) from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = _status(path)
        if now is None:
            continue
        if int(now.get("reloads") or 0) > reloads:
            if now.get("model_sha256") == model_sha256:
                return f"the daemon (pid {pid}) now runs the taught model {now.get('model')}"
            raise TeachError(
                f"the daemon (pid {pid}) reloaded but runs {now.get('model')}, not the taught"
                " model; check teach.use and model.path"
            )
        error = str(now.get("last_error") or "")
        if _when(now.get("last_error_at")) > err_at and error.startswith("reload failed"):
            rest = error.removeprefix("reload failed, ").removeprefix("still running ")
            raise TeachError(f"the daemon (pid {pid}) refused it and keeps running {rest}")
    raise TeachError(
        f"the daemon (pid {pid}) did not finish reloading within {timeout:.0f} s; see"
        " `edge-daemon status`"
    )
