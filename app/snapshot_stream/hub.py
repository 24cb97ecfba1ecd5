"""FrameHub: the newest frame, shared by the capture thread and every HTTP client.

The capture thread hands over every frame it reads. While a /stream client is connected it
encodes each one at once and :meth:`FrameHub.publish`\\ es it: the multipart part (headers +
JPEG + the next boundary) is built once per frame, so serving N clients costs N socket writes
and nothing else. While nobody streams it only :meth:`FrameHub.offer`\\ s the frame: the JPEG
is made when somebody asks for it (a snapshot, a new stream client), so an unwatched camera
costs no encoding at all, yet a snapshot is never older than one frame period.

Stream clients never queue frames: the server writes the newest frame to each client whose
socket has room and skips the others, so a slow client simply gets fewer frames.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

BOUNDARY = "frame"
STREAM_MIMETYPE = f"multipart/x-mixed-replace;boundary={BOUNDARY}"
# Written once when a stream starts; after that every part ends with the next boundary line,
# so a browser draws a frame as soon as it has arrived instead of waiting for the next one.
STREAM_PREAMBLE = f"--{BOUNDARY}\r\n".encode("ascii")
_PART_END = f"\r\n--{BOUNDARY}\r\n".encode("ascii")
# The header that marks a NO SIGNAL frame, on stream parts and snapshots alike.
PLACEHOLDER_HEADER = "X-Placeholder"
# The snapshot header's name until 0.2; still sent on snapshots for one release.
PLACEHOLDER_HEADER_OLD = "X-Snapshot-Placeholder"


@dataclass(frozen=True, slots=True)
class Encoded:
    """A JPEG ready to publish, as the frame processor made it."""

    jpeg: bytes
    width: int
    height: int
    passthrough: bool
    encode_seconds: float = 0.0  # time spent in the JPEG encoder (0 for passthrough)


# Makes the JPEG of an offered frame; raises (any exception) when the frame turns out unusable.
Producer = Callable[[], Encoded]


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


@dataclass(frozen=True, slots=True)
class _Offer:
    produce: Producer
    timestamp: float
    seq: int
    placeholder: bool


def build_part(jpeg: bytes, timestamp: float, placeholder: bool) -> bytes:
    """Return the multipart part for one JPEG, ending with the boundary of the next part."""
    headers = (
        "Content-Type: image/jpeg\r\n"
        f"Content-Length: {len(jpeg)}\r\n"
        f"X-Timestamp: {timestamp:.6f}\r\n"
        + (f"{PLACEHOLDER_HEADER}: 1\r\n" if placeholder else "")
        + "\r\n"
    )
    return b"".join((headers.encode("ascii"), jpeg, _PART_END))


class FrameHub:
    """Holds the newest frame and the bookkeeping the web layer and capture thread share."""

    def __init__(self, rate_window: float = 3.0) -> None:
        self._cond = threading.Condition()
        # Held while an offered frame is encoded, so concurrent askers encode it once.
        self._encode_lock = threading.Lock()
        self._frame: Frame | None = None
        self._offer: _Offer | None = None
        self._seq = 0
        self._closed = False
        self._clients = 0
        self._last_ts = 0.0
        self.last_real_timestamp: float | None = None
        self._last_activity = time.monotonic()
        self._rate_window = rate_window
        self._real_times: deque[float] = deque()
        self._subscribers: list[Callable[[Frame], None]] = []
        self.first_frame = threading.Event()
        # Set by any request that needs frames; the capture thread waits on it while idle.
        self.wanted = threading.Event()
        self.frames_captured = 0  # real frames read from the source (not placeholders)
        self.frames_passthrough = 0
        self.frames_encoded = 0
        self.frames_placeholder = 0
        self.frames_broken = 0  # truncated / undecodable frames from the source (not published)
        self.frames_served = 0  # parts written to /stream clients
        self.frames_skipped = 0  # frames a slow /stream client never got (it took a newer one)
        self.reconnects = 0  # source reopened after a failure
        self.encode_seconds = 0.0
        self.encode_count = 0

    # -- the capture side ---------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        """True while a /stream client is connected: every frame is encoded as it arrives."""
        return self._clients > 0

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
        with self._cond:
            seq, ts = self._next(timestamp, placeholder)
            if not placeholder and passthrough:
                self.frames_passthrough += 1
            frame = self._install(jpeg, width, height, ts, seq, placeholder, passthrough)
        self._announce(frame)
        return frame

    def offer(self, produce: Producer, *, timestamp: float, placeholder: bool = False) -> None:
        """Make a frame the newest one without encoding it yet (see the module docstring)."""
        with self._cond:
            seq, ts = self._next(timestamp, placeholder)
            self._offer = _Offer(produce, ts, seq, placeholder)
            self._cond.notify_all()
        self.first_frame.set()

    def _next(self, timestamp: float | None, placeholder: bool) -> tuple[int, float]:
        """A new sequence number and X-Timestamp (the caller holds the lock)."""
        ts = time.time() if timestamp is None else timestamp
        # X-Timestamp must be strictly increasing even if the wall clock steps back.
        ts = max(ts, self._last_ts + 1e-6)
        self._last_ts = ts
        self._seq += 1
        if placeholder:
            self.frames_placeholder += 1
        else:
            self.frames_captured += 1
            self.last_real_timestamp = ts
            now = time.monotonic()
            self._real_times.append(now)
            while self._real_times and now - self._real_times[0] > self._rate_window:
                self._real_times.popleft()
        return self._seq, ts

    def _install(
        self,
        jpeg: bytes,
        width: int,
        height: int,
        ts: float,
        seq: int,
        placeholder: bool,
        passthrough: bool,
    ) -> Frame:
        """Make this the newest frame (the caller holds the lock)."""
        frame = Frame(
            jpeg=jpeg,
            timestamp=ts,
            seq=seq,
            width=width,
            height=height,
            placeholder=placeholder,
            passthrough=passthrough,
            part=build_part(jpeg, ts, placeholder),
        )
        self._frame = frame
        if self._offer is not None and self._offer.seq <= seq:
            self._offer = None
        self._cond.notify_all()
        return frame

    def _announce(self, frame: Frame) -> None:
        self.first_frame.set()
        for callback in self._subscribers:
            callback(frame)

    def count_encode(self, seconds: float) -> None:
        with self._cond:
            self.encode_seconds += seconds
            self.encode_count += 1
            self.frames_encoded += 1

    def count_broken(self) -> None:
        with self._cond:
            self.frames_broken += 1

    # -- the client side ----------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Frame], None]) -> None:
        """Call ``callback(frame)`` after every publish, in the publishing thread."""
        self._subscribers.append(callback)

    def latest(self) -> Frame | None:
        """The newest frame, encoding an offered one if needed (in the calling thread)."""
        with self._cond:
            frame, offer = self._frame, self._offer
        if offer is None or (frame is not None and frame.seq >= offer.seq):
            return frame
        return self._materialize(offer) or frame

    def _materialize(self, offer: _Offer) -> Frame | None:
        with self._encode_lock:
            with self._cond:
                frame = self._frame
                if frame is not None and frame.seq >= offer.seq:
                    return frame  # somebody else encoded it (or a newer one) meanwhile
            try:
                made = offer.produce()
            except Exception:
                # An undecodable camera frame: dropped like the capture thread drops it.
                with self._cond:
                    if not offer.placeholder:
                        self.frames_broken += 1
                    if self._offer is offer:
                        self._offer = None
                return None
            if not offer.placeholder and not made.passthrough:
                self.count_encode(made.encode_seconds)
            with self._cond:
                if not offer.placeholder and made.passthrough:
                    self.frames_passthrough += 1
                current = self._frame
                if current is not None and current.seq > offer.seq:
                    return current
                frame = self._install(
                    made.jpeg,
                    made.width,
                    made.height,
                    offer.timestamp,
                    offer.seq,
                    offer.placeholder,
                    made.passthrough,
                )
        self._announce(frame)
        return frame

    def wait_next(self, after_seq: int, timeout: float) -> Frame | None:
        """Return the newest frame with seq > after_seq; None on timeout or when closed."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return None
                    frame, offer = self._frame, self._offer
                    fresh = frame is not None and frame.seq > after_seq
                    if fresh and (offer is None or offer.seq <= frame.seq):
                        return frame
                    if offer is not None and offer.seq > after_seq:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            made = self._materialize(offer)
            if made is not None and made.seq > after_seq:
                return made

    def count_served(self, served: int, skipped: int) -> None:
        with self._cond:
            self.frames_served += served
            self.frames_skipped += skipped

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

    # -- clients and activity (for --max-clients, --idle-release and the backoff) ----------
    def acquire_client(self, max_clients: int) -> bool:
        with self._cond:
            if self._clients >= max_clients:
                return False
            self._clients += 1
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


class StreamBody:
    """The WSGI body of one /stream response.

    Our HTTP server recognises it and takes the connection over: it writes ``first`` and then
    every newer frame itself (see httpd.HttpServer._fan_out) and calls close() when the viewer
    leaves. Under any other WSGI server it is a plain blocking iterator of parts.
    """

    def __init__(self, hub: FrameHub, first: Frame | None) -> None:
        self.hub = hub
        self.first = first
        self.last_seq = 0
        self.started = False
        self.closed = False

    def __iter__(self) -> StreamBody:
        return self

    def __next__(self) -> bytes:
        if not self.started:
            self.started = True
            if self.first is not None:
                self.last_seq = self.first.seq
                return STREAM_PREAMBLE + self.first.part
            prefix = STREAM_PREAMBLE
        else:
            prefix = b""
        while not self.closed:
            frame = self.hub.wait_next(self.last_seq, 1.0)
            if frame is not None:
                self.hub.count_served(1, max(0, frame.seq - self.last_seq - 1))
                self.last_seq = frame.seq
                return prefix + frame.part
            if self.hub.closed:
                break
        raise StopIteration

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.release_client()
