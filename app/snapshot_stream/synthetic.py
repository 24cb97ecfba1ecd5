"""A moving test pattern with a clock, for demos and tests (``--source synthetic``)."""

from __future__ import annotations

import time

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


def _bars(width: int, height: int) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    step = max(1, width // len(_BARS))
    for i, colour in enumerate(_BARS):
        image[:, i * step : (i + 1) * step if i < len(_BARS) - 1 else width] = colour
    # A grey ramp along the bottom sixth shows banding and compression artefacts.
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    image[height - max(1, height // 6) :, :] = ramp[None, :, None]
    return image


class SyntheticSource:
    """Colour bars scrolling sideways, a bouncing box and the time: obviously not a camera."""

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

    def read(self) -> np.ndarray:
        self._count += 1
        t = time.monotonic() - self._start
        w, h = self.width, self.height
        shift = int(t * w / 8) % w
        image = np.roll(self._base, shift, axis=1)
        box = max(4, min(w, h) // 8)
        x = int((np.sin(t * 1.3) + 1) / 2 * (w - box))
        y = int((np.cos(t * 0.9) + 1) / 2 * (h - box))
        cv2.rectangle(image, (x, y), (x + box, y + box), (255, 255, 255), -1)
        now = time.time()
        clock = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 10) % 10}"
        thickness = max(1, round(self._scale * 2))
        for text, row in ((self.label, 0.25), (clock, 0.55), (f"#{self._count}", 0.8)):
            (tw, th), _ = cv2.getTextSize(text, _FONT, self._scale, thickness)
            org = (max(0, (w - tw) // 2), int(h * row) + th // 2)
            cv2.putText(image, text, org, _FONT, self._scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
            cv2.putText(
                image, text, org, _FONT, self._scale, (255, 255, 255), thickness, cv2.LINE_AA
            )
        return image

    def close(self) -> None:
        pass
