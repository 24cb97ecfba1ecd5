"""The "NO SIGNAL" image served while the camera is lost."""

from __future__ import annotations

import time

import cv2
import numpy as np

_BACKGROUND = (40, 32, 32)  # BGR, dark slate
_TITLE_COLOUR = (80, 80, 230)  # BGR, soft red
_TEXT_COLOUR = (215, 215, 215)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TITLE = "NO SIGNAL"
_MAX_REASON_LINES = 3
_ELLIPSIS = "..."


def _fit_scale(text: str, max_width: float, max_height: float) -> float:
    """Largest font scale at which ``text`` fits in max_width x max_height."""
    (w, h), baseline = cv2.getTextSize(text, _FONT, 1.0, 1)
    return max(0.1, min(max_width / max(w, 1), max_height / max(h + baseline, 1)))


def _thickness(scale: float) -> int:
    return max(1, round(scale * 2))


def _text_width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, _FONT, scale, _thickness(scale))[0][0]


def _wrap(text: str, scale: float, max_width: int, max_lines: int) -> list[str]:
    """Greedy word wrap measured in pixels; long words are cut, overflow ends in '...'."""
    lines: list[str] = []
    current = ""
    words = text.split()
    i = 0
    while i < len(words) and len(lines) < max_lines:
        word = words[i]
        candidate = f"{current} {word}" if current else word
        if _text_width(candidate, scale) <= max_width:
            current = candidate
            i += 1
        elif current:
            lines.append(current)
            current = ""
        else:
            # A single word wider than the frame (a URL, a device path): hard-cut it.
            cut = len(word)
            while cut > 1 and _text_width(word[:cut], scale) > max_width:
                cut -= 1
            lines.append(word[:cut])
            words[i] = word[cut:]
    if current and len(lines) < max_lines:
        lines.append(current)
        current = ""
    if (i < len(words) or current) and lines:
        last = lines[-1]
        while last and _text_width(last + _ELLIPSIS, scale) > max_width:
            last = last[:-1]
        lines[-1] = last.rstrip() + _ELLIPSIS
    return lines


def _put_centred(
    image: np.ndarray, text: str, centre_y: int, scale: float, colour: tuple[int, int, int]
) -> None:
    thickness = _thickness(scale)
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    x = (image.shape[1] - w) // 2
    y = centre_y + h // 2
    cv2.putText(image, text, (x, y), _FONT, scale, colour, thickness, cv2.LINE_AA)


def render(width: int, height: int, reason: str, when: float) -> np.ndarray:
    """Return a width x height BGR image saying NO SIGNAL, the local time of ``when`` and why.

    The layout is proportional to the frame so it stays legible from 160x120 to 1920x1080,
    and the output depends only on the arguments (and the local timezone).
    """
    if width < 1 or height < 1:
        raise ValueError(f"placeholder size must be positive (got {width}x{height})")
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = _BACKGROUND

    margin = max(2, width // 20)
    usable = width - 2 * margin
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))

    title_scale = _fit_scale(_TITLE, usable, height * 0.22)
    # The time stamp is the widest fixed string; the reason uses the same (smaller) size.
    text_scale = min(_fit_scale(stamp, usable * 0.8, height * 0.075), title_scale * 0.5)

    _put_centred(image, _TITLE, int(height * 0.28), title_scale, _TITLE_COLOUR)
    _put_centred(image, stamp, int(height * 0.52), text_scale, _TEXT_COLOUR)

    (_, text_height), _ = cv2.getTextSize(stamp, _FONT, text_scale, _thickness(text_scale))
    line_height = max(int(text_height * 1.6), 1)
    reason_lines = _wrap(" ".join(reason.split()), text_scale, usable, _MAX_REASON_LINES)
    for n, line in enumerate(reason_lines):
        _put_centred(
            image, line, int(height * 0.52 + (n + 1.5) * line_height), text_scale, _TEXT_COLOUR
        )
    return image
