"""From what a source delivers to the JPEG clients get: passthrough, or decode and re-encode.

A camera's MJPEG frame that needs no change (size as configured, no rotation or flip, no
explicit --quality) is forwarded byte for byte. Anything else is decoded if needed, resized,
transformed and encoded at --quality. :meth:`FrameProcessor.prepare` does the cheap part at
once (is it a whole JPEG? can it pass through?) and returns the expensive part as a producer,
so the capture loop can leave it undone while nobody watches. The NO SIGNAL placeholder is
rendered here too, at the output size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from .. import jpeg as jpeglib
from .. import placeholder
from ..config import Config
from ..hub import Encoded, Producer
from ..transform import Transform


class BadFrame(Exception):
    """A frame that cannot be used (truncated JPEG, undecodable): dropped, not a loss."""


class FrameProcessor:
    """Turns source frames into JPEGs at the configured output size."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.transform = Transform(config.rotate, config.hflip, config.vflip)
        self.out_width, self.out_height = self.transform.output_size(config.width, config.height)
        # Re-encode JPEG sources only when asked to (explicit quality) or when we must.
        self.reencode = config.quality_explicit or not self.transform.identity

    def prepare(self, data: Any) -> Encoded | Producer:
        """The finished JPEG if it costs nothing (passthrough), else a producer making it.

        Raises BadFrame at once for what is certainly unusable; a producer raises BadFrame
        for a JPEG that turns out undecodable.
        """
        cfg = self.config
        if isinstance(data, bytes | bytearray | memoryview):
            trimmed = jpeglib.trim(data)
            if trimmed is None:
                raise BadFrame("truncated or tiny JPEG")
            if not self.reencode and jpeglib.dimensions(trimmed) == (cfg.width, cfg.height):
                return Encoded(trimmed, cfg.width, cfg.height, True)
            return lambda: self._encode(_decode(trimmed))
        if isinstance(data, np.ndarray):
            return lambda: self._encode(data)
        if callable(data):  # a source that draws its picture only when asked (synthetic)
            draw: Callable[[], np.ndarray] = data
            return lambda: self._encode(draw())
        raise BadFrame(f"unexpected frame type {type(data).__name__}")

    def process(self, data: Any) -> Encoded:
        """Everything :meth:`prepare` defers, done now."""
        prepared = self.prepare(data)
        return prepared if isinstance(prepared, Encoded) else prepared()

    def _encode(self, image: np.ndarray) -> Encoded:
        cfg = self.config
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
        return Encoded(encoded, self.out_width, self.out_height, False, took)

    def placeholder(self, reason: str, when: float) -> Producer:
        """A producer of the NO SIGNAL image saying ``reason``, its clock at ``when``."""

        def produce() -> Encoded:
            image = placeholder.render(self.out_width, self.out_height, reason, when)
            jpeg = jpeglib.encode(image, self.config.quality)
            return Encoded(jpeg, self.out_width, self.out_height, False)

        return produce


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadFrame("undecodable JPEG")
    return image
