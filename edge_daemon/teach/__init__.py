"""Teaching the daemon your own classes: samples, embeddings, a new last layer, its model.

``teach.dir`` (default ``daemon.state_dir/teach``) holds the samples, the
taught model.tflite with its labels.txt and the training report.
"""

from __future__ import annotations

import os

from ..config import Config


def teach_dir(cfg: Config) -> str:
    """Where samples and the taught model live: ``teach.dir``, else ``daemon.state_dir/teach``."""
    return cfg.teach.dir or os.path.join(cfg.daemon.state_dir, "teach")
