"""Events: rules that turn the smoothed top-1 into a few clean events, kept in SQLite.

The pure parts (``smoothing``, ``labels``, ``rules``, ``mqtt``) run anywhere;
``store`` and ``history`` hold the database, ``snapshots`` the JPEG files and
``sink`` the thread that writes both, off the inference loop.
"""

from __future__ import annotations

import os

from ..config import Config


def events_dir(cfg: Config) -> str:
    """Where events.db and the snapshots live: ``events.dir``, else ``daemon.state_dir/events``."""
    return cfg.events.dir or os.path.join(cfg.daemon.state_dir, "events")
