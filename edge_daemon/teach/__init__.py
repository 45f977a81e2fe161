"""Teaching the daemon your own classes: samples, a new last layer trained in NumPy,
and a standalone quantized model exported from it (see docs/teach.md)."""

from __future__ import annotations

import os

from ..config import Config


def teach_dir(cfg: Config) -> str:
    """Where samples and the taught model live: ``teach.dir``, else ``daemon.state_dir/teach``."""
    return cfg.teach.dir or os.path.join(cfg.daemon.state_dir, "teach")
