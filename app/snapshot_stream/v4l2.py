"""Opening and negotiating V4L2 (USB/UVC) cameras through OpenCV.

The point of the explicit negotiation is USB bandwidth and CPU on small boards: asking the
camera for MJPG at the wanted size and rate means a Pi 3 receives compressed frames at the
rate it streams, and with CONVERT_RGB=0 it can forward the camera's own JPEG bytes without
decoding and re-encoding them ("passthrough").

OpenCV's V4L2 backend keeps the errno of a failed ioctl to itself: ``isOpened()`` or ``read()``
just say False. When that happens, OpenCV's handle is released and :class:`DeviceProbe` repeats
the negotiation with the app's own ioctls (:mod:`.videodev`) to tell the user why: unplugged
(ENODEV), busy (EBUSY: another program streams from it) or no USB bandwidth (ENOSPC at
stream-on).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from . import videodev
from .errors import NoWorkingCamera, SourceError
from .jpeg import trim

log = logging.getLogger(__name__)

MJPG = cv2.VideoWriter_fourcc(*"MJPG")
YUYV = cv2.VideoWriter_fourcc(*"YUYV")
# Reads per device in auto mode: the first frames after stream-on may be partial.
FIRST_FRAME_ATTEMPTS = 5
# OpenCV waits this long (select()) for each frame, 10 s unless told otherwise.
SELECT_TIMEOUT_ENV = "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"
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


_said: set[str] = set()


def _say(level: int, msg: str, *args: object) -> None:
    """Log a negotiation fact once per process; a camera reopened after every replug or
    stall would otherwise repeat the same lines (they stay visible at debug level)."""
    text = msg % args
    if text in _said:
        log.debug("%s", text)
        return
    _said.add(text)
    log.log(level, "%s", text)


# cv::utils::logging::LOG_LEVEL_ERROR, the same number in every OpenCV 4 and 5 release.
_LOG_LEVEL_ERROR = 2


def quiet_opencv() -> None:
    """Keep OpenCV's own V4L2 warnings (select() timeout, REQBUFS after an unplug) out of the
    log unless it runs at debug level: the streamer says what happened, in one line."""
    if logging.getLogger("snapshot_stream").isEnabledFor(logging.DEBUG):
        return
    # OpenCV 4.6 (Debian's python3-opencv, the apt install method) has only the top-level
    # setLogLevel; later releases moved it to cv2.utils.logging.
    utils_logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if utils_logging is not None:
        utils_logging.setLogLevel(utils_logging.LOG_LEVEL_ERROR)
    elif hasattr(cv2, "setLogLevel"):
        cv2.setLogLevel(_LOG_LEVEL_ERROR)


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
            _say(
                logging.WARNING,
                "%s: CONVERT_RGB=0 refused, frames will be decoded and re-encoded",
                label,
            )
    else:
        _say(
            logging.WARNING,
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
    _say(
        logging.INFO,
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
        _say(
            logging.WARNING,
            "%s: camera gives %dx%d instead of %dx%d",
            label,
            got_width,
            got_height,
            width,
            height,
        )
    # Some drivers report 0 when they cannot tell; only a real mismatch is worth a warning.
    if got_fps > 0 and abs(got_fps - fps) > 0.5:
        _say(
            logging.WARNING,
            "%s: camera runs at %s fps instead of %s",
            label,
            _fmt(got_fps),
            _fmt(fps),
        )
    return DeviceSettings(
        path=path,
        fourcc=fourcc,
        width=got_width,
        height=got_height,
        fps=got_fps,
        passthrough=passthrough,
    )


def limit_frame_wait(fps: float) -> float:
    """Make OpenCV give up on a missing frame after a few frame periods instead of 10 s.

    OpenCV reads the variable once per process, at its first wait. A stalled camera then fails
    read() before the capture thread's own timeout (max(3 s, 5 periods)) abandons the call,
    so the device is released and probed at once; a node that never delivers (a metadata
    node, a dead camera) costs ``--device auto`` seconds, not 10 s each. A value the user set
    wins.
    """
    seconds = max(2, math.ceil(3.0 / fps))
    os.environ.setdefault(SELECT_TIMEOUT_ENV, str(seconds))
    return _frame_wait()


@dataclass(frozen=True)
class Mode:
    """A pixel format, size and rate to ask a device for."""

    fourcc: str
    width: int
    height: int
    fps: float

    def __str__(self) -> str:
        return f"{self.fourcc} {self.width}x{self.height} @ {_fmt(self.fps)} fps"


@dataclass(frozen=True)
class NodeInfo:
    """What a look at a /dev/video* node (without streaming) tells about it."""

    capture: bool  # a video capture node (not a metadata or codec node)
    mjpg: bool  # offers MJPG
    reason: str = ""  # why it is not usable, when not capture


class Probe(Protocol):
    """Looks at devices with the app's own ioctls (tests inject a fake)."""

    def survey(self, path: str) -> NodeInfo: ...

    def diagnose(self, path: str, mode: Mode) -> str | None: ...


BUSY = (
    "device busy: another program is streaming from it (a second snapshot-stream on this camera?)"
)
GONE = "no such device (unplugged?)"


def bandwidth_reason(mode: Mode) -> str:
    """The ENOSPC reason: uvcvideo could not reserve USB bandwidth for this mode."""
    advice = (
        "use a smaller --width/--height or --fps"
        if mode.fourcc == "MJPG"
        else "use MJPG (if the camera offers it), a smaller --width/--height or --fps"
    )
    return (
        f"not enough USB bandwidth to stream {mode} (stream-on: ENOSPC): {advice}, "
        "or plug the camera (or the other USB devices) into another USB bus"
    )


def _errno_reason(exc: OSError, step: str, mode: Mode | None = None) -> str:
    code = exc.errno
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return GONE
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied (is the user in group video?)"
    if code == errno.EBUSY:
        return BUSY
    if code == errno.ENOSPC and mode is not None:
        return bandwidth_reason(mode)
    if code == errno.ENOTTY and step == "QUERYCAP":
        return "not a V4L2 device"
    name = errno.errorcode.get(code or 0, str(code))
    return f"{step} failed: {os.strerror(code) if code else exc} ({name})"


class DeviceProbe:
    """The real probe: VIDIOC_* ioctls on the node, as OpenCV would issue them."""

    def survey(self, path: str) -> NodeInfo:
        step = "open"
        try:
            with videodev.Device(path) as dev:
                step = "QUERYCAP"
                if not dev.is_video_capture():
                    return NodeInfo(False, False, "not a video capture node (metadata?)")
                step = "ENUM_FMT"
                return NodeInfo(True, "MJPG" in dev.formats())
        except OSError as exc:
            return NodeInfo(False, False, _errno_reason(exc, step))

    def diagnose(self, path: str, mode: Mode) -> str | None:
        """Why ``path`` cannot stream ``mode`` (None: it can, as far as stream-on goes).

        Call it only while the app holds no other handle on the device: it takes the
        device's streaming ownership for a moment, as a second program would.
        """
        if not os.path.exists(path):
            return GONE
        step = "open"
        try:
            with videodev.Device(path) as dev:
                step = "QUERYCAP"
                if not dev.is_video_capture():
                    return "not a video capture node (metadata?)"
                step = "S_FMT"
                dev.set_format(mode.fourcc, mode.width, mode.height)
                step = "S_PARM"
                try:
                    dev.set_rate(mode.fps)
                except OSError as exc:
                    if exc.errno in (errno.EBUSY, errno.ENODEV):
                        raise
                step = "REQBUFS"
                if dev.request_buffers(1) > 0:
                    # OpenCV queues its buffers before stream-on; some drivers start the
                    # stream (and reserve bandwidth) only with a buffer queued.
                    try:
                        dev.queue_buffer(0)
                    except OSError as exc:
                        if exc.errno == errno.ENODEV:
                            raise
                step = "stream-on"
                dev.stream_on()
                step = "stream-off"
                dev.stream_off()
                dev.request_buffers(0)
        except OSError as exc:
            return _errno_reason(exc, step, mode)
        return None


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
    probe: Probe | None = None,
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
        why = (probe or DeviceProbe()).diagnose(path, Mode("MJPG", width, height, fps))
        raise _OpenError(path, why or "not a capture device, or busy")
    try:
        settings = configure(cap, path, width, height, fps, buffersize)
    except (cv2.error, OSError, ValueError) as exc:
        _release(cap)
        raise _OpenError(path, f"configuration failed: {exc}") from exc
    return cap, settings


def read_failure(
    path: str, settings: DeviceSettings, waited: float, probe: Probe | None = None
) -> SourceError:
    """The error for a failed ``read()``; call it after releasing OpenCV's handle.

    ``waited`` is how long the read took: a read that ran into OpenCV's frame wait while the
    device can still start streaming is a stall.
    """
    mode = Mode(settings.fourcc or "MJPG", settings.width, settings.height, settings.fps)
    why = (probe or DeviceProbe()).diagnose(path, mode)
    if why is None:
        if waited >= _frame_wait() - 0.5:
            why = f"no frame for {waited:.0f} s (the camera sends nothing)"
        else:
            why = "read failed"
    return SourceError(f"{path}: {why}")


def _frame_wait() -> float:
    """OpenCV's wait for a frame, in seconds (the variable, else its default of 10 s)."""
    try:
        return float(os.environ.get(SELECT_TIMEOUT_ENV, "10"))
    except ValueError:
        return 10.0


def _first_frame(cap: CaptureLike, settings: DeviceSettings) -> np.ndarray | None:
    for _ in range(FIRST_FRAME_ATTEMPTS):
        ok, frame = cap.read()
        if not ok:
            # A failed grab already cost OpenCV's select() timeout; a node that cannot grab
            # once is not worth more waiting.
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
    probe: Probe | None = None,
) -> tuple[CaptureLike, DeviceSettings, np.ndarray]:
    """``--device auto``: the first /dev/video* that opens AND returns a frame.

    Nodes that are not video capture nodes (UVC metadata nodes, codecs) are skipped without
    opening them in OpenCV. Cameras that offer MJPG are tried before the others, in node
    order each: a YUYV-only camera costs more USB bandwidth and CPU, so it is taken only when
    no MJPG camera delivers. The returned frame is raw, as read (pass it through
    decode_frame()). Raises NoWorkingCamera listing why each node was passed over.
    """
    probe = probe or DeviceProbe()
    devices = list_devices(dev_dir)
    if not devices:
        raise NoWorkingCamera(f"no working camera: no {os.path.join(dev_dir, 'video*')} devices")
    failures: dict[str, str] = {}
    mjpg: list[str] = []
    other: list[str] = []
    for path in devices:
        info = probe.survey(path)
        if not info.capture:
            failures[path] = info.reason
            log.debug("%s: skipped: %s", path, info.reason)
            continue
        (mjpg if info.mjpg else other).append(path)
    for path in mjpg + other:
        try:
            cap, settings = open_device(path, width, height, fps, buffersize, opener, probe)
        except _OpenError as exc:
            failures[path] = f"cannot open ({exc.reason})"
            continue
        started = time.monotonic()
        frame = _first_frame(cap, settings)
        if frame is None:
            waited = time.monotonic() - started
            _release(cap)
            reason = str(read_failure(path, settings, waited, probe)).removeprefix(f"{path}: ")
            if not reason.startswith("no frame"):
                reason = f"no frame ({reason})"
            _say(logging.INFO, "%s: %s, trying the next device", path, reason)
            failures[path] = reason
            continue
        if path in other:
            _say(logging.INFO, "%s: no MJPG camera delivered a frame, using this one", path)
        return cap, settings, frame
    listed = "; ".join(f"{path}: {failures[path]}" for path in devices if path in failures)
    raise NoWorkingCamera("no working camera: " + listed)


def bus_bytes(frame: np.ndarray, settings: DeviceSettings) -> int | None:
    """How many bytes the camera sent for ``frame``: the JPEG buffer as the driver filled it
    (passthrough), or a YUYV picture's two bytes per pixel; None when OpenCV decoded an MJPG
    frame (its compressed size is gone)."""
    if settings.passthrough and (frame.ndim == 1 or (frame.ndim == 2 and frame.shape[0] == 1)):
        return int(frame.size)
    if settings.fourcc == "YUYV":
        return settings.width * settings.height * 2
    return None


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
