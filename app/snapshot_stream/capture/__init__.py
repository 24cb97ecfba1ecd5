"""Capture: one thread reads the source, turns each frame into a JPEG once, publishes it.

- :mod:`.loop` — the capture loop (timing, reopening, idle release, the watchdog);
- :mod:`.state` — the state machine and what each change logs;
- :mod:`.frames` — passthrough or decode/resize/transform/encode, and the NO SIGNAL image;
- :mod:`.worker` — the thread that runs the source's blocking calls under a timeout.
"""

from .frames import BadFrame, FrameProcessor
from .loop import Capture
from .state import IDLE, NO_SIGNAL, STARTING, STREAMING

__all__ = [
    "IDLE",
    "NO_SIGNAL",
    "STARTING",
    "STREAMING",
    "BadFrame",
    "Capture",
    "FrameProcessor",
]
