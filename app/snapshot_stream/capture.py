"""The capture thread: grab frames at the configured rate, encode once, publish to the hub.

Every blocking source call (open, read, close) runs in a per-source worker thread; the capture
thread waits for it with a timeout, so a source that hangs is detected, abandoned (and released
in the background once it wakes up) and never wedges the capture thread. While the source is
lost the thread publishes "NO SIGNAL" placeholder frames about once a second and reopens the
source with a capped exponential backoff; clients keep their streams and get real frames again
as soon as the source is back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from . import jpeg as jpeglib
from . import placeholder
from .config import Config
from .errors import SourceError
from .hub import FrameHub
from .sdnotify import SystemdNotifier
from .sources import Source, SourceFactory, describe_source
from .transform import Transform

log = logging.getLogger(__name__)

BACKOFF_START = 0.5
BACKOFF_MAX = 10.0
OPEN_TIMEOUT = 20.0
PLACEHOLDER_PERIOD = 1.0
# A source counts as back for good (backoff reset, quiet logging ends) after this much streaming.
STABLE_AFTER = 5.0

STARTING = "starting"
STREAMING = "streaming"
NO_SIGNAL = "no_signal"
IDLE = "idle"


class BadFrame(Exception):
    """A frame that cannot be used (truncated JPEG, undecodable): dropped, not a loss."""


class _Job:
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Worker:
    """Runs one source's blocking calls in a daemon thread, one at a time."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="source-worker", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], Any]) -> _Job:
        job = _Job(fn)
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.result = job.fn()
            except BaseException as exc:
                job.error = exc
            job.done.set()

    def retire(self, wait: float = 0.0) -> bool:
        """Close the source after the current call returns, then end the thread.

        A wedged call is abandoned: the close happens (in the background) if it ever returns.
        Returns True if the source was closed within ``wait`` seconds.
        """
        job = self.call(self._close)
        self._jobs.put(None)
        return job.done.wait(wait) if wait > 0 else False

    def _close(self) -> None:
        try:
            self.source.close()
        except Exception as exc:
            log.debug("closing %s: %s", _describe(self.source), exc)


def _describe(source: Source) -> str:
    try:
        return source.describe()
    except Exception:
        return type(source).__name__


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
        self.transform = Transform(config.rotate, config.hflip, config.vflip)
        self.out_width, self.out_height = self.transform.output_size(config.width, config.height)
        # Re-encode JPEG sources only when asked to (explicit quality) or when we must.
        self.reencode = config.quality_explicit or not self.transform.identity
        self.source_description = description or describe_source(config)
        self.state = STARTING
        self.reason = "starting"
        self.passthrough = False
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: _Worker | None = None
        self._lost_since: float | None = None
        self._lost_wall = time.time()
        self._last_publish = time.monotonic()
        self._last_good = time.monotonic()
        interval = notifier.watchdog_interval if notifier is not None else None
        self._ping_every = interval / 2 if interval else None
        self._next_ping = 0.0
        self._retry_logged: float | None = None
        self._recovered_at: float | None = None  # when it last came back after a loss
        self._settled = True
        self._flaps = 0  # losses soon after a recovery, logged at debug level

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

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "source": self.source_description,
            "passthrough": self.passthrough,
        }

    # -- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        period = self.config.period
        backoff = BACKOFF_START
        next_due = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    backoff, next_due = self._step(backoff, next_due, period)
                except Exception:
                    # A bug, not a source failure: say so loudly, then carry on like a loss.
                    log.exception("unexpected error in the capture loop")
                    self._retire()
                    self._lose("internal error (see log)")
                    self._wait(time.monotonic() + backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            self._retire(wait=0.5)

    def _step(self, backoff: float, next_due: float, period: float) -> tuple[float, float]:
        """One turn of the loop: (re)open if needed, else wait for the deadline and read."""
        if self._worker is None:
            if self.state == IDLE:
                self._idle_wait()
                return backoff, next_due
            error = self._open()
            if self._stop.is_set():
                return backoff, next_due
            if error is not None:
                self._lose(error)
                self._log_retry(backoff)
                self._wait(time.monotonic() + backoff)
                return min(backoff * 2, BACKOFF_MAX), next_due
            next_due = time.monotonic()
        if self._should_idle():
            self._go_idle()
            return backoff, next_due
        self._wait(next_due)
        if self._stop.is_set():
            return backoff, next_due
        now = time.monotonic()
        # Deadline scheduling: no drift; if we fell behind, skip rather than catch up.
        next_due = next_due + period if next_due + period > now else now + period
        error = self._read_once()
        if self._stop.is_set():
            return backoff, next_due
        if error is not None:
            self._retire()
            self._lose(error)
            self._log_retry(backoff)
            self._wait(time.monotonic() + backoff)
            return min(backoff * 2, BACKOFF_MAX), next_due
        if self.state == STREAMING and self._stable():
            backoff = BACKOFF_START
        return backoff, next_due

    def _stable(self) -> bool:
        """True once the source has streamed for STABLE_AFTER since it came back."""
        if self._settled:
            return True
        if self._recovered_at is None or time.monotonic() - self._recovered_at < STABLE_AFTER:
            return False
        self._settled = True
        self._retry_logged = None
        if self._flaps:
            log.info(
                "%s is stable again (%d quick losses before)", self.source_description, self._flaps
            )
            self._flaps = 0
        return True

    def _wait(self, until: float, job: _Job | None = None) -> None:
        """Sleep until ``until`` (or until ``job`` is done), doing housekeeping meanwhile."""
        while not self._stop.is_set():
            if job is not None and job.done.is_set():
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
        if self.state == NO_SIGNAL:
            # The image's clock shows the current time (proof the stream is alive); the text
            # says since when the signal is gone.
            since = time.strftime("%H:%M:%S", time.localtime(self._lost_wall))
            reason = f"lost at {since}: {self.reason}"
        else:
            reason = f"starting: {self.source_description}"
        try:
            image = placeholder.render(self.out_width, self.out_height, reason, when)
            data = jpeglib.encode(image, self.config.quality)
        except Exception:
            log.exception("cannot render the placeholder")
            self._last_publish = time.monotonic()
            return
        self.hub.publish(data, self.out_width, self.out_height, timestamp=when, placeholder=True)
        self._last_publish = time.monotonic()

    def _open(self) -> str | None:
        try:
            source = self.factory()
        except Exception as exc:
            return _reason(exc)
        worker = _Worker(source)
        job = worker.call(source.open)
        self._wait(time.monotonic() + OPEN_TIMEOUT, job)
        if not job.done.is_set():
            worker.retire()
            if self._stop.is_set():
                return None
            return f"opening {_describe(source)} timed out after {OPEN_TIMEOUT:.0f} s"
        if job.error is not None:
            worker.retire()
            return _reason(job.error)
        self._worker = worker
        self.source_description = _describe(source)
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
            data, width, height, passthrough = self._process(job.result)
        except BadFrame as exc:
            self.hub.frames_broken += 1
            log.debug("dropped a frame from %s: %s", self.source_description, exc)
            if time.monotonic() - self._last_good > timeout:
                return f"only broken frames for {timeout:g} s ({exc})"
            return None
        self._last_good = time.monotonic()
        self.passthrough = passthrough
        self.hub.publish(data, width, height, timestamp=when, passthrough=passthrough)
        self._last_publish = time.monotonic()
        if self.state != STREAMING:
            self._recovered(width, height, passthrough)
        return None

    def _process(self, data: Any) -> tuple[bytes, int, int, bool]:
        """Return (jpeg, width, height, passthrough) for what the source delivered."""
        cfg = self.config
        if isinstance(data, bytes | bytearray | memoryview):
            trimmed = jpeglib.trim(data)
            if trimmed is None:
                raise BadFrame("truncated or tiny JPEG")
            if not self.reencode and jpeglib.dimensions(trimmed) == (cfg.width, cfg.height):
                return trimmed, cfg.width, cfg.height, True
            image = cv2.imdecode(np.frombuffer(trimmed, dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise BadFrame("undecodable JPEG")
        elif isinstance(data, np.ndarray):
            image = data
        else:
            raise BadFrame(f"unexpected frame type {type(data).__name__}")
        if image.ndim < 2 or image.size == 0:
            raise BadFrame("empty image")
        if image.shape[0] != cfg.height or image.shape[1] != cfg.width:
            image = cv2.resize(image, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA)
        image = self.transform.apply(image)
        start = time.perf_counter()
        try:
            encoded = jpeglib.encode(image, cfg.quality)
        except ValueError as exc:
            raise BadFrame(str(exc)) from exc
        self.hub.count_encode(time.perf_counter() - start)
        return encoded, self.out_width, self.out_height, False

    # -- state changes (each logged once) ------------------------------------------------------
    def _set_state(self, state: str, reason: str) -> None:
        changed = state != self.state
        self.state, self.reason = state, reason
        if changed and self.notifier is not None:
            self.notifier.status(f"{state}: {reason}" if reason else state)

    def _lose(self, reason: str) -> None:
        if self.state == NO_SIGNAL:
            if reason != self.reason:
                log.info("still lost: %s", reason)
                self.reason = reason
            return
        where = self.source_description
        what = reason if reason.startswith(where) else f"{where}: {reason}"
        if self.state == STARTING:
            log.error("cannot start %s", what)
        elif not self._settled:
            # Lost again soon after coming back: one warning, then quiet until it is stable.
            self._flaps += 1
            if self._flaps == 1:
                log.warning(
                    "lost again soon after recovering: %s (quick losses are logged at debug "
                    "level until the source is stable)",
                    what,
                )
            else:
                log.debug("lost: %s", what)
        else:
            log.warning("lost: %s", what)
        self._lost_since = time.monotonic()
        self._lost_wall = time.time()
        self._set_state(NO_SIGNAL, reason)
        self._publish_placeholder()

    def _log_retry(self, backoff: float) -> None:
        if self._retry_logged is None:
            log.info("retrying every %g s (backing off to %g s)", backoff, BACKOFF_MAX)
            self._retry_logged = backoff
        elif backoff >= BACKOFF_MAX and self._retry_logged < BACKOFF_MAX:
            log.info("retrying every %g s", BACKOFF_MAX)
            self._retry_logged = backoff

    def _recovered(self, width: int, height: int, passthrough: bool) -> None:
        mode = "passthrough" if passthrough else f"encoded at quality {self.config.quality}"
        if self.state == NO_SIGNAL and self._lost_since is not None:
            self.hub.reconnects += 1
            took = time.monotonic() - self._lost_since
            level = logging.DEBUG if self._flaps > 1 else logging.INFO
            log.log(level, "recovered after %.1f s: %s", took, self.source_description)
            self._recovered_at = time.monotonic()
            self._settled = False
        else:
            log.info(
                "streaming %s at %dx%d, %g fps, %s",
                self.source_description,
                width,
                height,
                self.config.fps,
                mode,
            )
        self._lost_since = None
        self._set_state(STREAMING, "")

    # -- idle release --------------------------------------------------------------------------
    def _should_idle(self) -> bool:
        limit = self.config.idle_release
        return limit > 0 and self.state == STREAMING and self.hub.idle_for() >= limit

    def _go_idle(self) -> None:
        self.hub.wanted.clear()
        if self.hub.idle_for() < self.config.idle_release:
            return  # a client arrived meanwhile
        self._retire()
        log.info(
            "idle: no client for %g s, released %s",
            self.config.idle_release,
            self.source_description,
        )
        self._set_state(IDLE, f"released after no client for {self.config.idle_release:g} s")

    def _idle_wait(self) -> None:
        while not self._stop.is_set():
            self._housekeeping(time.monotonic())
            step = self._ping_every if self._ping_every is not None else 1.0
            if self.hub.wanted.wait(min(step, 1.0)):
                break
        if not self._stop.is_set():
            log.info("a client wants frames: reopening %s", self.source_description)
            self._set_state(STARTING, "waking up")
            self._last_publish = time.monotonic()
