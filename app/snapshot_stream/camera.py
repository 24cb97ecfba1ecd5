"""The process's V4L2 camera as the web layer sees it: its controls, the mode it negotiated and
the bytes arriving from it.

The capture thread owns the camera (through OpenCV, in :class:`~.sources.CameraSource`); this
object is what it shares with the routes: it tells :class:`Camera` what it opened and how
many bytes each frame carried, and the routes read that (``/healthz``, ``/metrics``) or go
through :attr:`Camera.controls` (``/controls``). Other sources (synthetic, URL, file) have
no Camera.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .config import Config
from .controls import Applier
from .v4l2 import DeviceSettings


class ByteRate:
    """Bytes per second over the last few seconds, and the total since start."""

    def __init__(self, window: float = 3.0) -> None:
        self._window = window
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, nbytes: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.total += nbytes
            self._recent.append((now, nbytes))
            self._trim(now)

    def per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            recent = list(self._recent)
        if len(recent) < 2:
            return 0.0
        first = recent[0][0]
        # As FrameHub.fps_measured: a stream that stopped decays instead of freezing.
        span = max(now - first, recent[-1][0] - first)
        return round(sum(n for _, n in recent[1:]) / span, 1) if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > self._window:
            self._recent.popleft()


class Camera:
    """What the capture thread tells the web layer about the camera, and its controls."""

    def __init__(self, config: Config) -> None:
        self.controls = Applier(config.controls)
        self.received = ByteRate()
        self._settings: DeviceSettings | None = None
        # False while frames arrive as OpenCV's decoded pictures (an MJPG camera that
        # refused raw output): the compressed size that crossed the bus is unknown then.
        self._measurable = True

    def opened(self, settings: DeviceSettings) -> None:
        """The capture opened the camera (start, replug, wake-up): set its controls."""
        self._settings = settings
        # On every open: a replugged or reset camera is back at its defaults.
        self.controls.apply(settings.path)

    def frame(self, nbytes: int | None) -> None:
        """A frame of ``nbytes`` arrived (None: its size on the bus is unknown)."""
        self._measurable = nbytes is not None
        if nbytes is not None:
            self.received.add(nbytes)

    @property
    def settings(self) -> DeviceSettings | None:
        return self._settings

    def status(self) -> dict[str, Any]:
        """The negotiated mode and the bytes per second arriving (for /healthz)."""
        s = self._settings
        return {
            "device": s.path if s else None,
            "format": s.fourcc if s else None,
            "width": s.width if s else None,
            "height": s.height if s else None,
            "fps": s.fps if s else None,
            "bytes_per_second": self.received.per_second() if self._measurable else None,
        }
