"""End to end: real streamer processes, real HTTP clients, several at once."""

from __future__ import annotations

import itertools
import threading

import cv2
import numpy as np
import pytest
from conftest import MjpegClient, Part, base_url, cfg, running


def _decode(part: Part) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(part.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _collect_concurrently(urls: list[str], seconds: float) -> list[list[Part]]:
    """One client per URL, all reading at the same time; raises if any client failed."""
    results: list[list[Part]] = [[] for _ in urls]
    errors: list[Exception] = []
    threads = [
        threading.Thread(target=_collect, args=(url, seconds, results[i], errors))
        for i, url in enumerate(urls)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    return results


def _check_parts(parts: list[Part], width: int, height: int, fps: float) -> None:
    assert parts, "no parts"
    for p in parts:
        assert p.headers["content-type"] == "image/jpeg"
        assert int(p.headers["content-length"]) == len(p.jpeg)
        assert p.jpeg.startswith(b"\xff\xd8") and p.jpeg.endswith(b"\xff\xd9")
        assert not p.placeholder
    stamps = [p.timestamp for p in parts]
    assert all(b > a for a, b in itertools.pairwise(stamps)), "X-Timestamps not increasing"
    for p in parts[:: max(1, len(parts) // 8)]:
        assert _decode(p).shape[:2] == (height, width)
    span = stamps[-1] - stamps[0]
    assert span >= 3.0
    measured = (len(stamps) - 1) / span
    assert abs(measured - fps) <= 0.15 * fps, f"{measured:.2f} fps, configured {fps}"


def _collect(url: str, seconds: float, out: list, errors: list) -> None:
    try:
        client = MjpegClient(url)
        try:
            assert client.status == 200
            assert client.headers["content-type"].startswith("multipart/x-mixed-replace")
            assert "boundary=frame" in client.headers["content-type"]
            assert "no-cache" in client.headers["cache-control"]
            client.read_part()  # the newest frame, sent at once; measure from the next one
            out.extend(client.parts_for(seconds))
        finally:
            client.close()
    except Exception as exc:  # reported by the test thread
        errors.append(exc)


def test_four_clients_640x480_subprocess(spawn) -> None:
    fps = 12.0
    proc = spawn("--source", "synthetic", "--fps", str(fps), "--width", "640", "--height", "480")
    paths = ["/stream", "/stream", "/?action=stream", "/stream"]
    for parts in _collect_concurrently([proc.url + path for path in paths], 3.5):
        _check_parts(parts, 640, 480, fps)


@pytest.mark.parametrize(("width", "height", "fps"), [(160, 120, 20.0), (320, 240, 25.0)])
def test_four_clients_in_process(width: int, height: int, fps: float) -> None:
    with running(cfg(width=width, height=height, fps=fps)) as s:
        for parts in _collect_concurrently([base_url(s) + "/stream"] * 4, 3.2):
            _check_parts(parts, width, height, fps)
        assert s.hub.clients == 0 or s.hub.clients <= 4


def test_all_clients_get_the_same_bytes() -> None:
    """The part is built once per frame: every client receives identical JPEG bytes."""
    with running(cfg(width=160, height=120, fps=10)) as s:
        a = MjpegClient(base_url(s) + "/stream")
        b = MjpegClient(base_url(s) + "/stream")
        try:
            pa = {p.timestamp: p.jpeg for p in a.parts_for(1.0)}
            pb = {p.timestamp: p.jpeg for p in b.parts_for(1.0)}
        finally:
            a.close()
            b.close()
        common = set(pa) & set(pb)
        assert len(common) >= 3
        assert all(pa[t] == pb[t] for t in common)


def test_rotate_swaps_dimensions() -> None:
    with running(cfg(width=160, height=96, fps=10, rotate=90, hflip=True)) as s:
        c = MjpegClient(base_url(s) + "/stream")
        try:
            part = c.read_part()
        finally:
            c.close()
        assert _decode(part).shape[:2] == (160, 96)
