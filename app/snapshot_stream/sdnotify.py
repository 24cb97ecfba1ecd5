"""systemd notify protocol (sd_notify(3)) over a unix datagram socket, without libsystemd."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)

# Seconds one notification may block before it is given up.
SEND_TIMEOUT = 1.0


class SystemdNotifier:
    """Sends READY/WATCHDOG/STATUS/STOPPING to the service manager named by NOTIFY_SOCKET.

    Without NOTIFY_SOCKET (not started by systemd, or not Type=notify) every call is a cheap
    no-op returning False. Socket errors never propagate: the service must keep streaming even
    if systemd went away; the first failure is logged as a warning, later ones at debug level.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._socket_name = env.get("NOTIFY_SOCKET", "")
        self._address = self._parse_address(self._socket_name)
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._warned = False
        self._congested = False

    @staticmethod
    def _parse_address(value: str) -> str | None:
        if not value:
            return None
        if value.startswith("@"):
            # Abstract namespace socket: the name starts with a NUL byte instead of '@'.
            return "\0" + value[1:]
        return value

    @property
    def enabled(self) -> bool:
        """True when a notify socket was given."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """WATCHDOG_USEC in seconds if the watchdog applies to this process, else None.

        Send watchdog() at least every half of this interval (sd_watchdog_enabled(3)).
        """
        if not self._watchdog_usec:
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec / 1e6

    def notify(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if it was sent."""
        if self._address is None or not fields:
            return False
        # A newline inside a value would start a new (bogus) assignment.
        payload = "\n".join(
            f"{key}={' '.join(str(value).splitlines())}" for key, value in fields.items()
        ).encode("utf-8", "replace")
        with self._lock:
            sock = self._sock
            try:
                if sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    # A datagram send blocks while the receiver's queue is full (a stuck
                    # manager): bound it so the caller can never hang here.
                    sock.settimeout(SEND_TIMEOUT)
                    self._sock = sock
                sock.sendto(payload, self._address)
            except (TimeoutError, BlockingIOError) as exc:
                # Still full: stop waiting (drop messages) until one goes through again.
                if not self._congested:
                    self._congested = True
                    sock.settimeout(0.0)
                self._report_failure(exc, close=False)
                return False
            except OSError as exc:
                self._report_failure(exc, close=True)
                return False
            if self._congested:
                self._congested = False
                sock.settimeout(SEND_TIMEOUT)
        return True

    def _report_failure(self, exc: OSError, close: bool) -> None:
        if close and self._sock is not None:
            self._sock.close()
            self._sock = None
            self._congested = False
        if self._warned:
            log.debug("systemd notify failed: %s", exc)
        else:
            self._warned = True
            log.warning("cannot notify systemd via %s: %s", self._socket_name, exc)

    def ready(self, status: str = "") -> bool:
        """Tell systemd start-up finished (Type=notify services are 'activating' until then)."""
        if status:
            return self.notify(READY="1", STATUS=status)
        return self.notify(READY="1")

    def watchdog(self) -> bool:
        """Keep-alive ping; systemd restarts the service if these stop for WATCHDOG_USEC."""
        return self.notify(WATCHDOG="1")

    def status(self, text: str) -> bool:
        """Free-form status shown by `systemctl status`."""
        return self.notify(STATUS=text)

    def stopping(self) -> bool:
        """Tell systemd the service is shutting down."""
        return self.notify(STOPPING="1")

    def close(self) -> None:
        """Release the socket (optional: it is also reopened on demand)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
