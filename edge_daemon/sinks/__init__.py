"""Where results go: the prediction log and the status file."""

from .prediction_log import PredictionLog
from .status_file import StatusFile, read_status

__all__ = ["PredictionLog", "StatusFile", "read_status"]
