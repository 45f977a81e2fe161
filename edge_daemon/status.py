"""What a status object says: the verdict shared by `edge-daemon status` and the web page."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

# Exit codes of `edge-daemon status`, for health checks.
STATUS_RUNNING, STATUS_DEGRADED, STATUS_DOWN = 0, 1, 2


def pid_alive(pid: Any) -> bool:
    """Whether a process with this pid exists on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by the service user
    return True


def status_verdict(status: dict[str, Any], now: float) -> tuple[int, str]:
    """Exit code and state word for a status object: 0 running, 1 degraded, 2 down or stale."""
    state = status.get("state")
    interval = status.get("status_interval") or 1.0
    try:
        updated = datetime.fromisoformat(str(status.get("updated")).replace("Z", "+00:00"))
        age = now - updated.timestamp()
    except ValueError:
        return STATUS_DOWN, "stale"
    if state in ("running", "degraded", "starting"):
        if age > max(5 * float(interval), 5.0) or not pid_alive(status.get("pid")):
            return STATUS_DOWN, "stale"
        return (STATUS_RUNNING, "running") if state == "running" else (STATUS_DEGRADED, state)
    return STATUS_DOWN, str(state)
