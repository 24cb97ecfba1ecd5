"""A moving test pattern with a clock, for demos and tests (``--source synthetic``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np

_BARS = (
    (192, 192, 192),
    (0, 192, 192),
    (192, 192, 0),
    (0, 192, 0),
    (192, 0, 192),
    (0, 0, 192),
    (192, 0, 0),
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Where the three text lines (label, clock, frame counter) are centred, as fractions of the
# height of the bars (the grey ramp below them is left alone).
_ROWS = (0.25, 0.55, 0.82)


def ramp_height(height: int) -> int:
    """Height of the grey ramp along the bottom (a sixth of the picture)."""
    return max(1, height // 6)


def _bars(width: int, height: int) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    step = max(1, width // len(_BARS))
    for i, colour in enumerate(_BARS):
        image[:, i * step : (i + 1) * step if i < len(_BARS) - 1 else width] = colour
    # A grey ramp along the bottom shows banding and compression artefacts.
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    image[height - ramp_height(height) :, :] = ramp[None, :, None]
    return image


class SyntheticSource:
    """Colour bars scrolling sideways, a bouncing box and the time: obviously not a camera.

    read() only notes the time and the frame number and returns a function that draws the
    picture: the capture loop calls it when somebody wants the frame, so an unwatched test
    pattern costs next to nothing.
    """

    def __init__(self, width: int, height: int, label: str = "TEST PATTERN") -> None:
        self.width = width
        self.height = height
        self.label = label
        self._base = _bars(width, height)
        self._start = time.monotonic()
        self._count = 0
        self._scale = max(0.3, min(width / 640.0, height / 480.0) * 1.2)

    def open(self) -> None:
        self._start = time.monotonic()

    def describe(self) -> str:
        return "synthetic"

    def read(self) -> Callable[[], np.ndarray]:
        self._count += 1
        t, count, now = time.monotonic() - self._start, self._count, time.time()
        return lambda: self.render(t, count, now)

    def render(self, t: float, count: int, now: float) -> np.ndarray:
        """The picture ``t`` seconds after open(), showing frame ``count`` and clock ``now``."""
        w, h = self.width, self.height
        shift = int(t * w / 8) % w
        image = np.roll(self._base, shift, axis=1)
        box = max(4, min(w, h) // 8)
        x = int((np.sin(t * 1.3) + 1) / 2 * (w - box))
        y = int((np.cos(t * 0.9) + 1) / 2 * (h - box))
        cv2.rectangle(image, (x, y), (x + box, y + box), (255, 255, 255), -1)
        clock = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 10) % 10}"
        thickness = max(1, round(self._scale * 2))
        outline = thickness + 2
        bars = h - ramp_height(h)
        for text, row in zip((self.label, clock, f"#{count}"), _ROWS, strict=True):
            (tw, th), baseline = cv2.getTextSize(text, _FONT, self._scale, outline)
            # The outline reaches about half its thickness below the baseline: keep the text
            # above the ramp whatever the size.
            bottom_limit = bars - 1 - baseline - outline // 2
            org = (max(0, (w - tw) // 2), min(int(bars * row) + th // 2, bottom_limit))
            cv2.putText(image, text, org, _FONT, self._scale, (0, 0, 0), outline, cv2.LINE_AA)
            cv2.putText(
                image, text, org, _FONT, self._scale, (255, 255, 255), thickness, cv2.LINE_AA
            )
        return image

    def close(self) -> None:
        pass
