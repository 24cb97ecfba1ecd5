"""Run the streamer: cheroot HTTP server(s), the capture thread, signals and shutdown."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any

from cheroot import server as cheroot_server
from cheroot import wsgi
from flask import Flask

from .auth import AccessPolicy, BasicAuth, parse_networks
from .capture import Capture
from .config import Config
from .hub import FrameHub
from .sdnotify import SystemdNotifier
from .sources import SourceFactory, make_factory
from .web import create_app

log = logging.getLogger("snapshot_stream")

# Threads beyond --max-clients so snapshots, /healthz and refusals always find a free thread
# (cheroot's pool does not grow by itself).
SPARE_THREADS = 8
# A client that stops reading entirely is dropped after this long (cheroot's socket timeout).
SOCKET_TIMEOUT = 10.0
# Small kernel send buffer (set on the listening socket, inherited by accepted sockets): on a
# slow link frames must wait in our hub (where they get replaced by newer ones), not in a
# kernel queue where they age. The kernel doubles the value.
SEND_BUFFER = 16 * 1024
# Unsent bytes above this make the socket "not writable", keeping queued data small too.
NOTSENT_LOWAT = 16 * 1024
# Listen backlog. cheroot's default of 5 overflows when an NVR or a camera-wall page opens many
# streams at once, and the kernel then retries the SYN only after 1 s.
LISTEN_BACKLOG = 128


def configure_logging(level: str = "info", environ: Mapping[str, str] | None = None) -> None:
    """Log to stderr; without timestamps under systemd (journald adds its own)."""
    env = os.environ if environ is None else environ
    if env.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


class _Request(cheroot_server.HTTPRequest):
    """Send multipart streams without chunked coding, ended by closing the connection.

    That is what mjpg-streamer and IP cameras do, and what simple MJPEG parsers (NVRs) expect.
    """

    def send_headers(self) -> None:
        for key, value in self.outheaders:
            if key.lower() == b"content-type" and value.startswith(b"multipart/"):
                self.close_connection = True
                self.response_protocol = "HTTP/1.0"  # disables chunked transfer coding
                self.outheaders.append((b"Connection", b"close"))
                break
        super().send_headers()


class _Connection(cheroot_server.HTTPConnection):
    RequestHandlerClass = _Request


def _tune_listener(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    except OSError as exc:
        log.debug("SO_SNDBUF: %s", exc)
    lowat = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, lowat, NOTSENT_LOWAT)
    except OSError as exc:
        log.debug("TCP_NOTSENT_LOWAT: %s", exc)


class HttpServers:
    """One cheroot server per --host address, all serving the same WSGI app."""

    def __init__(self, config: Config, app: Flask, port: int | None = None) -> None:
        threads = config.max_clients + SPARE_THREADS
        self.servers: list[wsgi.Server] = []
        for host in config.hosts:
            srv = wsgi.Server(
                (host, config.port if port is None else port),
                app,
                numthreads=threads,
                max=threads,
                timeout=SOCKET_TIMEOUT,
                shutdown_timeout=1,
                request_queue_size=LISTEN_BACKLOG,
                server_name=config.name,
            )
            srv.ConnectionClass = _Connection
            self.servers.append(srv)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Bind and listen (raises OSError when an address cannot be bound), then serve."""
        for srv in self.servers:
            srv.prepare()
            if srv.socket is not None:
                _tune_listener(srv.socket)
        for srv in self.servers:
            t = threading.Thread(target=self._serve, args=(srv,), name="http", daemon=True)
            t.start()
            self._threads.append(t)

    @staticmethod
    def _serve(srv: wsgi.Server) -> None:
        try:
            srv.serve()
        except Exception:
            log.exception("HTTP server failed")

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [tuple(srv.bind_addr)[:2] for srv in self.servers]  # type: ignore[misc]

    def stop(self, timeout: float = 1.0) -> None:
        stoppers = [
            threading.Thread(target=srv.stop, name="http-stop", daemon=True) for srv in self.servers
        ]
        for t in stoppers:
            t.start()
        deadline = time.monotonic() + timeout
        for t in stoppers:
            t.join(max(0.0, deadline - time.monotonic()))


class Streamer:
    """Everything one process runs: hub, capture thread, web app, HTTP servers."""

    def __init__(
        self,
        config: Config,
        factory: SourceFactory | None = None,
        notifier: SystemdNotifier | None = None,
        port: int | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier
        self.hub = FrameHub()
        self.capture = Capture(config, self.hub, factory or make_factory(config), notifier)
        self.app = create_app(config, self.hub, self.capture, build_policy(config))
        self.http = HttpServers(config, self.app, port)

    def start(self) -> None:
        self.capture.start()
        try:
            self.http.start()
        except BaseException:
            self.capture.stop()
            raise

    @property
    def port(self) -> int:
        return self.http.addresses[0][1]

    def stop(self) -> None:
        """End streams, release the source and stop the servers (about a second at most)."""
        self.hub.close()
        self.capture.stop(timeout=0.8)
        self.http.stop(timeout=0.8)


def build_policy(config: Config) -> AccessPolicy:
    allow = parse_networks(config.allow) if config.allow else []
    auth = BasicAuth(config.auth_user, config.auth_hash or "") if config.auth_user else None
    return AccessPolicy(allow, auth)


def run(config: Config, environ: Mapping[str, str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the exit status."""
    env = os.environ if environ is None else environ
    notifier = SystemdNotifier(env)
    streamer = Streamer(config, notifier=notifier)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        streamer.start()
    except OSError as exc:
        log.error("cannot listen on %s port %d: %s", config.host, config.port, exc.strerror or exc)
        return 1
    for host, port in streamer.http.addresses:
        log.info("listening on http://%s:%d/ (%s)", _fmt_host(host), port, config.name)
    ready = False
    while not stop.wait(0.2):
        if not ready and streamer.hub.first_frame.is_set():
            ready = True
            notifier.ready(f"{streamer.capture.state}: {streamer.capture.source_description}")
    notifier.stopping()
    streamer.stop()
    log.info("stopped")
    _exit_if_stuck()
    return 0


def _fmt_host(host: Any) -> str:
    return f"[{host}]" if ":" in str(host) else str(host)


def _exit_if_stuck() -> None:
    """A worker thread still blocked on a dead client must not delay the exit."""
    stuck = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if stuck:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
