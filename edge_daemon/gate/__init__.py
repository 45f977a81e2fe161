"""The change gate: no inference while nothing in the region changes (``gate.mode: motion``).

``sample`` takes a small greyscale plane of the region from a frame (the
camera's luma plane when it gives one, else a strided sample of the RGB
region); ``detector`` compares it with an adapting background; ``state``
decides, frame by frame, whether the model runs. Pure: no I/O, no clock
(the caller passes the time).
"""

from __future__ import annotations

from .detector import Change, ChangeDetector
from .sample import gate_plane, plane_source
from .state import ChangeGate

__all__ = ["Change", "ChangeDetector", "ChangeGate", "gate_plane", "plane_source"]
