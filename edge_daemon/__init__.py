"""edge-daemon: an always-on TFLite image classifier service for a Raspberry Pi camera."""

__version__ = "0.1.0"
