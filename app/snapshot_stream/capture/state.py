"""The capture state machine: starting, streaming, no_signal, idle; each change logged once.

It only keeps state and decides what to say (log lines, systemd STATUS, the placeholder's
text); the capture loop decides when things happen. Flapping sources are kept quiet: after a
recovery the source must stream for STABLE_AFTER seconds before another loss is a warning.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..sdnotify import SystemdNotifier

log = logging.getLogger("snapshot_stream.capture")

STARTING = "starting"
STREAMING = "streaming"
NO_SIGNAL = "no_signal"
IDLE = "idle"

# A source counts as back for good (backoff reset, quiet logging ends) after this much streaming.
STABLE_AFTER = 5.0


class CaptureState:
    """Where the source stands, and the bookkeeping that keeps its logging to one line a change."""

    def __init__(
        self,
        description: str,
        notifier: SystemdNotifier | None,
        fps: float,
        quality: int,
        camera: bool = True,
    ) -> None:
        self.notifier = notifier
        self.camera = camera  # a V4L2 camera (not a file, URL or test pattern)
        self.ever_streamed = False
        self.fps = fps
        self.quality = quality
        self.source_description = description
        self.state = STARTING
        self.reason = "starting"
        self.passthrough = False
        self._lost_since: float | None = None
        self._lost_wall = time.time()
        self._retry_logged = False
        self._recovered_at: float | None = None  # when it last came back after a loss
        self._settled = True
        self._flaps = 0  # losses soon after a recovery, logged at debug level

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "source": self.source_description,
            "passthrough": self.passthrough,
        }

    def placeholder_text(self) -> str:
        """What the NO SIGNAL image says below the clock."""
        if self.state == NO_SIGNAL and not self.ever_streamed:
            # Nothing was ever lost: it was never there.
            return f"{'no camera found' if self.camera else 'no signal yet'}: {self.reason}"
        if self.state == NO_SIGNAL:
            # The image's clock shows the current time (proof the stream is alive); the text
            # says since when the signal is gone.
            since = time.strftime("%H:%M:%S", time.localtime(self._lost_wall))
            return f"lost at {since}: {self.reason}"
        return f"starting: {self.source_description}"

    def _set(self, state: str, reason: str) -> None:
        changed = state != self.state
        self.state, self.reason = state, reason
        if changed and self.notifier is not None:
            self.notifier.status(f"{state}: {reason}" if reason else state)

    def lose(self, reason: str) -> bool:
        """The source failed with ``reason``; True when this is a new loss (not a repeat)."""
        if self.state == NO_SIGNAL:
            if reason != self.reason:
                log.info("still lost: %s", reason)
                self.reason = reason
            return False
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
        self._set(NO_SIGNAL, reason)
        return True

    def log_retry(self, policy: str) -> None:
        """Say how reopening is retried, once per loss (and once for a flapping source)."""
        if not self._retry_logged:
            log.info("retrying %s", policy)
            self._retry_logged = True

    def streaming(self, width: int, height: int, passthrough: bool) -> bool:
        """A good frame arrived; True when it ends a loss (a reconnect)."""
        self.passthrough = passthrough
        self.ever_streamed = True
        if self.state == STREAMING:
            return False
        reconnect = False
        if self.state == NO_SIGNAL and self._lost_since is not None:
            reconnect = True
            took = time.monotonic() - self._lost_since
            level = logging.DEBUG if self._flaps > 1 else logging.INFO
            log.log(level, "recovered after %.1f s: %s", took, self.source_description)
            self._recovered_at = time.monotonic()
            self._settled = False
        else:
            mode = "passthrough" if passthrough else f"encoded at quality {self.quality}"
            log.info(
                "streaming %s at %dx%d, %g fps, %s",
                self.source_description,
                width,
                height,
                self.fps,
                mode,
            )
        self._lost_since = None
        self._set(STREAMING, "")
        return reconnect

    def stable(self) -> bool:
        """True once the source has streamed for STABLE_AFTER since it came back."""
        if self._settled:
            return True
        if self._recovered_at is None or time.monotonic() - self._recovered_at < STABLE_AFTER:
            return False
        self._settled = True
        self._retry_logged = False
        if self._flaps:
            log.info(
                "%s is stable again (%d quick losses before)", self.source_description, self._flaps
            )
            self._flaps = 0
        return True

    def idle(self, idle_release: float) -> None:
        log.info("idle: no client for %g s, released %s", idle_release, self.source_description)
        self._set(IDLE, f"released after no client for {idle_release:g} s")

    def waking(self) -> None:
        log.info("a client wants frames: reopening %s", self.source_description)
        self._set(STARTING, "waking up")
