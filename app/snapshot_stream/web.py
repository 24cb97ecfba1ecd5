"""The Flask application: /stream, snapshots, /healthz, /metrics and the page."""

from __future__ import annotations

import html
import logging
import re
import time
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, NotFound

from . import metrics as metrics_mod
from .auth import AccessPolicy
from .capture import IDLE, STARTING, STREAMING, Capture
from .config import Config
from .hub import STREAM_MIMETYPE, STREAM_PREAMBLE, FrameHub

log = logging.getLogger(__name__)

NO_CACHE = {
    "Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
# How long a snapshot waits for a fresh frame (e.g. after --idle-release closed the camera).
SNAPSHOT_WAIT = 5.0
RETRY_AFTER = "5"
_HOST_RE = re.compile(r"^[A-Za-z0-9._~\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


class StreamBody:
    """The WSGI body of one /stream response: the newest frame each time, never a backlog.

    cheroot writes every chunk straight to the socket; a slow client blocks in that write and
    afterwards takes the newest frame, skipping those it missed. close() (called by the server
    when the stream ends or the client went away) frees the client slot.
    """

    def __init__(self, hub: FrameHub) -> None:
        self.hub = hub
        self.last_seq = 0
        self.started = False
        self.closed = False

    def __iter__(self) -> StreamBody:
        return self

    def __next__(self) -> bytes:
        while not self.closed:
            frame = self.hub.wait_next(self.last_seq, 1.0)
            if frame is not None:
                skipped = frame.seq - self.last_seq - 1 if self.started else 0
                self.hub.count_served(max(0, skipped))
                self.last_seq = frame.seq
                if not self.started:
                    self.started = True
                    return STREAM_PREAMBLE + frame.part
                return frame.part
            if self.hub.closed:
                break
        raise StopIteration

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.release_client()


def _loggable(text: str, limit: int = 120) -> str:
    """Client-supplied text made safe for one log line (no newlines, bounded length)."""
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return shown + ("..." if len(text) > limit else "")


def _text(body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body + "\n", status, headers, mimetype="text/plain")


def _safe_host(config: Config) -> str:
    """The Host header if it looks like a host (it is echoed into the page), else a default."""
    host = request.host or ""
    if _HOST_RE.match(host):
        return host
    bind = config.hosts[0] if config.hosts else "localhost"
    if bind in ("0.0.0.0", "::", ""):
        bind = "localhost"
    return f"{bind}:{config.port}"


def create_app(
    config: Config,
    hub: FrameHub,
    capture: Capture,
    policy: AccessPolicy | None = None,
    metrics_extra: dict[str, Any] | None = None,
) -> Flask:
    """Build the WSGI app around a hub and the capture that feeds it."""
    app = Flask("snapshot_stream")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    started = time.monotonic()
    policy = policy or AccessPolicy()

    if policy.active:

        @app.before_request
        def _access() -> Response | None:
            decision = policy.check(
                request.remote_addr or "", request.headers.get("Authorization"), request.path
            )
            if decision.status is None:
                return None
            log.warning(
                "%s %s %s refused (%d): %s",
                request.remote_addr,
                _loggable(request.method),
                _loggable(request.path),
                decision.status,
                decision.reason,
            )
            body = "authentication required" if decision.status == 401 else "forbidden"
            return _text(body, decision.status, dict(decision.headers))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        resp = _text(f"{code} {exc.name}", code)
        if code == 405 and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    @app.errorhandler(Exception)
    def _internal_error(exc: Exception) -> Response:
        log.error("internal error on %s %s: %s", request.method, request.path, exc, exc_info=exc)
        return _text("500 internal error", 500)

    def stream() -> Response:
        if request.method == "HEAD":
            return Response(status=200, mimetype=STREAM_MIMETYPE, headers=NO_CACHE)
        if not hub.acquire_client(config.max_clients):
            log.warning(
                "%s: /stream refused, %d clients connected (--max-clients %d)",
                request.remote_addr,
                hub.clients,
                config.max_clients,
            )
            return _text(
                f"too many clients (max {config.max_clients}); try again later",
                503,
                {"Retry-After": RETRY_AFTER, **NO_CACHE},
            )
        return Response(
            StreamBody(hub),
            mimetype=STREAM_MIMETYPE,
            headers=NO_CACHE,
            direct_passthrough=True,
        )

    def snapshot() -> Response:
        hub.touch()
        hub.snapshot_requests += 1
        frame = hub.latest()
        if frame is None:
            wait = True
        elif frame.placeholder:
            wait = False
        else:
            stale = time.time() - frame.timestamp >= config.fresh_limit
            wait = stale or capture.state in (IDLE, STARTING)
        if wait:
            newer = hub.wait_next(frame.seq if frame else 0, SNAPSHOT_WAIT)
            frame = newer or frame
        if frame is None:
            return _text("no frame yet", 503, {"Retry-After": "1", **NO_CACHE})
        headers = {**NO_CACHE, "X-Timestamp": f"{frame.timestamp:.6f}"}
        if frame.placeholder:
            headers["X-Snapshot-Placeholder"] = "1"
        return Response(frame.jpeg, 200, headers, mimetype="image/jpeg")

    @app.get("/stream")
    def stream_route() -> Response:
        return stream()

    @app.get("/snapshot.jpg")
    @app.get("/snapshot")
    def snapshot_route() -> Response:
        return snapshot()

    @app.get("/")
    def index() -> Response:
        action = request.args.get("action")
        if action is None:
            return page()
        if action == "stream":
            return stream()
        if action == "snapshot":
            return snapshot()
        raise NotFound(f"unknown action {action[:40]!r}")

    def health() -> tuple[bool, dict[str, Any]]:
        status = capture.status()
        state = status["state"]
        now = time.time()
        last = hub.last_real_timestamp
        age = None if last is None else max(0.0, now - last)
        reason = status["reason"]
        if state == IDLE:
            healthy = True
        elif state == STREAMING:
            healthy = age is not None and age < config.fresh_limit
            if not healthy:
                reason = f"last frame is {age:.1f} s old" if age is not None else "no frame yet"
        else:
            healthy = False
        if not healthy and not reason:
            reason = state
        body = {
            "name": config.name,
            "source": status["source"],
            "state": state,
            "reason": reason if not healthy or state == IDLE else "",
            "width": capture.out_width,
            "height": capture.out_height,
            "fps_configured": config.fps,
            "fps_measured": hub.fps_measured(),
            "clients": hub.clients,
            "frames_captured": hub.frames_captured,
            "last_frame_age": None if age is None else round(age, 3),
            "uptime": round(time.monotonic() - started, 3),
            "passthrough": bool(status["passthrough"]),
        }
        return healthy, body

    @app.get("/healthz")
    def healthz() -> Response:
        healthy, body = health()
        resp = app.json.response(body)
        resp.status_code = 200 if healthy else 503
        resp.headers.update(NO_CACHE)
        return resp

    @app.get("/metrics")
    def metrics() -> Response:
        _healthy, body = health()
        text = metrics_mod.render(_metrics_snapshot(metrics_mod, hub, body))
        return Response(text, 200, {**NO_CACHE, "Content-Type": metrics_mod.CONTENT_TYPE})

    def page() -> Response:
        host = _safe_host(config)
        base = f"http://{host}"
        auth = f"http://{config.auth_user}:PASSWORD@{host}" if config.auth_user else base
        urls = {
            "stream": f"{base}/stream",
            "snapshot": f"{base}/snapshot.jpg",
            "stream_auth": f"{auth}/stream",
            "mjpg_stream": f"{base}/?action=stream",
            "mjpg_snapshot": f"{base}/?action=snapshot",
        }
        body = _PAGE.format(
            name=html.escape(config.name),
            width=capture.out_width,
            height=capture.out_height,
            fps=f"{config.fps:g}",
            **{k: html.escape(v) for k, v in urls.items()},
        )
        return Response(body, 200, NO_CACHE, mimetype="text/html")

    return app


def _metrics_snapshot(metrics_mod: Any, hub: FrameHub, health: dict[str, Any]) -> Any:
    age = health["last_frame_age"]
    return metrics_mod.MetricsSnapshot(
        name=health["name"],
        source=health["source"],
        state=health["state"],
        frames_captured=hub.frames_captured,
        frames_served=hub.frames_served,
        frames_passthrough=hub.frames_passthrough,
        frames_encoded=hub.frames_encoded,
        frames_dropped=hub.frames_skipped,
        clients=hub.clients,
        reconnects=hub.reconnects,
        encode_seconds_sum=hub.encode_seconds,
        encode_count=hub.encode_count,
        last_frame_age=float("nan") if age is None else float(age),
        fps_measured=float(health["fps_measured"]),
        uptime=float(health["uptime"]),
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name} - snapshot-stream</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em auto; max-width: 60em; padding: 0 1em;
       background: #111; color: #ddd; }}
img {{ max-width: 100%; height: auto; background: #000; }}
code {{ background: #222; padding: 0.1em 0.3em; user-select: all; }}
th {{ text-align: left; padding-right: 1em; vertical-align: top; }}
a {{ color: #8cf; }}
</style></head>
<body>
<h1>{name}</h1>
<p><img src="stream" width="{width}" height="{height}" alt="live stream"></p>
<p>{width}x{height} at up to {fps} fps &middot; <a href="snapshot.jpg">snapshot</a> &middot;
<a href="healthz">health</a> &middot; <a href="metrics">metrics</a></p>
<h2>Use this camera in</h2>
<table>
<tr><th>VLC</th><td>Media &rarr; Open Network Stream: <code>{stream_auth}</code></td></tr>
<tr><th>Browser / ffmpeg</th><td><code>{stream}</code> &middot;
  still: <code>{snapshot}</code></td></tr>
<tr><th>Home Assistant</th><td>MJPEG IP Camera: MJPEG URL <code>{stream}</code>,
  still image URL <code>{snapshot}</code></td></tr>
<tr><th>Frigate</th><td>ffmpeg input <code>{stream}</code>
  with <code>input_args: preset-http-mjpeg-generic</code></td></tr>
<tr><th>QNAP QVR Pro</th><td>Generic MJPEG: stream URL <code>{stream}</code>,
  snapshot URL <code>{snapshot}</code></td></tr>
<tr><th>mjpg-streamer URLs</th><td><code>{mjpg_stream}</code> &middot;
  <code>{mjpg_snapshot}</code></td></tr>
</table>
</body></html>
"""
