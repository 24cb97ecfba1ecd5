"""The app's routes as a Flask Blueprint: /stream, snapshots, /healthz, /metrics and the page.

Access control (allow-list, Basic auth, throttling) happens in the HTTP server before a
request reaches these routes; a route that changes something (``POST /controls``) checks
:meth:`AccessPolicy.may_write` itself. The objects the routes need are in
``current_app.extensions["snapshot_stream"]`` (:class:`Services`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template, request
from werkzeug.exceptions import HTTPException, NotFound

from . import metrics as metrics_mod
from .auth import AccessPolicy
from .camera import Camera
from .capture import IDLE, STARTING, STREAMING, Capture
from .config import Config
from .controls import Unavailable
from .guard import RefusalLog
from .hub import (
    PLACEHOLDER_HEADER,
    PLACEHOLDER_HEADER_OLD,
    STREAM_MIMETYPE,
    FrameHub,
    StreamBody,
)
from .logtext import log_safe

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

bp = Blueprint("snapshot_stream", __name__, template_folder="templates")


@dataclass
class Services:
    """What the routes work with."""

    config: Config
    hub: FrameHub
    capture: Capture
    policy: AccessPolicy = field(default_factory=AccessPolicy)
    refusals: RefusalLog = field(default_factory=RefusalLog)
    camera: Camera | None = None  # None: the source is not a V4L2 camera
    started: float = field(default_factory=time.monotonic)


def services() -> Services:
    found: Services = current_app.extensions["snapshot_stream"]
    return found


def create_app(
    config: Config,
    hub: FrameHub,
    capture: Capture,
    policy: AccessPolicy | None = None,
    refusals: RefusalLog | None = None,
    camera: Camera | None = None,
) -> Flask:
    """Build the WSGI app around a hub and the capture that feeds it."""
    app = Flask("snapshot_stream")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.extensions["snapshot_stream"] = Services(
        config, hub, capture, policy or AccessPolicy(), refusals or RefusalLog(), camera
    )
    app.register_blueprint(bp)
    return app


def _text(body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body + "\n", status, headers, mimetype="text/plain")


@bp.before_app_request
def _no_empty_segments() -> None:
    # werkzeug matches "//stream" as "/stream"; a stray URL must not turn into an endless
    # stream (and no route of ours has an empty segment).
    if "//" in request.environ.get("PATH_INFO", ""):
        raise NotFound()


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    resp = _text(f"{code} {exc.name}", code)
    if code == 405 and exc.get_response().headers.get("Allow"):
        resp.headers["Allow"] = exc.get_response().headers["Allow"]
    return resp


@bp.app_errorhandler(Exception)
def _internal_error(exc: Exception) -> Response:
    log.error(
        "internal error on %s %s: %s",
        log_safe(request.method, 16),
        log_safe(request.path, 120),
        exc,
        exc_info=exc,
    )
    return _text("500 internal error", 500)


# -- frames ----------------------------------------------------------------------------------
def stream() -> Response:
    s = services()
    if request.method == "HEAD":
        return Response(status=200, mimetype=STREAM_MIMETYPE, headers=NO_CACHE)
    if not s.hub.acquire_client(s.config.max_clients):
        s.refusals.request(
            503,
            "max clients",
            f"{request.remote_addr} {log_safe(request.path, 120)} refused (503): "
            f"{s.hub.clients} clients connected (--max-clients {s.config.max_clients})",
        )
        return _text(
            f"too many clients (max {s.config.max_clients}); try again later",
            503,
            {"Retry-After": RETRY_AFTER, **NO_CACHE},
        )
    # The newest frame goes out at once (encoded here if nobody was watching).
    return Response(
        StreamBody(s.hub, s.hub.latest()),
        mimetype=STREAM_MIMETYPE,
        headers=NO_CACHE,
        direct_passthrough=True,
    )


def snapshot() -> Response:
    s = services()
    # Read before touch() wakes an idle capture: a frame from before the wake-up is old.
    waking = s.capture.state in (IDLE, STARTING)
    s.hub.touch()
    frame = s.hub.latest()
    if frame is None:
        wait = True
    elif frame.placeholder:
        wait = False
    else:
        stale = time.time() - frame.timestamp >= s.config.fresh_limit
        wait = stale or waking
    if wait:
        newer = s.hub.wait_next(frame.seq if frame else 0, SNAPSHOT_WAIT)
        frame = newer or frame
    if frame is None:
        return _text("no frame yet", 503, {"Retry-After": "1", **NO_CACHE})
    headers = {**NO_CACHE, "X-Timestamp": f"{frame.timestamp:.6f}"}
    if frame.placeholder:
        headers[PLACEHOLDER_HEADER] = "1"
        headers[PLACEHOLDER_HEADER_OLD] = "1"
    return Response(frame.jpeg, 200, headers, mimetype="image/jpeg")


@bp.get("/stream")
def stream_route() -> Response:
    return stream()


@bp.get("/snapshot.jpg")
@bp.get("/snapshot")
def snapshot_route() -> Response:
    return snapshot()


@bp.get("/")
def index() -> Response:
    action = request.args.get("action")
    if action is None:
        return page()
    if action == "stream":
        return stream()
    if action == "snapshot":
        return snapshot()
    raise NotFound(f"unknown action {action[:40]!r}")


# -- health and metrics -----------------------------------------------------------------------
def health() -> tuple[bool, dict[str, Any]]:
    s = services()
    status = s.capture.status()
    state = status["state"]
    last = s.hub.last_real_timestamp
    age = None if last is None else max(0.0, time.time() - last)
    reason = status["reason"]
    if state == IDLE:
        healthy = True
    elif state == STREAMING:
        healthy = age is not None and age < s.config.fresh_limit
        if not healthy:
            reason = f"last frame is {age:.1f} s old" if age is not None else "no frame yet"
    else:
        healthy = False
    if not healthy and not reason:
        reason = state
    body = {
        "name": s.config.name,
        "source": status["source"],
        "state": state,
        "reason": reason if not healthy or state == IDLE else "",
        "width": s.capture.out_width,
        "height": s.capture.out_height,
        "fps_configured": s.config.fps,
        "fps_measured": s.hub.fps_measured(),
        "clients": s.hub.clients,
        "frames_captured": s.hub.frames_captured,
        "last_frame_age": None if age is None else round(age, 3),
        "uptime": round(time.monotonic() - s.started, 3),
        "passthrough": bool(status["passthrough"]),
        # The mode the camera accepted and what arrives from it (null for other sources).
        "camera": s.camera.status() if s.camera is not None else None,
    }
    return healthy, body


@bp.get("/healthz")
def healthz() -> Response:
    healthy, body = health()
    resp = current_app.json.response(body)
    resp.status_code = 200 if healthy else 503
    resp.headers.update(NO_CACHE)
    return resp


@bp.get("/metrics")
def metrics() -> Response:
    s = services()
    _healthy, body = health()
    hub = s.hub
    age = body["last_frame_age"]
    snap = metrics_mod.MetricsSnapshot(
        name=body["name"],
        source=body["source"],
        state=body["state"],
        frames_captured=hub.frames_captured,
        frames_served=hub.frames_served,
        frames_passthrough=hub.frames_passthrough,
        frames_encoded=hub.frames_encoded,
        frames_dropped=hub.frames_skipped,
        frames_broken=hub.frames_broken,
        frames_placeholder=hub.frames_placeholder,
        clients=hub.clients,
        reconnects=hub.reconnects,
        encode_seconds_sum=hub.encode_seconds,
        encode_count=hub.encode_count,
        last_frame_age=float("nan") if age is None else float(age),
        fps_measured=float(body["fps_measured"]),
        uptime=float(body["uptime"]),
        requests_refused=dict(s.refusals.requests_refused),
        connections_refused=dict(s.refusals.connections_refused),
        camera=_camera_figures(s.camera, body["camera"]),
    )
    text = metrics_mod.render(snap)
    return Response(text, 200, {**NO_CACHE, "Content-Type": metrics_mod.CONTENT_TYPE})


def _camera_figures(
    camera: Camera | None, status: dict[str, Any] | None
) -> metrics_mod.CameraFigures | None:
    if camera is None or status is None:
        return None
    rate = status["bytes_per_second"]
    return metrics_mod.CameraFigures(
        device=status["device"],
        fourcc=status["format"],
        width=status["width"],
        height=status["height"],
        fps=status["fps"],
        bytes_total=camera.received.total,
        bytes_per_second=float("nan") if rate is None else float(rate),
    )


# -- camera controls --------------------------------------------------------------------------
# More entries than any camera has controls is not a request worth an ioctl.
MAX_CHANGES = 64
CONTROLS_RETRY_AFTER = "2"
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
JSON_HINT = (
    "a JSON object of control name to value, Content-Type application/json, e.g. "
    '{"focus_automatic_continuous": 0, "focus_absolute": 40}'
)


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    resp = current_app.json.response(body)
    resp.status_code = status
    resp.headers.update({**NO_CACHE, **(headers or {})})
    return resp


def _no_camera() -> Response:
    s = services()
    return _json(
        {
            "error": f"no camera controls: the source ({s.capture.source_description}) is not "
            "a V4L2 camera"
        },
        404,
    )


def _camera_unavailable(exc: Unavailable) -> Response:
    s = services()
    body = {"error": f"camera not available: {exc}", "state": s.capture.state}
    if s.capture.reason:
        body["reason"] = s.capture.reason
    return _json(body, 503, {"Retry-After": CONTROLS_RETRY_AFTER})


def write_rule(remote_addr: str) -> tuple[bool, str]:
    """Whether this request may change controls, and the sentence saying who may."""
    s = services()
    if s.policy.auth is not None:
        return True, "Changes need the password (HTTP Basic auth), as every page here does."
    # A reverse proxy on this machine (tailscale serve, Caddy, nginx) makes every client look
    # like loopback; the headers it adds give it away (a client adding them only loses rights).
    proxy = next((h for h in PROXY_HEADERS if h in request.headers), None)
    if proxy is not None:
        return False, (
            f"This request came through a proxy ({proxy}), which hides who sent it: without "
            "a password (auth_user, auth_hash) no changes are accepted through it."
        )
    who = "Without a password, changes are accepted only from this machine (loopback)"
    if s.config.allow:
        who += " and the --allow networks"
    if s.policy.may_write(remote_addr):
        return True, f"{who}; your address {remote_addr} is one of them."
    return False, (
        f"{who}, and your address {remote_addr or '(unknown)'} is not one of them: set a "
        "password (auth_user, auth_hash) or add your network to allow to change them from here."
    )


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise ValueError(f"{name[:64]!r} is named twice")
        found[name] = value
    return found


@bp.get("/controls")
def controls_get() -> Response:
    s = services()
    if s.camera is None:
        return _no_camera()
    try:
        body = s.camera.controls.describe()
    except Unavailable as exc:
        return _camera_unavailable(exc)
    body["writable"], body["write_rule"] = write_rule(request.remote_addr or "")
    return _json(body, 200)


@bp.post("/controls")
def controls_post() -> Response:
    s = services()
    remote = request.remote_addr or ""
    writable, rule = write_rule(remote)
    # A browser marks requests another site makes it send; such a write is never wanted
    # (the JSON content type below already forces a CORS preflight, which gets no answer).
    cross_site = request.headers.get("Sec-Fetch-Site", "") in ("cross-site", "same-site")
    if not writable or cross_site:
        why = "a cross-site request" if writable else "not allowed to write from here"
        s.refusals.request(
            403,
            "controls write",
            f"{log_safe(remote)} POST /controls refused (403): {why}",
        )
        return _json({"error": f"changing controls refused: {why}. {rule}"}, 403)
    if s.camera is None:
        return _no_camera()
    if request.mimetype != "application/json":
        return _json({"error": f"send the changes as JSON ({JSON_HINT})"}, 415)
    try:
        raw = request.get_data(cache=False) or b"null"
        changes = json.loads(raw, object_pairs_hook=_unique_pairs)
    except (ValueError, RecursionError) as exc:
        return _json({"error": f"the body is not valid JSON: {str(exc)[:200]}"}, 400)
    if not isinstance(changes, dict) or not changes:
        return _json({"error": f"the body must be {JSON_HINT}"}, 400)
    if len(changes) > MAX_CHANGES:
        return _json({"error": f"at most {MAX_CHANGES} controls per request"}, 400)
    try:
        result, state = s.camera.controls.change(changes)
    except Unavailable as exc:
        return _camera_unavailable(exc)
    if result.applied:
        user = request.environ.get("REMOTE_USER")
        shown = ", ".join(f"{name}={value}" for name, value in result.applied.items())
        log.info(
            "%s: controls changed by %s: %s",
            state["device"],
            log_safe(f"{user} from {remote}" if user else remote, 120),
            log_safe(shown, 400),
        )
    body = {"applied": result.applied, "errors": result.errors, **state}
    body["writable"], body["write_rule"] = writable, rule
    return _json(body, 422 if result.errors else 200)


# -- the page ---------------------------------------------------------------------------------
def _safe_host(config: Config) -> str:
    """The Host header if it looks like a host (it is echoed into the page), else a default."""
    host = request.host or ""
    if _HOST_RE.match(host):
        return host
    bind = config.hosts[0] if config.hosts else "localhost"
    if bind in ("0.0.0.0", "::", ""):
        bind = "localhost"
    return f"{bind}:{config.port}"


def page_context() -> dict[str, Any]:
    """What the page template shows (a blueprint adding a panel can extend it)."""
    s = services()
    config = s.config
    host = _safe_host(config)
    base = f"http://{host}"
    auth = f"http://{config.auth_user}:PASSWORD@{host}" if config.auth_user else base
    return {
        "name": config.name,
        "width": s.capture.out_width,
        "height": s.capture.out_height,
        "fps": f"{config.fps:g}",
        "urls": {
            "stream": f"{base}/stream",
            "snapshot": f"{base}/snapshot.jpg",
            "stream_auth": f"{auth}/stream",
            "mjpg_stream": f"{base}/?action=stream",
            "mjpg_snapshot": f"{base}/?action=snapshot",
        },
    }


def page() -> Response:
    s = services()
    context = page_context()
    template = "index.html"
    if s.camera is not None:
        # The camera panel (templates/camera.html extends the page).
        template = "camera.html"
        writable, rule = write_rule(request.remote_addr or "")
        context["controls"] = {"writable": writable, "rule": rule}
    body = render_template(template, **context)
    return Response(body, 200, NO_CACHE, mimetype="text/html")
