"""The HTTP server: one asyncio event loop owns every socket; Flask runs in a small pool.

Why this shape (docs/streamer.md has the long version): a connection costs a few hundred
bytes of state, not a thread, until its request is complete and allowed. The loop parses
requests with h11, bounds them (head size and deadline, body size), applies the connection
caps, the allow-list and Basic auth (the password check runs in one verifier thread, fairly
between addresses, behind a per-address throttle), and only then hands a complete, allowed
request to Flask in one of WORKERS threads. A /stream response comes back as a
:class:`~.hub.StreamBody`: the loop takes the connection over and writes every new frame's
pre-built part to each stream socket that has room (non-blocking), skipping busy ones, so a
viewer costs one socket write per frame.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import io
import logging
import math
import queue
import resource
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import h11

from .auth import AccessPolicy, AuthResult, Verifier, auth_decision
from .config import Config
from .guard import ConnectionCaps, RefusalLog, Throttle, address_key
from .hub import STREAM_PREAMBLE, Frame, FrameHub, StreamBody
from .logtext import log_safe

log = logging.getLogger("snapshot_stream.web")

# A request head (request line and headers) larger than this is refused with 431.
MAX_HEAD = 16 * 1024
# A request body larger than this is refused with 413 before any of it is read.
MAX_BODY = 64 * 1024
# From accept (or the end of the previous response) to a complete request, head and body.
REQUEST_TIMEOUT = 10.0
# A stream client that has not taken one whole frame for this long is disconnected.
SOCKET_TIMEOUT = 10.0
# Bytes a /stream client may send after its request before it is disconnected (they are
# ignored; well-behaved clients send nothing).
STREAM_INPUT_LIMIT = 64 * 1024
# Threads running the Flask app. Requests reach them complete and allowed, and the routes
# are quick (the slowest waits up to a few seconds for a fresh frame after an idle release).
WORKERS = 6
# Requests of one address in the app at once: the other workers stay free for everyone else.
WORKERS_PER_ADDRESS = 3
# Small kernel send buffer (set on the listening socket, inherited by accepted sockets): on a
# slow link frames must wait in our hub (where they get replaced by newer ones), not in a
# kernel queue where they age. The kernel doubles the value.
SEND_BUFFER = 16 * 1024
# Unsent bytes above this make the socket "not writable", keeping queued data small too.
NOTSENT_LOWAT = 16 * 1024
# Listen backlog: an NVR or a camera-wall page opens many streams at once (at 128, 256 viewers
# connecting together overflowed it and waited 1 s for a SYN retransmit).
LISTEN_BACKLOG = 512
# A throttled login attempt is answered (429) after this delay.
THROTTLE_DELAY = 1.0
# How often the loop checks for stalled stream clients and logs refusal summaries.
HOUSEKEEPING = 1.0


class _Closed(Exception):
    """The connection is gone, or must be closed now."""


@dataclass(frozen=True)
class _AppResponse:
    status: str
    headers: list[tuple[str, str]]
    body: bytes | StreamBody


class WorkerPool:
    """Daemon threads running callables; results come back as concurrent futures.

    Daemon threads, unlike ThreadPoolExecutor's, never hold up the exit after SIGTERM.
    """

    def __init__(self, size: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._jobs = queue.SimpleQueue()
        for i in range(size):
            threading.Thread(target=self._run, name=f"http-worker-{i}", daemon=True).start()

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((fn, future))
        return future

    def _run(self) -> None:
        while True:
            fn, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)


def run_wsgi(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> _AppResponse:
    """Call the WSGI app and collect its response (a StreamBody is passed on, not iterated)."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return _no_write

    result = app(environ, start_response)
    if isinstance(result, StreamBody):
        return _AppResponse(started[0], started[1], result)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return _AppResponse(started[0], started[1], body)


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the WSGI write() callable is not supported")


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    408: "Request Timeout",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    503: "Service Unavailable",
}


def _http_date() -> str:
    return email.utils.formatdate(usegmt=True)


def _canned(status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete response that closes the connection, written without h11."""
    body = (text + "\n").encode("utf-8")
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        f"Date: {_http_date()}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Conn(asyncio.Protocol):
    """One client connection: requests in turn, then possibly a stream."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.addr = ""
        self.port = 0
        self.key = ""
        self.admitted = False
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.more: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.received = 0  # bytes of the current request so far (0: an idle keep-alive)
        self.request_line = ""
        # Streaming state (the loop's fan-out reads these).
        self.stream: StreamBody | None = None
        self.last_seq = 0
        self.write_started = 0.0
        self.ignored = 0

    # -- asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.addr, self.port = str(peer[0]), int(peer[1])
        self.key = address_key(self.addr)
        server = self.server
        cap = server.caps.admit(self.key)
        if cap is not None:
            limit = server.caps.total if cap == "total" else server.caps.per_address
            what = "in total" if cap == "total" else f"from {self.addr}"
            server.refusals.connection(
                cap, f"{self.addr}: connection refused, {limit} connections open {what}"
            )
            transport.write(
                _canned(503, "too many connections; try again later", [("Retry-After", "5")])
            )
            transport.close()
            return
        self.admitted = True
        server.conns.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm(REQUEST_TIMEOUT)
        self.task = server.loop.create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        if self.stream is not None:
            self.ignored += len(data)
            if self.ignored > STREAM_INPUT_LIMIT and self.transport is not None:
                self.transport.abort()
            return
        self.received += len(data)
        self.conn.receive_data(data)
        if self.transport is not None:
            # One read at a time: h11 buffers what we got, nothing more piles up meanwhile.
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        if self.stream is not None:
            return False  # the viewer left
        with contextlib.suppress(h11.RemoteProtocolError):
            self.conn.receive_data(b"")
        self._wake()
        return True  # keep our side open: a half-closed client may still get its answer

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.more is not None and not self.more.done():
            self.more.cancel()
        if self.stream is not None:
            server.streams.discard(self)
            self.stream.close()
        if self.admitted:
            self.admitted = False
            server.conns.discard(self)
            server.caps.release(self.key)

    # -- helpers ----------------------------------------------------------------------------
    def _wake(self) -> None:
        if self.more is not None and not self.more.done():
            self.more.set_result(None)

    def _arm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.server.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.received:
            # Part of a request, never finished: a slow or hostile client.
            self.server.refusals.request(
                408,
                "request timeout",
                f"{self.addr}: request not complete after {REQUEST_TIMEOUT:g} s, closed",
            )
            self.transport.write(_canned(408, "request timeout"))
        self.transport.close()

    async def _event(self) -> Any:
        """The next h11 event, reading more data as needed."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.transport is None or self.transport.is_closing():
                raise _Closed
            self.more = self.server.loop.create_future()
            self.transport.resume_reading()
            await self.more

    def _send(self, *events: Any) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(self.conn.send(e) or b"" for e in events))

    def _respond(
        self, status: int, text: str, headers: Iterable[tuple[str, str]] = (), head: bool = False
    ) -> None:
        """A short text response (refusals), through h11 so keep-alive stays correct."""
        body = (text + "\n").encode("utf-8")
        hdrs = [
            *headers,
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Date", _http_date()),
            ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0"),
        ]
        if self.conn.our_state is not h11.SEND_RESPONSE:
            assert self.transport is not None
            self.transport.write(_canned(status, text, headers))
            return
        reason = _REASONS.get(status, "").encode("latin-1")
        events: list[Any] = [h11.Response(status_code=status, headers=hdrs, reason=reason)]
        if not head:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        self._send(*events)

    def _refuse(
        self,
        status: int,
        cause: str,
        reason: str,
        request_line: str,
        headers: Iterable[tuple[str, str]] = (),
        text: str = "",
    ) -> None:
        self.server.refusals.request(
            status, cause, f"{self.addr} {request_line} refused ({status}): {reason}"
        )
        self._respond(status, text or _REASONS.get(status, "refused"), headers)

    # -- the request cycle ------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while True:
                try:
                    event = await self._event()
                except h11.RemoteProtocolError as exc:
                    self._protocol_error(exc)
                    break
                if not isinstance(event, h11.Request):
                    break  # ConnectionClosed
                keep = await self._handle(event)
                if self.stream is not None or not keep:
                    break
                if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                    break
                self.conn.start_next_cycle()
                self.received = len(self.conn.trailing_data[0])
                self._arm(REQUEST_TIMEOUT)
        except (_Closed, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("HTTP connection from %s failed", self.addr)
        finally:
            if self.stream is None and self.transport is not None:
                self.transport.close()

    def _protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        status = exc.error_status_hint or 400
        if status == 431:
            cause, text = "request head too large", f"request head over {MAX_HEAD} bytes"
        else:
            cause, text = "malformed request", "bad request"
        self._refuse(status, cause, f"{text} ({exc})", "-", text=text)

    async def _handle(self, request: h11.Request) -> bool:
        """Serve one request; False when the connection must close afterwards."""
        server = self.server
        self._disarm()
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("latin-1")
        line = f"{log_safe(method, 16)} {log_safe(target, 120)}"
        # h11 bounds a head that is still arriving; one that arrived whole is measured here.
        if self.received - len(self.conn.trailing_data[0]) > MAX_HEAD:
            text = f"request head over {MAX_HEAD} bytes"
            self._refuse(431, "request head too large", text, line, text=text)
            return False
        path = _path(request.target)
        headers = {k: v for k, v in request.headers}
        chunked = b"transfer-encoding" in headers
        length = headers.get(b"content-length")
        has_body = chunked or (length is not None and int(length) > 0)
        if chunked and length is not None:
            # Two framings a proxy in front may read differently: the smuggler's tool.
            self._refuse(
                400, "ambiguous framing", "both Transfer-Encoding and Content-Length", line
            )
            return False
        if length is not None and int(length) > MAX_BODY:
            self._refuse(413, "body too large", f"body of {int(length)} bytes", line)
            return False
        policy = server.policy
        decision = policy.address_decision(self.addr)
        if decision.status is not None:
            self._refuse(403, decision.cause, decision.reason, line, text="forbidden")
            return await self._refused_keep_alive(has_body)
        remote_user = None
        if policy.needs_auth(path):
            authorization = headers.get(b"authorization")
            result = await self._authenticate(
                None if authorization is None else authorization.decode("latin-1"), line
            )
            if result is None:
                return await self._refused_keep_alive(has_body)  # throttled (answered)
            refusal = auth_decision(result)
            if refusal.status is not None:
                self._refuse(
                    401,
                    refusal.cause,
                    refusal.reason,
                    line,
                    refusal.headers,
                    "authentication required",
                )
                return await self._refused_keep_alive(has_body)
            remote_user = policy.auth.user if policy.auth is not None else None
        body = bytearray()
        if has_body:
            self._arm(REQUEST_TIMEOUT)
            while True:
                event = await self._event()
                if isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_BODY:
                        self._refuse(413, "body too large", f"body over {MAX_BODY} bytes", line)
                        return False
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    raise _Closed
            self._disarm()
        else:
            event = await self._event()
            if not isinstance(event, h11.EndOfMessage):
                raise _Closed
        environ = self._environ(request, method, bytes(body), chunked, remote_user)
        async with server.app_slot(self.key):
            future = server.pool.submit(lambda: run_wsgi(server.app, environ))
            response = await asyncio.wrap_future(future)
        if self.transport is None or self.transport.is_closing():
            if isinstance(response.body, StreamBody):
                response.body.close()
            raise _Closed
        if isinstance(response.body, StreamBody):
            self._start_stream(response)
            return False
        code, _, phrase = response.status.partition(" ")
        hdrs = [*response.headers, ("Date", _http_date())]
        events: list[Any] = [
            h11.Response(status_code=int(code), headers=hdrs, reason=phrase.encode("latin-1"))
        ]
        if method != "HEAD" and response.body:
            events.append(h11.Data(data=response.body))
        events.append(h11.EndOfMessage())
        self._send(*events)
        return True

    async def _refused_keep_alive(self, has_body: bool) -> bool:
        """After a refusal: keep the connection for the next request unless a body is unread.

        A browser resends with credentials on the same connection after a 401; an unread body
        (never read: refused requests cost nothing) means the connection must go.
        """
        if has_body:
            return False
        event = await self._event()  # the request's end, already received
        return isinstance(event, h11.EndOfMessage)

    async def _authenticate(self, authorization: str | None, line: str) -> AuthResult | None:
        """The auth outcome, verifying the password in the verifier thread if it must.

        None when the address is throttled (a 429 was sent).
        """
        server = self.server
        auth = server.policy.auth
        assert auth is not None
        found = auth.lookup(authorization)
        if isinstance(found, AuthResult):
            return found
        wait = server.throttle.retry_after(self.key)
        if wait <= 0:
            future: asyncio.Future[AuthResult] = server.loop.create_future()
            if server.verifier is not None and server.verifier.submit(
                self.key,
                found,
                lambda result: server.deliver(future, result),
                server.throttle.suspect(self.key),
            ):
                result = await future
                if not result.ok:
                    server.throttle.failed(self.key)
                return result
            wait = 1.0  # this address already has enough checks waiting
        # Answer a throttled guesser late: each of its connections then costs it a second,
        # which caps the rate of refusals the loop must write (and its share of the loop).
        await asyncio.sleep(THROTTLE_DELAY)
        self._refuse(
            429,
            "login throttled",
            f"too many failed logins, retry in {math.ceil(wait)} s",
            line,
            [("Retry-After", str(math.ceil(wait)))],
            "too many failed logins; try again later",
        )
        return None

    def _environ(
        self,
        request: h11.Request,
        method: str,
        body: bytes,
        chunked: bool,
        remote_user: str | None,
    ) -> dict[str, Any]:
        target = request.target
        if target.startswith((b"http://", b"https://")):
            # Absolute form: the path starts after the authority.
            rest = target.split(b"//", 1)[1]
            slash = rest.find(b"/")
            target = rest[slash:] if slash >= 0 else b"/"
        raw_path, _, query = target.partition(b"?")
        host, port = self.server.local_address(self.transport)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
            "REMOTE_ADDR": self.addr,
            "REMOTE_PORT": str(self.port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if remote_user is not None:
            environ["REMOTE_USER"] = remote_user
        for raw_name, raw_value in request.headers:
            name = raw_name.decode("latin-1").upper()
            if "_" in name:
                continue  # X_Foo would pose as X-Foo in the environ
            key = name.replace("-", "_")
            value = raw_value.decode("latin-1")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
                continue
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        if chunked:
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["CONTENT_LENGTH"] = str(len(body))
        return environ

    def _start_stream(self, response: _AppResponse) -> None:
        """Write the stream's head and its first frame; the fan-out sends the rest."""
        assert self.transport is not None and isinstance(response.body, StreamBody)
        body = response.body
        lines = [f"HTTP/1.1 {response.status}"]
        lines += [f"{k}: {v}" for k, v in response.headers if k.lower() != "connection"]
        # No chunked coding: the stream ends when the connection does, as with mjpg-streamer
        # and IP cameras (what simple MJPEG parsers in NVRs expect).
        lines += ["Connection: close", f"Date: {_http_date()}"]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + STREAM_PREAMBLE
        first = body.first
        self.stream = body
        if first is not None:
            self.last_seq = first.seq
            head += first.part
            self.server.hub.count_served(1, 0)
        self.write_started = time.monotonic()
        self.transport.write(head)
        self.server.streams.add(self)
        self.transport.resume_reading()  # to notice the viewer leaving


def _path(target: bytes) -> str:
    raw = target.split(b"?", 1)[0]
    if raw.startswith((b"http://", b"https://")):
        rest = raw.split(b"//", 1)[1]
        slash = rest.find(b"/")
        raw = rest[slash:] if slash >= 0 else b"/"
    return unquote_to_bytes(raw).decode("latin-1")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, tuned for streaming (raises OSError when it cannot be bound)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            # Dual stack: IPv4 clients arrive as ::ffff:a.b.c.d (the allow-list maps them).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError as exc:
            log.debug("SO_SNDBUF: %s", exc)
        lowat = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, lowat, NOTSENT_LOWAT)
        except OSError as exc:
            log.debug("TCP_NOTSENT_LOWAT: %s", exc)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _raise_fd_limit(wanted: int) -> None:
    """Let the process hold ``wanted`` file descriptors if the hard limit allows."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (OSError, ValueError) as exc:
        log.debug("RLIMIT_NOFILE: %s", exc)


class HttpServer:
    """Every --host address, one event loop thread, the app's worker pool and the fan-out."""

    def __init__(
        self,
        config: Config,
        app: Callable[..., Iterable[bytes]],
        hub: FrameHub,
        policy: AccessPolicy,
        refusals: RefusalLog,
        port: int | None = None,
    ) -> None:
        self.config = config
        self.app = app
        self.hub = hub
        self.policy = policy
        self.refusals = refusals
        self.port = config.port if port is None else port
        self.caps = ConnectionCaps(config.max_per_address, config.max_connections)
        self.throttle = Throttle()
        self.verifier = Verifier(policy.auth) if policy.auth is not None else None
        self.pool = WorkerPool(WORKERS)
        self.loop = asyncio.new_event_loop()
        self.conns: set[_Conn] = set()
        self.streams: set[_Conn] = set()
        # address -> [semaphore, requests holding or waiting for it]
        self._slots: dict[str, list[Any]] = {}
        self._sockets: list[socket.socket] = []
        self._servers: list[asyncio.Server] = []
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        hub.subscribe(self._on_frame)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind and listen (raises OSError when an address cannot be bound), then serve."""
        _raise_fd_limit(self.config.max_connections + 64)
        try:
            for host in self.config.hosts:
                self._sockets.append(_listen(host, self.port))
        except BaseException:
            for sock in self._sockets:
                sock.close()
            raise
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        if self._failed is not None:
            raise self._failed

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            for sock in self._sockets:
                server = self.loop.run_until_complete(
                    # create_server() listens again, with its own backlog (100) unless told.
                    self.loop.create_server(lambda: _Conn(self), sock=sock, backlog=LISTEN_BACKLOG)
                )
                self._servers.append(server)
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            return
        self.loop.call_later(HOUSEKEEPING, self._housekeeping)
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self.loop.close()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [sock.getsockname()[:2] for sock in self._sockets]

    def local_address(self, transport: asyncio.BaseTransport | None) -> tuple[str, int]:
        name = transport.get_extra_info("sockname") if transport is not None else None
        if isinstance(name, tuple) and len(name) >= 2:
            return str(name[0]), int(name[1])
        return "localhost", self.port

    def stop(self, timeout: float = 1.0) -> None:
        """Close every connection and listener; wait at most ``timeout`` for the loop."""
        if self.verifier is not None:
            self.verifier.stop()
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._shutdown)
        thread.join(timeout)

    def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self.conns):
            if conn.transport is not None:
                # abort(): a stuck client's unsent bytes must not hold up the exit.
                conn.transport.abort()
        self.loop.call_later(0.05, self.loop.stop)

    @contextlib.asynccontextmanager
    async def app_slot(self, key: str) -> AsyncIterator[None]:
        """Wait for one of the address's WORKERS_PER_ADDRESS places in the app."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = [asyncio.Semaphore(WORKERS_PER_ADDRESS), 0]
        slot[1] += 1
        try:
            async with slot[0]:
                yield
        finally:
            slot[1] -= 1
            if not slot[1]:
                del self._slots[key]

    # -- called from other threads --------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        if self.streams:
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                self.loop.call_soon_threadsafe(self._fan_out, frame)

    def deliver(self, future: asyncio.Future[Any], value: Any) -> None:
        """Set ``future``'s result from another thread (if it still waits)."""

        def _set() -> None:
            if not future.done():
                future.set_result(value)

        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_set)

    # -- the fan-out -------------------------------------------------------------------------
    def _fan_out(self, frame: Frame) -> None:
        """Write the frame to every stream client whose socket has room; skip the rest."""
        part = frame.part
        seq = frame.seq
        now = time.monotonic()
        served = skipped = 0
        for conn in self.streams:
            transport = conn.transport
            if transport is None or conn.last_seq >= seq or transport.get_write_buffer_size():
                continue
            skipped += seq - conn.last_seq - 1
            conn.last_seq = seq
            conn.write_started = now
            transport.write(part)
            served += 1
        if served:
            self.hub.count_served(served, skipped)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        for conn in list(self.streams):
            transport = conn.transport
            if (
                transport is not None
                and transport.get_write_buffer_size()
                and now - conn.write_started > SOCKET_TIMEOUT
            ):
                log.info(
                    "%s: stream client took no frame for %g s, disconnected",
                    conn.addr,
                    SOCKET_TIMEOUT,
                )
                transport.abort()
        self.refusals.flush()
        self.loop.call_later(HOUSEKEEPING, self._housekeeping)
