"""Test-root stand-in for ``pykms`` (python3-kms++, the DRM/KMS bindings Debian does not ship).

picamera2 imports it at import time for its DRM preview window and builds a
table of pixel format names from ``pykms.PixelFormat``. edge-daemon never
opens a preview: the names are plain strings here, and anything else says
there is no display.
"""

from __future__ import annotations

from typing import Any


class _Names:
    def __getattr__(self, name: str) -> str:
        if name.startswith("__"):
            raise AttributeError(name)
        return name


PixelFormat = _Names()
PixelFormats = PixelFormat


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    raise RuntimeError(
        f"pykms.{name}: this is the camera test root's stand-in for python3-kms++;"
        " there is no DRM display here"
    )
