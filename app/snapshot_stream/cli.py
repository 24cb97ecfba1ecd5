"""Command line: flags (with SNAPSHOT_STREAM_* environment fallbacks), validation, subcommands."""

from __future__ import annotations

import argparse
import getpass
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from .config import Config

PROG = "snapshot-stream"
ENV_PREFIX = "SNAPSHOT_STREAM_"
LOG_LEVELS = ("debug", "info", "warning", "error")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
URL_SCHEMES = ("http://", "https://", "rtsp://", "rtsps://")


class Invalid(ValueError):
    """A bad value; the message completes '<flag or env var> ...'."""


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise Invalid(f"must be an integer between {lo} and {hi}") from None
        if not lo <= value <= hi:
            raise Invalid(f"must be between {lo} and {hi}")
        return value

    return parse


def _fps(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise Invalid("must be a number between 1 and 30") from None
    if not math.isfinite(value) or not 0 < value <= 30:
        raise Invalid("must be between 1 and 30")
    return value


def _seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise Invalid("must be a number of seconds >= 0 (0 = off)") from None
    if not math.isfinite(value) or value < 0:
        raise Invalid("must be a number of seconds >= 0 (0 = off)")
    return value


def _rotate(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value not in (0, 90, 180, 270):
        raise Invalid("must be one of 0, 90, 180, 270")
    return value


def _bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Invalid("must be a boolean (1/0, true/false, yes/no, on/off)")


def _host(raw: str) -> str:
    hosts = [h.strip() for h in raw.split(",")]
    if not hosts or any(not h or any(c.isspace() or c in "/?#@" for c in h) for h in hosts):
        raise Invalid("must be an address or host name, or a comma-separated list of them")
    return ",".join(hosts)


def _device(raw: str) -> str:
    value = raw.strip()
    if not value or (value != "auto" and not value.startswith("/")):
        raise Invalid("must be 'auto' or a device path such as /dev/video0")
    return value


def _source(raw: str) -> str:
    value = raw.strip()
    if value == "synthetic" or value.lower().startswith(URL_SCHEMES):
        return value
    if value and os.path.isfile(value):
        return value
    raise Invalid("must be 'synthetic', an existing video file or an http(s)/rtsp URL")


def _name(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 64 or not value.isprintable():
        raise Invalid("must be 1-64 printable characters")
    return value


def _text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise Invalid("must not be empty")
    return value


def _log_level(raw: str) -> str:
    value = raw.strip().lower()
    if value not in LOG_LEVELS:
        raise Invalid("must be one of " + ", ".join(LOG_LEVELS))
    return value


def _controls(raw: str) -> tuple[tuple[str, str], ...]:
    from .controls import parse_spec

    try:
        return parse_spec(raw)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


@dataclass(frozen=True)
class _Option:
    flag: str
    parse: Callable[[str], Any]
    help: str
    is_bool: bool = False

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


OPTIONS: tuple[_Option, ...] = (
    _Option("--host", _host, "address(es) to bind, comma-separated (default 0.0.0.0)"),
    _Option("--port", _int_range(1, 65535), "TCP port (default 8080)"),
    _Option("--fps", _fps, "frames per second, at most 30 (default 25)"),
    _Option("--quality", _int_range(1, 100), "JPEG quality 1-100 (default 30)"),
    _Option("--buffersize", _int_range(1, 10), "OpenCV capture buffer, frames (default 1)"),
    _Option("--width", _int_range(16, 4096), "frame width (default 640)"),
    _Option("--height", _int_range(16, 4096), "frame height (default 480)"),
    _Option("--device", _device, "'auto' (default) or a V4L2 device path"),
    _Option("--source", _source, "'synthetic', a video file or an http(s)/rtsp URL"),
    _Option("--rotate", _rotate, "rotate clockwise: 0, 90, 180 or 270 (default 0)"),
    _Option("--hflip", _bool, "mirror horizontally", is_bool=True),
    _Option("--vflip", _bool, "flip vertically", is_bool=True),
    _Option("--max-clients", _int_range(1, 1024), "concurrent /stream clients (default 16)"),
    _Option("--idle-release", _seconds, "release the camera after N s without clients (0=off)"),
    _Option("--name", _name, "camera name (default: host name)"),
    _Option("--auth-user", _text, "HTTP Basic user (needs --auth-hash)"),
    _Option("--auth-hash", _text, "password hash from `snapshot-stream hash-password`"),
    _Option("--allow", _text, "comma-separated CIDRs allowed to connect (loopback always)"),
    _Option("--log-level", _log_level, "debug, info, warning or error (default info)"),
    _Option(
        "--controls",
        _controls,
        "V4L2 controls set on every open, e.g. focus_automatic_continuous=0,focus_absolute=40 "
        "(names as `snapshot-stream controls DEVICE` prints them)",
    ),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line: no usage dump, so the reason is what a journal shows.
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="MJPEG snapshot streamer for USB cameras. Every flag can also be set with "
        "the environment variable SNAPSHOT_STREAM_<FLAG> (e.g. SNAPSHOT_STREAM_FPS); "
        "flags win. Subcommands: `snapshot-stream hash-password`, "
        "`snapshot-stream controls DEVICE`.",
    )
    for opt in OPTIONS:
        if opt.is_bool:
            parser.add_argument(opt.flag, action="store_true", default=None, help=opt.help)
        else:
            parser.add_argument(opt.flag, default=None, metavar=opt.dest.upper(), help=opt.help)
    return parser


def parse_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse flags and environment into a Config; exits 2 with one line on a bad value."""
    env = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(list(argv))
    values: dict[str, Any] = {}
    given: set[str] = set()
    for opt in OPTIONS:
        raw = getattr(args, opt.dest)
        name = opt.flag
        if raw is None:
            if opt.env not in env:
                continue
            raw, name = env[opt.env], opt.env
        elif opt.is_bool:
            values[opt.dest] = True
            given.add(opt.dest)
            continue
        try:
            values[opt.dest] = opt.parse(raw)
        except Invalid as exc:
            parser.error(f"{name} {exc} (got {_shown(raw)})")
        given.add(opt.dest)
    if "quality" in given:
        values["quality_explicit"] = True
    if values.get("auth_user") and not values.get("auth_hash"):
        parser.error("--auth-user requires --auth-hash (see `snapshot-stream hash-password`)")
    if values.get("auth_hash") and not values.get("auth_user"):
        parser.error("--auth-hash requires --auth-user")
    _check_auth(parser, values)
    return Config(**values)


def _check_auth(parser: argparse.ArgumentParser, values: dict[str, Any]) -> None:
    from .auth import BasicAuth, parse_networks

    try:
        if values.get("allow"):
            parse_networks(values["allow"])
        if values.get("auth_user"):
            BasicAuth(values["auth_user"], values["auth_hash"])
    except ValueError as exc:
        parser.error(str(exc))


def _shown(raw: str) -> str:
    text = raw if len(raw) <= 60 else raw[:57] + "..."
    return text.encode("unicode_escape").decode("ascii")


def hash_password_main(argv: Sequence[str]) -> int:
    parser = _Parser(
        prog=f"{PROG} hash-password",
        description="Read a password (prompt, or first line of stdin) and print its hash for "
        "--auth-hash / SNAPSHOT_STREAM_AUTH_HASH.",
    )
    parser.parse_args(list(argv))
    from .auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat: "):
            print(f"{PROG}: error: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print(f"{PROG}: error: empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "hash-password":
        return hash_password_main(args[1:])
    if args and args[0] == "controls":
        from .controls import controls_main

        return controls_main(args[1:], PROG)
    config = parse_config(args)
    from .server import configure_logging, run

    configure_logging(config.log_level)
    return run(config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
