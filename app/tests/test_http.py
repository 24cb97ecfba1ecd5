"""HTTP endpoints of a real (in-process) server: snapshots, aliases, healthz, page, errors."""

from __future__ import annotations

import random
import socket
import time

import cv2
import numpy as np
import pytest
import requests
from conftest import MjpegClient, base_url, cfg, running, wait_for

from snapshot_stream.errors import SourceError

W, H = 160, 120


@pytest.fixture(scope="module")
def server():
    with running(cfg(width=W, height=H, fps=10, name="cam <1>")) as s:
        assert s.hub.first_frame.wait(5)
        yield s


@pytest.fixture(scope="module")
def url(server) -> str:
    return base_url(server)


@pytest.mark.parametrize("path", ["/snapshot.jpg", "/snapshot", "/?action=snapshot"])
def test_snapshot(url: str, path: str) -> None:
    r = requests.get(url + path, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "image/jpeg"
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert "no-store" in r.headers["Cache-Control"]
    assert "X-Snapshot-Placeholder" not in r.headers
    assert abs(float(r.headers["X-Timestamp"]) - time.time()) < 2
    image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (H, W)


def test_head_requests(url: str, server) -> None:
    assert requests.head(url + "/snapshot.jpg", timeout=5).status_code == 200
    r = requests.head(url + "/stream", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    assert wait_for(lambda: server.hub.clients == 0, 3)


def test_healthz(url: str) -> None:
    r = requests.get(url + "/healthz", timeout=5)
    assert r.status_code == 200
    body = r.json()
    keys = ["name", "source", "state", "reason", "width", "height", "fps_configured"]
    keys += ["fps_measured", "clients", "frames_captured", "last_frame_age", "uptime"]
    for key in [*keys, "passthrough"]:
        assert key in body, key
    assert body["state"] == "streaming"
    assert body["name"] == "cam <1>"
    assert body["source"] == "synthetic"
    assert (body["width"], body["height"]) == (W, H)
    assert body["fps_configured"] == 10
    assert body["last_frame_age"] < 2
    assert body["passthrough"] is False
    assert body["frames_captured"] > 0


def test_metrics(url: str) -> None:
    r = requests.get(url + "/metrics", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "snapshot_stream_frames_captured_total" in r.text
    assert 'snapshot_stream_state{state="streaming"} 1' in r.text


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.split(" ")[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_metrics_counters_follow_the_stream(url: str) -> None:
    before = requests.get(url + "/metrics", timeout=5).text
    client = MjpegClient(url + "/stream")
    try:
        parts = [client.read_part() for _ in range(5)]
    finally:
        client.close()
    after = requests.get(url + "/metrics", timeout=5).text
    served = _metric(after, "snapshot_stream_frames_served_total")
    assert served - _metric(before, "snapshot_stream_frames_served_total") >= len(parts)
    # The synthetic source is encoded here, so every captured frame was an encode.
    assert _metric(after, "snapshot_stream_encode_seconds_count") > _metric(
        before, "snapshot_stream_encode_seconds_count"
    )
    assert _metric(after, "snapshot_stream_encode_seconds_sum") > 0
    assert _metric(after, "snapshot_stream_frames_passthrough_total") == 0


def test_page(url: str) -> None:
    r = requests.get(url + "/", headers={"Host": "camera.lan:8080"}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    page = r.text
    assert '<img src="stream"' in page
    assert "http://camera.lan:8080/stream" in page
    assert "http://camera.lan:8080/snapshot.jpg" in page
    assert "http://camera.lan:8080/?action=stream" in page
    assert "cam &lt;1&gt;" in page
    for client in ("VLC", "Home Assistant", "Frigate", "QVR Pro"):
        assert client in page
    # A hostile Host header is not echoed into the page.
    r = requests.get(url + "/", headers={"Host": '"><script>x</script>'}, timeout=5)
    assert r.status_code in (200, 400)
    assert "<script>x" not in r.text


def test_not_found_and_methods(url: str) -> None:
    assert requests.get(url + "/nope", timeout=5).status_code == 404
    assert requests.get(url + "/?action=bogus", timeout=5).status_code == 404
    assert requests.get(url + "/stream/x", timeout=5).status_code == 404
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/stream", "/snapshot.jpg", "/healthz", "/"):
            r = requests.request(method, url + path, timeout=5)
            assert r.status_code == 405, (method, path)


def _raw(url: str, data: bytes) -> bytes:
    host, port = url.split("://")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while len(out) < 200:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            pass
        return out


def test_fuzz_never_500(url: str, server) -> None:
    rng = random.Random(1234)
    paths = [
        "/",
        "/snapshot.jpg",
        "/healthz",
        "/?action=",
        "/?action=%ff%fe",
        "/?action=snapshot&action=stream",
        "/%2e%2e/etc/passwd",
        "/" + "a" * 3000,
        "/snapshot.jpg?x=" + "%" * 50,
        "/?" + "&".join(f"k{i}=v" for i in range(200)),
        "//stream",
        "/metrics?foo=bar",
    ]
    methods = ["GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "TRACE", "FOO"]
    headers_list = [
        {},
        {"Host": ""},
        {"Host": "x" * 500},
        {"Authorization": "Basic !!!"},
        {"Accept": "\x01\x02"},
        {"Range": "bytes=5-1"},
        {"If-Modified-Since": "yesterday"},
    ]
    for _ in range(80):
        path = rng.choice(paths)
        method = rng.choice(methods)
        headers = rng.choice(headers_list)
        try:
            r = requests.request(method, url + path, headers=headers, timeout=5)
        except requests.RequestException:
            continue
        assert r.status_code < 500, (method, path, headers, r.status_code)
    for data in (
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /stream HTTP/9.9\r\n\r\n",
        b"GET /snapshot.jpg HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    ):
        out = _raw(url, data)
        assert not out.startswith(b"HTTP/1.1 500"), out[:100]
    assert wait_for(lambda: server.hub.clients == 0, 5)
    assert requests.get(url + "/healthz", timeout=5).status_code == 200


def test_max_clients() -> None:
    with running(cfg(width=W, height=H, fps=10, max_clients=2)) as s:
        url = base_url(s)
        a = MjpegClient(url + "/stream")
        b = MjpegClient(url + "/stream")
        try:
            a.read_part()
            b.read_part()
            r = requests.get(url + "/stream", timeout=5)
            assert r.status_code == 503
            assert int(r.headers["Retry-After"]) > 0
            assert "too many clients" in r.text
            # Snapshots and healthz still answer.
            assert requests.get(url + "/snapshot.jpg", timeout=5).status_code == 200
            assert requests.get(url + "/healthz", timeout=5).json()["clients"] == 2
        finally:
            a.close()
            b.close()
        # Slots are freed when clients go away.
        assert wait_for(lambda: s.hub.clients == 0, 5)
        c = MjpegClient(url + "/stream")
        try:
            assert c.status == 200
            c.read_part()
        finally:
            c.close()


class _Broken:
    def open(self) -> None:
        raise SourceError("cannot open /dev/video9: no such device")

    def read(self) -> bytes:
        raise AssertionError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "/dev/video9"


def test_no_camera_placeholder_and_503() -> None:
    with running(cfg(width=W, height=H, fps=10, source=None), factory=_Broken) as s:
        url = base_url(s)
        assert s.hub.first_frame.wait(5)
        r = requests.get(url + "/healthz", timeout=5)
        assert r.status_code == 503
        body = r.json()
        assert body["state"] == "no_signal"
        assert "no such device" in body["reason"]
        r = requests.get(url + "/snapshot.jpg", timeout=5)
        assert r.status_code == 200
        assert r.headers["X-Snapshot-Placeholder"] == "1"
        image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (H, W)
        c = MjpegClient(url + "/stream")
        try:
            parts = [c.read_part() for _ in range(2)]
        finally:
            c.close()
        assert all(p.placeholder for p in parts)
