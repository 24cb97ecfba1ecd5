"""Prometheus metrics in the text exposition format 0.0.4, without a client library.

The web layer fills a :class:`MetricsSnapshot` from the hub and serves :func:`render` at
/metrics with :data:`CONTENT_TYPE`. A hand-written renderer keeps the dependency list short
(Pi installs) and the output is small and fixed, so there is nothing a library would add.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .logtext import redact_url

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "snapshot_stream_"
STATES = ("starting", "streaming", "no_signal", "idle")
# Every status the server refuses with, always exported (a missing series is no zero).
REFUSAL_STATUSES = (400, 401, 403, 408, 413, 429, 431, 503)
CONNECTION_CAPS = ("per_address", "total")


@dataclass(frozen=True)
class CameraFigures:
    """A V4L2 camera's negotiated mode (None until it was first opened) and the bytes received."""

    device: str | None
    fourcc: str | None
    width: int | None
    height: int | None
    fps: float | None
    bytes_total: int
    bytes_per_second: float  # NaN when unknown (OpenCV decoded the frames)


@dataclass(frozen=True)
class MetricsSnapshot:
    """Point-in-time figures; counters are totals since the process started."""

    name: str
    source: str
    state: str
    frames_captured: int
    frames_served: int
    frames_passthrough: int
    frames_encoded: int
    frames_dropped: int
    frames_broken: int
    frames_placeholder: int
    clients: int
    reconnects: int
    encode_seconds_sum: float
    encode_count: int
    last_frame_age: float
    fps_measured: float
    uptime: float
    # Refusals by HTTP status, and connections closed at once by cap ("per_address", "total").
    requests_refused: dict[int, int] = field(default_factory=dict)
    connections_refused: dict[str, int] = field(default_factory=dict)
    camera: CameraFigures | None = None  # None: the source is not a V4L2 camera


def escape_label_value(value: str) -> str:
    """Escape a label value as the format requires: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    # HELP text escapes only backslash and newline (quotes are literal there).
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Prometheus parses it (Go ParseFloat plus +Inf/-Inf/NaN)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> str:
        full = PREFIX + name
        self.lines.append(f"# HELP {full} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {full} {kind}")
        return full

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self.lines.append(f"{name}{_labels(labels or {})} {format_value(value)}")

    def single(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.sample(self.family(name, kind, help_text), value)


def render(snap: MetricsSnapshot) -> str:
    """The whole /metrics body (ends with a newline, as the format requires)."""
    w = _Writer()
    info = w.family("info", "gauge", "Camera name and source; the value is always 1.")
    w.sample(info, 1, {"name": snap.name, "source": redact_url(snap.source)})

    state = w.family("state", "gauge", "Capture state, one-hot over " + "|".join(STATES) + ".")
    for s in STATES:
        w.sample(state, int(snap.state == s), {"state": s})

    # "Up" means frames arrive; idle (released by --idle-release) is healthy but not up, and is
    # visible in snapshot_stream_state.
    w.single(
        "camera_up",
        "gauge",
        "1 while frames arrive from the source (state streaming), else 0.",
        int(snap.state == "streaming"),
    )

    counters = (
        ("frames_captured_total", "Frames read from the source.", snap.frames_captured),
        ("frames_served_total", "JPEG frames written to clients.", snap.frames_served),
        (
            "frames_passthrough_total",
            "Frames forwarded as the source's own JPEG, without re-encoding.",
            snap.frames_passthrough,
        ),
        ("frames_encoded_total", "Frames encoded to JPEG.", snap.frames_encoded),
        (
            "frames_dropped_total",
            "Frames skipped for clients that could not keep up.",
            snap.frames_dropped,
        ),
        (
            "frames_broken_total",
            "Frames from the source that were not usable JPEGs (dropped).",
            snap.frames_broken,
        ),
        (
            "frames_placeholder_total",
            "NO SIGNAL frames made while the source was lost.",
            snap.frames_placeholder,
        ),
        ("reconnects_total", "Times the source was reopened after a failure.", snap.reconnects),
    )
    for name, help_text, value in counters:
        w.single(name, "counter", help_text, value)

    refused = w.family(
        "requests_refused_total",
        "counter",
        "Requests answered with an error before reaching the app or at its limits, by status.",
    )
    for status in REFUSAL_STATUSES:
        w.sample(refused, snap.requests_refused.get(status, 0), {"status": str(status)})
    caps = w.family(
        "connections_refused_total",
        "counter",
        "Connections closed at once because a connection cap was reached, by cap.",
    )
    for cap in CONNECTION_CAPS:
        w.sample(caps, snap.connections_refused.get(cap, 0), {"cap": cap})

    w.single("clients", "gauge", "Clients currently connected to /stream.", snap.clients)
    w.single(
        "fps_measured", "gauge", "Capture rate over the last seconds (frames/s).", snap.fps_measured
    )
    w.single(
        "last_frame_age_seconds",
        "gauge",
        "Seconds since the newest frame was captured.",
        snap.last_frame_age,
    )
    w.single("uptime_seconds", "gauge", "Seconds since the process started.", snap.uptime)

    enc = w.family("encode_seconds", "summary", "Time spent encoding frames to JPEG.")
    w.sample(enc + "_sum", snap.encode_seconds_sum)
    w.sample(enc + "_count", snap.encode_count)
    if snap.camera is not None:
        _camera(w, snap.camera)
    return "\n".join(w.lines) + "\n"


def _camera(w: _Writer, cam: CameraFigures) -> None:
    if cam.device is not None:
        info = w.family(
            "camera_info", "gauge", "The camera's node and the pixel format it streams; always 1."
        )
        w.sample(info, 1, {"device": cam.device, "format": cam.fourcc or ""})
        w.single("camera_width_pixels", "gauge", "Frame width the camera streams.", cam.width or 0)
        w.single(
            "camera_height_pixels", "gauge", "Frame height the camera streams.", cam.height or 0
        )
        w.single(
            "camera_fps",
            "gauge",
            "Frame rate the camera accepted (VIDIOC_G_PARM), frames/s.",
            float(cam.fps or 0.0),
        )
    w.single(
        "camera_received_bytes_total",
        "counter",
        "Bytes of frames received from the camera (what crossed its USB bus).",
        cam.bytes_total,
    )
    w.single(
        "camera_received_bytes_per_second",
        "gauge",
        "Bytes per second received from the camera over the last seconds.",
        cam.bytes_per_second,
    )
