"""Source factory, the synthetic pattern and the OpenCV file path (a generated video)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from conftest import MjpegClient, base_url, cfg, running, wait_for

from snapshot_stream.sources import (
    CameraSource,
    OpenCVSource,
    Source,
    UpstreamMjpegSource,
    make_factory,
)
from snapshot_stream.synthetic import SyntheticSource


def make_video(path: Path, frames: int, width: int = 160, height: int = 120) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        image = np.full((height, width, 3), (i * 7) % 255, np.uint8)
        cv2.putText(image, str(i), (10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 0, 255), 2)
        writer.write(image)
    writer.release()
    return path


def test_factory_kinds(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.avi", 3)
    assert isinstance(make_factory(cfg(source="synthetic"))(), SyntheticSource)
    assert isinstance(make_factory(cfg(source="http://x/stream"))(), UpstreamMjpegSource)
    rtsp = make_factory(cfg(source="rtsp://x/stream"))()
    assert isinstance(rtsp, OpenCVSource) and not rtsp.is_file
    f = make_factory(cfg(source=str(video)))()
    assert isinstance(f, OpenCVSource) and f.is_file
    cam = make_factory(cfg(source=None, device="/dev/video0"))()
    assert isinstance(cam, CameraSource)
    for source in (f, cam):
        assert isinstance(source, Source)


def test_synthetic_moves_and_has_requested_size() -> None:
    s = SyntheticSource(200, 100)
    s.open()
    a = s.read()()  # read() returns the drawing, done when somebody wants the picture
    time.sleep(0.15)
    b = s.read()()
    assert a.shape == (100, 200, 3) and b.shape == (100, 200, 3)
    assert not np.array_equal(a, b)


def test_video_file_streams_at_size(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.avi", 100, 160, 120)
    with running(cfg(source=str(video), width=160, height=120, fps=20)) as s:
        c = MjpegClient(base_url(s) + "/stream")
        try:
            c.read_part()
            parts = c.parts_for(1.5)
        finally:
            c.close()
        assert len(parts) >= 20
        assert not any(p.placeholder for p in parts)
        image = cv2.imdecode(np.frombuffer(parts[-1].jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (120, 160)
        health = requests.get(base_url(s) + "/healthz", timeout=5).json()
        assert health["source"] == str(video)


def test_video_file_is_resized(tmp_path: Path) -> None:
    video = make_video(tmp_path / "big.avi", 30, 320, 240)
    with running(cfg(source=str(video), width=160, height=96, fps=10)) as s:
        r = requests.get(base_url(s) + "/snapshot.jpg", timeout=5)
        image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (96, 160)


def test_file_end_is_a_loss_then_restarts(tmp_path: Path, caplog) -> None:
    video = make_video(tmp_path / "short.avi", 12)
    with running(cfg(source=str(video), width=160, height=120, fps=10)) as s:
        c = MjpegClient(base_url(s) + "/stream")
        try:
            parts = c.parts_for(4.5)
        finally:
            c.close()
        kinds = [p.placeholder for p in parts]
        assert False in kinds and True in kinds
        first_ph = kinds.index(True)
        assert False in kinds[first_ph:], "real frames did not come back after the end of file"
        assert wait_for(lambda: s.hub.reconnects >= 1, 3)
        reconnects = s.hub.reconnects
    text = caplog.text
    assert "end of file" in text
    assert text.count("lost:") <= reconnects + 1  # once per loss, never per frame


def test_missing_device_reason(tmp_path: Path) -> None:
    with running(cfg(source=None, device=str(tmp_path / "video7"), width=160, height=120)) as s:
        assert wait_for(lambda: s.capture.state == "no_signal", 5)
        body = requests.get(base_url(s) + "/healthz", timeout=5).json()
        assert "video7" in body["reason"]
        r = requests.get(base_url(s) + "/snapshot.jpg", timeout=5)
        assert r.headers.get("X-Snapshot-Placeholder") == "1"


@pytest.mark.parametrize("rotate", [90, 270])
def test_placeholder_has_stream_size(rotate: int, tmp_path: Path) -> None:
    conf = cfg(source=None, device=str(tmp_path / "none"), width=160, height=96, rotate=rotate)
    with running(conf) as s:
        r = requests.get(base_url(s) + "/snapshot.jpg", timeout=5)
        image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (160, 96)
