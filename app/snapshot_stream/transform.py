"""Rotation and mirroring of camera images.

Order: the flips are applied to the camera image first, then the clockwise rotation, so
``--hflip`` always means "mirror what the sensor sees" whatever the mounting angle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

_Op = Callable[[np.ndarray], np.ndarray]


def _identity(frame: np.ndarray) -> np.ndarray:
    return frame


def _cw(frame: np.ndarray) -> np.ndarray:
    return cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)


def _ccw(frame: np.ndarray) -> np.ndarray:
    return cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE)


def _rot180(frame: np.ndarray) -> np.ndarray:
    return cv2.flip(frame, -1)


def _hflip(frame: np.ndarray) -> np.ndarray:
    return cv2.flip(frame, 1)


def _vflip(frame: np.ndarray) -> np.ndarray:
    return cv2.flip(frame, 0)


def _transpose(frame: np.ndarray) -> np.ndarray:
    return cv2.transpose(frame)


def _antitranspose(frame: np.ndarray) -> np.ndarray:
    # The only one of the 8 orientations that OpenCV cannot do in a single call.
    return cv2.flip(cv2.transpose(frame), -1)


# (rotate, hflip, vflip) -> a single equivalent operation. The 16 combinations collapse to
# the 8 symmetries of a rectangle, so each frame is copied once instead of up to three times.
_OPS: dict[tuple[int, bool, bool], _Op] = {
    (0, False, False): _identity,
    (0, False, True): _vflip,
    (0, True, False): _hflip,
    (0, True, True): _rot180,
    (90, False, False): _cw,
    (90, False, True): _transpose,
    (90, True, False): _antitranspose,
    (90, True, True): _ccw,
    (180, False, False): _rot180,
    (180, False, True): _hflip,
    (180, True, False): _vflip,
    (180, True, True): _identity,
    (270, False, False): _ccw,
    (270, False, True): _antitranspose,
    (270, True, False): _transpose,
    (270, True, True): _cw,
}


@dataclass(frozen=True)
class Transform:
    """Mirror (``hflip``/``vflip``) and then rotate clockwise by ``rotate`` degrees."""

    rotate: int = 0
    hflip: bool = False
    vflip: bool = False

    def __post_init__(self) -> None:
        # The operations table knows the rotations; the CLI's options table already refused others.
        if (self.rotate, False, False) not in _OPS:
            turns = sorted({r for r, _, _ in _OPS})
            raise ValueError(f"rotate must be one of {turns} (got {self.rotate})")

    @property
    def _op(self) -> _Op:
        return _OPS[(self.rotate, bool(self.hflip), bool(self.vflip))]

    @property
    def identity(self) -> bool:
        """True when apply() returns its input unchanged (e.g. rotate 180 + both flips)."""
        return self._op is _identity

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Return the transformed image; the input itself when ``identity``."""
        return self._op(frame)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """Size (width, height) of the image apply() makes from a width x height input."""
        if self.rotate in (90, 270):
            return height, width
        return width, height
