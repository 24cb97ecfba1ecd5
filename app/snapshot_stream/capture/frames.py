"""From what a source delivers to the JPEG clients get: passthrough, or decode and re-encode.

A camera's MJPEG frame that needs no change (size as configured, no rotation or flip, no
explicit --quality) is forwarded byte for byte. Anything else is decoded if needed, resized,
transformed and encoded at --quality. The NO SIGNAL placeholder is rendered here too, at the
output size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .. import jpeg as jpeglib
from .. import placeholder
from ..config import Config
from ..transform import Transform


class BadFrame(Exception):
    """A frame that cannot be used (truncated JPEG, undecodable): dropped, not a loss."""


@dataclass(frozen=True, slots=True)
class Processed:
    """A frame ready to publish."""

    jpeg: bytes
    width: int
    height: int
    passthrough: bool
    encode_seconds: float = 0.0  # time spent in the JPEG encoder (0 for passthrough)


class FrameProcessor:
    """Turns source frames into JPEGs at the configured output size."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.transform = Transform(config.rotate, config.hflip, config.vflip)
        self.out_width, self.out_height = self.transform.output_size(config.width, config.height)
        # Re-encode JPEG sources only when asked to (explicit quality) or when we must.
        self.reencode = config.quality_explicit or not self.transform.identity

    def process(self, data: Any) -> Processed:
        """Return the JPEG for what the source delivered; BadFrame if it cannot be used."""
        cfg = self.config
        if isinstance(data, bytes | bytearray | memoryview):
            trimmed = jpeglib.trim(data)
            if trimmed is None:
                raise BadFrame("truncated or tiny JPEG")
            if not self.reencode and jpeglib.dimensions(trimmed) == (cfg.width, cfg.height):
                return Processed(trimmed, cfg.width, cfg.height, True)
            image = cv2.imdecode(np.frombuffer(trimmed, dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise BadFrame("undecodable JPEG")
        elif isinstance(data, np.ndarray):
            image = data
        else:
            raise BadFrame(f"unexpected frame type {type(data).__name__}")
        if image.ndim < 2 or image.size == 0:
            raise BadFrame("empty image")
        if image.shape[0] != cfg.height or image.shape[1] != cfg.width:
            image = cv2.resize(image, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA)
        image = self.transform.apply(image)
        start = time.perf_counter()
        try:
            encoded = jpeglib.encode(image, cfg.quality)
        except ValueError as exc:
            raise BadFrame(str(exc)) from exc
        took = time.perf_counter() - start
        return Processed(encoded, self.out_width, self.out_height, False, took)

    def placeholder(self, reason: str, when: float) -> bytes:
        """The NO SIGNAL image saying ``reason``, clock at ``when``, as a JPEG."""
        image = placeholder.render(self.out_width, self.out_height, reason, when)
        return jpeglib.encode(image, self.config.quality)
