"""The test pattern: drawn only when wanted, its text never over the grey ramp."""

from __future__ import annotations

import math

import numpy as np
import pytest

from snapshot_stream.synthetic import SyntheticSource, ramp_height

# 0.9 t = pi puts the bouncing box at the top, away from the ramp.
BOX_AT_TOP = math.pi / 0.9


@pytest.mark.parametrize(
    ("width", "height"), [(640, 480), (160, 120), (1280, 720), (480, 640), (320, 96), (16, 16)]
)
def test_counter_is_above_the_ramp(width: int, height: int) -> None:
    source = SyntheticSource(width, height)
    image = source.render(BOX_AT_TOP, 1234567, 0.0)
    ramp = image[height - ramp_height(height) :]
    # Every row of the ramp is the same grey scale: nothing was drawn over it.
    assert (ramp == ramp[:1]).all(), "text drawn over the grey ramp"
    # ...and the counter is drawn, just above it (it differs between two frame numbers).
    other = source.render(BOX_AT_TOP, 7654321, 0.0)
    bars = height - ramp_height(height)
    rows = np.nonzero((image != other).any(axis=(1, 2)))[0]
    assert rows.size and rows.max() < bars
    if height >= 96:
        assert rows.min() > bars // 2  # the lowest of the three lines


def test_read_defers_the_drawing() -> None:
    source = SyntheticSource(320, 240)
    source.open()
    first = source.read()
    second = source.read()
    assert callable(first) and callable(second)
    a, b = first(), second()
    assert a.shape == b.shape == (240, 320, 3)
    # Each drawing shows its own frame, whenever it is drawn.
    np.testing.assert_array_equal(a, first())
    assert not np.array_equal(a, b)
