"""Opening and negotiating V4L2 (USB/UVC) cameras through OpenCV.

The point of the explicit negotiation is USB bandwidth and CPU on small boards: asking the
camera for MJPG at the wanted size and rate means a Pi 3 receives compressed frames at the
rate it streams, and with CONVERT_RGB=0 it can forward the camera's own JPEG bytes without
decoding and re-encoding them ("passthrough").
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .errors import SourceError
from .jpeg import trim

log = logging.getLogger(__name__)

MJPG = cv2.VideoWriter_fourcc(*"MJPG")
YUYV = cv2.VideoWriter_fourcc(*"YUYV")
# Reads per device in auto mode: the first frames after stream-on may be partial.
FIRST_FRAME_ATTEMPTS = 5
_VIDEO_NODE = re.compile(r"video(\d+)")


class CaptureLike(Protocol):
    """The part of cv2.VideoCapture used here (lets tests inject a fake camera)."""

    def isOpened(self) -> bool: ...  # OpenCV's camelCase names

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def set(self, propId: int, value: float) -> bool: ...

    def get(self, propId: int) -> float: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class DeviceSettings:
    """What the device accepted (read back), not what was asked."""

    path: str
    fourcc: str
    width: int
    height: int
    fps: float
    # The device delivers its own JPEG bytes (MJPG accepted and CONVERT_RGB=0 took effect).
    passthrough: bool


def default_opener(path: str) -> CaptureLike:
    return cv2.VideoCapture(path, cv2.CAP_V4L2)


def list_devices(dev_dir: str = "/dev") -> list[str]:
    """The /dev/videoN nodes, sorted numerically (video2 before video10)."""
    try:
        names = os.listdir(dev_dir)
    except OSError:
        return []
    found = [(int(m.group(1)), name) for name in names if (m := _VIDEO_NODE.fullmatch(name))]
    return [os.path.join(dev_dir, name) for _, name in sorted(found)]


def fourcc_to_str(value: float) -> str:
    """'MJPG' for the float CAP_PROP_FOURCC returns; '' when unknown."""
    code = int(value)
    if code <= 0:
        return ""
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    text = text.rstrip("\0 ")
    return text if text.isprintable() else f"0x{code:08x}"


def _label(path: str) -> str:
    """'/dev/v4l/by-id/usb-... (/dev/video0)' for symlinks, else the path."""
    real = os.path.realpath(path)
    return path if real == path else f"{path} ({real})"


def _fmt(value: float) -> str:
    return f"{value:g}"


def _apply_mode(cap: CaptureLike, fourcc: int, width: int, height: int, fps: float) -> None:
    # FOURCC first: UVC drivers offer different sizes and rates per pixel format, so a size
    # set before the format can be silently dropped when the format changes.
    cap.set(cv2.CAP_PROP_FOURCC, fourcc)
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    # The rate is set on the camera, not by dropping frames: fewer frames over USB.
    cap.set(cv2.CAP_PROP_FPS, fps)


def configure(
    cap: CaptureLike, path: str, width: int, height: int, fps: float, buffersize: int
) -> DeviceSettings:
    """Negotiate MJPG (else YUYV), size, rate and buffer count; return what was accepted."""
    label = _label(path)
    _apply_mode(cap, MJPG, width, height, fps)
    # A small driver queue keeps latency low: stale frames are not worth streaming.
    cap.set(cv2.CAP_PROP_BUFFERSIZE, buffersize)
    fourcc = fourcc_to_str(cap.get(cv2.CAP_PROP_FOURCC))
    passthrough = False
    if fourcc == "MJPG":
        cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
        passthrough = cap.get(cv2.CAP_PROP_CONVERT_RGB) == 0
        if not passthrough:
            log.warning("%s: CONVERT_RGB=0 refused, frames will be decoded and re-encoded", label)
    else:
        log.warning(
            "%s: MJPG refused (device reports %s), falling back to YUYV: more USB bandwidth "
            "and CPU",
            label,
            fourcc or "nothing",
        )
        if fourcc != "YUYV":
            _apply_mode(cap, YUYV, width, height, fps)
            fourcc = fourcc_to_str(cap.get(cv2.CAP_PROP_FOURCC)) or fourcc
    got_width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    got_height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    got_fps = float(cap.get(cv2.CAP_PROP_FPS))
    log.info(
        "%s: %s %dx%d @ %s fps (asked %dx%d @ %s), passthrough %s",
        label,
        fourcc or "?",
        got_width,
        got_height,
        _fmt(got_fps),
        width,
        height,
        _fmt(fps),
        "on" if passthrough else "off",
    )
    if (got_width, got_height) != (width, height):
        log.warning(
            "%s: camera gives %dx%d instead of %dx%d", label, got_width, got_height, width, height
        )
    # Some drivers report 0 when they cannot tell; only a real mismatch is worth a warning.
    if got_fps > 0 and abs(got_fps - fps) > 0.5:
        log.warning("%s: camera runs at %s fps instead of %s", label, _fmt(got_fps), _fmt(fps))
    return DeviceSettings(
        path=path,
        fourcc=fourcc,
        width=got_width,
        height=got_height,
        fps=got_fps,
        passthrough=passthrough,
    )


class _OpenError(SourceError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot open {path}: {reason}")
        self.reason = reason


def _release(cap: CaptureLike) -> None:
    try:
        cap.release()
    except Exception as exc:  # a failing release must not hide the real error
        log.debug("release failed: %s", exc)


def open_device(
    path: str,
    width: int,
    height: int,
    fps: float,
    buffersize: int,
    opener: Callable[[str], CaptureLike] = default_opener,
) -> tuple[CaptureLike, DeviceSettings]:
    """Open and configure one device; SourceError("cannot open PATH: why") on failure."""
    if not os.path.exists(path):
        raise _OpenError(path, "no such device")
    if not os.access(path, os.R_OK | os.W_OK):
        raise _OpenError(path, "permission denied (is the user in group video?)")
    try:
        cap = opener(path)
    except (cv2.error, OSError) as exc:
        raise _OpenError(path, str(exc).strip() or type(exc).__name__) from exc
    if not cap.isOpened():
        _release(cap)
        raise _OpenError(path, "not a capture device, or busy")
    try:
        settings = configure(cap, path, width, height, fps, buffersize)
    except (cv2.error, OSError, ValueError) as exc:
        _release(cap)
        raise _OpenError(path, f"configuration failed: {exc}") from exc
    return cap, settings


def _first_frame(cap: CaptureLike, settings: DeviceSettings) -> np.ndarray | None:
    for _ in range(FIRST_FRAME_ATTEMPTS):
        ok, frame = cap.read()
        if not ok:
            # A failed grab already cost OpenCV's select() timeout; a node that cannot grab
            # once (e.g. a metadata node) is not worth more waiting.
            return None
        if frame is None or frame.size == 0:
            continue
        try:
            decode_frame(frame, settings)
        except SourceError:
            continue  # partial first frames are common right after stream-on
        return frame
    return None


def first_working(
    width: int,
    height: int,
    fps: float,
    buffersize: int,
    opener: Callable[[str], CaptureLike] = default_opener,
    dev_dir: str = "/dev",
) -> tuple[CaptureLike, DeviceSettings, np.ndarray]:
    """``--device auto``: the first /dev/video* that opens AND returns a frame.

    Many UVC cameras expose a second (metadata) node that opens but never yields a picture.
    The returned frame is raw, as read (pass it through decode_frame()).
    """
    devices = list_devices(dev_dir)
    if not devices:
        raise SourceError(f"no {os.path.join(dev_dir, 'video*')} devices")
    failures: list[str] = []
    for path in devices:
        try:
            cap, settings = open_device(path, width, height, fps, buffersize, opener)
        except _OpenError as exc:
            failures.append(f"{path}: cannot open ({exc.reason})")
            continue
        frame = _first_frame(cap, settings)
        if frame is None:
            _release(cap)
            log.info("%s: opens but returns no frame, trying the next device", path)
            failures.append(f"{path}: no frame")
            continue
        return cap, settings, frame
    raise SourceError("no working camera: " + "; ".join(failures))


def decode_frame(frame: np.ndarray, settings: DeviceSettings) -> bytes | np.ndarray:
    """The camera's JPEG bytes in passthrough mode, else the BGR image as read.

    With CONVERT_RGB=0 and MJPG, OpenCV's V4L2 backend returns the raw driver buffer as a
    1xN (or N) uint8 array.
    """
    if settings.passthrough and (frame.ndim == 1 or (frame.ndim == 2 and frame.shape[0] == 1)):
        data = trim(memoryview(np.ascontiguousarray(frame, dtype=np.uint8)))
        if data is None:
            raise SourceError("corrupt frame")
        return data
    return frame
