"""Exceptions shared by the capture sources."""

from __future__ import annotations


class SourceError(RuntimeError):
    """A frame source could not be opened or read.

    ``str(e)`` is a short human reason meant for logs, /healthz and the placeholder image,
    e.g. ``"cannot open /dev/video0: no such device"`` or ``"no data for 5.0 s"``.
    """


class NotMjpeg(SourceError):
    """The upstream answered, but not with a multipart MJPEG stream (OpenCV may still read it)."""


class NoWorkingCamera(SourceError):
    """``--device auto`` found no device that delivers a frame; the text lists each failure."""
