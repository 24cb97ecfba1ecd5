"""The streamer's validated configuration (built by :mod:`snapshot_stream.cli`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .options import default, default_name


@dataclass(frozen=True)
class Config:
    """Everything the streamer needs; immutable once the CLI has validated it.

    One field per option of :data:`snapshot_stream.options.OPTIONS`, whose defaults it takes.
    """

    host: str = default("host")
    port: int = default("port")
    fps: float = default("fps")
    quality: int = default("quality")
    # True when --quality / SNAPSHOT_STREAM_QUALITY was given: forces re-encoding of JPEG sources.
    quality_explicit: bool = False
    buffersize: int = default("buffersize")
    width: int = default("width")
    height: int = default("height")
    device: str = default("device")
    source: str | None = default("source")
    rotate: int = default("rotate")
    hflip: bool = default("hflip")
    vflip: bool = default("vflip")
    max_clients: int = default("max_clients")
    idle_release: float = default("idle_release")
    name: str = field(default_factory=default_name)
    auth_user: str | None = default("auth_user")
    auth_hash: str | None = default("auth_hash")
    allow: str | None = default("allow")
    log_level: str = default("log_level")
    # Connections held at once (any request, streams included), in total and per address
    # (an IPv6 /64 counts as one address).
    max_connections: int = default("max_connections")
    max_per_address: int = default("max_per_address")
    # (name, value) pairs, applied on every open of a V4L2 camera (snapshot_stream.controls).
    controls: tuple[tuple[str, str], ...] = default("controls")

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
