"""JPEG helpers: encoding, sanity checks on camera-made JPEGs and header parsing."""

from __future__ import annotations

import cv2
import numpy as np

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
# Anything smaller is a camera glitch (a header with no scan data), not a picture.
MIN_JPEG_BYTES = 512

# SOF0..SOF15 are C0..CF except C4 (DHT), C8 (JPG extension) and CC (DAC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS = 0xDA


def encode(frame: np.ndarray, quality: int) -> bytes:
    """Encode a BGR (or grayscale) image as JPEG at ``quality`` (1-100)."""
    try:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    except cv2.error as exc:
        raise ValueError(f"cannot encode frame as JPEG: {exc}") from exc
    if not ok:
        raise ValueError("cannot encode frame as JPEG")
    return buf.tobytes()


def trim(data: bytes | bytearray | memoryview, min_bytes: int = MIN_JPEG_BYTES) -> bytes | None:
    """Return ``data`` as a complete JPEG, or None if it is truncated, tiny or not a JPEG.

    Some UVC cameras hand out the whole driver buffer, i.e. the JPEG followed by zero padding;
    the padding is stripped. A bytes input that needs no stripping is returned as is (no copy).
    """
    if isinstance(data, memoryview):
        # tobytes() flattens multi-dimensional views (e.g. of a 1xN numpy frame) too.
        data = data.tobytes()
    if len(data) < min_bytes:
        return None
    if data[-1] == 0:
        data = data.rstrip(b"\x00")
    if len(data) < min_bytes or not data.startswith(SOI) or not data.endswith(EOI):
        return None
    return data if isinstance(data, bytes) else bytes(data)


def dimensions(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """Return (width, height) from the JPEG's SOFn segment without decoding, or None."""
    mv = memoryview(data).cast("B") if isinstance(data, memoryview) else data
    size = len(mv)
    if size < 4 or mv[0] != 0xFF or mv[1] != 0xD8:
        return None
    pos = 2
    while pos + 1 < size:
        if mv[pos] != 0xFF:
            return None  # lost sync: not a well-formed marker sequence
        # Any number of 0xFF fill bytes may precede a marker.
        while pos < size and mv[pos] == 0xFF:
            pos += 1
        if pos >= size:
            return None
        marker = mv[pos]
        pos += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker in (_SOS, 0xD9):
            return None  # a frame header must come before the scan
        if pos + 2 > size:
            return None
        length = (mv[pos] << 8) | mv[pos + 1]
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if pos + 7 > size:
                return None
            height = (mv[pos + 3] << 8) | mv[pos + 4]
            width = (mv[pos + 5] << 8) | mv[pos + 6]
            # Height 0 means "defined later by a DNL segment": not worth supporting.
            return (width, height) if width and height else None
        pos += length
    return None
