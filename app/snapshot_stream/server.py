"""Run the streamer: the HTTP server, the capture thread, signals and shutdown."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from types import FrameType
from typing import Any

from .auth import AccessPolicy, BasicAuth, parse_networks
from .camera import Camera
from .capture import Capture
from .config import Config
from .guard import RefusalLog
from .httpd import HttpServer
from .hub import FrameHub
from .sdnotify import SystemdNotifier
from .sources import SourceFactory, make_factory
from .web import create_app

log = logging.getLogger("snapshot_stream")


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
        # Without --source the source is a camera: its controls and figures reach the routes.
        self.camera = Camera(config) if config.source is None else None
        self.capture = Capture(
            config, self.hub, factory or make_factory(config, self.camera), notifier
        )
        self.policy = build_policy(config)
        self.refusals = RefusalLog()
        self.app = create_app(
            config, self.hub, self.capture, self.policy, self.refusals, self.camera
        )
        self.http = HttpServer(config, self.app, self.hub, self.policy, self.refusals, port)

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
