"""The capture loop: grab frames at the configured rate, process them once, publish to the hub.

Every blocking source call runs in a :class:`~.worker.SourceWorker` and is waited for with a
timeout. While the source is lost the loop publishes NO SIGNAL placeholder frames about once a
second and reopens the source with a capped exponential backoff; clients keep their streams
and get real frames again as soon as the source is back. Between frames (and while waiting)
it pings the systemd watchdog.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..config import Config
from ..errors import SourceError
from ..hub import Encoded, FrameHub
from ..sdnotify import SystemdNotifier
from ..sources import SourceFactory, describe_source
from .frames import BadFrame, FrameProcessor
from .state import IDLE, NO_SIGNAL, STARTING, STREAMING, CaptureState
from .worker import Job, SourceWorker, describe

log = logging.getLogger("snapshot_stream.capture")

OPEN_TIMEOUT = 20.0
PLACEHOLDER_PERIOD = 1.0
# Somebody watches while a /stream client is connected and for this long after a snapshot.
WATCH_GRACE = 10.0


class Backoff:
    """Delays between reopen attempts: short while somebody watches, long while nobody does.

    While a client watches, real frames must be back within 2 s of the source's return, so the
    delay stops growing at WATCHED_MAX. Unwatched, probing backs off to UNWATCHED_MAX (each
    probe of an absent camera scans the video nodes); a client that arrives meanwhile cuts the
    wait short (see Capture._retry_wait), so the long delay costs nobody a late frame.
    """

    START = 0.25
    WATCHED_MAX = 1.0
    UNWATCHED_MAX = 30.0

    def __init__(self) -> None:
        self.attempts = 0

    def reset(self) -> None:
        self.attempts = 0

    def next(self, watched: bool) -> float:
        cap = self.WATCHED_MAX if watched else self.UNWATCHED_MAX
        delay = min(self.START * 2 ** min(self.attempts, 16), cap)
        self.attempts += 1
        return delay

    @classmethod
    def describe(cls) -> str:
        return (
            f"every {cls.START:g} to {cls.WATCHED_MAX:g} s while clients watch, "
            f"backing off to {cls.UNWATCHED_MAX:g} s while nobody does"
        )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SourceError):
        return str(exc) or "source error"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Capture:
    """Owns the source and the one capture thread of the process."""

    def __init__(
        self,
        config: Config,
        hub: FrameHub,
        factory: SourceFactory,
        notifier: SystemdNotifier | None = None,
        description: str | None = None,
    ) -> None:
        self.config = config
        self.hub = hub
        self.factory = factory
        self.notifier = notifier
        self.frames = FrameProcessor(config)
        self.out_width, self.out_height = self.frames.out_width, self.frames.out_height
        self.machine = CaptureState(
            description or describe_source(config),
            notifier,
            config.fps,
            config.quality,
            camera=config.source is None,
        )
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: SourceWorker | None = None
        self._last_publish = time.monotonic()
        self._last_good = time.monotonic()
        interval = notifier.watchdog_interval if notifier is not None else None
        self._ping_every = interval / 2 if interval else None
        self._next_ping = 0.0
        self.backoff = Backoff()

    # -- public API ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread and release the source (waits at most about ``timeout``)."""
        self._stop.set()
        self.hub.wanted.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def state(self) -> str:
        return self.machine.state

    @property
    def reason(self) -> str:
        return self.machine.reason

    @property
    def passthrough(self) -> bool:
        return self.machine.passthrough

    @property
    def source_description(self) -> str:
        return self.machine.source_description

    def status(self) -> dict[str, Any]:
        return self.machine.status()

    # -- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        period = self.config.period
        next_due = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    next_due = self._step(next_due, period)
                except Exception:
                    # A bug, not a source failure: say so loudly, then carry on like a loss.
                    log.exception("unexpected error in the capture loop")
                    self._retire()
                    self._lose("internal error (see log)")
                    self._retry_wait()
        finally:
            self._retire(wait=0.5)

    def _step(self, next_due: float, period: float) -> float:
        """One turn of the loop: (re)open if needed, else wait for the deadline and read."""
        if self._worker is None:
            if self.state == IDLE:
                self._idle_wait()
                return next_due
            error = self._open()
            if self._stop.is_set():
                return next_due
            if error is not None:
                self._lose(error)
                self._retry_wait()
                return next_due
            next_due = time.monotonic()
        if self._should_idle():
            self._go_idle()
            return next_due
        self._wait(next_due)
        if self._stop.is_set():
            return next_due
        now = time.monotonic()
        # Deadline scheduling: no drift; if we fell behind, skip rather than catch up.
        next_due = next_due + period if next_due + period > now else now + period
        error = self._read_once()
        if self._stop.is_set():
            return next_due
        if error is not None:
            self._retire()
            self._lose(error)
            self._retry_wait()
            return next_due
        if self.state == STREAMING and self.machine.stable():
            self.backoff.reset()
        return next_due

    def watched(self) -> bool:
        """True while a /stream client is connected or a snapshot was asked for lately."""
        return self.hub.idle_for() < WATCH_GRACE

    def _retry_wait(self) -> None:
        """Wait before the next reopen attempt; a client arriving meanwhile ends the wait."""
        # Cleared before looking, so a client that arrives from here on is not missed.
        self.hub.wanted.clear()
        watched = self.watched()
        delay = self.backoff.next(watched)
        self.machine.log_retry(Backoff.describe())
        if watched:
            self._wait(time.monotonic() + delay)
            return
        self._wait(time.monotonic() + delay, wake=self.hub.wanted)
        if self.hub.wanted.is_set() and not self._stop.is_set():
            self.backoff.reset()  # a client came: probe now, and fast from here on

    def _wait(
        self, until: float, job: Job | None = None, wake: threading.Event | None = None
    ) -> None:
        """Sleep until ``until`` (or until ``job`` is done or ``wake`` is set), doing
        housekeeping meanwhile."""
        while not self._stop.is_set():
            if job is not None and job.done.is_set():
                return
            if wake is not None and wake.is_set():
                return
            now = time.monotonic()
            self._housekeeping(now)
            remaining = until - now
            if remaining <= 0:
                return
            step = remaining
            if self.state in (NO_SIGNAL, STARTING):
                step = min(step, max(0.01, self._last_publish + PLACEHOLDER_PERIOD - now))
            if self._ping_every is not None:
                step = min(step, max(0.01, self._next_ping - now))
            if job is not None:
                job.done.wait(min(step, 0.2))
            elif wake is not None:
                wake.wait(step)  # stop() sets the hub's `wanted` too
            else:
                self._stop.wait(step)

    def _housekeeping(self, now: float) -> None:
        if self._ping_every is not None and now >= self._next_ping and self.notifier is not None:
            self.notifier.watchdog()
            self._next_ping = now + self._ping_every
        if (
            self.state in (NO_SIGNAL, STARTING)
            and now - self._last_publish >= PLACEHOLDER_PERIOD
            and not self.hub.closed
        ):
            self._publish_placeholder()

    def _publish_placeholder(self) -> None:
        when = time.time()
        self._last_publish = time.monotonic()
        produce = self.frames.placeholder(self.machine.placeholder_text(), when)
        if not self.hub.streaming:
            self.hub.offer(produce, timestamp=when, placeholder=True)
            return
        try:
            out = produce()
        except Exception:
            log.exception("cannot render the placeholder")
            return
        self.hub.publish(out.jpeg, out.width, out.height, timestamp=when, placeholder=True)

    def _open(self) -> str | None:
        try:
            source = self.factory()
        except Exception as exc:
            return _reason(exc)
        worker = SourceWorker(source)
        job = worker.call(source.open)
        self._wait(time.monotonic() + OPEN_TIMEOUT, job)
        if not job.done.is_set():
            worker.retire()
            if self._stop.is_set():
                return None
            return f"opening {describe(source)} timed out after {OPEN_TIMEOUT:.0f} s"
        if job.error is not None:
            worker.retire()
            return _reason(job.error)
        self._worker = worker
        self.machine.source_description = describe(source)
        self._last_good = time.monotonic()
        log.debug("opened %s", self.source_description)
        return None

    def _retire(self, wait: float = 0.0) -> None:
        worker, self._worker = self._worker, None
        if worker is not None and not worker.retire(wait) and wait > 0:
            log.warning("%s did not close in time; abandoned", self.source_description)

    def _read_once(self) -> str | None:
        worker = self._worker
        assert worker is not None
        timeout = self.config.read_timeout
        job = worker.call(worker.source.read)
        self._wait(time.monotonic() + timeout, job)
        if self._stop.is_set():
            return None
        if not job.done.is_set():
            return f"no frame for {timeout:g} s (source hung)"
        if job.error is not None:
            return _reason(job.error)
        when = time.time()
        try:
            out = self.frames.prepare(job.result)
            # Encode now only for stream clients; otherwise whoever asks encodes (FrameHub).
            if not isinstance(out, Encoded) and self.hub.streaming:
                out = out()
                self.hub.count_encode(out.encode_seconds)
        except BadFrame as exc:
            self.hub.count_broken()
            log.debug("dropped a frame from %s: %s", self.source_description, exc)
            if time.monotonic() - self._last_good > timeout:
                return f"only broken frames for {timeout:g} s ({exc})"
            return None
        self._last_good = time.monotonic()
        if isinstance(out, Encoded):
            self.hub.publish(
                out.jpeg, out.width, out.height, timestamp=when, passthrough=out.passthrough
            )
            passthrough = out.passthrough
        else:
            self.hub.offer(out, timestamp=when)
            passthrough = False
        self._last_publish = time.monotonic()
        if self.machine.streaming(self.out_width, self.out_height, passthrough):
            self.hub.reconnects += 1
        return None

    def _lose(self, reason: str) -> None:
        if self.machine.lose(reason):
            self._publish_placeholder()

    # -- idle release --------------------------------------------------------------------------
    def _should_idle(self) -> bool:
        limit = self.config.idle_release
        return limit > 0 and self.state == STREAMING and self.hub.idle_for() >= limit

    def _go_idle(self) -> None:
        self.hub.wanted.clear()
        if self.hub.idle_for() < self.config.idle_release:
            return  # a client arrived meanwhile
        self._retire()
        self.machine.idle(self.config.idle_release)

    def _idle_wait(self) -> None:
        while not self._stop.is_set():
            self._housekeeping(time.monotonic())
            step = self._ping_every if self._ping_every is not None else 1.0
            if self.hub.wanted.wait(min(step, 1.0)):
                break
        if not self._stop.is_set():
            self.machine.waking()
            self._last_publish = time.monotonic()
