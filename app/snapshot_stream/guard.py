"""The server's front door: connection caps, auth throttling, refusal counts and logs.

Everything here is bookkeeping that the event loop consults before a request costs anything:
how many connections an address holds, whether an address that keeps failing to log in must
wait, and how refusals are counted (for /metrics) and logged (one line per cause per
LOG_WINDOW, with a count, however hard a client hammers).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("snapshot_stream.web")

# At most one refusal line per cause in this many seconds; the rest are counted and summarised.
LOG_WINDOW = 10.0


@dataclass
class _Cause:
    since: float
    count: int = 0
    last: str = ""


class RefusalLog:
    """Counts refusals and logs them without letting a client flood the log.

    The first refusal of a cause is logged at once; further ones within LOG_WINDOW are
    counted, and :meth:`flush` (called every few seconds) logs one summary line per cause.
    Thread-safe: the event loop and the app's worker threads both report here.
    """

    def __init__(
        self, window: float = LOG_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._causes: dict[str, _Cause] = {}
        self.requests_refused: Counter[int] = Counter()  # by HTTP status
        self.connections_refused: Counter[str] = Counter()  # by cap: per_address, total

    def request(self, status: int, cause: str, message: str) -> None:
        """One refused request; ``cause`` is a fixed short text (the grouping key)."""
        with self._lock:
            self.requests_refused[status] += 1
        self._log(f"{status} {cause}", message)

    def connection(self, cap: str, message: str) -> None:
        """A connection closed at once because a connection cap was reached."""
        with self._lock:
            self.connections_refused[cap] += 1
        self._log(f"connection cap {cap}", message)

    def _log(self, key: str, message: str) -> None:
        now = self._clock()
        summary = None
        with self._lock:
            entry = self._causes.get(key)
            if entry is not None and now - entry.since < self.window:
                entry.count += 1
                entry.last = message
                return
            if entry is not None and entry.count:
                summary = self._summary(entry)
            self._causes[key] = _Cause(now)
        if summary:
            log.warning("%s", summary)
        log.warning("%s", message)

    def _summary(self, entry: _Cause) -> str:
        more = "1 more refusal" if entry.count == 1 else f"{entry.count} more refusals"
        return f"{more} like this in the last {self.window:g} s, the last: {entry.last}"

    def flush(self) -> None:
        """Log the summaries of causes whose window is over."""
        now = self._clock()
        lines = []
        with self._lock:
            for key, entry in list(self._causes.items()):
                if now - entry.since >= self.window:
                    if entry.count:
                        lines.append(self._summary(entry))
                    del self._causes[key]
        for line in lines:
            log.warning("%s", line)


def address_key(addr: str) -> str:
    """The unit that caps and throttles count: the IPv4 address, or the IPv6 /64.

    One host usually owns a whole IPv6 /64, so counting single IPv6 addresses would let it
    open any number of connections. IPv4-mapped IPv6 addresses count as their IPv4 address.
    """
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if not ip.is_loopback:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class ConnectionCaps:
    """Concurrent connections per address and in total (used by the event loop thread only)."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self._by_address: Counter[str] = Counter()
        self.open = 0

    def admit(self, key: str) -> str | None:
        """Count a new connection; the cap that refuses it ('total', 'per_address') or None."""
        if self.open >= self.total:
            return "total"
        if self._by_address[key] >= self.per_address:
            return "per_address"
        self._by_address[key] += 1
        self.open += 1
        return None

    def release(self, key: str) -> None:
        self.open -= 1
        self._by_address[key] -= 1
        if self._by_address[key] <= 0:
            del self._by_address[key]


class Throttle:
    """Failed password verifications per address: a burst, then one per REFILL seconds.

    Consulted before a password is verified, so an address that keeps guessing is answered
    429 with Retry-After instead of costing another pbkdf2 run. Only verifications count:
    a wrong password that is already known to be wrong is answered from the cache for free.
    Used by the event loop thread only.
    """

    BURST = 5
    REFILL = 6.0
    MAX_ADDRESSES = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key -> (tokens, time of that count); least recently failed first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (float(self.BURST), now))
        return min(float(self.BURST), tokens + (now - then) / self.REFILL)

    def retry_after(self, key: str) -> float:
        """0 when ``key`` may have a password verified now, else the seconds to wait."""
        now = self._clock()
        tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) * self.REFILL

    def suspect(self, key: str) -> bool:
        """True when ``key`` failed a login lately (its checks wait behind everyone else's)."""
        return self._tokens(key, self._clock()) < self.BURST - 1e-9

    def failed(self, key: str) -> None:
        now = self._clock()
        tokens = self._tokens(key, now) - 1.0
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.MAX_ADDRESSES:
            self._buckets.popitem(last=False)
