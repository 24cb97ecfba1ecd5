"""The streamer's validated configuration (built by :mod:`snapshot_stream.cli`)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


def _hostname() -> str:
    return socket.gethostname() or "camera"


@dataclass(frozen=True)
class Config:
    """Everything the streamer needs; immutable once the CLI has validated it."""

    host: str = "0.0.0.0"
    port: int = 8080
    fps: float = 25.0
    quality: int = 30
    # True when --quality / SNAPSHOT_STREAM_QUALITY was given: forces re-encoding of JPEG sources.
    quality_explicit: bool = False
    buffersize: int = 1
    width: int = 640
    height: int = 480
    device: str = "auto"
    source: str | None = None
    rotate: int = 0
    hflip: bool = False
    vflip: bool = False
    max_clients: int = 16
    idle_release: float = 0.0
    name: str = field(default_factory=_hostname)
    auth_user: str | None = None
    auth_hash: str | None = None
    allow: str | None = None
    log_level: str = "info"
    # (name, value) pairs from --controls, applied on every open of a V4L2 camera.
    controls: tuple[tuple[str, str], ...] = ()

    @property
    def hosts(self) -> list[str]:
        """The addresses to bind (--host accepts a comma-separated list)."""
        return [h.strip() for h in self.host.split(",") if h.strip()]

    @property
    def period(self) -> float:
        """Seconds between two captured frames."""
        return 1.0 / self.fps

    @property
    def fresh_limit(self) -> float:
        """A frame older than this is stale: max(2 s, 3 frame periods)."""
        return max(2.0, 3.0 * self.period)

    @property
    def read_timeout(self) -> float:
        """A source read that takes longer than this is a hung source: max(3 s, 5 periods)."""
        return max(3.0, 5.0 * self.period)
