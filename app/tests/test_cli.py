"""Flags, environment variables, validation and the hash-password subcommand."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import APP_DIR
from werkzeug.security import check_password_hash

from snapshot_stream.cli import parse_config


def _error(capsys, argv: list[str], env: dict | None = None) -> str:
    with pytest.raises(SystemExit) as exc:
        parse_config(argv, env or {})
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def test_defaults() -> None:
    c = parse_config([], {})
    assert (c.host, c.port, c.fps, c.quality, c.buffersize) == ("0.0.0.0", 8080, 25, 30, 1)
    assert (c.width, c.height, c.device, c.source) == (640, 480, "auto", None)
    assert (c.rotate, c.hflip, c.vflip, c.max_clients, c.idle_release) == (0, False, False, 100, 0)
    assert (c.max_connections, c.max_per_address) == (512, 32)
    assert c.quality_explicit is False
    assert c.name
    assert c.log_level == "info"


def test_flags_and_env(tmp_path) -> None:
    env = {
        "SNAPSHOT_STREAM_FPS": "12.5",
        "SNAPSHOT_STREAM_PORT": "9000",
        "SNAPSHOT_STREAM_HFLIP": "yes",
        "SNAPSHOT_STREAM_VFLIP": "off",
        "SNAPSHOT_STREAM_NAME": "porch",
        "SNAPSHOT_STREAM_IDLE_RELEASE": "30",
        "SNAPSHOT_STREAM_MAX_CLIENTS": "4",
    }
    c = parse_config(["--port", "8081", "--rotate", "270", "--source", "synthetic"], env)
    assert c.port == 8081  # the flag wins
    assert c.fps == 12.5
    assert c.hflip is True and c.vflip is False
    assert (c.name, c.idle_release, c.max_clients, c.rotate) == ("porch", 30, 4, 270)
    assert c.source == "synthetic"
    assert parse_config(["--quality", "30"], {}).quality_explicit is True
    assert parse_config([], {"SNAPSHOT_STREAM_QUALITY": "55"}).quality_explicit is True
    video = tmp_path / "v.avi"
    video.write_bytes(b"x")
    assert parse_config(["--source", str(video)], {}).source == str(video)
    assert parse_config(["--source", "rtsp://cam/x"], {}).source == "rtsp://cam/x"
    assert parse_config(["--host", "127.0.0.1,::1"], {}).hosts == ["127.0.0.1", "::1"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--fps", "60"], "--fps must be above 0 and at most 30 (got 60)"),
        (["--fps", "0"], "--fps must be above 0 and at most 30 (got 0)"),
        (["--fps", "-1"], "--fps must be above 0 and at most 30 (got -1)"),
        (["--fps", "fast"], "--fps must be a number above 0 and at most 30 (got fast)"),
        (["--fps", "nan"], "--fps must be a number above 0 and at most 30 (got nan)"),
        (["--port", "0"], "--port must be between 1 and 65535 (got 0)"),
        (["--port", "70000"], "--port must be between 1 and 65535 (got 70000)"),
        (["--quality", "101"], "--quality must be between 1 and 100 (got 101)"),
        (["--buffersize", "11"], "--buffersize must be between 1 and 10 (got 11)"),
        (["--width", "8"], "--width must be between 16 and 4096 (got 8)"),
        (["--height", "5000"], "--height must be between 16 and 4096 (got 5000)"),
        (["--rotate", "45"], "--rotate must be one of 0, 90, 180, 270 (got 45)"),
        (["--max-clients", "0"], "--max-clients must be between 1 and 1024 (got 0)"),
        (["--idle-release", "-1"], "--idle-release must be a number of seconds >= 0"),
        (["--source", "/nonexistent.avi"], "--source must be 'synthetic', an existing video"),
        (["--device", "video0"], "--device must be 'auto' or a device path"),
        (["--log-level", "loud"], "--log-level must be one of debug, info, warning, error"),
        (["--auth-user", "bob"], "--auth-user requires --auth-hash"),
        (["--auth-user", "bob", "--auth-hash", "nope"], "--auth-hash must look like"),
        (["--allow", "10.0.0.0/33"], "--allow"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags(capsys, argv: list[str], expected: str) -> None:
    err = _error(capsys, argv)
    assert err.startswith("snapshot-stream: error: ")
    assert expected in err


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"SNAPSHOT_STREAM_FPS": "60"},
            "SNAPSHOT_STREAM_FPS must be above 0 and at most 30 (got 60)",
        ),
        ({"SNAPSHOT_STREAM_PORT": "x"}, "SNAPSHOT_STREAM_PORT must be an integer between 1"),
        ({"SNAPSHOT_STREAM_HFLIP": "maybe"}, "SNAPSHOT_STREAM_HFLIP must be a boolean"),
        ({"SNAPSHOT_STREAM_ROTATE": "10"}, "SNAPSHOT_STREAM_ROTATE must be one of 0, 90, 180"),
        ({"SNAPSHOT_STREAM_MAX_CLIENTS": "2000"}, "SNAPSHOT_STREAM_MAX_CLIENTS must be between"),
    ],
)
def test_bad_env(capsys, env: dict, expected: str) -> None:
    assert expected in _error(capsys, [], env)


def test_flag_overrides_bad_env() -> None:
    assert parse_config(["--fps", "5"], {"SNAPSHOT_STREAM_FPS": "60"}).fps == 5


def _run(args: list[str], env: dict | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snapshot_stream", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=APP_DIR,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_exit_status_and_one_line_subprocess() -> None:
    r = _run(["--fps", "60"])
    assert r.returncode == 2
    assert r.stderr == "snapshot-stream: error: --fps must be above 0 and at most 30 (got 60)\n"
    r = _run([], {"SNAPSHOT_STREAM_QUALITY": "0"})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "snapshot-stream: error: SNAPSHOT_STREAM_QUALITY must be between 1 and 100 (got 0)"
    ]


def test_hash_password() -> None:
    r = _run(["hash-password"], stdin="s3cret\n")
    assert r.returncode == 0, r.stderr
    hashed = r.stdout.strip()
    assert hashed.startswith("pbkdf2:sha256:")
    assert check_password_hash(hashed, "s3cret")
    assert _run(["hash-password"], stdin="\n").returncode != 0


def test_port_in_use_is_a_clear_error() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _run(["--source", "synthetic", "--host", "127.0.0.1", "--port", str(port)])
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1 port {port}" in r.stderr
    assert "Traceback" not in r.stderr


def test_fractional_fps_is_allowed() -> None:
    # The one truth of the options table: above 0 and at most 30 (0.5 = a frame every 2 s).
    assert parse_config(["--fps", "0.5"], {}).fps == 0.5
    assert parse_config([], {"SNAPSHOT_STREAM_FPS": "30"}).fps == 30


def test_help_shows_each_range_and_default() -> None:
    r = _run(["--help"])
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "--fps FPS frames per second (> 0 and <= 30; default 25)" in text
    assert "--port PORT TCP port (1-65535; default 8080)" in text
    assert "--rotate ROTATE rotate clockwise, degrees (0, 90, 180, 270; default 0)" in text
    assert "ignored with --source" in text
    assert "check-env FILE" in text


def _env_file(tmp_path, text: str) -> str:
    path = tmp_path / "cam.env"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_env_accepts_what_the_role_writes(tmp_path) -> None:
    path = _env_file(
        tmp_path,
        "# comment\n; another\n\nSNAPSHOT_STREAM_NAME='front'\nSNAPSHOT_STREAM_PORT='8081'\n"
        'SNAPSHOT_STREAM_FPS="12.5"\n  SNAPSHOT_STREAM_SOURCE = synthetic  \n'
        "SNAPSHOT_STREAM_ALLOW='10.0.0.0/8,192.168.1.0/24'\nOTHER_VARIABLE='ignored'\n",
    )
    r = _run(["check-env", path])
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "SNAPSHOT_STREAM_FPS='0'\n",
            "snapshot-stream: error: SNAPSHOT_STREAM_FPS must be above 0 and at most 30 (got 0)",
        ),
        (
            "SNAPSHOT_STREAM_ROTATE='45'\n",
            "error: SNAPSHOT_STREAM_ROTATE must be one of 0, 90, 180, 270 (got 45)",
        ),
        (
            "SNAPSHOT_STREAM_AUTH_USER='bob'\n",
            "snapshot-stream: error: --auth-user requires --auth-hash",
        ),
        ("SNAPSHOT_STREAM_ALLOW='10.0.0.0/33'\n", "snapshot-stream: error: --allow: "),
        (
            "SNAPSHOT_STREAM_SOURCE='/nonexistent.avi'\n",
            "snapshot-stream: error: SNAPSHOT_STREAM_SOURCE must be 'synthetic', an existing",
        ),
        ("SNAPSHOT_STREAM_FPS 10\n", "snapshot-stream check-env: error: "),
        ("SNAPSHOT_STREAM_FPS='10\n", "unterminated quote"),
    ],
)
def test_check_env_gives_the_services_error(tmp_path, text: str, expected: str) -> None:
    path = _env_file(tmp_path, text)
    r = _run(["check-env", path])
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert expected in r.stderr
    # The service itself, given the same variables, stops with the same line.
    if not expected.startswith("snapshot-stream check-env") and "quote" not in expected:
        key, _, value = text.strip().partition("=")
        service = _run([], {key: value.strip("'")})
        assert service.returncode == 2
        assert service.stderr == r.stderr


def test_check_env_missing_file(tmp_path) -> None:
    r = _run(["check-env", str(tmp_path / "nope.env")])
    assert r.returncode == 2
    assert r.stderr.startswith("snapshot-stream check-env: error: cannot read ")
    assert _run(["check-env"]).returncode == 2
