"""What the NO SIGNAL image says: never found, or lost at a given time."""

from __future__ import annotations

import re

from snapshot_stream.capture.state import CaptureState


def test_a_camera_never_found_is_not_lost() -> None:
    state = CaptureState("camera (auto)", None, 25, 30)
    state.lose("no working camera: no /dev/video* device")
    assert state.placeholder_text() == "no camera found: no working camera: no /dev/video* device"


def test_a_url_never_reached_says_so() -> None:
    state = CaptureState("http://cam/stream", None, 25, 30, camera=False)
    state.lose("connection refused by http://cam/stream")
    assert state.placeholder_text().startswith("no signal yet: connection refused")


def test_a_camera_that_streamed_is_lost_at_a_time() -> None:
    state = CaptureState("/dev/video0", None, 25, 30)
    state.streaming(640, 480, True)
    state.lose("/dev/video0: device disappeared")
    text = state.placeholder_text()
    assert re.fullmatch(r"lost at \d\d:\d\d:\d\d: /dev/video0: device disappeared", text), text


def test_starting_names_the_source() -> None:
    assert CaptureState("/dev/video0", None, 25, 30).placeholder_text() == "starting: /dev/video0"
