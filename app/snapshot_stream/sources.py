"""Frame sources: the camera (V4L2), a video file, an http(s)/rtsp URL or the test pattern.

A source is deliberately small: ``open()``, ``read()``, ``close()``, ``describe()``. ``read()``
blocks until the next frame and returns either a BGR ``numpy`` image or the JPEG bytes the source
delivered as they are (camera MJPEG passthrough, an upstream MJPEG stream); it raises
:class:`SourceError` when the source failed. The capture thread calls these in a worker thread
and enforces the timeouts, so a source may block.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from . import v4l2
from .camera import Camera
from .config import Config
from .errors import NotMjpeg, SourceError
from .logtext import redact_url
from .synthetic import SyntheticSource

log = logging.getLogger(__name__)

# A BGR image, the JPEG bytes as delivered, or a function drawing the image when it is wanted.
Captured = np.ndarray | bytes | Callable[[], np.ndarray]


@runtime_checkable
class Source(Protocol):
    """What the capture thread needs from a frame source."""

    def open(self) -> None: ...

    def read(self) -> Captured: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


SourceFactory = Callable[[], Source]


class OpenCVSource:
    """cv2.VideoCapture on a video file or an rtsp/http URL (paced by the capture thread)."""

    def __init__(self, target: str, buffersize: int = 1, *, is_file: bool = False) -> None:
        self.target = target
        self.buffersize = buffersize
        self.is_file = is_file
        self._cap: Any = None

    def describe(self) -> str:
        return redact_url(self.target)

    def open(self) -> None:
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            what = "video file" if self.is_file else "stream"
            raise SourceError(f"cannot open {what} {self.describe()}")
        if not self.is_file:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, self.buffersize)
        self._cap = cap

    def read(self) -> Captured:
        if self._cap is None:
            raise SourceError(f"{self.describe()} is not open")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceError("end of file" if self.is_file else f"{self.describe()}: read failed")
        return frame

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class UpstreamMjpegSource:
    """An upstream MJPEG (multipart) stream, read continuously; read() returns the newest JPEG.

    The upstream's JPEG bytes are kept as they are (passthrough). A pump thread drains the
    upstream so its frames never queue up in socket buffers however slowly we sample them.
    If the URL does not serve multipart MJPEG, fall back to cv2.VideoCapture(url).
    """

    def __init__(self, url: str, timeout: float = 5.0, buffersize: int = 1) -> None:
        self.url = url
        self.timeout = timeout
        self.buffersize = buffersize
        self._reader: Any = None
        self._fallback: OpenCVSource | None = None
        self._cond = threading.Condition()
        self._latest: bytes | None = None
        self._latest_n = 0
        self._returned_n = 0
        self._error: BaseException | None = None
        self._closed = False

    def describe(self) -> str:
        return redact_url(self.url)

    def open(self) -> None:
        from .upstream import MjpegReader

        reader = MjpegReader(self.url, self.timeout)
        try:
            reader.open()
        except NotMjpeg as exc:
            level = logging.DEBUG if self.url in _FALLBACK_LOGGED else logging.INFO
            _FALLBACK_LOGGED.add(self.url)
            log.log(level, "%s: %s; trying OpenCV", self.describe(), exc)
            fallback = OpenCVSource(self.url, self.buffersize)
            try:
                fallback.open()
            except SourceError:
                raise exc from None
            self._fallback = fallback
            return
        self._reader = reader
        threading.Thread(target=self._pump, name="upstream-pump", daemon=True).start()

    def _pump(self) -> None:
        reader = self._reader
        while not self._closed:
            try:
                jpeg, _ts = reader.read()
            except BaseException as exc:  # reported to read(); this thread just ends
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._latest = jpeg
                self._latest_n += 1
                self._cond.notify_all()

    def read(self) -> Captured:
        if self._fallback is not None:
            return self._fallback.read()
        with self._cond:
            while self._latest_n == self._returned_n:
                if self._error is not None:
                    err = self._error
                    raise err if isinstance(err, SourceError) else SourceError(str(err))
                if self._closed:
                    raise SourceError("closed")
                self._cond.wait(1.0)
            self._returned_n = self._latest_n
            assert self._latest is not None
            return self._latest

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._fallback is not None:
            self._fallback.close()
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception as exc:
                log.debug("closing %s: %s", self.describe(), exc)


_FALLBACK_LOGGED: set[str] = set()


class CameraSource:
    """A V4L2 camera: ``--device auto`` takes the first device that delivers a frame."""

    def __init__(self, config: Config, camera: Camera | None = None) -> None:
        self.config = config
        self.device = config.device
        self.camera = camera
        self._cap: Any = None
        self._settings: v4l2.DeviceSettings | None = None
        self._first: Any = None

    def describe(self) -> str:
        if self._settings is not None:
            return self._settings.path
        return "camera (auto)" if self.device == "auto" else self.device

    def open(self) -> None:
        cfg = self.config
        v4l2.limit_frame_wait(cfg.fps)
        v4l2.quiet_opencv()
        if self.device == "auto":
            cap, settings, self._first = v4l2.first_working(
                cfg.width, cfg.height, cfg.fps, cfg.buffersize
            )
        else:
            if not os.path.exists(self.device):
                raise SourceError(f"{self.device}: {v4l2.GONE}")
            cap, settings = v4l2.open_device(
                self.device, cfg.width, cfg.height, cfg.fps, cfg.buffersize
            )
        self._cap, self._settings = cap, settings
        log.debug("camera %s: %s", self.describe(), settings)
        if self.camera is not None:
            self.camera.opened(settings)

    def read(self) -> Captured:
        if self._cap is None or self._settings is None:
            raise SourceError(f"{self.describe()} is not open")
        if self._first is not None:
            frame, self._first = self._first, None
        else:
            started = time.monotonic()
            ok, frame = self._cap.read()
            if not ok or frame is None:
                waited = time.monotonic() - started
                # OpenCV does not say why; the probe finds out, with the device to itself.
                self.close()
                raise v4l2.read_failure(self._settings.path, self._settings, waited)
        if self.camera is not None:
            self.camera.frame(v4l2.bus_bytes(frame, self._settings))
        try:
            return v4l2.decode_frame(frame, self._settings)
        except SourceError:
            return b""  # a corrupt frame: dropped by the capture thread, not a loss

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def describe_source(config: Config) -> str:
    """What --source / --device ask for, for logs and /healthz before anything is open."""
    if config.source:
        return redact_url(config.source)
    return "camera (auto)" if config.device == "auto" else config.device


def make_factory(config: Config, camera: Camera | None = None) -> SourceFactory:
    """Return a callable building a fresh, unopened Source for --source / --device.

    ``camera`` is the process's link between the camera and the web layer (controls, the
    negotiated mode, bytes received); one is made when the source is a camera and none given.
    """
    spec = config.source
    if spec == "synthetic":
        return lambda: SyntheticSource(config.width, config.height)
    if spec:
        lower = spec.lower()
        if lower.startswith(("http://", "https://")):
            timeout = max(5.0, config.read_timeout)
            return lambda: UpstreamMjpegSource(spec, timeout, config.buffersize)
        if "://" in lower:  # rtsp:// and anything else FFmpeg understands
            return lambda: OpenCVSource(spec, config.buffersize)
        return lambda: OpenCVSource(spec, config.buffersize, is_file=True)
    # One Camera for the process: its controls outlive every reopen (and log each bad entry
    # once), its figures are read by /healthz and /metrics.
    link = camera or Camera(config)
    return lambda: CameraSource(config, link)
