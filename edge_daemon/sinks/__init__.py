"""The output seam: what every sink receives (``base``) and the built-in file sinks.

Which sinks a config turns on is decided by the registry in ``edge_daemon.outputs``.
"""

from __future__ import annotations

from .base import Classified, EventNotice, ModelInfo, Sink, SinkContext, SinkHealth
from .prediction_log import PredictionLog, PredictionLogSink
from .status_file import StatusFile, StatusFileSink, read_status

__all__ = [
    "Classified",
    "EventNotice",
    "ModelInfo",
    "PredictionLog",
    "PredictionLogSink",
    "Sink",
    "SinkContext",
    "SinkHealth",
    "StatusFile",
    "StatusFileSink",
    "read_status",
]
