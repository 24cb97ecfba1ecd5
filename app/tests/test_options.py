"""The options table: the one place of each option's range, default and help."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from conftest import APP_DIR

from snapshot_stream import options
from snapshot_stream.config import Config
from snapshot_stream.options import OPTIONS, Invalid


def test_each_option_is_a_config_field_with_the_tables_default() -> None:
    fields = {f.name: f for f in dataclasses.fields(Config)}
    # quality_explicit is derived by the CLI (was --quality given?), not an option
    assert {o.name for o in OPTIONS} == set(fields) - {"quality_explicit"}
    config = Config()
    for opt in OPTIONS:
        wanted = opt.default() if callable(opt.default) else opt.default
        assert getattr(config, opt.name) == wanted, opt.name


def test_names_flags_and_variables() -> None:
    opt = options.BY_NAME["max_clients"]
    assert (opt.flag, opt.env) == ("--max-clients", "SNAPSHOT_STREAM_MAX_CLIENTS")
    assert options.BY_ENV["SNAPSHOT_STREAM_FPS"] is options.BY_NAME["fps"]
    assert len({o.env for o in OPTIONS}) == len(OPTIONS)


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("port", " 8081 ", 8081),
        ("fps", "0.5", 0.5),
        ("fps", "30", 30.0),
        ("rotate", "090", 90),
        ("log_level", "WARNING", "warning"),
        ("hflip", "On", True),
        ("vflip", "", False),
        ("idle_release", "0", 0.0),
        ("host", "127.0.0.1, ::1", "127.0.0.1,::1"),
        ("device", "/dev/video2", "/dev/video2"),
        ("source", "rtsp://cam/x", "rtsp://cam/x"),
    ],
)
def test_good_values(name: str, raw: str, value: object) -> None:
    assert options.BY_NAME[name].parse(raw) == value


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("fps", "0", "must be above 0 and at most 30"),
        ("fps", "inf", "must be a number above 0 and at most 30"),
        ("quality", "0", "must be between 1 and 100"),
        ("width", "wide", "must be an integer between 16 and 4096"),
        ("rotate", "45", "must be one of 0, 90, 180, 270"),
        ("idle_release", "-1", "must be a number of seconds >= 0 (0 = off)"),
        ("name", "x" * 65, "must be 1-64 printable characters"),
        ("host", "a/b", "must be an address or host name"),
        ("auth_user", " ", "must not be empty"),
    ],
)
def test_bad_values(name: str, raw: str, message: str) -> None:
    with pytest.raises(Invalid, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        options.BY_NAME[name].parse(raw)


def test_pairs_and_precedence() -> None:
    assert options.pair_problems({"auth_user": "bob"}, str) == [
        "auth_user requires auth_hash (see `snapshot-stream hash-password`)"
    ]
    assert options.pair_problems({"auth_hash": "h"}, str) == ["auth_hash requires auth_user"]
    assert options.pair_problems({"auth_user": "bob", "auth_hash": "h"}, str) == []
    assert options.unused(["device", "source", "fps"]) == {"device"}
    assert options.unused(["device", "fps"]) == set()


def test_the_table_loads_alone_without_the_apps_dependencies() -> None:
    # The Ansible roles load options.py by path on the controller, without the package and
    # without the app's dependencies: it must import nothing but the standard library.
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('table', sys.argv[1])\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "sys.modules['table'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "assert mod.BY_NAME['fps'].parse('12') == 12.0\n"
        "bad = {'cv2', 'numpy', 'flask', 'werkzeug', 'cheroot', 'snapshot_stream'}\n"
        "bad &= set(sys.modules)\n"
        "assert not bad, bad\n"
        "print(len(mod.OPTIONS))\n"
    )
    r = subprocess.run(
        [sys.executable, "-I", "-c", code, str(APP_DIR / "snapshot_stream" / "options.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == len(OPTIONS)


def test_docs_streamer_md_shows_the_table() -> None:
    docs = (APP_DIR.parent / "docs" / "streamer.md").read_text(encoding="utf-8")
    for opt in OPTIONS:
        shown = opt.shown_default
        default = shown if shown in ("unset", "the host name") else f"`{shown}`"
        row = f"| `{opt.flag}` | `{opt.env}` | {default} | {opt.parse.allowed} |"
        assert row in docs, f"docs/streamer.md: the row of {opt.flag} must start with {row}"
