"""The streamer's options table: each option's name, parser (with its allowed values), default
and help, written once.

Standard library only, and no imports from this package: besides :mod:`snapshot_stream.cli`
(flags, ``SNAPSHOT_STREAM_*`` variables, ``--help``) and :class:`snapshot_stream.config.Config`
(its defaults), the Ansible roles load this file by path on the controller, where the app's
dependencies are not installed, to check an inventory with the same rules and messages
(roles/snapshot_stream_common/filter_plugins/camera_model.py).

Adding an option is one :class:`Option` entry in :data:`OPTIONS` and one field in ``Config``.
Its name is also the camera key of the Ansible role (``snapshot_stream_cameras``), whose
argument specs list it (tests/test_camera_model.py checks both).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "SNAPSHOT_STREAM_"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
URL_SCHEMES = ("http://", "https://", "rtsp://", "rtsps://")


class Invalid(ValueError):
    """A bad value; the message completes '<flag, variable or camera key> ...'."""


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Integer:
    """A whole number from ``lo`` to ``hi``."""

    lo: int
    hi: int

    @property
    def allowed(self) -> str:
        return f"{self.lo}-{self.hi}"

    def __call__(self, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise Invalid(f"must be an integer between {self.lo} and {self.hi}") from None
        if not self.lo <= value <= self.hi:
            raise Invalid(f"must be between {self.lo} and {self.hi}")
        return value


@dataclass(frozen=True)
class Rate:
    """A number above 0, at most ``hi`` (fractions allowed: 0.5 is a frame every 2 s)."""

    hi: float

    @property
    def allowed(self) -> str:
        return f"> 0 and <= {self.hi:g}"

    def __call__(self, raw: str) -> float:
        value = _number(raw)
        if value is None:
            raise Invalid(f"must be a number above 0 and at most {self.hi:g}")
        if not 0 < value <= self.hi:
            raise Invalid(f"must be above 0 and at most {self.hi:g}")
        return value


@dataclass(frozen=True)
class Seconds:
    """A duration in seconds, 0 meaning off."""

    @property
    def allowed(self) -> str:
        return "seconds >= 0, 0 = off"

    def __call__(self, raw: str) -> float:
        value = _number(raw)
        if value is None or value < 0:
            raise Invalid("must be a number of seconds >= 0 (0 = off)")
        return value


@dataclass(frozen=True)
class Choice:
    """One of ``values``: whole numbers, or words compared case-insensitively."""

    values: tuple[int, ...] | tuple[str, ...]

    @property
    def allowed(self) -> str:
        return ", ".join(str(v) for v in self.values)

    def __call__(self, raw: str) -> Any:
        value: int | str = raw.strip().lower()
        if all(isinstance(v, int) for v in self.values):
            with contextlib.suppress(ValueError):
                value = int(value)
        if value not in self.values:
            raise Invalid(f"must be one of {self.allowed}")
        return value


@dataclass(frozen=True)
class Boolean:
    @property
    def allowed(self) -> str:
        return "1/0, true/false, yes/no, on/off"

    def __call__(self, raw: str) -> bool:
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise Invalid(f"must be a boolean ({self.allowed})")


@dataclass(frozen=True)
class Controls:
    """V4L2 controls as NAME=VALUE pairs, comma-separated: ``focus_absolute=40,gain=10``.

    Only the shape is checked here; which names and values exist, the camera tells when it is
    opened (snapshot_stream.controls). Returns the pairs in the order given.
    """

    @property
    def allowed(self) -> str:
        return "NAME=VALUE pairs, comma-separated, names as v4l2-ctl prints them"

    def __call__(self, raw: str) -> tuple[tuple[str, str], ...]:
        pairs: list[tuple[str, str]] = []
        for item in raw.split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not value:
                raise Invalid(
                    f"must be NAME=VALUE pairs separated by commas (got {item.strip()!r})"
                )
            if not name or any(not (c.isascii() and (c.isalnum() or c == "_")) for c in name):
                raise Invalid(f"must name controls as v4l2-ctl prints them (got {name!r})")
            if name != name.lower():
                raise Invalid(f"must name controls in lower case, as v4l2-ctl does (got {name!r})")
            if any(name == seen for seen, _ in pairs):
                raise Invalid(f"names {name} twice")
            pairs.append((name, value))
        return tuple(pairs)


@dataclass(frozen=True)
class Text:
    """Free text checked by ``check`` (which returns the value or None when it is bad)."""

    allowed: str
    check: Callable[[str], str | None]
    message: str

    def __call__(self, raw: str) -> str:
        value = self.check(raw.strip())
        if value is None:
            raise Invalid(self.message)
        return value


def _hosts(text: str) -> str | None:
    hosts = [h.strip() for h in text.split(",")]
    if any(not h or any(c.isspace() or c in "/?#@" for c in h) for h in hosts):
        return None
    return ",".join(hosts)


def _device(text: str) -> str | None:
    return text if text == "auto" or text.startswith("/") else None


def _source(text: str) -> str | None:
    if text == "synthetic" or text.lower().startswith(URL_SCHEMES):
        return text
    return text if text and os.path.isfile(text) else None


def _name(text: str) -> str | None:
    return text if text and len(text) <= 64 and text.isprintable() else None


def _nonempty(text: str) -> str | None:
    return text or None


Parser = Integer | Rate | Seconds | Choice | Boolean | Controls | Text


def default_name() -> str:
    """The default --name: the machine's host name."""
    return socket.gethostname() or "camera"


@dataclass(frozen=True)
class Option:
    """One setting: ``--flag``, ``SNAPSHOT_STREAM_<NAME>``, ``Config.<name>``, camera key."""

    name: str
    parse: Parser
    help: str
    # None: unset. A callable is called for each Config (the host name).
    default: object = None
    # Whether a value can only be checked on the machine that runs the app (an existing file):
    # the Ansible roles leave those to `snapshot-stream check-env` on the Pi.
    checked_on_target: bool = False
    # The option that makes this one pointless when both are given (--source beats --device).
    ignored_with: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def is_bool(self) -> bool:
        return isinstance(self.parse, Boolean)

    @property
    def shown_default(self) -> str:
        if self.default is None or self.default == ():
            return "unset"
        if callable(self.default):
            return "the host name" if self.default is default_name else "computed"
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    @property
    def help_text(self) -> str:
        """The --help line: what it is, what it takes and its default."""
        parts = [] if self.is_bool else [self.parse.allowed]
        if self.default is not None and self.default != () and not self.is_bool:
            parts.append(f"default {self.shown_default}")
        if self.ignored_with:
            parts.append(f"ignored with --{self.ignored_with.replace('_', '-')}")
        return f"{self.help} ({'; '.join(parts)})" if parts else self.help


_HOST = Text(
    "addresses or host names, comma-separated",
    _hosts,
    "must be an address or host name, or a comma-separated list of them",
)
_DEVICE = Text(
    "auto or a device path", _device, "must be 'auto' or a device path such as /dev/video0"
)
_SOURCE = Text(
    "synthetic, a video file or an http(s)/rtsp URL",
    _source,
    "must be 'synthetic', an existing video file or an http(s)/rtsp URL",
)
_NAME = Text("1-64 printable characters", _name, "must be 1-64 printable characters")


def _text(allowed: str) -> Text:
    return Text(allowed, _nonempty, "must not be empty")


OPTIONS: tuple[Option, ...] = (
    Option("host", _HOST, "address(es) to bind", default="0.0.0.0"),
    Option("port", Integer(1, 65535), "TCP port", default=8080),
    Option("fps", Rate(30), "frames per second", default=25.0),
    Option("quality", Integer(1, 100), "JPEG quality", default=30),
    Option("buffersize", Integer(1, 10), "OpenCV capture buffer, frames", default=1),
    Option("width", Integer(16, 4096), "frame width", default=640),
    Option("height", Integer(16, 4096), "frame height", default=480),
    Option("device", _DEVICE, "camera to open", default="auto", ignored_with="source"),
    Option("source", _SOURCE, "what to stream instead of a camera", checked_on_target=True),
    Option("rotate", Choice((0, 90, 180, 270)), "rotate clockwise, degrees", default=0),
    Option("hflip", Boolean(), "mirror horizontally", default=False),
    Option("vflip", Boolean(), "flip vertically", default=False),
    Option("max_clients", Integer(1, 1024), "concurrent /stream clients", default=100),
    Option("idle_release", Seconds(), "release the camera after N s without clients", default=0.0),
    Option("name", _NAME, "camera name", default=default_name),
    Option("auth_user", _text("a user name; needs --auth-hash"), "HTTP Basic user"),
    Option("auth_hash", _text("output of `snapshot-stream hash-password`"), "its password hash"),
    Option(
        "allow", _text("CIDRs, comma-separated"), "clients allowed to connect; loopback always is"
    ),
    Option("log_level", Choice(("debug", "info", "warning", "error")), "log level", default="info"),
    Option(
        "max_connections",
        Integer(16, 4096),
        "open connections in total, streams included",
        default=512,
    ),
    Option(
        "max_per_address",
        Integer(1, 4096),
        "open connections per client address or IPv6 /64",
        default=32,
    ),
    Option("controls", Controls(), "V4L2 controls set on every open of the camera", default=()),
)

BY_NAME: dict[str, Option] = {opt.name: opt for opt in OPTIONS}
BY_ENV: dict[str, Option] = {opt.env: opt for opt in OPTIONS}


def default(name: str) -> Any:
    """The default of option ``name`` (what ``Config`` uses when the option is not given)."""
    return BY_NAME[name].default


def pair_problems(given: Mapping[str, object], label: Callable[[str], str]) -> list[str]:
    """Settings that need a partner: the Basic user and its password hash go together.

    ``given`` maps option names to their (parsed or raw) values; ``label`` names an option the
    way the caller's user wrote it (``--auth-user``, or the camera key ``auth_user``).
    """
    problems = []
    if given.get("auth_user") and not given.get("auth_hash"):
        problems.append(
            f"{label('auth_user')} requires {label('auth_hash')} "
            "(see `snapshot-stream hash-password`)"
        )
    if given.get("auth_hash") and not given.get("auth_user"):
        problems.append(f"{label('auth_hash')} requires {label('auth_user')}")
    return problems


def unused(given: Iterable[str]) -> set[str]:
    """The options among ``given`` that take no effect because another one given wins."""
    names = set(given)
    return {n for n in names if BY_NAME[n].ignored_with in names}
