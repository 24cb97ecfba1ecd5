"""Reader for an upstream MJPEG-over-HTTP stream (multipart/x-mixed-replace).

This is the passthrough path: the upstream's JPEG bytes are returned untouched, so a chain
of streamers never re-encodes.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import math
import socket
import threading
import time
from types import TracebackType
from urllib.parse import unquote, urlsplit

from .errors import NotMjpeg, SourceError
from .jpeg import trim
from .logtext import redact_url

log = logging.getLogger(__name__)

# Give up after this many consecutive parts that are not complete JPEGs.
MAX_BAD_PARTS = 50
# Upper bound for one part (a 4096x4096 JPEG at quality 100 stays well below this).
MAX_PART_BYTES = 16 * 1024 * 1024
_READ_SIZE = 64 * 1024
_MAX_HEADER_LINE = 8 * 1024
_MAX_HEADERS = 64


class _BadPart(Exception):
    """The current part cannot be used; the reader resynchronises on the next boundary."""


class _EndOfStream(Exception):
    """The upstream closed the connection or sent the closing delimiter."""


class MjpegReader:
    """Pulls complete JPEGs out of an MJPEG HTTP stream.

    One connection per reader: after an error or close(), make a new reader to reconnect.
    read() is meant for a single thread; close() may be called from any thread and unblocks
    a read() in progress (which then raises SourceError).
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self._safe_url = redact_url(url)
        self._lock = threading.Lock()
        self._closed = False
        self._conn: http.client.HTTPConnection | None = None
        self._sock: socket.socket | None = None
        self._resp: http.client.HTTPResponse | None = None
        # Bytes received but not consumed yet. Deleting from the front of a bytearray is
        # cheap in CPython, so the buffer always starts at the read position.
        self._buf = bytearray()
        # Boundary from the Content-Type header (None: learn it from the first "--" line).
        self._boundary: bytes | None = None
        # The boundary line exactly as this upstream writes it ("--frame" or "frame").
        self._delimiter: bytes | None = None
        # True when the boundary line was consumed and part headers come next.
        self._in_part = False
        self._ended = False

    # -- connection ------------------------------------------------------------------------

    def open(self) -> None:
        """Connect and check that the response is an MJPEG stream; SourceError if not."""
        if self._closed:
            raise SourceError("reader closed")
        if self._resp is not None:
            return
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"unsupported URL: {self._safe_url}")
        try:
            port = parts.port
        except ValueError as exc:
            raise SourceError(f"bad port in {self._safe_url}") from exc
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, port, timeout=self.timeout)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        headers = {
            "Accept": "multipart/x-mixed-replace, */*;q=0.1",
            "User-Agent": "snapshot-stream",
        }
        if parts.username is not None:
            creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
        try:
            conn.connect()
            with self._lock:
                if self._closed:
                    conn.close()
                    raise SourceError("reader closed")
                self._conn, self._sock = conn, conn.sock
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
        except TimeoutError as exc:
            self.close()
            raise SourceError(
                f"no response from {self._safe_url} within {self.timeout:.1f} s"
            ) from exc
        except ConnectionRefusedError as exc:
            self.close()
            raise SourceError(f"connection refused by {self._safe_url}") from exc
        except (OSError, http.client.HTTPException) as exc:
            closed_meanwhile = self._closed
            self.close()
            if closed_meanwhile:
                raise SourceError("reader closed") from exc
            raise SourceError(f"cannot connect to {self._safe_url}: {exc}") from exc
        self._resp = resp
        try:
            self._check_response(resp)
        except SourceError:
            self.close()
            raise

    def _check_response(self, resp: http.client.HTTPResponse) -> None:
        if resp.status != 200:
            raise SourceError(f"HTTP {resp.status} from {self._safe_url}")
        raw_type = resp.getheader("Content-Type", "").strip()
        if resp.headers.get_content_type() != "multipart/x-mixed-replace" or not raw_type:
            raise NotMjpeg(f"not an MJPEG stream: {raw_type or 'no Content-Type'}")
        boundary = resp.headers.get_param("boundary")  # unquotes "..." for us
        if isinstance(boundary, str) and boundary.strip():
            self._boundary = boundary.strip().encode("latin-1", "replace")
        else:
            log.debug(
                "%s: no boundary in %r, learning it from the stream", self._safe_url, raw_type
            )

    def close(self) -> None:
        """Close the connection; idempotent, callable from any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sock, resp, conn = self._sock, self._resp, self._conn
        if sock is not None:
            # shutdown() is what wakes a thread blocked in recv(); close() alone does not.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for closable in (resp, conn, sock):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()

    def __enter__(self) -> MjpegReader:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- frames ----------------------------------------------------------------------------

    def read(self) -> tuple[bytes, float]:
        """Return the next complete JPEG (as sent) and its X-Timestamp (else time.time())."""
        if self._closed:
            raise SourceError("reader closed")
        if self._resp is None:
            raise SourceError("reader is not open")
        bad = 0
        try:
            while True:
                try:
                    data, stamp = self._read_part()
                except _BadPart as exc:
                    reason = str(exc)
                else:
                    jpeg = trim(data)
                    if jpeg is not None:
                        return jpeg, stamp
                    reason = f"not a complete JPEG ({len(data)} bytes)"
                bad += 1
                log.debug("%s: skipping part: %s", self._safe_url, reason)
                if bad > MAX_BAD_PARTS:
                    raise SourceError(
                        f"garbage from {self._safe_url}: {bad} consecutive bad parts ({reason})"
                    )
        except _EndOfStream:
            raise SourceError(
                "reader closed" if self._closed else "upstream closed the stream"
            ) from None
        except TimeoutError:
            raise SourceError(f"no data for {self.timeout:.1f} s") from None
        except http.client.IncompleteRead:
            raise SourceError(
                "reader closed" if self._closed else "upstream closed the stream"
            ) from None
        except (OSError, ValueError, AttributeError, http.client.HTTPException) as exc:
            # ValueError/AttributeError come out of http.client when close() ran concurrently.
            if self._closed:
                raise SourceError("reader closed") from exc
            if isinstance(exc, AttributeError):
                raise
            raise SourceError(f"read error from {self._safe_url}: {exc}") from exc

    def _read_part(self) -> tuple[bytes, float]:
        if self._ended:
            raise _EndOfStream
        if not self._in_part:
            self._skip_to_boundary()
        self._in_part = False
        length, stamp = self._read_part_headers()
        if length is not None:
            return self._read_exact(length), stamp
        return self._read_until_boundary(), stamp

    def _fill(self) -> None:
        assert self._resp is not None
        data = self._resp.read1(_READ_SIZE)
        if not data:
            raise _EndOfStream
        self._buf += data

    def _take(self, size: int, consume: int | None = None) -> bytes:
        """Return the first ``size`` buffered bytes and drop ``consume`` (default size)."""
        with memoryview(self._buf) as view:
            out = view[:size].tobytes()
        del self._buf[: size if consume is None else consume]
        return out

    def _readline(self, limit: int) -> tuple[bytes, bool]:
        """Next line including its newline, or a chunk of up to ``limit`` bytes (False)."""
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                return self._take(end + 1), True
            if len(self._buf) >= limit:
                return self._take(limit), False
            start = len(self._buf)
            self._fill()

    def _match_boundary(self, line: bytes) -> bool:
        """True if ``line`` is a boundary line; raises _EndOfStream on the closing one."""
        token = line.rstrip(b"\r\n \t")
        if not token:
            return False
        closing = token.endswith(b"--") and len(token) > 2
        if self._delimiter is None:
            if self._boundary is not None:
                core = self._boundary
                candidates = (b"--" + core, core)
            elif token.startswith(b"--"):
                candidates = (token[:-2] if closing else token,)
            else:
                return False
            for candidate in candidates:
                if token == candidate or (closing and token == candidate + b"--"):
                    self._delimiter = candidate
                    break
            else:
                return False
        elif token != self._delimiter and token != self._delimiter + b"--":
            return False
        if token == self._delimiter + b"--":
            raise _EndOfStream
        return True

    def _skip_to_boundary(self) -> None:
        skipped = 0
        while True:
            line, _complete = self._readline(_READ_SIZE)
            if self._match_boundary(line):
                if skipped:
                    log.debug("%s: skipped %d bytes before a boundary", self._safe_url, skipped)
                return
            if line.strip():
                skipped += len(line)
                if skipped > MAX_PART_BYTES:
                    raise SourceError(
                        f"garbage from {self._safe_url}: no boundary in {skipped} bytes"
                    )

    def _read_part_headers(self) -> tuple[int | None, float]:
        length: int | None = None
        stamp: float | None = None
        for _ in range(_MAX_HEADERS):
            line, complete = self._readline(_MAX_HEADER_LINE)
            if not complete:
                raise _BadPart("part header line too long")
            if not line.strip():
                return length, time.time() if stamp is None else stamp
            name, sep, value = line.partition(b":")
            if not sep:
                raise _BadPart(f"bad part header {line[:40]!r}")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _BadPart(f"bad Content-Length {value.strip()[:20]!r}") from None
                if not 0 <= length <= MAX_PART_BYTES:
                    raise _BadPart(f"Content-Length {length} out of range")
            elif name == b"x-timestamp":
                try:
                    parsed = float(value)
                except ValueError:
                    parsed = math.nan
                if math.isfinite(parsed) and parsed > 0:
                    stamp = parsed
        raise _BadPart("too many part headers")

    def _read_exact(self, size: int) -> bytes:
        have = len(self._buf)
        if have >= size:
            return self._take(size)
        assert self._resp is not None
        # Fast path: the rest of the body goes straight from http.client to the caller.
        prefix = self._take(have)
        rest = self._resp.read(size - have)
        if len(rest) < size - have:
            raise _EndOfStream
        return prefix + rest if prefix else rest

    def _read_until_boundary(self) -> bytes:
        if self._delimiter is None:  # only reachable if headers came before any boundary
            raise _BadPart("no boundary seen yet")
        delimiter = self._delimiter
        start = 0
        while True:
            found = self._buf.find(delimiter, start)
            if found >= 0:
                break
            if len(self._buf) > MAX_PART_BYTES:
                raise SourceError(
                    f"garbage from {self._safe_url}: no boundary in {len(self._buf)} bytes"
                )
            start = max(0, len(self._buf) - len(delimiter) + 1)
            self._fill()
        end = found
        # The CRLF before the boundary belongs to the delimiter, not to the JPEG.
        while end > 0 and self._buf[end - 1] in b"\r\n":
            end -= 1
        body = self._take(end, found)
        try:
            line, _complete = self._readline(_MAX_HEADER_LINE)
            self._in_part = self._match_boundary(line)
        except _EndOfStream:
            # The part is complete; the closing delimiter (or EOF) ends the *next* read.
            self._ended = True
        return body
