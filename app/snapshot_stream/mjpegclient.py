"""A strict MJPEG-over-HTTP client, standard library only: the tests', bench's and Molecule's.

It checks the server's contract rather than tolerating deviations: a ``200`` response with
``multipart/x-mixed-replace``, parts delimited by their ``Content-Length`` (so JPEG bytes are
never scanned for boundaries), ``X-Timestamp`` per part. Chunked transfer coding is decoded
too, since an HTTP/1.1 server may use it for a body of unknown length.

- :class:`StreamParser` is sans-IO: feed it bytes in any split, it calls back once per part
  (bench/bench.py drives hundreds of them from one selector loop);
- :class:`MjpegClient` is a blocking socket client on top of it (the app's tests, and
  molecule/shared/files/camera_check.py, which runs inside the test containers with the
  system's python3: this file is copied next to it, so it imports nothing from the app).

The streamer's own reader of upstream cameras (upstream.MjpegReader) is deliberately more
lenient (parts without Content-Length, resynchronising after garbage) and stays separate.
"""

from __future__ import annotations

import base64
import contextlib
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

MAX_HEADER = 64 * 1024


class ProtocolError(Exception):
    """The server sent something that is not the MJPEG stream the contract describes."""


class NotAStream(ProtocolError):
    """The response is not a 200 multipart stream (``status`` and ``headers`` say what)."""

    def __init__(self, message: str, status: int, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


@dataclass
class Part:
    """One part of the stream."""

    headers: dict[str, str]
    jpeg: bytes  # empty when the parser does not keep the data
    size: int
    received: float  # the time the part was complete (the caller's clock)

    @property
    def timestamp(self) -> float:
        value = self.headers.get("x-timestamp")
        return float(value) if value is not None else math.nan

    @property
    def placeholder(self) -> bool:
        return self.headers.get("x-placeholder") == "1"


class StreamParser:
    """Incremental parser of one HTTP response carrying multipart/x-mixed-replace JPEGs."""

    def __init__(self, on_part: Callable[[Part], None], keep_data: bool = True) -> None:
        self.on_part = on_part
        self.keep_data = keep_data
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.chunked = False
        self.finished = False
        self._head = bytearray()
        self._in_body = False
        self._chunk_left = 0  # bytes of chunk data still due; 0 = a chunk-size line is due
        self._chunk_line = bytearray()
        self._part_head = bytearray()
        self._part_left = 0
        self._part_headers: dict[str, str] = {}
        self._part_len = 0
        self._part_data: list[bytes] = []
        self._delimiter = b"--"

    def feed(self, data: bytes | memoryview, now: float) -> None:
        view: memoryview | None = memoryview(data)
        if not self._in_body:
            view = self._feed_response_head(view)
            if view is None:
                return
        if self.chunked:
            self._feed_chunked(view, now)
        else:
            self._feed_parts(view, now)

    def _feed_response_head(self, view: memoryview) -> memoryview | None:
        start = max(0, len(self._head) - 3)
        self._head += view
        end = self._head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._head) > MAX_HEADER:
                raise ProtocolError("response header too long")
            return None
        lines = bytes(self._head[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            key, _, value = line.partition(":")
            self.headers[key.strip().lower()] = value.strip()
        if self.status != 200:
            reason = parts[2] if len(parts) > 2 else ""
            raise NotAStream(f"HTTP {self.status} {reason}".strip(), self.status, self.headers)
        ctype = self.headers.get("content-type", "")
        if not ctype.startswith("multipart/x-mixed-replace"):
            raise NotAStream(f"unexpected Content-Type {ctype!r}", self.status, self.headers)
        boundary = ctype.partition("boundary=")[2].split(";")[0].strip().strip('"')
        if not boundary:
            raise ProtocolError(f"no boundary in {ctype!r}")
        self._delimiter = b"--" + boundary.encode("latin-1")
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._in_body = True
        rest = memoryview(bytes(self._head[end + 4 :]))
        self._head.clear()
        return rest

    def _feed_chunked(self, view: memoryview, now: float) -> None:
        pos, n = 0, len(view)
        while pos < n and not self.finished:
            if self._chunk_left:
                take = min(self._chunk_left, n - pos)
                self._feed_parts(view[pos : pos + take], now)
                self._chunk_left -= take
                pos += take
                continue
            # A size line; the CRLF that ends the previous chunk's data reads as an empty line.
            window = bytes(view[pos : pos + 1024])
            nl = window.find(b"\n")
            if nl < 0:
                if pos + len(window) < n or len(self._chunk_line) + len(window) > 1024:
                    raise ProtocolError("chunk-size line too long")
                self._chunk_line += window
                return
            self._chunk_line += view[pos : pos + nl]
            pos += nl + 1
            line = bytes(self._chunk_line).split(b";", 1)[0].strip()
            self._chunk_line.clear()
            if not line:
                continue
            try:
                size = int(line, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {line[:20]!r}") from None
            if size == 0:
                self.finished = True
            self._chunk_left = size

    def _feed_parts(self, view: memoryview, now: float) -> None:
        pos, n = 0, len(view)
        while pos < n:
            if self._part_left:
                take = min(self._part_left, n - pos)
                if self.keep_data:
                    self._part_data.append(bytes(view[pos : pos + take]))
                self._part_left -= take
                pos += take
                if not self._part_left:
                    self._emit(now)
                continue
            # Part headers (the boundary line and the CRLF before it are skipped as non-headers).
            piece = view[pos : pos + 4096]
            start = max(0, len(self._part_head) - 3)
            before = len(self._part_head)
            self._part_head += piece
            end = self._part_head.find(b"\r\n\r\n", start)
            if end < 0:
                pos += len(piece)
                if len(self._part_head) > MAX_HEADER:
                    raise ProtocolError("no part header end in 64 KiB")
                continue
            pos += end + 4 - before
            block = bytes(self._part_head[:end])
            self._part_head.clear()
            self._start_part(block, now)

    def _start_part(self, block: bytes, now: float) -> None:
        lines = block.split(b"\r\n")
        while lines and not lines[0]:
            del lines[0]  # the CRLF that ends the previous part's JPEG
        if not lines or lines[0].rstrip() != self._delimiter:
            raise ProtocolError(f"expected the boundary line, got {bytes(lines[0][:80])!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, colon, value = line.partition(b":")
            if colon:
                headers[key.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        if "content-length" not in headers:
            return  # e.g. a preamble block; the next block has the part headers
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise ProtocolError(f"bad part Content-Length {headers['content-length']!r}") from None
        self._part_headers, self._part_len = headers, length
        self._part_data = []
        self._part_left = length
        if length == 0:
            self._emit(now)

    def _emit(self, now: float) -> None:
        data = b"".join(self._part_data) if self.keep_data else b""
        self._part_data = []
        self.on_part(Part(self._part_headers, data, self._part_len, now))


def basic_authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@dataclass
class MjpegClient:
    """A blocking MJPEG client, optionally reading slowly through a small receive buffer.

    The response head is read on construction: ``status`` and ``headers`` are set whatever
    the answer; read_part() raises ProtocolError unless it was a 200 stream, and EOFError
    when the server closes the stream.
    """

    url: str
    rate: float | None = None  # bytes/s
    rcvbuf: int | None = None
    timeout: float = 10.0
    request_headers: dict[str, str] = field(default_factory=dict)
    source_address: str | None = None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        extra = dict(self.request_headers)
        if parts.username is not None:
            extra.setdefault(
                "Authorization",
                basic_authorization(unquote(parts.username), unquote(parts.password or "")),
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if self.rcvbuf:
            # Before connect(), so the advertised window is small from the first segment.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.sock.settimeout(self.timeout)
        if self.source_address:
            self.sock.bind((self.source_address, 0))
        self.sock.connect((host, port))
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"GET {target} HTTP/1.1", f"Host: {hostport}"]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.read_bytes = 0
        self.t0 = time.monotonic()
        self._parts: list[Part] = []
        self._error: ProtocolError | None = None
        self.parser = StreamParser(self._parts.append)
        while self.parser.status is None and self._error is None:
            self._fill()
        self.status = self.parser.status or 0
        self.headers = self.parser.headers

    def _fill(self) -> None:
        size = 4096 if self.rate else 65536
        if self.rate:
            due = self.t0 + self.read_bytes / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        data = self.sock.recv(size)
        if not data:
            raise EOFError("connection closed")
        self.read_bytes += len(data)
        try:
            self.parser.feed(data, time.time())
        except NotAStream as exc:
            self._error = exc
        except ProtocolError as exc:
            self._error = exc
            raise

    def read_part(self) -> Part:
        while not self._parts:
            if self._error is not None:
                raise self._error
            self._fill()
        return self._parts.pop(0)

    def parts_for(self, seconds: float) -> list[Part]:
        out: list[Part] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            out.append(self.read_part())
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
