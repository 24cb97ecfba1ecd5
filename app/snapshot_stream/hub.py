"""FrameHub: the newest frame, shared by the capture thread and every HTTP client.

The capture thread publishes each frame once; the multipart part (headers + JPEG + the next
boundary) is built once per frame, so serving N clients costs N socket writes and nothing
else. A client waits on a Condition for a frame newer than the last one it sent: there is
never a backlog, a slow client simply skips frames, and no client can slow another.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

BOUNDARY = "frame"
STREAM_MIMETYPE = f"multipart/x-mixed-replace;boundary={BOUNDARY}"
# Written once when a stream starts; after that every part ends with the next boundary line,
# so a browser draws a frame as soon as it has arrived instead of waiting for the next one.
STREAM_PREAMBLE = f"--{BOUNDARY}\r\n".encode("ascii")
_PART_END = f"\r\n--{BOUNDARY}\r\n".encode("ascii")


@dataclass(frozen=True, slots=True)
class Frame:
    """One published frame."""

    jpeg: bytes
    timestamp: float  # capture time, seconds since the epoch
    seq: int
    width: int
    height: int
    placeholder: bool = False
    passthrough: bool = False
    part: bytes = b""  # the pre-built multipart part: headers + jpeg + next boundary


def build_part(jpeg: bytes, timestamp: float, placeholder: bool) -> bytes:
    """Return the multipart part for one JPEG, ending with the boundary of the next part."""
    headers = (
        "Content-Type: image/jpeg\r\n"
        f"Content-Length: {len(jpeg)}\r\n"
        f"X-Timestamp: {timestamp:.6f}\r\n"
        + ("X-Placeholder: 1\r\n" if placeholder else "")
        + "\r\n"
    )
    return b"".join((headers.encode("ascii"), jpeg, _PART_END))


class FrameHub:
    """Holds the newest frame and the bookkeeping the web layer and capture thread share."""

    def __init__(self, rate_window: float = 3.0) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._seq = 0
        self._closed = False
        self._clients = 0
        self._last_ts = 0.0
        self.last_real_timestamp: float | None = None
        self._last_activity = time.monotonic()
        self._rate_window = rate_window
        self._real_times: deque[float] = deque()
        self.first_frame = threading.Event()
        # Set by any request that needs frames; the capture thread waits on it while idle.
        self.wanted = threading.Event()
        self.frames_captured = 0  # real frames (not placeholders)
        self.frames_passthrough = 0
        self.frames_encoded = 0
        self.frames_placeholder = 0
        self.frames_broken = 0  # truncated / undecodable frames from the source (not published)
        self.frames_served = 0  # parts written to /stream clients
        self.frames_skipped = 0  # frames a slow /stream client never got (it took a newer one)
        self.reconnects = 0  # source reopened after a failure
        self.encode_seconds = 0.0
        self.encode_count = 0
        self.stream_requests = 0
        self.snapshot_requests = 0
        self.rejected_clients = 0

    # -- publishing -------------------------------------------------------------------------
    def publish(
        self,
        jpeg: bytes,
        width: int,
        height: int,
        *,
        timestamp: float | None = None,
        placeholder: bool = False,
        passthrough: bool = False,
    ) -> Frame:
        """Publish a JPEG as the newest frame and wake every waiting client."""
        ts = time.time() if timestamp is None else timestamp
        with self._cond:
            # X-Timestamp must be strictly increasing even if the wall clock steps back.
            ts = max(ts, self._last_ts + 1e-6)
            self._last_ts = ts
            self._seq += 1
            frame = Frame(
                jpeg=jpeg,
                timestamp=ts,
                seq=self._seq,
                width=width,
                height=height,
                placeholder=placeholder,
                passthrough=passthrough,
                part=build_part(jpeg, ts, placeholder),
            )
            self._frame = frame
            if placeholder:
                self.frames_placeholder += 1
            else:
                self.frames_captured += 1
                self.last_real_timestamp = ts
                if passthrough:
                    self.frames_passthrough += 1
                else:
                    self.frames_encoded += 1
                now = time.monotonic()
                self._real_times.append(now)
                while self._real_times and now - self._real_times[0] > self._rate_window:
                    self._real_times.popleft()
            self._cond.notify_all()
        self.first_frame.set()
        return frame

    def latest(self) -> Frame | None:
        with self._cond:
            return self._frame

    def wait_next(self, after_seq: int, timeout: float) -> Frame | None:
        """Return the newest frame with seq > after_seq; None on timeout or when closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                frame = self._frame
                if frame is not None and frame.seq > after_seq:
                    return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return None

    def count_served(self, skipped: int) -> None:
        with self._cond:
            self.frames_served += 1
            self.frames_skipped += skipped

    def count_encode(self, seconds: float) -> None:
        with self._cond:
            self.encode_seconds += seconds
            self.encode_count += 1

    def fps_measured(self) -> float:
        """Real frames per second over the last few seconds."""
        with self._cond:
            now = time.monotonic()
            times = [t for t in self._real_times if now - t <= self._rate_window]
        if len(times) < 2:
            return 0.0
        span = max(now - times[0], times[-1] - times[0])
        return round((len(times) - 1) / span, 2) if span > 0 else 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Wake every client; their streams end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.wanted.set()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- clients and activity (for --max-clients and --idle-release) -------------------------
    def acquire_client(self, max_clients: int) -> bool:
        with self._cond:
            if self._clients >= max_clients:
                self.rejected_clients += 1
                return False
            self._clients += 1
            self.stream_requests += 1
        self.touch()
        return True

    def release_client(self) -> None:
        with self._cond:
            self._clients = max(0, self._clients - 1)
            self._last_activity = time.monotonic()

    @property
    def clients(self) -> int:
        return self._clients

    def touch(self) -> None:
        """Record that somebody wants frames (wakes an idle capture thread)."""
        self._last_activity = time.monotonic()
        self.wanted.set()

    def idle_for(self) -> float:
        """Seconds without a stream client or a snapshot (0 while a client is connected)."""
        with self._cond:
            if self._clients:
                return 0.0
            return time.monotonic() - self._last_activity
