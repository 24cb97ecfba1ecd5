"""--idle-release: the source is closed without clients and reopened on demand."""

from __future__ import annotations

import time

import requests
from conftest import MjpegClient, base_url, cfg, running, wait_for

from snapshot_stream.synthetic import SyntheticSource


class _Counting(SyntheticSource):
    opened = 0
    closed = 0

    def open(self) -> None:
        type(self).opened += 1
        super().open()

    def close(self) -> None:
        type(self).closed += 1


def test_idle_release_closes_and_reopens(caplog) -> None:
    _Counting.opened = _Counting.closed = 0
    conf = cfg(width=160, height=120, fps=10, idle_release=1.0)
    with running(conf, factory=lambda: _Counting(160, 120)) as s:
        url = base_url(s)
        assert wait_for(lambda: s.capture.state == "idle", 6)
        assert wait_for(lambda: _Counting.closed == 1, 2)
        assert _Counting.opened == 1
        r = requests.get(url + "/healthz", timeout=5)
        assert r.status_code == 200
        assert r.json()["state"] == "idle"
        captured = s.hub.frames_captured
        time.sleep(0.5)
        assert s.hub.frames_captured == captured  # really released: no frames
        # A snapshot wakes the source and waits for a fresh frame.
        asked = time.time()
        r = requests.get(url + "/snapshot.jpg", timeout=10)
        assert r.status_code == 200
        assert "X-Snapshot-Placeholder" not in r.headers
        assert float(r.headers["X-Timestamp"]) >= asked
        assert _Counting.opened == 2
        assert s.capture.state == "streaming"
        # A connected stream client keeps it open.
        c = MjpegClient(url + "/stream")
        try:
            c.parts_for(2.0)
            assert s.capture.state == "streaming"
            assert _Counting.closed == 1
        finally:
            c.close()
        assert wait_for(lambda: s.capture.state == "idle", 6)
        assert _Counting.closed == 2
    assert caplog.text.count("idle: no client") == 2


def test_stream_wakes_idle_source() -> None:
    conf = cfg(width=160, height=120, fps=10, idle_release=0.5)
    with running(conf) as s:
        assert wait_for(lambda: s.capture.state == "idle", 6)
        c = MjpegClient(base_url(s) + "/stream")
        try:
            c.read_part()  # the last frame from before the release, at once
            fresh = c.read_part()
            assert time.time() - fresh.timestamp < 1.5
            assert not fresh.placeholder
        finally:
            c.close()
