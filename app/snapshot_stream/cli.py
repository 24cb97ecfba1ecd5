"""Command line: flags (with SNAPSHOT_STREAM_* environment fallbacks), validation, subcommands."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from .config import Config
from .logtext import log_safe
from .options import BY_NAME, OPTIONS, Invalid, pair_problems

PROG = "snapshot-stream"


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
        "`snapshot-stream check-env FILE`, `snapshot-stream controls DEVICE`.",
    )
    for opt in OPTIONS:
        if opt.is_bool:
            parser.add_argument(opt.flag, action="store_true", default=None, help=opt.help_text)
        else:
            parser.add_argument(
                opt.flag, default=None, metavar=opt.name.upper(), help=opt.help_text
            )
    return parser


def parse_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse flags and environment into a Config; exits 2 with one line on a bad value."""
    env = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(list(argv))
    values: dict[str, Any] = {}
    given: set[str] = set()
    for opt in OPTIONS:
        raw = getattr(args, opt.name)
        name = opt.flag
        if raw is None:
            if opt.env not in env:
                continue
            raw, name = env[opt.env], opt.env
        elif opt.is_bool:
            values[opt.name] = True
            given.add(opt.name)
            continue
        try:
            values[opt.name] = opt.parse(raw)
        except Invalid as exc:
            parser.error(f"{name} {exc} (got {log_safe(raw, 57)})")
        given.add(opt.name)
    if "quality" in given:
        values["quality_explicit"] = True
    for problem in pair_problems(values, lambda name: BY_NAME[name].flag):
        parser.error(problem)
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


# systemd's EnvironmentFile= syntax, as far as the role's NAME.env files and hand-written ones use
# it: VARIABLE=value, the value optionally in single or double quotes; # and ; start comments.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_env_file(path: str) -> dict[str, str]:
    """The variables of an environment file; ValueError names the first line it cannot read."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    env: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text[0] in "#;":
            continue
        key, eq, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not _ENV_NAME.fullmatch(key):
            raise ValueError(f"{path} line {number}: not a VARIABLE=value line")
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif value[:1] in ("'", '"'):
            raise ValueError(f"{path} line {number}: unterminated quote")
        env[key] = value
    return env


def check_env_main(argv: Sequence[str]) -> int:
    parser = _Parser(
        prog=f"{PROG} check-env",
        description="Check an environment file (systemd EnvironmentFile=, such as "
        "/etc/snapshot-stream/NAME.env) as the service would read it: exit 0 when the service "
        "would start with it, else 2 with the service's one-line error. Flags are not read.",
    )
    parser.add_argument("file", help="the environment file")
    path = parser.parse_args(list(argv)).file
    try:
        env = read_env_file(path)
    except OSError as exc:
        parser.error(f"cannot read {path}: {exc.strerror}")
    except (ValueError, UnicodeDecodeError) as exc:
        parser.error(str(exc))
    parse_config([], env)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "hash-password":
        return hash_password_main(args[1:])
    if args and args[0] == "check-env":
        return check_env_main(args[1:])
    if args and args[0] == "controls":
        from .controls import controls_main

        return controls_main(args[1:], PROG)
    config = parse_config(args)
    from .server import configure_logging, run

    configure_logging(config.log_level)
    return run(config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
