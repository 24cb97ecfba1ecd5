from __future__ import annotations

import itertools

import numpy as np
import pytest

from snapshot_stream.transform import Transform

COMBINATIONS = list(itertools.product((0, 90, 180, 270), (False, True), (False, True)))


def reference(frame: np.ndarray, rotate: int, hflip: bool, vflip: bool) -> np.ndarray:
    """The documented order, step by step: flips first, then clockwise rotation."""
    if hflip:
        frame = frame[:, ::-1]
    if vflip:
        frame = frame[::-1]
    return np.rot90(frame, k=-rotate // 90)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    # Non-square and every pixel distinct, so any wrong orientation shows.
    return np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)


@pytest.mark.parametrize(("rotate", "hflip", "vflip"), COMBINATIONS)
def test_apply_matches_flip_then_rotate(frame, rotate, hflip, vflip) -> None:
    t = Transform(rotate=rotate, hflip=hflip, vflip=vflip)
    out = t.apply(frame)
    np.testing.assert_array_equal(out, reference(frame, rotate, hflip, vflip))
    assert (out.shape[1], out.shape[0]) == t.output_size(5, 3)


def test_rotate_90_is_clockwise(frame) -> None:
    out = Transform(rotate=90).apply(frame)
    # Clockwise: the bottom-left pixel of the input becomes the top-left one.
    np.testing.assert_array_equal(out[0, 0], frame[-1, 0])


@pytest.mark.parametrize(("rotate", "hflip", "vflip"), COMBINATIONS)
def test_identity(frame, rotate, hflip, vflip) -> None:
    t = Transform(rotate=rotate, hflip=hflip, vflip=vflip)
    expected = np.array_equal(reference(frame, rotate, hflip, vflip), frame)
    assert t.identity is expected
    if t.identity:
        assert t.apply(frame) is frame


def test_grayscale_frames(frame) -> None:
    gray = frame[:, :, 0].copy()
    np.testing.assert_array_equal(
        Transform(rotate=270, hflip=True).apply(gray), reference(gray, 270, True, False)
    )


@pytest.mark.parametrize("rotate", [-90, 45, 360, 1])
def test_invalid_rotation(rotate) -> None:
    with pytest.raises(ValueError, match="rotate must be"):
        Transform(rotate=rotate)


@pytest.mark.parametrize(
    ("rotate", "expected"),
    [(0, (640, 480)), (90, (480, 640)), (180, (640, 480)), (270, (480, 640))],
)
def test_output_size(rotate, expected) -> None:
    assert Transform(rotate=rotate).output_size(640, 480) == expected


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        Transform().rotate = 90  # type: ignore[misc]
