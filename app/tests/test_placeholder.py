from __future__ import annotations

import time

import numpy as np
import pytest

from snapshot_stream import placeholder

WHEN = 1_764_035_537.0  # fixed instant: the image must only depend on the inputs


@pytest.mark.parametrize(("width", "height"), [(160, 120), (640, 480), (1920, 1080), (480, 640)])
def test_size_type_and_content(width: int, height: int) -> None:
    image = placeholder.render(width, height, "cannot open /dev/video0: no such device", WHEN)
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8
    background = image[0, 0].copy()
    assert int(background.max()) < 80  # dark
    text_pixels = np.any(image != background, axis=2)
    # Something was drawn, and it is text, not a filled frame.
    assert 0.01 < text_pixels.mean() < 0.5
    # Title in the upper half, time and reason below it.
    assert text_pixels[: height // 2].any() and text_pixels[height // 2 :].any()


def test_deterministic() -> None:
    a = placeholder.render(320, 240, "end of file", WHEN)
    b = placeholder.render(320, 240, "end of file", WHEN)
    np.testing.assert_array_equal(a, b)


def test_depends_on_reason_and_time() -> None:
    base = placeholder.render(320, 240, "end of file", WHEN)
    assert not np.array_equal(base, placeholder.render(320, 240, "read timed out", WHEN))
    assert not np.array_equal(base, placeholder.render(320, 240, "end of file", WHEN + 60))


def test_shows_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same instant in two time zones must not render the same clock.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        utc = placeholder.render(320, 240, "x", WHEN)
        monkeypatch.setenv("TZ", "IST-5:30")  # POSIX rule: no tzdata needed
        time.tzset()
        india = placeholder.render(320, 240, "x", WHEN)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert not np.array_equal(utc, india)


def test_long_reason_stays_inside_the_frame() -> None:
    reason = "word " * 200 + "x" * 300
    image = placeholder.render(160, 120, reason, WHEN)
    background = image[0, 0]
    text_pixels = np.any(image != background, axis=2)
    assert not text_pixels[:, 0].any() and not text_pixels[:, -1].any()
    assert not text_pixels[-1].any()


def test_tiny_frame_does_not_crash() -> None:
    assert placeholder.render(16, 16, "x", WHEN).shape == (16, 16, 3)


def test_empty_reason() -> None:
    assert placeholder.render(160, 120, "", WHEN).shape == (120, 160, 3)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-1, 5)])
def test_rejects_empty_size(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        placeholder.render(width, height, "x", WHEN)
